//! Latency histograms per API operation, and the summary they become.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

pub struct Recorder {
    /// Microseconds, 1 µs to 60 s, 3 significant digits.
    latencies: Mutex<BTreeMap<Operation, Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    flows: AtomicU64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OperationStats {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub flows_completed: u64,
    pub elapsed_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub operations: BTreeMap<Operation, OperationStats>,
    pub errors: BTreeMap<String, u64>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Recorder {
    pub fn new() -> anyhow::Result<Self> {
        let mut latencies = BTreeMap::new();
        for op in OPERATIONS {
            latencies.insert(op, Histogram::new_with_bounds(1, 60_000_000, 3)?);
        }
        Ok(Self {
            latencies: Mutex::new(latencies),
            errors: Mutex::new(BTreeMap::new()),
            flows: AtomicU64::new(0),
        })
    }

    pub fn latency(&self, op: Operation, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        if let Some(h) = self.latencies.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&op) {
            h.saturating_record(micros);
        }
    }

    pub fn error(&self, op: Operation, what: String) {
        let key = format!("{op:?}: {what}");
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    pub fn flow_done(&self) {
        self.flows.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report(&self, elapsed: Duration) -> Report {
        let latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        let operations: BTreeMap<Operation, OperationStats> = latencies
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(op, h)| {
                let stats = OperationStats {
                    count: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.50)),
                    p95_ms: ms(h.value_at_quantile(0.95)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                };
                (*op, stats)
            })
            .collect();
        let requests: u64 = operations.values().map(|s| s.count).sum();
        let elapsed_s = elapsed.as_secs_f64();
        Report {
            flows_completed: self.flows.load(Ordering::Relaxed),
            elapsed_s,
            requests,
            requests_per_s: if elapsed_s > 0.0 {
                requests as f64 / elapsed_s
            } else {
                0.0
            },
            operations,
            errors: self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

impl Report {
    pub fn print(&self) {
        println!(
            "{} flows, {} requests in {:.2} s: {:.0} requests/s",
            self.flows_completed, self.requests, self.elapsed_s, self.requests_per_s
        );
        println!(
            "{:<10} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "operation", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for (op, s) in &self.operations {
            println!(
                "{:<10} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                format!("{op:?}").to_lowercase(),
                s.count,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.max_ms
            );
        }
        for (what, count) in &self.errors {
            println!("error ×{count}: {what}");
        }
    }
}
