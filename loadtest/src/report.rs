//! What a run measured: API latency per operation, the events the API accepted, and what the
//! sink received of them; and the summary all that becomes.

use crate::sink::Arrival;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Complete,
    Cancel,
}

const OPERATIONS: [Operation; 4] = [
    Operation::Create,
    Operation::Update,
    Operation::Complete,
    Operation::Cancel,
];

/// Microseconds, 1 µs to 60 s, 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Recorder {
    pub start: Instant,
    latencies: Mutex<BTreeMap<Operation, Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    flows: AtomicU64,
    /// Each accepted event, by (session, version): when its API call was sent.
    accepted: Mutex<HashMap<(String, u64), Instant>>,
}

impl Recorder {
    pub fn new() -> anyhow::Result<Self> {
        let mut latencies = BTreeMap::new();
        for op in OPERATIONS {
            latencies.insert(op, histogram()?);
        }
        Ok(Self {
            start: Instant::now(),
            latencies: Mutex::new(latencies),
            errors: Mutex::default(),
            flows: AtomicU64::new(0),
            accepted: Mutex::default(),
        })
    }

    pub fn latency(&self, op: Operation, took: Duration) {
        if let Some(h) = lock(&self.latencies).get_mut(&op) {
            h.saturating_record(micros(took));
        }
    }

    pub fn error(&self, op: Operation, what: String) {
        *lock(&self.errors).entry(format!("{op:?}: {what}")).or_default() += 1;
    }

    pub fn flow_done(&self) {
        self.flows.fetch_add(1, Ordering::Relaxed);
    }

    pub fn flows(&self) -> u64 {
        self.flows.load(Ordering::Relaxed)
    }

    pub fn accepted(&self, session: &str, version: u64, sent: Instant) {
        lock(&self.accepted).insert((session.to_owned(), version), sent);
    }

    pub fn accepted_count(&self) -> usize {
        lock(&self.accepted).len()
    }

