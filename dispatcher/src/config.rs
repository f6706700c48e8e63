//! The dispatcher's settings, read once from the environment (see the README's configuration
//! table).

use crate::client::ClientSettings;
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
    /// Attempts before a delivery is exhausted (`DISPATCHER_MAX_ATTEMPTS`, at most 10).
    pub max_attempts: u32,
    /// An endpoint failing without a success this long is disabled (`DISPATCHER_DISABLE_AFTER_HOURS`).
    pub disable_after: chrono::Duration,
    /// Waits on the retry schedule are multiplied by this; 1 in production. Tests shrink the
    /// schedule with it instead of waiting minutes.
    pub time_scale: f64,
    pub client: ClientSettings,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            merchant_rate_limit: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
            instances: NonZeroU32::MIN,
            max_in_flight_per_endpoint: 64,
            max_attempts: checkout::retry_schedule::MAX_ATTEMPTS,
            disable_after: checkout::webhook_endpoint::FAILING_DISABLE_AFTER,
            time_scale: 1.0,
            client: ClientSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is not valid: {expected}")]
pub struct InvalidSetting {
    name: &'static str,
    value: String,
    expected: &'static str,
}

fn read<T: std::str::FromStr>(name: &'static str, expected: &'static str) -> Result<Option<T>, InvalidSetting> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| InvalidSetting { name, value, expected }),
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
        if let Some(attempts) = read::<u32>("DISPATCHER_MAX_ATTEMPTS", "1 to 10")? {
            config.max_attempts = attempts.clamp(1, checkout::retry_schedule::MAX_ATTEMPTS);
        }
        if let Some(hours) = read::<u32>("DISPATCHER_DISABLE_AFTER_HOURS", "hours")? {
            config.disable_after = chrono::Duration::hours(i64::from(hours));
        }
        // For test rigs only (the template sets neither): retries in seconds instead of
        // minutes, and receivers on this machine.
        if let Some(scale) = read::<f64>("DISPATCHER_RETRY_TIME_SCALE", "a factor between 0.0001 and 1")? {
            config.time_scale = scale.clamp(0.0001, 1.0);
        }
        if let Some(allow) = read::<Switch>("ACP_ALLOW_LOOPBACK_WEBHOOKS", "1, true, yes, on, 0, false, no or off")? {
            config.client.policy.allow_loopback = allow.0;
        }
        Ok(config)
    }
}
