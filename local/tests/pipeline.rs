//! The local stack end to end: an API call becomes an event on the order-updates queue.

use checkout::event::{Event, EventType};
use local::Stack;
use local::config::{BackendKind, Config};
use serde_json::json;
use std::time::{Duration, Instant};

async fn created_session_reaches_the_queue(config: Config) {
    let stack = Stack::start(&config).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/checkout_sessions", stack.base_url()))
        .bearer_auth(&stack.demo_api_key)
        .header("Idempotency-Key", "pipeline-1")
        .json(&json!({"currency": "usd", "line_items": [{"id": "test_1"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: serde_json::Value = response.json().await.unwrap();
    let sent = Instant::now();

    let mut messages = Vec::new();
    while messages.is_empty() && sent.elapsed() < Duration::from_secs(10) {
        messages = stack.queue.receive(10, Duration::from_secs(1)).await.unwrap();
    }
    println!("event on the queue {:?} after the API answered", sent.elapsed());
    assert_eq!(messages.len(), 1, "one message per event");
    let event: Event = serde_json::from_str(&messages[0].body).expect("the body is the event envelope");
    assert_eq!(event.kind, EventType::Created);
    assert_eq!(event.session_id.as_str(), session["id"].as_str().unwrap());
    assert_eq!((event.version, event.api_version.as_str()), (1, "2026-04-17"));
    assert_eq!(event.merchant_id.as_str(), local::DEMO_MERCHANT_ID);
    assert!(event.id.as_str().starts_with("evt_"));
    assert_eq!(
        serde_json::to_value(&event.data).unwrap(),
        session,
        "data is the session as the API returned it"
    );
    let attribute = |name: &str| {
        messages[0]
            .attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(attribute("event_type"), Some("checkout.session.created"));
    assert_eq!(attribute("merchant_id"), Some(local::DEMO_MERCHANT_ID));
    let view = stack
        .backend
        .views
        .view(&event.session_id)
        .await
        .unwrap()
        .expect("read model updated");
    assert_eq!(view.version, 1);
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stack_delivers_events_to_the_queue() {
    created_session_reaches_the_queue(Config::ephemeral("sk_pipeline")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_stack_on_moto_delivers_events_to_the_queue() {
    let mut config = Config::ephemeral("sk_pipeline_aws");
    config.backend = BackendKind::Aws;
    config.create_resources = true;
    config.environment = format!("t{}", ulid::Ulid::new()).to_lowercase();
    config.aws_endpoint_url = Some(aws_backend::testkit::endpoint());
    created_session_reaches_the_queue(config).await;
}
