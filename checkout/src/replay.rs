//! Replays of what an endpoint missed, run as a job in the background.
//!
//! A merchant asks for a time window; the job walks the endpoint's attempt log over that window,
//! newest event first, and queues one delivery task per event the endpoint did not receive
//! (failed, exhausted, skipped while disabled; never one it received at some attempt) — or per
//! event, with `include_delivered`. Each task goes through the same rate limits as any delivery
//! and keeps the event's `webhook-id`.
//!
//! An endpoint has one replay at a time: its latest, which the store keeps under the endpoint
//! (so replays take no space beyond one record per endpoint). Another may start once it has
//! completed, or once it has made no progress for [`ABANDONED_AFTER`] (its runner's messages
//! were lost: a new replay takes its place, and its late steps find another job and stop).
//!
//! The walk runs in steps of at most [`STEP_RECORDS`] records, each started by a message on the
//! replay-steps queue that names the job and the revision it continues, so no step holds a
//! request or a Lambda invocation for long and a window of any size (up to the log's 30 days)
//! is done. The API starts a job ([`start`]); the replay runner ([`Replayer`]) runs its steps.
//! After each step the job is stored, conditionally on its revision, with its cursor and
//! counts: that record is the progress a merchant reads.
//!
//! What a crash does:
//! - A step whose job record was not stored is run again by its message's next receipt,
//!   queueing its tasks a second time; a task whose attempt is already recorded sends nothing
//!   ([`crate::ports::DeliveryLog::record`]).
//! - A step stored whose successor was lost: its own message comes back (it was not
//!   acknowledged). Once the job has made no progress for [`SUCCESSOR_LOST_AFTER`], that
//!   message queues the successor again; before, it is kept for later — the successor may only
//!   be waiting, and queueing it twice would run every later step twice.

use crate::attempt_log::{self, AttemptQuery, AttemptRecord, AttemptStatus};
use crate::clock::{SharedClock, Timestamp};
use crate::delivery_task::TaskMessage;
use crate::ports::{DeliveryLog, DeliveryQueue, EventStore, PipelineError, ReplayStore, StoreError};
pub use crate::replay_job::{ABANDONED_AFTER, ReplayJob, ReplayKind, ReplayStatus, ReplayStep, WindowError};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// Records of the log one step reads (two pages of 100): a step queues at most this many tasks.
pub const STEP_RECORDS: usize = 200;
const PAGE: usize = 100;

/// A step message that finds its successor stored but no progress for this long takes the
/// successor for lost and queues it again. Longer than a healthy step message waits (none is
/// delayed, and a step takes seconds), shorter than [`ABANDONED_AFTER`]. Should steps of many
/// replays queue up behind the runner's concurrency, a successor only waiting may be queued a
/// second time: its copy loses the conditional write of the job and queues nothing.
pub const SUCCESSOR_LOST_AFTER: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("a queue: {0}")]
    Queue(#[from] PipelineError),
    #[error("the message names no replay step")]
    NotAStep,
}

/// What became of a step message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Done with: acknowledge it.
    Finished,
    /// Keep it: it comes back after the queue's visibility timeout and looks again (see
    /// [`SUCCESSOR_LOST_AFTER`]).
    LookAgainLater,
}

/// The sort keys of a window: from `since`, to before `end`. The window takes in `until`'s own
/// millisecond: an event made in the millisecond the replay was asked (`until` by default) came
/// before the request.
fn window(since: Timestamp, until: Timestamp) -> (String, String) {
    (
        attempt_log::time_bound(since),
        attempt_log::time_bound(until + chrono::Duration::milliseconds(1)),
    )
}

/// What a replay of a window would send, counted before it starts (the portal shows it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preview {
    /// Events of the window with a record in the endpoint's log.
    pub events: usize,
    /// Of those, the ones the replay would send: not delivered by their newest record (all of
    /// them with `include_delivered`), test events left out. An upper bound: the replay also skips an event delivered
    /// at an earlier attempt, and one delivered meanwhile.
    pub to_send: usize,
    /// False when the count stopped at the records it may read: the window holds more.
    pub complete: bool,
}

