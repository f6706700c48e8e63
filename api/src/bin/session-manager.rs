//! SessionManagerFunction: the checkout API behind API Gateway (HTTP API).

use api::AppState;
use aws_backend::{DynamoStore, SqsQueue, TableNames};
use checkout::payment::TestPaymentProcessor;
use checkout::ports::Backend;
use std::sync::Arc;

// mimalloc: glibc malloc slows a busy async service down with frees across worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let sdk = aws_backend::sdk_config().await;
    let tables = TableNames::from_env()?;
    let store = DynamoStore::from_sdk_config(&sdk, tables);
    let mut state = AppState::new(
        Backend::from_one(Arc::new(store)),
        Arc::new(TestPaymentProcessor::new()),
    );
    // Replays are queued on the order-updates queue.
    if let Ok(url) = std::env::var("ORDER_UPDATES_QUEUE_URL") {
        state = state.with_delivery_queue(Arc::new(SqsQueue::new(aws_backend::SqsClient::new(&sdk), url)));
    }
    lambda_http::run(api::lambda::service(state)).await
}
