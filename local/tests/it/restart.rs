//! `acp-local` killed with SIGKILL in the middle of a run: after a restart on the same data
//! directory every accepted event is still delivered, only attempts that were in flight at the
//! kill are sent twice (at most 1 % of the events), and idempotency replies are still there.
//! A SIGTERM then stops it cleanly with exit status 0. The same kill while a backlog drains
//! with no API call coming loses nothing and sends no more than 1 % twice, and so does a kill
//! while a slow endpoint's deliveries wait in its line.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "sk_restart";
/// Requests in flight to the endpoint at once: what a kill can leave half done.
const IN_FLIGHT: usize = 2;
/// Events accepted before the kill.
const ACCEPTED_BEFORE_KILL: usize = 400;

/// A started `acp-local`, killed when dropped: a test that fails leaves no process behind
/// (one would hold the test's output open).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `acp-local` on a port of its own choosing (no port picked here and released for it,
/// which another process could take meanwhile), and returns it with the address it printed.
fn start(data_dir: &Path) -> (Running, String) {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_acp-local"))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--demo-api-key", KEY])
            .env("ACP_ALLOW_LOOPBACK_WEBHOOKS", "true")
            .env("DISPATCHER_MAX_IN_FLIGHT_PER_ENDPOINT", IN_FLIGHT.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("acp-local exited before printing its address")
            .unwrap();
        if let Some((_, address)) = line.split_once(" on ") {
            break address.trim().to_owned();
        }
    };
    // The rest of its output (log lines) is read so the process never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

