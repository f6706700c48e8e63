//! The deployment as AWS runs it: the real bootstraps behind the Lambda runtime API, the checkout
//! API through an API Gateway HTTP API front on the template's stage, the projector on the
//! sessions stream and the dispatcher on its queues, all configured from `infra/template.yaml`,
//! on moto. A checkout, its webhooks, a retry, a dead letter and its redrive, and the operator's
//! end-to-end script.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lambda_harness::{Deployment, Options};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const API_KEY: &str = "sk_harness_0123456789abcdef0123456789abcdef";
const PATIENCE: Duration = Duration::from_secs(60);

/// A webhook receiver: records each delivery, answers with the statuses it was given (then 200).
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    /// The exact bytes of each delivery, for its signature.
    raw: Arc<Mutex<Vec<Bytes>>>,
    answers: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Receiver, String) {
        let receiver = Receiver::default();
        *receiver.answers.lock().unwrap() = answers.iter().rev().copied().collect();
        let app = axum::Router::new().fallback(receive).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn seen(&self) -> Vec<(HeaderMap, Value)> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[(HeaderMap, Value)]) -> bool) -> Vec<(HeaderMap, Value)> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let seen = self.seen();
            if done(&seen) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}; got {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    receiver.seen.lock().unwrap().push((headers, value));
    receiver.raw.lock().unwrap().push(body);
    let status = receiver.answers.lock().unwrap().pop().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// The deployment with one merchant, as `acp-admin merchant create` makes it.
async fn deployed(options: Options) -> Deployment {
    let deployment = Deployment::start(options).await;
    let backend = aws_backend::DynamoStore::new(
        aws_backend::local_dynamodb_client(&aws_backend::testkit::endpoint()),
        deployment.tables.clone(),
    );
    let merchant = checkout::merchant::Merchant::demo(checkout::ids::MerchantId::generate(), API_KEY);
    checkout::ports::MerchantStore::put_merchant(&backend, &merchant)
        .await
        .unwrap();
    deployment
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .header("API-Version", "2026-04-17");
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        // The first calls may wait for the functions' cold start.
        let response = request.timeout(PATIENCE).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, url: &str) -> Value {
        let (status, endpoint) = self
            .call(
                reqwest::Method::POST,
                "/webhook_endpoints",
                Some(json!({ "url": url })),
                None,
            )
            .await;
        assert_eq!(status, 201, "{endpoint}");
        endpoint
    }

    /// Create, address and shipping, complete: three events.
    async fn checkout(&self) -> String {
        let id = self.create().await;
        self.ready(&id).await;
        self.complete(&id).await;
        id
    }

    async fn create(&self) -> String {
        let create = json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": 2}]});
        let key = ulid::Ulid::new().to_string();
        let (status, session) = self
            .call(reqwest::Method::POST, "/checkout_sessions", Some(create), Some(&key))
            .await;
        assert_eq!(status, 201, "{session}");
        session["id"].as_str().unwrap().to_owned()
    }

    async fn ready(&self, id: &str) {
        let update = json!({
            "fulfillment_details": {"name": "H", "email": "h@example.com", "address": {
                "name": "H", "line_one": "1 Main St", "city": "Springfield", "state": "IL",
                "country": "US", "postal_code": "62701"}},
            "selected_fulfillment_options": [{"type": "shipping", "option_id": "fulfillment_option_123", "item_ids": ["test_1"]}]
        });
        let key = ulid::Ulid::new().to_string();
        let (status, session) = self
            .call(
                reqwest::Method::POST,
                &format!("/checkout_sessions/{id}"),
                Some(update),
                Some(&key),
            )
            .await;
        assert_eq!(
            (status, session["status"].as_str()),
            (200, Some("ready_for_payment")),
            "{session}"
        );
    }

    async fn complete(&self, id: &str) {
        let pay = json!({"payment_data": {"handler_id": "card_tokenized", "instrument": {"type": "card",
            "credential": {"type": "spt", "token": "spt_test_approve"}}}});
        let key = ulid::Ulid::new().to_string();
        let (status, session) = self
            .call(
                reqwest::Method::POST,
                &format!("/checkout_sessions/{id}/complete"),
                Some(pay),
                Some(&key),
            )
            .await;
        assert_eq!(
            (status, session["status"].as_str()),
            (200, Some("completed")),
            "{session}"
        );
    }
}

