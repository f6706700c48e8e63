//! Whether a delivery may go now: the merchant's and the endpoint's rate limits, and the cap on
//! requests in flight per endpoint. Short waits over a rate limit are slept off in place; longer
//! ones become a deferral to a reserved slot, so a backlog drains at the limit.

use crate::deferral::DeferralSlots;
use crate::in_flight::{InFlightLimits, InFlightPermit, Patience};
use crate::rate_limit::RateLimits;
use crate::targets::Target;
use checkout::ids::{EndpointId, MerchantId};
use std::num::NonZeroU32;
use std::time::Duration;

/// A wait over the rate limit shorter than this is slept off in place; longer ones defer.
const WAIT_IN_PLACE: Duration = Duration::from_millis(500);
/// How often a delivery waits in place before it is deferred.
const WAITS_IN_PLACE: usize = 3;
/// How long a delivery is deferred, at least, when its endpoint keeps its cap of requests in
/// flight: the longer the endpoint has gone without progress (see the in-flight pace), the
/// longer, up to [`MAX_IN_FLIGHT_DEFERRAL`]. (In the main lane it is not waited for at all: the
/// delivery moves to the slow lane.) An endpoint at its cap that answers quickly is not
/// deferred: a place frees within milliseconds.
const IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(1);
const MAX_IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(10);
/// How far ahead a busy endpoint's line reaches: half as long as the endpoint has gone without a
/// quick answer, from [`LINE_REACH`] up to [`MAX_LINE_REACH`].
///
/// Deliveries deferred so queue up at the pace the endpoint frees places (see
/// [`InFlightLimits::place_interval`]): one that stopped answering frees its 64 places as its
/// requests time out, one every 0.23 s, and each of its deliveries comes back about when a place
/// should be free, instead of all of them every few seconds. Each deferral is a queue message
/// written and read again (on AWS, three SQS requests): deferred by 1-20 s each, the deliveries
/// of an endpoint that times out went round the slow queue as fast as the slow lane could take
/// them. Past the line's reach they all come back at its end, so the reach grows with the
/// outage: each waiting delivery comes back about twice over the outage's length so far, and
/// deliveries never attempted arrive within that reach once the endpoint answers again. Once it
/// has answered one request quickly, the line starts afresh (deliveries deferred from then on go
/// at once, not behind those in line). A line 5 minutes long from the start held events sent
/// during a 40 s outage, and after it, 5 minutes.
const LINE_REACH: Duration = Duration::from_secs(30);
const MAX_LINE_REACH: Duration = Duration::from_secs(300);

/// A delivery that may not go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deferral {
    pub wait: Duration,
    /// The endpoint has its cap of requests in flight: it is slow, or very busy.
    pub busy: bool,
}

pub(crate) struct Admission {
    merchant_rate: NonZeroU32,
    merchant_limits: RateLimits<MerchantId>,
    endpoint_limits: RateLimits<EndpointId>,
    in_flight: InFlightLimits<EndpointId>,
    slots: DeferralSlots,
    /// The line of deliveries deferred by busy endpoints, by endpoint.
    busy_slots: DeferralSlots,
}

impl Admission {
    pub fn new(merchant_rate: NonZeroU32, instances: NonZeroU32, max_in_flight_per_endpoint: usize) -> Self {
        Self {
            merchant_rate,
            merchant_limits: RateLimits::new(instances),
            endpoint_limits: RateLimits::new(instances),
            in_flight: InFlightLimits::new(max_in_flight_per_endpoint),
            slots: DeferralSlots::default(),
            busy_slots: DeferralSlots::default(),
        }
    }

