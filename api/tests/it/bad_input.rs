//! Bad input gets a flat ACP error that names the problem, and changes nothing.

use crate::app::{TestApp, expect, shipping_details};
use crate::on_every_backend;
use crate::schema::assert_error;
use serde_json::{Value, json};

on_every_backend!(
    bad_create_bodies_are_refused_and_store_nothing,
    bad_updates_leave_the_session_as_it_was,
    oversized_body_is_413,
    missing_or_wrong_api_key_is_401,
    unsupported_api_version_lists_the_supported_ones,
    array_bodies_cancel_nothing,
    undecodable_ids_are_404_in_the_acp_shape,
    a_cart_too_large_to_publish_is_refused_and_a_large_one_completes,
    an_update_that_changes_nothing_appends_nothing,
    merchant_api_refusals_name_the_field_in_plain_words,
    an_api_version_that_is_not_text_is_refused,
);

/// An API-Version that is not ASCII text is refused, not ignored (the keys' rules are in the
/// idempotency suite).
async fn an_api_version_that_is_not_text_is_refused(app: TestApp) {
    use reqwest::header::HeaderValue;
    let version = app
        .get("/webhook_endpoints")
        .header(
            "API-Version",
            HeaderValue::from_bytes("2026-04-17é".as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_error(&expect(version, 400).await, "unsupported_api_version");
}

/// A refusal's message is for people: it says what was wrong in JSON's words, never in Rust's
/// (`expected u32`, `struct Address`, chrono's `premature end of input`).
fn assert_plain_words(message: &str, case: &str) {
    assert!(!message.is_empty(), "{case}");
    for rust in [
        "i64",
        "u32",
        "u64",
        "usize",
        "struct ",
        "premature",
        "EOF",
        "variant",
        "`",
        "Some(",
        "None",
    ] {
        assert!(!message.contains(rust), "{case}: '{rust}' in {message}");
    }
}

async fn merchant_api_refusals_name_the_field_in_plain_words(app: TestApp) {
    let endpoint = expect(
        app.post("/webhook_endpoints", &json!({"url": "https://hooks.example.com/a"}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let cases = [
        (
            "/webhook_endpoints".to_owned(),
            json!({"url": "https://hooks.example.com/b", "rate_limit": "fast"}),
            "$.rate_limit",
            "expected a whole number, 0 or more, got the string \"fast\"",
        ),
        (
            "/webhook_endpoints".to_owned(),
            json!({"url": "https://hooks.example.com/b", "enabled": "yes"}),
            "$.enabled",
            "expected true or false",
        ),
        (
            format!("/webhook_endpoints/{id}/replay"),
            json!({"since": "yesterday"}),
            "$.since",
            "expected an RFC 3339 time such as 2026-04-17T09:30:00Z, got the string \"yesterday\"",
        ),
        (
            format!("/webhook_endpoints/{id}/replay"),
            json!({"until": "2026-04-17T09:30:00Z"}),
            "$.since",
            "$.since is required",
        ),
        (
            format!("/webhook_endpoints/{id}/rotate_secret"),
            json!({"grace_period_seconds": 1.5}),
            "$.grace_period_seconds",
            "expected an integer, got the number 1.5",
        ),
    ];
    for (path, body, param, says) in cases {
        let response = app.post(&path, &body).send().await.unwrap();
        let error = expect(response, 400).await;
        let message = error["message"].as_str().unwrap();
        assert_eq!(error["param"], param, "{path} {body}: {error}");
        assert!(message.contains(says), "{path} {body}: {message}");
        assert_plain_words(message, &path);
    }
}

/// Setting what is already there (no fulfillment option on a session without one, the same
/// address twice) answers the session as it is and appends no event, so no webhook goes out.
async fn an_update_that_changes_nothing_appends_nothing(app: TestApp) {
    let id = app.create().await["id"].as_str().unwrap().to_owned();
    let path = format!("/checkout_sessions/{id}");
    let same = app
        .post(&path, &json!({"selected_fulfillment_options": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(same, 200).await["id"], id.as_str());
    assert_eq!(app.history_len(&id).await, 1, "nothing appended");
    expect(app.post(&path, &shipping_details()).send().await.unwrap(), 200).await;
    assert_eq!(app.history_len(&id).await, 2);
    let again = expect(app.post(&path, &shipping_details()).send().await.unwrap(), 200).await;
    assert_eq!(again["status"], "ready_for_payment");
    assert_eq!(app.history_len(&id).await, 2, "the same address again appends nothing");
}

/// `n` line items, one per catalog item `item_0`, `item_1`, …
fn lines(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"id": format!("item_{i}"), "quantity": 1}))
            .collect(),
    )
}

/// Gives the app's merchant a catalog of `n` more items (`item_0`…), before its first request.
async fn big_catalog(app: &TestApp, n: usize) {
    let mut merchant = app.backend.merchants.merchant(&app.merchant.id).await.unwrap().unwrap();
    let template = merchant.catalog.items[0].clone();
    for i in 0..n {
        let mut item = template.clone();
        item.id = format!("item_{i}");
        item.name = format!("Catalog item number {i}");
        merchant.catalog.items.push(item);
    }
    app.backend.merchants.put_merchant(&merchant).await.unwrap();
}

/// A session whose event could never travel the pipeline (SNS takes 256 KiB) is refused with a
/// 400 that names the limit, and nothing is stored; before, it was stored (201) and its
/// webhooks were lost, or the API answered 503 "retry later" forever. A large cart under the
/// limit can still be updated and completed.
async fn a_cart_too_large_to_publish_is_refused_and_a_large_one_completes(app: TestApp) {
    big_catalog(&app, 700).await;
    let huge = json!({"currency": "usd", "line_items": lines(700)});
    let refused = app.post("/checkout_sessions", &huge).send().await.unwrap();
    let body = expect(refused, 400).await;
    assert_error(&body, "session_too_large");
    assert!(body["message"].as_str().unwrap().contains("KiB"), "{body}");

    let large = json!({"currency": "usd", "line_items": lines(300)});
    let created = expect(app.post("/checkout_sessions", &large).send().await.unwrap(), 201).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let size = serde_json::to_vec(&created).unwrap().len();
    assert!(size > 100 * 1024, "a large cart: {size} bytes");
    let grown = json!({"line_items": lines(700)});
    let refused = app
        .post(&format!("/checkout_sessions/{id}"), &grown)
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 400).await, "session_too_large");
    assert_eq!(app.history_len(&id).await, 1, "the refused update stored nothing");

    expect(
        app.post(&format!("/checkout_sessions/{id}"), &shipping_details())
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let done = app.complete(&id, "tok_visa").await;
    let done = expect(done, 200).await;
    assert_eq!(done["status"], "completed", "{}", &done.to_string()[..200]);
    let history = app.history_len(&id).await;
    assert_eq!(history, 3);
    let id = checkout::ids::SessionId::parse(&id).unwrap();
    for event in app.backend.events.history(&id).await.unwrap() {
        assert!(event.encoded_len() <= checkout::event::MAX_EVENT_BYTES);
        let session = serde_json::to_vec(&event.data).unwrap().len();
        assert!(
            event.encoded_len() <= session + checkout::event::ENVELOPE_BYTES,
            "the envelope bound holds"
        );
    }
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    code: &'static str,
    param: Option<&'static str>,
}

fn case(name: &'static str, body: Value, code: &'static str, param: Option<&'static str>) -> Case {
    Case {
        name,
        body: serde_json::to_vec(&body).unwrap(),
        code,
        param,
    }
}

fn create_cases() -> Vec<Case> {
    let address = json!({"name": "J", "line_one": "1 Main", "city": "X", "state": "IL", "country": "US",
                         "postal_code": "1", "planet": "Mars"});
    let deep = format!(
        r#"{{"currency":"usd","line_items":[{{"id":"test_1"}}],"metadata":{{"x":{}1{}}}}}"#,
        "[".repeat(125),
        "]".repeat(125)
    );
    vec![
        Case {
            name: "125 nested arrays in metadata (the stored event could never be read back)",
            body: deep.into_bytes(),
            code: "invalid_request",
            param: None,
        },
        Case {
            name: "an array instead of an object",
            body: br#"[null,[{"id":"test_1","quantity":3}],null,"usd"]"#.to_vec(),
            code: "invalid_request",
            param: None,
        },
        Case {
            name: "malformed JSON",
            body: br#"{"currency": "usd", "line_items": ["#.to_vec(),
            code: "invalid_json",
            param: None,
        },
        Case {
            name: "trailing garbage",
            body: br#"{"currency": "usd", "line_items": [{"id": "test_1"}]} {}"#.to_vec(),
            code: "invalid_json",
            param: None,
        },
        case("not an object", json!([1, 2]), "invalid_request", None),
        case(
            "wrong type",
            json!({"currency": 5, "line_items": [{"id": "test_1"}]}),
            "invalid_request",
            Some("$.currency"),
        ),
        case(
            "quantity as string",
            json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": "2"}]}),
            "invalid_request",
            Some("$.line_items[0].quantity"),
        ),
        case(
            "missing currency",
            json!({"line_items": [{"id": "test_1"}]}),
            "invalid_request",
            None,
        ),
        case(
            "unknown top-level field",
            json!({"currency": "usd", "line_items": [{"id": "test_1"}], "discount_me": true}),
            "invalid_request",
            None,
        ),
        case(
            "unknown nested field",
            json!({"currency": "usd", "line_items": [{"id": "test_1"}], "fulfillment_details": {"address": address}}),
            "invalid_request",
            Some("$.fulfillment_details.address"),
        ),
        case(
            "unknown item id",
            json!({"currency": "usd", "line_items": [{"id": "test_1"}, {"id": "no_such_item"}]}),
            "invalid_item_id",
            Some("$.line_items[1].id"),
        ),
        case(
            "quantity 0",
            json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": 0}]}),
            "invalid_quantity",
            Some("$.line_items[0].quantity"),
        ),
        case(
            "negative quantity",
            json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": -3}]}),
            "invalid_quantity",
            Some("$.line_items[0].quantity"),
        ),
        case(
            "empty cart",
            json!({"currency": "usd", "line_items": []}),
            "missing",
            Some("$.line_items"),
        ),
        case(
            "other currency",
            json!({"currency": "eur", "line_items": [{"id": "test_1"}]}),
            "unsupported_currency",
            Some("$.currency"),
        ),
    ]
}

async fn bad_create_bodies_are_refused_and_store_nothing(app: TestApp) {
    for (i, case) in create_cases().into_iter().enumerate() {
        let key = format!("bad-{i}");
        let response = app
            .post_keyed("/checkout_sessions", &json!(null), &key)
            .body(case.body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{}: {error}", case.name);
        assert_error(&error, case.code);
        if let Some(param) = case.param {
            let got = error["param"].as_str().unwrap_or_default();
            assert!(
                got.starts_with(param),
                "{}: param {got} should start with {param}",
                case.name
            );
        }
        assert_plain_words(error["message"].as_str().unwrap(), case.name);

        // Nothing was stored under the key: a good request with it runs as new.
        let retry = app
            .post_keyed(
                "/checkout_sessions",
                &json!({"currency": "usd", "line_items": [{"id": "test_1"}]}),
                &key,
            )
            .send()
            .await
            .unwrap();
        assert!(retry.headers().get("idempotent-replayed").is_none(), "{}", case.name);
        expect(retry, 201).await;
    }
}

async fn bad_updates_leave_the_session_as_it_was(app: TestApp) {
    let ready = app.ready().await;
    let id = ready["id"].as_str().unwrap();
    let path = format!("/checkout_sessions/{id}");
    let bodies = [
        (
            json!({"line_items": [{"id": "test_1", "quantity": 0}]}),
            "invalid_quantity",
        ),
        (json!({"line_items": [{"id": "ghost"}]}), "invalid_item_id"),
        (json!({"buyer": {"first_name": "No email"}}), "invalid_request"),
        (
            json!({"selected_fulfillment_options": [{"type": "shipping", "option_id": "teleport"}]}),
            "invalid_fulfillment_option",
        ),
        (json!({"order_notes": 12}), "invalid_request"),
        (json!({"currency": "usd"}), "invalid_request"),
        (json!({}), "invalid_request"),
        (json!([]), "invalid_request"),
    ];
    for (body, code) in bodies {
        let response = app.post(&path, &body).send().await.unwrap();
        assert_error(&expect(response, 400).await, code);
    }
    assert_eq!(app.history_len(id).await, 2);
    let now = expect(app.get(&path).send().await.unwrap(), 200).await;
    assert_eq!(now, ready);

    let wrong_type = app
        .post(&path, &json!({"fulfillment_details": "home"}))
        .send()
        .await
        .unwrap();
    assert_error(&expect(wrong_type, 400).await, "invalid_request");
    let fine = app.post(&path, &shipping_details()).send().await.unwrap();
    expect(fine, 200).await;
}

async fn oversized_body_is_413(app: TestApp) {
    let filler = "a".repeat(api::MAX_BODY_BYTES);
    let body = json!({"currency": "usd", "line_items": [{"id": "test_1"}], "metadata": {"filler": filler}});
    let response = app.post("/checkout_sessions", &body).send().await.unwrap();
    assert_error(&expect(response, 413).await, "request_too_large");
}

async fn missing_or_wrong_api_key_is_401(app: TestApp) {
    let body = json!({"currency": "usd", "line_items": [{"id": "test_1"}]});
    let anonymous = app
        .client
        .post(app.url("/checkout_sessions"))
        .header("Idempotency-Key", "anon")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_error(&expect(anonymous, 401).await, "missing_api_key");
    let wrong = app
        .post_as("sk_acp_not_a_real_key", "/checkout_sessions", &body)
        .send()
        .await
        .unwrap();
    assert_error(&expect(wrong, 401).await, "invalid_api_key");
    let basic = app
        .client
        .get(app.url("/checkout_sessions/cs_x"))
        .basic_auth("user", Some("pass"))
        .send()
        .await
        .unwrap();
    assert_error(&expect(basic, 401).await, "missing_api_key");
}

async fn unsupported_api_version_lists_the_supported_ones(app: TestApp) {
    let body = json!({"currency": "usd", "line_items": [{"id": "test_1"}]});
    let response = app
        .client
        .post(app.url("/checkout_sessions"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "v")
        .header("API-Version", "1999-01-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let error = expect(response, 400).await;
    assert_error(&error, "unsupported_api_version");
    assert_eq!(error["supported_versions"], json!(["2026-04-17", "2025-09-29"]));
}

/// `[]` was read as an empty struct: it cancelled sessions.
async fn array_bodies_cancel_nothing(app: TestApp) {
    let ready = app.ready().await;
    let id = ready["id"].as_str().unwrap();
    let cancel = app
        .post(&format!("/checkout_sessions/{id}/cancel"), &json!([]))
        .send()
        .await
        .unwrap();
    assert_error(&expect(cancel, 400).await, "invalid_request");
    assert_eq!(app.history_len(id).await, 2, "not cancelled");
}

/// `%ff` is no UTF-8: the router's own refusal was a plain-text 400.
async fn undecodable_ids_are_404_in_the_acp_shape(app: TestApp) {
    for path in [
        "/checkout_sessions/%ff",
        "/checkout_sessions/cs_%ff%fe",
        "/webhook_endpoints/%ff",
        "/events/%c3%28/attempts",
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        assert_error(&expect(response, 404).await, "not_found");
    }
    let update = app
        .post("/checkout_sessions/%ff", &json!({"order_notes": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(&expect(update, 404).await, "not_found");
}

/// An API on a socket of its own (the state's body read timeout as given), and a merchant's key.
async fn serve_raw(read_timeout: std::time::Duration) -> (std::net::SocketAddr, String) {
    let backend = embedded_backend::EmbeddedStore::backend();
    let state = api::AppState::new(
        backend.clone(),
        std::sync::Arc::new(checkout::payment::TestPaymentProcessor::new()),
    )
    .with_body_read_timeout(read_timeout);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
    let (_, api_key) = crate::app::add_merchant(&backend).await;
    (addr, api_key)
}

/// Writes `request` as given and reads the answer (up to 10 s).
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that sends part of its body and then nothing holds a connection: after the body
/// timeout it gets a 408 in the ACP error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_a_408() {
    let (addr, api_key) = serve_raw(std::time::Duration::from_secs(1)).await;
    let text = raw_exchange(
        addr,
        &format!(
            "POST /checkout_sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n\
             Idempotency-Key: slow-1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"currency\""
        ),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
}

/// A body announced larger than the limit is refused before it is read: not a 408 after the
/// read timeout (30 s here, longer than the exchange waits).
#[tokio::test]
async fn a_body_announced_too_large_is_413_at_once() {
    let (addr, api_key) = serve_raw(std::time::Duration::from_secs(30)).await;
    let text = raw_exchange(
        addr,
        &format!(
            "POST /checkout_sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n\
             Idempotency-Key: big-1\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n{{}}"
        ),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"request_too_large\""), "{text}");
}
