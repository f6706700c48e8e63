//! The dispatcher outside Lambda (`acp-local`, tests): pollers that receive batches from a
//! queue, hand them to [`Dispatcher::handle`], and delete or hide each message as it says.

use crate::handler::{Dispatcher, Disposition, Incoming};
use checkout::ports::{DeliveryQueue, QueuedMessage};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::warn;

/// Messages per receive (the SQS maximum).
pub const BATCH: usize = 10;

/// Receives one batch (waiting up to `wait` for it) and carries it through; returns how many
/// messages it handled.
pub async fn run_once(dispatcher: &Dispatcher, queue: &dyn DeliveryQueue, wait: Duration) -> usize {
    let received = queue.receive(BATCH, wait).await;
    handle_received(dispatcher, queue, received).await
}

async fn handle_received(
    dispatcher: &Dispatcher,
    queue: &dyn DeliveryQueue,
    received: Result<Vec<QueuedMessage>, checkout::ports::PipelineError>,
) -> usize {
    let messages = match received {
        Ok(messages) => messages,
        Err(err) => {
            warn!(error = %err, "could not receive from the queue");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return 0;
        }
    };
    if messages.is_empty() {
        return 0;
    }
    let incoming: Vec<Incoming> = messages.iter().map(incoming).collect();
    let dispositions = dispatcher.handle(&incoming).await;
    settle(queue, &messages, &dispositions).await;
    messages.len()
}

/// A received message as the handler takes it.
pub fn incoming(message: &QueuedMessage) -> Incoming {
    Incoming {
        message_id: message.message_id.clone(),
        body: message.body.clone(),
        receive_count: message.receive_count,
    }
}

/// Deletes or hides each message, all at once (a durable queue commits them together).
async fn settle(queue: &dyn DeliveryQueue, messages: &[QueuedMessage], dispositions: &[Disposition]) {
    let settled = messages
        .iter()
        .zip(dispositions)
        .map(|(message, disposition)| async move {
            let result = match disposition {
                Disposition::Done => queue.delete(&message.receipt).await,
                Disposition::RetryIn(wait) => queue.set_visibility(&message.receipt, *wait).await,
            };
            if let Err(err) = result {
                // Either way the message comes back after its visibility timeout, and the attempt
                // log keeps it from being sent twice.
                warn!(message_id = %message.message_id, error = %err, "could not settle the message");
            }
        });
    futures_util::future::join_all(settled).await;
}

/// `pollers` loops of [`run_once`] until `stop` turns true; a batch in hand is finished first.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    queue: Arc<dyn DeliveryQueue>,
    pollers: usize,
    stop: watch::Receiver<bool>,
) {
    let loops = (0..pollers.max(1)).map(|_| {
        let (dispatcher, queue, mut stop) = (dispatcher.clone(), queue.clone(), stop.clone());
        tokio::spawn(async move {
            while !*stop.borrow() {
                // Only the wait for messages is cut short by a stop; a batch received is finished.
                let received = tokio::select! {
                    received = queue.receive(BATCH, Duration::from_secs(1)) => received,
                    _ = stop.changed() => break,
                };
                handle_received(&dispatcher, queue.as_ref(), received).await;
            }
        })
    });
    for poller in futures_util::future::join_all(loops).await {
        if let Err(err) = poller {
            warn!(error = %err, "a dispatcher poller stopped");
        }
    }
}
