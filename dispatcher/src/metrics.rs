//! Delivery metrics as CloudWatch Embedded Metric Format: the Lambda function prints one JSON
//! line per batch and CloudWatch turns it into metrics, with no API call and no agent.

use checkout::ids::MerchantId;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::BTreeMap;
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
    /// Failed and exhausted deliveries per merchant. Only failures get a merchant dimension:
    /// they are what an operator looks for by merchant, and each merchant that appears costs a
    /// custom metric, so healthy merchants should not.
    pub failing: BTreeMap<MerchantId, MerchantFailures>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MerchantFailures {
    pub failed: u32,
    pub exhausted: u32,
}

impl DeliveryCounts {
    pub fn is_empty(&self) -> bool {
        self.succeeded + self.failed + self.deferred + self.exhausted == 0
    }

    /// The EMF lines for these counts: one under the dimension `Environment`, then one per
    /// merchant with failures under (`Environment`, `MerchantId`).
    pub fn emf_lines(&self, environment: &str, timestamp_ms: i64) -> Vec<String> {
        let mut lines = vec![self.emf_line(environment, timestamp_ms)];
        for (merchant, failures) in &self.failing {
            let mut line = json!({
                "Environment": environment,
                "MerchantId": merchant.as_str(),
                "DeliveriesFailed": failures.failed,
                "DeliveriesExhausted": failures.exhausted,
            });
            line["_aws"] = json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Environment", "MerchantId"]],
                    "Metrics": [
                        { "Name": "DeliveriesFailed", "Unit": "Count" },
                        { "Name": "DeliveriesExhausted", "Unit": "Count" },
                    ],
                }],
            });
            lines.push(line.to_string());
        }
        lines
    }

    /// One EMF line for these counts, under the dimension `Environment`. Only metrics with a
    /// value are declared (a declared metric without one would make the line invalid).
    fn emf_line(&self, environment: &str, timestamp_ms: i64) -> String {
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

    pub fn failed(&self, merchant: &MerchantId) {
        let mut counts = self.counts.lock();
        counts.failed += 1;
        counts.failing.entry(merchant.clone()).or_default().failed += 1;
    }

    pub fn deferred(&self) {
        self.counts.lock().deferred += 1;
    }

    pub fn exhausted(&self, merchant: &MerchantId) {
        let mut counts = self.counts.lock();
        counts.exhausted += 1;
        counts.failing.entry(merchant.clone()).or_default().exhausted += 1;
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
        let merchant = MerchantId::parse("mer_a").unwrap();
        metrics.failed(&merchant);
        metrics.deferred();
        metrics.exhausted(&merchant);
        let counts = metrics.take();
        assert!(metrics.take().is_empty(), "taking resets");
        let lines = counts.emf_lines("prod", 1_700_000_000_000);
        assert_eq!(lines.len(), 2, "the batch line and one for the failing merchant");
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
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
        let per_merchant: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(per_merchant["MerchantId"], "mer_a");
        assert_eq!(per_merchant["DeliveriesFailed"], 1);
        assert_eq!(per_merchant["DeliveriesExhausted"], 1);
        assert_eq!(
            per_merchant["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Environment", "MerchantId"]])
        );
    }

    #[test]
    fn healthy_merchants_get_no_line_of_their_own() {
        let metrics = Metrics::default();
        metrics.delivered(Duration::from_millis(5), Duration::from_millis(9));
        metrics.deferred();
        assert_eq!(metrics.take().emf_lines("prod", 0).len(), 1);
    }

    #[test]
    fn metrics_without_values_are_left_out() {
        let counts = DeliveryCounts {
            failed: 2,
            ..DeliveryCounts::default()
        };
        let line: Value = serde_json::from_str(&counts.emf_lines("dev", 0)[0]).unwrap();
        assert!(line.get("DeliveryLatency").is_none());
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert!(declared.iter().all(|m| m["Name"] != "DeliveryLatency"));
        assert_eq!(line["DeliveriesFailed"], 2);
    }
}
