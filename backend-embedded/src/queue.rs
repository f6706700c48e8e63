//! An in-process queue with SQS semantics: at-least-once delivery, visibility timeouts, delays,
//! receive counts, and a redrive to a dead-letter queue after too many receives. Optionally
//! durable: messages are then also kept in the database, written before a send returns, so a
//! restart finds every message not yet deleted (visible again at once, unless delayed). An
//! event's entry is written by the durable store in the event's own transaction (see
//! [`EmbeddedQueue::stage_event`]): a reference to the event's row, not a copy of its bytes.

use crate::durable::{Database, Durability, event_row};
use async_trait::async_trait;
use checkout::ports::{DeliveryQueue, MAX_MESSAGE_BYTES, PipelineError, QueuedMessage, StoreError};
use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{Connection, params};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;

/// An event's queue entry written in a transaction not yet committed.
pub(crate) struct Staged {
    seq: u64,
    id: String,
    attributes: Vec<(String, String)>,
}

impl Staged {
    /// After the commit: the entry becomes receivable, with the event's bytes as its body.
    pub(crate) fn admit(&self, queue: &EmbeddedQueue, body: String) {
        let message = Message {
            id: self.id.clone(),
            body,
            attributes: self.attributes.clone(),
            visible_at: Instant::now(),
            receive_count: 0,
            receipt: None,
        };
        queue.insert(self.seq, message);
    }
}

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
    by_seq: HashMap<u64, Message>,
    /// Every message by when it becomes visible, then arrival: a receive takes from the front
    /// and never walks past messages in flight or delayed.
    by_visibility: BTreeSet<(Instant, u64)>,
    by_receipt: HashMap<String, u64>,
    next_seq: u64,
}

impl Messages {
    fn insert(&mut self, seq: u64, message: Message) {
        self.by_visibility.insert((message.visible_at, seq));
        self.by_seq.insert(seq, message);
    }

    fn remove(&mut self, seq: u64) -> Option<Message> {
        let mut message = self.by_seq.remove(&seq)?;
        self.by_visibility.remove(&(message.visible_at, seq));
        if let Some(receipt) = message.receipt.take() {
            self.by_receipt.remove(&receipt);
        }
        Some(message)
    }

    fn make_visible_at(&mut self, seq: u64, at: Instant) {
        if let Some(message) = self.by_seq.get_mut(&seq) {
            self.by_visibility.remove(&(message.visible_at, seq));
            message.visible_at = at;
            self.by_visibility.insert((at, seq));
        }
    }
}

/// Where a durable queue keeps its messages: rows of the `messages` table named for it.
struct QueueLog {
    db: Arc<Database>,
    name: String,
}

/// Receivers woken at most for one arrival of messages: each takes up to ten at a time and
/// comes straight back for more, so a large arrival needs no more than a few.
const ANNOUNCED_AT_MOST: usize = 16;

pub struct EmbeddedQueue {
    config: QueueConfig,
    messages: Mutex<Messages>,
    arrived: Notify,
    dead_letters: Option<Arc<EmbeddedQueue>>,
    log: Option<QueueLog>,
}

