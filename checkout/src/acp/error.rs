//! The flat ACP error body: `{type, code, message, param}`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcpErrorType {
    InvalidRequest,
    ProcessingError,
    ServiceUnavailable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcpError {
    #[serde(rename = "type")]
    pub kind: AcpErrorType,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<Vec<String>>,
}

impl AcpError {
    pub fn invalid(code: &str, message: impl Into<String>) -> Self {
        Self {
            kind: AcpErrorType::InvalidRequest,
            code: code.to_owned(),
            message: message.into(),
            param: None,
            supported_versions: None,
        }
    }

    pub fn processing(code: &str, message: impl Into<String>) -> Self {
        Self {
            kind: AcpErrorType::ProcessingError,
            ..Self::invalid(code, message)
        }
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
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
