//! The merchant portal in a real browser (Debian's headless Chromium, driven over WebDriver),
//! against `acp-local` on its durable store with real deliveries to a local receiver: a portal
//! link asks whose portal it opens and signs in at the button; an endpoint added in the page; a failing endpoint shows red after real failed
//! deliveries; an attempt's request and answer; a secret rotated in the page signs the next
//! delivery; pause, then resume sends what was held; a replay from the page; a test event. A
//! screenshot of each page goes to `target/portal-screenshots/` (or `ACP_PORTAL_SCREENSHOTS`),
//! and the page weights and the time to render an endpoint with 10,000 attempts are printed.

use crate::webdriver::Browser;
use axum::http::{HeaderMap, StatusCode, Uri};
use checkout::attempt_log::AttemptStatus;
use checkout::ids::MerchantId;
use local::Stack;
use local::config::{BackendKind, Config};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);
/// The portal's red, as the browser computes it.
const RED: &str = "rgba(180, 35, 24, 1)";

#[derive(Default)]
struct Receiver {
    /// Path, headers, body of every delivery answered 2xx.
    received: Mutex<Vec<(String, HeaderMap, String)>>,
    /// While set, `/broken` answers 500 with an HTML body.
    broken: AtomicBool,
}

impl Receiver {
    fn ids(&self, path: &str) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|(p, _, _)| p == path)
            .filter_map(|(_, h, _)| Some(h.get("webhook-id")?.to_str().ok()?.to_owned()))
            .collect()
    }
}

async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    state.broken.store(true, Ordering::SeqCst);
    let shared = state.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |uri: Uri, headers: HeaderMap, body: String| {
            let state = shared.clone();
            async move {
                if uri.path() == "/broken" && state.broken.load(Ordering::SeqCst) {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "<h1>down for maintenance</h1>");
                }
                state
                    .received
                    .lock()
                    .unwrap()
                    .push((uri.path().to_owned(), headers, body));
                (StatusCode::NO_CONTENT, "")
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}"), state)
}

