//! What one delivery attempt's result means: delivered, retry (and how soon at the earliest),
//! or gone for good (HTTP 410 disables the endpoint). Redirects are never followed, so a 3xx
//! is a failure like any other non-2xx.

use crate::retry_schedule::Pushback;
use std::time::Duration;

/// A stable code for what went wrong, stored with the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    Dns,
    Connect,
    Tls,
    Timeout,
    Http,
    /// The URL failed the safety check at delivery time.
    Blocked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 410 Gone: the receiver says the endpoint will never take deliveries again.
    Gone,
    Retry {
        class: ErrorClass,
        pushback: Pushback,
    },
}

pub fn of_status(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        429 | 500..=599 => Outcome::Retry {
            class: ErrorClass::Http,
            pushback: Pushback {
                retry_after,
                overloaded: status == 429,
            },
        },
        _ => Outcome::Retry {
            class: ErrorClass::Http,
            pushback: Pushback::default(),
        },
    }
}

pub fn of_error(class: ErrorClass) -> Outcome {
    Outcome::Retry {
        class,
        pushback: Pushback {
            retry_after: None,
            overloaded: class == ErrorClass::Timeout,
        },
    }
}

/// `Retry-After` as seconds or as an HTTP date (relative to `now`, unix seconds).
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?.timestamp();
    Some(Duration::from_secs(u64::try_from(at - now).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(of_status(200, None), Outcome::Delivered);
        assert_eq!(of_status(204, None), Outcome::Delivered);
        assert_eq!(of_status(410, None), Outcome::Gone);
        for status in [301, 302, 307, 400, 401, 404, 500, 503] {
            assert!(matches!(of_status(status, None), Outcome::Retry { .. }), "{status}");
        }
        let throttled = of_status(429, Some(Duration::from_secs(7)));
        let expected = Pushback {
            retry_after: Some(Duration::from_secs(7)),
            overloaded: true,
        };
        assert_eq!(
            throttled,
            Outcome::Retry {
                class: ErrorClass::Http,
                pushback: expected
            }
        );
        assert!(matches!(
            of_error(ErrorClass::Timeout),
            Outcome::Retry {
                pushback: Pushback { overloaded: true, .. },
                ..
            }
        ));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 25 Nov 2026 10:00:00 GMT")
            .unwrap()
            .timestamp();
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
