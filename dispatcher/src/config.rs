//! The dispatcher's settings, read once from the environment (see the README's configuration
//! table).

use crate::client::ClientSettings;
use checkout::retry_schedule::{self, RetrySchedule, ScheduleError};
use std::num::NonZeroU32;

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Deliveries per second per merchant, over all instances (`DISPATCHER_MERCHANT_RATE_LIMIT`).
    pub merchant_rate_limit: NonZeroU32,
    /// How many instances share each limit: on AWS the SQS event source's maximum concurrency
    /// (`DISPATCHER_INSTANCES`).
    pub instances: NonZeroU32,
    /// Requests in flight per endpoint from one instance (`DISPATCHER_MAX_IN_FLIGHT_PER_ENDPOINT`).
    pub max_in_flight_per_endpoint: usize,
    /// The waits between attempts and the floor after a 429 or a timeout
    /// (`DISPATCHER_RETRY_SCHEDULE`, `DISPATCHER_RETRY_BACKOFF_FLOOR`).
    pub retry_schedule: RetrySchedule,
    /// Attempts before a delivery is exhausted (`DISPATCHER_MAX_ATTEMPTS`): at most the
    /// schedule's, which it cuts short.
    pub max_attempts: u32,
    /// An endpoint failing without a success this long is disabled (`DISPATCHER_DISABLE_AFTER_HOURS`).
    pub disable_after: chrono::Duration,
    pub client: ClientSettings,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            merchant_rate_limit: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
            instances: NonZeroU32::MIN,
            max_in_flight_per_endpoint: 64,
            retry_schedule: RetrySchedule::default(),
            max_attempts: RetrySchedule::default().max_attempts(),
            disable_after: checkout::webhook_endpoint::FAILING_DISABLE_AFTER,
            client: ClientSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidSetting {
    #[error("{name}={value:?} is not valid: {expected}")]
    Value {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{name} is not valid: {source}")]
    Schedule {
        name: &'static str,
        #[source]
        source: ScheduleError,
    },
}

fn read<T: std::str::FromStr>(name: &'static str, expected: &'static str) -> Result<Option<T>, InvalidSetting> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| InvalidSetting::Value { name, value, expected }),
    }
}

/// An on/off setting, spelled as `acp-local`'s flags accept it.
struct Switch(bool);

impl std::str::FromStr for Switch {
    type Err = ();
    fn from_str(raw: &str) -> Result<Self, ()> {
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Switch(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Switch(false)),
            _ => Err(()),
        }
    }
}

impl DispatcherConfig {
    /// Defaults, overridden by whichever `DISPATCHER_*` variables are set.
    pub fn from_env() -> Result<Self, InvalidSetting> {
        let mut config = Self::default();
        if let Some(rate) = read("DISPATCHER_MERCHANT_RATE_LIMIT", "deliveries per second, at least 1")? {
            config.merchant_rate_limit = rate;
        }
        if let Some(instances) = read("DISPATCHER_INSTANCES", "a count, at least 1")? {
            config.instances = instances;
        }
        // The slow lane's instances run beside the main lane's and share the same limits.
        if let Some(slow) = read::<u32>("DISPATCHER_SLOW_LANE_INSTANCES", "a count")? {
            config.instances = config.instances.saturating_add(slow);
        }
        if let Some(cap) = read("DISPATCHER_MAX_IN_FLIGHT_PER_ENDPOINT", "a count")? {
            config.max_in_flight_per_endpoint = cap;
        }
        config.retry_schedule = schedule_from_env()?;
        config.max_attempts = config.retry_schedule.max_attempts();
        if let Some(attempts) = read::<u32>("DISPATCHER_MAX_ATTEMPTS", "a count, at least 1")? {
            config.max_attempts = attempts.clamp(1, config.max_attempts);
        }
        if let Some(hours) = read::<u32>("DISPATCHER_DISABLE_AFTER_HOURS", "hours")? {
            config.disable_after = chrono::Duration::hours(i64::from(hours));
        }
        // For test rigs only (the template does not set it): receivers on this machine.
        if let Some(allow) = read::<Switch>("ACP_ALLOW_LOOPBACK_WEBHOOKS", "1, true, yes, on, 0, false, no or off")? {
            config.client.policy.allow_loopback = allow.0;
        }
        Ok(config)
    }
}

/// `DISPATCHER_RETRY_SCHEDULE` (waits such as `5s,5m,30m`) and `DISPATCHER_RETRY_BACKOFF_FLOOR`
/// (a wait such as `60s`); the standard schedule where unset.
fn schedule_from_env() -> Result<RetrySchedule, InvalidSetting> {
    let mut schedule = match std::env::var("DISPATCHER_RETRY_SCHEDULE") {
        Ok(waits) => RetrySchedule::parse(&waits).map_err(|source| InvalidSetting::Schedule {
            name: "DISPATCHER_RETRY_SCHEDULE",
            source,
        })?,
        Err(_) => RetrySchedule::default(),
    };
    if let Ok(floor) = std::env::var("DISPATCHER_RETRY_BACKOFF_FLOOR") {
        schedule = retry_schedule::parse_wait(floor.trim())
            .and_then(|floor| schedule.with_backoff_floor(floor))
            .map_err(|source| InvalidSetting::Schedule {
                name: "DISPATCHER_RETRY_BACKOFF_FLOOR",
                source,
            })?;
    }
    Ok(schedule)
}
