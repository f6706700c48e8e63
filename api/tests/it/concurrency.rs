//! Racing writers over HTTP: nothing is lost or overwritten.

use crate::app::{TestApp, expect};
use crate::on_every_backend;
use serde_json::json;
use std::sync::Arc;

on_every_backend!(fifty_concurrent_updates_of_one_session);

async fn fifty_concurrent_updates_of_one_session(app: TestApp) {
    let app = Arc::new(app);
    let id = app.create().await["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    // The session starts with quantity 1: each of these changes it.
    for quantity in 2..=51 {
        let (app, id) = (app.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"line_items": [{"id": "test_1", "quantity": quantity}]});
            // As a client does: a retryable answer (the store was busy, the call ran out of
            // time) is retried with the same key. On a slow store fifty writers racing for one
            // session can take longer than a call may.
            let key = ulid::Ulid::new().to_string();
            for _ in 0..5 {
                let response = app
                    .post_keyed(&format!("/checkout_sessions/{id}"), &body, &key)
                    .send()
                    .await
                    .unwrap();
                if response.status() != 503 {
                    return expect(response, 200).await;
                }
            }
            panic!("still unavailable after five tries");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let history = app
        .backend
        .events
        .history(&checkout::ids::SessionId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=51).collect::<Vec<_>>()
    );
    let mut quantities: Vec<u32> = history[1..].iter().map(|e| e.data.line_items[0].quantity).collect();
    quantities.sort_unstable();
    assert_eq!(
        quantities,
        (2..=51).collect::<Vec<_>>(),
        "each update is stored exactly once"
    );
}
