//! A replay job as the store keeps it and the API shows it, and the queue message that runs
//! each of its steps (see [`crate::replay`] for how a replay runs).

use crate::attempt_log;
use crate::clock::{self, Timestamp};
use crate::ids::{EndpointId, MerchantId, ReplayId};
use serde::{Deserialize, Serialize};

/// A running replay without progress this long is abandoned: another may start in its place.
pub const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(10);

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

/// What a job sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayKind {
    /// What a merchant asked for: the window's events the endpoint did not receive, newest
    /// first.
    #[default]
    Replay,
    /// What a pause held, oldest event first: started by the endpoint's resume.
    Resume,
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
    #[serde(default)]
    pub kind: ReplayKind,
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
        Ok(Self::started(
            merchant_id,
            endpoint_id,
            (since.max(kept_from), until),
            ReplayKind::Replay,
            include_delivered,
            now,
        ))
    }

    /// The job that sends what a pause held: every delivery recorded as paused of an event
    /// created from `since` (the pause's start, or the oldest event it held) on, oldest first.
    /// The log keeps nothing older than its retention.
    pub fn resume(merchant_id: MerchantId, endpoint_id: EndpointId, since: Timestamp, now: Timestamp) -> Self {
        let window = (since.max(now - attempt_log::RETENTION), now);
        Self::started(merchant_id, endpoint_id, window, ReplayKind::Resume, false, now)
    }

    /// A job over `window` with nothing done yet, not stored.
    fn started(
        merchant_id: MerchantId,
        endpoint_id: EndpointId,
        (since, until): (Timestamp, Timestamp),
        kind: ReplayKind,
        include_delivered: bool,
        now: Timestamp,
    ) -> Self {
        Self {
            id: ReplayId::generate(),
            merchant_id,
            endpoint_id,
            since,
            until,
            kind,
            include_delivered,
            status: ReplayStatus::Running,
            events_seen: 0,
            replayed: 0,
            set_aside: 0,
            cursor: None,
            revision: 0,
            created_at: now,
            updated_at: now,
        }
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
            "kind": self.kind,
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
    pub(crate) fn of(job: &ReplayJob) -> Self {
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
