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
/// flight; the longer the endpoint has gone without progress (see the in-flight pace), the
/// longer, up to
/// [`MAX_IN_FLIGHT_DEFERRAL`]; plus up to as much again at random, so deferred deliveries do not
/// all come back at once. (In the main lane it is not waited for at all: the delivery moves to
/// the slow lane.) An endpoint at its cap that answers quickly is not deferred: a place frees
/// within milliseconds.
///
/// Why it grows: every deferral is a queue message written and read again (on AWS, three SQS
/// requests). An endpoint that stopped answering holds its places until its requests time out;
/// deferring each of its deliveries by a second sent every one of them round the queue about
/// ten times in a 15 s hang, about four times now.
const IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(1);
const MAX_IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(10);

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
}

impl Admission {
    pub fn new(merchant_rate: NonZeroU32, instances: NonZeroU32, max_in_flight_per_endpoint: usize) -> Self {
        Self {
            merchant_rate,
            merchant_limits: RateLimits::new(instances),
            endpoint_limits: RateLimits::new(instances),
            in_flight: InFlightLimits::new(max_in_flight_per_endpoint),
            slots: DeferralSlots::default(),
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
                    Some(permit) => Ok(Some(permit)),
                    None => {
                        let stuck = self.in_flight.stalled_for(&e.id);
                        let wait = stuck.clamp(IN_FLIGHT_DEFERRAL, MAX_IN_FLIGHT_DEFERRAL);
                        let jitter = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX);
                        Err(Deferral {
                            wait: wait.mul_f64(1.0 + jitter),
                            busy: true,
                        })
                    }
                }
            }
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

    #[tokio::test(start_paused = true)]
    async fn the_longer_an_endpoint_has_been_stuck_the_longer_its_deliveries_are_deferred() {
        let admission = admission();
        let (merchant, target) = target();
        let _held = fill(&admission, &merchant, &target).await;
        let deferred = || async {
            match admission.admit(&merchant, &target, false).await {
                Err(Deferral { wait, busy: true }) => wait,
                other => panic!("{other:?}"),
            }
        };
        let first = deferred().await;
        assert!(
            (IN_FLIGHT_DEFERRAL..=IN_FLIGHT_DEFERRAL * 2).contains(&first),
            "{first:?}"
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        let later = deferred().await;
        assert!(
            (Duration::from_secs(4)..=Duration::from_secs(10)).contains(&later),
            "{later:?}"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        let much_later = deferred().await;
        assert!(
            (MAX_IN_FLIGHT_DEFERRAL..=MAX_IN_FLIGHT_DEFERRAL * 2).contains(&much_later),
            "{much_later:?}"
        );
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
