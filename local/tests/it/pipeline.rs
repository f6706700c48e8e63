//! The local stack end to end: an API call becomes an event on the order-updates queue, and a
//! signed webhook at the merchant's endpoint.

use checkout::event::{Event, EventType};
use local::Stack;
use local::config::{BackendKind, Config};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn created_session_reaches_the_queue(mut config: Config) {
    // The built-in dispatcher would take the message off the queue before the test sees it.
    config.dispatcher_pollers = 0;
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
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stack_delivers_events_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    created_session_reaches_the_queue(Config::ephemeral("sk_pipeline", dir.path().to_owned())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_stack_on_moto_delivers_events_to_the_queue() {
    created_session_reaches_the_queue(on_moto("sk_pipeline_aws")).await;
}

type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

async fn created_session_reaches_the_merchants_endpoint(config: Config) {
    let stack = Stack::start(&config).await.unwrap();
    let client = reqwest::Client::new();
    let (url, seen) = receiver().await;
    let endpoint = register(&client, &stack, &url).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let session = create_session(&client, &stack, "pipeline-webhook").await;
    let started = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "no webhook arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, body) = seen.lock().unwrap()[0].clone();
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let verdict = checkout::signature::verify(
        &secret,
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &body,
        checkout::clock::now().timestamp(),
    );
    assert_eq!(verdict, Ok(()));
    let event: Event = serde_json::from_slice(&body).unwrap();
    assert_eq!(event.session_id.as_str(), session["id"].as_str().unwrap());
    assert_eq!(header("webhook-id"), event.id.as_str());
    stack.shutdown().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stack_delivers_signed_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    created_session_reaches_the_merchants_endpoint(Config::ephemeral("sk_webhook", dir.path().to_owned())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_stack_delivers_signed_webhooks() {
    let mut config = Config::ephemeral("sk_webhook_memory", std::env::temp_dir());
    config.backend = BackendKind::Memory;
    created_session_reaches_the_merchants_endpoint(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_stack_on_moto_delivers_signed_webhooks() {
    created_session_reaches_the_merchants_endpoint(on_moto("sk_webhook_aws")).await;
}

/// A test event through the local stack: queued by the API, sent by the dispatcher signed like
/// any other, and in the endpoint's attempt log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_reaches_the_endpoint_signed_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&Config::ephemeral("sk_test_event", dir.path().to_owned()))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let (url, seen) = receiver().await;
    let endpoint = register(&client, &stack, &url).await;
    let id = endpoint["id"].as_str().unwrap();
    let response = client
        .post(format!("{}/webhook_endpoints/{id}/test", stack.base_url()))
        .bearer_auth(&stack.demo_api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let queued: serde_json::Value = response.json().await.unwrap();
    let started = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the test event did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, body) = seen.lock().unwrap()[0].clone();
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("webhook-id"), queued["event_id"].as_str().unwrap());
    let verdict = checkout::signature::verify(
        endpoint["secret"].as_str().unwrap(),
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &body,
        checkout::clock::now().timestamp(),
    );
    assert_eq!(verdict, Ok(()));
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["type"], "webhook.test");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log: serde_json::Value = client
            .get(format!("{}/webhook_endpoints/{id}/attempts", stack.base_url()))
            .bearer_auth(&stack.demo_api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(first) = log["data"].as_array().and_then(|d| d.first()) {
            assert_eq!(
                (&first["type"], &first["status"]),
                (&json!("webhook.test"), &json!("succeeded"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "the attempt was not logged: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.shutdown().await.unwrap();
}

/// Pause and resume through the local stack: while paused the endpoint receives nothing and
/// each event is logged as held; after the resume every held event arrives once (queued in
/// event order, sent like any delivery), and the next event goes out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_endpoint_gets_its_events_once_after_the_resume() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&Config::ephemeral("sk_pause", dir.path().to_owned()))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", stack.base_url());
    let (url, seen) = receiver().await;
    let endpoint = register(&client, &stack, &url).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let post = |path: String| {
        client
            .post(api(&path))
            .bearer_auth(&stack.demo_api_key)
            .json(&json!({}))
            .send()
    };
    let paused: serde_json::Value = post(format!("/webhook_endpoints/{id}/pause"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paused["state"], "paused");
    let mut sessions = Vec::new();
    for i in 0..6 {
        let session = create_session(&client, &stack, format!("paused-{i}")).await;
        sessions.push(session["id"].as_str().unwrap().to_owned());
    }
    // Every event held, none sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let log: serde_json::Value = client
            .get(api(&format!("/webhook_endpoints/{id}/attempts?limit=100")))
            .bearer_auth(&stack.demo_api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = log["data"].as_array().unwrap().clone();
        if records.len() == sessions.len() {
            break records;
        }
        assert!(Instant::now() < deadline, "the holds were not logged: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(held.iter().all(|r| r["status"] == "paused"), "{held:?}");
    assert!(seen.lock().unwrap().is_empty(), "nothing sent while paused");

    let resumed: serde_json::Value = post(format!("/webhook_endpoints/{id}/resume"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (resumed["state"].as_str(), resumed["resume"]["kind"].as_str()),
        (Some("enabled"), Some("resume"))
    );
    let started = Instant::now();
    while seen.lock().unwrap().len() < sessions.len() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the held events did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, _)| headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    let mut in_event_order: Vec<String> = held
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    in_event_order.sort();
    let mut sorted = arrived;
    sorted.sort();
    assert_eq!(sorted, in_event_order, "each held event once");
    create_session(&client, &stack, "after-resume").await;
    while seen.lock().unwrap().len() < sessions.len() + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the next event did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.shutdown().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), sessions.len() + 1, "nothing twice");
}

/// A webhook endpoint of the demo merchant at `url`, as the API answered its registration.
async fn register(client: &reqwest::Client, stack: &Stack, url: &str) -> serde_json::Value {
    client
        .post(format!("{}/webhook_endpoints", stack.base_url()))
        .bearer_auth(&stack.demo_api_key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A checkout session of one test item, created with the idempotency key given.
async fn create_session(client: &reqwest::Client, stack: &Stack, key: impl AsRef<str>) -> serde_json::Value {
    client
        .post(format!("{}/checkout_sessions", stack.base_url()))
        .bearer_auth(&stack.demo_api_key)
        .header("Idempotency-Key", key.as_ref())
        .json(&json!({"currency": "usd", "line_items": [{"id": "test_1"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The AWS backend on moto, with fresh resources.
fn on_moto(demo_api_key: &str) -> Config {
    let mut config = Config::ephemeral(demo_api_key, std::env::temp_dir());
    config.backend = BackendKind::Aws;
    config.create_resources = true;
    config.environment = format!("t{}", ulid::Ulid::new()).to_lowercase();
    config.aws_endpoint_url = Some(aws_backend::testkit::endpoint());
    config
}
