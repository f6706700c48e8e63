//! SDK failures as domain store errors.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use checkout::ports::StoreError;

/// The SDK's error, flattened to its full message chain (its own type carries the raw HTTP
/// response, which we do not want to hold on to).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AwsError(String);

pub fn unavailable<E: std::error::Error>(err: E) -> StoreError {
    StoreError::unavailable(AwsError(DisplayErrorContext(err).to_string()))
}

/// A failed DynamoDB call: a `ValidationException` (an item over 400 KB, a transaction over its
/// limits) is permanent and says so; anything else may pass.
pub fn failed_call<E: std::error::Error + ProvideErrorMetadata>(err: E) -> StoreError {
    if err.code() == Some("ValidationException") {
        return StoreError::Refused(DisplayErrorContext(err).to_string());
    }
    unavailable(err)
}

pub fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}
