//! AWS adapters. DynamoDB holds the event store, idempotency records and merchants; every
//! write that must not be lost or duplicated is a conditional write or a transaction.

mod dynamo;
mod error;
mod tables;

pub use dynamo::DynamoStore;
pub use tables::{TableNames, create_tables};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

/// Loads the SDK configuration the usual way (environment, profile, instance role), honouring
/// `AWS_ENDPOINT_URL` for AWS-compatible endpoints.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// A DynamoDB client for a local AWS-compatible endpoint (moto in the tests), with dummy keys.
pub fn local_dynamodb_client(endpoint_url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "local"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
