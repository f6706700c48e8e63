//! The dispatcher handler: a batch of queue messages in, what to do with each message out.
//! The Lambda function and `acp-local`'s worker both call it; they differ only in how they
//! receive messages and carry out the [`Disposition`]s.
//!
//! A batch goes in three steps: each message is read and its targets looked up (fresh, see
//! [`crate::targets`]); one batched read of the attempt log drops the pairs a copy of the same
//! event already began (SNS, the stream and a restarted projector may each deliver an event
//! more than once); then every pair is delivered, each message finishing on its own.
//!
//! An event straight from the topic fans out to every target of its merchant. A target that
//! needs another try (a failure, or a deferral by the rate limits) continues as its own task
//! message, so each (event, target) pair keeps its own schedule. Pairs of failing or slow
//! endpoints continue on the slow lane, a queue of their own, so they never share a batch — and
//! its wait — with healthy deliveries.

use crate::admission::Admission;
use crate::config::DispatcherConfig;
use crate::delivery::{Deliverer, DelivererSettings, Known, Pair, PairResult, Series, WaitReason};
use crate::endpoint_health::EndpointHealth;
use crate::first_attempts::{FirstAttempts, Slot};
use crate::in_progress::InProgress;
use crate::legacy_log::LegacyOrderLog;
use crate::metrics::{DeliveryCounts, Metrics};
use crate::targets::{Target, TargetReader};
use bytes::Bytes;
use checkout::attempt_log::FinalCode;
use checkout::attempt_log::LogTarget;
use checkout::delivery_task::{DeadLetter, EventHead, QueueMessage, TaskMessage, UnreadableMessage};
use checkout::event::EventType;
use checkout::ids::EventId;
use checkout::ports::{Backend, DeliveryLog, DeliveryQueue, EndpointStore, MerchantStore, PipelineError, StoreError};
use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, Stream};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, info, info_span, warn};

/// The longest a message is hidden at once. SQS refuses a visibility timeout that reaches 12 h
/// after the message was received; longer waits hide it again when it comes back early.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(11 * 3600);
/// The longest a new message can be delayed (SQS `DelaySeconds`).
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// How soon a message comes back after a failure on our side (storage or queue unavailable).
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(5);
/// How soon a task whose pair is being delivered here by another copy looks again.
const IN_HAND_RECHECK: Duration = Duration::from_secs(1);

/// Which queue a message came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lane {
    /// New events and the deliveries of healthy endpoints.
    #[default]
    Main,
    /// Deliveries to endpoints that fail or time out.
    Slow,
}

/// One received message.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub message_id: String,
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    pub lane: Lane,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Finished with: delete it.
    Done,
    /// Keep it; it comes back after this long (its new visibility timeout).
    RetryIn(Duration),
}

pub struct Dispatcher {
    deliverer: Deliverer,
    health: Arc<EndpointHealth>,
    targets: TargetReader,
    log: Arc<dyn DeliveryLog>,
    queue: Arc<dyn DeliveryQueue>,
    slow_queue: Option<Arc<dyn DeliveryQueue>>,
    dead_letters: Arc<dyn DeliveryQueue>,
    /// Outcomes since the last [`Dispatcher::take_metrics`].
    metrics: Arc<Metrics>,
    /// Pairs being delivered here right now (see [`InProgress`]).
    in_progress: InProgress,
    /// Whether order webhooks are still looked up under their former name.
    legacy: LegacyOrderLog,
}

