//! SDK failures as domain store errors.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use checkout::ports::{PipelineError, StoreError};

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

/// Error codes of SNS, SQS and DynamoDB Streams that ask the caller to slow down.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "KMSThrottlingException",
];

/// Error codes meaning the topic, queue, stream or shard does not exist.
const NOT_FOUND: &[&str] = &[
    "NotFound",
    "NotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
];

/// Error codes meaning the request itself was refused: sending it again cannot help.
const INVALID: &[&str] = &[
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterException",
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "ValidationException",
    "ValidationError",
    "BatchEntryIdsNotDistinct",
    "BatchRequestTooLong",
    "InvalidAttributeValue",
    "InvalidMessageContents",
    "TrimmedDataAccessException",
    "ExpiredIteratorException",
];

/// A failed SNS, SQS or DynamoDB Streams call, by the error code the service answered.
pub fn pipeline_error<E>(err: E) -> PipelineError
where
    E: std::error::Error + ProvideErrorMetadata,
{
    let code = err.code().map(str::to_owned);
    let message = AwsError(DisplayErrorContext(err).to_string());
    match code.as_deref() {
        Some(c) if THROTTLING.contains(&c) => PipelineError::Throttled(std::sync::Arc::new(message)),
        Some(c) if NOT_FOUND.contains(&c) => PipelineError::NotFound { what: message.0 },
        Some(c) if INVALID.contains(&c) => PipelineError::invalid(message.0),
        _ => PipelineError::unavailable(message),
    }
}
