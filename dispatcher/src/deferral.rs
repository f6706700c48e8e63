//! Spacing for deferred deliveries. When a key (a merchant, an endpoint) is over its rate, each
//! deferred delivery takes the next free slot at that rate instead of all coming back at once
//! and being deferred again: a backlog drains at the limit, each message deferred about once.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

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
        self.reserve_at(Instant::now(), key, earliest, spacing, Duration::MAX)
    }

    /// Whether `key` has slots reserved (past ones included).
    pub fn holds(&self, key: &str) -> bool {
        self.next_free.lock().contains_key(key)
    }

    /// Drops `key`'s reservations: the next starts afresh.
    pub fn forget(&self, key: &str) {
        self.next_free.lock().remove(key);
    }

    /// [`DeferralSlots::reserve`], no further ahead than `horizon`: past it the line stops
    /// growing, and every later reservation takes the slot at the horizon (the line does not
    /// run ahead of what is handed out).
    pub fn reserve_within(&self, key: &str, earliest: Duration, spacing: Duration, horizon: Duration) -> Duration {
        self.reserve_at(Instant::now(), key, earliest, spacing, horizon)
    }

    /// [`DeferralSlots::reserve_within`] as seen at `now`.
    fn reserve_at(
        &self,
        now: Instant,
        key: &str,
        earliest: Duration,
        spacing: Duration,
        horizon: Duration,
    ) -> Duration {
        let mut slots = self.next_free.lock();
        if slots.len() > PRUNE_ABOVE {
            slots.retain(|_, at| *at > now);
        }
        let next = slots.entry(key.to_owned()).or_insert(now);
        let mut slot = (*next).max(now + earliest);
        if let Some(limit) = now.checked_add(horizon.max(earliest)) {
            slot = slot.min(limit);
        }
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
        let (start, spacing, ms) = (Instant::now(), Duration::from_millis(100), Duration::from_millis);
        // Four deliveries deferred 10 ms apart: each takes the next slot 100 ms after the last,
        // counted from its own moment.
        let delays: Vec<Duration> = (0..4u64)
            .map(|i| slots.reserve_at(start + ms(10 * i), "mer_a", ms(50), spacing, Duration::MAX))
            .collect();
        assert_eq!(delays, vec![ms(50), ms(140), ms(230), ms(320)]);
        // Once the slots have passed, the earliest wait applies again.
        assert_eq!(
            slots.reserve_at(start + ms(1_000), "mer_a", ms(50), spacing, Duration::MAX),
            ms(50)
        );
        assert_eq!(
            slots.reserve_at(start, "mer_b", Duration::ZERO, spacing, Duration::MAX),
            Duration::ZERO,
            "other keys have their own slots"
        );
    }

    #[test]
    fn a_line_with_a_horizon_stops_growing_there() {
        let slots = DeferralSlots::default();
        let (start, s) = (Instant::now(), Duration::from_secs);
        let delays: Vec<Duration> = (0..5)
            .map(|_| slots.reserve_at(start, "we_a", s(1), s(10), s(30)))
            .collect();
        assert_eq!(delays, vec![s(1), s(11), s(21), s(30), s(30)]);
        // A minute on, the line starts again from there, not from where it would have reached.
        assert_eq!(slots.reserve_at(start + s(60), "we_a", s(1), s(10), s(30)), s(1));
    }
}
