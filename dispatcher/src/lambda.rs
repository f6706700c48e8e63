//! WebhookDispatcherFunction's event: an SQS batch in, the items to keep out
//! (`ReportBatchItemFailures`). A message that waits for its next attempt gets its visibility
//! timeout set to that wait first, so Lambda's retry of it comes exactly then.

use crate::handler::{Dispatcher, Disposition, Incoming};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use checkout::ports::DeliveryQueue;
use tracing::warn;

pub async fn handle(dispatcher: &Dispatcher, queue: &dyn DeliveryQueue, event: SqsEvent) -> SqsBatchResponse {
    let incoming: Vec<Incoming> = event
        .records
        .iter()
        .map(|record| Incoming {
            message_id: record.message_id.clone().unwrap_or_default(),
            body: record.body.clone().unwrap_or_default(),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
        })
        .collect();
    let dispositions = dispatcher.handle(&incoming).await;
    emit_metrics(dispatcher);
    let mut response = SqsBatchResponse::default();
    for (record, disposition) in event.records.iter().zip(dispositions) {
        let Disposition::RetryIn(wait) = disposition else {
            continue;
        };
        if let Some(receipt) = &record.receipt_handle
            && let Err(err) = queue.set_visibility(receipt, wait).await
        {
            // The message still comes back, after the queue's own visibility timeout.
            warn!(error = %err, "could not set the message's visibility");
        }
        response.add_failure(record.message_id.clone().unwrap_or_default());
    }
    response
}

/// The batch's EMF lines on stdout, where Lambda's log capture hands it to CloudWatch.
fn emit_metrics(dispatcher: &Dispatcher) {
    let counts = dispatcher.take_metrics();
    if counts.is_empty() {
        return;
    }
    let environment = std::env::var("ACP_ENVIRONMENT").unwrap_or_else(|_| "default".to_owned());
    for line in counts.emf_lines(&environment, checkout::clock::now().timestamp_millis()) {
        println!("{line}");
    }
}
