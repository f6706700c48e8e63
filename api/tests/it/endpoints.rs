//! Webhook endpoints: CRUD, secret rotation, tenant isolation, and the URL rules (SSRF).

use crate::app::{TestApp, add_merchant, expect};
use crate::on_every_backend;
use crate::schema::assert_error;
use checkout::ids::EndpointId;
use checkout::url_safety::UrlPolicy;
use serde_json::{Value, json};

on_every_backend!(
    endpoint_lifecycle,
    rotation_keeps_the_old_secret_for_the_grace_period,
    endpoints_are_private_to_their_merchant,
    bad_endpoint_fields_are_refused,
    dangerous_urls_are_refused,
    order_webhook_is_configured_per_merchant,
    an_array_body_rotates_nothing,
    rotations_racing_edits_are_never_undone,
    a_repeated_registration_with_its_key_creates_one_endpoint,
    an_empty_body_and_an_empty_object_are_the_same_request,
    ed25519_endpoints_publish_their_keys,
    a_merchant_has_a_bounded_number_of_endpoints,
    a_test_event_is_queued_for_the_endpoint_alone,
);

/// `POST /webhook_endpoints/{id}/test` queues one `webhook.test` task for that endpoint; a
/// disabled endpoint is a 409, another merchant's a 404, and nothing is queued for either.
async fn a_test_event_is_queued_for_the_endpoint_alone(app: TestApp) {
    use checkout::ports::DeliveryQueue;
    let endpoint = app
        .create_endpoint(json!({"url": "https://hooks.example.com/test"}))
        .await;
    let id = endpoint["id"].as_str().unwrap();
    let path = format!("/webhook_endpoints/{id}/test");
    let queued = expect(app.send(reqwest::Method::POST, &path, None).send().await.unwrap(), 202).await;
    assert_eq!(queued["type"], "webhook.test");
    assert_eq!(queued["endpoint_id"], id);
    let messages = app
        .queue
        .receive(10, std::time::Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    let task: Value = serde_json::from_str(&messages[0].body).unwrap();
    assert_eq!(task["delivery"]["target"], id);
    assert_eq!(task["event"]["type"], "webhook.test");
    assert_eq!(task["event"]["id"], queued["event_id"]);
    assert_eq!(task["event"]["merchant_id"], app.merchant.id.as_str());
    assert_eq!(task["delivery"].get("replay"), None, "a test is no replay");

    let disable = json!({"enabled": false});
    expect(
        app.send(
            reqwest::Method::PATCH,
            &format!("/webhook_endpoints/{id}"),
            Some(disable),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    let refused = app.send(reqwest::Method::POST, &path, None).send().await.unwrap();
    assert_error(&expect(refused, 409).await, "endpoint_disabled");
    let (_, other_key) = add_merchant(&app.backend).await;
    let foreign = app.post_as(&other_key, &path, &json!({})).send().await.unwrap();
    assert_error(&expect(foreign, 404).await, "not_found");
    let left = app
        .queue
        .receive(10, std::time::Duration::from_millis(100))
        .await
        .unwrap();
    assert!(left.is_empty(), "nothing queued for a refusal: {left:?}");
}

/// Each endpoint adds to every read of the merchant's endpoints and, with ed25519, to the public
/// key set: a merchant's script cannot add them without end.
async fn a_merchant_has_a_bounded_number_of_endpoints(app: TestApp) {
    use checkout::webhook_endpoint::MAX_ENDPOINTS_PER_MERCHANT;
    for i in 0..MAX_ENDPOINTS_PER_MERCHANT {
        app.create_endpoint(json!({"url": format!("https://hooks.example.com/{i}")}))
            .await;
    }
    let one_more = json!({"url": "https://hooks.example.com/one-more", "signature_scheme": "ed25519"});
    let refused = app
        .send(reqwest::Method::POST, "/webhook_endpoints", Some(one_more))
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 409).await, "too_many_endpoints");
    let listed = expect(
        app.send(reqwest::Method::GET, "/webhook_endpoints", None)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        MAX_ENDPOINTS_PER_MERCHANT,
        "nothing stored"
    );
    let first = listed["data"][0]["id"].as_str().unwrap();
    let deleted = app
        .send(reqwest::Method::DELETE, &format!("/webhook_endpoints/{first}"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.create_endpoint(json!({"url": "https://hooks.example.com/after-a-delete"}))
        .await;
}

async fn jwks(app: &TestApp) -> Vec<Value> {
    // No API key: receivers fetch it anonymously.
    let response = app
        .client
        .get(app.url("/.well-known/webhook-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("mer_") && !text.contains("we_"),
        "names no merchant or endpoint: {text}"
    );
    assert!(
        !text.contains("whsk_") && !text.contains("\"d\""),
        "no private part: {text}"
    );
    let set: Value = serde_json::from_str(&text).unwrap();
    set["keys"].as_array().unwrap().clone()
}

fn kids(keys: &[Value]) -> Vec<String> {
    keys.iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// An endpoint asks for ed25519: it shows its public key (never the private one), the key is in
/// the JWK Set at once, a rotation publishes the new key beside the old one for the grace, and
/// going back to hmac or deleting the endpoint takes its keys out of the set.
async fn ed25519_endpoints_publish_their_keys(app: TestApp) {
    let before = kids(&jwks(&app).await);
    let hmac = app
        .create_endpoint(json!({"url": "https://hooks.example.com/hmac"}))
        .await;
    assert_eq!(hmac["signature_scheme"], "hmac");
    assert_eq!(hmac["signing_keys"], json!([]));
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/ed", "signature_scheme": "ed25519"}))
        .await;
    assert!(!created.to_string().contains("whsk_"), "{created}");
    assert_eq!(created["signature_scheme"], "ed25519");
    let first = created["signing_keys"][0].clone();
    assert!(first["public_key"].as_str().unwrap().starts_with("whpk_"));
    assert_eq!(first["expires_at"], Value::Null);
    let keys = jwks(&app).await;
    assert_eq!(
        kids(&keys).len(),
        before.len() + 1,
        "the hmac endpoint publishes nothing"
    );
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == first["kid"])
        .expect("published at once");
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["use"], &jwk["alg"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("sig"), &json!("EdDSA"))
    );

    let id = created["id"].as_str().unwrap();
    let rotate = format!("/webhook_endpoints/{id}/rotate_secret");
    let rotated = expect(
        app.send(
            reqwest::Method::POST,
            &rotate,
            Some(json!({"grace_period_seconds": 3600})),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    let shown = rotated["signing_keys"].as_array().unwrap();
    assert_eq!(shown.len(), 2, "current, then the one in grace: {rotated}");
    assert_eq!(shown[1]["kid"], first["kid"]);
    assert!(shown[1]["expires_at"].is_string());
    let second = shown[0]["kid"].as_str().unwrap().to_owned();
    let published = kids(&jwks(&app).await);
    assert!(published.contains(&second) && published.contains(&first["kid"].as_str().unwrap().to_owned()));

    let path = format!("/webhook_endpoints/{id}");
    let back = json!({"signature_scheme": "hmac"});
    let patched = expect(
        app.send(reqwest::Method::PATCH, &path, Some(back))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(patched["signing_keys"], json!([]));
    assert_eq!(kids(&jwks(&app).await), before, "retired at once");
    // v1 signatures turned on: a fresh secret, shown in this answer (the one kept while they
    // were off is not used again).
    let fresh = patched["secret"].as_str().expect("the fresh secret is shown");
    assert!(
        fresh.starts_with("whsec_") && Some(fresh) != created["secret"].as_str(),
        "{patched}"
    );

    let again = json!({"signature_scheme": "both"});
    let patched = expect(
        app.send(reqwest::Method::PATCH, &path, Some(again))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(
        patched.get("secret").is_none(),
        "v1 went on signing: nothing new to show"
    );
    let third = patched["signing_keys"][0]["kid"].as_str().unwrap().to_owned();
    assert!(kids(&jwks(&app).await).contains(&third));
    let bad = json!({"signature_scheme": "rsa"});
    let refused = app.send(reqwest::Method::PATCH, &path, Some(bad)).send().await.unwrap();
    let refused = expect(refused, 400).await;
    assert!(
        refused["message"].as_str().unwrap().contains("signature_scheme"),
        "{refused}"
    );
    assert_eq!(
        app.send(reqwest::Method::DELETE, &path, None)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        kids(&jwks(&app).await),
        before,
        "a deleted endpoint's keys leave the set"
    );
}

/// A rotation retried with the same key is the same request whether it sends nothing or `{}`:
/// the retry gets the first answer (it was refused as a different request, 422).
async fn an_empty_body_and_an_empty_object_are_the_same_request(app: TestApp) {
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/acp"}))
        .await;
    let path = format!("/webhook_endpoints/{}/rotate_secret", created["id"].as_str().unwrap());
    let first = app
        .send(reqwest::Method::POST, &path, None)
        .header("Idempotency-Key", "rotate-once")
        .send()
        .await
        .unwrap();
    let first = expect(first, 200).await;
    let again = app
        .send(reqwest::Method::POST, &path, Some(json!({})))
        .header("Idempotency-Key", "rotate-once")
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(expect(again, 200).await["secret"], first["secret"], "rotated once");
}

impl TestApp {
    fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path)).bearer_auth(&self.api_key);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    }

    async fn list_endpoints(&self) -> Value {
        expect(
            self.send(reqwest::Method::GET, "/webhook_endpoints", None)
                .send()
                .await
                .unwrap(),
            200,
        )
        .await
    }

    async fn create_endpoint(&self, body: Value) -> Value {
        expect(
            self.send(reqwest::Method::POST, "/webhook_endpoints", Some(body))
                .send()
                .await
                .unwrap(),
            201,
        )
        .await
    }
}

async fn endpoint_lifecycle(app: TestApp) {
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/acp", "description": "orders"}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("we_"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["event_types"], json!([]));
    assert_eq!(created["enabled"], true);

    let list = app.list_endpoints().await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("secret").is_none(), "the secret is shown only once");

    let path = format!("/webhook_endpoints/{id}");
    let patch = json!({"event_types": ["checkout.session.completed"], "rate_limit": 25, "enabled": false});
    let patched = expect(
        app.send(reqwest::Method::PATCH, &path, Some(patch))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(patched["event_types"], json!(["checkout.session.completed"]));
    assert_eq!(
        (patched["rate_limit"].as_u64(), patched["enabled"].as_bool()),
        (Some(25), Some(false))
    );
    assert_eq!(patched["description"], "orders", "fields not sent are kept");
    let unlimited = json!({"rate_limit": null});
    let patched = expect(
        app.send(reqwest::Method::PATCH, &path, Some(unlimited))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(patched["rate_limit"], Value::Null);
    let empty = app
        .send(reqwest::Method::PATCH, &path, Some(json!({})))
        .send()
        .await
        .unwrap();
    assert_error(&expect(empty, 400).await, "nothing_to_update");

    let fetched = expect(app.send(reqwest::Method::GET, &path, None).send().await.unwrap(), 200).await;
    assert_eq!(fetched, patched);
    let deleted = app.send(reqwest::Method::DELETE, &path, None).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app.send(reqwest::Method::GET, &path, None).send().await.unwrap();
    assert_error(&expect(gone, 404).await, "not_found");
    let again = app.send(reqwest::Method::DELETE, &path, None).send().await.unwrap();
    assert_error(&expect(again, 404).await, "not_found");
}

async fn rotation_keeps_the_old_secret_for_the_grace_period(app: TestApp) {
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/acp"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let old = created["secret"].as_str().unwrap();
    let path = format!("/webhook_endpoints/{id}/rotate_secret");
    let answer = app.send(reqwest::Method::POST, &path, None).send().await.unwrap();
    assert_eq!(
        answer.headers()["cache-control"],
        "no-store",
        "an answer with a secret is never cached"
    );
    let rotated = expect(answer, 200).await;
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(old, new);

    let stored = app
        .backend
        .endpoints
        .endpoint(&app.merchant.id, &EndpointId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let now = checkout::clock::now();
    assert_eq!(stored.signing_secrets(now).collect::<Vec<_>>(), vec![new, old]);
    let grace_end = stored.secrets[1].expires_at.unwrap();
    let hours = (grace_end - now).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "default grace is 24 h, got {hours}");
    let after = now + chrono::Duration::hours(25);
    assert_eq!(stored.signing_secrets(after).collect::<Vec<_>>(), vec![new]);

    let short = json!({"grace_period_seconds": 60});
    let rotated = expect(
        app.send(reqwest::Method::POST, &path, Some(short))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_ne!(rotated["secret"], new);
    let too_long = json!({"grace_period_seconds": 8 * 86_400});
    let refused = app
        .send(reqwest::Method::POST, &path, Some(too_long))
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 400).await, "invalid_grace_period");
}

async fn endpoints_are_private_to_their_merchant(app: TestApp) {
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/acp"}))
        .await;
    let path = format!("/webhook_endpoints/{}", created["id"].as_str().unwrap());
    let (_, other) = add_merchant(&app.backend).await;
    let as_other = |method: reqwest::Method, path: &str| app.client.request(method, app.url(path)).bearer_auth(&other);

    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        assert_error(
            &expect(as_other(method, &path).send().await.unwrap(), 404).await,
            "not_found",
        );
    }
    let patch = as_other(reqwest::Method::PATCH, &path).json(&json!({"enabled": false}));
    assert_error(&expect(patch.send().await.unwrap(), 404).await, "not_found");
    let rotate = as_other(reqwest::Method::POST, &format!("{path}/rotate_secret"));
    assert_error(&expect(rotate.send().await.unwrap(), 404).await, "not_found");
    let list = expect(
        as_other(reqwest::Method::GET, "/webhook_endpoints")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(list["data"], json!([]));
    let mine = expect(app.send(reqwest::Method::GET, &path, None).send().await.unwrap(), 200).await;
    assert_eq!(mine["enabled"], true, "untouched");
}

async fn bad_endpoint_fields_are_refused(app: TestApp) {
    let cases = [
        (
            json!({"url": "https://hooks.example.com/a", "event_types": ["order.shipped"]}),
            "invalid_event_type",
            "$.event_types[0]",
        ),
        (
            json!({"url": "https://hooks.example.com/a", "rate_limit": 0}),
            "invalid_rate_limit",
            "$.rate_limit",
        ),
        (
            json!({"url": "https://hooks.example.com/a", "rate_limit": 1_000_000}),
            "invalid_rate_limit",
            "$.rate_limit",
        ),
        (
            json!({"url": "https://hooks.example.com/a", "description": "x".repeat(501)}),
            "invalid_description",
            "$.description",
        ),
        (
            json!({"url": "https://hooks.example.com/a", "secret": "mine"}),
            "invalid_request",
            "",
        ),
        (json!({"url": 42}), "invalid_request", "$.url"),
        (json!({}), "invalid_request", ""),
    ];
    for (body, code, param) in cases {
        let response = app
            .send(reqwest::Method::POST, "/webhook_endpoints", Some(body.clone()))
            .send()
            .await
            .unwrap();
        let error = expect(response, 400).await;
        assert_error(&error, code);
        assert!(
            error["param"].as_str().unwrap_or("").starts_with(param),
            "{body}: {error}"
        );
    }
    let list = app.list_endpoints().await;
    assert_eq!(list["data"], json!([]), "nothing was created");
}

/// At least 25 URLs an attacker could use to make us call ourselves or the cloud's internals.
const REJECTED: [&str; 33] = [
    "https://hooks.example.com:0/acp",
    "http://hooks.example.com/plain-http",
    "https://127.0.0.1/hook",
    "https://127.1.2.3/hook",
    "https://[::1]/hook",
    "https://10.0.0.1/hook",
    "https://10.255.255.255/hook",
    "https://172.16.0.1/hook",
    "https://172.31.255.254/hook",
    "https://192.168.0.1/hook",
    "https://100.64.0.1/hook",
    "https://100.127.255.254/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://[64:ff9b::a9fe:a9fe]/hook",
    "https://[fe80::1]/hook",
    "https://0.0.0.0/hook",
    "https://2130706433/hook",
    "https://0177.0.0.1/hook",
    "https://0x7f000001/hook",
    "https://localhost/hook",
    "https://loopback.example.com/hook",
    "https://internal.example.com/hook",
    "https://metadata.example.com/hook",
    "https://mixed.example.com/hook",
    "https://v6private.example.com/hook",
    "https://good.com@127.0.0.1/hook",
    "https://user:pass@hooks.example.com/hook",
    "file:///etc/passwd",
    "ftp://hooks.example.com/hook",
    "https://no-such-host.invalid/hook",
];

async fn dangerous_urls_are_refused(app: TestApp) {
    for url in REJECTED {
        let response = app
            .send(reqwest::Method::POST, "/webhook_endpoints", Some(json!({"url": url})))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{url} was accepted: {error}");
        assert_error(&error, "invalid_url");
        assert_eq!(error["param"], "$.url");
        assert!(
            error["message"].as_str().unwrap().contains("not allowed"),
            "{url}: {error}"
        );
    }
    let list = app.list_endpoints().await;
    assert_eq!(list["data"], json!([]));

    // An existing endpoint cannot be pointed inside either.
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/ok"}))
        .await;
    let path = format!("/webhook_endpoints/{}", created["id"].as_str().unwrap());
    let patch = json!({"url": "https://169.254.169.254/"});
    let refused = app
        .send(reqwest::Method::PATCH, &path, Some(patch))
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 400).await, "invalid_url");
}

async fn order_webhook_is_configured_per_merchant(app: TestApp) {
    let missing = app
        .send(reqwest::Method::GET, "/order_webhook", None)
        .send()
        .await
        .unwrap();
    assert_error(&expect(missing, 404).await, "not_found");
    let body = json!({"url": "https://orders.example.com/acp", "secret": "whsec_test_secret"});
    let set = expect(
        app.send(reqwest::Method::PUT, "/order_webhook", Some(body))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(set, json!({"url": "https://orders.example.com/acp"}));
    let got = expect(
        app.send(reqwest::Method::GET, "/order_webhook", None)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        got,
        json!({"url": "https://orders.example.com/acp"}),
        "the secret is not shown back"
    );
    let stored = app.backend.merchants.merchant(&app.merchant.id).await.unwrap().unwrap();
    assert_eq!(stored.order_webhook.unwrap().secret, "whsec_test_secret");
    let unsafe_url = json!({"url": "https://10.1.1.1/acp", "secret": "s"});
    let refused = app
        .send(reqwest::Method::PUT, "/order_webhook", Some(unsafe_url))
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 400).await, "invalid_url");
    // A new secret: the one it replaces signs on beside it for the grace asked.
    let replaced = json!({"url": "https://orders.example.com/acp", "secret": "second", "grace_period_seconds": 600});
    let put = app
        .send(reqwest::Method::PUT, "/order_webhook", Some(replaced))
        .send()
        .await
        .unwrap();
    expect(put, 200).await;
    let stored = app.backend.merchants.merchant(&app.merchant.id).await.unwrap().unwrap();
    let hook = stored.order_webhook.unwrap();
    let now = checkout::clock::now();
    assert_eq!(
        hook.secrets_at(now).collect::<Vec<_>>(),
        vec!["second", "whsec_test_secret"]
    );
    assert!(hook.secrets_at(now + chrono::Duration::seconds(601)).eq(["second"]));
    let too_long =
        json!({"url": "https://orders.example.com/acp", "secret": "third", "grace_period_seconds": 8 * 86_400});
    let refused = app
        .send(reqwest::Method::PUT, "/order_webhook", Some(too_long))
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 400).await, "invalid_grace_period");
    let deleted = app
        .send(reqwest::Method::DELETE, "/order_webhook", None)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

