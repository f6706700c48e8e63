//! ACP idempotency over HTTP: required key, replay, conflict, in-flight, 5xx never stored.

use crate::app::{TestApp, add_merchant, expect, payment};
use crate::on_every_backend;
use crate::schema::{assert_error, assert_session};
use checkout::clock;
use checkout::idempotency::{IdempotencyKey, fingerprint};
use serde_json::json;

on_every_backend!(
    key_is_required,
    keys_that_are_not_1_to_255_printable_characters_are_refused_and_not_echoed,
    same_key_same_body_replays,
    same_key_other_body_conflicts,
    request_in_flight_gets_409_with_retry_after,
    server_errors_are_never_stored,
    keys_are_scoped_to_merchant_and_endpoint,
    a_percent_encoded_path_is_the_same_request,
);

fn cart(quantity: u32) -> serde_json::Value {
    json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": quantity}]})
}

async fn key_is_required(app: TestApp) {
    let response = app
        .client
        .post(app.url("/checkout_sessions"))
        .bearer_auth(&app.api_key)
        .json(&cart(1))
        .send()
        .await
        .unwrap();
    assert_error(&expect(response, 400).await, "idempotency_key_required");
}

/// A key must be 1 to 255 printable ASCII characters: a longer one (256, 100 KB), a tab or a
/// non-ASCII character is refused, and not sent back in the response headers.
async fn keys_that_are_not_1_to_255_printable_characters_are_refused_and_not_echoed(app: TestApp) {
    use reqwest::header::HeaderValue;
    let long = "k".repeat(256);
    let huge = "k".repeat(100_000);
    for key in [long.as_bytes(), huge.as_bytes(), b"tab\there", "clé".as_bytes()] {
        let response = app
            .client
            .post(app.url("/checkout_sessions"))
            .bearer_auth(&app.api_key)
            .json(&cart(1))
            .header("Idempotency-Key", HeaderValue::from_bytes(key).unwrap())
            .send()
            .await
            .unwrap();
        let shown = String::from_utf8_lossy(&key[..key.len().min(20)]).into_owned();
        assert!(
            response.headers().get("idempotency-key").is_none(),
            "a refused key is not echoed: {shown}"
        );
        assert_error(&expect(response, 400).await, "invalid_idempotency_key");
    }
}

async fn same_key_same_body_replays(app: TestApp) {
    let send = || {
        app.post_keyed("/checkout_sessions", &cart(2), "order-42")
            .header("Request-Id", "req_abc")
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.headers()["idempotency-key"], "order-42");
    assert_eq!(first.headers()["request-id"], "req_abc");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = expect(first, 201).await;

    let second = send().await.unwrap();
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second = expect(second, 201).await;
    assert_eq!(first, second, "the replay is the stored reply");
    assert_session(&second);
    assert_eq!(
        app.history_len(first["id"].as_str().unwrap()).await,
        1,
        "one session, one event"
    );
}

async fn same_key_other_body_conflicts(app: TestApp) {
    let first = app
        .post_keyed("/checkout_sessions", &cart(1), "k1")
        .send()
        .await
        .unwrap();
    expect(first, 201).await;
    let other = app
        .post_keyed("/checkout_sessions", &cart(3), "k1")
        .send()
        .await
        .unwrap();
    assert_error(&expect(other, 422).await, "idempotency_conflict");
}

async fn request_in_flight_gets_409_with_retry_after(app: TestApp) {
    let body = cart(1);
    let key = IdempotencyKey {
        merchant_id: app.merchant.id.clone(),
        method: "POST".to_owned(),
        path: "/checkout_sessions".to_owned(),
        key: "busy".to_owned(),
    };
    let bytes = serde_json::to_vec(&body).unwrap();
    let claim = app
        .backend
        .idempotency
        .claim(&key, &fingerprint(&bytes), clock::now())
        .await
        .unwrap();
    assert!(matches!(claim, checkout::idempotency::Claim::Acquired { .. }));

    let response = app
        .post_keyed("/checkout_sessions", &body, "busy")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(&expect(response, 409).await, "idempotency_in_flight");
    let other = app
        .post_keyed("/checkout_sessions", &cart(5), "busy")
        .send()
        .await
        .unwrap();
    assert_error(&expect(other, 422).await, "idempotency_conflict");
}

async fn server_errors_are_never_stored(app: TestApp) {
    let ready = app.ready().await;
    let id = ready["id"].as_str().unwrap();
    let path = format!("/checkout_sessions/{id}/complete");
    for _ in 0..2 {
        let response = app
            .post_keyed(&path, &payment("spt_test_processor_error"), "pay-1")
            .send()
            .await
            .unwrap();
        assert!(
            response.headers().get("idempotent-replayed").is_none(),
            "a 5xx is never replayed"
        );
        let body = expect(response, 503).await;
        assert_error(&body, "payment_processor_unavailable");
        assert_eq!(body["type"], "service_unavailable");
    }
    // The key is free again: the same key with a working card completes the session.
    let response = app
        .post_keyed(&path, &payment("spt_test_approve"), "pay-1")
        .send()
        .await
        .unwrap();
    assert_eq!(expect(response, 200).await["status"], "completed");
}

async fn keys_are_scoped_to_merchant_and_endpoint(app: TestApp) {
    let mine = app
        .post_keyed("/checkout_sessions", &cart(1), "shared")
        .send()
        .await
        .unwrap();
    let mine = expect(mine, 201).await;
    let (_, other_key) = add_merchant(&app.backend).await;
    let theirs = app
        .keyed(&other_key, "/checkout_sessions", &cart(1), "shared")
        .send()
        .await
        .unwrap();
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    let theirs = expect(theirs, 201).await;
    assert_ne!(mine["id"], theirs["id"]);

    let id = mine["id"].as_str().unwrap();
    let cancel = app
        .post_keyed(&format!("/checkout_sessions/{id}/cancel"), &cart(1), "shared")
        .send()
        .await
        .unwrap();
    assert_eq!(expect(cancel, 200).await["status"], "canceled");
}

/// `/checkout_sessions/%63s_…` is the same session as `/checkout_sessions/cs_…`: the same key
/// on either spelling is the same request.
async fn a_percent_encoded_path_is_the_same_request(app: TestApp) {
    let ready = app.ready().await;
    let id = ready["id"].as_str().unwrap();
    let body = json!({"line_items": [{"id": "test_1", "quantity": 3}]});
    let plain = app
        .post_keyed(&format!("/checkout_sessions/{id}"), &body, "encoded-1")
        .send()
        .await
        .unwrap();
    expect(plain, 200).await;
    let encoded = format!("/checkout_sessions/%{:02x}{}", id.as_bytes()[0], &id[1..]);
    let again = app.post_keyed(&encoded, &body, "encoded-1").send().await.unwrap();
    assert_eq!(
        again.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()),
        Some("true"),
        "replayed, not run again"
    );
    expect(again, 200).await;
    assert_eq!(app.history_len(id).await, 3, "one update event, not two");
}
