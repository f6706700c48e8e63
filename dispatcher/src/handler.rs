//! The dispatcher handler: a batch of queue messages in, what to do with each message out.
//! The Lambda function and `acp-local`'s worker both call [`Dispatcher::handle`]; they differ
//! only in how they receive messages and carry out the [`Disposition`]s.
//!
//! An event straight from the topic fans out to every target of its merchant. A target that
//! needs another try (a failure, or a deferral by the rate limits) continues as its own task
//! message, so each (event, target) pair keeps its own schedule.

use crate::config::DispatcherConfig;
use crate::deferral::DeferralSlots;
use crate::in_flight::InFlightLimits;
use crate::metrics::{DeliveryCounts, Metrics};
use crate::pair::{Pair, PairResult, Series, WaitReason};
use crate::rate_limit::RateLimits;
use crate::targets::{Target, TargetCache};
use checkout::clock;
use checkout::delivery_task::{DeadLetter, DeliveryTask, EventHead, QueueMessage, TaskMessage, UnreadableMessage};
use checkout::ids::{EndpointId, MerchantId};
use checkout::ports::{Backend, DeliveryLog, DeliveryQueue, EndpointStore};
use futures_util::future::join_all;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, info_span, warn};

/// The longest a message can be hidden at once (the SQS visibility timeout limit); longer
/// waits hide it again when it comes back early.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// The longest a new message can be delayed (SQS `DelaySeconds`).
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// How soon a message comes back after a failure on our side (storage or queue unavailable).
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(5);

/// One received message.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub message_id: String,
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Finished with: delete it.
    Done,
    /// Keep it; it comes back after this long (its new visibility timeout).
    RetryIn(Duration),
}

pub struct Dispatcher {
    pub(crate) client: reqwest::Client,
    pub(crate) log: Arc<dyn DeliveryLog>,
    pub(crate) endpoints: Arc<dyn EndpointStore>,
    pub(crate) targets: TargetCache,
    pub(crate) queue: Arc<dyn DeliveryQueue>,
    pub(crate) dead_letters: Arc<dyn DeliveryQueue>,
    pub(crate) merchant_limits: RateLimits<MerchantId>,
    pub(crate) endpoint_limits: RateLimits<EndpointId>,
    pub(crate) in_flight: InFlightLimits<EndpointId>,
    pub(crate) slots: DeferralSlots,
    pub(crate) config: DispatcherConfig,
    /// Outcomes since the last [`Dispatcher::take_metrics`].
    pub(crate) metrics: Metrics,
}

impl Dispatcher {
    /// Built once per process; the HTTP client (and its pooled connections) lives as long.
    pub fn new(
        backend: &Backend,
        queue: Arc<dyn DeliveryQueue>,
        dead_letters: Arc<dyn DeliveryQueue>,
        config: DispatcherConfig,
    ) -> reqwest::Result<Self> {
        Ok(Self {
            client: crate::client::build(config.client)?,
            log: backend.deliveries.clone(),
            endpoints: backend.endpoints.clone(),
            targets: TargetCache::new(
                backend.merchants.clone(),
                backend.endpoints.clone(),
                config.endpoint_cache_ttl,
            ),
            queue,
            dead_letters,
            merchant_limits: RateLimits::new(config.instances),
            endpoint_limits: RateLimits::new(config.instances),
            in_flight: InFlightLimits::new(config.max_in_flight_per_endpoint),
            slots: DeferralSlots::default(),
            config,
            metrics: Metrics::default(),
        })
    }

    /// What happened to deliveries since the last call (for the batch's metrics line).
    pub fn take_metrics(&self) -> DeliveryCounts {
        self.metrics.take()
    }

    /// Delivers a batch, all messages at once; the result at index i is message i's.
    pub async fn handle(&self, batch: &[Incoming]) -> Vec<Disposition> {
        join_all(batch.iter().map(|m| self.handle_one(m))).await
    }