#[tokio::test]
async fn loopback_urls_need_the_operator_flag() {
    let strict = TestApp::spawn(crate::app::embedded().await).await;
    let local = TestApp::spawn_with(crate::app::embedded().await, UrlPolicy { allow_loopback: true }).await;
    let body = json!({"url": "http://127.0.0.1:9000/hook"});
    let refused = strict
        .send(reqwest::Method::POST, "/webhook_endpoints", Some(body.clone()))
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 400).await, "invalid_url");
    local.create_endpoint(body).await;
    local
        .create_endpoint(json!({"url": "http://localhost:9000/hook"}))
        .await;
    let private = json!({"url": "http://10.0.0.1/hook"});
    let refused = local
        .send(reqwest::Method::POST, "/webhook_endpoints", Some(private))
        .send()
        .await
        .unwrap();
    assert_error(&expect(refused, 400).await, "invalid_url");
}

/// `[]` was read as an empty rotation request and rotated the secret.
async fn an_array_body_rotates_nothing(app: TestApp) {
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/acp"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let rotate = app
        .send(
            reqwest::Method::POST,
            &format!("/webhook_endpoints/{id}/rotate_secret"),
            Some(json!([])),
        )
        .send()
        .await
        .unwrap();
    assert_error(&expect(rotate, 400).await, "invalid_request");
    let stored = app
        .backend
        .endpoints
        .endpoint(&app.merchant.id, &checkout::ids::EndpointId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secrets.len(), 1, "no rotation");
    assert_eq!(stored.current_secret(), created["secret"].as_str());
}

