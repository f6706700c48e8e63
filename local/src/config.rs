//! `acp-local` configuration: flags, each with an environment variable (documented in the README).

use checkout::retry_schedule::{self, RetrySchedule};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// In-process, on disk under `--data-dir` (SQLite; every API write fsynced before it
    /// answers): a restart loses nothing. No AWS account, no emulator, no network.
    Embedded,
    /// In-process and in memory only: everything is gone when the process ends.
    Memory,
    /// DynamoDB through the AWS SDK (honours AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION…).
    Aws,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Parser)]
#[command(name = "acp-local", version, about = "ACP Checkout Manager in one process")]
pub struct Config {
    /// Address the checkout API listens on.
    #[arg(long, env = "ACP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// API key of the demo merchant; a random one is made (and printed) when unset.
    #[arg(long, env = "ACP_DEMO_API_KEY", hide_env_values = true)]
    pub demo_api_key: Option<String>,

    /// Where sessions, events and idempotency records are kept.
    #[arg(long, env = "ACP_BACKEND", value_enum, default_value = "embedded")]
    pub backend: BackendKind,

    /// With the embedded backend: the folder its database lives in (created if missing).
    #[arg(long, env = "ACP_DATA_DIR", default_value = "acp-data")]
    pub data_dir: PathBuf,

    /// With the AWS backend: the prefix of every table name (`{env}-acp-sessions`, …).
    #[arg(long, env = "ACP_ENVIRONMENT", default_value = "local")]
    pub environment: String,

    /// With the AWS backend: create the tables if they are missing (for moto or a fresh account).
    #[arg(long, env = "ACP_CREATE_RESOURCES")]
    pub create_resources: bool,

    /// Accept webhook URLs on this machine (http://127.0.0.1, http://localhost), for local
    /// receivers. Off by default; never available in the Lambda functions.
    #[arg(long, env = "ACP_ALLOW_LOOPBACK_WEBHOOKS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub allow_loopback_webhooks: bool,

    /// With the AWS backend: an AWS-compatible endpoint (moto) instead of AWS itself.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// With the AWS backend and no `--create-resources`: the checkout-events topic.
    #[arg(long, env = "ACP_TOPIC_ARN")]
    pub topic_arn: Option<String>,

    /// With the AWS backend and no `--create-resources`: the order-updates queue.
    #[arg(long, env = "ACP_QUEUE_URL")]
    pub queue_url: Option<String>,

    /// With the AWS backend and no `--create-resources`: the slow-deliveries queue (deliveries
    /// to failing endpoints).
    #[arg(long, env = "ACP_SLOW_QUEUE_URL")]
    pub slow_queue_url: Option<String>,

    /// With the AWS backend and no `--create-resources`: the order-updates dead-letter queue.
    #[arg(long, env = "ACP_DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,

    /// With the AWS backend and no `--create-resources`: the replay-steps queue.
    #[arg(long, env = "ACP_REPLAY_STEPS_QUEUE_URL")]
    pub replay_steps_queue_url: Option<String>,

    /// Concurrent receivers of the order-updates queue in the built-in webhook dispatcher; 0
    /// turns the dispatcher off (when another process, e.g. the Lambda function, delivers).
    #[arg(long, env = "ACP_DISPATCHER_POLLERS", default_value = "4")]
    pub dispatcher_pollers: usize,

    /// Replaces `DISPATCHER_MERCHANT_RATE_LIMIT` (the load test lifts the limit to measure the
    /// system rather than the limit).
    #[arg(skip)]
    pub merchant_rate_limit: Option<NonZeroU32>,

    /// The waits between delivery attempts, as in `5s,5m,30m` (default: the standard
    /// schedule, about three days in all). The load test's fault injection uses a short one.
    #[arg(long, env = "ACP_RETRY_SCHEDULE", value_parser = RetrySchedule::parse)]
    pub retry_schedule: Option<RetrySchedule>,
    /// The least wait after a 429 or a timeout, as in `60s` (the default) or `500ms`.
    #[arg(long, env = "ACP_RETRY_BACKOFF_FLOOR", value_parser = retry_schedule::parse_wait)]
    pub retry_backoff_floor: Option<Duration>,

    /// Threads that run the API, the projection and the dispatcher (default: one fewer than
    /// the machine's cores, at least one). The spare core is for the database's writer thread
    /// and for whatever else runs beside: on 2 cores, one thread took 15 % less CPU per event
    /// than two and delivered 5 % more events per second (README, configuration).
    #[arg(long, env = "ACP_WORKER_THREADS", value_parser = parse_worker_threads)]
    pub worker_threads: Option<NonZeroUsize>,

    /// Log lines as readable text or as JSON.
    #[arg(long, env = "ACP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// The most async worker threads `--worker-threads` takes: each is an OS thread with its own
/// stack, and more than the cores only adds switching.
const MAX_WORKER_THREADS: usize = 512;

fn parse_worker_threads(value: &str) -> Result<NonZeroUsize, String> {
    match value.trim().parse::<NonZeroUsize>() {
        Ok(n) if n.get() <= MAX_WORKER_THREADS => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {MAX_WORKER_THREADS}")),
    }
}

impl Config {
    /// Defaults for an in-process stack on a free port, storing under `data_dir` (tests,
    /// `loadtest --local`).
    pub fn ephemeral(demo_api_key: &str, data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            demo_api_key: Some(demo_api_key.to_owned()),
            backend: BackendKind::Embedded,
            data_dir,
            environment: "local".to_owned(),
            create_resources: false,
            allow_loopback_webhooks: true,
            aws_endpoint_url: None,
            topic_arn: None,
            queue_url: None,
            slow_queue_url: None,
            dead_letter_queue_url: None,
            replay_steps_queue_url: None,
            dispatcher_pollers: 4,
            merchant_rate_limit: None,
            retry_schedule: None,
            retry_backoff_floor: None,
            log_format: LogFormat::Text,
            worker_threads: None,
        }
    }

    /// The async worker threads to run: `--worker-threads`, or one fewer than the cores.
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.map_or_else(
            || {
                let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
                cores.saturating_sub(1).max(1)
            },
            NonZeroUsize::get,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_leave_a_core_spare_unless_set() {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let default = Config::try_parse_from(["acp-local"]).unwrap();
        assert_eq!(default.worker_threads(), (cores - 1).max(1));
        let set = Config::try_parse_from(["acp-local", "--worker-threads", "3"]).unwrap();
        assert_eq!(set.worker_threads(), 3);
        for bad in ["0", "-1", "abc", "513", "18446744073709551615", "1.5"] {
            let flag = format!("--worker-threads={bad}");
            let refused = Config::try_parse_from(["acp-local", flag.as_str()]).unwrap_err();
            assert_eq!(refused.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            assert!(refused.to_string().contains("from 1 to 512"), "{bad}: {refused}");
        }
        let most = Config::try_parse_from(["acp-local", "--worker-threads", "512"]).unwrap();
        assert_eq!(most.worker_threads(), 512);
    }
}
