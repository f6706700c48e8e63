//! The first attempts of one queue batch, stored together: the attempt log can keep them in one
//! write per endpoint (on DynamoDB a write unit per item; a first attempt alone is ~400 bytes).
//!
//! Each pair of the batch holds a [`Slot`]. A first attempt's record waits in its slot until
//! every pair of the batch has made its first attempt or finished without one — or at most
//! [`MAX_HOLD`] after it was ready, so a slow receiver in the batch holds up nobody's record for
//! long. What this batch delays: the record, and so the settling (delete) of the message; never a
//! webhook. What it may lose: a crash in that wait loses the records of attempts already made;
//! the messages come back, find nothing begun, and the receivers get those events again with
//! the same `webhook-id` — as with a crash between an attempt and its record without the batch.
//!
//! First attempts are stored unconditionally (a conditional write per record is what a group
//! saves). Two copies of one event handled at the same moment (neither saw the other's record)
//! both make attempt 1, as before; if it failed, both schedule attempt 2, and the conditional
//! record of attempt 2 stops the second series there — the receiver may get attempt 2 twice.

use checkout::attempt_log::AttemptRecord;
use checkout::ports::{DeliveryLog, StoreError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// The longest a ready record waits for the rest of its batch.
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(100);

/// A failed write, shared by every record it carried.
pub(crate) type WriteResult = Result<(), Arc<StoreError>>;

/// The first attempts of one batch.
pub(crate) struct FirstAttempts {
    log: Arc<dyn DeliveryLog>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Slots that may still bring a record.
    open: usize,
    waiting: Vec<(AttemptRecord, oneshot::Sender<WriteResult>)>,
    /// A [`MAX_HOLD`] timer is running.
    timer: bool,
}

impl FirstAttempts {
    pub fn new(log: Arc<dyn DeliveryLog>) -> Arc<Self> {
        Arc::new(Self {
            log,
            state: Mutex::new(State::default()),
        })
    }

    /// A slot for one more pair. Every slot is taken before any pair starts: the batch writes
    /// when none is open any more.
    pub fn slot(self: &Arc<Self>) -> Slot {
        self.state.lock().open += 1;
        Slot {
            batch: self.clone(),
            closed: AtomicBool::new(false),
        }
    }

    /// Writes what waits if no slot is open; otherwise makes sure a timer will.
    fn schedule(self: &Arc<Self>, state: &mut State) {
        if state.waiting.is_empty() {
            return;
        }
        if state.open == 0 {
            self.write(std::mem::take(&mut state.waiting));
        } else if !state.timer {
            state.timer = true;
            let batch = self.clone();
            spawn(async move {
                tokio::time::sleep(MAX_HOLD).await;
                let mut state = batch.state.lock();
                state.timer = false;
                let waiting = std::mem::take(&mut state.waiting);
                if !waiting.is_empty() {
                    batch.write(waiting);
                }
            });
        }
    }

    fn write(&self, waiting: Vec<(AttemptRecord, oneshot::Sender<WriteResult>)>) {
        let log = self.log.clone();
        spawn(async move {
            let (records, senders): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
            let result = log.record_first_attempts(&records).await.map_err(Arc::new);
            for sender in senders {
                let _ = sender.send(result.clone());
            }
        });
    }
}

/// The write runs as its own task: a record's waiter going away must not stop the others'.
fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// One pair's place in its batch.
pub(crate) struct Slot {
    batch: Arc<FirstAttempts>,
    closed: AtomicBool,
}

impl Slot {
    /// Stores the pair's first attempt with the batch's; returns once it is written.
    pub async fn record(&self, record: AttemptRecord) -> WriteResult {
        let (sender, written) = oneshot::channel();
        {
            let mut state = self.batch.state.lock();
            if !self.closed.swap(true, Ordering::AcqRel) {
                state.open -= 1;
            }
            state.waiting.push((record, sender));
            self.batch.schedule(&mut state);
        }
        written
            .await
            .unwrap_or_else(|_| Err(Arc::new(StoreError::unavailable(Unfinished))))
    }

    /// The pair is finished (with or without a first attempt): the batch need not wait for it.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let mut state = self.batch.state.lock();
            state.open -= 1;
            self.batch.schedule(&mut state);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.close();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the attempt log's write did not finish")]
struct Unfinished;
