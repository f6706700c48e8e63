//! One event to one target: where that delivery stands (from the attempt log), whether it may go
//! now (admission), the attempt, and its record — which is also the new state of the delivery.

use crate::admission::Admission;
use crate::dead_letters;
use crate::endpoint_health::{Cover, EndpointHealth};
use crate::first_attempts::Slot;
use crate::metrics::Metrics;
use crate::request::{self, WebhookRequest};
use crate::send::{self, AttemptResult};
use crate::targets::Target;
use bytes::Bytes;
use checkout::attempt_log::{AttemptRecord, AttemptStatus, FinalCode};
use checkout::clock::{SharedClock, Timestamp};
use checkout::delivery_outcome::{ErrorClass, Outcome};
use checkout::delivery_task::{DeliveryTask, EventHead};
use checkout::event::{Event, EventType};
use checkout::ports::{DeliveryLog, DeliveryQueue, StoreError};
use checkout::retry_schedule::{Pushback, RetrySchedule};
use checkout::url_safety::UrlPolicy;
use checkout::webhook_endpoint::EndpointState;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitReason {
    /// An attempt failed; the schedule says when the next is due.
    Retry,
    /// Not attempted (over a rate limit): no attempt spent.
    Defer,
    /// Not attempted: the endpoint has its cap of requests in flight (it is slow, or very busy).
    Busy,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PairResult {
    /// Delivered, or nothing more to do.
    Done,
    /// Try again after this long (counted from now).
    Wait(Duration, WaitReason),
    /// Our own storage or queue failed: try the message again soon.
    StorageFailed,
}

/// Which series of attempts this is: the first (from attempt 1), or a replay or redrive
/// (counting from one past the attempts made before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Series {
    pub first_attempt: u32,
    pub replay: bool,
}

impl Series {
    pub const FIRST: Series = Series {
        first_attempt: 1,
        replay: false,
    };

    pub fn of(task: &DeliveryTask) -> Self {
        Self {
            first_attempt: task.first_attempt.max(1),
            replay: task.replay,
        }
    }
}

/// What is known of the delivery's state before it is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// Nothing is recorded for it (the batch's read of first attempts said so).
    Unstarted,
    /// Read the attempt log for its newest record.
    ReadLog,
}

/// One event to one target, in one series of attempts.
#[derive(Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub head: &'a EventHead,
    /// The event's exact bytes, as JSON (for tasks and dead letters) and as the body every
    /// attempt sends (shared, not copied per attempt).
    pub raw: &'a RawValue,
    pub body: &'a Bytes,
    pub target: &'a Target,
    pub series: Series,
    /// Where its first attempt is recorded with the rest of its batch's (see
    /// [`crate::first_attempts`]).
    pub first: &'a Slot,
}

/// Why a delivery is not sent now.
#[derive(Clone, Copy)]
enum Holding {
    Disabled,
    Paused,
}

/// What the attempt log says to do next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Attempt(u32),
    NotYet(Duration),
    /// The delivery was exhausted but its dead letter may not have been sent.
    DeadLetter(u32),
    Nothing,
}

fn next_step(latest: Option<&AttemptRecord>, series: Series, now: Timestamp) -> Next {
    let Some(last) = latest else {
        return Next::Attempt(series.first_attempt);
    };
    if last.attempt < series.first_attempt {
        // The newest record is from before this replay or redrive.
        return if last.delivered() && !series.replay {
            Next::Nothing
        } else {
            Next::Attempt(series.first_attempt)
        };
    }
    if last.dead_lettered {
        return Next::DeadLetter(last.attempt);
    }
    // A hold met again (its message came back after a failure, or the endpoint was resumed):
    // taken up again — held once more while paused, sent otherwise.
    if last.status == AttemptStatus::Paused {
        return Next::Attempt(last.attempt + 1);
    }
    match last.next_attempt_at {
        None => Next::Nothing,
        Some(due) => until(due, now).map_or(Next::Attempt(last.attempt + 1), Next::NotYet),
    }
}

/// How long from `now` until `due`, if it is still ahead.
fn until(due: Timestamp, now: Timestamp) -> Option<Duration> {
    (due - now).to_std().ok().filter(|d| !d.is_zero())
}

