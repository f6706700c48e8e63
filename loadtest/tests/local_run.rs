//! A small run against the in-process stack, with and without a misbehaving sink: counts only,
//! no timing assertions.

use checkout::retry_schedule::RetrySchedule;
use loadtest::{FlowConfig, RunConfig, SinkConfig, SinkFaults};
use local::Stack;
use local::config::Config;
use std::time::Duration;

async fn run_against_local(faults: SinkFaults) -> loadtest::Report {
    run_with(faults, None).await
}

async fn run_with(faults: SinkFaults, broken_endpoint: Option<Duration>) -> loadtest::Report {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral("sk_load", dir.path().to_owned());
    config.merchant_rate_limit = Some(std::num::NonZeroU32::MAX);
    // Retries in milliseconds instead of seconds and minutes.
    config.retry_schedule = Some(RetrySchedule::parse("5ms,50ms,300ms,1s,2s,5s,10s,14s,20s").unwrap());
    config.retry_backoff_floor = Some(Duration::from_millis(60));
    let stack = Stack::start(&config).await.unwrap();
    let report = loadtest::run(RunConfig {
        flows: FlowConfig {
            target: stack.base_url(),
            api_key: stack.demo_api_key.clone(),
            sessions: 40,
            concurrency: 4,
            cancel_every: 4,
            item_id: "test_1".to_owned(),
            rate: None,
            duration: None,
        },
        sink: SinkConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            faults,
            broken_endpoint,
        },
        patience: Duration::from_secs(30),
        progress: false,
    })
    .await
    .unwrap();
    stack.shutdown().await.unwrap();
    report
}

fn count(report: &loadtest::Report, op: &str) -> u64 {
    let operations = serde_json::to_value(&report.operations).unwrap();
    operations[op]["count"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_completes_and_every_event_arrives_signed() {
    let report = run_against_local(SinkFaults::default()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.flows_completed, 40);
    assert_eq!(count(&report, "create"), 40);
    assert_eq!(count(&report, "update"), 40);
    assert_eq!(count(&report, "cancel"), 10);
    assert_eq!(count(&report, "complete"), 30);
    let summary = serde_json::to_value(&report).unwrap();
    assert_eq!(
        summary["parameters"]["concurrency"], 4,
        "the run's parameters are kept with it"
    );
    assert_eq!(summary["parameters"]["sessions"], 40);
    let webhooks = &report.webhooks;
    assert_eq!(webhooks.expected, 120, "three events per flow");
    assert_eq!(webhooks.delivered, 120);
    assert_eq!(webhooks.lost, 0);
    assert_eq!(webhooks.invalid_signatures, 0);
    assert!(!report.failed());
    let html = loadtest::html::render(&report);
    assert!(html.contains("<svg") && html.contains("Every accepted event was delivered"));
    let timeline_events: u64 = report.timeline.iter().map(|s| s.events).sum();
    assert_eq!(timeline_events, 120);
    let histogram: u64 = report.latency_histogram.iter().map(|b| b.count).sum();
    assert_eq!(histogram, 120, "every delivered event is in the latency histogram");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_throttling_sink_answers_are_retried_until_everything_arrives() {
    let report = run_against_local(SinkFaults {
        fail_rate: 0.2,
        fail_statuses: vec![500, 429],
        retry_after_s: 1,
        slow: Duration::from_millis(2),
    })
    .await;
    let webhooks = &report.webhooks;
    assert!(webhooks.injected_failures > 0);
    assert_eq!(
        webhooks.sink_requests,
        webhooks.delivered + webhooks.unexpected + webhooks.duplicates + webhooks.injected_failures,
        "every failed answer was followed by a retry"
    );
    assert_eq!(webhooks.delivered, webhooks.expected);
    assert_eq!(webhooks.lost, 0);
}

/// A neighbour endpoint that holds every request: the healthy endpoint still gets every event,
/// and the broken one was tried (counts only; the latency comparison is in the README).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_neighbour_endpoint_costs_the_healthy_one_nothing() {
    let report = run_with(SinkFaults::default(), Some(Duration::from_secs(2))).await;
    let webhooks = &report.webhooks;
    assert_eq!(webhooks.expected, 120);
    assert_eq!(webhooks.delivered, 120);
    assert_eq!(webhooks.lost, 0);
    assert!(webhooks.broken_endpoint_requests.is_some_and(|n| n > 0), "{webhooks:?}");
}
