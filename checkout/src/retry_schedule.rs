//! When a failed webhook delivery is tried again. The standard schedule is Standard Webhooks'
//! (immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h — about three days
//! in all); an operator may set another ([`RetrySchedule::parse`]). Each wait has jitter so a
//! recovering endpoint is not hit by every retry at once. The receiver's `Retry-After` is
//! honoured as a minimum; after a 429 or a timeout we wait at least the back-off floor.

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;

/// The standard waits before each retry (the first attempt goes out at once).
const STANDARD: [Duration; 9] = [
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

/// The standard least wait after a 429 or a timeout: the receiver is struggling.
pub const BACKOFF_FLOOR: Duration = Duration::from_secs(MINUTE);

/// Longest `Retry-After` we honour; a larger one is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * HOUR);

/// Limits of a schedule an operator sets. A delivery waits on its queue message: SQS keeps a
/// message 14 days and redrives it after 50 receives, and a wait over 11 h takes one receive
/// per 11 h. Every wait is at most 24 h — and so is a `Retry-After` we honour, which may
/// replace any wait — so twelve retries last at most 12 days and take at most 37 receives (with the first attempt's):
/// inside both, with room for rate-limit deferrals.
pub const MAX_RETRIES: usize = 12;
pub const MAX_WAIT: Duration = Duration::from_secs(24 * HOUR);
pub const MAX_BACKOFF_FLOOR: Duration = Duration::from_secs(HOUR);

/// Jitter spreads each wait over ±20 % of its nominal value.
const JITTER: f64 = 0.2;

/// Why the last attempt asks for a longer wait than the schedule's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pushback {
    /// The receiver's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// A 429 or a timeout: at least the schedule's back-off floor.
    pub overloaded: bool,
}

/// A schedule an operator wrote that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0:?} is not a wait: write a whole number and a unit (ms, s, m or h), as in 5s or 30m")]
    NotAWait(String),
    #[error("the schedule names no wait: give at least one, as in 5s,5m,30m")]
    Empty,
    #[error("the schedule has {0} retries; at most {MAX_RETRIES} are taken")]
    TooManyRetries(usize),
    #[error("a wait of {0:?} is longer than {MAX_WAIT:?}")]
    WaitTooLong(Duration),
    #[error("a back-off floor of {0:?} is longer than {MAX_BACKOFF_FLOOR:?}")]
    FloorTooLong(Duration),
}

/// The waits between attempts, and the floor after a 429 or a timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// `waits[i]`: the wait after attempt `i + 1` failed.
    waits: Vec<Duration>,
    backoff_floor: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            waits: STANDARD.to_vec(),
            backoff_floor: BACKOFF_FLOOR,
        }
    }
}

impl RetrySchedule {
    /// A schedule from its waits, comma-separated, as in `5s,5m,30m,2h`: the delivery is tried
    /// once at once and once after each wait.
    pub fn parse(waits: &str) -> Result<Self, ScheduleError> {
        let waits = waits
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(parse_wait)
            .collect::<Result<Vec<_>, _>>()?;
        if waits.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if waits.len() > MAX_RETRIES {
            return Err(ScheduleError::TooManyRetries(waits.len()));
        }
        if let Some(long) = waits.iter().find(|w| **w > MAX_WAIT) {
            return Err(ScheduleError::WaitTooLong(*long));
        }
        Ok(Self {
            waits,
            backoff_floor: BACKOFF_FLOOR,
        })
    }

    /// The same schedule with another least wait after a 429 or a timeout.
    pub fn with_backoff_floor(mut self, floor: Duration) -> Result<Self, ScheduleError> {
        if floor > MAX_BACKOFF_FLOOR {
            return Err(ScheduleError::FloorTooLong(floor));
        }
        self.backoff_floor = floor;
        Ok(self)
    }

    /// Attempts before a delivery is exhausted: the first and one after each wait.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.waits.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    pub fn waits(&self) -> &[Duration] {
        &self.waits
    }

    pub fn backoff_floor(&self) -> Duration {
        self.backoff_floor
    }

    /// The wait after attempt `attempts_made` failed, or `None` when the delivery is exhausted.
    /// `unit` is a random number in [0, 1) for the jitter.
    pub fn next_delay(&self, attempts_made: u32, pushback: Pushback, unit: f64) -> Option<Duration> {
        let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
        let nominal = *self.waits.get(index)?;
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        let mut delay = nominal.mul_f64(factor);
        if pushback.overloaded {
            delay = delay.max(self.backoff_floor);
        }
        if let Some(asked) = pushback.retry_after {
            delay = delay.max(asked.min(MAX_RETRY_AFTER));
        }
        // Jitter does not take a wait past the longest one a series is sized for.
        Some(delay.min(MAX_WAIT))
    }
}

