//! Tenants: who may call the API (by API key, stored hashed) and what they sell.

use crate::acp::{ApiVersion, Link};
use crate::catalog::Catalog;
use crate::ids::MerchantId;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: MerchantId,
    pub name: String,
    /// SHA-256 of the API key, hex. The key itself is never stored.
    pub api_key_hash: String,
    pub catalog: Catalog,
    /// The version a request without an `API-Version` header is served in.
    pub default_api_version: String,
    pub links: Vec<Link>,
    /// Orders are linked as `{order_url_base}/{order_id}`.
    pub order_url_base: String,
    /// Where the agent platform wants ACP `order_create` / `order_update` webhooks.
    #[serde(default)]
    pub order_webhook: Option<OrderWebhook>,
    /// How many times it was stored: a write of a copy read at another revision is refused
    /// ([`crate::ports::StoreError::Changed`]), so concurrent changes never undo each other.
    #[serde(default)]
    pub revision: u64,
}

/// The ACP order webhook of the agent platform: its URL and the secret its
/// `Merchant-Signature` header is computed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderWebhook {
    pub url: String,
    pub secret: String,
}

impl Merchant {
    pub fn pinned_version(&self) -> ApiVersion {
        ApiVersion::parse(&self.default_api_version).unwrap_or(ApiVersion::CURRENT)
    }

    /// A new tenant: its own name, catalog, order pages and legal links, at the current API
    /// version, never stored yet.
    pub fn new(
        id: MerchantId,
        name: String,
        api_key: &str,
        catalog: Catalog,
        order_url_base: String,
        links: Vec<Link>,
    ) -> Self {
        Self {
            id,
            name,
            api_key_hash: hash_api_key(api_key),
            catalog,
            default_api_version: ApiVersion::CURRENT.as_str().to_owned(),
            links,
            revision: 0,
            order_url_base,
            order_webhook: None,
        }
    }

    /// A demo tenant selling [`Catalog::demo`].
    pub fn demo(id: MerchantId, api_key: &str) -> Self {
        let links = vec![
            Link {
                kind: "terms_of_use".to_owned(),
                url: "https://shop.example.com/legal/terms".to_owned(),
            },
            Link {
                kind: "return_policy".to_owned(),
                url: "https://shop.example.com/legal/returns".to_owned(),
            },
        ];
        Self::new(
            id,
            "Demo Shop".to_owned(),
            api_key,
            Catalog::demo(),
            "https://shop.example.com/orders".to_owned(),
            links,
        )
    }
}

/// Keys are long random strings, so a fast unsalted hash is enough: there is nothing to brute-force.
pub fn hash_api_key(api_key: &str) -> String {
    hex::encode(Sha256::digest(api_key.as_bytes()))
}

/// A new API key: `sk_acp_` and 32 random bytes.
pub fn generate_api_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "sk_acp_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashes_stable() {
        let a = generate_api_key().unwrap();
        let b = generate_api_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sk_acp_"));
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
        assert_eq!(hash_api_key(&a).len(), 64);
    }
}
