//! Paces API calls to a total rate over all buyers on a fixed schedule: call `k` is due at
//! `start + k / rate`. A call that starts late does not push the later ones back (the schedule
//! is absolute, as an open-loop load generator's must be), so the rate asked is the rate run as
//! long as the buyers keep up. When they do not (too few of them for the API's latency), calls
//! start as soon as a buyer is free, and the report shows the rate reached.
//!
//! A token bucket with a burst of one (what this replaced) loses the time of every late wake-up
//! — a timer fires up to a millisecond late — and ran `--rate 500` at 451–460 calls/s.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::{Duration, Instant};

pub struct Pacer {
    start: Instant,
    rate: f64,
    next: AtomicU64,
}

impl Pacer {
    /// `None` for a rate that is not a positive number (no pacing).
    pub fn new(rate: f64) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then(|| Self {
            start: Instant::now(),
            rate,
            next: AtomicU64::new(0),
        })
    }

    /// Waits until the next call on the schedule is due.
    pub async fn ready(&self) {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep_until(self.due(k)).await;
    }

    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pacing_without_a_positive_rate() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pacer::new(rate).is_none(), "{rate}");
        }
    }

    /// On tokio's paused clock: 1,000 calls at 500/s take 1.998 s (the first is due at once).
    #[tokio::test(start_paused = true)]
    async fn runs_at_the_rate_asked() {
        let pacer = Pacer::new(500.0).unwrap();
        let start = Instant::now();
        for _ in 0..1000 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1998));
    }

    /// A caller that comes late does not move the schedule: the calls that fell due meanwhile
    /// go at once, and the run ends when it would have.
    #[tokio::test(start_paused = true)]
    async fn a_late_call_does_not_push_the_schedule_back() {
        let pacer = Pacer::new(100.0).unwrap();
        let start = Instant::now();
        pacer.ready().await;
        tokio::time::sleep(Duration::from_millis(55)).await;
        for _ in 0..5 {
            pacer.ready().await;
            assert_eq!(start.elapsed(), Duration::from_millis(55));
        }
        for _ in 0..94 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(990));
    }
}
