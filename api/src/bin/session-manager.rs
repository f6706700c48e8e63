//! SessionManagerFunction: the checkout API behind API Gateway (HTTP API).

use api::AppState;
use aws_backend::{DynamoStore, TableNames};
use checkout::payment::TestPaymentProcessor;
use checkout::ports::Backend;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let tables = TableNames::from_env()?;
    let store = DynamoStore::from_sdk_config(&aws_backend::sdk_config().await, tables);
    let state = AppState::new(
        Backend::from_one(Arc::new(store)),
        Arc::new(TestPaymentProcessor::new()),
    );
    lambda_http::run(api::router(state)).await
}
