//! `loadtest --target URL --api-key KEY [--sessions N] [--concurrency C] [--rate R] [--duration D]`
//! or `loadtest --local …`: drives checkout flows, receives and verifies the webhooks, and
//! writes `summary.json` and `report.html` to `--out`. Exits non-zero when an accepted event
//! was not delivered or a signature did not verify.

use anyhow::Context;
use checkout::retry_schedule::{self, RetrySchedule};
use clap::Parser;
use loadtest::{FlowConfig, RunConfig, SinkConfig, SinkFaults};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

// mimalloc: glibc malloc slows a busy async service down with frees across worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Run concurrent ACP checkout flows against an endpoint, receive and verify its webhooks, and time it all"
)]
struct Args {
    /// Base URL of the checkout API (for a deployment, its ApiEndpoint output).
    #[arg(
        long,
        env = "ACP_TARGET",
        required_unless_present = "local",
        conflicts_with = "local"
    )]
    target: Option<String>,
    /// A merchant API key on that endpoint.
    #[arg(long, env = "ACP_API_KEY", hide_env_values = true, required_unless_present = "local")]
    api_key: Option<String>,
    /// Start acp-local's whole stack in this process (durable embedded backend, free ports).
    #[arg(long)]
    local: bool,
    /// With --local: where its database goes (a temporary folder when absent).
    #[arg(long, requires = "local")]
    data_dir: Option<PathBuf>,
    /// Checkout flows to run (each makes three events).
    #[arg(long, default_value_t = 1000)]
    sessions: u64,
    /// Flows running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// API calls (= events) per second over all flows; as fast as possible when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop starting flows after this many seconds (then --sessions is only an upper bound).
    #[arg(long)]
    duration: Option<f64>,
    /// Cancel every n-th flow instead of completing it (0: never).
    #[arg(long, default_value_t = 5)]
    cancel_every: u64,
    /// Catalog item each flow buys.
    #[arg(long, default_value = "test_1")]
    item: String,
    /// Address the webhook sink listens on.
    #[arg(long, default_value = "127.0.0.1:0")]
    sink_listen: SocketAddr,
    /// URL to register for the sink when the target cannot reach --sink-listen directly.
    #[arg(long)]
    sink_url: Option<String>,
    /// Share of deliveries the sink fails (0–1), to see retries under load.
    #[arg(long, default_value_t = 0.0)]
    sink_fail_rate: f64,
    /// Statuses of the failed deliveries, used in turn (429 comes with Retry-After).
    #[arg(long, value_delimiter = ',', default_value = "500,503,429")]
    sink_fail_statuses: Vec<u16>,
    /// Retry-After seconds on a 429.
    #[arg(long, default_value_t = 1)]
    sink_retry_after: u64,
    /// Delay every sink answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    sink_slow_ms: u64,
    /// Also register a broken endpoint beside the sink's (same merchant) that holds every request
    /// this many seconds before failing — past the dispatcher's 15 s timeout by default — to
    /// see the healthy endpoint's latency beside a neighbour that times out.
    #[arg(long, num_args = 0..=1, default_missing_value = "20")]
    sink_broken_endpoint: Option<f64>,
    /// With --local: the dispatcher's waits between attempts, as in `50ms,3s,18s` (default: the
    /// standard schedule, 5 s, 5 min, 30 min…), so retries show in seconds, not minutes.
    #[arg(long, requires = "local", value_parser = RetrySchedule::parse)]
    local_retry_schedule: Option<RetrySchedule>,
    /// With --local: the least wait after a 429 or a timeout, as in `600ms` (default 60s).
    #[arg(long, requires = "local", value_parser = retry_schedule::parse_wait)]
    local_retry_backoff_floor: Option<Duration>,
    /// Seconds to keep waiting for webhooks while none arrive.
    #[arg(long, default_value_t = 30.0)]
    patience: f64,
    /// Folder for summary.json and report.html.
    #[arg(long, default_value = "loadtest-report")]
    out: PathBuf,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let local = if args.local {
        Some(start_local(&args).await?)
    } else {
        None
    };
    let (target, api_key) = match &local {
        Some((stack, _)) => (stack.base_url(), stack.demo_api_key.clone()),
        None => (
            args.target.clone().context("--target is required")?,
            args.api_key.clone().context("--api-key is required")?,
        ),
    };
    let config = RunConfig {
        flows: FlowConfig {
            target: target.trim_end_matches('/').to_owned(),
            api_key,
            sessions: args.sessions,
            concurrency: args.concurrency,
            cancel_every: args.cancel_every,
            item_id: args.item.clone(),
            rate: args.rate,
            duration: args.duration.map(Duration::from_secs_f64),
        },
        sink: SinkConfig {
            listen: args.sink_listen,
            public_url: args.sink_url.clone(),
            faults: SinkFaults {
                fail_rate: args.sink_fail_rate.clamp(0.0, 1.0),
                fail_statuses: args.sink_fail_statuses.clone(),
                retry_after_s: args.sink_retry_after,
                slow: Duration::from_millis(args.sink_slow_ms),
            },
            broken_endpoint: args.sink_broken_endpoint.map(Duration::from_secs_f64),
        },
        patience: Duration::from_secs_f64(args.patience),
        progress: !args.quiet,
    };
    let report = loadtest::run(config).await?;
    if let Some((stack, _data_dir)) = local {
        stack.shutdown().await?;
    }
    report.print();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let summary = args.out.join("summary.json");
    std::fs::write(&summary, serde_json::to_vec_pretty(&report)?)?;
    let html = args.out.join("report.html");
    std::fs::write(&html, loadtest::html::render(&report))?;
    println!("report: {} and {}", summary.display(), html.display());
    if report.failed() {
        anyhow::bail!(
            "{} events lost, {} invalid signatures",
            report.webhooks.lost,
            report.webhooks.invalid_signatures
        );
    }
    Ok(())
}

/// acp-local's stack on a free port, durable, in `--data-dir` or a temporary folder (kept
/// alive by the returned handle). The per-merchant delivery limit is lifted: the run measures
/// the system, not the limit.
async fn start_local(args: &Args) -> anyhow::Result<(local::Stack, Option<tempfile::TempDir>)> {
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::tempdir().context("making a temporary data folder")?;
            (dir.path().to_owned(), Some(dir))
        }
    };
    let mut config = local::config::Config::ephemeral("sk_loadtest_local", data_dir);
    config.merchant_rate_limit = Some(std::num::NonZeroU32::MAX);
    config.retry_schedule = args.local_retry_schedule.clone();
    config.retry_backoff_floor = args.local_retry_backoff_floor;
    let stack = local::Stack::start(&config).await?;
    Ok((stack, temporary))
}
