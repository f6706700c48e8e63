//! Delivery rate limits, per key (a merchant, an endpoint), with `governor`. Over the limit a
//! delivery is deferred for the wait this returns — never dropped, and no attempt is spent.
//!
//! Several dispatcher instances share one limit: each holds `rate / instances` of it (on AWS,
//! `instances` is the SQS event source's maximum concurrency), so together they never exceed it.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

type Keyed<K, C> = RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Keys with the same rate share one keyed limiter; a key whose rate changes moves to the
/// limiter of its new rate (starting with a full allowance).
pub struct RateLimits<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    instances: NonZeroU32,
    clock: C,
    by_rate: RwLock<HashMap<u32, Arc<Keyed<K, C>>>>,
}

impl<K: Hash + Eq + Clone> RateLimits<K, DefaultClock> {
    pub fn new(instances: NonZeroU32) -> Self {
        Self::with_clock(instances, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> RateLimits<K, C> {
    pub fn with_clock(instances: NonZeroU32, clock: C) -> Self {
        Self {
            instances,
            clock,
            by_rate: RwLock::new(HashMap::new()),
        }
    }

    /// How far apart this instance's deliveries for one key are at `rate_per_sec`.
    pub fn spacing(&self, rate_per_sec: NonZeroU32) -> Duration {
        Duration::from_secs_f64(f64::from(self.instances.get()) / f64::from(rate_per_sec.get()))
    }

    /// This instance's share of `rate_per_sec`: one delivery every `instances / rate` seconds,
    /// with bursts of up to a second's worth (at least one).
    fn quota(&self, rate_per_sec: NonZeroU32) -> Quota {
        let period = self.spacing(rate_per_sec);
        let burst = NonZeroU32::new(rate_per_sec.get() / self.instances.get()).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(rate_per_sec))
            .allow_burst(burst)
    }

    fn limiter(&self, rate_per_sec: NonZeroU32) -> Arc<Keyed<K, C>> {
        if let Some(limiter) = self.by_rate.read().get(&rate_per_sec.get()) {
            return limiter.clone();
        }
        let mut by_rate = self.by_rate.write();
        by_rate
            .entry(rate_per_sec.get())
            .or_insert_with(|| {
                Arc::new(RateLimiter::new(
                    self.quota(rate_per_sec),
                    DefaultKeyedStateStore::default(),
                    self.clock.clone(),
                ))
            })
            .clone()
    }

    /// `Ok` when a delivery for `key` may go now; otherwise how long to defer it.
    pub fn check(&self, key: &K, rate_per_sec: NonZeroU32) -> Result<(), Duration> {
        self.limiter(rate_per_sec)
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(instances: u32) -> (RateLimits<&'static str, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimits::with_clock(NonZeroU32::new(instances).unwrap(), clock.clone()),
            clock,
        )
    }

    const TEN: NonZeroU32 = NonZeroU32::new(10).unwrap();

    #[test]
    fn a_second_of_burst_then_deferral_with_the_wait() {
        let (limits, clock) = limits(1);
        for _ in 0..10 {
            assert_eq!(limits.check(&"mer_a", TEN), Ok(()));
        }
        let wait = limits.check(&"mer_a", TEN).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        clock.advance(wait);
        assert_eq!(limits.check(&"mer_a", TEN), Ok(()), "allowed again after the wait");
    }

    #[test]
    fn keys_do_not_share_an_allowance() {
        let (limits, _) = limits(1);
        for _ in 0..10 {
            limits.check(&"mer_a", TEN).unwrap();
        }
        assert!(limits.check(&"mer_a", TEN).is_err());
        assert_eq!(limits.check(&"mer_b", TEN), Ok(()));
    }

    #[test]
    fn each_instance_holds_its_share() {
        let (limits, clock) = limits(4);
        // 10/s over 4 instances: 2.5/s here, a burst of 2, then one every 400 ms.
        assert_eq!(limits.check(&"mer_a", TEN), Ok(()));
        assert_eq!(limits.check(&"mer_a", TEN), Ok(()));
        assert_eq!(limits.check(&"mer_a", TEN), Err(Duration::from_millis(400)));
        clock.advance(Duration::from_millis(400));
        assert_eq!(limits.check(&"mer_a", TEN), Ok(()));
    }

    #[test]
    fn rates_below_the_instance_count_still_flow() {
        let (limits, clock) = limits(10);
        let one = NonZeroU32::MIN;
        assert_eq!(limits.check(&"mer_a", one), Ok(()));
        assert_eq!(limits.check(&"mer_a", one), Err(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(10));
        assert_eq!(limits.check(&"mer_a", one), Ok(()));
    }
}
