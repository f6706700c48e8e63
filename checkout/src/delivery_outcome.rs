//! What one delivery attempt's result means: delivered, retry (and how soon at the earliest),
//! or gone for good (HTTP 410 disables the endpoint). Redirects are never followed, so a 3xx
//! is a failure like any other non-2xx.
//!
//! A receiver may also steer what follows with the `webhook-delivery` response header (Standard
//! Webhooks proposal #291, as Svix implements it): `disable` disables the endpoint (after this
//! delivery, if it succeeded), `abort-message` ends this event's retries (no effect on a success).

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
    /// A failed answer with `webhook-delivery: disable`: the endpoint is disabled.
    DisableRequested,
    /// A failed answer with `webhook-delivery: abort-message`: this event is not retried.
    Aborted,
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

/// What a receiver asked with `webhook-delivery`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryControl {
    pub disable: bool,
    pub abort_message: bool,
}

impl DeliveryControl {
    pub const HEADER: &'static str = "webhook-delivery";

    /// The header's values: comma-separated tokens, case and spaces ignored; unknown ones too.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut control = Self::default();
        for token in values.into_iter().flat_map(|v| v.split(',')) {
            let token = token.trim();
            if token.eq_ignore_ascii_case("disable") {
                control.disable = true;
            } else if token.eq_ignore_ascii_case("abort-message") {
                control.abort_message = true;
            }
        }
        control
    }
}

/// The outcome of an answer, with what the receiver asked: a failure it asks to end becomes
/// [`Outcome::DisableRequested`] or [`Outcome::Aborted`] instead of a retry. A success stays
/// delivered (the caller disables after it if asked); a 410 stays gone.
pub fn of_answer(status: u16, retry_after: Option<Duration>, control: DeliveryControl) -> Outcome {
    match of_status(status, retry_after) {
        Outcome::Retry { .. } if control.disable => Outcome::DisableRequested,
        Outcome::Retry { .. } if control.abort_message => Outcome::Aborted,
        outcome => outcome,
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
    fn receivers_steer_what_follows_a_failure() {
        let none = DeliveryControl::default();
        let abort = DeliveryControl::parse(["Abort-Message"]);
        let disable = DeliveryControl::parse(["foo, disable"]);
        let both = DeliveryControl::parse(["abort-message", " DISABLE "]);
        assert_eq!(
            abort,
            DeliveryControl {
                disable: false,
                abort_message: true
            }
        );
        assert_eq!(
            disable,
            DeliveryControl {
                disable: true,
                abort_message: false
            }
        );
        assert!(both.disable && both.abort_message);
        assert_eq!(
            DeliveryControl::parse(["pause", ""]),
            none,
            "unknown tokens are ignored"
        );
        assert_eq!(of_answer(503, None, abort), Outcome::Aborted);
        assert_eq!(of_answer(400, None, disable), Outcome::DisableRequested);
        assert_eq!(
            of_answer(500, None, both),
            Outcome::DisableRequested,
            "disable says more"
        );
        assert_eq!(of_answer(200, None, both), Outcome::Delivered, "a success stays one");
        assert_eq!(of_answer(410, None, abort), Outcome::Gone);
        assert!(matches!(of_answer(500, None, none), Outcome::Retry { .. }));
    }

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
