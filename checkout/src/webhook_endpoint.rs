//! A merchant's webhook endpoint: where events go, which ones, how fast, signed how and with
//! which credentials.
//!
//! - HMAC secrets are `whsec_` + base64 of 24 random bytes (Standard Webhooks `v1`). Every
//!   endpoint has one, whatever its scheme, so it can switch back to `hmac` at any time.
//! - ed25519 key pairs ([`SigningKey`], Standard Webhooks `v1a`) exist while the endpoint's
//!   [`SignatureScheme`] asks for them; their public halves are published for receivers.
//!
//! A rotation replaces the current credential of each kind the scheme uses; the rotated-out one
//! keeps signing next to the new one until its grace period ends, so receivers can switch without
//! dropping a delivery. A credential leaves the record only at a later change, after the expiry
//! that a stored change gave it has passed: so a store that publishes public keys learns every
//! key's end before the key is gone from the record (see `KeyRegistry::published_keys`).

use crate::clock::Timestamp;
use crate::event::EventType;
use crate::ids::{EndpointId, MerchantId};
use crate::signing_key::{KeyError, SigningKey};
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
/// Endpoints a merchant may have. Bounds what one merchant adds to every endpoint read of the
/// dispatcher and to the public key set (Stripe allows 16 per account).
pub const MAX_ENDPOINTS_PER_MERCHANT: usize = 50;
/// Rotated-out credentials of one kind still signing beside the current one, at most: a further
/// rotation ends the oldest one's grace at once. Bounds the record, the signature header and the
/// work of every delivery, whatever a merchant's script does.
pub const MAX_IN_GRACE: usize = 4;

/// Which signatures a delivery carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// `v1` (HMAC-SHA256 with the endpoint's secret): what every Standard Webhooks library checks.
    #[default]
    Hmac,
    /// `v1a` (ed25519): receivers verify with a published public key, no shared secret.
    Ed25519,
    /// Both, for a receiver moving from one to the other.
    Both,
}

impl SignatureScheme {
    pub fn signs_hmac(self) -> bool {
        self != Self::Ed25519
    }

    pub fn signs_ed25519(self) -> bool {
        self != Self::Hmac
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::Ed25519 => "ed25519",
            Self::Both => "both",
        }
    }
}

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
    #[serde(default)]
    pub signature_scheme: SignatureScheme,
    /// ed25519 key pairs: the current one first, then rotated-out or retired ones (each with
    /// its `expires_at`). Empty for an endpoint that never signed with `v1a`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKey>,
    /// Since when the merchant has held its deliveries (see [`WebhookEndpoint::pause`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::clock::optional_rfc3339_serde"
    )]
    pub paused_at: Option<Timestamp>,
    /// While paused: the creation time of the oldest event held, when it is older than the
    /// pause (a delivery already waiting for a retry when the pause began). A resume sends the
    /// held deliveries of events from here on.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::clock::optional_rfc3339_serde"
    )]
    pub held_from: Option<Timestamp>,
    /// A pause whose resume was stored but whose job was not queued yet: the next resume
    /// queues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resuming: Option<Pause>,
}

/// Where an endpoint stands, as merchants see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Deliveries are sent.
    Enabled,
    /// Deliveries are recorded as held, nothing is sent; a resume sends them.
    Paused,
    /// Nothing is sent; its events are recorded as skipped, for a replay.
    Disabled,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }
}

/// A pause that a resume ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub paused_at: Timestamp,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::clock::optional_rfc3339_serde"
    )]
    pub held_from: Option<Timestamp>,
    /// When the resume that ended it was stored: tells two resumes of the same window apart.
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub resumed_at: Timestamp,
}

impl Pause {
    /// The start of the window whose held deliveries the resume sends: the pause's start, or
    /// the oldest event it held when older.
    pub fn held_since(&self) -> Timestamp {
        self.held_from.map_or(self.paused_at, |held| held.min(self.paused_at))
    }
}

/// Why a pause or a resume cannot be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PauseError {
    #[error("the endpoint is disabled: enable it first")]
    Disabled,
}

/// A signing credential that can be rotated out: it signs until its `expires_at`.
trait Expiring {
    fn expires_at(&mut self) -> &mut Option<Timestamp>;
}

impl Expiring for SigningSecret {
    fn expires_at(&mut self) -> &mut Option<Timestamp> {
        &mut self.expires_at
    }
}