fn of_session<'a>(seen: &'a [(HeaderMap, Value)], session: &str) -> Vec<&'a (HeaderMap, Value)> {
    seen.iter().filter(|(_, v)| v["session_id"] == session).collect()
}

fn types(seen: &[&(HeaderMap, Value)]) -> Vec<String> {
    let mut types: Vec<String> = seen
        .iter()
        .map(|(_, v)| v["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.sort();
    types.dedup();
    types
}

/// The template's named stage: the API is reached under `/{stage}` (every route was a 404 there
/// before), each event of a checkout reaches the merchant's endpoint, signed with its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_through_the_named_stage_reaches_the_merchants_endpoint_signed() {
    let deployment = deployed(Options::default()).await;
    assert_ne!(deployment.stage, "$default", "the template names its stage");
    let client = Client {
        http: reqwest::Client::new(),
        base: deployment.api_url(),
    };
    let (receiver, url) = Receiver::start(&[]).await;
    let endpoint = client.register(&url).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let session = client.checkout().await;
    let seen = receiver
        .wait_for("the three events", |seen| types(&of_session(seen, &session)).len() == 3)
        .await;
    let mine = of_session(&seen, &session);
    assert_eq!(
        types(&mine),
        [
            "checkout.session.completed",
            "checkout.session.created",
            "checkout.session.updated"
        ]
    );
    let raw = receiver.raw.lock().unwrap().clone();
    let now = checkout::clock::now().timestamp();
    for (i, (headers, body)) in seen
        .iter()
        .enumerate()
        .filter(|(_, (_, b))| b["session_id"] == session.as_str())
    {
        let header = |name: &str| headers[name].to_str().unwrap().to_owned();
        checkout::signature::verify(
            &secret,
            &header("webhook-id"),
            &header("webhook-timestamp"),
            &header("webhook-signature"),
            &raw[i],
            now,
        )
        .unwrap_or_else(|e| panic!("{e:?}: {body}"));
    }
    // A replay runs in the replay runner: it reads each event by its version (a GetItem its
    // policy must allow) and queues it for the dispatcher, which sends it again.
    let endpoint_id = endpoint["id"].as_str().unwrap();
    // A webhook arrives before its attempt is recorded: replay once the log has all three.
    let attempts = format!("/webhook_endpoints/{endpoint_id}/attempts?limit=100");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, page) = client.call(reqwest::Method::GET, &attempts, None, None).await;
        assert_eq!(status, 200, "{page}");
        if page["data"].as_array().is_some_and(|d| d.len() >= 3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the attempts were not logged: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let since = checkout::clock::rfc3339(&(checkout::clock::now() - chrono::Duration::hours(1)));
    let (status, replay) = client
        .call(
            reqwest::Method::POST,
            &format!("/webhook_endpoints/{endpoint_id}/replay"),
            Some(serde_json::json!({ "since": since, "include_delivered": true })),
            None,
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["status"], "running", "{replay}");
    let progress = format!(
        "/webhook_endpoints/{endpoint_id}/replays/{}",
        replay["id"].as_str().unwrap()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let done = loop {
        let (status, job) = client.call(reqwest::Method::GET, &progress, None, None).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] == "completed" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "the replay did not finish: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(done["replayed"].as_u64().unwrap() >= 3, "{done}");
    receiver
        .wait_for("each event of the checkout a second time", |seen| {
            of_session(seen, &session).len() >= 6
        })
        .await;
    // The discovery document names the API where API Gateway serves it: its domain and stage.
    let (status, discovery) = client
        .call(reqwest::Method::GET, "/.well-known/acp.json", None, None)
        .await;
    assert_eq!(status, 200, "{discovery}");
    assert_eq!(
        discovery["api_base_url"],
        format!(
            "https://harness.execute-api.us-east-1.amazonaws.com/{}",
            deployment.stage
        )
    );
    // Outside the stage, API Gateway answers itself.
    let outside = reqwest::get(format!("{}/checkout_sessions", deployment.host_url()))
        .await
        .unwrap();
    assert_eq!(outside.status(), 404);
    let checked = deployment.assert_within_the_templates_limits();
    assert!(checked > 0, "the functions' calls went through the meters");
}

/// An ed25519 endpoint as deployed: a test event reaches it; its deliveries carry `v1a` signatures that verify with the
/// key the stage publishes at `/.well-known/webhook-keys`, named by `webhook-key-id`; the
/// dispatcher's write that disables it on a 410 (the endpoint with its published key, in one
/// transaction) is one its policy allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ed25519_endpoint_verifies_with_the_published_keys() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let deployment = deployed(Options::default()).await;
    let client = Client {
        http: reqwest::Client::new(),
        base: deployment.api_url(),
    };
    let (receiver, url) = Receiver::start(&[200, 200, 410]).await;
    let (status, endpoint) = client
        .call(
            reqwest::Method::POST,
            "/webhook_endpoints",
            Some(json!({ "url": url, "signature_scheme": "ed25519" })),
            None,
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    // A test event first: the API queues it for the dispatcher (a send its policy must allow).
    let test = format!("/webhook_endpoints/{}/test", endpoint["id"].as_str().unwrap());
    let (status, queued) = client.call(reqwest::Method::POST, &test, None, None).await;
    assert_eq!(status, 202, "{queued}");
    let seen = receiver.wait_for("the test event", |seen| !seen.is_empty()).await;
    assert_eq!(seen[0].1["type"], "webhook.test");
    assert_eq!(seen[0].1["id"], queued["event_id"]);
    let session = client.create().await;
    let seen = receiver.wait_for("the created event", |seen| seen.len() >= 2).await;
    let (headers, _) = &seen[1];
    let raw = receiver.raw.lock().unwrap()[1].clone();
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let (status, jwks) = client
        .call(reqwest::Method::GET, "/.well-known/webhook-keys", None, None)
        .await;
    assert_eq!(status, 200, "{jwks}");
    let kid = header("webhook-key-id");
    assert_eq!(kid, endpoint["signing_keys"][0]["kid"].as_str().unwrap());
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("{kid} is not published: {jwks}"));
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let public = format!("whpk_{}", STANDARD.encode(x));
    let verdict = checkout::signing_key::verify_v1a(
        &public,
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &raw,
    );
    assert_eq!(verdict, Ok(()));
    assert!(
        !header("webhook-signature").contains("v1,"),
        "ed25519 alone: no HMAC signature"
    );

    client.ready(&session).await;
    let path = format!("/webhook_endpoints/{}", endpoint["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (status, now) = client.call(reqwest::Method::GET, &path, None, None).await;
        assert_eq!(status, 200, "{now}");
        if now["enabled"] == false {
            assert!(now["disabled_reason"].as_str().unwrap().contains("410"), "{now}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not disabled after the 410: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let checked = deployment.assert_within_the_templates_limits();
    assert!(checked > 0);
}

/// The `$default` stage: the same API at the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_through_the_default_stage_works() {
    let deployment = deployed(Options {
        stage: Some("$default".to_owned()),
        ..Options::default()
    })
    .await;
    let client = Client {
        http: reqwest::Client::new(),
        base: deployment.api_url(),
    };
    let (receiver, url) = Receiver::start(&[]).await;
    client.register(&url).await;
    let session = client.checkout().await;
    receiver
        .wait_for("the completed event", |seen| {
            types(&of_session(seen, &session)).contains(&"checkout.session.completed".to_owned())
        })
        .await;
    let checked = deployment.assert_within_the_templates_limits();
    assert!(checked > 0, "the functions' calls went through the meters");
}

/// A failed delivery is retried with the same webhook-id; one that fails every attempt goes to
/// the dead-letter queue, and a redrive delivers it once the endpoint answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_a_dead_letter_and_its_redrive() {
    let deployment = deployed(Options {
        env: vec![
            ("DISPATCHER_RETRY_SCHEDULE".to_owned(), "50ms,3s".to_owned()),
            ("DISPATCHER_RETRY_BACKOFF_FLOOR".to_owned(), "600ms".to_owned()),
            ("DISPATCHER_MAX_ATTEMPTS".to_owned(), "2".to_owned()),
        ],
        ..Options::default()
    })
    .await;
    let client = Client {
        http: reqwest::Client::new(),
        base: deployment.api_url(),
    };
    // The first answer fails: retried. Then every answer fails for a while: dead-lettered.
    let (receiver, url) = Receiver::start(&[500]).await;
    client.register(&url).await;
    let create = json!({"currency": "usd", "line_items": [{"id": "test_1"}]});
    let (status, first) = client
        .call(
            reqwest::Method::POST,
            "/checkout_sessions",
            Some(create.clone()),
            Some("retry-1"),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let session = first["id"].as_str().unwrap().to_owned();
    let seen = receiver
        .wait_for("a retry", |seen| of_session(seen, &session).len() >= 2)
        .await;
    let ids: Vec<String> = of_session(&seen, &session)
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], ids[1], "the retry carries the same webhook-id");

    *receiver.answers.lock().unwrap() = vec![500; 4];
    let (status, second) = client
        .call(
            reqwest::Method::POST,
            "/checkout_sessions",
            Some(create),
            Some("retry-2"),
        )
        .await;
    assert_eq!(status, 201);
    let doomed = second["id"].as_str().unwrap().to_owned();
    let dead_letters = aws_backend::SqsQueue::new(
        deployment.sqs.clone(),
        deployment.pipeline.dead_letter_queue_url.clone(),
    );
    let queue = aws_backend::SqsQueue::new(deployment.sqs.clone(), deployment.pipeline.queue_url.clone());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let letters = dispatcher::dead_letters::list(&dead_letters, 10).await.unwrap();
        if letters.iter().any(|l| format!("{l:?}").contains(&doomed)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter for {doomed}: {letters:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        of_session(&receiver.seen(), &doomed).len(),
        2,
        "two attempts, then the dead-letter queue"
    );

    receiver.answers.lock().unwrap().clear();
    let moved = dispatcher::dead_letters::redrive(&dead_letters, &queue, 10)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    receiver
        .wait_for("the redriven delivery", |seen| of_session(seen, &doomed).len() >= 3)
        .await;
    let checked = deployment.assert_within_the_templates_limits();
    assert!(checked > 0, "the functions' calls went through the meters");
}

/// Messages on an SQS queue, visible or in flight.
async fn messages_on(deployment: &Deployment, url: &str) -> u64 {
    let attributes = deployment
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// Pause and resume as deployed: while the endpoint is paused the dispatcher function logs each
/// event as held and leaves nothing on the queues (no message waits for the resume, coming back
/// every few minutes); the resume, through the stage, starts a job the replay-runner function
/// walks oldest first, and the held events arrive. Every call within the functions' policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_endpoint_gets_nothing_until_its_resume() {
    let deployment = deployed(Options::default()).await;
    let client = Client {
        http: reqwest::Client::new(),
        base: deployment.api_url(),
    };
    let (receiver, url) = Receiver::start(&[]).await;
    let endpoint = client.register(&url).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let (status, paused) = client
        .call(
            reqwest::Method::POST,
            &format!("/webhook_endpoints/{id}/pause"),
            None,
            None,
        )
        .await;
    assert_eq!((status, paused["state"].as_str()), (200, Some("paused")), "{paused}");
    let session = client.checkout().await;
    let attempts = format!("/webhook_endpoints/{id}/attempts?limit=100");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, page) = client.call(reqwest::Method::GET, &attempts, None, None).await;
        assert_eq!(status, 200, "{page}");
        let held = page["data"].as_array().unwrap();
        if held.len() >= 3 {
            assert!(held.iter().all(|r| r["status"] == "paused"), "{page}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the holds were not logged: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        of_session(&receiver.seen(), &session).is_empty(),
        "nothing sent while paused"
    );
    let pipeline = &deployment.pipeline;
    for queue in [&pipeline.queue_url, &pipeline.slow_queue_url] {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while messages_on(&deployment, queue).await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "messages wait on {queue}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (status, resumed) = client
        .call(
            reqwest::Method::POST,
            &format!("/webhook_endpoints/{id}/resume"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["resume"]["kind"], "resume", "{resumed}");
    receiver
        .wait_for("the held events after the resume", |seen| {
            of_session(seen, &session).len() >= 3
        })
        .await;
    let checked = deployment.assert_within_the_templates_limits();
    assert!(checked > 0, "the functions' calls went through the meters");
}

/// `infra/test/e2e-test.sh`, the operator's check of a deployment, passes against the front.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operators_end_to_end_script_passes() {
    let deployment = deployed(Options::default()).await;
    let (_receiver, url) = Receiver::start(&[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/test/e2e-test.sh");
    let api = deployment.api_url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(api)
            .env("ACP_API_KEY", API_KEY)
            .env("E2E_WEBHOOK_URL", url)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("all checks passed") && !stdout.contains("FAIL"),
        "{stdout}"
    );
    let checked = deployment.assert_within_the_templates_limits();
    assert!(checked > 0, "the functions' calls went through the meters");
}

/// One bill per run: every function's invocations and billed time, its AWS requests counted on
/// the wire (DynamoDB units by the item-size rules), the queue source's requests and the log
/// bytes, per event.
fn bill(usage: &lambda_harness::deployment::Usage, events: u64) -> Vec<lambda_harness::bill::Line> {
    let functions: Vec<lambda_harness::bill::FunctionUsage<'_>> = usage
        .functions
        .iter()
        .map(
            |(name, invocations, memory_mb, calls, log_bytes)| lambda_harness::bill::FunctionUsage {
                name,
                invocations: *invocations,
                memory_mb: *memory_mb,
                calls,
                log_bytes: *log_bytes,
            },
        )
        .collect();
    let api_requests = usage.functions[0].1.count;
    lambda_harness::bill::lines(events, api_requests, &functions, usage.queue_requests)
}

/// How many requests of `service operation` a function made.
fn requests(usage: &lambda_harness::deployment::Usage, function: &str, service: &str, operation: &str) -> u64 {
    usage
        .functions
        .iter()
        .find(|f| f.0 == function)
        .and_then(|f| f.3.get(&(service.to_owned(), operation.to_owned())))
        .map_or(0, |u| u.requests)
}

fn write_units(usage: &lambda_harness::deployment::Usage, function: &str, operation: &str) -> f64 {
    usage
        .functions
        .iter()
        .find(|f| f.0 == function)
        .and_then(|f| f.3.get(&("DynamoDB".to_owned(), operation.to_owned())))
        .map_or(0.0, |u| u.write_units)
}

fn invocations(usage: &lambda_harness::deployment::Usage, function: &str) -> u64 {
    usage
        .functions
        .iter()
        .find(|f| f.0 == function)
        .map_or(0, |f| f.1.count)
}

/// What a checkout event costs on AWS, measured: one checkout at a time (every batch holds one
/// record: the most expensive case) and twenty at once (batches fill). The request counts per
/// event are asserted where they are deterministic; the bill is printed and written to
/// `target/tmp/cost-report.md`, never asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bill_of_a_checkout_event() {
    let deployment = deployed(Options::default()).await;
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: deployment.api_url(),
    });
    let (receiver, url) = Receiver::start(&[]).await;
    client.register(&url).await;
    let delivered = |session: String| {
        let receiver = receiver.clone();
        async move {
            receiver
                .wait_for("a checkout's three webhooks", |seen| {
                    of_session(seen, &session).len() >= 3
                })
                .await;
        }
    };
    // Cold starts and the merchant caches first.
    for _ in 0..2 {
        delivered(client.checkout().await).await;
    }
    deployment.take_usage().await;

    // Low traffic: each call's webhook arrives before the next call is made.
    const ALONE: u64 = 5;
    for _ in 0..ALONE {
        let id = client.create().await;
        let arrived = |n: usize| {
            let (receiver, id) = (receiver.clone(), id.clone());
            async move {
                receiver
                    .wait_for("the call's webhook", |seen| of_session(seen, &id).len() >= n)
                    .await
            }
        };
        arrived(1).await;
        client.ready(&id).await;
        arrived(2).await;
        client.complete(&id).await;
        arrived(3).await;
    }
    let alone = deployment.take_usage().await;
    let events = 3 * ALONE;
    assert_eq!(invocations(&alone, "session-manager"), events, "one API call per event");
    assert_eq!(
        requests(&alone, "session-manager", "DynamoDB", "PutItem"),
        2 * events,
        "the idempotency claim and the event: two single writes"
    );
    assert_eq!(
        requests(&alone, "session-manager", "DynamoDB", "TransactWriteItems"),
        0,
        "no transaction: the event carries its claim"
    );
    assert!(
        requests(&alone, "session-manager", "DynamoDB", "GetItem") <= 3,
        "no read of the claim before the commit (the holder knows its lease); at most a merchant's profile read again as its cache expires"
    );
    assert_eq!(
        invocations(&alone, "event-projector"),
        events,
        "alone, each stream batch holds one record"
    );
    assert_eq!(requests(&alone, "event-projector", "SNS", "PublishBatch"), events);
    assert_eq!(invocations(&alone, "webhook-dispatcher"), events);
    assert_eq!(
        requests(&alone, "webhook-dispatcher", "DynamoDB", "PutItem"),
        events,
        "one write of the batch's first attempts"
    );
    assert_eq!(
        requests(&alone, "webhook-dispatcher", "DynamoDB", "Query"),
        2 * events,
        "per batch: the merchant's endpoints, and the duplicate check (the endpoint's first attempts of that second)"
    );
    assert_eq!(requests(&alone, "webhook-dispatcher", "DynamoDB", "BatchGetItem"), 0);

    // 20 in the suite; more (ACP_BILL_AT_ONCE) to see the batches of a busier deployment.
    let together_count: u64 = std::env::var("ACP_BILL_AT_ONCE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let sessions = futures_util::future::join_all((0..together_count).map(|_| {
        let client = client.clone();
        async move { client.checkout().await }
    }))
    .await;
    for session in sessions {
        delivered(session).await;
    }
    let together = deployment.take_usage().await;
    let loaded_events = 3 * together_count;
    assert_eq!(invocations(&together, "session-manager"), loaded_events);
    assert!(invocations(&together, "webhook-dispatcher") <= loaded_events);
    let dispatcher_writes: f64 = ["PutItem", "BatchWriteItem"]
        .iter()
        .map(|op| write_units(&together, "webhook-dispatcher", op))
        .sum();
    assert!(
        dispatcher_writes < loaded_events as f64,
        "a batch's first attempts share items: {dispatcher_writes} write units for {loaded_events} deliveries"
    );

    let (alone_bill, together_bill) = (bill(&alone, events), bill(&together, loaded_events));
    let calls: String = deployment
        .calls()
        .iter()
        .map(|(function, calls)| format!("- {function}: {}\n", calls.join(", ")))
        .collect();
    let memory: String = deployment
        .memory()
        .iter()
        .map(|(function, peak, limit)| format!("- {function}: {peak:.1} MB of {limit} MB\n"))
        .collect();
    let report = format!(
        "## One checkout at a time ({events} events, one per batch)\n\n{}\n## {together_count} at once ({loaded_events} events)\n\n{}\n## What each function calls (each allowed by its policies in the template)\n\n{calls}\n## Peak memory of an instance (debug build)\n\n{memory}",
        lambda_harness::bill::table(&alone_bill),
        lambda_harness::bill::table(&together_bill)
    );
    println!("{report}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cost-report.md");
    std::fs::write(&path, &report).unwrap();
    assert!(lambda_harness::bill::total(&alone_bill) > 0.0);
    let checked = deployment.assert_within_the_templates_limits();
    assert!(checked > 0, "the functions' calls went through the meters");
}