async fn wait_until<F: Fn() -> bool>(what: &str, done: F) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("idempotency-key", ulid::Ulid::new().to_string());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A checkout session created: one `checkout.session.created` event; its id.
    async fn event(&self) -> String {
        let session = self
            .send(
                reqwest::Method::POST,
                "/checkout_sessions",
                Some(json!({"currency": "usd", "line_items": [{"id": "test_1"}]})),
            )
            .await;
        session["id"].as_str().unwrap().to_owned()
    }

    async fn attempts(&self, endpoint: &str) -> Vec<Value> {
        let page = self
            .send(
                reqwest::Method::GET,
                &format!("/webhook_endpoints/{endpoint}/attempts"),
                None,
            )
            .await;
        page["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for an attempt record of `endpoint` that `matches`.
    async fn wait_for_attempt(&self, endpoint: &str, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(found) = self.attempts(endpoint).await.into_iter().find(&matches) {
                return found;
            }
            assert!(started.elapsed() < PATIENCE, "no attempt of {endpoint}: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn screenshots() -> PathBuf {
    let dir = std::env::var("ACP_PORTAL_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/portal-screenshots")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The page's weight and timing, as the browser measured its navigation.
async fn weigh(browser: &Browser, name: &str, weights: &mut Vec<(String, Value)>) {
    let measured = browser
        .script(
            "const n = performance.getEntriesByType('navigation')[0]; \
             const css = performance.getEntriesByType('resource').map(r => r.decodedBodySize); \
             return {html: n.decodedBodySize, css: css.reduce((a, b) => a + b, 0), \
                     response_ms: n.responseEnd - n.requestStart, loaded_ms: n.loadEventEnd - n.startTime};",
        )
        .await;
    weights.push((name.to_owned(), measured));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral("sk_portal_browser", dir.path().to_owned());
    config.backend = BackendKind::Embedded;
    let stack = Stack::start(&config).await.unwrap();
    let (hooks, receiver) = receiver().await;
    let api = Api {
        http: reqwest::Client::new(),
        base: stack.base_url(),
        key: stack.demo_api_key.clone(),
    };
    let shots = screenshots();
    let mut weights = Vec::new();
    let browser = Browser::start().await;

    // A broken endpoint, registered with the API, fails for real.
    let broken = api
        .send(
            reqwest::Method::POST,
            "/webhook_endpoints",
            Some(json!({"url": format!("{hooks}/broken"), "description": "Fulfilment"})),
        )
        .await;
    let broken_id = broken["id"].as_str().unwrap().to_owned();
    api.event().await;
    let failed = api
        .wait_for_attempt(&broken_id, "a failed attempt", |a| a["status"] == "failed")
        .await;
    assert_eq!(failed["http_status"], 500);

    // The portal link opens the portal; the session cookie is HttpOnly and Strict.
    let link = api.send(reqwest::Method::POST, "/portal_links", Some(json!({}))).await;
    browser.open(link["url"].as_str().unwrap()).await;
    let asked = browser.find("main h1").await.text().await;
    assert_eq!(asked, "Sign in to the webhooks of Demo Shop?");
    assert!(browser.cookie("acp_portal").await.is_none(), "not before the button");
    browser.screenshot(&shots.join("sign-in.png")).await;
    browser.find("main form button").await.click().await;
    browser.find("table tbody tr").await;
    assert!(browser.url().await.ends_with("/portal/"), "{}", browser.url().await);
    let cookie = browser.cookie("acp_portal").await.expect("the session cookie");
    assert_eq!(
        (&cookie["httpOnly"], &cookie["sameSite"]),
        (&json!(true), &json!("Strict"))
    );

    // Add an endpoint in the page; its secret is shown once.
    browser.find("a[href='endpoints/new']").await.click().await;
    browser.find("input[name=url]").await.fill(&format!("{hooks}/ok")).await;
    browser.screenshot(&shots.join("new-endpoint.png")).await;
    weigh(&browser, "add an endpoint", &mut weights).await;
    browser.find("main form.settings button").await.click().await;
    let secret = browser.find("pre.secret").await.text().await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.screenshot(&shots.join("secret-shown-once.png")).await;
    let listed = api.send(reqwest::Method::GET, "/webhook_endpoints", None).await;
    let ok_id = listed["data"][1]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["data"][1]["url"], format!("{hooks}/ok"));
    api.event().await;
    wait_until("the new endpoint's first delivery", || receiver.ids("/ok").len() == 1).await;

    // The list: the broken endpoint's last failure in red, the healthy one without.
    browser.find("header a.home").await.click().await;
    let failure = browser.find("tbody tr:nth-child(1) span.failure").await;
    assert_eq!(failure.css("color").await, RED);
    assert_eq!(browser.count("tbody tr:nth-child(2) span.failure").await, 0);
    assert_eq!(browser.count("tbody tr svg.chart").await, 2, "a chart per endpoint");
    assert!(
        browser.count("tbody tr:nth-child(1) svg rect.failed").await >= 1,
        "failures drawn"
    );
    browser.screenshot(&shots.join("endpoints.png")).await;
    weigh(&browser, "endpoints", &mut weights).await;

    // The failing endpoint's attempts, then one attempt's request and answer.
    browser
        .find(&format!("a[href='endpoints/{broken_id}']"))
        .await
        .click()
        .await;
    let row = browser.find("tr.failure").await;
    assert_eq!(row.css("color").await, RED);
    browser.screenshot(&shots.join("endpoint-failing.png")).await;
    weigh(&browser, "endpoint", &mut weights).await;
    browser.find("tr.failure a").await.click().await;
    browser.find("section.failure").await;
    let page = browser.text("main").await;
    assert!(page.contains("webhook-id"), "{page}");
    assert!(
        page.contains("\"type\": \"checkout.session.created\""),
        "the body sent: {page}"
    );
    assert_eq!(browser.text("section.failure dd").await, "500", "the answer's status");
    assert!(
        browser
            .text("section.failure pre.headers")
            .await
            .contains("content-type: text/plain"),
        "the answer's headers: {page}"
    );
    assert!(
        page.contains("<h1>down for maintenance</h1>"),
        "the receiver's answer, as text: {page}"
    );
    assert_eq!(browser.count("main h1 h1, section h1").await, 0, "not rendered as HTML");
    browser.screenshot(&shots.join("attempt.png")).await;
    weigh(&browser, "attempt", &mut weights).await;

    // Rotate the healthy endpoint's secret without grace: the next delivery verifies with the
    // new secret only.
    browser.open(&format!("{}/portal/endpoints/{ok_id}", api.base)).await;
    browser.find("a[href$='/rotate']").await.click().await;
    browser
        .find("select[name=grace_period_seconds] option[value='0']")
        .await
        .click()
        .await;
    browser.screenshot(&shots.join("rotate.png")).await;
    browser.find("main form button").await.click().await;
    let rotated = browser.find("pre.secret").await.text().await;
    assert_ne!(rotated, secret);
    api.event().await;
    wait_until("a delivery after the rotation", || receiver.ids("/ok").len() == 2).await;
    {
        let received = receiver.received.lock().unwrap();
        let (_, headers, body) = received.iter().rev().find(|(p, _, _)| p == "/ok").unwrap();
        let new = standardwebhooks::Webhook::new(&rotated).unwrap();
        new.verify(body.as_bytes(), headers)
            .expect("signed with the new secret");
        let old = standardwebhooks::Webhook::new(&secret).unwrap();
        assert!(old.verify(body.as_bytes(), headers).is_err(), "the old one ended");
    }

    // Pause: the next event is held, not sent; resume sends it.
    browser.find(&format!("main a[href='../{ok_id}']")).await.click().await;
    browser.find("form[action$='/pause'] button").await.click().await;
    browser.find("span.state.paused").await;
    let held_session = api.event().await;
    let held = api
        .wait_for_attempt(&ok_id, "a held delivery", |a| {
            a["status"] == "paused" && a["session_id"] == held_session.as_str()
        })
        .await;
    let held_event = held["event_id"].as_str().unwrap().to_owned();
    assert!(!receiver.ids("/ok").contains(&held_event), "nothing sent while paused");
    browser.open(&format!("{}/portal/endpoints/{ok_id}", api.base)).await;
    browser.screenshot(&shots.join("paused.png")).await;
    browser.find("form[action$='/resume'] button").await.click().await;
    browser.find("span.state.enabled").await;
    wait_until("the held event after the resume", || {
        receiver.ids("/ok").contains(&held_event)
    })
    .await;

    // A test event from the page.
    browser.find("form[action$='/test'] button").await.click().await;
    wait_until("the test event", || {
        let received = receiver.received.lock().unwrap();
        received
            .iter()
            .any(|(_, _, body)| body.contains("\"type\":\"webhook.test\""))
    })
    .await;

    // The broken endpoint is mended; a replay from the page sends what it missed.
    receiver.broken.store(false, Ordering::SeqCst);
    let missed: Vec<String> = api
        .attempts(&broken_id)
        .await
        .iter()
        .filter(|a| a["status"] == "failed")
        .map(|a| a["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!missed.is_empty());
    browser
        .open(&format!("{}/portal/endpoints/{broken_id}/replay", api.base))
        .await;
    browser.find("form[method=get] button").await.click().await;
    let preview = browser.find("p.preview").await.text().await;
    assert!(preview.contains("would be sent"), "{preview}");
    browser.screenshot(&shots.join("replay.png")).await;
    weigh(&browser, "replay preview", &mut weights).await;
    browser.find("form[method=post] button").await.click().await;
    let progress = browser.find("p.replay").await.text().await;
    assert!(progress.starts_with("Replay started"), "{progress}");
    wait_until("the missed events, replayed", || {
        let got = receiver.ids("/broken");
        missed.iter().all(|id| got.contains(id))
    })
    .await;

    // The reference pages.
    browser
        .open(&format!("{}/portal/endpoints/{ok_id}/verify", api.base))
        .await;
    let code = browser.find("pre.code").await.text().await;
    assert!(code.contains("webhook-signature"), "{code}");
    browser.screenshot(&shots.join("verify.png")).await;
    weigh(&browser, "verify", &mut weights).await;
    browser.find("header nav a[href$='event-types']").await.click().await;
    browser
        .find("section#checkout\\.session\\.completed summary")
        .await
        .click()
        .await;
    browser.screenshot(&shots.join("event-types.png")).await;
    weigh(&browser, "event types", &mut weights).await;

    // An endpoint with 10,000 attempts: its page lists the newest 100.
    let busy = api
        .send(
            reqwest::Method::POST,
            "/webhook_endpoints",
            Some(json!({"url": format!("{hooks}/busy")})),
        )
        .await;
    let busy_id = busy["id"].as_str().unwrap().to_owned();
    let merchant = stack
        .backend
        .merchants
        .merchant(&MerchantId::parse(local::DEMO_MERCHANT_ID).unwrap())
        .await
        .unwrap()
        .unwrap();
    for chunk in 0..100 {
        let records = (0..100).map(|i| {
            let event = checkout::testkit::event(&merchant, None, 1);
            let mut record = checkout::testkit::attempt_record(&busy_id, &event, 1);
            if (chunk + i) % 7 == 0 {
                record.status = AttemptStatus::Failed;
                record.http_status = Some(503);
            }
            record
        });
        let writes = records.map(|r| {
            let log = stack.backend.deliveries.clone();
            async move { log.record(&r).await.unwrap() }
        });
        futures_util::future::join_all(writes).await;
    }
    browser.open(&format!("{}/portal/endpoints/{busy_id}", api.base)).await;
    browser.find("tbody tr").await;
    assert_eq!(browser.count("main > table:last-of-type tbody tr").await, 100);
    // The next page: the attempts right after the last one listed.
    let last_listed = browser
        .text("main > table:last-of-type tbody tr:last-child td code")
        .await;
    browser.find("p.older a").await.click().await;
    browser.find("main > table:last-of-type tbody tr").await;
    assert_eq!(browser.count("main > table:last-of-type tbody tr").await, 100);
    let first_older = browser
        .text("main > table:last-of-type tbody tr:first-child td code")
        .await;
    assert!(
        first_older.starts_with("evt_") && first_older <= last_listed,
        "{first_older} after {last_listed}"
    );
    browser.open(&format!("{}/portal/endpoints/{busy_id}", api.base)).await;
    weigh(&browser, "endpoint, 10,000 attempts", &mut weights).await;
    browser.screenshot(&shots.join("endpoint-10000-attempts.png")).await;
    for _ in 0..2 {
        browser.open(&format!("{}/portal/endpoints/{busy_id}", api.base)).await;
        browser.find("tbody tr").await;
        weigh(&browser, "endpoint, 10,000 attempts (again)", &mut weights).await;
    }

    println!("page weights and timings (decoded bytes; ms as the browser measured):");
    for (page, measured) in &weights {
        println!("  {page}: {measured}");
        assert!(measured["html"].as_u64().unwrap_or(0) > 0, "{page}: {measured}");
    }
    println!("screenshots in {}", shots.display());
    browser.quit().await;
    stack.shutdown().await.unwrap();
}
