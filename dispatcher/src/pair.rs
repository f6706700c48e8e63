//! One event to one target: where that delivery stands (from the attempt log), whether it may go
//! now (rate limits, requests in flight), the attempt, and its record — which is also the new
//! state of the delivery.

use crate::handler::Dispatcher;
use crate::request::{self, WebhookRequest};
use crate::send::{self, AttemptResult};
use crate::targets::Target;
use bytes::Bytes;
use checkout::attempt_log::{AttemptRecord, AttemptStatus};
use checkout::clock::{self, Timestamp};
use checkout::delivery_outcome::Outcome;
use checkout::delivery_task::{DeadLetter, DeliveryTask, EventHead, TaskMessage};
use checkout::event::Event;
use checkout::retry_schedule::{self, Pushback};
use checkout::webhook_endpoint::WebhookEndpoint;
use serde_json::value::RawValue;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn};

/// A wait over the rate limit shorter than this is slept off in place; longer ones defer.
const WAIT_IN_PLACE: Duration = Duration::from_millis(500);
/// How often a delivery waits in place before it is deferred.
const WAITS_IN_PLACE: usize = 3;
/// How long a delivery is deferred when its endpoint has its cap of requests in flight.
const IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitReason {
    /// An attempt failed; the schedule says when the next is due.
    Retry,
    /// Not attempted (over a rate limit or the in-flight cap): no attempt spent.
    Defer,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PairResult {
    /// Delivered, or nothing more to do.
    Done,
    Wait(Duration, WaitReason),
    /// Our storage or queue failed: try the message again soon.
    Failed,
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

/// One event to one target, in one series of attempts.
#[derive(Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub head: &'a EventHead,
    /// The event's exact bytes.
    pub raw: &'a RawValue,
    pub target: &'a Target,
    pub series: Series,
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
    match last.next_attempt_at {
        None => Next::Nothing,
        Some(due) if due > now => Next::NotYet((due - now).to_std().unwrap_or_default()),
        Some(_) => Next::Attempt(last.attempt + 1),
    }
}

impl Dispatcher {
    pub(crate) async fn deliver(&self, pair: Pair<'_>, seen_before: bool) -> PairResult {
        let Pair {
            head, target, series, ..
        } = pair;
        let latest = if seen_before {
            match self.log.latest(target.name(), &head.id).await {
                Ok(latest) => latest,
                Err(err) => {
                    warn!(endpoint_id = target.name(), error = %err, "could not read the attempt log");
                    return PairResult::Failed;
                }
            }
        } else {
            None
        };
        let attempt = match next_step(latest.as_ref(), series, clock::now()) {
            Next::Attempt(n) => n,
            Next::NotYet(wait) => return PairResult::Wait(wait, WaitReason::Retry),
            Next::DeadLetter(attempt) => return self.send_dead_letter(pair, attempt, "exhausted").await,
            Next::Nothing => return PairResult::Done,
        };
        if let Target::Endpoint(endpoint) = target
            && !endpoint.enabled
        {
            return self.skip(pair, attempt).await;
        }
        let _permit = match self.admit(head, target).await {
            Ok(permit) => permit,
            Err(wait) => {
                self.metrics.deferred();
                debug!(endpoint_id = target.name(), ?wait, "deferred by the rate limits");
                return PairResult::Wait(wait, WaitReason::Defer);
            }
        };
        let now = clock::now();
        let request = match build_request(pair, attempt, now) {
            Ok(request) => request,
            Err(reason) => {
                return self.give_up(pair, attempt, now, None, reason).await;
            }
        };
        let result = send::attempt(&self.client, request, self.config.client.policy, now.timestamp()).await;
        drop(_permit);
        self.conclude(pair, attempt, now, result).await
    }

    /// Waits out short rate-limit waits in place; longer ones become a deferral with a reserved
    /// slot. The permit holds one of the endpoint's in-flight places until the attempt ends.
    async fn admit(&self, head: &EventHead, target: &Target) -> Result<Option<OwnedSemaphorePermit>, Duration> {
        let endpoint = match target {
            Target::Endpoint(e) => Some(e),
            Target::Order(_) => None,
        };
        let endpoint_rate = endpoint.and_then(|e| NonZeroU32::new(e.rate_limit?));
        for round in 0.. {
            let merchant_rate = self.config.merchant_rate_limit;
            let over = match self.merchant_limits.check(&head.merchant_id, merchant_rate) {
                Err(wait) => Some((
                    wait,
                    head.merchant_id.as_str(),
                    self.merchant_limits.spacing(merchant_rate),
                )),
                Ok(()) => endpoint.zip(endpoint_rate).and_then(|(e, rate)| {
                    let wait = self.endpoint_limits.check(&e.id, rate).err()?;
                    Some((wait, e.id.as_str(), self.endpoint_limits.spacing(rate)))
                }),
            };
            let Some((wait, key, spacing)) = over else { break };
            if wait > WAIT_IN_PLACE || round >= WAITS_IN_PLACE {
                return Err(self.slots.reserve(key, wait, spacing));
            }
            tokio::time::sleep(wait).await;
        }
        match endpoint {
            None => Ok(None),
            Some(e) => match self.in_flight.try_acquire(&e.id) {
                Some(permit) => Ok(Some(permit)),
                None => Err(IN_FLIGHT_DEFERRAL),
            },
        }
    }

    async fn conclude(&self, pair: Pair<'_>, attempt: u32, now: Timestamp, result: AttemptResult) -> PairResult {
        let target = pair.target;
        let mut record = attempt_record(pair, attempt, now, Some(&result));
        match result.outcome {
            Outcome::Delivered => {
                let lag = (now - pair.head.created_at).to_std().unwrap_or_default();
                self.metrics.delivered(result.latency, lag);
                record.status = AttemptStatus::Succeeded;
                let stored = self.store(&record).await;
                if stored == PairResult::Done {
                    self.note_success(target).await;
                }
                stored
            }
            Outcome::Gone => {
                self.metrics.failed(&pair.head.merchant_id);
                record.final_reason = Some("the endpoint answered 410 Gone and was disabled".to_owned());
                let stored = self.store(&record).await;
                self.disable(target, "the endpoint answered 410 Gone", now).await;
                stored
            }
            Outcome::Retry { pushback, .. } => {
                self.metrics.failed(&pair.head.merchant_id);
                let made = attempt + 1 - pair.series.first_attempt;
                let Some(wait) = self.retry_delay(made, pushback) else {
                    let reason = format!("exhausted after {made} attempts");
                    return self.give_up(pair, attempt, now, Some(result), reason).await;
                };
                if let Some(reason) = self.note_failure(target, now).await {
                    record.final_reason = Some(reason);
                    return self.store(&record).await;
                }
                record.next_attempt_at = Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                match self.store(&record).await {
                    PairResult::Done => PairResult::Wait(wait, WaitReason::Retry),
                    other => other,
                }
            }
        }
    }

    /// The wait before the next attempt, or `None` when the series is exhausted.
    fn retry_delay(&self, made: u32, pushback: Pushback) -> Option<Duration> {
        if made >= self.config.max_attempts {
            return None;
        }
        let jitter = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX);
        retry_schedule::next_delay(made, pushback, jitter).map(|d| d.mul_f64(self.config.time_scale))
    }

    /// The last attempt of a series: recorded as such, then the delivery goes to the dead-letter
    /// queue.
    async fn give_up(
        &self,
        pair: Pair<'_>,
        attempt: u32,
        now: Timestamp,
        result: Option<AttemptResult>,
        reason: String,
    ) -> PairResult {
        let mut record = attempt_record(pair, attempt, now, result.as_ref());
        record.final_reason = Some(reason.clone());
        record.dead_lettered = true;
        self.metrics.exhausted(&pair.head.merchant_id);
        warn!(endpoint_id = pair.target.name(), attempt, reason, "delivery exhausted");
        match self.store(&record).await {
            PairResult::Done => self.send_dead_letter(pair, attempt, &reason).await,
            other => other,
        }
    }

    async fn send_dead_letter(&self, pair: Pair<'_>, attempts: u32, reason: &str) -> PairResult {
        let Pair { head, raw, target, .. } = pair;
        let redrive = TaskMessage {
            delivery: DeliveryTask {
                target: target.name().to_owned(),
                first_attempt: attempts + 1,
                replay: false,
            },
            event: raw,
        };
        let letter = DeadLetter {
            reason: reason.to_owned(),
            attempts,
            at: clock::now(),
            target: Some(target.name().to_owned()),
            event_id: Some(head.id.clone()),
            event_type: Some(head.kind),
            message: redrive.to_body(),
        };
        match self.dead_letters.send(&letter.to_body(), Duration::ZERO).await {
            Ok(()) => PairResult::Done,
            Err(err) => {
                warn!(endpoint_id = target.name(), error = %err, "could not reach the dead-letter queue");
                PairResult::Failed
            }
        }
    }

    /// The endpoint is disabled: nothing is sent, but the log says so, so a replay finds it.
    async fn skip(&self, pair: Pair<'_>, attempt: u32) -> PairResult {
        let mut record = attempt_record(pair, attempt, clock::now(), None);
        record.status = AttemptStatus::Skipped;
        record.final_reason = Some("the endpoint is disabled".to_owned());
        self.store(&record).await
    }

    async fn store(&self, record: &AttemptRecord) -> PairResult {
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
                PairResult::Failed
            }
        }
    }

    async fn note_success(&self, target: &Target) {
        if let Target::Endpoint(e) = target
            && e.failing_since.is_some()
        {
            self.change_endpoint(e, |fresh| fresh.failing_since = None).await;
        }
    }

    /// Tracks how long the endpoint has failed without a success; past the limit it is disabled
    /// and the reason returned.
    async fn note_failure(&self, target: &Target, now: Timestamp) -> Option<String> {
        let Target::Endpoint(e) = target else { return None };
        match e.failing_since {
            None => {
                self.change_endpoint(e, |fresh| {
                    fresh.failing_since.get_or_insert(now);
                })
                .await;
                None
            }
            Some(since) if now - since >= self.config.disable_after => {
                let hours = self.config.disable_after.num_hours();
                let reason = format!("failing without a success for {hours} hours");
                self.disable(target, &reason, now).await;
                Some(format!("the endpoint was disabled: {reason}"))
            }
            Some(_) => None,
        }
    }

    async fn disable(&self, target: &Target, reason: &str, now: Timestamp) {
        let Target::Endpoint(e) = target else { return };
        warn!(
            endpoint_id = %e.id,
            merchant_id = %e.merchant_id,
            reason,
            operational_event = "endpoint.disabled",
            "webhook endpoint disabled"
        );
        self.change_endpoint(e, |fresh| fresh.disable(reason.to_owned(), now))
            .await;
    }

    /// Changes the stored endpoint (re-read, so a merchant's edit made meanwhile is kept).
    /// Best effort: bookkeeping that fails is tried again at the next attempt.
    async fn change_endpoint(&self, endpoint: &WebhookEndpoint, change: impl FnOnce(&mut WebhookEndpoint)) {
        let stored = match self.endpoints.endpoint(&endpoint.merchant_id, &endpoint.id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(err) => {
                warn!(endpoint_id = %endpoint.id, error = %err, "could not read the endpoint");
                return;
            }
        };
        let mut fresh = stored;
        change(&mut fresh);
        if let Err(err) = self.endpoints.put_endpoint(&fresh).await {
            warn!(endpoint_id = %endpoint.id, error = %err, "could not update the endpoint");
        }
        self.targets.forget(&endpoint.merchant_id);
    }
}