impl Expiring for SigningKey {
    fn expires_at(&mut self) -> &mut Option<Timestamp> {
        &mut self.expires_at
    }
}

/// Drops the credentials whose end has passed (their end was stored by an earlier change).
fn prune<C: Expiring>(list: &mut Vec<C>, now: Timestamp) {
    list.retain_mut(|c| c.expires_at().is_none_or(|t| t > now));
}

/// Puts `fresh` first. Credentials whose expiry had passed leave; the others sign on until
/// `now + grace` at the latest (a rotation without grace ends every older one at once, as after
/// a leak); past [`MAX_IN_GRACE`] in grace, the oldest end now (and leave at a later change).
fn rotate_in<C: Expiring>(list: &mut Vec<C>, fresh: C, now: Timestamp, grace: Duration) {
    prune(list, now);
    for c in list.iter_mut() {
        let ends = c.expires_at();
        *ends = Some(ends.map_or(now + grace, |t| t.min(now + grace)));
    }
    list.insert(0, fresh);
    for c in list.iter_mut().skip(1 + MAX_IN_GRACE) {
        let ends = c.expires_at();
        *ends = Some(ends.map_or(now, |t| t.min(now)));
    }
}

/// The order every store lists a merchant's endpoints in: oldest first (by creation time, then
/// id), whatever order they were written or edited in.
pub fn sort_oldest_first(endpoints: &mut [WebhookEndpoint]) {
    endpoints.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
}