/// (plan, pair) of every pair received for the first time, in batch order.
fn unstarted_pairs(plans: &[Plan<'_>]) -> Vec<(usize, usize)> {
    plans
        .iter()
        .enumerate()
        .filter_map(|(i, plan)| match plan {
            Plan::Deliver(d) => Some((i, d)),
            _ => None,
        })
        .flat_map(|(i, d)| {
            d.pairs
                .iter()
                .enumerate()
                .filter(|(_, (_, known))| *known == Known::Unstarted)
                .map(move |(j, _)| (i, j))
        })
        .collect()
}

/// What a message asks for, once read and routed.
enum Plan<'a> {
    /// Nothing to deliver: settle it so.
    Settled(Disposition),
    Unreadable(UnreadableMessage),
    Deliver(Deliveries<'a>),
}

struct Deliveries<'a> {
    head: EventHead,
    raw: &'a RawValue,
    /// The body every attempt sends: the event's bytes, copied once per message.
    body: Bytes,
    series: Series,
    /// The message itself when it is a task (re-sent as it is on a deferral).
    task_body: Option<&'a str>,
    pairs: Vec<(Target, Known)>,
    /// One per pair: where its first attempt is recorded (filled once the batch is routed).
    slots: Vec<Slot>,
}

impl Deliveries<'_> {
    /// The delivery of this message's event to `target`, recording its first attempt in `slot`.
    fn pair<'b>(&'b self, target: &'b Target, slot: &'b Slot) -> Pair<'b> {
        Pair {
            head: &self.head,
            raw: self.raw,
            body: &self.body,
            target,
            series: self.series,
            first: slot,
        }
    }
}

/// The stores the dispatcher reads and writes: whom to deliver to, and the attempt log. (Not the
/// whole [`Backend`]: the event store and idempotency records are none of its business, and
/// leaving them out keeps their code out of the dispatcher's Lambda bootstrap.)
#[derive(Clone)]
pub struct DeliveryStores {
    pub merchants: Arc<dyn MerchantStore>,
    pub endpoints: Arc<dyn EndpointStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
}

impl DeliveryStores {
    /// For an adapter that implements the three ports on one type.
    pub fn from_one<T>(adapter: Arc<T>) -> Self
    where
        T: MerchantStore + EndpointStore + DeliveryLog + 'static,
    {
        Self {
            merchants: adapter.clone(),
            endpoints: adapter.clone(),
            deliveries: adapter,
        }
    }
}

impl From<&Backend> for DeliveryStores {
    fn from(backend: &Backend) -> Self {
        Self {
            merchants: backend.merchants.clone(),
            endpoints: backend.endpoints.clone(),
            deliveries: backend.deliveries.clone(),
        }
    }
}

