//! SDK failures as domain store errors.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use checkout::ports::StoreError;

/// The SDK's error, flattened to its full message chain (its own type carries the raw HTTP
/// response, which we do not want to hold on to).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AwsError(String);

pub fn unavailable<E: std::error::Error>(err: E) -> StoreError {
    StoreError::unavailable(AwsError(DisplayErrorContext(err).to_string()))
}

pub fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}