impl WebhookEndpoint {
    pub fn new(merchant_id: MerchantId, url: String, now: Timestamp) -> Result<Self, KeyError> {
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
            signature_scheme: SignatureScheme::Hmac,
            signing_keys: Vec::new(),
            paused_at: None,
            held_from: None,
            resuming: None,
        })
    }

    pub fn state(&self) -> EndpointState {
        match (self.enabled, self.paused_at) {
            (false, _) => EndpointState::Disabled,
            (true, Some(_)) => EndpointState::Paused,
            (true, None) => EndpointState::Enabled,
        }
    }

    /// Holds the endpoint's deliveries from now on: each is recorded as paused and nothing is
    /// sent until [`WebhookEndpoint::resume`]. Pausing a paused endpoint changes nothing (its
    /// pause keeps its start). Returns whether the endpoint changed.
    pub fn pause(&mut self, now: Timestamp) -> Result<bool, PauseError> {
        if !self.enabled {
            return Err(PauseError::Disabled);
        }
        if self.paused_at.is_some() {
            return Ok(false);
        }
        self.paused_at = Some(now);
        self.held_from = None;
        self.updated_at = now;
        Ok(true)
    }

    /// Whether the current pause's resume will reach a held delivery of an event created at
    /// `event_at` (its window starts at the pause, or at the oldest event held before it).
    pub fn pause_covers(&self, event_at: Timestamp) -> bool {
        self.paused_at
            .is_some_and(|paused_at| event_at >= self.held_from.unwrap_or(paused_at).min(paused_at))
    }

    /// Makes the current pause's resume reach back to an event created at `event_at` whose
    /// delivery it holds; returns whether the record changed (only for an event older than the
    /// pause and than any held before). Not paused: nothing changes.
    pub fn hold(&mut self, event_at: Timestamp) -> bool {
        if self.paused_at.is_none() || self.pause_covers(event_at) {
            return false;
        }
        self.held_from = Some(event_at);
        true
    }

    /// Ends the pause: sends again from now on, and keeps the pause as [`Self::resuming`] until
    /// the job sending what it held is queued ([`Self::resumed`]) — so a resume interrupted
    /// before that (a crash, a queue that is down) is finished by the next one. Returns what is
    /// to be resumed (with a resume still unfinished, both windows as one), or `None` when there
    /// is nothing. Failures before the pause do not count towards disabling the endpoint after:
    /// the receiver had no chance to recover meanwhile.
    pub fn resume(&mut self, now: Timestamp) -> Result<Option<Pause>, PauseError> {
        if !self.enabled {
            return Err(PauseError::Disabled);
        }
        if let Some(paused_at) = self.paused_at.take() {
            let pause = Pause {
                paused_at,
                held_from: self.held_from.take(),
                resumed_at: now,
            };
            let merged = match self.resuming {
                Some(earlier) => Pause {
                    paused_at: earlier.paused_at.min(pause.paused_at),
                    held_from: Some(earlier.held_since().min(pause.held_since())),
                    resumed_at: now,
                },
                None => pause,
            };
            self.resuming = Some(merged);
            self.failing_since = None;
            self.updated_at = now;
        }
        Ok(self.resuming)
    }

    /// The job sending what `pause` held is queued: the resume is finished (unless another
    /// resume took its place meanwhile). Returns whether the record changed.
    pub fn resumed(&mut self, pause: Pause, now: Timestamp) -> bool {
        if self.resuming != Some(pause) {
            return false;
        }
        self.resuming = None;
        self.updated_at = now;
        true
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

    /// ed25519 keys that sign a delivery made at `now`: the current one and those in grace.
    /// None unless the scheme signs with ed25519.
    pub fn signing_keys(&self, now: Timestamp) -> impl Iterator<Item = &SigningKey> {
        let scheme = self.signature_scheme;
        self.signing_keys
            .iter()
            .filter(move |k| scheme.signs_ed25519() && k.active(now))
    }

    /// HMAC secrets that sign a delivery made at `now`; none unless the scheme signs with HMAC.
    pub fn hmac_secrets(&self, now: Timestamp) -> impl Iterator<Item = &str> {
        let scheme = self.signature_scheme;
        self.signing_secrets(now).filter(move |_| scheme.signs_hmac())
    }

    /// A new current secret, and a new current key when the scheme signs with ed25519; the old
    /// current ones sign on until `now + grace` (see [`rotate_in`]).
    pub fn rotate(&mut self, now: Timestamp, grace: Duration) -> Result<&str, KeyError> {
        let fresh = SigningSecret {
            secret: generate_secret()?,
            expires_at: None,
        };
        rotate_in(&mut self.secrets, fresh, now, grace);
        if self.signature_scheme.signs_ed25519() {
            rotate_in(&mut self.signing_keys, SigningKey::generate(now)?, now, grace);
        } else {
            prune(&mut self.signing_keys, now);
        }
        self.updated_at = now;
        Ok(&self.secrets[0].secret)
    }

    /// Switches the scheme. Moving to ed25519 (or both) makes a key pair if none signs; moving to
    /// `hmac` retires every key at once, and the published keys with them. Moving from ed25519
    /// alone to v1 signatures makes a fresh secret (the one kept while v1 was off is not used
    /// again: switching back and forth must not be a way to read a secret without rotating it).
    pub fn set_signature_scheme(&mut self, scheme: SignatureScheme, now: Timestamp) -> Result<(), KeyError> {
        if scheme.signs_hmac() && !self.signature_scheme.signs_hmac() {
            let fresh = SigningSecret {
                secret: generate_secret()?,
                expires_at: None,
            };
            rotate_in(&mut self.secrets, fresh, now, Duration::zero());
        }
        if scheme.signs_ed25519() && !self.signing_keys.iter().any(|k| k.active(now)) {
            rotate_in(
                &mut self.signing_keys,
                SigningKey::generate(now)?,
                now,
                Duration::zero(),
            );
        }
        if !scheme.signs_ed25519() {
            for key in self.signing_keys.iter_mut().filter(|k| k.active(now)) {
                key.expires_at = Some(now);
            }
        }
        self.signature_scheme = scheme;
        self.updated_at = now;
        Ok(())
    }
}

