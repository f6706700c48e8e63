//! Refusals at the HTTP edge, before a command runs, and their one mapping to ACP errors.

use checkout::acp::{AcpError, SUPPORTED_VERSIONS};
use checkout::service::Reply;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("an Authorization header with a Bearer API key is required")]
    MissingApiKey,
    #[error("the API key is not valid")]
    InvalidApiKey,
    #[error("API-Version '{0}' is not supported")]
    UnsupportedVersion(String),
    #[error("Idempotency-Key header is required")]
    IdempotencyKeyRequired,
    #[error("Idempotency-Key must be 1 to 255 printable characters")]
    IdempotencyKeyInvalid,
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("request body could not be read")]
    BodyUnreadable,
    #[error("the request body did not arrive within {0} seconds")]
    BodyTimeout(u64),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    #[error("merchant lookup failed")]
    Unavailable,
    /// The operating system gave no random bytes for a signing secret.
    #[error("no randomness for a signing secret")]
    NoRandomness,
    #[error("{}", .0.message)]
    InvalidBody(AcpError),
}

impl EdgeError {
    pub fn reply(self) -> Reply {
        let message = self.to_string();
        let (status, error) = match self {
            Self::MissingApiKey => (401, AcpError::invalid("missing_api_key", message)),
            Self::InvalidApiKey => (401, AcpError::invalid("invalid_api_key", message)),
            Self::UnsupportedVersion(_) => (
                400,
                AcpError {
                    supported_versions: Some(SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect()),
                    ..AcpError::invalid("unsupported_api_version", message)
                },
            ),
            Self::IdempotencyKeyRequired => (400, AcpError::invalid("idempotency_key_required", message)),
            Self::IdempotencyKeyInvalid => (400, AcpError::invalid("invalid_idempotency_key", message)),
            Self::BodyTooLarge(_) => (413, AcpError::invalid("request_too_large", message)),
            Self::BodyUnreadable => (400, AcpError::invalid("invalid_body", message)),
            Self::BodyTimeout(_) => (408, AcpError::invalid("request_timeout", message)),
            Self::NotFound => (404, AcpError::invalid("not_found", message)),
            Self::MethodNotAllowed => (405, AcpError::invalid("method_not_allowed", message)),
            Self::Unavailable => (
                503,
                AcpError::unavailable("storage_unavailable", "Storage is unavailable; retry later."),
            ),
            Self::NoRandomness => (
                503,
                AcpError::unavailable(
                    "secret_generation_failed",
                    "A signing secret could not be generated; retry later.",
                ),
            ),
            Self::InvalidBody(error) => (400, error),
        };
        Reply::error(status, &error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed random source is told as what it is, not as a storage outage.
    #[test]
    fn no_randomness_is_not_a_storage_outage() {
        let reply = EdgeError::NoRandomness.reply();
        assert_eq!(reply.status, 503);
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["code"], "secret_generation_failed");
        assert_ne!(body["code"], "storage_unavailable");
    }
}
