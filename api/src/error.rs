//! Every refusal of the HTTP edge and of the merchant API, and its one mapping to an ACP error
//! body. Handlers return `Result<_, ApiError>`; axum turns the error into the response.

use crate::reply::ApiReply;
use axum::response::{IntoResponse, Response};
use checkout::acp::{AcpError, ErrorCode, SUPPORTED_VERSIONS};
use checkout::service::Reply;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
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
    /// Storage failed or timed out; the cause is logged where it was met.
    #[error("storage is unavailable")]
    Unavailable,
    /// The operating system gave no random bytes for a signing secret.
    #[error("no randomness for a signing secret")]
    NoRandomness,
    #[error("replay is not configured on this deployment")]
    ReplayUnavailable,
    #[error("test events are not configured on this deployment")]
    TestEventsUnavailable,
    /// No public address to put in a portal link (neither configured nor given by the front).
    #[error("the portal's address is not known on this deployment")]
    PortalUnavailable,
    /// An endpoint runs one replay at a time; this one is running.
    #[error(
        "replay {0} of this endpoint is still running: wait for it to complete (GET /webhook_endpoints/{{id}}/replays/{0}) before starting another"
    )]
    ReplayInProgress(String),
    #[error("the endpoint is disabled: enable it first (PATCH with \"enabled\": true)")]
    EndpointDisabled,
    #[error(
        "the endpoint is paused: resume it first (POST /webhook_endpoints/{{id}}/resume sends what the pause held)"
    )]
    EndpointPaused,
    #[error("a merchant may have at most {0} webhook endpoints: delete one before adding another")]
    TooManyEndpoints(usize),
    /// The request is understood and refused: the error says which field and why.
    #[error("{}", .0.message)]
    Invalid(AcpError),
}

impl ApiError {
    /// A 400 naming the field (a JSONPath) and what is wrong with it.
    pub fn invalid(code: ErrorCode, message: impl Into<String>, param: &str) -> Self {
        Self::Invalid(AcpError::invalid(code, message).with_param(param))
    }

    /// Storage failed: logged here, told to the client as a 503 without the details.
    pub fn storage(err: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %err, "storage failed");
        Self::Unavailable
    }

    /// The system's random source failed: not a storage problem, though also worth a retry.
    pub fn no_randomness(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "no random bytes for a signing secret");
        Self::NoRandomness
    }

    pub fn reply(self) -> Reply {
        let message = self.to_string();
        let (status, error) = match self {
            Self::MissingApiKey => (401, AcpError::invalid(ErrorCode::MissingApiKey, message)),
            Self::InvalidApiKey => (401, AcpError::invalid(ErrorCode::InvalidApiKey, message)),
            Self::UnsupportedVersion(_) => (
                400,
                AcpError {
                    supported_versions: Some(SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect()),
                    ..AcpError::invalid(ErrorCode::UnsupportedApiVersion, message)
                },
            ),
            Self::IdempotencyKeyRequired => (400, AcpError::invalid(ErrorCode::IdempotencyKeyRequired, message)),
            Self::IdempotencyKeyInvalid => (400, AcpError::invalid(ErrorCode::InvalidIdempotencyKey, message)),
            Self::BodyTooLarge(_) => (413, AcpError::invalid(ErrorCode::RequestTooLarge, message)),
            Self::BodyUnreadable => (400, AcpError::invalid(ErrorCode::InvalidBody, message)),
            Self::BodyTimeout(_) => (408, AcpError::invalid(ErrorCode::RequestTimeout, message)),
            Self::NotFound => (404, AcpError::invalid(ErrorCode::NotFound, message)),
            Self::MethodNotAllowed => (405, AcpError::invalid(ErrorCode::MethodNotAllowed, message)),
            Self::Unavailable => (
                503,
                AcpError::unavailable(ErrorCode::StorageUnavailable, "Storage is unavailable; retry later."),
            ),
            Self::NoRandomness => (
                503,
                AcpError::unavailable(
                    ErrorCode::SecretGenerationFailed,
                    "A signing secret could not be generated; retry later.",
                ),
            ),
            Self::TestEventsUnavailable => (
                503,
                AcpError::unavailable(
                    ErrorCode::TestEventsUnavailable,
                    "Test events are not configured on this deployment.",
                ),
            ),
            Self::PortalUnavailable => (
                503,
                AcpError::unavailable(
                    ErrorCode::PortalUnavailable,
                    "The portal's address is not known on this deployment: set its public base URL.",
                ),
            ),
            Self::ReplayUnavailable => (
                503,
                AcpError::unavailable(
                    ErrorCode::ReplayUnavailable,
                    "Replay is not configured on this deployment.",
                ),
            ),
            Self::ReplayInProgress(_) => (409, AcpError::invalid(ErrorCode::ReplayInProgress, message)),
            Self::EndpointDisabled => (409, AcpError::invalid(ErrorCode::EndpointDisabled, message)),
            Self::EndpointPaused => (409, AcpError::invalid(ErrorCode::EndpointPaused, message)),
            Self::TooManyEndpoints(_) => (409, AcpError::invalid(ErrorCode::TooManyEndpoints, message)),
            Self::Invalid(error) => (400, error),
        };
        Reply::error(status, &error)
    }
}

impl From<checkout::endpoint_settings::SettingError> for ApiError {
    fn from(err: checkout::endpoint_settings::SettingError) -> Self {
        let param = err.param();
        Self::Invalid(AcpError::invalid(err.code(), err.to_string()).with_param(param))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        ApiReply(self.reply()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed random source is told as what it is, not as a storage outage.
    #[test]
    fn no_randomness_is_not_a_storage_outage() {
        let reply = ApiError::NoRandomness.reply();
        assert_eq!(reply.status, 503);
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["code"], "secret_generation_failed");
    }
}
