//! Merchants and webhook endpoints, held in memory in full beside their tables: every API call
//! looks its merchant up by API key, and every batch of deliveries reads its merchant's
//! endpoints, so answering those from memory spares each a read of the database (a hop to a
//! blocking thread and back).
//!
//! Exact, not a cache that may answer stale: the database belongs to this one process (its
//! writer holds the file's lock), every write of these tables goes through the store, and the
//! store updates the directory after the write commits, on the writer thread, before the
//! writer answers the caller. So a read that starts after a write has been answered sees it,
//! as a read of the database would; a read racing the write sees the state before or after it,
//! as a read of the database would. It delays nothing and reorders nothing. Its cost is memory:
//! every merchant profile (catalog included) and every endpoint, loaded when the store opens.

use super::database::corrupt;
use checkout::ids::{EndpointId, MerchantId};
use checkout::merchant::Merchant;
use checkout::ports::StoreError;
use checkout::webhook_endpoint::{WebhookEndpoint, sort_oldest_first};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// A stored row as read: its value, or why it could not be read (answered as the read of the
/// row would have been: a corrupt-store error, for that row only).
type Entry<T> = Result<Arc<T>, Arc<str>>;

#[derive(Default)]
pub(super) struct Directory {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    merchants: HashMap<String, Entry<Merchant>>,
    /// API key hash → merchant id.
    by_key_hash: HashMap<String, String>,
    /// Merchant id → endpoint id → endpoint.
    endpoints: HashMap<String, HashMap<String, Entry<WebhookEndpoint>>>,
}

fn entry<T: serde::de::DeserializeOwned>(body: &str) -> Entry<T> {
    serde_json::from_str(body)
        .map(Arc::new)
        .map_err(|err| Arc::from(err.to_string()))
}

fn read<T: Clone>(entry: &Entry<T>) -> Result<T, StoreError> {
    match entry {
        Ok(value) => Ok(T::clone(value)),
        Err(err) => Err(corrupt(err)),
    }
}

impl Directory {
    /// A merchant row as stored: (id, API key hash, body).
    pub fn load_merchant(&self, id: String, key_hash: String, body: &str) {
        let mut inner = self.inner.write();
        inner.by_key_hash.insert(key_hash, id.clone());
        inner.merchants.insert(id, entry(body));
    }

    /// An endpoint row as stored: (merchant id, endpoint id, body).
    pub fn load_endpoint(&self, merchant: String, id: String, body: &str) {
        let mut inner = self.inner.write();
        inner.endpoints.entry(merchant).or_default().insert(id, entry(body));
    }

    /// A merchant whose write has committed (its API key hash may have changed).
    pub fn put_merchant(&self, merchant: Merchant) {
        let mut inner = self.inner.write();
        let id = merchant.id.to_string();
        if let Some(Ok(old)) = inner.merchants.get(&id)
            && old.api_key_hash != merchant.api_key_hash
        {
            let old_hash = old.api_key_hash.clone();
            inner.by_key_hash.remove(&old_hash);
        }
        inner.by_key_hash.insert(merchant.api_key_hash.clone(), id.clone());
        inner.merchants.insert(id, Ok(Arc::new(merchant)));
    }

    pub fn merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        self.inner.read().merchants.get(id.as_str()).map(read).transpose()
    }

    pub fn merchant_by_api_key_hash(&self, hash: &str) -> Result<Option<Merchant>, StoreError> {
        let inner = self.inner.read();
        let Some(id) = inner.by_key_hash.get(hash) else {
            return Ok(None);
        };
        inner.merchants.get(id).map(read).transpose()
    }

    /// An endpoint whose write has committed.
    pub fn put_endpoint(&self, endpoint: WebhookEndpoint) {
        let (merchant, id) = (endpoint.merchant_id.to_string(), endpoint.id.to_string());
        let mut inner = self.inner.write();
        inner
            .endpoints
            .entry(merchant)
            .or_default()
            .insert(id, Ok(Arc::new(endpoint)));
    }

    /// An endpoint whose deletion has committed.
    pub fn delete_endpoint(&self, merchant: &str, id: &str) {
        let mut inner = self.inner.write();
        if let Some(list) = inner.endpoints.get_mut(merchant) {
            list.remove(id);
            if list.is_empty() {
                inner.endpoints.remove(merchant);
            }
        }
    }

    pub fn endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let inner = self.inner.read();
        let found = inner
            .endpoints
            .get(merchant.as_str())
            .and_then(|list| list.get(id.as_str()));
        found.map(read).transpose()
    }

    /// The merchant's endpoints, oldest first (as the other stores list them).
    pub fn endpoints(&self, merchant: &MerchantId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut endpoints = match self.inner.read().endpoints.get(merchant.as_str()) {
            Some(list) => list.values().map(read).collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        sort_oldest_first(&mut endpoints);
        Ok(endpoints)
    }
}
