//! Whether a delivery may go now: the merchant's and the endpoint's rate limits, and the cap on
//! requests in flight per endpoint. Short waits over a rate limit are slept off in place; longer
//! ones become a deferral to a reserved slot, so a backlog drains at the limit.

use crate::deferral::DeferralSlots;
use crate::in_flight::InFlightLimits;
use crate::rate_limit::RateLimits;
use crate::targets::Target;
use checkout::ids::{EndpointId, MerchantId};
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// A wait over the rate limit shorter than this is slept off in place; longer ones defer.
const WAIT_IN_PLACE: Duration = Duration::from_millis(500);
/// How often a delivery waits in place before it is deferred.
const WAITS_IN_PLACE: usize = 3;
/// How long a delivery is deferred when its endpoint keeps its cap of requests in flight,
/// plus up to as much again at random, so deferred deliveries do not all come back at once.
/// (In the main lane it is not waited for at all: the delivery moves to the slow lane.)
const IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(1);

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
    /// ends (none for the order webhook), or `Err` with how long to defer the delivery. With
    /// `wait_for_place`, a delivery that finds its endpoint at its in-flight cap waits a moment
    /// for a place; without, it is deferred at once as [`Deferral::busy`].
    pub async fn admit(
        &self,
        merchant: &MerchantId,
        target: &Target,
        wait_for_place: bool,
    ) -> Result<Option<OwnedSemaphorePermit>, Deferral> {
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
                let within = if wait_for_place { WAIT_IN_PLACE } else { Duration::ZERO };
                match self.in_flight.acquire_within(&e.id, within).await {
                    Some(permit) => Ok(Some(permit)),
                    None => {
                        let jitter = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX);
                        Err(Deferral {
                            wait: IN_FLIGHT_DEFERRAL.mul_f64(1.0 + jitter),
                            busy: true,
                        })
                    }
                }
            }
        }
    }
}
