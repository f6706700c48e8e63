//! The dispatcher outside Lambda (`acp-local`, tests): pollers that receive batches from a
//! queue, hand them to the [`Dispatcher`], and delete or hide each message as soon as it is
//! finished.
//!
//! A poller does not wait for its batch: the batch runs as its own task and the poller receives
//! the next one, up to [`MAX_IN_HAND`] messages in hand per queue. So a message that waits on a
//! slow receiver holds one place, not a poller — healthy deliveries keep flowing past it.

use crate::handler::{Dispatcher, Disposition, Incoming, Lane};
use checkout::ports::{DeliveryQueue, PipelineError, QueuedMessage};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::warn;

/// Messages per receive (the SQS maximum).
pub const BATCH: usize = 10;
/// Messages being delivered at once from one queue, over all its pollers.
pub const MAX_IN_HAND: usize = 512;

/// Receives one batch (waiting up to `wait` for it) and carries it through; returns how many
/// messages it handled.
pub async fn run_once(dispatcher: &Dispatcher, queue: &dyn DeliveryQueue, lane: Lane, wait: Duration) -> usize {
    let received = queue.receive(BATCH, wait).await;
    let Some(messages) = received_or_pause(received).await else {
        return 0;
    };
    let count = messages.len();
    carry(dispatcher, queue, messages, lane, || {}).await;
    count
}

/// Hands the messages to the dispatcher and settles each as soon as it is finished, calling
/// `settled` after each. The bodies move into the handler's input, not copied.
async fn carry(
    dispatcher: &Dispatcher,
    queue: &dyn DeliveryQueue,
    messages: Vec<QueuedMessage>,
    lane: Lane,
    mut settled: impl FnMut(),
) {
    let (incoming, receipts): (Vec<Incoming>, Vec<Receipt>) = messages
        .into_iter()
        .map(|m| {
            let receipt = Receipt {
                message_id: m.message_id.clone(),
                receipt: m.receipt,
            };
            let incoming = Incoming {
                message_id: m.message_id,
                body: m.body,
                receive_count: m.receive_count,
                lane,
            };
            (incoming, receipt)
        })
        .unzip();
    let mut running = std::pin::pin!(dispatcher.start(&incoming).await);
    while let Some((index, disposition)) = running.next().await {
        settle(queue, &receipts[index], disposition).await;
        settled();
    }
}

/// What settling a message needs.
struct Receipt {
    message_id: String,
    receipt: String,
}

async fn received_or_pause(received: Result<Vec<QueuedMessage>, PipelineError>) -> Option<Vec<QueuedMessage>> {
    match received {
        Ok(messages) if messages.is_empty() => None,
        Ok(messages) => Some(messages),
        Err(err) => {
            warn!(error = %err, "could not receive from the queue");
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// A received message as the handler takes it (a copy: the message stays the caller's).
pub fn incoming(message: &QueuedMessage, lane: Lane) -> Incoming {
    Incoming {
        message_id: message.message_id.clone(),
        body: message.body.clone(),
        receive_count: message.receive_count,
        lane,
    }
}

/// Deletes or hides the message.
async fn settle(queue: &dyn DeliveryQueue, message: &Receipt, disposition: Disposition) {
    let result = match disposition {
        Disposition::Done => queue.delete(&message.receipt).await,
        Disposition::RetryIn(wait) => queue.set_visibility(&message.receipt, wait).await,
    };
    if let Err(err) = result {
        // Either way the message comes back after its visibility timeout, and the attempt log
        // keeps it from being sent twice.
        warn!(message_id = %message.message_id, error = %err, "could not settle the message");
    }
}

/// `pollers` loops receiving from `queue` until `stop` turns true; what is in hand then is
/// finished first.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    queue: Arc<dyn DeliveryQueue>,
    lane: Lane,
    pollers: usize,
    stop: watch::Receiver<bool>,
) {
    let places = Arc::new(Semaphore::new(MAX_IN_HAND));
    let loops = (0..pollers.max(1)).map(|_| {
        let (dispatcher, queue, places, stop) = (dispatcher.clone(), queue.clone(), places.clone(), stop.clone());
        tokio::spawn(poll(dispatcher, queue, lane, places, stop))
    });
    for poller in futures_util::future::join_all(loops).await {
        if let Err(err) = poller {
            warn!(error = %err, "a dispatcher poller stopped");
        }
    }
}

async fn poll(
    dispatcher: Arc<Dispatcher>,
    queue: Arc<dyn DeliveryQueue>,
    lane: Lane,
    places: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut in_hand = JoinSet::new();
    while !*stop.borrow() {
        // Room for a whole batch first; only the waits are cut short by a stop.
        let permits = tokio::select! {
            permits = places.clone().acquire_many_owned(BATCH as u32) => permits,
            _ = stop.changed() => break,
        };
        let Ok(mut permits) = permits else { break };
        let received = tokio::select! {
            received = queue.receive(BATCH, Duration::from_secs(1)) => received,
            _ = stop.changed() => break,
        };
        while in_hand.try_join_next().is_some() {}
        let Some(messages) = received_or_pause(received).await else {
            continue;
        };
        let mut places_of: Vec<_> = (0..messages.len()).filter_map(|_| permits.split(1)).collect();
        drop(permits);
        let (dispatcher, queue) = (dispatcher.clone(), queue.clone());
        in_hand.spawn(async move {
            // Each finished message frees its place at once.
            carry(&dispatcher, queue.as_ref(), messages, lane, || {
                places_of.pop();
            })
            .await;
        });
    }
    while in_hand.join_next().await.is_some() {}
}