/// As SQS refuses a message over its size limit.
fn refuse_too_large(body: &str) -> Result<(), PipelineError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(PipelineError::TooLarge {
            what: "message",
            size: body.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

fn failed(err: StoreError) -> PipelineError {
    PipelineError::unavailable(err)
}

fn wall_clock_ms(after: Duration) -> i64 {
    let at = SystemTime::now() + after;
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Bodies longer than this are stored compressed.
const COMPRESS_ABOVE: usize = 512;

/// A message's `body` column. A delivery deferred or retried goes on as a message carrying its
/// event's JSON (a 2.6 KB session): kept as text, such a row spilled onto overflow pages, and
/// every deferral to a stuck endpoint wrote and freed several pages. Long bodies are compressed
/// with the events' codec (about 10 % of the bytes, primed for event JSON); short ones stay text.
fn stored_body(body: &str) -> Result<Value, PipelineError> {
    if body.len() <= COMPRESS_ABOVE {
        return Ok(Value::Text(body.to_owned()));
    }
    event_row::encode(body).map(Value::Blob).map_err(failed)
}

/// A message whose stored body cannot be read back: the dispatcher sets it aside as unreadable.
fn unreadable_message(err: &StoreError) -> String {
    serde_json::json!({ "unreadable_message": { "error": err.to_string() } }).to_string()
}

/// The monotonic instant of a stored wall-clock time (now, if it has passed).
fn instant_of(wall_clock_ms: i64) -> Instant {
    let wait = wall_clock_ms.saturating_sub(self::wall_clock_ms(Duration::ZERO));
    Instant::now() + Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}

/// The body of an entry whose event cannot be read (damaged, or gone): still received, so the
/// dispatcher sets it aside as unreadable, and its dead letter names the event's position.
fn unreadable_event(position: i64, err: &StoreError) -> String {
    serde_json::json!({ "unreadable_event": { "position": position, "error": err.to_string() } }).to_string()
}

impl EmbeddedQueue {
    pub fn new(config: QueueConfig, dead_letters: Option<Arc<EmbeddedQueue>>) -> Self {
        Self {
            config,
            messages: Mutex::new(Messages::default()),
            arrived: Notify::new(),
            dead_letters,
            log: None,
        }
    }

    /// A queue kept in `db` under `name`, with the messages stored there.
    pub fn durable(
        config: QueueConfig,
        dead_letters: Option<Arc<EmbeddedQueue>>,
        db: Arc<Database>,
        name: &str,
    ) -> Result<Self, StoreError> {
        type Row = (i64, String, Value, String, i64, i64, Option<i64>);
        let rows: Vec<Row> = db.read_blocking(|conn| {
            // An event's entry holds no body: its bytes are the event's row.
            let mut statement = conn.prepare(
                "SELECT m.seq, m.id, CASE WHEN m.event_position IS NULL THEN m.body ELSE e.body END, \
                 m.attributes, m.visible_at_ms, m.receive_count, m.event_position \
                 FROM messages m LEFT JOIN events e ON e.position = m.event_position \
                 WHERE m.queue = ?1 ORDER BY m.seq",
            )?;
            let rows = statement.query_map([name], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?;
            rows.collect()
        })?;
        let mut messages = Messages::default();
        for (seq, id, stored, attributes, visible_at_ms, receive_count, position) in rows {
            let body = match (stored, position) {
                (Value::Text(body), _) => body,
                (event, Some(position)) => event_row::json(event).unwrap_or_else(|err| {
                    tracing::error!(queue = name, message_id = %id, position, error = %err, "unreadable event of a queue entry");
                    unreadable_event(position, &err)
                }),
                (compressed @ Value::Blob(_), None) => event_row::json(compressed).unwrap_or_else(|err| {
                    tracing::error!(queue = name, message_id = %id, error = %err, "unreadable queue entry");
                    unreadable_message(&err)
                }),
                (_, None) => String::new(),
            };
            // Attributes only help subscribers filter; a message whose attributes cannot be read
            // is still delivered, without them.
            let attributes = serde_json::from_str(&attributes).unwrap_or_else(|err| {
                tracing::error!(queue = name, message_id = %id, error = %err, "unreadable message attributes dropped");
                Vec::new()
            });
            messages.insert(
                seq as u64,
                Message {
                    id,
                    body,
                    attributes,
                    visible_at: instant_of(visible_at_ms),
                    // Receives are counted in memory (a write each would cost a commit per
                    // delivery), so one made before the process stopped is lost with it: counted
                    // here, as SQS counts a receive whose consumer died. A message at a first
                    // receive is taken for one no copy of which began; after a restart that no
                    // longer holds (a failed first attempt recorded, its retry's message lost
                    // with the process), and the dispatcher must read each pair's log instead.
                    receive_count: (receive_count as u32).max(1),
                    receipt: None,
                },
            );
            messages.next_seq = seq as u64 + 1;
        }
        Ok(Self {
            log: Some(QueueLog {
                db,
                name: name.to_owned(),
            }),
            messages: Mutex::new(messages),
            ..Self::new(config, dead_letters)
        })
    }

    /// Whether the queue keeps its messages in `db` (an event's entry can then commit with it).
    pub(crate) fn is_kept_in(&self, db: &Arc<Database>) -> bool {
        self.log.as_ref().is_some_and(|log| Arc::ptr_eq(&log.db, db))
    }

    /// Messages held, visible or not.
    pub fn len(&self) -> usize {
        self.messages.lock().by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reserve_seq(&self) -> u64 {
        let mut messages = self.messages.lock();
        messages.next_seq += 1;
        messages.next_seq - 1
    }

    fn insert(&self, seq: u64, message: Message) {
        self.messages.lock().insert(seq, message);
        self.announce(1);
    }

    /// Wakes a waiting receiver per message that arrived visible, up to the receivers waiting;
    /// with none waiting, the next receiver to wait returns at once. Waking every receiver for
    /// each message (the dispatcher has several) made all but one poll, find the queue empty
    /// and set their timers again, for every event. (A receiver counts as waiting from the
    /// moment it looks at the queue, see `receive`.)
    fn announce(&self, arrived: usize) {
        for _ in 0..arrived.min(ANNOUNCED_AT_MOST) {
            self.arrived.notify_one();
        }
    }

    /// Writes the entry of the event stored at `position` in the caller's transaction (the
    /// event's own): a reference to its row. It becomes receivable once [`Staged::admit`] is
    /// called after the commit; a transaction rolled back leaves nothing behind (its sequence
    /// number is simply skipped).
    pub(crate) fn stage_event(
        &self,
        conn: &Connection,
        position: u64,
        attributes: Vec<(String, String)>,
    ) -> Result<Staged, StoreError> {
        let (seq, id) = (self.reserve_seq(), ulid::Ulid::new().to_string());
        if let Some(log) = &self.log {
            let stored = serde_json::to_string(&attributes).map_err(StoreError::unavailable)?;
            conn.prepare_cached(
                "INSERT INTO messages (queue, seq, id, body, attributes, visible_at_ms, receive_count, event_position) \
                 VALUES (?1, ?2, ?3, '', ?4, 0, 0, ?5)",
            )
            .and_then(|mut s| s.execute(params![log.name, seq as i64, id, stored, position as i64]))
            .map_err(StoreError::unavailable)?;
        }
        Ok(Staged { seq, id, attributes })
    }

    /// Adds a message (stored first, when durable).
    pub async fn push(
        &self,
        body: String,
        attributes: Vec<(String, String)>,
        delay: Duration,
    ) -> Result<(), PipelineError> {
        self.push_all(vec![(body, attributes)], delay).await
    }

    /// Adds messages in one commit (stored first, when durable), in order.
    pub async fn push_all(
        &self,
        messages: Vec<(String, Vec<(String, String)>)>,
        delay: Duration,
    ) -> Result<(), PipelineError> {
        self.push_all_with(messages, delay, Durability::PowerLoss).await
    }

    async fn push_all_with(
        &self,
        messages: Vec<(String, Vec<(String, String)>)>,
        delay: Duration,
        durability: Durability,
    ) -> Result<(), PipelineError> {
        let count = messages.len();
        let new: Vec<(u64, Message)> = messages
            .into_iter()
            .map(|(body, attributes)| {
                let message = Message {
                    id: ulid::Ulid::new().to_string(),
                    body,
                    attributes,
                    visible_at: Instant::now() + delay,
                    receive_count: 0,
                    receipt: None,
                };
                (self.reserve_seq(), message)
            })
            .collect();
        if let Some(log) = &self.log {
            let rows = new
                .iter()
                .map(|(seq, m)| {
                    let attributes = serde_json::to_string(&m.attributes).map_err(PipelineError::unavailable)?;
                    Ok((*seq as i64, m.id.clone(), stored_body(&m.body)?, attributes))
                })
                .collect::<Result<Vec<_>, PipelineError>>()?;
            let (name, visible_at_ms) = (log.name.clone(), wall_clock_ms(delay));
            let store = move |conn: &Connection| {
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO messages (queue, seq, id, body, attributes, visible_at_ms, receive_count) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                    )
                    .map_err(StoreError::unavailable)?;
                for (seq, id, body, attributes) in rows {
                    insert
                        .execute(params![name, seq, id, body, attributes, visible_at_ms])
                        .map_err(StoreError::unavailable)?;
                }
                Ok(())
            };
            match durability {
                Durability::PowerLoss => log.db.write(store).await,
                Durability::ProcessCrash => log.db.write_unsynced_with_next(store).await,
            }
            .map_err(failed)?;
        }
        let mut messages = self.messages.lock();
        for (seq, message) in new {
            messages.insert(seq, message);
        }
        drop(messages);
        if delay.is_zero() {
            self.announce(count);
        } else {
            // Not receivable yet: every waiting receiver sets its timer to when they are, so
            // they are taken then even if the one woken stops waiting before.
            self.arrived.notify_waiters();
        }
        Ok(())
    }

    /// Takes up to `max` visible messages now, and those received too often (for the
    /// dead-letter queue). Returns both and, when none were visible, when the next one becomes
    /// visible.
    fn take(&self, max: usize) -> (Vec<QueuedMessage>, Vec<(u64, Message)>, Option<Instant>) {
        let now = Instant::now();
        let mut messages = self.messages.lock();
        let mut taken = Vec::new();
        let mut moved = Vec::new();
        while taken.len() < max {
            let Some(&(visible_at, seq)) = messages.by_visibility.first() else {
                break;
            };
            if visible_at > now {
                break;
            }
            let Some(receive_count) = messages.by_seq.get(&seq).map(|m| m.receive_count) else {
                messages.by_visibility.pop_first();
                continue;
            };
            if self.dead_letters.is_some() && receive_count >= self.config.max_receive_count {
                moved.extend(messages.remove(seq).map(|m| (seq, m)));
                continue;
            }
            messages.make_visible_at(seq, now + self.config.visibility_timeout);
            let receipt = ulid::Ulid::new().to_string();
            let Some(message) = messages.by_seq.get_mut(&seq) else {
                continue;
            };
            let old_receipt = message.receipt.replace(receipt.clone());
            message.receive_count += 1;
            taken.push(QueuedMessage {
                message_id: message.id.clone(),
                receipt: receipt.clone(),
                body: message.body.clone(),
                receive_count: message.receive_count,
                attributes: message.attributes.clone(),
            });
            if let Some(old) = old_receipt {
                messages.by_receipt.remove(&old);
            }
            messages.by_receipt.insert(receipt, seq);
        }
        let next_visible = messages.by_visibility.first().map(|(at, _)| *at);
        (taken, moved, next_visible)
    }

    /// Moves messages to the dead-letter queue (in one transaction per message, when durable).
    async fn redrive(&self, moved: Vec<(u64, Message)>) -> Result<(), PipelineError> {
        let Some(dlq) = &self.dead_letters else {
            return Ok(());
        };
        for (seq, mut message) in moved {
            let new_seq = dlq.reserve_seq();
            if let (Some(log), Some(dlq_log)) = (&self.log, &dlq.log) {
                let (from, to) = (log.name.clone(), dlq_log.name.clone());
                log.db
                    .write(move |conn| {
                        conn.prepare_cached(
                            "UPDATE messages SET queue = ?1, seq = ?2, receive_count = 0, visible_at_ms = 0 \
                             WHERE queue = ?3 AND seq = ?4",
                        )
                        .and_then(|mut s| s.execute(params![to, new_seq as i64, from, seq as i64]))
                        .map_err(StoreError::unavailable)?;
                        Ok(())
                    })
                    .await
                    .map_err(failed)?;
            }
            message.receive_count = 0;
            message.visible_at = Instant::now();
            dlq.insert(new_seq, message);
        }
        Ok(())
    }

    /// Stores a message's new visibility and receive count, when durable. Not fsynced: a power
    /// failure that undoes it only makes the message visible sooner (as after any restart, a
    /// delivery in flight is received again).
    async fn store_visibility(&self, seq: u64, visible_in: Duration, receive_count: u32) -> Result<(), PipelineError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let name = log.name.clone();
        let visible_at_ms = wall_clock_ms(visible_in);
        log.db
            .write_unsynced(move |conn| {
                conn.prepare_cached(
                    "UPDATE messages SET visible_at_ms = ?1, receive_count = ?2 WHERE queue = ?3 AND seq = ?4",
                )
                .and_then(|mut s| s.execute(params![visible_at_ms, receive_count, name, seq as i64]))
                .map_err(StoreError::unavailable)?;
                Ok(())
            })
            .await
            .map_err(failed)
    }
}

#[async_trait]
impl DeliveryQueue for EmbeddedQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<(), PipelineError> {
        refuse_too_large(body)?;
        self.push(body.to_owned(), Vec::new(), delay).await
    }

    /// Not fsynced: the handled message's deletion commits after it, so a power failure that
    /// undoes this undoes the deletion too (see [`Durability::ProcessCrash`]). Deferring a
    /// delivery to a stuck endpoint cost a second fsync per event.
    async fn send_onward(&self, body: &str, delay: Duration) -> Result<(), PipelineError> {
        refuse_too_large(body)?;
        self.push_all_with(vec![(body.to_owned(), Vec::new())], delay, Durability::ProcessCrash)
            .await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueuedMessage>, PipelineError> {
        let deadline = Instant::now() + wait;
        loop {
            // Waiting from before it looks (not only once it sleeps), so a message that arrives
            // meanwhile, while it moves messages to the dead-letter queue say, wakes it or
            // another receiver: each arrival wakes only as many receivers as messages.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (taken, moved, next_visible) = self.take(max.max(1));
            if !moved.is_empty() {
                self.redrive(moved).await?;
            }
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
        let seq = {
            let mut messages = self.messages.lock();
            let seq = messages.by_receipt.get(receipt).copied();
            seq.and_then(|seq| messages.remove(seq).map(|_| seq))
        };
        let (Some(seq), Some(log)) = (seq, &self.log) else {
            return Ok(());
        };
        let name = log.name.clone();
        // Not waited for: see `write_detached`. The dispatcher records a delivery before it
        // deletes its message, so an entry whose delete a crash lost is received again and
        // found delivered.
        log.db.write_detached("deleting a queue entry", move |conn| {
            conn.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND seq = ?2")
                .and_then(|mut s| s.execute(params![name, seq as i64]))
                .map_err(StoreError::unavailable)?;
            Ok(())
        });
        Ok(())
    }

    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), PipelineError> {
        let (seq, receive_count) = {
            let mut messages = self.messages.lock();
            let found = messages.by_receipt.get(receipt).copied();
            let Some((seq, receive_count)) =
                found.and_then(|seq| messages.by_seq.get(&seq).map(|m| (seq, m.receive_count)))
            else {
                return Err(PipelineError::invalid("the receipt is not current"));
            };
            messages.make_visible_at(seq, Instant::now() + timeout);
            (seq, receive_count)
        };
        self.arrived.notify_waiters();
        self.store_visibility(seq, timeout, receive_count).await
    }
}
