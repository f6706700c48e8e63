//! A merchant's webhook endpoint: where events go, which ones, how fast, signed with which
//! secrets. Secrets are `whsec_` + base64 of 24 random bytes (the Standard Webhooks format); a
//! rotated-out secret keeps signing next to the new one until its grace period ends, so
//! receivers can switch without dropping a delivery.

use crate::clock::Timestamp;
use crate::event::EventType;
use crate::ids::{EndpointId, MerchantId};
use base64::Engine;
use chrono::Duration;
use serde::{Deserialize, Serialize};

/// How long a rotated-out secret keeps signing, unless the rotation says otherwise.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::hours(24);
/// The longest grace period a rotation may ask for.
pub const MAX_ROTATION_GRACE: Duration = Duration::days(7);
/// Bounds of `rate_limit` (deliveries per second).
pub const MAX_RATE_LIMIT: u32 = 10_000;
/// An endpoint that has failed without a single success for this long is disabled.
pub const FAILING_DISABLE_AFTER: Duration = Duration::days(5);
/// An endpoint's description, at most this many characters.
pub const MAX_DESCRIPTION_LEN: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    /// When a rotated-out secret stops signing; `None` for the current one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::clock::optional_rfc3339_serde"
    )]
    pub expires_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: EndpointId,
    pub merchant_id: MerchantId,
    pub url: String,
    /// Empty: every event type.
    pub event_types: Vec<EventType>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Deliveries per second this endpoint can take; `None`: no limit of its own.
    pub rate_limit: Option<u32>,
    /// The current secret first, then rotated-out ones still in their grace period.
    pub secrets: Vec<SigningSecret>,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub created_at: Timestamp,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub updated_at: Timestamp,
    /// Why the system disabled it (e.g. HTTP 410, failing for days); `None` when enabled by hand.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed (cleared by a success); after
    /// [`FAILING_DISABLE_AFTER`] of that the endpoint is disabled.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::clock::optional_rfc3339_serde"
    )]
    pub failing_since: Option<Timestamp>,
    /// How many times it was stored (see [`crate::merchant::Merchant::revision`]).
    #[serde(default)]
    pub revision: u64,
}

/// The order every store lists a merchant's endpoints in: oldest first (by creation time, then
/// id), whatever order they were written or edited in.
pub fn sort_oldest_first(endpoints: &mut [WebhookEndpoint]) {
    endpoints.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
}

impl WebhookEndpoint {
    pub fn new(merchant_id: MerchantId, url: String, now: Timestamp) -> Result<Self, getrandom::Error> {
        Ok(Self {
            id: EndpointId::generate(),
            merchant_id,
            url,
            event_types: Vec::new(),
            description: None,
            enabled: true,
            rate_limit: None,
            secrets: vec![SigningSecret {
                secret: generate_secret()?,
                expires_at: None,
            }],
            created_at: now,
            updated_at: now,
            disabled_reason: None,
            failing_since: None,
            revision: 0,
        })
    }

    /// Turned off by the system, saying why; the merchant turns it back on with `enabled: true`.
    pub fn disable(&mut self, reason: String, now: Timestamp) {
        self.enabled = false;
        self.disabled_reason = Some(reason);
        self.updated_at = now;
    }

    pub fn subscribes_to(&self, kind: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&kind)
    }

    /// Secrets that sign a delivery made at `now`: the current one and those still in grace.
    pub fn signing_secrets(&self, now: Timestamp) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|t| t > now))
            .map(|s| s.secret.as_str())
    }

    pub fn current_secret(&self) -> Option<&str> {
        self.secrets.first().map(|s| s.secret.as_str())
    }

    /// A new current secret; the old current one signs on until `now + grace`, and secrets whose
    /// grace already ended are dropped.
    pub fn rotate(&mut self, now: Timestamp, grace: Duration) -> Result<&str, getrandom::Error> {
        let fresh = generate_secret()?;
        for secret in &mut self.secrets {
            if secret.expires_at.is_none() {
                secret.expires_at = Some(now + grace);
            }
        }
        self.secrets.retain(|s| s.expires_at.is_some_and(|t| t > now));
        self.secrets.insert(
            0,
            SigningSecret {
                secret: fresh,
                expires_at: None,
            },
        );
        self.updated_at = now;
        Ok(&self.secrets[0].secret)
    }
}

pub fn generate_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn endpoint() -> WebhookEndpoint {
        WebhookEndpoint::new(MerchantId::generate(), "https://example.com/hook".into(), clock::now()).unwrap()
    }

    #[test]
    fn secrets_look_like_standard_webhooks_secrets() {
        let e = endpoint();
        let secret = e.current_secret().unwrap();
        assert!(secret.starts_with("whsec_"));
        let raw = base64::engine::general_purpose::STANDARD.decode(&secret[6..]).unwrap();
        assert_eq!(raw.len(), 24);
    }

    #[test]
    fn rotation_keeps_the_old_secret_signing_through_the_grace_period() {
        let mut e = endpoint();
        let old = e.current_secret().unwrap().to_owned();
        let now = clock::now();
        let new = e.rotate(now, Duration::hours(24)).unwrap().to_owned();
        assert_ne!(old, new);
        assert_eq!(
            e.signing_secrets(now).collect::<Vec<_>>(),
            vec![new.as_str(), old.as_str()]
        );
        let later = now + Duration::hours(25);
        assert_eq!(e.signing_secrets(later).collect::<Vec<_>>(), vec![new.as_str()]);
        let newest = e.rotate(later, Duration::zero()).unwrap().to_owned();
        assert_eq!(e.secrets.len(), 1, "expired secrets are dropped: {:?}", e.secrets);
        assert_eq!(e.current_secret(), Some(newest.as_str()));
    }

    #[test]
    fn empty_event_types_mean_all() {
        let mut e = endpoint();
        assert!(EventType::ALL.iter().all(|k| e.subscribes_to(*k)));
        e.event_types = vec![EventType::Completed];
        assert!(e.subscribes_to(EventType::Completed));
        assert!(!e.subscribes_to(EventType::Created));
    }
}
