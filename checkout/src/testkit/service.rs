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

/// 50 API updates of one session at once: all succeed (losers of a race retry inside), the
/// versions are 1..=51, and each update is one event.
pub async fn fifty_concurrent_api_updates_lose_nothing(backend: &Backend) {
    let m = merchant();
    let service = Arc::new(CheckoutService::new(
        backend.clone(),
        Arc::new(TestPaymentProcessor::new()),
    ));
    let sid = create_session(&service, &m).await;
    let mut tasks = Vec::new();
    for quantity in 1..=50 {
        let (service, m, sid) = (service.clone(), m.clone(), sid.clone());
        tasks.push(tokio::spawn(async move {
            let req = UpdateSessionRequest {
                line_items: Some(items(quantity)),
                ..Default::default()
            };
            let path = format!("/checkout_sessions/{sid}");
            let body = format!("quantity {quantity}");
            service
                .execute(&call(&m, &path, &body), Command::Update(sid, Box::new(req)))
                .await
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
        (1..=50).collect::<Vec<_>>(),
        "every update is in the log once"
    );
}

/// The same create sent twice under one key makes one session and one event.
pub async fn idempotent_create_through_the_service(backend: &Backend) {
    let m = merchant();
    let service = CheckoutService::new(backend.clone(), Arc::new(TestPaymentProcessor::new()));
    let req = CreateSessionRequest {
        currency: "usd".to_owned(),
        line_items: Some(items(2)),
        ..Default::default()
    };
    let c = call(&m, "/checkout_sessions", "same body");
    let first = service.execute(&c, Command::Create(Box::new(req.clone()))).await;
    let second = service.execute(&c, Command::Create(Box::new(req))).await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.body, second.body);
    let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    let sid = SessionId::parse(body["id"].as_str().unwrap()).unwrap();
    assert_eq!(backend.events.history(&sid).await.unwrap().len(), 1);
}
