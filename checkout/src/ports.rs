//! The traits storage adapters implement. They speak domain types only; no SDK type leaks through.

use crate::attempt_log::{AttemptQuery, AttemptRecord};
use crate::clock::Timestamp;
use crate::event::Event;
use crate::idempotency::{Claim, Completion, IdempotencyKey};
use crate::ids::{EndpointId, EventId, MerchantId, SessionId};
use crate::merchant::Merchant;
use crate::replay_job::ReplayJob;
use crate::signing_key::PublishedKey;
use crate::webhook_endpoint::WebhookEndpoint;
use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer already stored this version: reload and decide again.
    #[error("session {session_id} already has version {version}")]
    VersionConflict { session_id: SessionId, version: u64 },
    /// The idempotency claim this write finishes is no longer ours (its lease ran out).
    #[error("idempotency claim lost")]
    ClaimLost,
    /// The call's own claim is about to run out: too late to commit safely, so nothing was
    /// stored. The caller releases the claim and the client may retry at once.
    #[error("the call ran out of time to commit")]
    OutOfTime,
    /// The item was stored by someone else since this copy was read: read it again, change it
    /// again.
    #[error("{what} {id} changed since it was read")]
    Changed { what: &'static str, id: String },
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The storage refused the write as invalid (over an item size limit, say): trying again
    /// cannot help.
    #[error("storage refused the write: {0}")]
    Refused(String),
    /// The cause is in the message, not also the error's source: a report that prints the
    /// chain of causes (`anyhow`'s, say) would print it twice.
    #[error("storage unavailable: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(err))
    }
}

/// The append-only log of session events, one stream per session.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores `event` as version `event.version` of its session, only if that version is free.
    /// With `completes`, the idempotency claim is finished in the same atomic write: both happen
    /// or neither does.
    async fn append(&self, event: &Event, completes: Option<&Completion>) -> Result<(), StoreError>;

    /// The newest event of a session, read strongly consistent (a client reads its own writes).
    async fn latest(&self, session_id: &SessionId) -> Result<Option<Event>, StoreError>;

    /// Every event of a session, oldest first.
    async fn history(&self, session_id: &SessionId) -> Result<Vec<Event>, StoreError>;

    /// Version `version` of a session, if stored: one read, whatever the session's length (a
    /// replay looks up each event it sends this way).
    async fn event_at(&self, session_id: &SessionId, version: u64) -> Result<Option<Event>, StoreError>;
}

/// Idempotency records (see [`crate::idempotency`]).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request with this fingerprint, or says why not.
    async fn claim(&self, key: &IdempotencyKey, fingerprint: &str, now: Timestamp) -> Result<Claim, StoreError>;

    /// [`IdempotencyStore::claim`] for a call that will append an event to `subject` (for a
    /// create, the id the new session will have). A store may then find the call's reply from
    /// its committed event instead of writing a reply record beside it (DynamoDB: one write per
    /// call instead of a transaction of two). Stores that commit both together need not care.
    async fn claim_for(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        subject: &SessionId,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let _ = subject;
        self.claim(key, fingerprint, now).await
    }

    /// Stores the reply of a claimed request that appended no event.
    async fn complete(&self, completion: &Completion) -> Result<(), StoreError>;

    /// Forgets a claim whose request failed on our side, so the client's retry runs again.
    async fn release(&self, key: &IdempotencyKey, token: &str) -> Result<(), StoreError>;
}

/// Tenants and their configuration.
#[async_trait]
pub trait MerchantStore: Send + Sync {
    /// Stores the merchant as revision `merchant.revision + 1`, only if the stored one is still
    /// at `merchant.revision` (0: none stored yet); else [`StoreError::Changed`] and nothing
    /// changes.
    async fn put_merchant(&self, merchant: &Merchant) -> Result<(), StoreError>;
    async fn merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError>;
    async fn merchant_by_api_key_hash(&self, api_key_hash: &str) -> Result<Option<Merchant>, StoreError>;
}

/// Merchants' webhook endpoints.
#[async_trait]
pub trait EndpointStore: Send + Sync {
    /// Creates or replaces the endpoint, under the same revision rule as
    /// [`MerchantStore::put_merchant`].
    async fn put_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError>;
    async fn endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Every endpoint of the merchant, oldest first.
    async fn endpoints(&self, merchant: &MerchantId) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// `false` when there was no such endpoint.
    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<bool, StoreError>;
}

