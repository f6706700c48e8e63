//! Deliveries per second: the dispatcher handler against a bare `reqwest` keep-alive POST loop,
//! both against the same local sink answering 200, at the same concurrency, with 1 KiB events.
//!
//! `cargo bench -p dispatcher --bench throughput` (settings: BENCH_CONCURRENCY, default 64;
//! BENCH_SECONDS per measurement, default 5).

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use checkout::ids::{EventId, MerchantId, SessionId};
use checkout::url_safety::UrlPolicy;
use checkout::webhook_endpoint::WebhookEndpoint;
use dispatcher::client::ClientSettings;
use dispatcher::{Dispatcher, DispatcherConfig, Disposition, Incoming};
use embedded_backend::{EmbeddedQueue, EmbeddedStore, QueueConfig};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EVENT_BYTES: usize = 1024;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The sink on its own runtime thread, as a separate receiver would be.
fn start_sink() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Router::new().route("/hook", post(|| async { StatusCode::OK }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
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

/// Runs `workers` copies of `work` for `period`; returns completed units per second.
async fn measure<F, Fut>(workers: usize, period: Duration, work: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = u64> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (work, done, stop) = (work.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    done.fetch_add(work().await, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn bare_loop(url: &str, concurrency: usize, period: Duration) -> f64 {
    let client = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let body = Bytes::from(event_body(&MerchantId::generate(), &SessionId::generate()));
    let url = url.to_owned();
    measure(concurrency, period, move || {
        let (client, body, url) = (client.clone(), body.clone(), url.clone());
        async move {
            let response = client.post(&url).body(body).send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
            1
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
    let config = DispatcherConfig {
        merchant_rate_limit: NonZeroU32::new(10_000_000).unwrap(),
        max_in_flight_per_endpoint: concurrency,
        client: ClientSettings {
            policy: UrlPolicy { allow_loopback: true },
            ..ClientSettings::default()
        },
        ..DispatcherConfig::default()
    };
    let dispatcher = Arc::new(
        Dispatcher::new(
            &backend,
            Arc::new(EmbeddedQueue::new(queue_config, None)),
            Arc::new(EmbeddedQueue::new(queue_config, None)),
            config,
        )
        .unwrap(),
    );
    let batch = dispatcher::worker::BATCH;
    let session = SessionId::generate();
    let merchant_id = merchant.id.clone();
    measure(concurrency.div_ceil(batch), period, move || {
        let (dispatcher, merchant_id, session) = (dispatcher.clone(), merchant_id.clone(), session.clone());
        async move {
            let messages: Vec<Incoming> = (0..batch)
                .map(|i| Incoming {
                    message_id: i.to_string(),
                    body: event_body(&merchant_id, &session),
                    receive_count: 1,
                })
                .collect();
            let dispositions = dispatcher.handle(&messages).await;
            assert!(dispositions.iter().all(|d| *d == Disposition::Done), "{dispositions:?}");
            messages.len() as u64
        }
    })
    .await
}

fn main() {
    let concurrency = setting("BENCH_CONCURRENCY", 64) as usize;
    let period = Duration::from_secs(setting("BENCH_SECONDS", 5));
    let url = start_sink();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Warm both paths (connections, allocator) before measuring.
        bare_loop(&url, concurrency, Duration::from_secs(1)).await;
        dispatcher_handler(&url, concurrency, Duration::from_secs(1)).await;
        let bare = bare_loop(&url, concurrency, period).await;
        let handler = dispatcher_handler(&url, concurrency, period).await;
        println!("concurrency {concurrency}, {EVENT_BYTES}-byte events, {period:?} each");
        println!("bare reqwest POST loop : {bare:>9.0} requests/s");
        println!("dispatcher handler     : {handler:>9.0} deliveries/s");
        println!("ratio                  : {:>9.1} %", 100.0 * handler / bare);
    });
}