    /// `Ok` with the permit that holds one of the endpoint's in-flight places until the attempt
    /// ends (none for the order webhook), or `Err` with how long to defer the delivery. A
    /// delivery that finds its endpoint at its in-flight cap waits a moment for a place if the
    /// endpoint answers quickly (a place frees within milliseconds), or always with
    /// `wait_for_place` (where waiting holds up no healthy delivery); else it is deferred at once
    /// as [`Deferral::busy`].
    pub async fn admit(
        &self,
        merchant: &MerchantId,
        target: &Target,
        wait_for_place: bool,
    ) -> Result<Option<InFlightPermit>, Deferral> {
        let endpoint = target.endpoint();
        let endpoint_rate = endpoint.and_then(|e| NonZeroU32::new(e.rate_limit?));
        for round in 0.. {
            let over = match self.merchant_limits.check(merchant, self.merchant_rate) {
                Err(wait) => Some((
                    wait,
                    merchant.as_str(),
                    self.merchant_limits.spacing(self.merchant_rate),
                )),
                Ok(()) => endpoint.zip(endpoint_rate).and_then(|(e, rate)| {
                    let wait = self.endpoint_limits.check(&e.id, rate).err()?;
                    Some((wait, e.id.as_str(), self.endpoint_limits.spacing(rate)))
                }),
            };
            let Some((wait, key, spacing)) = over else { break };
            if wait > WAIT_IN_PLACE || round >= WAITS_IN_PLACE {
                return Err(Deferral {
                    wait: self.slots.reserve(key, wait, spacing),
                    busy: false,
                });
            }
            tokio::time::sleep(wait).await;
        }
        match endpoint {
            None => Ok(None),
            Some(e) => {
                let patience = if wait_for_place {
                    Patience::For(WAIT_IN_PLACE)
                } else {
                    Patience::WhileQuick(WAIT_IN_PLACE)
                };
                match self.in_flight.acquire(&e.id, patience).await {
                    Some(permit) => {
                        if self.busy_slots.holds(e.id.as_str()) && self.in_flight.last_answered_quickly(&e.id) {
                            self.busy_slots.forget(e.id.as_str());
                        }
                        Ok(Some(permit))
                    }
                    None => Err(self.defer_busy(&e.id)),
                }
            }
        }
    }

    /// For a delivery not tried where it was received (its endpoint is slow): the deferral it
    /// would get if its endpoint has every place taken and is not quick, so it goes straight to
    /// its place in the line instead of through another round of the queue first.
    pub fn busy_deferral(&self, target: &Target) -> Option<Deferral> {
        let e = target.endpoint()?;
        (self.in_flight.is_full(&e.id) && !self.in_flight.is_quick(&e.id)).then(|| self.defer_busy(&e.id))
    }

