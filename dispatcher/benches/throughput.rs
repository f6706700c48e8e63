//! Deliveries per second: the dispatcher handler against a bare `reqwest` keep-alive POST loop,
//! both against the same local sink answering 200, at the same concurrency, with 1 KiB events.
//!
//! `cargo bench -p dispatcher --bench throughput` (settings: BENCH_CONCURRENCY, default 64;
//! BENCH_SECONDS per run, default 5; BENCH_ROUNDS, default 5; BENCH_BATCH, default 10;
//! BENCH_ONLY=bare|handler|steps).

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use checkout::ids::{EventId, MerchantId, SessionId};
use checkout::url_safety::UrlPolicy;
use checkout::webhook_endpoint::{SignatureScheme, WebhookEndpoint};
use dispatcher::client::ClientSettings;
use dispatcher::{Dispatcher, DispatcherConfig, Disposition, Incoming, Lane};
use embedded_backend::{EmbeddedQueue, EmbeddedStore, QueueConfig};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EVENT_BYTES: usize = 1024;

// As in the shipped binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Requests the sink answered: what both measurements count.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// The sink on its own runtime thread, as a separate receiver would be.
fn start_sink() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = Router::new().route(
                    "/hook",
                    post(|| async {
                        RECEIVED.fetch_add(1, Ordering::Relaxed);
                        StatusCode::OK
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        })
        .unwrap();
    let port = rx.recv().unwrap();
    format!("http://127.0.0.1:{port}/hook")
}

/// A 1 KiB event envelope with a fresh id.
fn event_body(merchant: &MerchantId, session: &SessionId) -> String {
    let head = format!(
        r#"{{"id":"{}","type":"checkout.session.updated","created_at":"2026-11-25T12:00:00.000Z","merchant_id":"{merchant}","session_id":"{session}","version":2,"api_version":"2026-04-17","data":{{"pad":""#,
        EventId::generate()
    );
    let pad = EVENT_BYTES.saturating_sub(head.len() + 3);
    format!("{head}{}\"}}}}", "x".repeat(pad))
}

/// Runs `workers` copies of `work` for `period`; returns the requests the sink answered per
/// second meanwhile.
async fn measure<F, Fut>(workers: usize, period: Duration, work: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (work, stop) = (work.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    work().await;
                }
            })
        })
        .collect();
    // Counted after a moment, so every worker is busy for the whole measured period.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (before, started) = (RECEIVED.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(period).await;
    let (after, elapsed) = (RECEIVED.load(Ordering::Relaxed), started.elapsed());
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    (after - before) as f64 / elapsed.as_secs_f64()
}

async fn bare_loop(url: &str, concurrency: usize, period: Duration) -> f64 {
    let client = if std::env::var("BENCH_BARE_CLIENT").as_deref() == Ok("dispatcher") {
        dispatcher::client::build(ClientSettings {
            policy: UrlPolicy { allow_loopback: true },
            ..ClientSettings::default()
        })
        .unwrap()
    } else {
        reqwest::Client::builder().tcp_nodelay(true).build().unwrap()
    };
    let body = Bytes::from(event_body(&MerchantId::generate(), &SessionId::generate()));
    let url = url.to_owned();
    measure(concurrency, period, move || {
        let (client, body, url) = (client.clone(), body.clone(), url.clone());
        async move {
            let response = client.post(&url).body(body).send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
        }
    })
    .await
}

async fn dispatcher_handler(url: &str, concurrency: usize, period: Duration) -> f64 {
    let backend = EmbeddedStore::backend();
    let merchant = checkout::testkit::merchant();
    backend.merchants.put_merchant(&merchant).await.unwrap();
    let endpoint = WebhookEndpoint::new(merchant.id.clone(), url.to_owned(), checkout::clock::now()).unwrap();
    backend.endpoints.put_endpoint(&endpoint).await.unwrap();
    let queue_config = QueueConfig {
        visibility_timeout: Duration::from_secs(60),
        max_receive_count: 50,
    };
    let batch = setting("BENCH_BATCH", dispatcher::worker::BATCH as u64) as usize;
    let handlers = concurrency.div_ceil(batch);
    let config = DispatcherConfig {
        merchant_rate_limit: NonZeroU32::new(10_000_000).unwrap(),
        // Never the limit here: every delivery in flight gets its request.
        max_in_flight_per_endpoint: handlers * batch,
        client: ClientSettings {
            policy: UrlPolicy { allow_loopback: true },
            ..ClientSettings::default()
        },
        ..DispatcherConfig::default()
    };
    let dispatcher = Arc::new(
        Dispatcher::new(
            (&backend).into(),
            Arc::new(EmbeddedQueue::new(queue_config, None)),
            Arc::new(EmbeddedQueue::new(queue_config, None)),
            config,
        )
        .unwrap(),
    );
    let session = SessionId::generate();
    let merchant_id = merchant.id.clone();
    measure(handlers, period, move || {
        let (dispatcher, merchant_id, session) = (dispatcher.clone(), merchant_id.clone(), session.clone());
        async move {
            let messages: Vec<Incoming> = (0..batch)
                .map(|i| Incoming {
                    message_id: i.to_string(),
                    body: event_body(&merchant_id, &session),
                    receive_count: 1,
                    lane: Lane::Main,
                })
                .collect();
            let dispositions = dispatcher.handle(&messages).await;
            assert!(dispositions.iter().all(|d| *d == Disposition::Done), "{dispositions:?}");
        }
    })
    .await
}