/// Counts what a replay of `since..=until` to `endpoint` would send, walking the log like the
/// replay does (newest first, an event by its newest record), reading at most `max_records`.
pub async fn preview(
    log: &dyn DeliveryLog,
    endpoint: &str,
    since: Timestamp,
    until: Timestamp,
    include_delivered: bool,
    max_records: usize,
) -> Result<Preview, StoreError> {
    let (start, end) = window(since, until);
    let mut query = AttemptQuery {
        before: Some(end),
        from: Some(start),
        limit: PAGE,
        ..AttemptQuery::default()
    };
    let mut preview = Preview::default();
    let mut last_event = None;
    let mut read = 0;
    loop {
        let page = log.attempts(endpoint, &query).await?;
        let full = page.len() == query.limit;
        read += page.len();
        query.before = page.last().map(AttemptRecord::sort_key);
        for record in page {
            if last_event.as_ref() == Some(&record.event_id) {
                continue;
            }
            preview.events += 1;
            // A test event is never stored, so a replay cannot send it again.
            let resendable = record.event_type != crate::event::EventType::Test;
            preview.to_send += usize::from(resendable && (include_delivered || !record.delivered()));
            last_event = Some(record.event_id);
        }
        if !full {
            preview.complete = true;
            return Ok(preview);
        }
        if read >= max_records {
            return Ok(preview);
        }
    }
}

/// Stores a new job as its endpoint's replay and queues its first step; returns the job as
/// stored. [`StoreError::Changed`]: another replay of the endpoint is running.
pub async fn start(
    jobs: &dyn ReplayStore,
    steps: &dyn DeliveryQueue,
    job: ReplayJob,
    now: Timestamp,
) -> Result<ReplayJob, ReplayError> {
    jobs.start_replay(&job, now).await?;
    let stored = ReplayJob {
        revision: job.revision + 1,
        ..job
    };
    if let Err(err) = steps.send(&ReplayStep::of(&stored).to_body(), Duration::ZERO).await {
        // Without its first step the job would never run: it is marked failed, so the client's
        // retry may start another at once. (Should that write fail too, the job is replaced
        // after ABANDONED_AFTER.)
        let failed = ReplayJob {
            status: ReplayStatus::Failed,
            ..stored
        };
        if let Err(mark) = jobs.put_replay(&failed).await {
            warn!(replay_id = %failed.id, error = %mark, "could not mark a replay that never started as failed");
        }
        return Err(err.into());
    }
    info!(merchant_id = %stored.merchant_id, endpoint_id = %stored.endpoint_id, replay_id = %stored.id, "replay started");
    Ok(stored)
}

/// What a replay step reads and writes.
pub struct ReplayPorts {
    pub events: Arc<dyn EventStore>,
    pub log: Arc<dyn DeliveryLog>,
    pub jobs: Arc<dyn ReplayStore>,
    /// Where the delivery tasks go: the dispatcher's queue.
    pub deliveries: Arc<dyn DeliveryQueue>,
    /// Where the next step goes.
    pub steps: Arc<dyn DeliveryQueue>,
}

/// Runs replay steps.
pub struct Replayer {
    ports: ReplayPorts,
    clock: SharedClock,
}

/// What one event of the window came to.
enum Enqueued {
    Queued,
    /// Not sent: the endpoint received it at some attempt, or the event is no longer stored.
    Skipped,
    /// The event cannot be read back: skipped and logged, the rest of the window goes on.
    Unreadable,
}

impl Replayer {
    pub fn new(ports: ReplayPorts, clock: SharedClock) -> Self {
        Self { ports, clock }
    }

    /// Runs the step a queue message names; a body that names none is an error, kept for the
    /// queue's own dead-letter redrive.
    pub async fn step_of_body(&self, body: &str) -> Result<StepOutcome, ReplayError> {
        let step = ReplayStep::parse(body).ok_or(ReplayError::NotAStep)?;
        self.step(&step).await
    }

