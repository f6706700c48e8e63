//! Header names of a webhook delivery.

use http::HeaderName;

/// Standard Webhooks: the event id, stable across retries and replays.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// Standard Webhooks: unix seconds of this attempt.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Standard Webhooks: `v1,<base64>` (HMAC) and/or `v1a,<base64>` (ed25519), space-separated:
/// several during a rotation.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
/// The `kid` of each `v1a` signature's key, in the same order, space-separated: the key to
/// look up in `/.well-known/webhook-keys`. Absent when no `v1a` signature is sent.
pub const WEBHOOK_KEY_ID: HeaderName = HeaderName::from_static("webhook-key-id");
/// The session's aggregate version, so receivers can order and deduplicate.
pub const WEBHOOK_SEQUENCE: HeaderName = HeaderName::from_static("webhook-sequence");
/// 1 for the first attempt, then 2, 3…
pub const WEBHOOK_ATTEMPT: HeaderName = HeaderName::from_static("webhook-attempt");
/// ACP order webhooks: `t=<unix>,v1=<hex>`.
pub const MERCHANT_SIGNATURE: HeaderName = HeaderName::from_static("merchant-signature");