    /// The next place in the endpoint's line (see [`LINE_REACH`]).
    fn defer_busy(&self, endpoint: &EndpointId) -> Deferral {
        let earliest = self
            .in_flight
            .stalled_for(endpoint)
            .clamp(IN_FLIGHT_DEFERRAL, MAX_IN_FLIGHT_DEFERRAL);
        let pace = self.in_flight.place_interval(endpoint);
        let reach = (self.in_flight.unanswered_for(endpoint) / 2).clamp(LINE_REACH, MAX_LINE_REACH);
        Deferral {
            wait: self.busy_slots.reserve_within(endpoint.as_str(), earliest, pace, reach),
            busy: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout::clock;
    use checkout::webhook_endpoint::WebhookEndpoint;
    use std::sync::Arc;
    use tokio::time::Instant;

    const CAP: usize = 2;

    fn admission() -> Admission {
        Admission::new(NonZeroU32::MAX, NonZeroU32::MIN, CAP)
    }

    fn target() -> (MerchantId, Target) {
        let merchant = MerchantId::generate();
        let endpoint = WebhookEndpoint::new(merchant.clone(), "https://example.com/hook".into(), clock::now()).unwrap();
        (merchant, Target::Endpoint(Arc::new(endpoint)))
    }

    /// Takes every place of the endpoint, after one quick request so it is known to answer.
    async fn fill(admission: &Admission, merchant: &MerchantId, target: &Target) -> Vec<InFlightPermit> {
        let quick = admission.admit(merchant, target, false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(quick);
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(admission.admit(merchant, target, false).await.unwrap().unwrap());
        }
        held
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_endpoint_that_answers_quickly_is_waited_for_not_deferred() {
        let admission = admission();
        let (merchant, target) = target();
        let mut held = fill(&admission, &merchant, &target).await;
        let freed = held.pop();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(freed);
        });
        let started = Instant::now();
        let admitted = admission.admit(&merchant, &target, false).await;
        assert!(
            matches!(admitted, Ok(Some(_))),
            "a place frees within milliseconds: {admitted:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(5), "it waited for that place");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_endpoint_that_stopped_answering_is_deferred_at_once() {
        let admission = admission();
        let (merchant, target) = target();
        let _held = fill(&admission, &merchant, &target).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let admitted = admission.admit(&merchant, &target, false).await;
        assert!(matches!(admitted, Err(Deferral { busy: true, .. })), "{admitted:?}");
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing was waited for");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_endpoint_that_answers_slowly_is_deferred_at_once() {
        let admission = admission();
        let (merchant, target) = target();
        let slow = admission.admit(&merchant, &target, false).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(slow);
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(admission.admit(&merchant, &target, false).await.unwrap());
        }
        let started = Instant::now();
        let admitted = admission.admit(&merchant, &target, false).await;
        assert!(matches!(admitted, Err(Deferral { busy: true, .. })), "{admitted:?}");
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing was waited for");
    }

    async fn deferred(admission: &Admission, merchant: &MerchantId, target: &Target) -> Duration {
        match admission.admit(merchant, target, false).await {
            Err(Deferral { wait, busy: true }) => wait,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_longer_an_endpoint_has_been_stuck_the_longer_its_deliveries_are_deferred() {
        let admission = admission();
        let (merchant, target) = target();
        let _held = fill(&admission, &merchant, &target).await;
        // Just filled, it was still quick: the first waited half a second in vain.
        assert_eq!(deferred(&admission, &merchant, &target).await, IN_FLIGHT_DEFERRAL);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            deferred(&admission, &merchant, &target).await,
            Duration::from_millis(4_500)
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(deferred(&admission, &merchant, &target).await, MAX_IN_FLIGHT_DEFERRAL);
    }

    /// An endpoint stuck for 30 s with two places frees one every 15 s at best: deliveries
    /// deferred together queue up 15 s apart, not all back at once (each return is a queue
    /// message written and read again), and no further out than the longest deferral. Once it
    /// has answered a request quickly, the next deferral starts a new line.
    #[tokio::test(start_paused = true)]
    async fn deliveries_to_a_stuck_endpoint_queue_up_at_the_pace_it_frees_places() {
        let admission = admission();
        let (merchant, target) = target();
        let held = fill(&admission, &merchant, &target).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let mut waits = Vec::new();
        for _ in 0..4 {
            waits.push(deferred(&admission, &merchant, &target).await);
        }
        let s = Duration::from_secs;
        assert_eq!(waits, vec![s(10), s(25), s(30), s(30)]);
        for _ in 0..100 {
            assert!(deferred(&admission, &merchant, &target).await <= LINE_REACH);
        }
        assert_eq!(deferred(&admission, &merchant, &target).await, LINE_REACH);

        // Ten minutes on, still stuck: the line reaches further (half the time without a quick
        // answer, at most five minutes), so what waits comes back less often.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let waits = [
            deferred(&admission, &merchant, &target).await,
            deferred(&admission, &merchant, &target).await,
        ];
        assert_eq!(waits, [MAX_IN_FLIGHT_DEFERRAL, MAX_LINE_REACH]);

        // It answers again: its hung requests end, and the next is answered at once (its
        // typical hold is still seconds). Then it fills up and stops answering for a moment.
        drop(held);
        let _held = fill(&admission, &merchant, &target).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            deferred(&admission, &merchant, &target).await,
            s(2),
            "a new line, not behind the old one"
        );
    }

    /// A delivery not tried where it was received takes its place in a stuck endpoint's line at
    /// once, the same line as those tried; an endpoint with a free place, or a quick one, gives
    /// it none.
    #[tokio::test(start_paused = true)]
    async fn a_delivery_not_tried_here_joins_a_stuck_endpoints_line() {
        let admission = admission();
        let (merchant, target) = target();
        let quick = admission.admit(&merchant, &target, false).await.unwrap();
        assert_eq!(admission.busy_deferral(&target), None, "a place is free");
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(quick);
        let held = fill(&admission, &merchant, &target).await;
        assert_eq!(admission.busy_deferral(&target), None, "full, but quick");
        tokio::time::sleep(Duration::from_secs(30)).await;
        let s = Duration::from_secs;
        let first = admission.busy_deferral(&target).map(|d| d.wait);
        assert_eq!(first, Some(s(10)));
        assert_eq!(deferred(&admission, &merchant, &target).await, s(25));
        assert_eq!(admission.busy_deferral(&target).map(|d| d.wait), Some(s(30)));
        drop(held);
        assert_eq!(admission.busy_deferral(&target), None, "places freed");
    }

    #[tokio::test(start_paused = true)]
    async fn in_the_slow_lane_a_busy_endpoint_is_waited_for_a_moment() {
        let admission = admission();
        let (merchant, target) = target();
        let _held = fill(&admission, &merchant, &target).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let admitted = admission.admit(&merchant, &target, true).await;
        assert!(matches!(admitted, Err(Deferral { busy: true, .. })), "{admitted:?}");
        assert_eq!(started.elapsed(), WAIT_IN_PLACE);
    }
}
