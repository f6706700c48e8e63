//! The traits storage adapters implement. They speak domain types only; no SDK type leaks through.

use crate::clock::Timestamp;
use crate::event::Event;
use crate::idempotency::{Claim, Completion, IdempotencyKey};
use crate::ids::{MerchantId, SessionId};
use crate::merchant::Merchant;
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer already stored this version: reload and decide again.
    #[error("session {session_id} already has version {version}")]
    VersionConflict { session_id: SessionId, version: u64 },
    /// The idempotency claim this write finishes is no longer ours (its lease ran out).
    #[error("idempotency claim lost")]
    ClaimLost,
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
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
}

/// Idempotency records (see [`crate::idempotency`]).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request with this fingerprint, or says why not.
    async fn claim(&self, key: &IdempotencyKey, fingerprint: &str, now: Timestamp) -> Result<Claim, StoreError>;

    /// Stores the reply of a claimed request that appended no event.
    async fn complete(&self, completion: &Completion) -> Result<(), StoreError>;

    /// Forgets a claim whose request failed on our side, so the client's retry runs again.
    async fn release(&self, key: &IdempotencyKey, token: &str) -> Result<(), StoreError>;
}

/// Tenants and their configuration.
#[async_trait]
pub trait MerchantStore: Send + Sync {
    async fn put_merchant(&self, merchant: &Merchant) -> Result<(), StoreError>;
    async fn merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError>;
    async fn merchant_by_api_key_hash(&self, api_key_hash: &str) -> Result<Option<Merchant>, StoreError>;
}

/// One backend's adapters, chosen once at startup.
#[derive(Clone)]
pub struct Backend {
    pub events: Arc<dyn EventStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub merchants: Arc<dyn MerchantStore>,
}

impl Backend {
    /// For adapters that implement every port on one type.
    pub fn from_one<T>(adapter: Arc<T>) -> Self
    where
        T: EventStore + IdempotencyStore + MerchantStore + 'static,
    {
        Self {
            events: adapter.clone(),
            idempotency: adapter.clone(),
            merchants: adapter,
        }
    }
}
