//! WebhookDispatcherFunction's event: an SQS batch in, the items to keep out
//! (`ReportBatchItemFailures`). A message that waits for its next attempt gets its visibility
//! timeout set to that wait first, so Lambda's retry of it comes exactly then.

use crate::handler::{Dispatcher, Disposition, Incoming, Lane};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use checkout::ports::DeliveryQueue;
use tracing::warn;

/// What the function reads from its environment, for `--help`.
pub const USAGE: aws_backend::lambda_process::Usage = aws_backend::lambda_process::Usage {
    name: "webhook-dispatcher",
    about: "the order-updates queue → signed webhooks to merchants' endpoints",
    env: &[
        ("ORDER_UPDATES_QUEUE_URL", "required: the queue of events to deliver"),
        ("ORDER_UPDATES_DLQ_URL", "required: where exhausted deliveries go"),
        (
            "SLOW_DELIVERIES_QUEUE_URL",
            "the slow lane: deliveries to failing or slow endpoints",
        ),
        (
            "DISPATCHER_MAX_ATTEMPTS",
            "attempts per delivery before the dead-letter queue",
        ),
        (
            "DISPATCHER_MERCHANT_RATE_LIMIT",
            "deliveries per second per merchant, over all instances",
        ),
        (
            "DISPATCHER_INSTANCES",
            "how many instances share that rate (the event source's maximum concurrency)",
        ),
        (
            "DISPATCHER_MAX_IN_FLIGHT_PER_ENDPOINT",
            "requests in flight per endpoint and instance",
        ),
        (
            "DISPATCHER_DISABLE_AFTER_HOURS",
            "an endpoint failing this long is disabled",
        ),
    ],
};

/// The queues the function's event source mappings read: the main one and, when deployed, the
/// slow lane (told apart by the record's queue ARN, which ends with the queue's name).
pub struct Queues<'a> {
    pub main: &'a dyn DeliveryQueue,
    pub slow: Option<SlowLane<'a>>,
}

pub struct SlowLane<'a> {
    pub queue: &'a dyn DeliveryQueue,
    pub name: &'a str,
}

impl Queues<'_> {
    fn lane_of(&self, record: &SqsMessage) -> Lane {
        let arn = record.event_source_arn.as_deref().unwrap_or_default();
        match &self.slow {
            Some(slow) if arn.rsplit(':').next() == Some(slow.name) => Lane::Slow,
            _ => Lane::Main,
        }
    }

    fn of(&self, lane: Lane) -> &dyn DeliveryQueue {
        match (lane, &self.slow) {
            (Lane::Slow, Some(slow)) => slow.queue,
            _ => self.main,
        }
    }
}

pub async fn handle(dispatcher: &Dispatcher, queues: &Queues<'_>, event: SqsEvent) -> SqsBatchResponse {
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
            lane: queues.lane_of(record),
        })
        .collect();
    let dispositions = dispatcher.handle(&incoming).await;
    emit_metrics(dispatcher);
    let mut response = SqsBatchResponse::default();
    for ((record, disposition), incoming) in event.records.iter().zip(dispositions).zip(&incoming) {
        let Disposition::RetryIn(wait) = disposition else {
            continue;
        };
        if let Some(receipt) = &record.receipt_handle
            && let Err(err) = queues.of(incoming.lane).set_visibility(receipt, wait).await
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
