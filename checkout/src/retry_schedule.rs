//! When a failed webhook delivery is tried again: the Standard Webhooks schedule (immediately,
//! 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h — about three days in all), with
//! jitter so a recovering endpoint is not hit by every retry at once. The receiver's
//! `Retry-After` is honoured as a minimum; after a 429 or a timeout we wait at least a minute.

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;

/// The wait before each attempt; attempt 1 goes out at once.
pub const SCHEDULE: [Duration; 10] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(14 * HOUR),
    Duration::from_secs(20 * HOUR),
    Duration::from_secs(24 * HOUR),
];

/// Attempts before a delivery is exhausted.
pub const MAX_ATTEMPTS: u32 = SCHEDULE.len() as u32;

/// The least wait after a 429 or a timeout: the receiver is struggling.
pub const BACKOFF_FLOOR: Duration = Duration::from_secs(MINUTE);

/// Longest `Retry-After` we honour; a larger one is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * HOUR);

/// Jitter spreads each wait over ±20 % of its nominal value.
const JITTER: f64 = 0.2;

/// Why the last attempt asks for a longer wait than the schedule's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pushback {
    /// The receiver's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// A 429 or a timeout: at least [`BACKOFF_FLOOR`].
    pub overloaded: bool,
}

/// The wait after attempt `attempts_made` failed, or `None` when the delivery is exhausted.
/// `unit` is a random number in [0, 1) for the jitter.
pub fn next_delay(attempts_made: u32, pushback: Pushback, unit: f64) -> Option<Duration> {
    let nominal = *SCHEDULE.get(usize::try_from(attempts_made).ok()?)?;
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    let mut delay = nominal.mul_f64(factor);
    if pushback.overloaded {
        delay = delay.max(BACKOFF_FLOOR);
    }
    if let Some(asked) = pushback.retry_after {
        delay = delay.max(asked.min(MAX_RETRY_AFTER));
    }
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_standard_one_and_ends() {
        let total: Duration = SCHEDULE.iter().sum();
        assert_eq!(
            total.as_secs(),
            5 + 5 * 60 + 30 * 60 + (2 + 5 + 10 + 14 + 20 + 24) * 3600
        );
        assert_eq!(next_delay(1, Pushback::default(), 0.5), Some(Duration::from_secs(5)));
        assert_eq!(
            next_delay(9, Pushback::default(), 0.5),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            next_delay(MAX_ATTEMPTS, Pushback::default(), 0.5),
            None,
            "exhausted after 10 attempts"
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let low = next_delay(2, Pushback::default(), 0.0).unwrap();
        let high = next_delay(2, Pushback::default(), 0.999_999).unwrap();
        assert_eq!(low, Duration::from_secs(240));
        assert!(
            high > Duration::from_secs(359) && high <= Duration::from_secs(360),
            "{high:?}"
        );
    }

    #[test]
    fn retry_after_is_a_minimum_and_overload_waits_a_minute() {
        let asked = Pushback {
            retry_after: Some(Duration::from_secs(120)),
            overloaded: false,
        };
        assert_eq!(next_delay(1, asked, 0.5), Some(Duration::from_secs(120)));
        let short_ask = Pushback {
            retry_after: Some(Duration::from_secs(1)),
            overloaded: false,
        };
        assert_eq!(
            next_delay(2, short_ask, 0.5),
            Some(Duration::from_secs(300)),
            "never sooner than scheduled"
        );
        let overloaded = Pushback {
            retry_after: None,
            overloaded: true,
        };
        assert_eq!(next_delay(1, overloaded, 0.5), Some(BACKOFF_FLOOR));
        let greedy = Pushback {
            retry_after: Some(Duration::from_secs(30 * 24 * 3600)),
            overloaded: true,
        };
        assert_eq!(next_delay(1, greedy, 0.5), Some(MAX_RETRY_AFTER));
    }
}
