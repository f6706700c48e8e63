//! Delivery metrics as CloudWatch Embedded Metric Format: the Lambda function prints one JSON
//! line per batch and CloudWatch turns it into metrics, with no API call and no agent.

use parking_lot::Mutex;
use serde_json::{Value, json};
use std::time::Duration;

/// EMF takes at most 100 values per metric in one line.
const MAX_VALUES: usize = 100;
pub const NAMESPACE: &str = "ACPCheckout/Webhooks";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeliveryCounts {
    pub succeeded: u32,
    pub failed: u32,
    pub deferred: u32,
    pub exhausted: u32,
    /// Request latency of each delivered attempt, in milliseconds.
    pub latency_ms: Vec<f64>,
    /// From the event's creation to its delivery, in milliseconds.
    pub lag_ms: Vec<f64>,
}

impl DeliveryCounts {
    pub fn is_empty(&self) -> bool {
        self.succeeded + self.failed + self.deferred + self.exhausted == 0
    }

    /// One EMF line for these counts, under the dimension `Environment`. Only metrics with a
    /// value are declared (a declared metric without one would make the line invalid).
    pub fn emf_line(&self, environment: &str, timestamp_ms: i64) -> String {
        let counts = [
            ("DeliveriesSucceeded", self.succeeded),
            ("DeliveriesFailed", self.failed),
            ("DeliveriesDeferred", self.deferred),
            ("DeliveriesExhausted", self.exhausted),
        ];
        let samples = [
            ("DeliveryLatency", &self.latency_ms),
            ("EventToDeliveryLag", &self.lag_ms),
        ];
        let mut line = json!({ "Environment": environment });
        let mut declared = Vec::new();
        for (name, count) in counts {
            line[name] = Value::from(count);
            declared.push(json!({ "Name": name, "Unit": "Count" }));
        }
        for (name, values) in samples.into_iter().filter(|(_, v)| !v.is_empty()) {
            line[name] = Value::from(values.clone());
            declared.push(json!({ "Name": name, "Unit": "Milliseconds" }));
        }
        line["_aws"] = json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Environment"]],
                "Metrics": declared,
            }],
        });
        line.to_string()
    }
}

/// Counts gathered across concurrent deliveries, taken once per batch.
#[derive(Default)]
pub struct Metrics {
    counts: Mutex<DeliveryCounts>,
}

impl Metrics {
    pub fn delivered(&self, latency: Duration, lag: Duration) {
        let mut counts = self.counts.lock();
        counts.succeeded += 1;
        // Samples beyond what one line can carry are not kept (nor does memory grow where no
        // one takes the counts).
        if counts.latency_ms.len() < MAX_VALUES {
            counts.latency_ms.push(latency.as_secs_f64() * 1000.0);
            counts.lag_ms.push(lag.as_secs_f64() * 1000.0);
        }
    }

    pub fn failed(&self) {
        self.counts.lock().failed += 1;
    }

    pub fn deferred(&self) {
        self.counts.lock().deferred += 1;
    }

    pub fn exhausted(&self) {
        self.counts.lock().exhausted += 1;
    }

    pub fn take(&self) -> DeliveryCounts {
        std::mem::take(&mut *self.counts.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_becomes_one_emf_line() {
        let metrics = Metrics::default();
        metrics.delivered(Duration::from_millis(12), Duration::from_millis(340));
        metrics.failed();
        metrics.deferred();
        metrics.exhausted();
        let counts = metrics.take();
        assert!(metrics.take().is_empty(), "taking resets");
        let line: Value = serde_json::from_str(&counts.emf_line("prod", 1_700_000_000_000)).unwrap();
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(line["Environment"], "prod");
        assert_eq!(line["DeliveriesSucceeded"], 1);
        assert_eq!(line["DeliveriesFailed"], 1);
        assert_eq!(line["DeliveriesDeferred"], 1);
        assert_eq!(line["DeliveriesExhausted"], 1);
        assert_eq!(line["DeliveryLatency"], json!([12.0]));
        assert_eq!(line["EventToDeliveryLag"], json!([340.0]));
        let declared: Vec<&str> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in declared {
            assert!(line.get(name).is_some(), "{name} has a value");
        }
    }

    #[test]
    fn metrics_without_values_are_left_out() {
        let counts = DeliveryCounts {
            failed: 2,
            ..DeliveryCounts::default()
        };
        let line: Value = serde_json::from_str(&counts.emf_line("dev", 0)).unwrap();
        assert!(line.get("DeliveryLatency").is_none());
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert!(declared.iter().all(|m| m["Name"] != "DeliveryLatency"));
        assert_eq!(line["DeliveriesFailed"], 2);
    }
}