/// A wait as an operator writes it: `250ms`, `5s`, `30m`, `2h`.
pub fn parse_wait(raw: &str) -> Result<Duration, ScheduleError> {
    let not_a_wait = || ScheduleError::NotAWait(raw.chars().take(40).collect());
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(not_a_wait)?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().map_err(|_| not_a_wait())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(not_a_wait()),
    };
    number
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(not_a_wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> RetrySchedule {
        RetrySchedule::default()
    }

    #[test]
    fn the_schedule_is_the_standard_one_and_ends() {
        let total: Duration = standard().waits().iter().sum();
        assert_eq!(
            total.as_secs(),
            5 + 5 * 60 + 30 * 60 + (2 + 5 + 10 + 14 + 20 + 24) * 3600
        );
        assert_eq!(standard().max_attempts(), 10);
        assert_eq!(
            standard().next_delay(1, Pushback::default(), 0.5),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            standard().next_delay(9, Pushback::default(), 0.5),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            standard().next_delay(10, Pushback::default(), 0.5),
            None,
            "exhausted after 10 attempts"
        );
        assert_eq!(standard().next_delay(0, Pushback::default(), 0.5), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let low = standard().next_delay(2, Pushback::default(), 0.0).unwrap();
        let high = standard().next_delay(2, Pushback::default(), 0.999_999).unwrap();
        assert_eq!(low, Duration::from_secs(240));
        assert!(
            high > Duration::from_secs(359) && high <= Duration::from_secs(360),
            "{high:?}"
        );
    }

    #[test]
    fn retry_after_is_a_minimum_and_overload_waits_the_floor() {
        let asked = Pushback {
            retry_after: Some(Duration::from_secs(120)),
            overloaded: false,
        };
        assert_eq!(standard().next_delay(1, asked, 0.5), Some(Duration::from_secs(120)));
        let short_ask = Pushback {
            retry_after: Some(Duration::from_secs(1)),
            overloaded: false,
        };
        assert_eq!(
            standard().next_delay(2, short_ask, 0.5),
            Some(Duration::from_secs(300)),
            "never sooner than scheduled"
        );
        let overloaded = Pushback {
            retry_after: None,
            overloaded: true,
        };
        assert_eq!(standard().next_delay(1, overloaded, 0.5), Some(BACKOFF_FLOOR));
        let greedy = Pushback {
            retry_after: Some(Duration::from_secs(30 * 24 * 3600)),
            overloaded: true,
        };
        assert_eq!(standard().next_delay(1, greedy, 0.5), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn an_operator_schedule_is_read_with_its_floor() {
        let schedule = RetrySchedule::parse(" 50ms, 3s,2m ,1h")
            .unwrap()
            .with_backoff_floor(Duration::from_millis(600))
            .unwrap();
        assert_eq!(
            schedule.waits(),
            [
                Duration::from_millis(50),
                Duration::from_secs(3),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(schedule.max_attempts(), 5);
        assert_eq!(
            schedule.next_delay(1, Pushback::default(), 0.5),
            Some(Duration::from_millis(50))
        );
        let overloaded = Pushback {
            retry_after: None,
            overloaded: true,
        };
        assert_eq!(
            schedule.next_delay(1, overloaded, 0.5),
            Some(Duration::from_millis(600))
        );
        assert_eq!(schedule.next_delay(5, Pushback::default(), 0.5), None);
    }

    #[test]
    fn a_schedule_beyond_what_the_queues_keep_is_refused_in_words() {
        let thirteen = ["1s"; 13].join(",");
        let cases: [(&str, ScheduleError); 10] = [
            ("", ScheduleError::Empty),
            (" , ", ScheduleError::Empty),
            ("5", ScheduleError::NotAWait("5".into())),
            ("5 s", ScheduleError::NotAWait("5 s".into())),
            ("-5s", ScheduleError::NotAWait("-5s".into())),
            ("5d", ScheduleError::NotAWait("5d".into())),
            (
                "99999999999999999999h",
                ScheduleError::NotAWait("99999999999999999999h".into()),
            ),
            ("25h", ScheduleError::WaitTooLong(Duration::from_secs(25 * 3600))),
            ("1441m", ScheduleError::WaitTooLong(Duration::from_secs(1441 * 60))),
            (&thirteen, ScheduleError::TooManyRetries(13)),
        ];
        for (raw, expected) in cases {
            assert_eq!(RetrySchedule::parse(raw), Err(expected), "{raw:?}");
        }
        let longest = ["24h"; 12].join(",");
        let schedule = RetrySchedule::parse(&longest).unwrap();
        // Even a receiver asking for the longest Retry-After on every answer keeps the series
        // inside SQS's 14-day retention (jitter included).
        let greedy = Pushback {
            retry_after: Some(Duration::from_secs(30 * 24 * 3600)),
            overloaded: true,
        };
        let worst: Duration = (1..schedule.max_attempts())
            .map(|made| schedule.next_delay(made, greedy, 0.999_999).unwrap())
            .sum();
        assert_eq!(worst, Duration::from_secs(12 * 24 * 3600));
        let jittered: Duration = (1..schedule.max_attempts())
            .map(|made| schedule.next_delay(made, Pushback::default(), 0.999_999).unwrap())
            .sum();
        assert_eq!(jittered, Duration::from_secs(12 * 24 * 3600), "jitter stays under 24 h");
        assert_eq!(
            RetrySchedule::default().with_backoff_floor(Duration::from_secs(7200)),
            Err(ScheduleError::FloorTooLong(Duration::from_secs(7200)))
        );
        let words = RetrySchedule::parse("5 s").unwrap_err().to_string();
        assert!(words.contains("a whole number and a unit"), "{words}");
    }
}