pub(crate) struct DelivererSettings {
    pub policy: UrlPolicy,
    pub schedule: RetrySchedule,
    pub max_attempts: u32,
    /// Where every time the deliverer records or compares is read.
    pub clock: SharedClock,
}

/// Carries deliveries through attempts, records and dead letters.
pub(crate) struct Deliverer {
    client: reqwest::Client,
    log: Arc<dyn DeliveryLog>,
    admission: Admission,
    health: Arc<EndpointHealth>,
    dead_letters: Arc<dyn DeliveryQueue>,
    settings: DelivererSettings,
    metrics: Arc<Metrics>,
}

impl Deliverer {
    pub fn new(
        client: reqwest::Client,
        log: Arc<dyn DeliveryLog>,
        admission: Admission,
        health: Arc<EndpointHealth>,
        dead_letters: Arc<dyn DeliveryQueue>,
        settings: DelivererSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            log,
            admission,
            health,
            dead_letters,
            settings,
            metrics,
        }
    }

    pub fn set_clock(&mut self, clock: SharedClock) {
        self.settings.clock = clock;
    }

    pub fn now(&self) -> Timestamp {
        self.settings.clock.now()
    }

    /// Delivers the pair if it is due and admitted. `patient`: wait a moment for a place when the
    /// endpoint is at its in-flight cap (in the slow lane), rather than deferring at once.
    pub async fn deliver(&self, pair: Pair<'_>, known: Known, patient: bool) -> PairResult {
        let Pair {
            head, target, series, ..
        } = pair;
        let latest = match known {
            Known::Unstarted => None,
            Known::ReadLog => match self.log.latest(target.name(), &head.id).await {
                Ok(latest) => latest,
                Err(err) => {
                    warn!(endpoint_id = target.name(), error = %err, "could not read the attempt log");
                    return PairResult::StorageFailed;
                }
            },
        };
        let attempt = match next_step(latest.as_ref(), series, self.settings.clock.now()) {
            Next::Attempt(n) => n,
            Next::NotYet(wait) => return PairResult::Wait(wait, WaitReason::Retry),
            Next::DeadLetter(attempt) => {
                return self
                    .send_dead_letter(pair, attempt, FinalCode::Exhausted, "exhausted")
                    .await;
            }
            Next::Nothing => return PairResult::Done,
        };
        self.deliver_to(pair, attempt, patient).await
    }

    /// How long to defer a delivery not tried here, if its endpoint is stuck (see
    /// [`Admission::busy_deferral`]).
    pub fn busy_deferral(&self, target: &Target) -> Option<Duration> {
        let deferral = self.admission.busy_deferral(target)?;
        self.metrics.deferred();
        Some(deferral.wait)
    }

    /// Makes attempt number `attempt` now, if admitted.
    async fn attempt(&self, pair: Pair<'_>, attempt: u32, patient: bool) -> PairResult {
        let Pair { head, target, .. } = pair;
        let permit = match self.admission.admit(&head.merchant_id, target, patient).await {
            Ok(permit) => permit,
            Err(deferral) => {
                self.metrics.deferred();
                let reason = if deferral.busy {
                    WaitReason::Busy
                } else {
                    WaitReason::Defer
                };
                info!(
                    endpoint_id = target.name(),
                    attempt,
                    wait_ms = deferral.wait.as_millis() as u64,
                    ?reason,
                    "delivery deferred"
                );
                return PairResult::Wait(deferral.wait, reason);
            }
        };
        let started = self.settings.clock.now();
        let request = match build_request(pair, attempt, started) {
            Ok(request) => request,
            Err(reason) => {
                return self
                    .give_up(pair, attempt, started, None, FinalCode::Unsendable, reason)
                    .await;
            }
        };
        let result = send::attempt(&self.client, request, self.settings.policy, started.timestamp()).await;
        drop(permit);
        self.conclude(pair, attempt, started, result).await
    }

    /// Records the attempt that started at `started` and decides what follows.
    async fn conclude(&self, pair: Pair<'_>, attempt: u32, started: Timestamp, result: AttemptResult) -> PairResult {
        let target = pair.target;
        let is_test = pair.head.kind == EventType::Test;
        let mut record = attempt_record(pair, attempt, started, Some(&result));
        match result.outcome {
            Outcome::Delivered => {
                let lag = (started - pair.head.created_at).to_std().unwrap_or_default();
                self.metrics.delivered(result.latency, lag);
                debug!(
                    endpoint_id = target.name(),
                    attempt,
                    latency_ms = record.latency_ms,
                    "delivered"
                );
                record.status = AttemptStatus::Succeeded;
                let stored = self.store(pair, &record).await;
                // A test says nothing of how the endpoint takes real events.
                if stored == PairResult::Done && !is_test {
                    self.health.note_success(target).await;
                }
                // Only once the delivery is on record: else its copy comes back, is sent again
                // and asks again.
                if stored == PairResult::Done && result.control.disable {
                    info!(
                        endpoint_id = target.name(),
                        attempt, "delivered; the receiver asked to be disabled"
                    );
                    self.health.disable(target, ASKED_TO_DISABLE, started).await;
                }
                stored
            }
            Outcome::Gone => {
                self.metrics.failed(&pair.head.merchant_id);
                info!(
                    endpoint_id = target.name(),
                    attempt,
                    status = 410,
                    "the endpoint answered 410 Gone"
                );
                record.end(FinalCode::Gone, "the endpoint answered 410 Gone and was disabled");
                let stored = self.store(pair, &record).await;
                self.health
                    .disable(target, "the endpoint answered 410 Gone", started)
                    .await;
                stored
            }
            Outcome::DisableRequested if target.endpoint().is_some() => {
                self.metrics.failed(&pair.head.merchant_id);
                info!(
                    endpoint_id = target.name(),
                    attempt,
                    status = result.status,
                    "the receiver asked to be disabled"
                );
                record.end(
                    FinalCode::DisableRequested,
                    format!("{ASKED_TO_DISABLE} and was disabled"),
                );
                let stored = self.store(pair, &record).await;
                self.health.disable(target, ASKED_TO_DISABLE, started).await;
                stored
            }
            // An order webhook is set by its merchant, not its receiver: asked to disable it,
            // this event's retries end, and the next order is sent as usual.
            Outcome::DisableRequested | Outcome::Aborted => {
                self.metrics.failed(&pair.head.merchant_id);
                info!(
                    endpoint_id = target.name(),
                    attempt,
                    status = result.status,
                    "the receiver asked not to retry this event"
                );
                let reason = if result.outcome == Outcome::Aborted {
                    "the endpoint asked not to retry this event (webhook-delivery: abort-message)"
                } else {
                    "the order webhook asked to be disabled (webhook-delivery: disable), which only its merchant can do; this event is not retried"
                };
                record.end(FinalCode::Aborted, reason);
                // Still a failure of the endpoint: it counts towards the slow lane and disabling.
                if !is_test && let Some(disabled) = self.health.note_failure(target, started).await {
                    info!(endpoint_id = target.name(), %disabled, "endpoint disabled after failing too long");
                }
                self.store(pair, &record).await
            }
            Outcome::Retry { .. } if is_test => {
                self.metrics.failed(&pair.head.merchant_id);
                info!(
                    endpoint_id = target.name(),
                    attempt,
                    status = result.status,
                    "the test event failed"
                );
                record.end(FinalCode::TestNotRetried, "a test event is tried once");
                self.store(pair, &record).await
            }
            Outcome::Retry { pushback, class } => self.retry(pair, attempt, started, result, pushback, class).await,
        }
    }

    /// A failed attempt that may be tried again: scheduled on the retry schedule, or the series
    /// is exhausted, or the endpoint is disabled after failing too long.
    async fn retry(
        &self,
        pair: Pair<'_>,
        attempt: u32,
        started: Timestamp,
        result: AttemptResult,
        pushback: Pushback,
        class: ErrorClass,
    ) -> PairResult {
        let target = pair.target;
        let mut record = attempt_record(pair, attempt, started, Some(&result));
        self.metrics.failed(&pair.head.merchant_id);
        if class == ErrorClass::Timeout {
            self.health.note_timeout(target);
        }
        let made = attempt + 1 - pair.series.first_attempt;
        let told_when = pushback.retry_after.is_some();
        let Some(wait) = self.retry_delay(made, pushback) else {
            let reason = format!("exhausted after {made} attempts");
            return self
                .give_up(pair, attempt, started, Some(result), FinalCode::Exhausted, reason)
                .await;
        };
        if let Some(reason) = self.health.note_failure(target, started).await {
            record.end(FinalCode::DisabledAfterFailures, reason);
            return self.store(pair, &record).await;
        }
        // The schedule counts from the attempt's start (a timed-out attempt ends long
        // after it started); a `Retry-After` counts from the answer (RFC 9110: "after the
        // response is received"); never before now: the record says when it comes back.
        let from = if told_when {
            started + chrono::Duration::from_std(result.latency).unwrap_or_default()
        } else {
            started
        };
        let due = (from + chrono::Duration::from_std(wait).unwrap_or_default()).max(self.settings.clock.now());
        record.next_attempt_at = Some(due);
        info!(
            endpoint_id = target.name(),
            attempt,
            status = result.status,
            error_class = ?class,
            next_attempt_at = %due.to_rfc3339(),
            "delivery attempt failed"
        );
        match self.store(pair, &record).await {
            PairResult::Done => PairResult::Wait(
                until(due, self.settings.clock.now()).unwrap_or_default(),
                WaitReason::Retry,
            ),
            other => other,
        }
    }

    /// The wait before the next attempt, or `None` when the series is exhausted.
    fn retry_delay(&self, made: u32, pushback: Pushback) -> Option<Duration> {
        if made >= self.settings.max_attempts {
            return None;
        }
        let jitter = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX);
        self.settings.schedule.next_delay(made, pushback, jitter)
    }

    /// The last attempt of a series: recorded as such, then the delivery goes to the dead-letter
    /// queue.
    async fn give_up(
        &self,
        pair: Pair<'_>,
        attempt: u32,
        at: Timestamp,
        result: Option<AttemptResult>,
        code: FinalCode,
        reason: String,
    ) -> PairResult {
        let mut record = attempt_record(pair, attempt, at, result.as_ref());
        record.end(code, reason.clone());
        record.dead_lettered = true;
        self.metrics.exhausted(&pair.head.merchant_id);
        warn!(endpoint_id = pair.target.name(), attempt, reason, "delivery exhausted");
        match self.store(pair, &record).await {
            PairResult::Done => self.send_dead_letter(pair, attempt, code, &reason).await,
            other => other,
        }
    }

    async fn send_dead_letter(&self, pair: Pair<'_>, attempts: u32, code: FinalCode, reason: &str) -> PairResult {
        let Pair { head, raw, target, .. } = pair;
        let letter = dead_letters::Burial {
            target: target.name(),
            attempts,
            code,
            reason,
            at: self.settings.clock.now(),
        };
        match dead_letters::bury(self.dead_letters.as_ref(), head, raw, letter).await {
            Ok(()) => PairResult::Done,
            Err(err) => {
                warn!(endpoint_id = target.name(), error = %err, "could not reach the dead-letter queue");
                PairResult::StorageFailed
            }
        }
    }

    /// The endpoint is disabled: nothing is sent, but the log says so, so a replay finds it.
    /// Then the endpoint is read again: enabled meanwhile (this batch's targets were read before
    /// the merchant enabled it), the delivery goes on at once — a replay asked for since may
    /// have looked before this record was written. (A replay that did see it sends nothing more
    /// once this attempt has delivered.)
    async fn skip(&self, pair: Pair<'_>, attempt: u32, patient: bool) -> PairResult {
        let record = self.held_record(pair, attempt, Holding::Disabled);
        let stored = self.store(pair, &record).await;
        if stored != PairResult::Done {
            return stored;
        }
        match self.health.reread(pair.target).await {
            Some(fresh) if fresh.endpoint().is_some_and(|e| e.state() == EndpointState::Enabled) => {
                let pair = Pair { target: &fresh, ..pair };
                Box::pin(self.attempt(pair, attempt + 1, patient)).await
            }
            _ => PairResult::Done,
        }
    }

    /// The endpoint is paused: nothing is sent, and the hold is recorded for its resume, which
    /// walks the log from the pause's start — or from an older event's, which the endpoint is
    /// marked with first when the pause the batch saw does not reach this one. After the
    /// record the endpoint is read again (the pause may have ended, or another begun, meanwhile):
    /// resumed, the delivery goes on at once (the resume's walk may have looked before this
    /// record was written); paused by a pause that does not reach the event, it is marked so.
    /// Anything that fails brings the message back, and a hold met again is taken up again.
    async fn hold(&self, pair: Pair<'_>, attempt: u32, patient: bool) -> PairResult {
        let event_at = pair.head.created_at;
        if !pair.target.endpoint().is_some_and(|e| e.pause_covers(event_at)) {
            match self.health.cover_hold(pair.target, event_at).await {
                Ok(Cover::Covered) => {}
                Ok(Cover::NotPaused(fresh)) => {
                    let pair = Pair { target: &fresh, ..pair };
                    return Box::pin(self.deliver_to(pair, attempt, patient)).await;
                }
                Ok(Cover::Gone) => return PairResult::Done,
                Err(err) => return self.hold_failed(pair, &err),
            }
        }
        let record = self.held_record(pair, attempt, Holding::Paused);
        let stored = self.store(pair, &record).await;
        if stored != PairResult::Done {
            return stored;
        }
        match self.health.cover_hold(pair.target, event_at).await {
            Ok(Cover::Covered) | Ok(Cover::Gone) => PairResult::Done,
            Ok(Cover::NotPaused(fresh)) if fresh.endpoint().is_some_and(|e| e.state() == EndpointState::Enabled) => {
                let pair = Pair { target: &fresh, ..pair };
                Box::pin(self.attempt(pair, attempt + 1, patient)).await
            }
            // Disabled meanwhile: the hold stays on record, for a replay.
            Ok(Cover::NotPaused(_)) => PairResult::Done,
            Err(err) => self.hold_failed(pair, &err),
        }
    }

    fn hold_failed(&self, pair: Pair<'_>, err: &StoreError) -> PairResult {
        // Without the endpoint's mark the resume could miss this event: the message comes back.
        warn!(endpoint_id = pair.target.name(), error = %err, "could not hold the delivery for the resume");
        PairResult::StorageFailed
    }

    /// Sends, skips or holds by the endpoint's state.
    async fn deliver_to(&self, pair: Pair<'_>, attempt: u32, patient: bool) -> PairResult {
        match pair.target.endpoint().map(|e| e.state()) {
            Some(EndpointState::Disabled) => self.skip(pair, attempt, patient).await,
            Some(EndpointState::Paused) => self.hold(pair, attempt, patient).await,
            Some(EndpointState::Enabled) | None => self.attempt(pair, attempt, patient).await,
        }
    }

    /// The record of a delivery not sent.
    fn held_record(&self, pair: Pair<'_>, attempt: u32, why: Holding) -> AttemptRecord {
        let mut record = attempt_record(pair, attempt, self.settings.clock.now(), None);
        let (status, code, reason) = match why {
            Holding::Disabled => (
                AttemptStatus::Skipped,
                FinalCode::EndpointDisabled,
                "the endpoint is disabled",
            ),
            Holding::Paused => (
                AttemptStatus::Paused,
                FinalCode::EndpointPaused,
                "the endpoint is paused",
            ),
        };
        record.status = status;
        record.end(code, reason);
        info!(endpoint_id = pair.target.name(), attempt, "not sent: {reason}");
        record
    }

    async fn store(&self, pair: Pair<'_>, record: &AttemptRecord) -> PairResult {
        if record.is_first() {
            return match pair.first.record(record.clone()).await {
                Ok(()) => PairResult::Done,
                Err(err) => {
                    warn!(endpoint_id = %record.target, error = %err, "could not record the attempt");
                    PairResult::StorageFailed
                }
            };
        }
        match self.log.record(record).await {
            Ok(true) => PairResult::Done,
            Ok(false) => {
                // Another copy of this message made this attempt and carries the delivery on.
                info!(endpoint_id = %record.target, attempt = record.attempt, "attempt already recorded by a duplicate");
                PairResult::Done
            }
            Err(err) => {
                // Not recorded: the message comes back and the event is sent again, with the
                // same webhook-id, so the receiver can tell.
                warn!(endpoint_id = %record.target, error = %err, "could not record the attempt");
                PairResult::StorageFailed
            }
        }
    }
}

