//! Header names of a webhook delivery.

/// Standard Webhooks: the event id, stable across retries and replays.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: unix seconds of this attempt.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: `v1,<base64>`, space-separated during a secret rotation.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The session's aggregate version, so receivers can order and deduplicate.
pub const WEBHOOK_SEQUENCE: &str = "webhook-sequence";
/// 1 for the first attempt, then 2, 3…
pub const WEBHOOK_ATTEMPT: &str = "webhook-attempt";
/// ACP order webhooks: `t=<unix>,v1=<hex>`.
pub const MERCHANT_SIGNATURE: &str = "merchant-signature";
