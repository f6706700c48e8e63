//! Spacing for deferred deliveries. When a key (a merchant, an endpoint) is over its rate, each
//! deferred delivery takes the next free slot at that rate instead of all coming back at once
//! and being deferred again: a backlog drains at the limit, each message deferred about once.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Above this many keys, slots already in the past are forgotten.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct DeferralSlots {
    next_free: Mutex<HashMap<String, Instant>>,
}

impl DeferralSlots {
    /// The delay until the slot reserved for one more delivery under `key`: no sooner than
    /// `earliest` from now, and `spacing` after the previous reservation.
    pub fn reserve(&self, key: &str, earliest: Duration, spacing: Duration) -> Duration {
        let now = Instant::now();
        let mut slots = self.next_free.lock();
        if slots.len() > PRUNE_ABOVE {
            slots.retain(|_, at| *at > now);
        }
        let next = slots.entry(key.to_owned()).or_insert(now);
        let slot = (*next).max(now + earliest);
        *next = slot + spacing;
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_deliveries_queue_up_at_the_rate() {
        let slots = DeferralSlots::default();
        let spacing = Duration::from_millis(100);
        let delays: Vec<Duration> = (0..4)
            .map(|_| slots.reserve("mer_a", Duration::from_millis(50), spacing))
            .collect();
        for pair in delays.windows(2) {
            let gap = pair[1].saturating_sub(pair[0]);
            assert!(gap >= Duration::from_millis(95), "{delays:?}");
        }
        assert!(delays[0] >= Duration::from_millis(45));
        assert!(
            slots.reserve("mer_b", Duration::ZERO, spacing) < Duration::from_millis(5),
            "other keys have their own slots"
        );
    }
}
