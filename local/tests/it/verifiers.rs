//! Our webhooks as receivers check them, with libraries we did not write: every delivery of a
//! checkout run through `acp-local` is verified by
//! - Python `standardwebhooks` and `svix`, Node `standardwebhooks` and `svix`, and the Rust
//!   `standardwebhooks` crate (`v1`, HMAC);
//! - PyNaCl and Node's `@noble/ed25519` (`v1a`, ed25519), with the key looked up by the
//!   delivery's `webhook-key-id` in the published `/.well-known/webhook-keys`;
//! - the `stripe` package's signature check (ACP order webhooks' `Merchant-Signature`), and
//!   Python `standardwebhooks` on the headers sent alongside it, which carry a replaced order
//!   secret's overlap.
//!
//! Each also refuses a tampered body, a timestamp outside its tolerance, the wrong key, and a key
//! rotated out whose grace has ended. The Python libraries come from `scripts/requirements-test.txt`
//! (`ACP_TEST_PYTHON`), the Node ones from `scripts/verifiers` (`ACP_TEST_NODE_VERIFIERS`); both
//! are installed by `scripts/test`.

use checkout::event::Event;
use checkout::ids::{EndpointId, MerchantId};
use checkout::signing_key::SigningKey;
use local::Stack;
use local::config::Config;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the receiver got: path, headers (lower-case names), body.
type Seen = Arc<Mutex<Vec<(String, serde_json::Map<String, Value>, String)>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_str().unwrap_or_default().to_owned())))
                    .collect();
                record.lock().unwrap().push((uri.path().to_owned(), headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}"), seen)
}

struct Merchant {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Merchant {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", ulid::Ulid::new().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn checkout(&self) {
        let session = self
            .call(
                reqwest::Method::POST,
                "/checkout_sessions",
                json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": 2}]}),
            )
            .await;
        let path = format!("/checkout_sessions/{}", session["id"].as_str().unwrap());
        let address = json!({"name": "Jane Doe", "line_one": "1 Main St", "city": "Springfield",
            "state": "IL", "country": "US", "postal_code": "62701"});
        let update = json!({
            "fulfillment_details": {"name": "Jane Doe", "email": "jane@example.com", "address": address},
            "selected_fulfillment_options": [{"type": "shipping", "option_id": "fulfillment_option_456", "item_ids": ["test_1"]}],
        });
        self.call(reqwest::Method::POST, &path, update).await;
        let payment = json!({"payment_data": {"handler_id": "card_tokenized", "instrument": {"type": "card",
            "credential": {"type": "spt", "token": "spt_test_approve"}}}});
        self.call(reqwest::Method::POST, &format!("{path}/complete"), payment)
            .await;
    }
}

