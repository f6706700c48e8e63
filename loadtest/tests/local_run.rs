//! A small run against the in-process stack: counts only, no timing assertions.

use loadtest::FlowConfig;
use local::Stack;
use local::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_completes_without_errors() {
    let stack = Stack::start(&Config::ephemeral("sk_load", tempfile::tempdir().unwrap().keep()))
        .await
        .unwrap();
    let report = loadtest::run(FlowConfig {
        target: stack.base_url(),
        api_key: stack.demo_api_key.clone(),
        sessions: 40,
        concurrency: 4,
        cancel_every: 4,
        item_id: "test_1".to_owned(),
    })
    .await
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.flows_completed, 40);
    let count = |op: &str| {
        let key: serde_json::Value = serde_json::to_value(&report.operations).unwrap();
        key[op]["count"].as_u64().unwrap_or(0)
    };
    assert_eq!(count("create"), 40);
    assert_eq!(count("update"), 40);
    assert_eq!(count("cancel"), 10);
    assert_eq!(count("complete"), 30);
    stack.shutdown().await.unwrap();
}
