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

use crate::attempt_log::{self, AttemptQuery, AttemptRecord};
use crate::clock::{self, SharedClock, Timestamp};
use crate::delivery_task::TaskMessage;
use crate::ids::{EndpointId, MerchantId, ReplayId};
use crate::ports::{DeliveryLog, DeliveryQueue, EventStore, PipelineError, ReplayStore, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// Records of the log one step reads (two pages of 100): a step queues at most this many tasks.
pub const STEP_RECORDS: usize = 200;
const PAGE: usize = 100;

/// A running replay without progress this long is abandoned: another may start in its place.
pub const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// A step message that finds its successor stored but no progress for this long takes the
/// successor for lost and queues it again. Longer than a healthy step message waits (none is
/// delayed, and a step takes seconds), shorter than [`ABANDONED_AFTER`]. Should steps of many
/// replays queue up behind the runner's concurrency, a successor only waiting may be queued a
/// second time: its copy loses the conditional write of the job and queues nothing.
pub const SUCCESSOR_LOST_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// How far in the future `until` may be (clocks differ a little).
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayStatus {
    Running,
    Completed,
    /// Its first step could not be queued: nothing was sent.
    Failed,
}

/// A replay and how far it has got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayJob {
    pub id: ReplayId,
    pub merchant_id: MerchantId,
    pub endpoint_id: EndpointId,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub since: Timestamp,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub until: Timestamp,
    /// Also send events the endpoint already received.
    pub include_delivered: bool,
    pub status: ReplayStatus,
    /// Events of the window looked at so far.
    pub events_seen: u64,
    /// Of those, queued to be sent again.
    pub replayed: u64,
    /// Of those, set aside: the stored event cannot be read back (logged with its id).
    pub set_aside: u64,
    /// The sort key of the last record read: the next step reads below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Steps stored so far, counting the start; a store write is conditional on it.
    pub revision: u64,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub created_at: Timestamp,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub updated_at: Timestamp,
}

/// Why a replay window is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("since must be before until")]
    Empty,
    #[error("until is in the future: a replay sends what was missed up to now")]
    InFuture,
    #[error("the window ended more than {} days ago: the attempt log keeps nothing older", attempt_log::RETENTION.num_days())]
    Expired,
}

impl ReplayJob {
    /// A new job over `[since, until]` for the endpoint, not yet stored. A window reaching back
    /// further than the attempt log keeps records (30 days before now) starts where the log
    /// does; one that ended before is refused. So both ends are within a few weeks of now, and
    /// always stored in a form that reads back (four-digit years).
    pub fn new(
        merchant_id: MerchantId,
        endpoint_id: EndpointId,
        since: Timestamp,
        until: Timestamp,
        include_delivered: bool,
        now: Timestamp,
    ) -> Result<Self, WindowError> {
        if until > now + CLOCK_SKEW {
            return Err(WindowError::InFuture);
        }
        if since >= until {
            return Err(WindowError::Empty);
        }
        let kept_from = now - attempt_log::RETENTION;
        if until <= kept_from {
            return Err(WindowError::Expired);
        }
        Ok(Self {
            id: ReplayId::generate(),
            merchant_id,
            endpoint_id,
            since: since.max(kept_from),
            until,
            include_delivered,
            status: ReplayStatus::Running,
            events_seen: 0,
            replayed: 0,
            set_aside: 0,
            cursor: None,
            revision: 0,
            created_at: now,
            updated_at: now,
        })
    }

    /// Whether another replay of its endpoint may start in its place at `now`.
    pub fn replaceable(&self, now: Timestamp) -> bool {
        self.status != ReplayStatus::Running || self.updated_at + ABANDONED_AFTER <= now
    }

    /// What the API shows of it.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "status": self.status,
            "since": clock::rfc3339_millis(&self.since),
            "until": clock::rfc3339_millis(&self.until),
            "include_delivered": self.include_delivered,
            "events_seen": self.events_seen,
            "replayed": self.replayed,
            "set_aside": self.set_aside,
            "created_at": clock::rfc3339_millis(&self.created_at),
            "updated_at": clock::rfc3339_millis(&self.updated_at),
        })
    }
}

