//! The replay runner: takes replay steps off their queue and runs them (see
//! [`checkout::replay`]). On AWS it is ReplayRunnerFunction, fed by the replay-steps queue; in
//! `acp-local`, a poller beside the dispatcher's.
//!
//! A step that fails (storage or a queue unavailable) is left on its queue and comes back after
//! the visibility timeout; after the queue's receive limit it goes to its dead-letter queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use checkout::ports::DeliveryQueue;
use checkout::replay::{Replayer, StepOutcome};
use std::time::Duration;
use tokio::sync::watch;
use tracing::warn;

/// What the function reads from its environment, for `--help`.
pub const USAGE: aws_backend::lambda_process::Usage = aws_backend::lambda_process::Usage {
    name: "replay-runner",
    about: "the replay-steps queue → delivery tasks for the events an endpoint missed",
    env: &[
        (
            "REPLAY_STEPS_QUEUE_URL",
            "required: the queue of replay steps (this function's source)",
        ),
        ("ORDER_UPDATES_QUEUE_URL", "required: where the delivery tasks go"),
    ],
};

/// One Lambda batch: the steps that failed or must look again later are reported, so only
/// they come back (after the queue's visibility timeout).
pub async fn handle(replayer: &Replayer, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let body = record.body.as_deref().unwrap_or_default();
        match replayer.step_of_body(body).await {
            Ok(StepOutcome::Finished) => {}
            Ok(StepOutcome::LookAgainLater) => response.add_failure(record.message_id.clone().unwrap_or_default()),
            Err(err) => {
                warn!(error = %err, message_id = record.message_id.as_deref().unwrap_or_default(), "replay step failed");
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        }
    }
    response
}

/// Receives up to one batch of steps (waiting up to `wait`), runs them, deletes each that
/// finished; returns how many it received.
pub async fn run_once(replayer: &Replayer, queue: &dyn DeliveryQueue, wait: Duration) -> usize {
    let messages = match queue.receive(10, wait).await {
        Ok(messages) => messages,
        Err(err) => {
            warn!(error = %err, "could not receive from the replay-steps queue");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return 0;
        }
    };
    for message in &messages {
        match replayer.step_of_body(&message.body).await {
            // Left on the queue: it comes back after the visibility timeout.
            Ok(StepOutcome::LookAgainLater) => {}
            Ok(StepOutcome::Finished) => {
                if let Err(err) = queue.delete(&message.receipt).await {
                    // It comes back; the job's revision makes the second run a no-op.
                    warn!(error = %err, "could not delete a finished replay step");
                }
            }
            Err(err) => warn!(error = %err, message_id = %message.message_id, "replay step failed"),
        }
    }
    messages.len()
}

/// Polls the queue until `stopped` turns true.
pub async fn run(replayer: &Replayer, queue: &dyn DeliveryQueue, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        tokio::select! {
            _ = run_once(replayer, queue, Duration::from_secs(1)) => {}
            _ = stopped.changed() => {}
        }
    }
}
