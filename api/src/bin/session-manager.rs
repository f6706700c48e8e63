//! SessionManagerFunction: the checkout API behind API Gateway (HTTP API).

use api::AppState;
use api::lambda::{Processor, Settings};
use aws_backend::{DynamoStore, SqsQueue, TableNames};
use checkout::payment::{PaymentProcessor, TestPaymentProcessor};
use checkout::ports::Backend;
use std::process::ExitCode;
use std::sync::Arc;

// mimalloc: glibc malloc slows a busy async service down with frees across worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<ExitCode, lambda_http::Error> {
    if let Some(exit) = aws_backend::lambda_process::preflight(&api::lambda::USAGE) {
        return Ok(exit);
    }
    aws_backend::lambda_process::init_logging();
    let settings = Settings::from_env()?;
    let processor: Arc<dyn PaymentProcessor> = match settings.processor {
        Processor::Test => Arc::new(TestPaymentProcessor::new()),
    };
    let sdk = aws_backend::sdk_config().await;
    let store = DynamoStore::from_sdk_config(&sdk, TableNames::from_env()?);
    let policy = checkout::url_safety::UrlPolicy {
        allow_loopback: settings.allow_loopback_webhooks,
    };
    let mut state = AppState::new(Backend::from_one(Arc::new(store)), processor)
        .with_url_policy(policy)
        .with_supported_currencies(settings.supported_currencies.clone());
    if let Some(url) = &settings.public_base_url {
        state = state.with_public_base_url(url.as_str());
    }
    // Replays start on the replay-steps queue; the replay runner carries them on.
    if let Some(url) = settings.replay_steps_queue_url {
        state = state.with_replay_steps(Arc::new(SqsQueue::new(aws_backend::SqsClient::new(&sdk), url)));
    }
    // Test events go straight to the dispatcher's queue.
    if let Some(url) = settings.deliveries_queue_url {
        state = state.with_deliveries(Arc::new(SqsQueue::new(aws_backend::SqsClient::new(&sdk), url)));
    }
    lambda_http::run(api::lambda::service(state)).await?;
    Ok(ExitCode::SUCCESS)
}
