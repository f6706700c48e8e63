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

/// Test support: backends on the moto server that `scripts/test` starts.
#[cfg(feature = "testkit")]
pub mod testkit {
    use super::{DynamoStore, TableNames, create_tables, local_dynamodb_client};
    use checkout::ports::Backend;
    use std::sync::Arc;

    /// The moto endpoint `scripts/test` exported.
    pub fn endpoint() -> String {
        std::env::var("ACP_TEST_AWS_ENDPOINT")
            .expect("ACP_TEST_AWS_ENDPOINT is not set: run the suite with scripts/test, which starts moto")
    }

    /// Fresh tables with a unique prefix, so tests never see each other's data.
    pub async fn fresh_tables() -> (aws_sdk_dynamodb::Client, TableNames) {
        let client = local_dynamodb_client(&endpoint());
        let tables = TableNames::for_environment(&format!("t{}", ulid::Ulid::new()).to_lowercase());
        create_tables(&client, &tables)
            .await
            .expect("tables are created on moto");
        (client, tables)
    }

    pub async fn fresh_backend() -> Backend {
        let (client, tables) = fresh_tables().await;
        Backend::from_one(Arc::new(DynamoStore::new(client, tables)))
    }
}

pub use aws_config::SdkConfig;
pub use aws_sdk_dynamodb::Client as DynamoClient;
