//! Header names of the ACP checkout API.

pub const REQUEST_ID: &str = "request-id";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
pub const API_VERSION: &str = "api-version";
pub const RETRY_AFTER: &str = "retry-after";