    /// How many accepted events have arrived at the sink.
    pub fn delivered_count(&self, arrivals: &HashMap<(String, u64), Arrival>) -> usize {
        lock(&self.accepted)
            .keys()
            .filter(|k| arrivals.contains_key(*k))
            .count()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyStats {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// What the sink saw of the run's events.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WebhookStats {
    /// Events the API accepted (one per successful call).
    pub expected: u64,
    /// Of those, how many arrived with a valid signature.
    pub delivered: u64,
    pub lost: u64,
    /// Extra accepted deliveries of an event that had already arrived.
    pub duplicates: u64,
    pub invalid_signatures: u64,
    /// Requests the sink answered with an injected failure (each one retried).
    pub injected_failures: u64,
    pub sink_requests: u64,
    /// With a broken neighbour endpoint: the requests it was sent (held past the timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_endpoint_requests: Option<u64>,
    /// Events that arrived but whose API call did not succeed from here (e.g. timed out after
    /// committing): not lost, not counted as expected.
    pub unexpected: u64,
    /// From sending the API call to the webhook's arrival.
    pub latency: Option<LatencyStats>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Second {
    pub second: u64,
    /// Events accepted by the API (counted when their call was sent).
    pub events: u64,
    /// Events first arriving at the sink.
    pub webhooks: u64,
    /// The slowest API call → webhook of the events sent in this second: where a stall shows.
    pub slowest_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    /// Upper bound of the bucket, milliseconds.
    pub le_ms: f64,
    pub count: u64,
}

/// What the run was asked to do, kept beside its results so a figure can be reproduced.
#[derive(Clone, Debug, Serialize)]
pub struct Parameters {
    pub sessions: u64,
    pub concurrency: usize,
    /// API calls per second asked for (`None`: as fast as they go).
    pub rate: Option<f64>,
    pub duration_s: Option<f64>,
    pub cancel_every: u64,
    pub sink_fail_rate: f64,
    pub sink_slow_ms: u64,
    pub broken_endpoint_s: Option<f64>,
    pub patience_s: f64,
    /// How the loadtest itself was built: `release` or `debug`.
    pub build: &'static str,
    /// CPUs this process could use.
    pub cores: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub parameters: Parameters,
    pub flows_completed: u64,
    /// Time spent driving the API.
    pub elapsed_s: f64,
    /// From the first call to the last webhook (or the end of the wait).
    pub total_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    /// Accepted events per second while driving.
    pub events_per_s: f64,
    pub operations: BTreeMap<Operation, LatencyStats>,
    pub errors: BTreeMap<String, u64>,
    pub webhooks: WebhookStats,
    pub timeline: Vec<Second>,
    /// Event → webhook latency, for the histogram.
    pub latency_histogram: Vec<Bucket>,
}

/// Bucket upper bounds of the latency histogram, in milliseconds.
const BUCKETS_MS: [f64; 16] = [
    0.5,
    1.0,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    7.5,
    10.0,
    15.0,
    25.0,
    50.0,
    100.0,
    250.0,
    1000.0,
    f64::INFINITY,
];

pub struct SinkTotals {
    pub requests: u64,
    pub invalid_signatures: u64,
    pub injected_failures: u64,
    pub broken_requests: Option<u64>,
}

impl Report {
    pub fn build(
        target: &str,
        parameters: Parameters,
        recorder: &Recorder,
        drive: Duration,
        arrivals: &HashMap<(String, u64), Arrival>,
        sink: SinkTotals,
    ) -> anyhow::Result<Report> {
        let operations: BTreeMap<Operation, LatencyStats> = lock(&recorder.latencies)
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(op, h)| (*op, LatencyStats::of(h)))
            .collect();
        let requests: u64 = operations.values().map(|s| s.count).sum();
        let accepted = lock(&recorder.accepted);
        let per_s = |n: u64, d: Duration| if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() };

        let mut latency = histogram()?;
        let mut buckets = vec![0u64; BUCKETS_MS.len()];
        let mut timeline: BTreeMap<u64, (u64, u64, f64)> = BTreeMap::new();
        let second_of = |t: Instant| t.saturating_duration_since(recorder.start).as_secs();
        let mut last_arrival = recorder.start + drive;
        for (key, sent) in accepted.iter() {
            let second = timeline.entry(second_of(*sent)).or_default();
            second.0 += 1;
            if let Some(arrival) = arrivals.get(key) {
                let took = arrival.first.saturating_duration_since(*sent);
                latency.saturating_record(micros(took));
                let ms = took.as_secs_f64() * 1000.0;
                second.2 = second.2.max(ms);
                let bucket = BUCKETS_MS
                    .iter()
                    .position(|le| ms <= *le)
                    .unwrap_or(BUCKETS_MS.len() - 1);
                buckets[bucket] += 1;
            }
        }
        for arrival in arrivals.values() {
            timeline.entry(second_of(arrival.first)).or_default().1 += 1;
            last_arrival = last_arrival.max(arrival.first);
        }
        let delivered = accepted.keys().filter(|k| arrivals.contains_key(*k)).count() as u64;
        let webhooks = WebhookStats {
            expected: accepted.len() as u64,
            delivered,
            lost: accepted.len() as u64 - delivered,
            duplicates: arrivals.values().map(|a| u64::from(a.times.saturating_sub(1))).sum(),
            invalid_signatures: sink.invalid_signatures,
            injected_failures: sink.injected_failures,
            broken_endpoint_requests: sink.broken_requests,
            sink_requests: sink.requests,
            unexpected: arrivals.keys().filter(|k| !accepted.contains_key(*k)).count() as u64,
            latency: (!latency.is_empty()).then(|| LatencyStats::of(&latency)),
        };
        let last = timeline.keys().next_back().copied().unwrap_or(0);
        Ok(Report {
            target: target.to_owned(),
            parameters,
            flows_completed: recorder.flows(),
            elapsed_s: drive.as_secs_f64(),
            total_s: last_arrival.saturating_duration_since(recorder.start).as_secs_f64(),
            requests,
            requests_per_s: per_s(requests, drive),
            events_per_s: per_s(accepted.len() as u64, drive),
            operations,
            errors: lock(&recorder.errors).clone(),
            webhooks,
            timeline: (0..=last)
                .map(|second| {
                    let (events, webhooks, slowest_ms) = timeline.get(&second).copied().unwrap_or_default();
                    Second {
                        second,
                        events,
                        webhooks,
                        slowest_ms,
                    }
                })
                .collect(),
            latency_histogram: BUCKETS_MS
                .iter()
                .zip(buckets)
                .map(|(le_ms, count)| Bucket { le_ms: *le_ms, count })
                .collect(),
        })
    }

    /// Lost events or forged signatures: the run failed.
    pub fn failed(&self) -> bool {
        self.webhooks.lost > 0 || self.webhooks.invalid_signatures > 0
    }

    pub fn print(&self) {
        let asked = self
            .parameters
            .rate
            .map(|rate| format!(" (asked: {rate:.0}/s)"))
            .unwrap_or_default();
        println!(
            "{} flows, {} requests in {:.2} s: {:.0} requests/s, {:.0} events/s{asked}",
            self.flows_completed, self.requests, self.elapsed_s, self.requests_per_s, self.events_per_s
        );
        println!(
            "{:<10} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "operation", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        let row = |name: &str, s: &LatencyStats| {
            println!(
                "{:<10} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, s.count, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            );
        };
        for (op, s) in &self.operations {
            row(&format!("{op:?}").to_lowercase(), s);
        }
        if let Some(s) = &self.webhooks.latency {
            row("→ webhook", s);
        }
        let w = &self.webhooks;
        println!(
            "webhooks: {} expected, {} delivered, {} lost, {} duplicates, {} invalid signatures, \
             {} injected failures, {} sink requests",
            w.expected, w.delivered, w.lost, w.duplicates, w.invalid_signatures, w.injected_failures, w.sink_requests
        );
        if let Some(n) = w.broken_endpoint_requests {
            println!("broken neighbour endpoint: {n} requests held past the timeout");
        }
        for (what, count) in &self.errors {
            println!("error ×{count}: {what}");
        }
    }
}
