//! Bearer API keys → merchants. Keys are looked up by their hash, and found merchants are
//! cached briefly so a warm Lambda does not read DynamoDB twice per request.

use checkout::merchant::{Merchant, hash_api_key};
use checkout::ports::{MerchantStore, StoreError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a merchant's configuration may be served from memory after it was read.
const TTL: Duration = Duration::from_secs(30);
/// Bounds the cache; a full cache is simply cleared (it refills from the store).
const MAX_ENTRIES: usize = 10_000;

pub struct MerchantCache {
    store: Arc<dyn MerchantStore>,
    entries: RwLock<HashMap<String, (Arc<Merchant>, Instant)>>,
}

impl MerchantCache {
    pub fn new(store: Arc<dyn MerchantStore>) -> Self {
        Self {
            store,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The merchant whose API key this is, if any.
    pub async fn by_api_key(&self, api_key: &str) -> Result<Option<Arc<Merchant>>, StoreError> {
        let hash = hash_api_key(api_key);
        if let Some((merchant, read_at)) = self.entries.read().get(&hash)
            && read_at.elapsed() < TTL
        {
            return Ok(Some(merchant.clone()));
        }
        let Some(merchant) = self.store.merchant_by_api_key_hash(&hash).await? else {
            self.entries.write().remove(&hash);
            return Ok(None);
        };
        let merchant = Arc::new(merchant);
        let mut entries = self.entries.write();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, (merchant.clone(), Instant::now()));
        Ok(Some(merchant))
    }
}

impl MerchantCache {
    /// Drops a cached merchant after its configuration changed.
    pub fn forget(&self, api_key_hash: &str) {
        self.entries.write().remove(api_key_hash);
    }
}

/// The key of an `Authorization: Bearer <key>` header.
pub fn bearer_key(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::bearer_key;

    #[test]
    fn bearer_keys_are_extracted() {
        assert_eq!(bearer_key(Some("Bearer sk_1")), Some("sk_1"));
        assert_eq!(bearer_key(Some("bearer   sk_1 ")), Some("sk_1"));
        assert_eq!(bearer_key(Some("Basic abc")), None);
        assert_eq!(bearer_key(Some("Bearer ")), None);
        assert_eq!(bearer_key(None), None);
    }
}
