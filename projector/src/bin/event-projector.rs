//! EventProjectorFunction: the sessions table's stream → the checkout-events topic.

use aws_backend::SnsPublisher;
use lambda_runtime::{LambdaEvent, service_fn};
use projector::Projector;
use std::process::ExitCode;
use std::sync::Arc;

// mimalloc: glibc malloc slows a busy async service down with frees across worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<ExitCode, lambda_runtime::Error> {
    if let Some(exit) = aws_backend::lambda_process::preflight(&projector::lambda::USAGE) {
        return Ok(exit);
    }
    aws_backend::lambda_process::init_logging();
    let sdk = aws_backend::sdk_config().await;
    let topic_arn = std::env::var("CHECKOUT_EVENTS_TOPIC_ARN").map_err(|_| "CHECKOUT_EVENTS_TOPIC_ARN is not set")?;
    let publisher = Arc::new(SnsPublisher::new(aws_backend::SnsClient::new(&sdk), topic_arn));
    let projector = Projector::new(publisher);
    let projector = &projector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, lambda_runtime::Error>(projector::lambda::handle(projector, event.payload).await)
    }))
    .await?;
    Ok(ExitCode::SUCCESS)
}
