//! Time as the domain sees it: UTC, to the millisecond (what every store keeps exactly).

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};

pub type Timestamp = DateTime<Utc>;

pub fn now() -> Timestamp {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

/// RFC 3339 to the second, as ACP documents show time.
pub fn rfc3339(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 to the millisecond, for records that must read back exactly.
pub fn rfc3339_millis(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An RFC 3339 time from a document; a refusal says what one looks like (chrono's own words,
/// `premature end of input`, mean nothing to a client).
fn parse_rfc3339<E: serde::de::Error>(raw: &str) -> Result<Timestamp, E> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            E::invalid_value(
                serde::de::Unexpected::Str(raw),
                &"an RFC 3339 time such as 2026-04-17T09:30:00Z",
            )
        })
}

/// Serde helper (millisecond precision): `#[serde(with = "crate::clock::rfc3339_serde")]`.
pub mod rfc3339_serde {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339_millis(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse_rfc3339(&raw)
    }
}

/// Serde helper for `Option<Timestamp>` (millisecond precision, `null` when absent).
pub mod optional_rfc3339_serde {
    use crate::clock::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&crate::clock::rfc3339_millis(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|raw| super::parse_rfc3339(&raw))
            .transpose()
    }
}

/// Where a component reads the time: the system's in production, a hand-set one in tests (see
/// `testkit::ManualClock`), so that what depends on time is tested without waiting for it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's time, to the millisecond.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }
}

pub type SharedClock = std::sync::Arc<dyn Clock>;

/// The system's clock, shared.
pub fn system() -> SharedClock {
    std::sync::Arc::new(SystemClock)
}
