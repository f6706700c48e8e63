//! Whole checkout flows through the API.

use crate::app::{TestApp, expect, payment, shipping_details};
use crate::on_every_backend;
use crate::schema::{assert_error, assert_session};
use checkout::event::EventType;
use checkout::ids::SessionId;
use serde_json::{Value, json};

fn total(session: &Value) -> i64 {
    session["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "total")
        .expect("totals include type total")["amount"]
        .as_i64()
        .unwrap()
}

on_every_backend!(
    create_update_complete_get,
    open_session_can_be_canceled_once,
    declined_payment_changes_nothing,
    three_ds_round_trip,
    digital_cart_needs_no_address,
    seed_request_shape_still_works,
    unknown_routes_and_methods_answer_in_acp_shape,
);

async fn create_update_complete_get(app: TestApp) {
    let created = app.create().await;
    assert_session(&created);
    assert_eq!(created["status"], "not_ready_for_payment");
    assert_eq!(created["line_items"][0]["unit_amount"], 2500, "price from the catalog");
    let id = created["id"].as_str().unwrap().to_owned();

    let response = app
        .post(&format!("/checkout_sessions/{id}"), &shipping_details())
        .send()
        .await
        .unwrap();
    let ready = expect(response, 200).await;
    assert_session(&ready);
    assert_eq!(ready["status"], "ready_for_payment");
    assert_eq!(ready["messages"], json!([]));
    // 25.00 + 8.25 % tax (2.06) + standard shipping 5.00
    assert_eq!(total(&ready), 2500 + 206 + 500);

    let response = app.complete(&id, "spt_test_approve").await;
    let completed = expect(response, 200).await;
    assert_session(&completed);
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["order"]["checkout_session_id"], id.as_str());

    let fetched = expect(app.get(&format!("/checkout_sessions/{id}")).send().await.unwrap(), 200).await;
    assert_eq!(fetched, completed, "a client reads its own writes");

    let history = app
        .backend
        .events
        .history(&SessionId::parse(&id).unwrap())
        .await
        .unwrap();
    let kinds: Vec<EventType> = history.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::Created, EventType::Updated, EventType::Completed]);
    assert_eq!(history.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        history
            .iter()
            .all(|e| e.merchant_id == app.merchant.id && e.api_version == "2026-04-17")
    );
    assert_eq!(serde_json::to_value(&history[2].data).unwrap(), completed);
}

async fn open_session_can_be_canceled_once(app: TestApp) {
    let id = app.create().await["id"].as_str().unwrap().to_owned();
    let body = json!({"intent_trace": {"reason_code": "shipping_cost"}});
    let response = app
        .post(&format!("/checkout_sessions/{id}/cancel"), &body)
        .send()
        .await
        .unwrap();
    let canceled = expect(response, 200).await;
    assert_session(&canceled);
    assert_eq!(canceled["status"], "canceled");

    let again = app
        .post(&format!("/checkout_sessions/{id}/cancel"), &json!({}))
        .send()
        .await
        .unwrap();
    assert_error(&expect(again, 405).await, "session_not_cancelable");
    let update = app
        .post(&format!("/checkout_sessions/{id}"), &shipping_details())
        .send()
        .await
        .unwrap();
    assert_error(&expect(update, 400).await, "session_not_modifiable");
    assert_eq!(app.history_len(&id).await, 2);

    // An empty cancel body is allowed.
    let id = app.create().await["id"].as_str().unwrap().to_owned();
    let response = app
        .client
        .post(app.url(&format!("/checkout_sessions/{id}/cancel")))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "empty-cancel")
        .send()
        .await
        .unwrap();
    assert_eq!(expect(response, 200).await["status"], "canceled");
}

async fn declined_payment_changes_nothing(app: TestApp) {
    let ready = app.ready().await;
    let id = ready["id"].as_str().unwrap();
    let before = app.history_len(id).await;
    let response = app.complete(id, "spt_test_decline").await;
    let declined = expect(response, 200).await;
    assert_session(&declined);
    assert_eq!(declined["status"], "ready_for_payment");
    assert_eq!(declined["messages"][0]["code"], "payment_declined");
    assert_eq!(app.history_len(id).await, before, "a decline is not a session change");

    let response = app.complete(id, "spt_test_approve").await;
    assert_eq!(expect(response, 200).await["status"], "completed");
}

async fn three_ds_round_trip(app: TestApp) {
    let ready = app.ready().await;
    let id = ready["id"].as_str().unwrap();
    let path = format!("/checkout_sessions/{id}/complete");
    let first = expect(app.post(&path, &payment("spt_test_3ds")).send().await.unwrap(), 200).await;
    assert_session(&first);
    assert_eq!(first["status"], "authentication_required");
    assert!(first["authentication_metadata"]["acquirer_details"].is_object());

    let without = app.post(&path, &payment("spt_test_3ds")).send().await.unwrap();
    assert_error(&expect(without, 400).await, "requires_3ds");

    let mut with_result = payment("spt_test_3ds");
    with_result["authentication_result"] = json!({
        "outcome": "authenticated",
        "outcome_details": {"three_ds_cryptogram": "AAAA", "electronic_commerce_indicator": "05",
                            "transaction_id": "ds_1", "version": "2.2.0"}
    });
    let done = expect(app.post(&path, &with_result).send().await.unwrap(), 200).await;
    assert_session(&done);
    assert_eq!(done["status"], "completed");
}

async fn digital_cart_needs_no_address(app: TestApp) {
    let body = json!({"currency": "usd", "line_items": [{"id": "ebook_1", "quantity": 2}]});
    let session = expect(app.post("/checkout_sessions", &body).send().await.unwrap(), 201).await;
    assert_session(&session);
    assert_eq!(session["status"], "ready_for_payment");
    assert_eq!(session["fulfillment_options"][0]["type"], "digital");
    assert_eq!(total(&session), 2400 + 198);
}

async fn seed_request_shape_still_works(app: TestApp) {
    let seed = json!({"currency": "usd", "items": [{"id": "test_1", "quantity": 1}]});
    for version in [None, Some("2025-09-29")] {
        let mut request = app
            .client
            .post(app.url("/checkout_sessions"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", ulid::Ulid::new().to_string())
            .json(&seed);
        if let Some(version) = version {
            request = request.header("API-Version", version);
        }
        let session = expect(request.send().await.unwrap(), 201).await;
        assert_session(&session);
        assert_eq!(session["line_items"][0]["item"]["id"], "test_1");
        assert_eq!(session["line_items"][0]["quantity"], 1);
    }
}

async fn unknown_routes_and_methods_answer_in_acp_shape(app: TestApp) {
    let missing = app.get("/nothing/here").send().await.unwrap();
    assert_error(&expect(missing, 404).await, "not_found");
    let wrong = app.client.delete(app.url("/checkout_sessions")).send().await.unwrap();
    assert_error(&expect(wrong, 405).await, "method_not_allowed");
    let unknown = app
        .get(&format!("/checkout_sessions/{}", SessionId::generate()))
        .send()
        .await
        .unwrap();
    assert_error(&expect(unknown, 404).await, "not_found");
    let garbage = app.get("/checkout_sessions/..%2F..%2Fetc").send().await.unwrap();
    assert_error(&expect(garbage, 404).await, "not_found");
}