/// The tables the code creates (tests, `acp-local --create-resources`) have the shape the
/// template deploys: the same keys and types, stream and expiry attribute. Two definitions of
/// one schema, checked against each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_the_code_creates_are_the_templates() {
    use lambda_harness::template::{TableShape, Template};
    let (client, tables) = aws_backend::testkit::fresh_tables().await;
    let template = Template::load();
    let pairs = [
        ("SessionsTable", &tables.sessions),
        ("IdempotencyTable", &tables.idempotency),
        ("MerchantsTable", &tables.merchants),
        ("DeliveriesTable", &tables.deliveries),
    ];
    for (logical, name) in pairs {
        let table = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let types: std::collections::HashMap<String, String> = table
            .attribute_definitions()
            .iter()
            .map(|d| (d.attribute_name().to_owned(), d.attribute_type().as_str().to_owned()))
            .collect();
        let keys = table
            .key_schema()
            .iter()
            .map(|k| {
                let name = k.attribute_name().to_owned();
                let kind = types.get(&name).cloned().unwrap_or_default();
                (name, k.key_type().as_str().to_owned(), kind)
            })
            .collect();
        let stream_view = table
            .stream_specification()
            .filter(|s| s.stream_enabled())
            .and_then(|s| s.stream_view_type())
            .map(|v| v.as_str().to_owned());
        let ttl = client
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .unwrap()
            .time_to_live_description
            .filter(|d| d.time_to_live_status().is_some_and(|s| s.as_str() == "ENABLED"))
            .and_then(|d| d.attribute_name().map(str::to_owned));
        let created = TableShape { keys, stream_view, ttl };
        assert_eq!(created, template.table(logical), "{logical}");
    }
}

