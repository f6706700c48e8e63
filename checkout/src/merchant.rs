//! Tenants: who may call the API (by API key, stored hashed) and what they sell.

use crate::acp::{ApiVersion, Link};
use crate::catalog::Catalog;
use crate::clock::Timestamp;
use crate::ids::MerchantId;
use crate::webhook_endpoint::{MAX_IN_GRACE, SigningSecret};
use base64::Engine;
use chrono::Duration;
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
    /// Keys the merchant's portal links and sessions ([`crate::portal_access`]); made at the
    /// first link, never shown. Dropped (ending every link and session) when the API key is
    /// rotated or the merchant revokes its links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_secret: Option<String>,
}

/// The ACP order webhook of the agent platform: its URL and the secret its
/// `Merchant-Signature` header is computed with (HMAC-SHA256 keyed by the secret's UTF-8 bytes as
/// given, as Stripe-style libraries do: never base64-decoded, even with a `whsec_` prefix).
///
/// ACP's header carries exactly one `v1=`, so it is always the current secret's. A replaced
/// secret's overlap travels in the Standard Webhooks headers sent alongside (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature` with one `v1` per secret in force, keyed by the same
/// raw bytes): a receiver still holding the old secret verifies those until the grace ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderWebhook {
    pub url: String,
    pub secret: String,
    /// Secrets it replaced, each signing `webhook-signature` until its `expires_at`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_secrets: Vec<SigningSecret>,
}

impl OrderWebhook {
    /// `url` and `secret` in place of `current` (if any): a different secret keeps the one it
    /// replaces (and those still in grace, at most until then) signing beside it until
    /// `now + grace`; at most [`MAX_IN_GRACE`] do, the oldest leave first; ended ones leave. A new
    /// URL alone keeps the overlap: the platform moved its receiver, not its secret. After a
    /// `DELETE`, nothing is kept.
    pub fn replacing(
        current: Option<&OrderWebhook>,
        url: String,
        secret: String,
        now: Timestamp,
        grace: Duration,
    ) -> Self {
        let mut previous: Vec<SigningSecret> = current.map(|hook| hook.previous_secrets.clone()).unwrap_or_default();
        if let Some(old) = current.filter(|hook| hook.secret != secret) {
            // No older secret outlives the newest grace (none at all after a leak, grace 0).
            for s in &mut previous {
                s.expires_at = s.expires_at.map(|t| t.min(now + grace));
            }
            previous.insert(
                0,
                SigningSecret {
                    secret: old.secret.clone(),
                    expires_at: Some(now + grace),
                },
            );
        }
        previous.retain(|s| s.secret != secret && s.expires_at.is_some_and(|t| t > now));
        previous.truncate(MAX_IN_GRACE);
        Self {
            url,
            secret,
            previous_secrets: previous,
        }
    }

    /// The secrets that sign `webhook-signature` at `now`: the current one first.
    pub fn secrets_at(&self, now: Timestamp) -> impl Iterator<Item = &str> {
        let previous = self
            .previous_secrets
            .iter()
            .filter(move |s| s.expires_at.is_some_and(|t| t > now));
        std::iter::once(self.secret.as_str()).chain(previous.map(|s| s.secret.as_str()))
    }
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
            portal_secret: None,
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
    #[test]
    fn a_replaced_order_secret_signs_on_through_its_grace() {
        let now = crate::clock::now();
        let hour = Duration::hours(1);
        let first = OrderWebhook::replacing(None, "https://a.example/o".into(), "one".into(), now, hour);
        assert_eq!(first.secrets_at(now).collect::<Vec<_>>(), vec!["one"]);
        let second = OrderWebhook::replacing(Some(&first), "https://a.example/o".into(), "two".into(), now, hour);
        assert_eq!(second.secrets_at(now).collect::<Vec<_>>(), vec!["two", "one"]);
        assert_eq!(second.secrets_at(now + hour).collect::<Vec<_>>(), vec!["two"], "ended");
        let same = OrderWebhook::replacing(Some(&second), "https://b.example/o".into(), "two".into(), now, hour);
        assert_eq!(
            same.secrets_at(now).collect::<Vec<_>>(),
            vec!["two", "one"],
            "a new URL alone keeps the overlap"
        );
        let back = OrderWebhook::replacing(Some(&same), "https://b.example/o".into(), "one".into(), now, hour);
        assert_eq!(
            back.secrets_at(now).collect::<Vec<_>>(),
            vec!["one", "two"],
            "never twice"
        );
        let mut hook = back;
        for i in 0..20 {
            hook = OrderWebhook::replacing(Some(&hook), "https://b.example/o".into(), format!("s{i}"), now, hour);
        }
        assert_eq!(hook.secrets_at(now).count(), 1 + MAX_IN_GRACE, "bounded");
    }

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