async fn wait_until_listening(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while client
        .get(format!("{base}/checkout_sessions/cs_none"))
        .send()
        .await
        .is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(20), "acp-local did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How often each webhook-id arrived, counted as requests arrive.
type Arrivals = Arc<Mutex<std::collections::HashMap<String, usize>>>;

/// How long the receiver takes per delivery, in milliseconds; a test may change it mid-run.
type Takes = Arc<AtomicU64>;

fn takes(duration: Duration) -> Takes {
    Arc::new(AtomicU64::new(duration.as_millis() as u64))
}

/// A webhook receiver that takes its time (so deliveries are still queued when the process
/// dies), counts every arrival by webhook-id, and remembers the session of every event it
/// answered.
async fn slow_receiver(takes: Takes) -> (String, Arc<Mutex<HashSet<String>>>, Arrivals) {
    let delivered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let arrivals: Arrivals = Arc::default();
    let (record, count) = (delivered.clone(), arrivals.clone());
    let app = axum::Router::new().fallback(axum::routing::post(
        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (record, count, takes) = (record.clone(), count.clone(), takes.clone());
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                *count.lock().unwrap().entry(id).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(takes.load(Ordering::Relaxed))).await;
                let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                if let Some(session) = event["session_id"].as_str() {
                    record.lock().unwrap().insert(session.to_owned());
                }
                axum::http::StatusCode::NO_CONTENT
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}/hook"), delivered, arrivals)
}

/// Once `acp-local` at `base` listens, registers a [`slow_receiver`] taking `takes` per
/// delivery as the merchant's webhook endpoint.
async fn receive_webhooks(
    client: &reqwest::Client,
    base: &str,
    takes: Takes,
) -> (Arc<Mutex<HashSet<String>>>, Arrivals) {
    wait_until_listening(client, base).await;
    let (hook, delivered, arrivals) = slow_receiver(takes).await;
    let registered = client
        .post(format!("{base}/webhook_endpoints"))
        .bearer_auth(KEY)
        .json(&json!({ "url": hook }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    (delivered, arrivals)
}

/// Waits until every session of `accepted` has had its event delivered, at most `limit`.
async fn every_one_delivered<'a>(
    accepted: impl Iterator<Item = &'a String> + Clone,
    delivered: &Mutex<HashSet<String>>,
    limit: Duration,
) {
    let started = Instant::now();
    loop {
        let missing: Vec<&String> = {
            let got = delivered.lock().unwrap();
            accepted.clone().filter(|s| !got.contains(*s)).collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{} accepted events never delivered, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_create(
    client: &reqwest::Client,
    base: &str,
    idempotency_key: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/checkout_sessions"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", idempotency_key)
        .json(&json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": 1}]}))
        .send()
        .await
}

/// The new session's id, or `None` when the call failed.
async fn create(client: &reqwest::Client, base: &str, idempotency_key: &str) -> Option<String> {
    let response = post_create(client, base, idempotency_key).await.ok()?;
    if response.status() != 201 {
        return None;
    }
    let session: Value = response.json().await.ok()?;
    session["id"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_is_delivered_after_a_kill_9_and_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (mut first, base) = start(data_dir.path());
    let (delivered, arrivals) = receive_webhooks(&client, &base, takes(Duration::from_millis(40))).await;

    // Buyers create sessions until the process dies under them.
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let buyers: Vec<_> = (0..8)
        .map(|buyer| {
            let (client, base, accepted) = (client.clone(), base.clone(), accepted.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let key = format!("restart-{buyer}-{n}");
                    match create(&client, &base, &key).await {
                        Some(session) => accepted.lock().unwrap().push((key, session)),
                        None => return,
                    }
                }
            })
        })
        .collect();
    let patience = Instant::now();
    while accepted.lock().unwrap().len() < ACCEPTED_BEFORE_KILL {
        assert!(patience.elapsed() < Duration::from_secs(60), "too few events accepted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    for buyer in buyers {
        buyer.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let delivered_before = delivered.lock().unwrap().len();
    eprintln!(
        "killed with {} events accepted, {delivered_before} delivered",
        accepted.len()
    );
    assert!(!accepted.is_empty());
    assert!(
        delivered_before < accepted.len(),
        "some accepted events were still waiting when the process died ({delivered_before} of {})",
        accepted.len()
    );

    let (mut second, base) = start(data_dir.path());
    wait_until_listening(&client, &base).await;
    every_one_delivered(accepted.iter().map(|(_, s)| s), &delivered, Duration::from_secs(60)).await;

    // Late copies would arrive now: give them the time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrived = arrivals.lock().unwrap().clone();
    let duplicates: usize = arrived.values().map(|n| n - 1).sum();
    eprintln!(
        "after the restart: {} events, {} distinct webhooks, {duplicates} sent twice",
        accepted.len(),
        arrived.len()
    );
    // In flight at the kill: up to IN_FLIGHT requests on the wire, and as many answered but
    // not yet recorded.
    assert!(
        duplicates <= 2 * IN_FLIGHT,
        "{duplicates} duplicates: more than the attempts in flight at the kill"
    );
    assert!(
        duplicates * 100 <= accepted.len(),
        "{duplicates} duplicates of {} events: over 1 %",
        accepted.len()
    );

    let (key, session) = &accepted[0];
    let replay = post_create(&client, &base, key).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(
        replayed["id"].as_str(),
        Some(session.as_str()),
        "the stored reply survived"
    );

    let stopped = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = second.wait().unwrap();
    assert!(status.success(), "SIGTERM stops acp-local cleanly: {status}");
}

/// The same kill while a backlog drains with no API call coming (so no accepted event's commit
/// carries the records of deliveries made): after a restart every event is delivered, and those
/// sent twice stay within 1 % of the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_while_a_backlog_drains_sends_few_events_twice() {
    const EVENTS: usize = 2_000;
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (mut first, base) = start(data_dir.path());
    // At most 200 deliveries a second (two in flight), slower than the buyers create events.
    let (delivered, arrivals) = receive_webhooks(&client, &base, takes(Duration::from_millis(10))).await;

    // Buyers create the sessions faster than the receiver takes them, then stop.
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let buyers: Vec<_> = (0..8)
        .map(|buyer| {
            let (client, base, accepted) = (client.clone(), base.clone(), accepted.clone());
            tokio::spawn(async move {
                for n in 0..EVENTS / 8 {
                    let session = create(&client, &base, &format!("drain-{buyer}-{n}")).await;
                    accepted.lock().unwrap().push(session.expect("created"));
                }
            })
        })
        .collect();
    for buyer in buyers {
        buyer.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    // Killed once the backlog has drained for a while with nothing else to commit.
    let at_stop = delivered.lock().unwrap().len();
    assert!(
        accepted.len() - at_stop >= 300,
        "the buyers were too slow to build a backlog: {at_stop} of {} delivered when they stopped",
        accepted.len()
    );
    let patience = Instant::now();
    while delivered.lock().unwrap().len() < at_stop + 200 {
        assert!(
            patience.elapsed() < Duration::from_secs(60),
            "the backlog did not drain"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let delivered_before = delivered.lock().unwrap().len();
    eprintln!("killed with {delivered_before} of {} events delivered", accepted.len());
    assert!(
        delivered_before < accepted.len(),
        "the backlog was still draining at the kill ({delivered_before} of {} delivered)",
        accepted.len()
    );

    let (_second, base) = start(data_dir.path());
    wait_until_listening(&client, &base).await;
    every_one_delivered(accepted.iter(), &delivered, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let duplicates: usize = arrivals.lock().unwrap().values().map(|n| n - 1).sum();
    eprintln!("after the restart: {} events, {duplicates} sent twice", accepted.len());
    assert!(
        duplicates * 100 <= accepted.len(),
        "{duplicates} duplicates of {} events: over 1 %",
        accepted.len()
    );
}

/// Queue messages delayed past `after` (milliseconds since the epoch): deliveries waiting for
/// their place in a slow endpoint's line (nothing else is delayed here: the receiver never
/// fails). Read from the data directory's database, as any reader may while `acp-local` runs
/// or after it died.
fn waiting_in_line(data_dir: &Path, after: i64) -> usize {
    let db = rusqlite::Connection::open_with_flags(data_dir.join("acp.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM messages WHERE visible_at_ms > ?1",
        [after],
        |row| row.get::<_, i64>(0),
    )
    .unwrap() as usize
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An endpoint that takes a second per delivery, two at a time, gets its deliveries queued in
/// a line, each deferred to its place. Killed while most wait there, and restarted with the
/// endpoint answering at once: every event arrives, and only the attempts in flight at the
/// kill are sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_waiting_in_a_slow_endpoints_line_survive_a_kill_9() {
    const EVENTS: usize = 24;
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (mut first, base) = start(data_dir.path());
    let receiver_takes = takes(Duration::from_secs(1));
    let (delivered, arrivals) = receive_webhooks(&client, &base, receiver_takes.clone()).await;
    let mut accepted = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS {
        accepted.push(create(&client, &base, &format!("line-{n}")).await.expect("created"));
    }
    let patience = Instant::now();
    // Waiting half a second ahead or more: none of them can be taken before the kill.
    while waiting_in_line(data_dir.path(), now_ms() + 500) < EVENTS / 2 {
        assert!(
            patience.elapsed() < Duration::from_secs(30),
            "the slow endpoint's deliveries never queued up in its line"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = now_ms();
    first.kill().unwrap();
    first.wait().unwrap();
    let in_line = waiting_in_line(data_dir.path(), killed_at);
    let delivered_before = delivered.lock().unwrap().len();
    eprintln!("killed with {in_line} deliveries in line, {delivered_before} of {EVENTS} events delivered");
    assert!(
        in_line >= EVENTS / 2,
        "most deliveries were in line at the kill: {in_line}"
    );

    receiver_takes.store(0, Ordering::Relaxed);
    let (_second, base) = start(data_dir.path());
    wait_until_listening(&client, &base).await;
    every_one_delivered(accepted.iter(), &delivered, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let duplicates: usize = arrivals.lock().unwrap().values().map(|n| n - 1).sum();
    eprintln!("after the restart: {EVENTS} events, {duplicates} sent twice");
    // Requests on the wire at the kill (never answered to acp-local), and as many answered but
    // not yet recorded.
    assert!(
        duplicates <= 2 * IN_FLIGHT,
        "{duplicates} sent twice: more than the attempts in flight at the kill"
    );
}
