//! The load test: many concurrent buyers run whole checkout flows (create → update → complete,
//! a share cancelled instead) against an ACP endpoint, a webhook sink of its own receives and
//! verifies the events, and every step is timed.

mod flow;
pub mod html;
mod pacer;
mod progress;
mod report;
mod sink;

pub use flow::FlowConfig;
pub use report::{LatencyStats, Parameters, Report, WebhookStats};
pub use sink::SinkFaults;

use anyhow::Context;
use report::{Recorder, SinkTotals};
use reqwest::Client;
use serde_json::{Value, json};
use sink::Sink;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Where the sink listens.
    pub listen: SocketAddr,
    /// The URL the target should deliver to, when it is not `http://{listen}` (a remote target
    /// reaching the sink through a tunnel or a public address).
    pub public_url: Option<String>,
    pub faults: SinkFaults,
    /// Also register a second endpoint of the same merchant at the sink's broken path, whose
    /// requests are held this long (past the dispatcher's timeout) before failing: what the
    /// healthy endpoint's latency looks like beside a neighbour that times out.
    pub broken_endpoint: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub flows: FlowConfig,
    pub sink: SinkConfig,
    /// After the last call, how long to wait for deliveries without any arriving.
    pub patience: Duration,
    pub progress: bool,
}

/// Registers the sink with the target, runs the flows, waits for the webhooks, reports.
pub async fn run(config: RunConfig) -> anyhow::Result<Report> {
    let flows = config.flows.clone();
    let client = Client::builder()
        .pool_max_idle_per_host(flows.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let broken_hold = config.sink.broken_endpoint.unwrap_or_default();
    let sink = Sink::start(config.sink.listen, config.sink.faults.clone(), broken_hold)
        .await
        .context("starting the webhook sink")?;
    let base = config
        .sink
        .public_url
        .clone()
        .map(|url| url.trim_end_matches("/webhooks").to_owned())
        .unwrap_or_else(|| format!("http://{}", sink.addr));
    let (endpoint_id, secret) = register(&client, &flows, &format!("{base}/webhooks")).await?;
    let _ = sink.state.secret.set(secret);
    let broken = match config.sink.broken_endpoint {
        Some(_) => Some(
            register(&client, &flows, &format!("{base}{}", sink::BROKEN_PATH))
                .await?
                .0,
        ),
        None => None,
    };

    let recorder = Arc::new(Recorder::new()?);
    let progress = config
        .progress
        .then(|| progress::start(recorder.clone(), sink.state.clone(), flows.sessions, flows.duration));
    let driven = flow::drive(&client, flows.clone(), recorder.clone()).await;
    let drive = recorder.start.elapsed();
    wait_for_deliveries(&recorder, &sink, config.patience).await;
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    unregister(&client, &flows, &endpoint_id).await;
    if let Some(broken) = &broken {
        unregister(&client, &flows, broken).await;
    }
    driven?;

    let arrivals = sink.state.arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let counters = &sink.state.counters;
    let totals = SinkTotals {
        requests: counters.requests.load(Ordering::Relaxed),
        invalid_signatures: counters.invalid_signatures.load(Ordering::Relaxed),
        injected_failures: counters.injected_failures.load(Ordering::Relaxed),
        broken_requests: broken.map(|_| counters.broken.load(Ordering::Relaxed)),
    };
    Report::build(&flows.target, parameters(&config), &recorder, drive, &arrivals, totals)
}

fn parameters(config: &RunConfig) -> Parameters {
    let (flows, sink) = (&config.flows, &config.sink);
    Parameters {
        sessions: flows.sessions,
        concurrency: flows.concurrency,
        rate: flows.rate,
        duration_s: flows.duration.map(|d| d.as_secs_f64()),
        cancel_every: flows.cancel_every,
        sink_fail_rate: sink.faults.fail_rate,
        sink_slow_ms: u64::try_from(sink.faults.slow.as_millis()).unwrap_or(u64::MAX),
        broken_endpoint_s: sink.broken_endpoint.map(|d| d.as_secs_f64()),
        patience_s: config.patience.as_secs_f64(),
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    }
}

/// Creates the webhook endpoint for the sink; returns its id and signing secret.
async fn register(client: &Client, flows: &FlowConfig, url: &str) -> anyhow::Result<(String, String)> {
    let response = client
        .post(format!("{}/webhook_endpoints", flows.target))
        .bearer_auth(&flows.api_key)
        .json(&json!({ "url": url, "description": "loadtest sink" }))
        .send()
        .await
        .context("registering the webhook sink")?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("registering the webhook sink {url}: HTTP {status}: {body}");
    }
    let field = |name: &str| body[name].as_str().map(str::to_owned);
    Ok((
        field("id").context("no endpoint id")?,
        field("secret").context("no signing secret")?,
    ))
}

/// Best effort: a leftover endpoint would only see failed deliveries.
async fn unregister(client: &Client, flows: &FlowConfig, endpoint_id: &str) {
    let _ = client
        .delete(format!("{}/webhook_endpoints/{endpoint_id}", flows.target))
        .bearer_auth(&flows.api_key)
        .send()
        .await;
}

/// Until every accepted event has arrived, or none has arrived for `patience`.
async fn wait_for_deliveries(recorder: &Recorder, sink: &Sink, patience: Duration) {
    let mut last = (sink.delivered(), Instant::now());
    loop {
        let now = sink.delivered();
        // The exact check (are the arrivals the accepted events?) only once the counts allow it.
        if now >= recorder.accepted_count() {
            let arrivals = sink.state.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            if recorder.delivered_count(&arrivals) >= recorder.accepted_count() {
                return;
            }
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= patience {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