async fn wait_for(seen: &Seen, path: &str, count: usize) -> Vec<(serde_json::Map<String, Value>, String)> {
    let started = Instant::now();
    loop {
        let got: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect();
        if got.len() >= count {
            return got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path}: {} of {count} arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delivery((headers, body): &(serde_json::Map<String, Value>, String)) -> Value {
    json!({"headers": headers, "body": body})
}

/// Runs a verifier program with the cases on stdin; its last line is the results as JSON.
fn run(program: &str, args: &[&str], cases: &Value) -> Value {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{program}: {err}"));
    serde_json::to_writer(child.stdin.take().unwrap(), cases).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// The Rust `standardwebhooks` crate on the same cases.
fn rust_standardwebhooks(cases: &Value) -> Value {
    let verify = |secret: &Value, d: &Value, body: &str| {
        standardwebhooks::Webhook::new(secret.as_str().unwrap())
            .unwrap()
            .verify(body.as_bytes(), &header_map(d))
    };
    let verdict = |r: Result<(), standardwebhooks::WebhookError>| if r.is_ok() { "accepted" } else { "refused" };
    let deliveries = cases["deliveries"].as_array().unwrap();
    for d in deliveries {
        verify(&cases["secret"], d, d["body"].as_str().unwrap()).expect("every delivery verifies");
    }
    let first = &deliveries[0];
    let body = first["body"].as_str().unwrap();
    let stale = &cases["stale"];
    json!({
        "verified": deliveries.len(),
        "tampered": verdict(verify(&cases["secret"], first, &body.replacen("checkout", "checkouT", 1))),
        "stale": verdict(verify(&cases["secret"], stale, stale["body"].as_str().unwrap())),
        "wrong_key": verdict(verify(&cases["wrong_secret"], first, body)),
        "rotated_out": verdict(verify(&cases["old_secret"], first, body)),
    })
}

/// The portal's Rust verification snippets, compiled as a merchant pastes them.
mod portal_hmac {
    include!("../../../api/src/portal/verify/hmac.rs");
}
mod portal_ed25519 {
    include!("../../../api/src/portal/verify/ed25519.rs");
}

fn header_map(d: &Value) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in d["headers"].as_object().unwrap() {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
        );
    }
    headers
}

/// The portal's Rust snippets on the cases, in the shape of the other verifiers' results.
fn rust_snippets(cases: &Value) -> Value {
    let secret = cases["secret"].as_str().unwrap();
    let merchant = cases["merchant_id"].as_str().unwrap();
    let hmac = |secret: &str, d: &Value, body: &str| portal_hmac::verify(secret, &header_map(d), body.as_bytes());
    let ed25519 = |merchant: &str, d: &Value, body: &str| {
        portal_ed25519::verify_v1a(&cases["jwks"], merchant, &header_map(d), body.as_bytes())
    };
    let verdict = |r: Result<Value, String>| if r.is_ok() { "accepted" } else { "refused" };
    let deliveries = cases["deliveries"].as_array().unwrap();
    for d in deliveries {
        let body = d["body"].as_str().unwrap();
        assert_eq!(hmac(secret, d, body).unwrap()["id"], d["headers"]["webhook-id"]);
        assert_eq!(ed25519(merchant, d, body).unwrap()["id"], d["headers"]["webhook-id"]);
    }
    let (first, stale) = (&deliveries[0], &cases["stale"]);
    let body = first["body"].as_str().unwrap();
    let tampered = body.replacen("checkout", "checkouT", 1);
    let stale_body = stale["body"].as_str().unwrap();
    json!({
        "portal hmac.rs": {
            "verified": deliveries.len(),
            "tampered": verdict(hmac(secret, first, &tampered)),
            "stale": verdict(hmac(secret, stale, stale_body)),
            "wrong_key": verdict(hmac(cases["wrong_secret"].as_str().unwrap(), first, body)),
        },
        "portal ed25519.rs": {
            "verified": deliveries.len(),
            "tampered": verdict(ed25519(merchant, first, &tampered)),
            "stale": verdict(ed25519(merchant, stale, stale_body)),
            "wrong_key": verdict(ed25519("merchant_someone_else", first, body)),
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_libraries_in_three_languages_verify_every_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&Config::ephemeral("sk_verifiers", dir.path().to_owned()))
        .await
        .unwrap();
    let (receiver, seen) = receiver().await;
    let merchant = Merchant {
        client: reqwest::Client::new(),
        base: stack.base_url(),
        key: stack.demo_api_key.clone(),
    };
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;
    let orders = format!("{receiver}/orders");
    merchant
        .call(
            put.clone(),
            "/order_webhook",
            json!({"url": orders, "secret": "order secret one"}),
        )
        .await;
    let endpoint = merchant
        .call(
            post.clone(),
            "/webhook_endpoints",
            json!({"url": format!("{receiver}/hook"), "signature_scheme": "both"}),
        )
        .await;
    let old_secret = endpoint["secret"].clone();

    // Signed with the first secret and key, which a rotation without grace then ends.
    merchant
        .call(
            post.clone(),
            "/checkout_sessions",
            json!({"currency": "usd", "line_items": [{"id": "test_1"}]}),
        )
        .await;
    let retired = wait_for(&seen, "/hook", 1).await.remove(0);
    let id = endpoint["id"].as_str().unwrap();
    let rotated = merchant
        .call(
            post.clone(),
            &format!("/webhook_endpoints/{id}/rotate_secret"),
            json!({"grace_period_seconds": 0}),
        )
        .await;

    merchant.checkout().await;
    merchant
        .call(
            put,
            "/order_webhook",
            json!({"url": orders, "secret": "order secret two"}),
        )
        .await;
    merchant.checkout().await;
    let deliveries = wait_for(&seen, "/hook", 1 + 6).await.split_off(1);
    let order_deliveries = wait_for(&seen, "/orders", 2).await;

    let jwks: Value = reqwest::get(format!("{}/.well-known/webhook-keys", stack.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The same key ids with other keys: what a receiver holding the wrong keys has.
    let mut wrong_jwks = jwks.clone();
    for jwk in wrong_jwks["keys"].as_array_mut().unwrap() {
        jwk["x"] = SigningKey::generate(checkout::clock::now()).unwrap().jwk().unwrap()["x"].clone();
    }
    // Signed correctly ten minutes ago, by our own signer with the endpoint's current credentials.
    let stored = stack
        .backend
        .endpoints
        .endpoint(
            &MerchantId::parse(local::DEMO_MERCHANT_ID).unwrap(),
            &EndpointId::parse(id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let (_, body) = &deliveries[0];
    let event: Event = serde_json::from_str(body).unwrap();
    let ten_minutes_ago = checkout::clock::now() - chrono::Duration::minutes(10);
    let stale =
        dispatcher::request::standard(&(&event).into(), body.clone().into(), &stored, 1, ten_minutes_ago).unwrap();
    let stale_headers: serde_json::Map<String, Value> = stale
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_str().unwrap().to_owned())))
        .collect();
    let (_, order_body) = &order_deliveries[1];
    let stale_order = checkout::signature::merchant_signature(
        b"order secret two",
        ten_minutes_ago.timestamp(),
        order_body.as_bytes(),
    )
    .unwrap();

    let cases = json!({
        "merchant_id": local::DEMO_MERCHANT_ID,
        "deliveries": deliveries.iter().map(delivery).collect::<Vec<_>>(),
        "secret": rotated["secret"],
        "old_secret": old_secret,
        "wrong_secret": checkout::webhook_endpoint::generate_secret().unwrap(),
        "stale": {"headers": stale_headers, "body": body},
        "jwks": jwks,
        "wrong_jwks": wrong_jwks,
        "retired": delivery(&retired),
        "orders": [
            {"headers": order_deliveries[0].0, "body": order_deliveries[0].1, "secret": "order secret one",
             "secrets_in_force": ["order secret one"]},
            // The first secret signs on beside the second through the default grace (24 h).
            {"headers": order_deliveries[1].0, "body": order_deliveries[1].1, "secret": "order secret two",
             "secrets_in_force": ["order secret two", "order secret one"]},
        ],
        "order_stale": {"headers": {"merchant-signature": stale_order}, "body": order_body, "secret": "order secret two"},
    });
    assert!(
        retired.0["webhook-key-id"] != deliveries[0].0["webhook-key-id"],
        "the rotation changed the signing key"
    );

    let python = std::env::var("ACP_TEST_PYTHON")
        .expect("ACP_TEST_PYTHON is not set: run the suite with scripts/test, which installs the verifiers");
    let node_dir = std::env::var("ACP_TEST_NODE_VERIFIERS")
        .expect("ACP_TEST_NODE_VERIFIERS is not set: run the suite with scripts/test, which installs the verifiers");
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/verifiers");
    let mut results = run(&python, &[&format!("{scripts}/verify.py")], &cases);
    let node = run("node", &[&format!("{node_dir}/verify.mjs")], &cases);
    results
        .as_object_mut()
        .unwrap()
        .extend(node.as_object().unwrap().clone());
    results["standardwebhooks (crates.io)"] = rust_standardwebhooks(&cases);

    let overlap = &results["standardwebhooks (PyPI), order webhooks"];
    assert_eq!(overlap["verified"], 3, "{overlap}");
    assert_eq!(
        (&overlap["tampered"], &overlap["wrong_key"]),
        (&json!("refused"), &json!("refused"))
    );
    let expected_libraries = [
        "standardwebhooks (PyPI)",
        "svix (PyPI)",
        "PyNaCl",
        "stripe (PyPI)",
        "standardwebhooks (npm)",
        "svix (npm)",
        "@noble/ed25519 (npm)",
        "standardwebhooks (crates.io)",
    ];
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
    for library in expected_libraries {
        let result = &results[library];
        let expected = if library.starts_with("stripe") { 2 } else { 6 };
        assert_eq!(result["verified"], expected, "{library}: {result}");
        for case in ["tampered", "stale", "wrong_key", "rotated_out"] {
            assert_eq!(result[case], "refused", "{library} accepted the {case} case: {result}");
        }
    }
    assert_eq!(results.as_object().unwrap().len(), expected_libraries.len() + 1);

    // The portal's verification code, in each language, run as a merchant pastes it (the
    // ed25519 ones fetch the key set from the running stack).
    let snippets = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/src/portal/verify");
    let keys_url = format!("{}/.well-known/webhook-keys", stack.base_url());
    let mut pasted = run(
        &python,
        &[&format!("{scripts}/snippets.py"), snippets, &keys_url],
        &cases,
    );
    let node = run(
        "node",
        &[&format!("{node_dir}/snippets.mjs"), snippets, &keys_url],
        &cases,
    );
    pasted
        .as_object_mut()
        .unwrap()
        .extend(node.as_object().unwrap().clone());
    pasted
        .as_object_mut()
        .unwrap()
        .extend(rust_snippets(&cases).as_object().unwrap().clone());
    println!("{}", serde_json::to_string_pretty(&pasted).unwrap());
    let names = [
        "hmac.py",
        "ed25519.py",
        "hmac.mjs",
        "ed25519.mjs",
        "hmac.rs",
        "ed25519.rs",
    ];
    for name in names {
        let result = &pasted[format!("portal {name}")];
        assert_eq!(result["verified"], 6, "{name}: {result}");
        for case in ["tampered", "stale", "wrong_key"] {
            assert_eq!(result[case], "refused", "{name} accepted the {case} case: {result}");
        }
    }
    assert_eq!(pasted.as_object().unwrap().len(), names.len());
    stack.shutdown().await.unwrap();
}