impl Dispatcher {
    /// Built once per process; the HTTP client (and its pooled connections) lives as long.
    pub fn new(
        stores: DeliveryStores,
        queue: Arc<dyn DeliveryQueue>,
        dead_letters: Arc<dyn DeliveryQueue>,
        config: DispatcherConfig,
    ) -> reqwest::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(EndpointHealth::new(stores.endpoints.clone(), config.disable_after));
        let admission = Admission::new(
            config.merchant_rate_limit,
            config.instances,
            config.max_in_flight_per_endpoint,
        );
        let settings = DelivererSettings {
            policy: config.client.policy,
            max_attempts: config.max_attempts,
            schedule: config.retry_schedule,
            clock: checkout::clock::system(),
        };
        let deliverer = Deliverer::new(
            crate::client::build(config.client)?,
            stores.deliveries.clone(),
            admission,
            health.clone(),
            dead_letters.clone(),
            settings,
            metrics.clone(),
        );
        let legacy = LegacyOrderLog::new(stores.deliveries.clone());
        Ok(Self {
            deliverer,
            health,
            targets: TargetReader::new(stores.merchants, stores.endpoints),
            log: stores.deliveries,
            queue,
            slow_queue: None,
            dead_letters,
            metrics,
            in_progress: InProgress::default(),
            legacy,
        })
    }

    /// Reads the time from `clock` instead of the system's (tests move time by hand).
    pub fn with_clock(mut self, clock: checkout::clock::SharedClock) -> Self {
        self.deliverer.set_clock(clock);
        self
    }

    /// Deliveries to failing or slow endpoints continue on this queue instead of the main one.
    pub fn with_slow_lane(mut self, slow_queue: Arc<dyn DeliveryQueue>) -> Self {
        self.slow_queue = Some(slow_queue);
        self
    }

    /// What happened to deliveries since the last call (for the batch's metrics line).
    pub fn take_metrics(&self) -> DeliveryCounts {
        self.metrics.take()
    }

    /// Delivers a batch; the result at index i is message i's.
    pub async fn handle(&self, batch: &[Incoming]) -> Vec<Disposition> {
        use futures_util::StreamExt;
        let mut dispositions = vec![Disposition::Done; batch.len()];
        let mut running = std::pin::pin!(self.start(batch).await);
        while let Some((index, disposition)) = running.next().await {
            dispositions[index] = disposition;
        }
        dispositions
    }

    /// Reads and routes the batch, then delivers it: each message's disposition comes out as
    /// soon as that message is finished, as `(index, disposition)`.
    pub async fn start<'a>(&'a self, batch: &'a [Incoming]) -> impl Stream<Item = (usize, Disposition)> + 'a {
        let received = Instant::now();
        let parsed: Vec<_> = batch.iter().map(|m| QueueMessage::parse(&m.body)).collect();
        let mut plans = join_all(
            parsed
                .into_iter()
                .zip(batch)
                .map(|(message, incoming)| self.plan(message, incoming, received)),
        )
        .await;
        self.drop_duplicates(&mut plans).await;
        let first_attempts = FirstAttempts::new(self.log.clone());
        for plan in &mut plans {
            if let Plan::Deliver(d) = plan {
                d.slots = d.pairs.iter().map(|_| first_attempts.slot()).collect();
            }
        }
        plans
            .into_iter()
            .zip(batch)
            .enumerate()
            .map(|(index, (plan, incoming))| async move { (index, self.execute(plan, incoming).await) })
            .collect::<FuturesUnordered<_>>()
    }

    async fn plan<'a>(
        &self,
        message: Result<QueueMessage<'a>, UnreadableMessage>,
        incoming: &'a Incoming,
        received: Instant,
    ) -> Plan<'a> {
        let message = match message {
            Ok(message) => message,
            Err(err) => return Plan::Unreadable(err),
        };
        let head = message.head();
        let order_webhook = match &message {
            QueueMessage::Event { head, .. } => head.kind == EventType::Completed,
            QueueMessage::Task { message, .. } => {
                LogTarget::parse(&message.delivery.target).is_some_and(|t| t.is_order_webhook())
            }
        };
        let targets = match self.targets.read(&head.merchant_id, received, order_webhook).await {
            Ok(targets) => targets,
            Err(err) => {
                warn!(merchant_id = %head.merchant_id, error = %err, "could not read the merchant's endpoints");
                return Plan::Settled(Disposition::RetryIn(TRANSIENT_RETRY));
            }
        };
        match message {
            QueueMessage::Event { head, raw } => {
                // On a first receive nothing of this copy can be recorded yet: one batched read
                // tells whether another copy began the pair. Later receives read each pair's state.
                let known = if incoming.receive_count > 1 {
                    Known::ReadLog
                } else {
                    Known::Unstarted
                };
                let mut pairs: Vec<(Target, Known)> = targets
                    .for_event(head.kind, head.created_at)
                    .into_iter()
                    .map(|t| (t, known))
                    .collect();
                if known == Known::ReadLog
                    && let Err(err) = self.continue_legacy_deliveries(&mut pairs, &head.id).await
                {
                    warn!(error = %err, "could not read the attempt log");
                    return Plan::Settled(Disposition::RetryIn(TRANSIENT_RETRY));
                }
                Plan::Deliver(Deliveries {
                    head,
                    raw,
                    body: Bytes::copy_from_slice(raw.get().as_bytes()),
                    series: Series::FIRST,
                    task_body: None,
                    pairs,
                    slots: Vec::new(),
                })
            }
            QueueMessage::Task { head, message } => {
                let Some(target) = targets.named(&message.delivery.target) else {
                    info!(event_id = %head.id, endpoint_id = %message.delivery.target, "the endpoint was deleted; nothing to deliver");
                    return Plan::Settled(Disposition::Done);
                };
                Plan::Deliver(Deliveries {
                    head,
                    raw: message.event,
                    body: Bytes::copy_from_slice(message.event.get().as_bytes()),
                    series: Series::of(&message.delivery),
                    task_body: Some(&incoming.body),
                    pairs: vec![(target, Known::ReadLog)],
                    slots: Vec::new(),
                })
            }
        }
    }

    /// Drops what another copy of the same event carries: copies within the batch, then — one
    /// batched read for the whole batch — pairs a copy received earlier already began.
    async fn drop_duplicates(&self, plans: &mut [Plan<'_>]) {
        carry_each_event_once(plans);
        self.drop_begun(plans).await;
    }

    /// An order webhook delivery this event began before an upgrade was logged under the former
    /// shared name: it goes on there, so its log (what was tried, whether it arrived) is read.
    async fn continue_legacy_deliveries(
        &self,
        pairs: &mut [(Target, Known)],
        event: &EventId,
    ) -> Result<(), StoreError> {
        for (target, _) in pairs.iter_mut() {
            if let Some(legacy) = target.legacy_twin()
                && self.legacy.in_use().await
                && self.log.latest(legacy.name(), event).await?.is_some()
            {
                *target = legacy;
            }
        }
        Ok(())
    }

    async fn drop_begun(&self, plans: &mut [Plan<'_>]) {
        let unstarted = unstarted_pairs(plans);
        if unstarted.is_empty() {
            return;
        }
        let started = match self.began(plans, &unstarted).await {
            Ok(started) => started,
            Err(err) => {
                warn!(error = %err, "could not read the attempt log");
                for &(i, _) in &unstarted {
                    plans[i] = Plan::Settled(Disposition::RetryIn(TRANSIENT_RETRY));
                }
                return;
            }
        };
        let mut begun: Vec<Vec<bool>> = plans
            .iter()
            .map(|plan| match plan {
                Plan::Deliver(d) => vec![false; d.pairs.len()],
                _ => Vec::new(),
            })
            .collect();
        for (&(i, j), started) in unstarted.iter().zip(started) {
            begun[i][j] = started;
        }
        for (plan, begun) in plans.iter_mut().zip(begun) {
            let Plan::Deliver(d) = plan else { continue };
            let mut begun = begun.into_iter();
            d.pairs.retain(|(target, _)| {
                let duplicate = begun.next().unwrap_or(false);
                if duplicate {
                    info!(event_id = %d.head.id, endpoint_id = target.name(), "a copy of this event already began this delivery");
                }
                !duplicate
            });
        }
    }

    /// For each of the `unstarted` (plan, pair) indexes: whether a copy began that delivery, in
    /// one batched read. Order webhooks are also looked up under their former shared name,
    /// where a copy handled before an upgrade logged them (while anything is logged there).
    async fn began(&self, plans: &[Plan<'_>], unstarted: &[(usize, usize)]) -> Result<Vec<bool>, StoreError> {
        let legacy = LogTarget::LegacyOrderWebhook.name();
        let mut keys: Vec<(&str, &EventId)> = Vec::with_capacity(unstarted.len());
        // (index of the pair's key, of its twin's under the former name).
        let mut twins: Vec<(usize, usize)> = Vec::new();
        for &(i, j) in unstarted {
            let Plan::Deliver(d) = &plans[i] else { continue };
            let target = &d.pairs[j].0;
            keys.push((target.name(), &d.head.id));
            if target.legacy_twin().is_some() {
                twins.push((keys.len() - 1, usize::MAX));
            }
        }
        if !twins.is_empty() && !self.legacy.in_use().await {
            twins.clear();
        }
        for twin in &mut twins {
            keys.push((legacy.as_str(), keys[twin.0].1));
            twin.1 = keys.len() - 1;
        }
        let mut started = self.log.started(&keys).await?;
        for &(own, former) in &twins {
            started[own] |= started.get(former).copied().unwrap_or(false);
        }
        started.truncate(unstarted.len());
        Ok(started)
    }

    async fn execute(&self, plan: Plan<'_>, incoming: &Incoming) -> Disposition {
        let deliveries = match plan {
            Plan::Settled(disposition) => return disposition,
            Plan::Unreadable(err) => return self.bury_unreadable(incoming, err).await,
            Plan::Deliver(deliveries) => deliveries,
        };
        let span = info_span!(
            "delivery",
            event_id = %deliveries.head.id,
            merchant_id = %deliveries.head.merchant_id,
            session_id = %deliveries.head.session_id,
            message_id = %incoming.message_id,
        );
        match deliveries.task_body {
            None => self.fan_out(&deliveries).instrument(span).await,
            Some(body) => self.run_task(&deliveries, body, incoming.lane).instrument(span).await,
        }
    }

    async fn fan_out(&self, d: &Deliveries<'_>) -> Disposition {
        let results = join_all(d.pairs.iter().zip(&d.slots).map(|((target, known), slot)| async move {
            let result = self.fan_out_pair(d, target, *known, slot).await;
            slot.close();
            (target, result)
        }))
        .await;
        let mut disposition = Disposition::Done;
        for (target, result) in results {
            let (wait, reason) = match result {
                PairResult::Done => continue,
                PairResult::StorageFailed => {
                    disposition = Disposition::RetryIn(TRANSIENT_RETRY);
                    continue;
                }
                PairResult::Wait(wait, reason) => (wait, reason),
            };
            let lane = match reason {
                WaitReason::Retry | WaitReason::Busy => Lane::Slow,
                WaitReason::Defer => self.lane_of(target),
            };
            let task = TaskMessage::new(target.name(), d.series.first_attempt, d.series.replay, d.raw);
            if let Err(err) = self.send(lane, &task.to_body(), wait).await {
                warn!(endpoint_id = target.name(), error = %err, "could not queue the next try; the event comes back");
                disposition = Disposition::RetryIn(TRANSIENT_RETRY);
            }
        }
        disposition
    }

    /// One target of an event fresh from the topic.
    async fn fan_out_pair(&self, d: &Deliveries<'_>, target: &Target, known: Known, slot: &Slot) -> PairResult {
        if self.lane_of(target) == Lane::Slow {
            // Not attempted here: a failing endpoint would hold this message, and the batch
            // it came in, for as long as its attempt takes. One with every place taken and
            // stuck sends it straight to its place in line.
            return match self.deliverer.busy_deferral(target) {
                Some(wait) => PairResult::Wait(wait, WaitReason::Busy),
                None => PairResult::Wait(Duration::ZERO, WaitReason::Defer),
            };
        }
        let Some(_claim) = self.in_progress.claim(&d.head.id, target.name()) else {
            info!(
                endpoint_id = target.name(),
                "a copy of this event is being delivered here right now"
            );
            return PairResult::Done;
        };
        self.deliverer
            .deliver(d.pair(target, slot), known, self.patient(Lane::Main))
            .await
    }

    async fn run_task(&self, d: &Deliveries<'_>, body: &str, lane: Lane) -> Disposition {
        let (Some((target, known)), Some(slot)) = (d.pairs.first(), d.slots.first()) else {
            return Disposition::Done;
        };
        if lane == Lane::Main && self.lane_of(target) == Lane::Slow {
            slot.close();
            return match self.send(Lane::Slow, body, Duration::ZERO).await {
                Ok(()) => Disposition::Done,
                Err(_) => Disposition::RetryIn(TRANSIENT_RETRY),
            };
        }
        let Some(_claim) = self.in_progress.claim(&d.head.id, target.name()) else {
            // Another copy of this pair is in hand here: look again once it is done.
            slot.close();
            return match self.send(lane, body, IN_HAND_RECHECK).await {
                Ok(()) => Disposition::Done,
                Err(_) => Disposition::RetryIn(IN_HAND_RECHECK),
            };
        };
        let delivered = self
            .deliverer
            .deliver(d.pair(target, slot), *known, self.patient(lane))
            .await;
        slot.close();
        let (wait, onward) = match delivered {
            PairResult::Done => return Disposition::Done,
            PairResult::StorageFailed => return Disposition::RetryIn(TRANSIENT_RETRY),
            PairResult::Wait(wait, WaitReason::Retry) => return Disposition::RetryIn(wait.min(MAX_VISIBILITY)),
            PairResult::Wait(wait, WaitReason::Defer) => (wait, lane),
            PairResult::Wait(wait, WaitReason::Busy) => (wait, Lane::Slow),
        };
        // A deferral goes on as a new message: it spends no attempt, and no receive either (the
        // queue's redrive counts receives).
        match self.send(onward, body, wait).await {
            Ok(()) => Disposition::Done,
            Err(_) => Disposition::RetryIn(wait.min(MAX_VISIBILITY)),
        }
    }

    /// Whether a delivery in `lane` may wait a moment for a place at a busy endpoint: only where
    /// waiting holds up no healthy delivery (the slow lane, or when there is no slow lane).
    fn patient(&self, lane: Lane) -> bool {
        lane == Lane::Slow || self.slow_queue.is_none()
    }

    fn lane_of(&self, target: &Target) -> Lane {
        if self.slow_queue.is_some() && self.health.is_slow(target) {
            Lane::Slow
        } else {
            Lane::Main
        }
    }

    async fn send(&self, lane: Lane, body: &str, delay: Duration) -> Result<(), PipelineError> {
        let queue = match (lane, &self.slow_queue) {
            (Lane::Slow, Some(slow)) => slow,
            _ => &self.queue,
        };
        // Each is sent before the message being handled is deleted.
        queue.send_onward(body, delay.min(MAX_DELAY)).await
    }

    async fn bury_unreadable(&self, incoming: &Incoming, err: UnreadableMessage) -> Disposition {
        warn!(message_id = %incoming.message_id, error = %err, "unreadable message goes to the dead-letter queue");
        let letter = DeadLetter {
            reason: err.to_string(),
            code: Some(FinalCode::Unreadable),
            attempts: 0,
            at: self.deliverer.now(),
            target: None,
            event_id: None,
            event_type: None,
            message: incoming.body.clone(),
        };
        match self.dead_letters.send(&letter.to_body(), Duration::ZERO).await {
            Ok(()) => Disposition::Done,
            Err(_) => Disposition::RetryIn(TRANSIENT_RETRY),
        }
    }
}

/// Copies of one event in the same batch: one carries it — one received before, if any, since
/// its deliveries may have begun — and the others are settled.
fn carry_each_event_once(plans: &mut [Plan<'_>]) {
    let mut carrier: HashMap<EventId, usize> = HashMap::new();
    for (i, plan) in plans.iter().enumerate() {
        if let Plan::Deliver(d) = plan
            && d.task_body.is_none()
        {
            let seen_before = d.pairs.iter().any(|(_, known)| *known == Known::ReadLog);
            let chosen = carrier.entry(d.head.id.clone()).or_insert(i);
            if seen_before {
                *chosen = i;
            }
        }
    }
    for (i, plan) in plans.iter_mut().enumerate() {
        if let Plan::Deliver(d) = plan
            && d.task_body.is_none()
            && carrier.get(&d.head.id) != Some(&i)
        {
            info!(event_id = %d.head.id, "another copy of this event in the batch carries it");
            *plan = Plan::Settled(Disposition::Done);
        }
    }
}