/// The exact request of this attempt, or why none can be built.
fn build_request(pair: Pair<'_>, attempt: u32, now: Timestamp) -> Result<WebhookRequest, String> {
    let Pair {
        head,
        raw,
        body,
        target,
        ..
    } = pair;
    match target {
        Target::Endpoint(endpoint) => {
            request::standard(head, body.clone(), endpoint, attempt, now).map_err(|e| e.to_string())
        }
        Target::Order { hook, .. } => {
            let body = order_body(raw.get())?;
            request::acp_order(hook, head.id.as_str(), body, now).map_err(|e| e.to_string())
        }
    }
}

/// The ACP order webhook body for a completed checkout: `{"type": "order_create", "data": Order}`.
fn order_body(raw: &str) -> Result<Bytes, String> {
    let event: Event = serde_json::from_str(raw).map_err(|e| format!("unreadable event: {e}"))?;
    let order = event.data.order.ok_or("the completed checkout has no order")?;
    let body = serde_json::json!({ "type": "order_create", "data": order });
    serde_json::to_vec(&body).map(Bytes::from).map_err(|e| e.to_string())
}

/// Why an endpoint is disabled at its receiver's request.
const ASKED_TO_DISABLE: &str = "the endpoint asked to be disabled (webhook-delivery: disable)";

