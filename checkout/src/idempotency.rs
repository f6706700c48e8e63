//! ACP idempotency (RFC §6): every POST carries an `Idempotency-Key`; the first request with a
//! key claims it, a repeat with the same body gets the stored reply, a repeat with another body
//! is refused (422), and a repeat while the first still runs is told to come back (409).
//! 5xx replies are never stored, so the client's retry runs again.

use crate::clock::Timestamp;
use crate::ids::{MerchantId, SessionId};
use chrono::Duration;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a finished request's reply is kept (ACP asks for at least 24 hours).
pub const RETENTION: Duration = Duration::hours(48);
/// How long a claim holds before another request may take it over (the first one crashed).
pub const LEASE: Duration = Duration::seconds(30);
/// What a 409 tells the client to wait.
pub const RETRY_AFTER_SECS: u64 = 1;
/// ACP: an opaque string of at most 255 characters.
pub const MAX_KEY_LEN: usize = 255;

/// An `Idempotency-Key` header's value, if it is one a request may carry: 1 to
/// [`MAX_KEY_LEN`] printable ASCII characters (spaces allowed, no tabs or other controls).
pub fn valid_key(raw: &[u8]) -> Option<&str> {
    let printable = raw.iter().all(|b| (0x20..=0x7e).contains(b));
    if raw.is_empty() || raw.len() > MAX_KEY_LEN || !printable {
        return None;
    }
    std::str::from_utf8(raw).ok()
}

/// A key is scoped to the authenticated merchant and the endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub merchant_id: MerchantId,
    pub method: String,
    pub path: String,
    pub key: String,
}

impl IdempotencyKey {
    /// `merchant#method#path#key`, the storage key in every backend.
    pub fn storage_key(&self) -> String {
        format!("{}#{}#{}#{}", self.merchant_id, self.method, self.path, self.key)
    }
}

/// What identifies "the same request": a hash of the body with JSON key order and white space
/// normalized, so a client that re-serializes its retry is still recognised.
pub fn fingerprint(body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok());
    hex::encode(Sha256::digest(canonical.as_deref().unwrap_or(body)))
}

/// A reply as it went out, kept for replays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredReply {
    /// The reply of a change that appended an event: the session as that event left it. It is
    /// rebuilt from the event store on replay (byte for byte the same JSON), not kept a second
    /// time beside the event — the copy doubled what every checkout call wrote.
    Session {
        status: u16,
        session_id: SessionId,
        version: u64,
    },
    /// Any other reply, kept as it went out.
    Body { status: u16, body: String },
}

impl StoredReply {
    pub fn status(&self) -> u16 {
        match self {
            Self::Session { status, .. } | Self::Body { status, .. } => *status,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RecordState {
    InFlight {
        token: String,
        #[serde(with = "crate::clock::rfc3339_serde")]
        lease_until: Timestamp,
    },
    Done {
        reply: StoredReply,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    pub state: RecordState,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub expires_at: Timestamp,
}

/// What the holder of a claim knows about it, as its store wrote it: the token that proves
/// the claim is its own, when its lease ends, and the session it names (stores that find a
/// call's reply from its committed event name one; others `None`). A commit checks the lease
/// against this instead of reading the claim back: only the holder releases its claim, and
/// nobody else may take it over before the lease ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub token: String,
    pub lease_until: Timestamp,
    pub subject: Option<SessionId>,
}

/// The answer to "may this request run?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Run it; finish with a [`Completion`] carrying this hold.
    Acquired(Hold),
    Replay(StoredReply),
    /// Same key, different body.
    Mismatch,
    InFlight,
}

/// Finishes a claim: the reply to store under the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub key: IdempotencyKey,
    pub hold: Hold,
    pub fingerprint: String,
    pub reply: StoredReply,
    pub expires_at: Timestamp,
}

impl Completion {
    pub fn record(&self) -> IdempotencyRecord {
        IdempotencyRecord {
            fingerprint: self.fingerprint.clone(),
            state: RecordState::Done {
                reply: self.reply.clone(),
            },
            expires_at: self.expires_at,
        }
    }
}

/// What an existing record means for a new request. `None` means the record may be replaced
/// (expired, or a claim whose lease ran out).
pub fn judge(existing: &IdempotencyRecord, fingerprint: &str, now: Timestamp) -> Option<Claim> {
    if existing.expires_at <= now {
        return None;
    }
    match &existing.state {
        RecordState::InFlight { lease_until, .. } if *lease_until <= now => None,
        _ if existing.fingerprint != fingerprint => Some(Claim::Mismatch),
        RecordState::InFlight { .. } => Some(Claim::InFlight),
        RecordState::Done { reply } => Some(Claim::Replay(reply.clone())),
    }
}

/// A fresh claim record for `fingerprint`, naming `subject` if the store keeps it.
pub fn new_claim(fingerprint: &str, subject: Option<&SessionId>, now: Timestamp) -> (Hold, IdempotencyRecord) {
    let hold = Hold {
        token: ulid::Ulid::new().to_string(),
        lease_until: now + LEASE,
        subject: subject.cloned(),
    };
    let record = IdempotencyRecord {
        fingerprint: fingerprint.to_owned(),
        state: RecordState::InFlight {
            token: hold.token.clone(),
            lease_until: hold.lease_until,
        },
        expires_at: now + RETENTION,
    };
    (hold, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn done(fp: &str, now: Timestamp) -> IdempotencyRecord {
        IdempotencyRecord {
            fingerprint: fp.to_owned(),
            state: RecordState::Done {
                reply: StoredReply::Body {
                    status: 201,
                    body: "{}".to_owned(),
                },
            },
            expires_at: now + RETENTION,
        }
    }

    #[test]
    fn fingerprint_ignores_key_order_and_spacing() {
        assert_eq!(
            fingerprint(br#"{"a":1,"b":[1,2]}"#),
            fingerprint(b"{ \"b\": [1,2], \"a\": 1 }")
        );
        assert_ne!(fingerprint(br#"{"a":1}"#), fingerprint(br#"{"a":2}"#));
        assert_eq!(fingerprint(b"not json"), fingerprint(b"not json"));
    }

    #[test]
    fn same_body_replays_other_body_conflicts() {
        let now = clock::now();
        let record = done("fp", now);
        assert!(matches!(judge(&record, "fp", now), Some(Claim::Replay(r)) if r.status() == 201));
        assert_eq!(judge(&record, "other", now), Some(Claim::Mismatch));
    }

    #[test]
    fn live_claim_is_in_flight_stale_claim_is_replaceable() {
        let now = clock::now();
        let (_, claim) = new_claim("fp", None, now);
        assert_eq!(judge(&claim, "fp", now), Some(Claim::InFlight));
        assert_eq!(judge(&claim, "other", now), Some(Claim::Mismatch));
        assert_eq!(judge(&claim, "fp", now + LEASE), None);
    }

    #[test]
    fn expired_records_are_replaceable() {
        let now = clock::now();
        assert_eq!(judge(&done("fp", now), "fp", now + RETENTION), None);
        assert!(RETENTION >= Duration::hours(24));
    }
}
