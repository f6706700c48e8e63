//! The event envelope: one per accepted change, stored, published and delivered as-is.

use crate::acp::CheckoutSession;
use crate::clock::Timestamp;
use crate::ids::{EventId, MerchantId, SessionId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest event the pipeline carries, as JSON. SNS and SQS take 256 KiB per message (a
/// `PublishBatch` 256 KiB in all), and a delivery task or dead letter wraps the event in up to a
/// few KiB more; DynamoDB's 400 KB items hold it with its idempotency reply beside it.
pub const MAX_EVENT_BYTES: usize = 200 * 1024;

/// An upper bound of the envelope around the session in an event's JSON (ids, type, times,
/// version): an event is at most its session's JSON plus this.
pub const ENVELOPE_BYTES: usize = 512;

/// Room kept under [`MAX_EVENT_BYTES`] when a session is created or updated, for what completing
/// it adds (the order): a session that could be built can always be completed.
pub const COMPLETION_HEADROOM: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "checkout.session.created")]
    Created,
    #[serde(rename = "checkout.session.updated")]
    Updated,
    #[serde(rename = "checkout.session.completed")]
    Completed,
    #[serde(rename = "checkout.session.cancelled")]
    Cancelled,
    /// A test a merchant sends to one endpoint (`POST /webhook_endpoints/{id}/test`): never
    /// stored, never subscribed to, not in [`EventType::ALL`].
    #[serde(rename = "webhook.test")]
    Test,
}

impl EventType {
    pub const ALL: [EventType; 4] = [Self::Created, Self::Updated, Self::Completed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "checkout.session.created",
            Self::Updated => "checkout.session.updated",
            Self::Completed => "checkout.session.completed",
            Self::Cancelled => "checkout.session.cancelled",
            Self::Test => "webhook.test",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The largest event of this type that may be stored (see [`MAX_EVENT_BYTES`]).
    pub fn size_limit(self) -> usize {
        match self {
            Self::Created | Self::Updated => MAX_EVENT_BYTES - COMPLETION_HEADROOM,
            Self::Completed | Self::Cancelled | Self::Test => MAX_EVENT_BYTES,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub created_at: Timestamp,
    pub merchant_id: MerchantId,
    pub session_id: SessionId,
    /// Aggregate version: 1 for `created`, then +1 per change, with no gaps.
    pub version: u64,
    pub api_version: String,
    /// The full session after the change.
    pub data: CheckoutSession,
}

impl Event {
    pub fn new(
        kind: EventType,
        merchant_id: MerchantId,
        version: u64,
        api_version: &str,
        data: CheckoutSession,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id: EventId::generate(),
            kind,
            created_at,
            merchant_id,
            session_id: data.id.clone(),
            version,
            api_version: api_version.to_owned(),
            data,
        }
    }

    /// The length of the event as JSON, as stored and published, counted without building it.
    pub fn encoded_len(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        // Writing to a counter cannot fail, and the event always serializes.
        let _ = serde_json::to_writer(&mut count, self);
        count.0
    }
}

/// One record of the event store's change stream: the event it carries, or why it could not be
/// read (a poison record).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    /// Position in the stream; what a partial-failure report names.
    pub sequence: String,
    pub event: Result<Event, String>,
}

impl StreamRecord {
    /// Parses the envelope as stored (the `event` attribute of an event-store item).
    pub fn from_json(sequence: String, json: Option<&str>) -> Self {
        let event = match json {
            Some(json) => serde_json::from_str(json).map_err(|e| format!("unreadable event: {e}")),
            None => Err("record carries no event".to_owned()),
        };
        Self { sequence, event }
    }
}