    /// Runs the step the message names.
    pub async fn step(&self, step: &ReplayStep) -> Result<StepOutcome, ReplayError> {
        let job = self.ports.jobs.replay(&step.merchant_id, &step.endpoint_id).await?;
        let Some(job) = job.filter(|j| j.id == step.id) else {
            info!(merchant_id = %step.merchant_id, replay_id = %step.id, "replay replaced or gone: step dropped");
            return Ok(StepOutcome::Finished);
        };
        if job.status != ReplayStatus::Running {
            return Ok(StepOutcome::Finished);
        }
        if job.revision == step.revision + 1 {
            return self.successor_of_a_step_done(&job).await;
        }
        if job.revision != step.revision {
            return Ok(StepOutcome::Finished);
        }
        let next = self.walk(&job).await?;
        match self.ports.jobs.put_replay(&next).await {
            Ok(()) => {}
            // Another copy of this message ran the step and stored it first.
            Err(StoreError::Changed { .. }) => return Ok(StepOutcome::Finished),
            Err(err) => return Err(err.into()),
        }
        let stored = ReplayJob {
            revision: next.revision + 1,
            ..next
        };
        info!(
            merchant_id = %stored.merchant_id,
            endpoint_id = %stored.endpoint_id,
            replay_id = %stored.id,
            events_seen = stored.events_seen,
            replayed = stored.replayed,
            set_aside = stored.set_aside,
            status = ?stored.status,
            "replay step"
        );
        if stored.status == ReplayStatus::Running {
            self.ports
                .steps
                .send(&ReplayStep::of(&stored).to_body(), Duration::ZERO)
                .await?;
        }
        Ok(StepOutcome::Finished)
    }

    /// A copy of a step already stored: its successor is queued again only once the job has
    /// made no progress for a while (until then it may just be waiting).
    async fn successor_of_a_step_done(&self, job: &ReplayJob) -> Result<StepOutcome, ReplayError> {
        if job.updated_at + SUCCESSOR_LOST_AFTER > self.clock.now() {
            return Ok(StepOutcome::LookAgainLater);
        }
        warn!(merchant_id = %job.merchant_id, replay_id = %job.id, revision = job.revision, "replay step lost: queued again");
        self.ports
            .steps
            .send(&ReplayStep::of(job).to_body(), Duration::ZERO)
            .await?;
        Ok(StepOutcome::Finished)
    }

    /// Reads up to [`STEP_RECORDS`] records past the job's cursor and queues what they call
    /// for; returns the job as it is after them (not stored yet).
    async fn walk(&self, job: &ReplayJob) -> Result<ReplayJob, ReplayError> {
        let mut next = job.clone();
        let (start, end) = window(job.since, job.until);
        let oldest_first = job.kind == ReplayKind::Resume;
        let mut query = if oldest_first {
            // No end: a hold recorded after the resume (by a dispatcher that read the endpoint
            // before it) is sent by that dispatcher, and one of a later pause is held again.
            AttemptQuery {
                from: Some(start),
                after: job.cursor.clone(),
                before: None,
                limit: PAGE,
                oldest_first,
            }
        } else {
            AttemptQuery {
                before: Some(job.cursor.clone().unwrap_or(end)),
                from: Some(start),
                limit: PAGE,
                ..AttemptQuery::default()
            }
        };
        // Records of one event are together: only the first one read counts (newest first, that
        // is the delivery's state). Oldest first, an event counts at its first held record read:
        // the cursor's own event may still have one ahead (a step can end between its records).
        // Should a step end between two held records of one event, both steps queue it, as the
        // same attempt: the second copy finds it recorded and sends nothing.
        let mut last_event = if oldest_first {
            None
        } else {
            job.cursor.as_deref().and_then(attempt_log::event_of_sort_key)
        };
        let mut read = 0;
        loop {
            let page = self.ports.log.attempts(job.endpoint_id.as_str(), &query).await?;
            let full = page.len() == query.limit;
            read += page.len();
            let mut chosen = Vec::new();
            for record in page {
                next.cursor = Some(record.sort_key());
                if oldest_first {
                    // A resume sends what its pause held: an event counts at its held record.
                    if record.status == AttemptStatus::Paused && last_event.as_ref() != Some(&record.event_id) {
                        last_event = Some(record.event_id.clone());
                        next.events_seen += 1;
                        chosen.push(record);
                    }
                    continue;
                }
                if last_event.as_ref() == Some(&record.event_id) {
                    continue;
                }
                last_event = Some(record.event_id.clone());
                next.events_seen += 1;
                if job.include_delivered || !record.delivered() {
                    chosen.push(record);
                }
            }
            for outcome in self.enqueue_all(&chosen, job).await? {
                match outcome {
                    Enqueued::Queued => next.replayed += 1,
                    Enqueued::Skipped => {}
                    Enqueued::Unreadable => next.set_aside += 1,
                }
            }
            if !full {
                next.status = ReplayStatus::Completed;
                break;
            }
            if read >= STEP_RECORDS {
                break;
            }
            if oldest_first {
                query.after = next.cursor.clone();
            } else {
                query.before = next.cursor.clone();
            }
        }
        next.updated_at = self.clock.now();
        Ok(next)
    }

