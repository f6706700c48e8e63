//! Wire types of the Agentic Commerce Protocol checkout API, version 2026-04-17.
//!
//! Requests are strict (`deny_unknown_fields`, as the JSON Schema's `additionalProperties: false`);
//! objects the seller only passes along (attribution, risk signals…) are kept as JSON values.

mod error;
mod parse;
mod request;
mod session;
mod strict;
mod version;

pub use error::{AcpError, AcpErrorType, ErrorCode};
pub use parse::{MAX_JSON_DEPTH, parse_body};
pub use request::*;
pub use session::*;
pub use version::{ApiVersion, SUPPORTED_VERSIONS};