/// The queue message that starts one step: the job, and the revision it continues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayStep {
    pub id: ReplayId,
    pub merchant_id: MerchantId,
    pub endpoint_id: EndpointId,
    pub revision: u64,
}

#[derive(Serialize, Deserialize)]
struct StepBody {
    replay_step: ReplayStep,
}

impl ReplayStep {
    fn of(job: &ReplayJob) -> Self {
        Self {
            id: job.id.clone(),
            merchant_id: job.merchant_id.clone(),
            endpoint_id: job.endpoint_id.clone(),
            revision: job.revision,
        }
    }

    pub fn to_body(&self) -> String {
        // A struct of strings and a number serializes.
        serde_json::to_string(&StepBody {
            replay_step: self.clone(),
        })
        .unwrap_or_default()
    }

    /// The step a queue body names, if it is one (`{"replay_step": {…}}`).
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str::<StepBody>(body).ok().map(|b| b.replay_step)
    }
}

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
    events: Arc<dyn EventStore>,
    log: Arc<dyn DeliveryLog>,
    jobs: Arc<dyn ReplayStore>,
    deliveries: Arc<dyn DeliveryQueue>,
    steps: Arc<dyn DeliveryQueue>,
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
        let ReplayPorts {
            events,
            log,
            jobs,
            deliveries,
            steps,
        } = ports;
        Self {
            events,
            log,
            jobs,
            deliveries,
            steps,
            clock,
        }
    }

    /// Runs the step a queue message names; a body that names none is an error, kept for the
    /// queue's own dead-letter redrive.
    pub async fn step_of_body(&self, body: &str) -> Result<StepOutcome, ReplayError> {
        let step = ReplayStep::parse(body).ok_or(ReplayError::NotAStep)?;
        self.step(&step).await
    }

    /// Runs the step the message names.
    pub async fn step(&self, step: &ReplayStep) -> Result<StepOutcome, ReplayError> {
        let job = self.jobs.replay(&step.merchant_id, &step.endpoint_id).await?;
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
        match self.jobs.put_replay(&next).await {
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
            self.steps
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
        self.steps.send(&ReplayStep::of(job).to_body(), Duration::ZERO).await?;
        Ok(StepOutcome::Finished)
    }

    /// Reads up to [`STEP_RECORDS`] records below the job's cursor and queues what they call
    /// for; returns the job as it is after them (not stored yet).
    async fn walk(&self, job: &ReplayJob) -> Result<ReplayJob, ReplayError> {
        let mut next = job.clone();
        // The window takes in `until`'s own millisecond: an event made in the millisecond the
        // replay was asked (`until` by default) came before the request.
        let end = attempt_log::time_bound(job.until + chrono::Duration::milliseconds(1));
        let mut query = AttemptQuery {
            before: Some(job.cursor.clone().unwrap_or(end)),
            from: Some(attempt_log::time_bound(job.since)),
            limit: PAGE,
        };
        // Records of one event are together, newest attempt first: only the first one counts.
        let mut last_event = job.cursor.as_deref().and_then(attempt_log::event_of_sort_key);
        let mut read = 0;
        loop {
            let page = self.log.attempts(job.endpoint_id.as_str(), &query).await?;
            let full = page.len() == query.limit;
            read += page.len();
            let mut chosen = Vec::new();
            for record in page {
                next.cursor = Some(record.sort_key());
                if last_event.as_ref() == Some(&record.event_id) {
                    continue;
                }
                last_event = Some(record.event_id.clone());
                next.events_seen += 1;
                if job.include_delivered || !record.delivered() {
                    chosen.push(record);
                }
            }
            for outcome in self.enqueue_all(&chosen, job.include_delivered).await? {
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
            query.before = next.cursor.clone();
        }
        next.updated_at = self.clock.now();
        Ok(next)
    }

    /// Queues the records' tasks, several at once (each is a few reads and a send).
    async fn enqueue_all(
        &self,
        records: &[AttemptRecord],
        even_if_delivered: bool,
    ) -> Result<Vec<Enqueued>, ReplayError> {
        let mut outcomes = Vec::with_capacity(records.len());
        for chunk in records.chunks(16) {
            let sends = chunk.iter().map(|r| self.enqueue(r, even_if_delivered));
            for outcome in futures_util::future::join_all(sends).await {
                outcomes.push(outcome?);
            }
        }
        Ok(outcomes)
    }

    /// Queues one replay. Unless `even_if_delivered`, an event the endpoint received at any
    /// attempt is not sent (its newest record may say otherwise: a later replay skipped while
    /// the endpoint was disabled), and the task sends nothing if the endpoint gets it meanwhile.
    async fn enqueue(&self, record: &AttemptRecord, even_if_delivered: bool) -> Result<Enqueued, ReplayError> {
        if !even_if_delivered {
            let all = self.log.attempts_of(&record.target, &record.event_id).await?;
            if all.iter().any(AttemptRecord::delivered) {
                return Ok(Enqueued::Skipped);
            }
        }
        // One read of the event's own version, not the session's whole history.
        let found = match self.events.event_at(&record.session_id, record.version).await {
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
        let task = TaskMessage::new(&record.target, record.attempt + 1, even_if_delivered, &raw);
        self.deliveries.send(&task.to_body(), Duration::ZERO).await?;
        Ok(Enqueued::Queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> ReplayJob {
        let now = clock::now();
        ReplayJob::new(
            MerchantId::generate(),
            EndpointId::generate(),
            now - chrono::Duration::hours(1),
            now,
            false,
            now,
        )
        .unwrap()
    }

    #[test]
    fn a_window_is_checked_and_starts_where_the_log_does() {
        let now = clock::now();
        let (m, e) = (MerchantId::generate(), EndpointId::generate());
        let window = |since, until| ReplayJob::new(m.clone(), e.clone(), since, until, false, now);
        assert_eq!(window(now, now), Err(WindowError::Empty));
        assert_eq!(
            window(now - chrono::Duration::hours(1), now + chrono::Duration::minutes(2)),
            Err(WindowError::InFuture),
            "a year 10000 until is refused here, before it is stored"
        );
        assert!(window(now - chrono::Duration::hours(1), now + chrono::Duration::seconds(30)).is_ok());
        let long = window(now - chrono::Duration::days(90), now).unwrap();
        assert_eq!(long.since, now - attempt_log::RETENTION, "nothing older is kept");
        let old_end = now - attempt_log::RETENTION - chrono::Duration::hours(1);
        assert_eq!(
            window(old_end - chrono::Duration::days(1), old_end),
            Err(WindowError::Expired),
            "a window that ended before the log's 30 days"
        );
        let year_zero = chrono::DateTime::parse_from_rfc3339("0000-01-01T00:00:00+23:59")
            .unwrap()
            .to_utc();
        assert_eq!(window(year_zero, now).unwrap().since, now - attempt_log::RETENTION);
        let exact = window(now - chrono::Duration::days(30), now).unwrap();
        assert_eq!(exact.since, now - chrono::Duration::days(30));
    }

    #[test]
    fn a_replay_is_replaceable_once_completed_or_abandoned() {
        let mut job = job();
        let now = job.updated_at;
        assert!(!job.replaceable(now));
        assert!(!job.replaceable(now + ABANDONED_AFTER - chrono::Duration::seconds(1)));
        assert!(job.replaceable(now + ABANDONED_AFTER));
        job.status = ReplayStatus::Completed;
        assert!(job.replaceable(now));
    }

    #[test]
    fn a_step_message_reads_back_and_nothing_else_reads_as_one() {
        let job = job();
        let step = ReplayStep::of(&job);
        assert_eq!(ReplayStep::parse(&step.to_body()), Some(step));
        assert_eq!(ReplayStep::parse(r#"{"delivery": {}, "event": {}}"#), None);
        assert_eq!(ReplayStep::parse("not json"), None);
    }

    #[test]
    fn the_view_shows_progress_not_the_cursor() {
        let mut job = job();
        job.cursor = Some("evt_X#0001".into());
        let view = job.view();
        assert_eq!(view["status"], "running");
        assert_eq!(view["replayed"], 0);
        assert!(view.get("cursor").is_none() && view.get("revision").is_none());
        let stored: ReplayJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(stored, job, "what is stored reads back");
    }
}