/// The key registry that `EndpointStore::put_endpoint` and `delete_endpoint` keep in step
/// with the endpoints. A port of its own: only the API reads it, so the dispatcher's bootstrap
/// does not carry its code.
#[async_trait]
pub trait KeyRegistry: Send + Sync {
    /// The public half of every endpoint's ed25519 keys, current, in grace or retired, with
    /// when each stops signing: what `/.well-known/webhook-keys` publishes. One read of the
    /// registry, which `put_endpoint` and `delete_endpoint` write in their own transaction
    /// (never a scan of the endpoints); a key of a deleted endpoint is gone or ended. Ended keys
    /// may be left out, or linger until the store drops them.
    async fn published_keys(&self) -> Result<Vec<PublishedKey>, StoreError>;
}

/// Each endpoint's latest replay job (see [`crate::replay`]): one record per endpoint.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Stores a new job (revision 0) as its endpoint's replay, at revision 1, unless the
    /// endpoint's replay is one that may not be replaced at `now`
    /// ([`ReplayJob::replaceable`]): then [`StoreError::Changed`] and nothing changes.
    async fn start_replay(&self, job: &ReplayJob, now: Timestamp) -> Result<(), StoreError>;
    /// Stores the job as revision `job.revision + 1`, only if the endpoint's replay is still
    /// this job at `job.revision`; else [`StoreError::Changed`] and nothing changes.
    async fn put_replay(&self, job: &ReplayJob) -> Result<(), StoreError>;
    /// The endpoint's latest replay.
    async fn replay(&self, merchant: &MerchantId, endpoint: &EndpointId) -> Result<Option<ReplayJob>, StoreError>;
}

/// The attempt log (see [`crate::attempt_log`]); a target is an endpoint id or the order webhook.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Stores the record unless this attempt of this (event, target) is already recorded: then
    /// `Ok(false)` and nothing changes (another copy of the message made that attempt) — except
    /// that a delivered attempt replaces a failed record of the same attempt. Two copies that
    /// made the same attempt at once (one before a crash, one after) may disagree; the receiver
    /// got the event if either delivered it, so the log says delivered.
    async fn record(&self, record: &AttemptRecord) -> Result<bool, StoreError>;
    /// Stores the first attempts ([`AttemptRecord::is_first`]) of several pairs — a queue
    /// batch's — in as few writes as the store allows (on DynamoDB one item per target and
    /// second of event time, where one item per attempt would bill a write unit each).
    /// Unconditional: an attempt that another copy also recorded reads as one, delivered if
    /// either copy delivered (see [`crate::attempt_log::merge`]).
    async fn record_first_attempts(&self, records: &[AttemptRecord]) -> Result<(), StoreError> {
        for record in records {
            self.record(record).await?;
        }
        Ok(())
    }
    /// For each (target, event) pair: whether its delivery has begun — its first attempt was
    /// stored by [`DeliveryLog::record_first_attempts`] — read strongly consistent and batched
    /// (on DynamoDB one query per target and second of event time in the batch). A copy of an
    /// event message whose pair has begun is a duplicate.
    async fn started(&self, pairs: &[(&str, &EventId)]) -> Result<Vec<bool>, StoreError>;
    /// The newest record of one event to one target: that delivery's state.
    async fn latest(&self, target: &str, event: &EventId) -> Result<Option<AttemptRecord>, StoreError>;
    /// Every record of one event to one target, oldest first.
    async fn attempts_of(&self, target: &str, event: &EventId) -> Result<Vec<AttemptRecord>, StoreError>;
    /// A target's records, newest event first.
    async fn attempts(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError>;
}