/// The portal as deployed, behind the template's named stage: the link names the stage, the
/// session cookie is `Secure` (API Gateway serves HTTPS) and scoped by its default path to the
/// stage's portal, and the pages' relative links stay under the stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_portal_works_behind_the_named_stage() {
    let deployment = deployed(Options::default()).await;
    let client = Client {
        http: reqwest::Client::new(),
        base: deployment.api_url(),
    };
    let (_receiver, url) = Receiver::start(&[]).await;
    let endpoint = client.register(&url).await;
    let (status, link) = client.call(reqwest::Method::POST, "/portal_links", None, None).await;
    assert_eq!(status, 201, "{link}");
    let public = format!(
        "https://harness.execute-api.us-east-1.amazonaws.com/{}",
        deployment.stage
    );
    let url = link["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{public}/portal/login?token=")), "{url}");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let opened = browser
        .get(url.replace(&public, &deployment.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let login_cookie = opened.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(login_cookie.contains("Secure"), "{login_cookie}");
    let page = opened.text().await.unwrap();
    assert!(
        page.contains("form method=\"post\" action=\"login\""),
        "relative, so under the stage: {page}"
    );
    let hidden = |name: &str| {
        let after = page.split(&format!("name=\"{name}\" value=\"")).nth(1).unwrap();
        after.split('"').next().unwrap().to_owned()
    };
    let signed_in = browser
        .post(format!("{}/portal/login", deployment.api_url()))
        .header("cookie", login_cookie.split(';').next().unwrap())
        .form(&[("token", hidden("token")), ("nonce", hidden("nonce"))])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("acp_portal="))
        .expect("the session cookie");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
    assert!(
        !cookie.contains("Path="),
        "the login's folder, {}/portal, is the cookie's path",
        deployment.stage
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let list = browser
        .get(format!("{}/portal/", deployment.api_url()))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    assert!(
        list.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = list.text().await.unwrap();
    assert!(
        page.contains(&format!("href=\"endpoints/{}\"", endpoint["id"].as_str().unwrap())),
        "{page}"
    );
    assert!(page.contains("href=\"./portal.css\""), "relative, so under the stage");
    let css = browser
        .get(format!("{}/portal/portal.css", deployment.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
}
