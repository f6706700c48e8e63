//! The flat ACP error body: `{type, code, message, param}`, and every code this API answers
//! with.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcpErrorType {
    InvalidRequest,
    ProcessingError,
    ServiceUnavailable,
}

/// The `code` of an ACP error (the spec leaves codes to the implementation; the idempotency
/// ones are the spec's own). Clients branch on these: a code once answered keeps its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // The request as a whole.
    MissingApiKey,
    InvalidApiKey,
    UnsupportedApiVersion,
    IdempotencyKeyRequired,
    InvalidIdempotencyKey,
    IdempotencyConflict,
    IdempotencyInFlight,
    RequestTooLarge,
    RequestTimeout,
    InvalidBody,
    InvalidJson,
    InvalidRequest,
    InvalidQuery,
    NotFound,
    MethodNotAllowed,
    // Checkout sessions.
    /// A required part of the request is absent (no items).
    Missing,
    InvalidItemId,
    InvalidQuantity,
    UnsupportedCurrency,
    InvalidFulfillmentOption,
    InvalidPaymentData,
    SessionNotModifiable,
    SessionNotCancelable,
    SessionNotReady,
    SessionTooLarge,
    /// Issuer authentication (3-D Secure) must come with the completion.
    #[serde(rename = "requires_3ds")]
    Requires3ds,
    ConcurrentModification,
    // Webhook endpoints, attempts and replays.
    InvalidUrl,
    InvalidEventType,
    InvalidRateLimit,
    InvalidDescription,
    InvalidGracePeriod,
    InvalidSecret,
    InvalidLimit,
    InvalidCursor,
    InvalidWindow,
    NothingToUpdate,
    ReplayInProgress,
    EndpointDisabled,
    EndpointPaused,
    TooManyEndpoints,
    // Our side.
    TestEventsUnavailable,
    StorageUnavailable,
    StorageRefused,
    RecordUnreadable,
    CommitTimeout,
    PaymentProcessorUnavailable,
    SecretGenerationFailed,
    ReplayUnavailable,
    PortalUnavailable,
    InternalError,
    /// A code this build does not know (read from a newer peer).
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcpError {
    #[serde(rename = "type")]
    pub kind: AcpErrorType,
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<Vec<String>>,
}

impl AcpError {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: AcpErrorType::InvalidRequest,
            code,
            message: message.into(),
            param: None,
            supported_versions: None,
        }
    }

    pub fn processing(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: AcpErrorType::ProcessingError,
            ..Self::invalid(code, message)
        }
    }

    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: AcpErrorType::ServiceUnavailable,
            ..Self::invalid(code, message)
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_written_in_snake_case_and_unknown_ones_still_read() {
        let error = AcpError::invalid(ErrorCode::IdempotencyKeyRequired, "m");
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json["code"], "idempotency_key_required");
        assert_eq!(json["type"], "invalid_request");
        let newer: AcpError =
            serde_json::from_str(r#"{"type":"invalid_request","code":"from_the_future","message":"m"}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Unknown);
    }
}
