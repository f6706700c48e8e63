//! An endpoint's health as the portal shows it, from its newest attempt records: success rate
//! and latency percentiles over the last hour and day, and the last failure. Plain arithmetic
//! over records already read.

use checkout::attempt_log::{AttemptRecord, AttemptStatus};
use checkout::clock::Timestamp;

/// Deliveries over one period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Period {
    pub attempts: usize,
    pub succeeded: usize,
    pub p50_ms: Option<u32>,
    pub p99_ms: Option<u32>,
}

impl Period {
    /// Succeeded attempts per hundred sent, when any was sent.
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.succeeded as f64 * 100.0 / self.attempts as f64)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub hour: Period,
    pub day: Period,
    pub last_failure: Option<AttemptRecord>,
}

/// Only attempts that were sent count (not holds or skips).
fn sent(record: &AttemptRecord) -> bool {
    matches!(record.status, AttemptStatus::Succeeded | AttemptStatus::Failed)
}

fn period<'a>(records: impl Iterator<Item = &'a AttemptRecord>) -> Period {
    let mut latencies: Vec<u32> = Vec::new();
    let mut succeeded = 0;
    for record in records.filter(|r| sent(r)) {
        latencies.push(record.latency_ms);
        succeeded += usize::from(record.delivered());
    }
    latencies.sort_unstable();
    // Nearest rank: the smallest latency at or above the share asked.
    let rank = |share: f64| -> Option<u32> {
        let index = ((share * latencies.len() as f64).ceil() as usize).max(1) - 1;
        latencies.get(index).copied()
    };
    Period {
        attempts: latencies.len(),
        succeeded,
        p50_ms: rank(0.5),
        p99_ms: rank(0.99),
    }
}

/// The health of the records given (any order).
pub fn of(records: &[AttemptRecord], now: Timestamp) -> Health {
    let within = |hours: i64| {
        let since = now - chrono::Duration::hours(hours);
        records.iter().filter(move |r| r.at >= since)
    };
    Health {
        hour: period(within(1)),
        day: period(within(24)),
        last_failure: records
            .iter()
            .filter(|r| r.status == AttemptStatus::Failed)
            .max_by_key(|r| r.at)
            .cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout::clock;
    use checkout::testkit::{attempt_record, event, merchant};

    fn record(minutes_ago: i64, latency_ms: u32, status: AttemptStatus, now: Timestamp) -> AttemptRecord {
        let mut r = attempt_record("we_x", &event(&merchant(), None, 1), 1);
        r.at = now - chrono::Duration::minutes(minutes_ago);
        r.latency_ms = latency_ms;
        r.status = status;
        r
    }

    #[test]
    fn periods_count_what_was_sent_in_them() {
        let now = clock::now();
        let mut records: Vec<_> = (1..=100)
            .map(|ms| record(10, ms, AttemptStatus::Succeeded, now))
            .collect();
        records.push(record(20, 5_000, AttemptStatus::Failed, now));
        records.push(record(120, 9_000, AttemptStatus::Failed, now));
        records.push(record(5, 0, AttemptStatus::Paused, now));
        let health = of(&records, now);
        assert_eq!((health.hour.attempts, health.hour.succeeded), (101, 100));
        assert_eq!(health.hour.p50_ms, Some(51));
        assert_eq!(health.hour.p99_ms, Some(100));
        assert_eq!((health.day.attempts, health.day.succeeded), (102, 100));
        assert_eq!(health.day.p99_ms, Some(5_000));
        let last = health.last_failure.unwrap();
        assert_eq!(last.latency_ms, 5_000, "the newest failure");
        assert!(health.hour.success_rate().unwrap() > 99.0);
        assert_eq!(of(&[], now).day.success_rate(), None);
    }
}
