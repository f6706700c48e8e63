//! The dead-letter queue, for operators: see what is in it, and move it back to the delivery
//! queue once the cause is fixed. A redriven delivery starts a new series of attempts after the
//! ones already made, through the same rate limits, with the same `webhook-id`.

use checkout::attempt_log::FinalCode;
use checkout::clock::{self, Timestamp};
use checkout::delivery_task::{DeadLetter, EventHead, TaskMessage};
use checkout::ports::{DeliveryQueue, PipelineError};
use serde_json::value::RawValue;
use std::time::Duration;

/// How long a receive waits for more dead letters before taking the queue as empty.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// Up to `max` dead letters, left in the queue (each is hidden for a moment while read, then
/// made visible again).
pub async fn list(dead_letters: &dyn DeliveryQueue, max: usize) -> Result<Vec<DeadLetter>, PipelineError> {
    let mut seen = Vec::new();
    let mut receipts = Vec::new();
    while seen.len() < max {
        let batch = dead_letters.receive((max - seen.len()).min(10), DRAIN_WAIT).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            seen.push(DeadLetter::read(&message.body, clock::now()));
            receipts.push(message.receipt);
        }
    }
    for receipt in &receipts {
        dead_letters.set_visibility(receipt, Duration::ZERO).await?;
    }
    Ok(seen)
}

/// Moves up to `max` dead letters back to `queue`; returns how many. Each is deleted from the
/// dead-letter queue only after it is safely on the delivery queue.
pub async fn redrive(
    dead_letters: &dyn DeliveryQueue,
    queue: &dyn DeliveryQueue,
    max: usize,
) -> Result<usize, PipelineError> {
    let mut moved = 0;
    while moved < max {
        let batch = dead_letters.receive((max - moved).min(10), DRAIN_WAIT).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let letter = DeadLetter::read(&message.body, clock::now());
            queue.send(&letter.message, Duration::ZERO).await?;
            dead_letters.delete(&message.receipt).await?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// Why a delivery is put on the dead-letter queue.
pub struct Burial<'a> {
    pub target: &'a str,
    pub attempts: u32,
    pub code: FinalCode,
    pub reason: &'a str,
    pub at: Timestamp,
}

/// Puts an exhausted delivery on the dead-letter queue: why, after how many attempts, and the
/// task a redrive sends to start a new series after those attempts.
pub async fn bury(
    dead_letters: &dyn DeliveryQueue,
    head: &EventHead,
    raw: &RawValue,
    burial: Burial<'_>,
) -> Result<(), PipelineError> {
    let Burial {
        target,
        attempts,
        code,
        reason,
        at,
    } = burial;
    let letter = DeadLetter {
        reason: reason.to_owned(),
        code: Some(code),
        attempts,
        at,
        target: Some(target.to_owned()),
        event_id: Some(head.id.clone()),
        event_type: Some(head.kind),
        message: TaskMessage::new(target, attempts + 1, false, raw).to_body(),
    };
    dead_letters.send(&letter.to_body(), Duration::ZERO).await
}
