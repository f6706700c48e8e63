//! The shared contract suites, run against DynamoDB on the moto server that `scripts/test`
//! starts (its address in `ACP_TEST_AWS_ENDPOINT`). Each test gets its own tables.

use aws_backend::{DynamoStore, TableNames, create_tables, local_dynamodb_client};
use checkout::ports::Backend;
use std::sync::Arc;

async fn fresh_backend() -> Backend {
    let endpoint = std::env::var("ACP_TEST_AWS_ENDPOINT")
        .expect("ACP_TEST_AWS_ENDPOINT is not set: run the suite with scripts/test, which starts moto");
    let client = local_dynamodb_client(&endpoint);
    let tables = TableNames::for_environment(&format!("t{}", ulid::Ulid::new()).to_lowercase());
    create_tables(&client, &tables)
        .await
        .expect("tables are created on moto");
    Backend::from_one(Arc::new(DynamoStore::new(client, tables)))
}

checkout::backend_contract_tests!(fresh_backend());