/// Costs of the handler's steps, without the network (BENCH_ONLY=steps).
async fn steps(url: &str) {
    let n = 100_000;
    let merchant = checkout::testkit::merchant();
    let body = event_body(&merchant.id, &SessionId::generate());
    let time = |name: &str, started: Instant| {
        println!(
            "{name:<28}: {:>7.2} µs",
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    };
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(checkout::delivery_task::QueueMessage::parse(&body).unwrap());
    }
    time("parse message", t);
    let endpoint = WebhookEndpoint::new(merchant.id.clone(), url.to_owned(), checkout::clock::now()).unwrap();
    let head = match checkout::delivery_task::QueueMessage::parse(&body).unwrap() {
        checkout::delivery_task::QueueMessage::Event { head, .. } => head,
        _ => unreachable!(),
    };
    let at = checkout::clock::now();
    let t = Instant::now();
    for _ in 0..n {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        std::hint::black_box(dispatcher::request::standard(&head, bytes, &endpoint, 1, at).unwrap());
    }
    time("sign request (v1, HMAC)", t);
    // The same request signed with ed25519 (v1a) instead, and with both.
    for scheme in [SignatureScheme::Ed25519, SignatureScheme::Both] {
        let mut endpoint = endpoint.clone();
        endpoint.set_signature_scheme(scheme, at).unwrap();
        let t = Instant::now();
        for _ in 0..n {
            let bytes = Bytes::copy_from_slice(body.as_bytes());
            std::hint::black_box(dispatcher::request::standard(&head, bytes, &endpoint, 1, at).unwrap());
        }
        time(&format!("sign request ({})", scheme.as_str()), t);
    }
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(checkout::url_safety::parse_webhook_url(url, UrlPolicy { allow_loopback: true }).unwrap());
    }
    time("check url", t);
    let store = EmbeddedStore::backend();
    let e = checkout::testkit::event(&merchant, None, 1);
    let t = Instant::now();
    for i in 0..n {
        let mut record = checkout::testkit::attempt_record("we_1", &e, i as u32);
        record.event_id = EventId::generate();
        store.deliveries.record(&record).await.unwrap();
    }
    time("build + record attempt", t);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(event_body(&merchant.id, &SessionId::generate()));
    }
    time("(bench) make a body", t);
}

fn main() {
    let concurrency = setting("BENCH_CONCURRENCY", 64) as usize;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let period = Duration::from_secs(setting("BENCH_SECONDS", 5));
    let url = start_sink();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("BENCH_ONLY").as_deref() == Ok("steps") {
        runtime.block_on(steps(&url));
        return;
    }
    runtime.block_on(async {
        // Back-to-back pairs, several rounds: this machine's speed drifts, so each round's ratio
        // compares runs a few seconds apart, and the median round is the figure.
        let rounds = setting("BENCH_ROUNDS", 5) as usize;
        let mut results = Vec::new();
        println!("concurrency {concurrency}, {EVENT_BYTES}-byte events, {period:?} per run");
        for round in 1..=rounds {
            let bare = if only != "handler" {
                bare_loop(&url, concurrency, period).await
            } else {
                0.0
            };
            let handler = if only != "bare" {
                dispatcher_handler(&url, concurrency, period).await
            } else {
                0.0
            };
            println!(
                "round {round}: bare reqwest loop {bare:>7.0}/s, dispatcher handler {handler:>7.0}/s, ratio {:>5.1} %",
                100.0 * handler / bare
            );
            results.push((handler / bare, bare, handler));
        }
        results.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, bare, handler) = results[results.len() / 2];
        println!(
            "median round: bare {bare:.0}/s, handler {handler:.0}/s, ratio {:.1} %",
            100.0 * ratio
        );
    });
}
