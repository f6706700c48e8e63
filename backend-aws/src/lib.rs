//! AWS adapters. DynamoDB holds the event store, idempotency records and merchants; every
//! write that must not be lost or duplicated is a conditional write or a transaction.

mod deliveries;
mod dynamo;
mod error;
pub mod lambda_process;
mod merchants;
mod messaging;
pub mod stored_event;
mod stream;
mod tables;

pub use dynamo::{DynamoStore, parse_event};
pub use messaging::{PipelineResources, QueueSettings, SnsPublisher, SqsQueue, create_pipeline};
pub use stream::StreamReader;
pub use tables::{TableNames, create_tables};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

/// Loads the SDK configuration the usual way (environment, profile, instance role), honouring
/// `AWS_ENDPOINT_URL` for AWS-compatible endpoints.
pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_at(None).await
}

/// As [`sdk_config`], with an explicit endpoint (an AWS-compatible service) when given.
pub async fn sdk_config_at(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    match endpoint_url {
        Some(url) => loader.endpoint_url(url).load().await,
        None => loader.load().await,
    }
}

/// SDK configuration for a local AWS-compatible endpoint (moto in the tests), with dummy keys.
pub fn local_sdk_config(endpoint_url: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "local",
        )))
        .build()
}

/// A DynamoDB client for a local AWS-compatible endpoint.
pub fn local_dynamodb_client(endpoint_url: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&local_sdk_config(endpoint_url))
}

/// Test support: backends on the moto server that `scripts/test` starts.
#[cfg(feature = "testkit")]
pub mod testkit {
    use super::{DynamoStore, TableNames, create_tables, local_dynamodb_client};
    use checkout::ports::Backend;
    use std::sync::Arc;

    /// Runs a Lambda bootstrap as an operator would by hand: `--help` answers at once with
    /// every setting in `usage`, without network or AWS variables; started outside Lambda, it
    /// exits 2 with a sentence saying so, not a panic.
    pub fn check_bootstrap_outside_lambda(binary: &str, usage: &crate::lambda_process::Usage) {
        use std::process::Command;
        let bare = |args: &[&str]| {
            Command::new(binary)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .output()
                .expect("the bootstrap runs")
        };
        let help = bare(&["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "--help: {help:?}");
        for (name, _) in usage.variables() {
            assert!(text.contains(name), "--help names {name}: {text}");
        }
        let outside = bare(&[]);
        let said = String::from_utf8_lossy(&outside.stderr);
        assert_eq!(outside.status.code(), Some(2), "{said}");
        assert!(
            said.contains("not running on AWS Lambda") && !said.contains("panicked"),
            "{said}"
        );
    }

    /// The moto endpoint `scripts/test` exported.
    pub fn endpoint() -> String {
        std::env::var("ACP_TEST_AWS_ENDPOINT")
            .expect("ACP_TEST_AWS_ENDPOINT is not set: run the suite with scripts/test, which starts moto")
    }

    /// DynamoDB's request limits that moto does not enforce, checked on every request the tests
    /// send: a call over them fails as DynamoDB would fail it.
    #[derive(Debug)]
    struct DynamoLimits;

    /// Items per `BatchWriteItem`, keys per `BatchGetItem` (DynamoDB's limits).
    const BATCH_WRITE_MAX: usize = 25;
    const BATCH_GET_MAX: usize = 100;

    impl aws_sdk_dynamodb::config::Intercept for DynamoLimits {
        fn name(&self) -> &'static str {
            "DynamoLimits"
        }

        fn read_before_execution(
            &self,
            context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
            _: &mut aws_sdk_dynamodb::config::ConfigBag,
        ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
            use aws_sdk_dynamodb::operation::{
                batch_get_item::BatchGetItemInput, batch_write_item::BatchWriteItemInput,
            };
            let input = context.input();
            if let Some(batch) = input.downcast_ref::<BatchWriteItemInput>() {
                let items: usize = batch.request_items().into_iter().flatten().map(|(_, w)| w.len()).sum();
                if items > BATCH_WRITE_MAX {
                    return Err(format!("BatchWriteItem of {items} items: DynamoDB takes at most 25").into());
                }
            }
            if let Some(batch) = input.downcast_ref::<BatchGetItemInput>() {
                let keys: usize = batch
                    .request_items()
                    .into_iter()
                    .flatten()
                    .map(|(_, k)| k.keys().len())
                    .sum();
                if keys > BATCH_GET_MAX {
                    return Err(format!("BatchGetItem of {keys} keys: DynamoDB takes at most 100").into());
                }
            }
            Ok(())
        }
    }

    /// Fresh tables with a unique prefix, so tests never see each other's data.
    pub async fn fresh_tables() -> (aws_sdk_dynamodb::Client, TableNames) {
        let client = local_dynamodb_client(&endpoint());
        let client =
            aws_sdk_dynamodb::Client::from_conf(client.config().to_builder().interceptor(DynamoLimits).build());
        let tables = TableNames::for_environment(&format!("t{}", ulid::Ulid::new()).to_lowercase());
        create_tables(&client, &tables)
            .await
            .expect("tables are created on moto");
        (client, tables)
    }

    /// A fresh topic → queue → dead-letter queue on moto, with the contract suite's settings.
    pub async fn fresh_pipeline() -> (checkout::testkit::Pipeline, crate::PipelineResources) {
        fresh_pipeline_with(crate::QueueSettings {
            visibility_timeout: checkout::testkit::VISIBILITY,
            max_receive_count: checkout::testkit::MAX_RECEIVES,
        })
        .await
    }

    pub async fn fresh_pipeline_with(
        settings: crate::QueueSettings,
    ) -> (checkout::testkit::Pipeline, crate::PipelineResources) {
        let sdk = crate::local_sdk_config(&endpoint());
        let (sns, sqs) = (crate::SnsClient::new(&sdk), crate::SqsClient::new(&sdk));
        let env = format!("t{}", ulid::Ulid::new()).to_lowercase();
        let resources = crate::create_pipeline(&sns, &sqs, &env, settings)
            .await
            .expect("pipeline on moto");
        let pipeline = checkout::testkit::Pipeline {
            publisher: Arc::new(crate::SnsPublisher::new(sns, resources.topic_arn.clone())),
            queue: Arc::new(crate::SqsQueue::new(sqs.clone(), resources.queue_url.clone())),
            dead_letters: Arc::new(crate::SqsQueue::new(sqs, resources.dead_letter_queue_url.clone())),
        };
        (pipeline, resources)
    }

    pub async fn fresh_backend() -> Backend {
        let (client, tables) = fresh_tables().await;
        Backend::from_one(Arc::new(DynamoStore::new(client, tables)))
    }
}

pub use aws_config::SdkConfig;
pub use aws_sdk_dynamodb::Client as DynamoClient;
pub use aws_sdk_dynamodbstreams::Client as StreamsClient;
pub use aws_sdk_sns::Client as SnsClient;
pub use aws_sdk_sqs::Client as SqsClient;