/// The underlying error of a [`PipelineError`] (shared: one failed batch call fails each of
/// its entries with the same cause).
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// Why the topic, a queue, the stream or name resolution failed: what a caller can do about it
/// differs by variant (see [`PipelineError::is_retryable`]).
#[derive(Clone, Debug, thiserror::Error)]
pub enum PipelineError {
    /// The service asked us to slow down. (Here and below, the cause is in the message only,
    /// as in [`StoreError::Unavailable`].)
    #[error("throttled: {0}")]
    Throttled(Cause),
    /// The topic, queue, stream or host does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// Over a size limit the service enforces.
    #[error("the {what} is {size} bytes; at most {limit} are taken")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// Refused as invalid (a receipt no longer current, a visibility over the limit, an entry
    /// the service rejected).
    #[error("refused as invalid: {reason}")]
    Invalid { reason: String },
    /// The service could not be reached, or failed.
    #[error("unavailable: {0}")]
    Unavailable(Cause),
}

impl PipelineError {
    pub fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(std::sync::Arc::new(err))
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid { reason: reason.into() }
    }

    /// Whether the same call may succeed later; a message too large or invalid never will.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Unavailable(_) | Self::NotFound { .. })
    }
}

/// The largest message the topic and the queues carry, body and attributes together (SNS and
/// SQS: 256 KiB; a `PublishBatch` also 256 KiB in all).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The checkout-events topic: one message per event, with `merchant_id` and `event_type`
/// attributes so subscribers can filter.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes each event; the result at index i is event i's. An event over
    /// [`MAX_MESSAGE_BYTES`] is refused (its result is an error) and the others still go.
    async fn publish(&self, events: &[&Event]) -> Vec<Result<(), PipelineError>>;
}

/// A message taken from a queue; it comes back after its visibility timeout unless deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    pub attributes: Vec<(String, String)>,
}

/// An at-least-once queue with visibility timeouts and a redrive to a dead-letter queue after
/// a number of receives (SQS semantics).
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn send(&self, body: &str, delay: Duration) -> Result<(), PipelineError>;
    /// [`DeliveryQueue::send`] for a message that carries on the one being handled (the next
    /// try of a delivery, a deferral), which is deleted only after this returns. It need
    /// survive no more than that deletion: a store that syncs each send against a power
    /// failure may skip it here, so long as what it writes later cannot outlive this (a power
    /// failure that loses this message then loses the deletion too, and the handled message
    /// comes back).
    async fn send_onward(&self, body: &str, delay: Duration) -> Result<(), PipelineError> {
        self.send(body, delay).await
    }
    /// Up to `max` messages, waiting up to `wait` for the first one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueuedMessage>, PipelineError>;
    async fn delete(&self, receipt: &str) -> Result<(), PipelineError>;
    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), PipelineError>;
}

/// Host name resolution, so the URL checks can be tested without a network.
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, PipelineError>;
}

/// One backend's storage adapters, chosen once at startup.
#[derive(Clone)]
pub struct Backend {
    pub events: Arc<dyn EventStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub merchants: Arc<dyn MerchantStore>,
    pub endpoints: Arc<dyn EndpointStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub replays: Arc<dyn ReplayStore>,
    pub keys: Arc<dyn KeyRegistry>,
}

impl Backend {
    /// For adapters that implement every storage port on one type.
    pub fn from_one<T>(adapter: Arc<T>) -> Self
    where
        T: EventStore
            + IdempotencyStore
            + MerchantStore
            + EndpointStore
            + DeliveryLog
            + ReplayStore
            + KeyRegistry
            + 'static,
    {
        Self {
            events: adapter.clone(),
            idempotency: adapter.clone(),
            merchants: adapter.clone(),
            endpoints: adapter.clone(),
            deliveries: adapter.clone(),
            replays: adapter.clone(),
            keys: adapter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    /// What `anyhow` prints for an error a binary returns: its message, then each source's.
    fn report(err: &dyn Error) -> String {
        let mut lines = vec![err.to_string()];
        let mut source = err.source();
        while let Some(cause) = source {
            lines.push(cause.to_string());
            source = cause.source();
        }
        lines.join("\ncaused by: ")
    }

    #[test]
    fn an_unavailable_store_or_service_names_its_cause_once() {
        let cause = || std::io::Error::other("the file is in use by another process");
        let reports = [
            report(&StoreError::unavailable(cause())),
            report(&PipelineError::unavailable(cause())),
            report(&PipelineError::Throttled(std::sync::Arc::new(cause()))),
        ];
        for report in reports {
            assert_eq!(report.matches("in use by another process").count(), 1, "{report}");
        }
    }
}
