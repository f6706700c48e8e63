//! Every request example of the ACP specification (examples.agentic_checkout.json) is sent to
//! the server, and every response is checked against the specification's JSON Schema.

use crate::app::{TestApp, expect};
use crate::on_every_backend;
use crate::schema::assert_session;
use serde_json::Value;

const EXAMPLES: &str = include_str!("../../../spec/acp-2026-04-17/examples/examples.agentic_checkout.json");

fn example(name: &str) -> Value {
    let all: Value = serde_json::from_str(EXAMPLES).unwrap();
    all.get(name).cloned().unwrap_or_else(|| panic!("no example {name}"))
}

on_every_backend!(every_request_example_is_served);

async fn post(app: &TestApp, path: &str, example_name: &str, status: u16) -> Value {
    let response = app.post(path, &example(example_name)).send().await.unwrap();
    let body = expect(response, status).await;
    assert_session(&body);
    body
}

/// A session from the create example, updated with the update example: ready to pay.
async fn ready_session(app: &TestApp) -> String {
    let created = post(app, "/checkout_sessions", "create_checkout_session_request", 201).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let updated = post(
        app,
        &format!("/checkout_sessions/{id}"),
        "update_checkout_session_request",
        200,
    )
    .await;
    assert_eq!(updated["status"], "ready_for_payment", "{updated}");
    assert_eq!(
        updated["selected_fulfillment_options"][0]["option_id"],
        "fulfillment_option_456"
    );
    id
}

async fn every_request_example_is_served(app: TestApp) {
    let attributed = post(
        &app,
        "/checkout_sessions",
        "create_checkout_session_request_with_first_touch_attribution",
        201,
    )
    .await;
    assert_eq!(
        attributed["capabilities"]["interventions"]["supported"],
        serde_json::json!(["3ds"])
    );

    for complete in [
        "complete_checkout_session_request",
        "complete_checkout_session_request_seller_backed",
        "complete_checkout_session_request_with_last_touch_attribution",
        "complete_session_with_authentication_result_request",
    ] {
        let id = ready_session(&app).await;
        let done = post(&app, &format!("/checkout_sessions/{id}/complete"), complete, 200).await;
        assert_eq!(done["status"], "completed", "{complete}: {done}");
        assert!(done["order"]["permalink_url"].as_str().unwrap().starts_with("https://"));
    }

    let id = ready_session(&app).await;
    let denied = post(
        &app,
        &format!("/checkout_sessions/{id}/complete"),
        "complete_session_with_denied_authentication_request",
        200,
    )
    .await;
    assert_eq!(denied["status"], "ready_for_payment");
    assert_eq!(denied["messages"][0]["code"], "payment_declined");

    for cancel in [
        "cancel_checkout_session_request",
        "cancel_checkout_session_request_timing_deferred",
    ] {
        let id = ready_session(&app).await;
        let canceled = post(&app, &format!("/checkout_sessions/{id}/cancel"), cancel, 200).await;
        assert_eq!(canceled["status"], "canceled");
    }
}