    async fn handle_one(&self, incoming: &Incoming) -> Disposition {
        let message = match QueueMessage::parse(&incoming.body) {
            Ok(message) => message,
            Err(err) => return self.bury_unreadable(incoming, err).await,
        };
        let head = message.head();
        let span = info_span!(
            "delivery",
            event_id = %head.id,
            merchant_id = %head.merchant_id,
            session_id = %head.session_id,
            message_id = %incoming.message_id,
        );
        match &message {
            QueueMessage::Event { head, raw } => {
                // On a first receive no attempt can have been made yet, so the log is not read.
                let seen_before = incoming.receive_count > 1;
                self.fan_out(head, raw, seen_before).instrument(span).await
            }
            QueueMessage::Task { head, message } => self.run_task(head, message, &incoming.body).instrument(span).await,
        }
    }

    async fn fan_out(&self, head: &EventHead, raw: &RawValue, seen_before: bool) -> Disposition {
        let targets = match self.targets.get(&head.merchant_id).await {
            Ok(targets) => targets,
            Err(err) => {
                warn!(error = %err, "could not load the merchant's endpoints");
                return Disposition::RetryIn(TRANSIENT_RETRY);
            }
        };
        let series = Series::FIRST;
        let deliveries = targets.for_event(head.kind).into_iter().map(|target| async move {
            let pair = Pair {
                head,
                raw,
                target: &target,
                series,
            };
            let result = self.deliver(pair, seen_before).await;
            (target, result)
        });
        let mut disposition = Disposition::Done;
        for (target, result) in join_all(deliveries).await {
            let wait = match result {
                PairResult::Done => continue,
                PairResult::Failed => {
                    disposition = Disposition::RetryIn(TRANSIENT_RETRY);
                    continue;
                }
                PairResult::Wait(wait, _) => wait,
            };
            if let Err(err) = self.continue_as_task(&target, raw, wait).await {
                warn!(endpoint_id = target.name(), error = %err, "could not queue the next try; the event comes back");
                disposition = Disposition::RetryIn(TRANSIENT_RETRY);
            }
        }
        disposition
    }

    /// The next try of one target, as its own message.
    async fn continue_as_task(
        &self,
        target: &Target,
        raw: &RawValue,
        wait: Duration,
    ) -> Result<(), checkout::ports::PipelineError> {
        let task = TaskMessage {
            delivery: DeliveryTask {
                target: target.name().to_owned(),
                first_attempt: Series::FIRST.first_attempt,
                replay: false,
            },
            event: raw,
        };
        self.queue.send(&task.to_body(), wait.min(MAX_DELAY)).await
    }

    async fn run_task(&self, head: &EventHead, task: &TaskMessage<'_>, body: &str) -> Disposition {
        let targets = match self.targets.get(&head.merchant_id).await {
            Ok(targets) => targets,
            Err(err) => {
                warn!(error = %err, "could not load the merchant's endpoints");
                return Disposition::RetryIn(TRANSIENT_RETRY);
            }
        };
        let Some(target) = targets.named(&task.delivery.target) else {
            tracing::info!(endpoint_id = %task.delivery.target, "the endpoint was deleted; nothing to deliver");
            return Disposition::Done;
        };
        let pair = Pair {
            head,
            raw: task.event,
            target: &target,
            series: Series::of(&task.delivery),
        };
        match self.deliver(pair, true).await {
            PairResult::Done => Disposition::Done,
            PairResult::Failed => Disposition::RetryIn(TRANSIENT_RETRY),
            PairResult::Wait(wait, WaitReason::Retry) => Disposition::RetryIn(wait.min(MAX_VISIBILITY)),
            // A deferral goes back as a new message: it spends no attempt, and no receive either
            // (the queue's redrive counts receives).
            PairResult::Wait(wait, WaitReason::Defer) => match self.queue.send(body, wait.min(MAX_DELAY)).await {
                Ok(()) => Disposition::Done,
                Err(_) => Disposition::RetryIn(wait.min(MAX_VISIBILITY)),
            },
        }
    }

    async fn bury_unreadable(&self, incoming: &Incoming, err: UnreadableMessage) -> Disposition {
        warn!(message_id = %incoming.message_id, error = %err, "unreadable message goes to the dead-letter queue");
        let letter = DeadLetter {
            reason: err.to_string(),
            attempts: 0,
            at: clock::now(),
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