/// Rotations and edits of one endpoint at the same time: before, an edit written from an older
/// copy undid rotations, so the API returned secrets that were never stored. As many rotations
/// as may be in grace at once (more end the oldest, see `MAX_IN_GRACE`), each racing two edits.
async fn rotations_racing_edits_are_never_undone(app: TestApp) {
    use checkout::webhook_endpoint::MAX_IN_GRACE;
    let created = app
        .create_endpoint(json!({"url": "https://hooks.example.com/acp"}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/webhook_endpoints/{id}");
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..MAX_IN_GRACE {
        let (app, path) = (app.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let edit = |n: usize| {
                app.send(
                    reqwest::Method::PATCH,
                    &path,
                    Some(json!({"description": format!("edit {i}.{n}")})),
                )
                .send()
            };
            let before = edit(0);
            let rotated = app
                .send(reqwest::Method::POST, &format!("{path}/rotate_secret"), None)
                .send();
            let (before, rotated) = tokio::join!(before, rotated);
            expect(before.unwrap(), 200).await;
            let rotated = expect(rotated.unwrap(), 200).await;
            expect(edit(1).await.unwrap(), 200).await;
            rotated["secret"].as_str().unwrap().to_owned()
        }));
    }
    let mut returned = Vec::new();
    for task in tasks {
        returned.push(task.await.unwrap());
    }
    let stored = app
        .backend
        .endpoints
        .endpoint(&app.merchant.id, &checkout::ids::EndpointId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    for secret in &returned {
        assert!(
            stored.secrets.iter().any(|s| &s.secret == secret),
            "a secret the API returned was never stored (or was undone)"
        );
    }
    assert_eq!(
        stored.secrets.len(),
        MAX_IN_GRACE + 1,
        "each rotation's secret and the first"
    );
    assert!(stored.description.unwrap().starts_with("edit "));
}

/// The merchant API honours Idempotency-Key: a retried registration is the same endpoint.
async fn a_repeated_registration_with_its_key_creates_one_endpoint(app: TestApp) {
    let body = json!({"url": "https://hooks.example.com/acp"});
    let first = app
        .post_keyed("/webhook_endpoints", &body, "register-1")
        .send()
        .await
        .unwrap();
    let first = expect(first, 201).await;
    let again = app
        .post_keyed("/webhook_endpoints", &body, "register-1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = expect(again, 201).await;
    assert_eq!(again["id"], first["id"], "the same endpoint, its secret shown again");
    assert_eq!(again["secret"], first["secret"]);
    assert_eq!(app.list_endpoints().await["data"].as_array().unwrap().len(), 1);

    let other = app
        .post_keyed(
            "/webhook_endpoints",
            &json!({"url": "https://hooks.example.com/other"}),
            "register-1",
        )
        .send()
        .await
        .unwrap();
    assert_error(&expect(other, 422).await, "idempotency_conflict");
    // A refused registration stores nothing under its key.
    let bad = app
        .post_keyed("/webhook_endpoints", &json!({"url": "ftp://x"}), "register-2")
        .send()
        .await
        .unwrap();
    expect(bad, 400).await;
    let fixed = app
        .post_keyed(
            "/webhook_endpoints",
            &json!({"url": "https://hooks.example.com/b"}),
            "register-2",
        )
        .send()
        .await
        .unwrap();
    expect(fixed, 201).await;
}
