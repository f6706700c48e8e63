//! The API as the SessionManagerFunction gets it: API Gateway HTTP API events (payload format
//! 2.0), parsed by `lambda_http` as on Lambda, on a named stage and on `$default`.

use crate::app::{add_merchant, embedded};
use axum::body::Body;
use checkout::payment::TestPaymentProcessor;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

/// The event API Gateway sends for `POST {raw_path}` on `stage`, as it does for the template's
/// `ANY /{proxy+}` route: on a named stage, `rawPath` and `http.path` start with the stage.
fn http_api_event(stage: &str, raw_path: &str, api_key: &str, body: &Value) -> String {
    json!({
        "version": "2.0",
        "routeKey": "ANY /{proxy+}",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {api_key}"),
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "api-version": "2026-04-17",
            "idempotency-key": format!("{stage}{raw_path}"),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "agent"
            },
            "requestId": "req-1",
            "routeKey": "ANY /{proxy+}",
            "stage": stage,
            "time": "02/Dec/2026:05:00:00 +0000",
            "timeEpoch": 1_795_928_400_000u64
        },
        "pathParameters": { "proxy": raw_path.trim_start_matches('/') },
        "body": body.to_string(),
        "isBase64Encoded": false
    })
    .to_string()
}

async fn status_of(service_stage: &str, raw_path: &str) -> (u16, Value) {
    let backend = embedded().await;
    let (_, api_key) = add_merchant(&backend).await;
    let state = api::AppState::new(backend, Arc::new(TestPaymentProcessor::new()));
    let body = json!({"currency": "usd", "line_items": [{"id": "test_1"}]});
    let event = http_api_event(service_stage, raw_path, &api_key, &body);
    let request = lambda_http::request::from_str(&event).expect("an HTTP API event");
    let response = api::lambda::service(state).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The template's named stage: every route answered 404 before the stage was stripped.
#[tokio::test]
async fn a_named_stage_reaches_the_routes() {
    let (status, body) = status_of("dev", "/dev/checkout_sessions").await;
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("cs_"));
}

#[tokio::test]
async fn the_default_stage_reaches_the_routes() {
    let (status, body) = status_of("$default", "/checkout_sessions").await;
    assert_eq!(status, 201, "{body}");
}

/// A stage named like the start of a route: only the stage segment goes.
#[tokio::test]
async fn a_stage_named_like_a_route_prefix_is_stripped_once() {
    let (status, body) = status_of("check", "/check/checkout_sessions").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = status_of("dev", "/dev").await;
    assert_eq!(status, 404, "{body}");
}

#[test]
fn the_bootstrap_answers_help_and_refuses_to_run_outside_lambda() {
    aws_backend::testkit::check_bootstrap_outside_lambda(env!("CARGO_BIN_EXE_session-manager"), &api::lambda::USAGE);
}