/// The exact request of this attempt, or why none can be built.
fn build_request(pair: Pair<'_>, attempt: u32, now: Timestamp) -> Result<WebhookRequest, String> {
    let Pair { head, raw, target, .. } = pair;
    match target {
        Target::Endpoint(endpoint) => {
            let body = Bytes::copy_from_slice(raw.get().as_bytes());
            request::standard(head, body, endpoint, attempt, now.timestamp()).map_err(|e| e.to_string())
        }
        Target::Order(hook) => {
            let body = order_body(raw)?;
            request::acp_order(&hook.url, &hook.secret, body, now.timestamp()).map_err(|e| e.to_string())
        }
    }
}

/// The ACP order webhook body for a completed checkout: `{"type": "order_create", "data": Order}`.
fn order_body(raw: &RawValue) -> Result<Bytes, String> {
    let event: Event = serde_json::from_str(raw.get()).map_err(|e| format!("unreadable event: {e}"))?;
    let order = event.data.order.ok_or("the completed checkout has no order")?;
    let body = serde_json::json!({ "type": "order_create", "data": order });
    serde_json::to_vec(&body).map(Bytes::from).map_err(|e| e.to_string())
}

fn attempt_record(pair: Pair<'_>, attempt: u32, now: Timestamp, result: Option<&AttemptResult>) -> AttemptRecord {
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
        at: now,
        status: AttemptStatus::Failed,
        http_status: result.and_then(|r| r.status),
        latency_ms: result.map_or(0, |r| u32::try_from(r.latency.as_millis()).unwrap_or(u32::MAX)),
        error_class: result.and_then(|r| match r.outcome {
            Outcome::Retry { class, .. } => Some(class),
            _ => None,
        }),
        remote_ip: result.and_then(|r| r.remote_ip),
        snippet: result.map(|r| r.snippet.clone()).unwrap_or_default(),
        next_attempt_at: None,
        final_reason: None,
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
        let now = clock::now();
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
