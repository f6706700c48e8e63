//! WebhookDispatcherFunction: the order-updates queue → signed webhooks to merchants' endpoints.

use aws_backend::{DynamoStore, SqsQueue, TableNames};
use aws_lambda_events::event::sqs::SqsEvent;
use checkout::ports::DeliveryQueue;
use dispatcher::lambda::{Queues, SlowLane};
use dispatcher::{DeliveryStores, Dispatcher, DispatcherConfig};
use lambda_runtime::{LambdaEvent, service_fn};
use std::process::ExitCode;
use std::sync::Arc;

// mimalloc: glibc malloc slows a busy async service down with frees across worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn required(name: &str) -> Result<String, lambda_runtime::Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<ExitCode, lambda_runtime::Error> {
    if let Some(exit) = aws_backend::lambda_process::preflight(&dispatcher::lambda::USAGE) {
        return Ok(exit);
    }
    aws_backend::lambda_process::init_logging();
    let sdk = aws_backend::sdk_config().await;
    let stores = DeliveryStores::from_one(Arc::new(DynamoStore::from_sdk_config(&sdk, TableNames::from_env()?)));
    let sqs = aws_backend::SqsClient::new(&sdk);
    let queue: Arc<dyn DeliveryQueue> = Arc::new(SqsQueue::new(sqs.clone(), required("ORDER_UPDATES_QUEUE_URL")?));
    let dead_letters = Arc::new(SqsQueue::new(sqs.clone(), required("ORDER_UPDATES_DLQ_URL")?));
    let mut dispatcher = Dispatcher::new(stores, queue.clone(), dead_letters, DispatcherConfig::from_env()?)?;
    // The slow lane: deliveries to failing endpoints, on a queue (and event source) of their own.
    let slow = match std::env::var("SLOW_DELIVERIES_QUEUE_URL") {
        Ok(url) => {
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            let slow: Arc<dyn DeliveryQueue> = Arc::new(SqsQueue::new(sqs.clone(), url));
            dispatcher = dispatcher.with_slow_lane(slow.clone());
            Some((slow, name))
        }
        Err(_) => None,
    };
    let queues = Queues {
        main: queue.as_ref(),
        slow: slow.as_ref().map(|(queue, name)| SlowLane {
            queue: queue.as_ref(),
            name,
        }),
    };
    let (dispatcher, queues) = (&dispatcher, &queues);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(dispatcher::lambda::handle(dispatcher, queues, event.payload).await)
    }))
    .await?;
    Ok(ExitCode::SUCCESS)
}
