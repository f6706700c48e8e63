//! One buyer's checkout flow and the concurrent driver: `concurrency` buyers, each running
//! flows back to back, optionally paced to a total rate of API calls, for a number of flows or
//! a duration.

use crate::pacer::Pacer;
use crate::report::{Operation, Recorder};
use reqwest::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Base URL of the checkout API, without a trailing slash.
    pub target: String,
    pub api_key: String,
    /// How many checkout flows to run in all (unless `duration` ends the run first).
    pub sessions: u64,
    /// Flows running at once.
    pub concurrency: usize,
    /// Every n-th flow is cancelled instead of completed (0: none).
    pub cancel_every: u64,
    /// The catalog item to buy.
    pub item_id: String,
    /// API calls per second over all buyers (each call is one event); as fast as they go when
    /// absent.
    pub rate: Option<f64>,
    /// Start no flow after this long.
    pub duration: Option<Duration>,
}

struct Buyer {
    client: Client,
    config: Arc<FlowConfig>,
    recorder: Arc<Recorder>,
    pacer: Option<Arc<Pacer>>,
}

impl Buyer {
    /// One API call; on success, the event it made is expected at the sink as (session,
    /// `version`).
    async fn call(&self, op: Operation, path: &str, body: &Value, version: u64) -> Option<Value> {
        if let Some(pacer) = &self.pacer {
            pacer.ready().await;
        }
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}{}", self.config.target, path))
            .bearer_auth(&self.config.api_key)
            .header("Idempotency-Key", ulid::Ulid::new().to_string())
            .header("API-Version", "2026-04-17")
            .json(body)
            .send()
            .await;
        let session = match response {
            Ok(response) if response.status().is_success() => response.json::<Value>().await.ok(),
            Ok(response) => {
                self.recorder.error(op, format!("HTTP {}", response.status()));
                None
            }
            Err(err) => {
                self.recorder.error(op, err.to_string());
                None
            }
        }?;
        self.recorder.latency(op, started.elapsed());
        let id = session["id"].as_str()?;
        self.recorder.accepted(id, version, started);
        Some(session)
    }

    async fn checkout(&self, n: u64) -> Option<()> {
        let create = json!({"currency": "usd", "line_items": [{"id": self.config.item_id, "quantity": 1}]});
        let session = self.call(Operation::Create, "/checkout_sessions", &create, 1).await?;
        let id = session["id"].as_str()?.to_owned();
        let update = json!({
            "fulfillment_details": {"name": "Load Test", "email": "load@example.com", "address": {
                "name": "Load Test", "line_one": "1 Bench St", "city": "Springfield",
                "state": "IL", "country": "US", "postal_code": "62701"}},
            "selected_fulfillment_options": [{"type": "shipping", "option_id": first_option(&session)?, "item_ids": []}]
        });
        self.call(Operation::Update, &format!("/checkout_sessions/{id}"), &update, 2)
            .await?;
        if self.config.cancel_every > 0 && n.is_multiple_of(self.config.cancel_every) {
            let cancel = json!({"intent_trace": {"reason_code": "timing_deferred"}});
            self.call(
                Operation::Cancel,
                &format!("/checkout_sessions/{id}/cancel"),
                &cancel,
                3,
            )
            .await?;
        } else {
            let pay = json!({"payment_data": {"handler_id": "card_tokenized",
                "instrument": {"type": "card", "credential": {"type": "spt", "token": "spt_test_approve"}}}});
            self.call(
                Operation::Complete,
                &format!("/checkout_sessions/{id}/complete"),
                &pay,
                3,
            )
            .await?;
        }
        Some(())
    }
}

fn first_option(session: &Value) -> Option<String> {
    session["fulfillment_options"][0]["id"].as_str().map(str::to_owned)
}

/// Runs the flows into `recorder`; returns when the last one has finished.
pub async fn drive(client: &Client, config: FlowConfig, recorder: Arc<Recorder>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let pacer = config.rate.and_then(Pacer::new).map(Arc::new);
    let next = Arc::new(AtomicU64::new(0));
    let stop_at = config.duration.map(|d| Instant::now() + d);
    let mut workers = Vec::with_capacity(config.concurrency);
    for _ in 0..config.concurrency.max(1) {
        let buyer = Buyer {
            client: client.clone(),
            config: config.clone(),
            recorder: recorder.clone(),
            pacer: pacer.clone(),
        };
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= buyer.config.sessions || stop_at.is_some_and(|t| Instant::now() >= t) {
                    return;
                }
                if buyer.checkout(n).await.is_some() {
                    buyer.recorder.flow_done();
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}
