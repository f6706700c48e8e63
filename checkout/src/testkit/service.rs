use super::merchant;
use crate::acp::{ApiVersion, CreateSessionRequest, RequestItem, UpdateSessionRequest};
use crate::event::EventType;
use crate::idempotency::{IdempotencyKey, fingerprint};
use crate::ids::SessionId;
use crate::merchant::Merchant;
use crate::payment::TestPaymentProcessor;
use crate::ports::Backend;
use crate::service::{Call, CheckoutService, Command};
use std::sync::Arc;

fn call<'a>(m: &'a Merchant, path: &str, body: &str) -> Call<'a> {
    Call {
        merchant: m,
        api_version: ApiVersion::CURRENT,
        idempotency_key: IdempotencyKey {
            merchant_id: m.id.clone(),
            method: "POST".to_owned(),
            path: path.to_owned(),
            key: ulid::Ulid::new().to_string(),
        },
        fingerprint: fingerprint(body.as_bytes()),
    }
}

fn items(quantity: i64) -> Vec<RequestItem> {
    vec![RequestItem {
        id: "test_1".to_owned(),
        name: None,
        unit_amount: None,
        quantity: Some(quantity),
    }]
}

async fn create_session(service: &CheckoutService, m: &Merchant) -> SessionId {
    let req = CreateSessionRequest {
        currency: "usd".to_owned(),
        line_items: Some(items(1)),
        ..Default::default()
    };
    let reply = service
        .execute(&call(m, "/checkout_sessions", "create"), Command::Create(Box::new(req)))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    SessionId::parse(body["id"].as_str().unwrap()).unwrap()
}

/// 50 API updates of one session at once: all succeed (losers of a race retry inside; a call
/// that runs out of time is retried by its client with the same key), the
/// versions are 1..=51, and each update is one event.
pub async fn fifty_concurrent_api_updates_lose_nothing(backend: &Backend) {
    let m = merchant();
    let service = Arc::new(CheckoutService::new(
        backend.clone(),
        Arc::new(TestPaymentProcessor::new()),
    ));
    let sid = create_session(&service, &m).await;
    let mut tasks = Vec::new();
    // The session starts with quantity 1; each update sets another, so each changes it.
    for quantity in 2..=51 {
        let (service, m, sid) = (service.clone(), m.clone(), sid.clone());
        tasks.push(tokio::spawn(async move {
            let req = UpdateSessionRequest {
                line_items: Some(items(quantity)),
                ..Default::default()
            };
            let path = format!("/checkout_sessions/{sid}");
            let body = format!("quantity {quantity}");
            // As a client does: a retryable answer is retried with the same key (on a slow
            // store the last of fifty racing writers can run out of time).
            let call = call(&m, &path, &body);
            for _ in 0..4 {
                let reply = service
                    .execute(&call, Command::Update(sid.clone(), Box::new(req.clone())))
                    .await;
                if reply.status != 503 {
                    return reply;
                }
            }
            service.execute(&call, Command::Update(sid, Box::new(req))).await
        }));
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let history = backend.events.history(&sid).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=51).collect::<Vec<_>>()
    );
    assert!(history[1..].iter().all(|e| e.kind == EventType::Updated));
    let mut quantities: Vec<u32> = history[1..].iter().map(|e| e.data.line_items[0].quantity).collect();
    quantities.sort_unstable();
    assert_eq!(
        quantities,
        (2..=51).collect::<Vec<_>>(),
        "every update is in the log once"
    );
}

/// The same create sent twice under one key makes one session and one event.
pub async fn idempotent_create_through_the_service(backend: &Backend) {
    let m = merchant();
    let service = CheckoutService::new(backend.clone(), Arc::new(TestPaymentProcessor::new()));
    // Free-form values whose JSON must come back byte for byte when the reply is rebuilt from
    // the stored event: floats, unicode, nesting, key order.
    let metadata = serde_json::json!({"z": 1.5, "a": "é ☃ \u{1F600}", "n": {"b": [1, 2.25e-7, null, -0.0]}, "m": 9007199254740993_u64});
    let req = CreateSessionRequest {
        currency: "usd".to_owned(),
        line_items: Some(items(2)),
        metadata: metadata.as_object().cloned(),
        ..Default::default()
    };
    let c = call(&m, "/checkout_sessions", "same body");
    let first = service.execute(&c, Command::Create(Box::new(req.clone()))).await;
    let second = service.execute(&c, Command::Create(Box::new(req))).await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.body, second.body, "the replay is byte for byte the first reply");
    let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    let sid = SessionId::parse(body["id"].as_str().unwrap()).unwrap();
    assert_eq!(backend.events.history(&sid).await.unwrap().len(), 1);
}

/// Counts the charges a processor makes (one per distinct idempotency key, as processors
/// deduplicate), taking its time so that concurrent requests overlap.
#[derive(Default)]
struct CountingProcessor {
    keys: parking_lot::Mutex<std::collections::HashSet<String>>,
}

#[async_trait::async_trait]
impl crate::payment::PaymentProcessor for CountingProcessor {
    async fn charge(
        &self,
        request: &crate::payment::ChargeRequest,
    ) -> Result<crate::payment::ChargeOutcome, crate::payment::PaymentError> {
        self.keys.lock().insert(request.idempotency_key.clone());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Ok(crate::payment::ChargeOutcome::Approved {
            payment_id: format!("pay_{}", request.idempotency_key),
        })
    }
}

/// Ten `/complete` calls of one session at once, each with its own Idempotency-Key (an agent
/// retrying without reusing its key): the buyer is charged once, one completes the session.
pub async fn concurrent_completes_charge_once(backend: &Backend) {
    let m = merchant();
    let processor = Arc::new(CountingProcessor::default());
    let service = Arc::new(CheckoutService::new(backend.clone(), processor.clone()));
    let sid = create_session(&service, &m).await;
    let ready: UpdateSessionRequest = serde_json::from_value(serde_json::json!({
        "fulfillment_details": {"name": "Jane Doe", "email": "jane@example.com", "address": {
            "name": "Jane Doe", "line_one": "1 Main St", "city": "Springfield", "state": "IL",
            "country": "US", "postal_code": "62701"}},
        "selected_fulfillment_options": [{"type": "shipping", "option_id": "fulfillment_option_456", "item_ids": ["test_1"]}]
    }))
    .unwrap();
    let path = format!("/checkout_sessions/{sid}");
    let reply = service
        .execute(&call(&m, &path, "ready"), Command::Update(sid.clone(), Box::new(ready)))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (service, m, sid) = (service.clone(), m.clone(), sid.clone());
        tasks.push(tokio::spawn(async move {
            let req: crate::acp::CompleteSessionRequest = serde_json::from_value(serde_json::json!({
                "payment_data": {"handler_id": "card_tokenized", "instrument": {"type": "card",
                    "credential": {"type": "spt", "token": "spt_test_approve"}}}
            }))
            .unwrap();
            let path = format!("/checkout_sessions/{sid}/complete");
            service
                .execute(&call(&m, &path, "complete"), Command::Complete(sid, Box::new(req)))
                .await
        }));
    }
    let mut completed = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == 200 {
            completed += 1;
        }
    }
    assert!(completed >= 1);
    let charges = processor.keys.lock().clone();
    assert_eq!(charges.len(), 1, "the buyer was charged once: {charges:?}");
    let history = backend.events.history(&sid).await.unwrap();
    let completions = history.iter().filter(|e| e.kind == EventType::Completed).count();
    assert_eq!(completions, 1);
}