pub fn generate_secret() -> Result<String, KeyError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|_| KeyError::NoRandomness)?;
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
        assert_eq!(e.signing_secrets(later).collect::<Vec<_>>(), vec![newest.as_str()]);
        assert_eq!(e.secrets.len(), 2, "an expiry is stored before its secret leaves");
        e.rotate(later + Duration::seconds(1), Duration::zero()).unwrap();
        assert_eq!(
            e.secrets.len(),
            2,
            "expired secrets are dropped at a later change: {:?}",
            e.secrets
        );
        assert_ne!(e.current_secret(), Some(newest.as_str()));
    }

    #[test]
    fn a_rotation_of_an_ed25519_endpoint_rotates_its_key_with_the_same_grace() {
        let mut e = endpoint();
        let now = clock::now();
        assert_eq!(e.signing_keys(now).count(), 0, "hmac endpoints have no key");
        e.set_signature_scheme(SignatureScheme::Ed25519, now).unwrap();
        let first = e.signing_keys(now).next().unwrap().kid.clone();
        assert_eq!(e.hmac_secrets(now).count(), 0, "ed25519 alone signs no v1");
        e.rotate(now, Duration::hours(1)).unwrap();
        let kids: Vec<_> = e.signing_keys(now).map(|k| k.kid.clone()).collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1], first, "the rotated-out key signs on through its grace");
        let later = now + Duration::hours(2);
        assert_eq!(e.signing_keys(later).count(), 1);
        assert_ne!(e.signing_keys(later).next().unwrap().kid, first);
    }

    #[test]
    fn switching_schemes_makes_one_key_and_retires_keys_at_once() {
        let mut e = endpoint();
        let now = clock::now();
        e.set_signature_scheme(SignatureScheme::Both, now).unwrap();
        e.set_signature_scheme(SignatureScheme::Ed25519, now).unwrap();
        assert_eq!(e.signing_keys.len(), 1, "an active key is kept, not replaced");
        assert_eq!(e.hmac_secrets(now).count(), 0);
        e.set_signature_scheme(SignatureScheme::Hmac, now).unwrap();
        assert_eq!(e.signing_keys(now).count(), 0);
        assert_eq!(
            e.signing_keys[0].expires_at,
            Some(now),
            "the retired key keeps its end, for the store to unpublish it"
        );
        assert_eq!(e.hmac_secrets(now).count(), 1);
        e.set_signature_scheme(SignatureScheme::Ed25519, now + Duration::seconds(1))
            .unwrap();
        assert_eq!(e.signing_keys(now + Duration::seconds(1)).count(), 1, "a fresh key");
    }

    /// A review found that switching an endpoint to ed25519 and back to v1 showed (in the
    /// portal) the secret it had before, still valid, without a rotation.
    #[test]
    fn turning_v1_signatures_back_on_makes_a_fresh_secret() {
        let mut e = endpoint();
        let now = clock::now();
        let before = e.current_secret().unwrap().to_owned();
        e.set_signature_scheme(SignatureScheme::Both, now).unwrap();
        assert_eq!(
            e.current_secret(),
            Some(before.as_str()),
            "v1 went on signing: the same secret"
        );
        e.set_signature_scheme(SignatureScheme::Ed25519, now).unwrap();
        let later = now + Duration::seconds(1);
        e.set_signature_scheme(SignatureScheme::Hmac, later).unwrap();
        let fresh = e.current_secret().unwrap().to_owned();
        assert_ne!(fresh, before);
        assert_eq!(
            e.hmac_secrets(later).collect::<Vec<_>>(),
            vec![fresh.as_str()],
            "the old one signs no more"
        );
    }

    /// A review found a rotation without grace (what a merchant does after a leak) left the
    /// secrets already in grace signing until their own end.
    #[test]
    fn a_rotation_without_grace_ends_every_older_credential_at_once() {
        let mut e = endpoint();
        let now = clock::now();
        e.set_signature_scheme(SignatureScheme::Both, now).unwrap();
        e.rotate(now, Duration::days(7)).unwrap();
        e.rotate(now, Duration::days(7)).unwrap();
        assert_eq!(e.signing_secrets(now).count(), 3);
        let later = now + Duration::seconds(1);
        e.rotate(later, Duration::zero()).unwrap();
        assert_eq!(e.signing_secrets(later).count(), 1);
        assert_eq!(e.signing_keys(later).count(), 1);
    }

    #[test]
    fn an_hmac_endpoint_drops_its_ended_keys_at_a_rotation() {
        let mut e = endpoint();
        let now = clock::now();
        e.set_signature_scheme(SignatureScheme::Ed25519, now).unwrap();
        e.set_signature_scheme(SignatureScheme::Hmac, now).unwrap();
        assert_eq!(e.signing_keys.len(), 1, "kept until a later change, its end stored");
        e.rotate(now + Duration::seconds(1), Duration::hours(1)).unwrap();
        assert!(e.signing_keys.is_empty());
    }

    #[test]
    fn rotations_in_a_loop_keep_a_bounded_record() {
        let mut e = endpoint();
        let now = clock::now();
        e.set_signature_scheme(SignatureScheme::Both, now).unwrap();
        for i in 0..50 {
            e.rotate(now + Duration::milliseconds(i), Duration::days(7)).unwrap();
        }
        let at = now + Duration::milliseconds(50);
        assert_eq!(e.signing_secrets(at).count(), 1 + MAX_IN_GRACE);
        assert_eq!(e.signing_keys(at).count(), 1 + MAX_IN_GRACE);
        assert!(e.secrets.len() <= 2 + MAX_IN_GRACE, "{}", e.secrets.len());
        assert!(e.signing_keys.len() <= 2 + MAX_IN_GRACE, "{}", e.signing_keys.len());
    }

    #[test]
    fn records_of_earlier_versions_read_as_hmac_endpoints() {
        let mut value = serde_json::to_value(endpoint()).unwrap();
        value.as_object_mut().unwrap().remove("signature_scheme");
        let read: WebhookEndpoint = serde_json::from_value(value).unwrap();
        assert_eq!(read.signature_scheme, SignatureScheme::Hmac);
        assert!(read.signing_keys.is_empty());
    }

    #[test]
    fn a_pause_holds_until_resumed_and_keeps_its_start() {
        let mut e = endpoint();
        let t0 = clock::now();
        assert_eq!(e.state(), EndpointState::Enabled);
        assert_eq!(e.pause(t0), Ok(true));
        assert_eq!(e.state(), EndpointState::Paused);
        assert_eq!(
            e.pause(t0 + Duration::seconds(5)),
            Ok(false),
            "a second pause keeps the first start"
        );
        assert_eq!(e.paused_at, Some(t0));
        e.failing_since = Some(t0 - Duration::days(4));
        let pause = e.resume(t0 + Duration::days(2)).unwrap().unwrap();
        assert_eq!(pause.held_since(), t0);
        assert_eq!(e.state(), EndpointState::Enabled);
        assert_eq!(e.failing_since, None, "the pause does not count towards disabling");
        assert_eq!(
            e.resume(t0 + Duration::days(2)),
            Ok(Some(pause)),
            "unfinished: the next resume finishes it"
        );
        assert!(e.resumed(pause, t0 + Duration::days(2)));
        assert_eq!(e.resume(t0 + Duration::days(2)), Ok(None), "nothing more to resume");
    }

    #[test]
    fn a_resume_reaches_back_to_the_oldest_event_its_pause_held() {
        let mut e = endpoint();
        let t0 = clock::now();
        assert!(!e.hold(t0 - Duration::hours(2)), "not paused: nothing to reach");
        e.pause(t0).unwrap();
        assert!(e.pause_covers(t0 + Duration::seconds(1)));
        assert!(!e.hold(t0 + Duration::seconds(1)), "events of the pause need no mark");
        assert!(!e.pause_covers(t0 - Duration::hours(2)));
        assert!(e.hold(t0 - Duration::hours(2)), "a retry pending when the pause began");
        assert!(e.pause_covers(t0 - Duration::hours(2)));
        assert!(!e.hold(t0 - Duration::hours(1)), "not older than the one held");
        assert!(e.hold(t0 - Duration::hours(3)));
        let pause = e.resume(t0 + Duration::hours(1)).unwrap().unwrap();
        assert_eq!(pause.held_since(), t0 - Duration::hours(3));
        assert_eq!(e.held_from, None);
        assert!(!e.pause_covers(t0), "resumed: no pause covers anything");
        // Paused again before the first resume's job was queued: one window for both.
        e.pause(t0 + Duration::hours(2)).unwrap();
        assert!(e.hold(t0 + Duration::hours(1)), "marked against the pause now current");
        let both = e.resume(t0 + Duration::hours(3)).unwrap().unwrap();
        assert_eq!(both.held_since(), t0 - Duration::hours(3));
        assert!(
            !e.resumed(pause, t0 + Duration::hours(3)),
            "not the resume in place now"
        );
        assert!(e.resumed(both, t0 + Duration::hours(3)));
        e.pause(t0 + Duration::hours(4)).unwrap();
        let fresh = e.resume(t0 + Duration::hours(5)).unwrap().unwrap();
        assert_eq!(fresh.held_since(), t0 + Duration::hours(4), "a new pause starts afresh");
    }

    #[test]
    fn a_disabled_endpoint_is_neither_paused_nor_resumed() {
        let mut e = endpoint();
        let now = clock::now();
        e.pause(now).unwrap();
        e.disable("gone".into(), now);
        assert_eq!(e.state(), EndpointState::Disabled);
        assert_eq!(e.resume(now), Err(PauseError::Disabled));
        assert_eq!(e.pause(now), Err(PauseError::Disabled));
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
