//! ReplayRunnerFunction: the replay-steps queue → delivery tasks for the events an endpoint
//! missed.

use aws_backend::{DynamoStore, SqsQueue, TableNames};
use aws_lambda_events::event::sqs::SqsEvent;
use checkout::replay::{ReplayPorts, Replayer};
use lambda_runtime::{LambdaEvent, service_fn};
use std::process::ExitCode;
use std::sync::Arc;

fn required(name: &str) -> Result<String, lambda_runtime::Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<ExitCode, lambda_runtime::Error> {
    if let Some(exit) = aws_backend::lambda_process::preflight(&dispatcher::replay_runner::USAGE) {
        return Ok(exit);
    }
    aws_backend::lambda_process::init_logging();
    let sdk = aws_backend::sdk_config().await;
    let store = Arc::new(DynamoStore::from_sdk_config(&sdk, TableNames::from_env()?));
    let sqs = aws_backend::SqsClient::new(&sdk);
    let replayer = Replayer::new(
        ReplayPorts {
            events: store.clone(),
            log: store.clone(),
            jobs: store,
            deliveries: Arc::new(SqsQueue::new(sqs.clone(), required("ORDER_UPDATES_QUEUE_URL")?)),
            steps: Arc::new(SqsQueue::new(sqs, required("REPLAY_STEPS_QUEUE_URL")?)),
        },
        checkout::clock::system(),
    );
    let replayer = &replayer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(dispatcher::replay_runner::handle(replayer, event.payload).await)
    }))
    .await?;
    Ok(ExitCode::SUCCESS)
}