    /// Queues the records' tasks. A replay queues several at once (each is a few reads and a
    /// send); a resume one after the other, so they are queued in event order.
    async fn enqueue_all(&self, records: &[AttemptRecord], job: &ReplayJob) -> Result<Vec<Enqueued>, ReplayError> {
        let mut outcomes = Vec::with_capacity(records.len());
        let at_once = if job.kind == ReplayKind::Resume { 1 } else { 16 };
        for chunk in records.chunks(at_once) {
            let sends = chunk.iter().map(|r| self.enqueue(r, job));
            for outcome in futures_util::future::join_all(sends).await {
                outcomes.push(outcome?);
            }
        }
        Ok(outcomes)
    }

    /// Queues one replay. Unless the job includes delivered events, an event the endpoint
    /// received at any attempt is not sent (its newest record may say otherwise: a later replay
    /// skipped while the endpoint was disabled), and the task sends nothing if the endpoint gets
    /// it meanwhile. A resume sends only a delivery whose newest record is still its hold (one
    /// that went on after it is the dispatcher's).
    async fn enqueue(&self, record: &AttemptRecord, job: &ReplayJob) -> Result<Enqueued, ReplayError> {
        let even_if_delivered = job.include_delivered;
        let mut attempt = record.attempt;
        if !even_if_delivered {
            let all = self.ports.log.attempts_of(&record.target, &record.event_id).await?;
            if all.iter().any(AttemptRecord::delivered) {
                return Ok(Enqueued::Skipped);
            }
            if job.kind == ReplayKind::Resume {
                match all.iter().max_by_key(|r| r.attempt) {
                    Some(newest) if newest.status == AttemptStatus::Paused => attempt = newest.attempt,
                    _ => return Ok(Enqueued::Skipped),
                }
            }
        }
        // One read of the event's own version, not the session's whole history.
        let found = match self.ports.events.event_at(&record.session_id, record.version).await {
            Ok(found) => found,
            Err(StoreError::Corrupt(reason)) => {
                error!(session_id = %record.session_id, event_id = %record.event_id, %reason, "replay skips an unreadable event");
                return Ok(Enqueued::Unreadable);
            }
            Err(err) => return Err(err.into()),
        };
        let Some(event) = found.filter(|e| e.id == record.event_id) else {
            return Ok(Enqueued::Skipped);
        };
        let raw = serde_json::value::to_raw_value(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let task = TaskMessage::new(&record.target, attempt + 1, even_if_delivered, &raw);
        self.ports.deliveries.send(&task.to_body(), Duration::ZERO).await?;
        Ok(Enqueued::Queued)
    }
}
