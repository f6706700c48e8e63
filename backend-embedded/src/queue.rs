//! An in-process queue with SQS semantics: at-least-once delivery, visibility timeouts, delays,
//! receive counts, and a redrive to a dead-letter queue after too many receives.

use async_trait::async_trait;
use checkout::ports::{DeliveryQueue, PipelineError, QueuedMessage};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    pub visibility_timeout: Duration,
    /// After this many receives, the next receive moves the message to the dead-letter queue.
    pub max_receive_count: u32,
}

struct Message {
    id: String,
    body: String,
    attributes: Vec<(String, String)>,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

#[derive(Default)]
struct Messages {
    /// By arrival, so receives are roughly first-in first-out.
    by_seq: BTreeMap<u64, Message>,
    by_receipt: HashMap<String, u64>,
    next_seq: u64,
}

pub struct EmbeddedQueue {
    config: QueueConfig,
    messages: Mutex<Messages>,
    arrived: Notify,
    dead_letters: Option<Arc<EmbeddedQueue>>,
}

impl EmbeddedQueue {
    pub fn new(config: QueueConfig, dead_letters: Option<Arc<EmbeddedQueue>>) -> Self {
        Self {
            config,
            messages: Mutex::new(Messages::default()),
            arrived: Notify::new(),
            dead_letters,
        }
    }

    /// Messages held, visible or not.
    pub fn len(&self) -> usize {
        self.messages.lock().by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn send_with_attributes(&self, body: String, attributes: Vec<(String, String)>, delay: Duration) {
        let mut messages = self.messages.lock();
        let seq = messages.next_seq;
        messages.next_seq += 1;
        messages.by_seq.insert(
            seq,
            Message {
                id: ulid::Ulid::new().to_string(),
                body,
                attributes,
                visible_at: Instant::now() + delay,
                receive_count: 0,
                receipt: None,
            },
        );
        drop(messages);
        self.arrived.notify_waiters();
    }

    /// Takes up to `max` visible messages now; redrives those received too often. Returns them
    /// and, when none were visible, when the next one becomes visible.
    fn take(&self, max: usize) -> (Vec<QueuedMessage>, Option<Instant>) {
        let now = Instant::now();
        let mut guard = self.messages.lock();
        let messages = &mut *guard;
        let mut taken = Vec::new();
        let mut dead = Vec::new();
        let mut next_visible: Option<Instant> = None;
        for (seq, message) in messages.by_seq.iter_mut() {
            if taken.len() >= max {
                break;
            }
            if message.visible_at > now {
                next_visible = Some(next_visible.map_or(message.visible_at, |t| t.min(message.visible_at)));
                continue;
            }
            if self.dead_letters.is_some() && message.receive_count >= self.config.max_receive_count {
                dead.push(*seq);
                continue;
            }
            if let Some(old) = message.receipt.take() {
                messages.by_receipt.remove(&old);
            }
            let receipt = ulid::Ulid::new().to_string();
            message.receive_count += 1;
            message.visible_at = now + self.config.visibility_timeout;
            message.receipt = Some(receipt.clone());
            messages.by_receipt.insert(receipt.clone(), *seq);
            taken.push(QueuedMessage {
                message_id: message.id.clone(),
                receipt,
                body: message.body.clone(),
                receive_count: message.receive_count,
                attributes: message.attributes.clone(),
            });
        }
        let moved: Vec<Message> = dead.iter().filter_map(|seq| messages.by_seq.remove(seq)).collect();
        drop(guard);
        if let Some(dlq) = &self.dead_letters {
            for message in moved {
                dlq.send_with_attributes(message.body, message.attributes, Duration::ZERO);
            }
        }
        (taken, next_visible)
    }
}

#[async_trait]
impl DeliveryQueue for EmbeddedQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<(), PipelineError> {
        self.send_with_attributes(body.to_owned(), Vec::new(), delay);
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueuedMessage>, PipelineError> {
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let (taken, next_visible) = self.take(max.max(1));
            if !taken.is_empty() || Instant::now() >= deadline {
                return Ok(taken);
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), PipelineError> {
        let mut messages = self.messages.lock();
        if let Some(seq) = messages.by_receipt.remove(receipt) {
            messages.by_seq.remove(&seq);
        }
        Ok(())
    }

    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), PipelineError> {
        let mut messages = self.messages.lock();
        let seq = messages.by_receipt.get(receipt).copied();
        let message = seq.and_then(|seq| messages.by_seq.get_mut(&seq));
        let Some(message) = message else {
            return Err(PipelineError("receipt is not current".to_owned()));
        };
        message.visible_at = Instant::now() + timeout;
        drop(messages);
        self.arrived.notify_waiters();
        Ok(())
    }
}