fn attempt_record(pair: Pair<'_>, attempt: u32, at: Timestamp, result: Option<&AttemptResult>) -> AttemptRecord {
    let Pair {
        head, target, series, ..
    } = pair;
    AttemptRecord {
        target: target.name().to_owned(),
        event_id: head.id.clone(),
        attempt,
        merchant_id: head.merchant_id.clone(),
        session_id: head.session_id.clone(),
        version: head.version,
        event_type: head.kind,
        at,
        status: AttemptStatus::Failed,
        http_status: result.and_then(|r| r.status),
        latency_ms: result.map_or(0, |r| u32::try_from(r.latency.as_millis()).unwrap_or(u32::MAX)),
        error_class: result.and_then(|r| match r.outcome {
            Outcome::Retry { class, .. } => Some(class),
            _ => None,
        }),
        remote_ip: result.and_then(|r| r.remote_ip),
        snippet: result.map(|r| r.snippet.clone()).unwrap_or_default(),
        headers_ms: result
            .and_then(|r| r.headers_after)
            .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        server_timing: result.and_then(|r| r.server_timing.clone()),
        answer_headers: result.map(|r| r.answer_headers.clone()).unwrap_or_default(),
        next_attempt_at: None,
        final_reason: None,
        final_code: None,
        dead_lettered: false,
        replay: series.replay || series.first_attempt > 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout::testkit::{attempt_record as record, event, merchant};

    #[test]
    fn the_log_decides_the_next_step() {
        let now = checkout::clock::now();
        let e = event(&merchant(), None, 1);
        let first = Series::FIRST;
        assert_eq!(next_step(None, first, now), Next::Attempt(1));

        let mut failed = record("we_1", &e, 2);
        failed.next_attempt_at = Some(now + chrono::Duration::seconds(30));
        assert_eq!(
            next_step(Some(&failed), first, now),
            Next::NotYet(Duration::from_secs(30))
        );
        failed.next_attempt_at = Some(now - chrono::Duration::seconds(1));
        assert_eq!(next_step(Some(&failed), first, now), Next::Attempt(3));

        let mut delivered = record("we_1", &e, 3);
        delivered.status = AttemptStatus::Succeeded;
        delivered.next_attempt_at = None;
        assert_eq!(
            next_step(Some(&delivered), first, now),
            Next::Nothing,
            "never sent twice"
        );
        let replay = Series {
            first_attempt: 4,
            replay: true,
        };
        assert_eq!(
            next_step(Some(&delivered), replay, now),
            Next::Attempt(4),
            "except by a replay"
        );

        let mut exhausted = record("we_1", &e, 10);
        exhausted.next_attempt_at = None;
        exhausted.dead_lettered = true;
        assert_eq!(next_step(Some(&exhausted), first, now), Next::DeadLetter(10));
        let redrive = Series {
            first_attempt: 11,
            replay: false,
        };
        assert_eq!(next_step(Some(&exhausted), redrive, now), Next::Attempt(11));
    }
}
