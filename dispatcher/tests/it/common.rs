//! A dispatcher wired to a real queue (in-process, or SQS on moto), real storage, and a local
//! receiver that answers from a script.

#![allow(dead_code)]

/// One test per backend for each scenario `async fn case(kind: Kind)`: the in-memory store and
/// queues, the durable ones (SQLite), and DynamoDB + SQS on moto.
macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        on_every_backend!(@kind embedded, Embedded, $($case),+);
        on_every_backend!(@kind durable, Durable, $($case),+);
        on_every_backend!(@kind moto, Moto, $($case),+);
    };
    (@kind $module:ident, $kind:ident, $($case:ident),+) => {
        mod $module {
            use crate::common;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(common::Kind::$kind).await;
                }
            )+
        }
    };
}

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use checkout::attempt_log::{AttemptQuery, AttemptRecord, AttemptStatus};
use checkout::event::Event;
use checkout::ids::EventId;
use checkout::merchant::Merchant;
use checkout::ports::{Backend, DeliveryLog, DeliveryQueue, StoreError};
use checkout::retry_schedule::RetrySchedule;
use checkout::signature;
use checkout::testkit::{event, merchant};
use checkout::url_safety::UrlPolicy;
use checkout::webhook_endpoint::WebhookEndpoint;
use dispatcher::client::ClientSettings;
use dispatcher::{Dispatcher, DispatcherConfig, Lane};
use embedded_backend::{EmbeddedQueue, EmbeddedStore, QueueConfig};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// A status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// 200 after this long.
    Slow(Duration),
    /// 302 to another path of the receiver.
    Redirect,
    /// A status with these response headers.
    Headers(u16, Vec<(&'static str, &'static str)>),
    /// The same, after this long.
    SlowHeaders(Duration, u16, Vec<(&'static str, &'static str)>),
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The request verifies with `secret` (the library's Standard Webhooks check).
    pub fn verifies_with(&self, secret: &str) -> bool {
        signature::verify(
            secret,
            &self.header("webhook-id"),
            &self.header("webhook-timestamp"),
            &self.header("webhook-signature"),
            &self.body,
            checkout::clock::now().timestamp(),
        )
        .is_ok()
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Paths that never answer (the request is held until the client gives up).
    dead_paths: Arc<Mutex<Vec<String>>>,
    /// Requests being held by a dead path right now.
    held: Arc<AtomicUsize>,
}

/// Counts a held request until its connection goes away.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receive(State(receiver): State<Receiver>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    receiver.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers,
        body,
        at: Instant::now(),
    });
    if receiver.dead_paths.lock().unwrap().contains(&path) {
        receiver.held.fetch_add(1, Ordering::SeqCst);
        let _held = Held(receiver.held.clone());
        tokio::time::sleep(Duration::from_secs(120)).await;
        return StatusCode::OK.into_response();
    }
    let answer = receiver
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::RetryAfter(code, secs) => {
            (StatusCode::from_u16(code).unwrap(), [("retry-after", secs.to_string())]).into_response()
        }
        Answer::Slow(pause) => {
            tokio::time::sleep(pause).await;
            StatusCode::OK.into_response()
        }
        Answer::Redirect => (StatusCode::FOUND, [("location", "/elsewhere")]).into_response(),
        Answer::SlowHeaders(pause, code, headers) => {
            tokio::time::sleep(pause).await;
            with_headers(code, headers)
        }
        Answer::Headers(code, headers) => with_headers(code, headers),
    }
}

fn with_headers(code: u16, headers: Vec<(&'static str, &'static str)>) -> axum::response::Response {
    let mut response = StatusCode::from_u16(code).unwrap().into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .append(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

impl Receiver {
    /// Serves on a free local port; returns its base URL.
    pub async fn start(&self) -> String {
        let app = Router::new().fallback(post(receive)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://127.0.0.1:{port}")
    }

    pub fn script(&self, answers: &[Answer]) {
        self.script.lock().unwrap().extend(answers.iter().cloned());
    }

    /// Requests to `path` are held and never answered.
    pub fn kill(&self, path: &str) {
        self.dead_paths.lock().unwrap().push(path.to_owned());
    }

    /// Requests held by dead paths right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Embedded,
    /// The durable embedded store and queues (SQLite in a temporary directory).
    Durable,
    Moto,
}

/// The attempt log, with a switch that makes the next `record` calls fail (storage down).
pub struct FlakyLog {
    inner: Arc<dyn DeliveryLog>,
    pub fail_records: AtomicUsize,
    /// Calls of `started`, and the pairs they asked about.
    pub started_calls: AtomicUsize,
    pub started_pairs: AtomicUsize,
    /// Calls of `latest` (one read per pair).
    pub latest_calls: AtomicUsize,
    /// Reads (of either kind) of the order webhook's former shared partition.
    pub legacy_reads: AtomicUsize,
    /// Calls of `record_first_attempts`, and the records they carried.
    pub first_attempt_writes: AtomicUsize,
    pub first_attempt_records: AtomicUsize,
    /// Stored just before the next `skipped` record is: a merchant's change that lands while a
    /// batch read before it is in hand.
    pub before_next_skip: tokio::sync::Mutex<Option<WebhookEndpoint>>,
    endpoints: Arc<dyn checkout::ports::EndpointStore>,
}

#[async_trait]
impl DeliveryLog for FlakyLog {
    async fn record(&self, record: &AttemptRecord) -> Result<bool, StoreError> {
        self.before_write(std::slice::from_ref(record)).await?;
        self.inner.record(record).await
    }
    async fn record_first_attempts(&self, records: &[AttemptRecord]) -> Result<(), StoreError> {
        self.first_attempt_writes.fetch_add(1, Ordering::SeqCst);
        self.first_attempt_records.fetch_add(records.len(), Ordering::SeqCst);
        self.before_write(records).await?;
        self.inner.record_first_attempts(records).await
    }
    async fn started(&self, pairs: &[(&str, &EventId)]) -> Result<Vec<bool>, StoreError> {
        self.started_calls.fetch_add(1, Ordering::SeqCst);
        self.started_pairs.fetch_add(pairs.len(), Ordering::SeqCst);
        let legacy = pairs.iter().filter(|(t, _)| *t == LEGACY_ORDER_WEBHOOK).count();
        self.legacy_reads.fetch_add(legacy, Ordering::SeqCst);
        self.inner.started(pairs).await
    }
    async fn latest(&self, target: &str, event: &EventId) -> Result<Option<AttemptRecord>, StoreError> {
        self.latest_calls.fetch_add(1, Ordering::SeqCst);
        if target == LEGACY_ORDER_WEBHOOK {
            self.legacy_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.latest(target, event).await
    }
    async fn attempts_of(&self, target: &str, event: &EventId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.attempts_of(target, event).await
    }
    async fn attempts(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.attempts(target, query).await
    }
}

impl FlakyLog {
    /// The merchant's change due before a skip, then a failure if one is due.
    async fn before_write(&self, records: &[AttemptRecord]) -> Result<(), StoreError> {
        if records
            .iter()
            .any(|r| matches!(r.status, AttemptStatus::Skipped | AttemptStatus::Paused))
            && let Some(endpoint) = self.before_next_skip.lock().await.take()
        {
            self.endpoints.put_endpoint(&endpoint).await.unwrap();
        }
        let left = self.fail_records.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_records.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Corrupt("storage is down (test)".into()));
        }
        Ok(())
    }
}

/// Queues come back after this long when a handler never settles a message (a crash).
pub const VISIBILITY: Duration = Duration::from_secs(2);

pub struct Rig {
    pub backend: Backend,
    pub log: Arc<FlakyLog>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub slow_queue: Arc<dyn DeliveryQueue>,
    pub dead_letters: Arc<dyn DeliveryQueue>,
    pub dispatcher: Dispatcher,
    pub merchant: Merchant,
    pub endpoint: WebhookEndpoint,
    pub receiver: Receiver,
    pub base_url: String,
}

/// The order webhook's former shared log name.
const LEGACY_ORDER_WEBHOOK: &str = "order_webhook";

/// Test settings: the standard retry schedule in hundredths (50 ms, 3 s, 18 s…, a 600 ms floor
/// after a 429 or a timeout), a 1 s request timeout, loopback allowed.
pub fn test_config() -> DispatcherConfig {
    let schedule = RetrySchedule::parse("50ms,3s,18s,72s,180s,360s,504s,720s,864s")
        .and_then(|s| s.with_backoff_floor(Duration::from_millis(600)))
        .expect("a valid schedule");
    DispatcherConfig {
        max_attempts: schedule.max_attempts(),
        retry_schedule: schedule,
        client: ClientSettings {
            total_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            policy: UrlPolicy { allow_loopback: true },
        },
        ..DispatcherConfig::default()
    }
}

/// Storage and the three queues: main, slow lane, dead letters.
pub struct Storage {
    pub backend: Backend,
    pub queue: Arc<dyn DeliveryQueue>,
    pub slow_queue: Arc<dyn DeliveryQueue>,
    pub dead_letters: Arc<dyn DeliveryQueue>,
}

const DLQ: QueueConfig = QueueConfig {
    visibility_timeout: VISIBILITY,
    max_receive_count: 1000,
};
const QUEUE: QueueConfig = QueueConfig {
    visibility_timeout: VISIBILITY,
    max_receive_count: 50,
};

pub async fn storage(kind: Kind) -> Storage {
    match kind {
        Kind::Embedded => {
            let dead_letters = Arc::new(EmbeddedQueue::new(DLQ, None));
            Storage {
                backend: EmbeddedStore::backend(),
                queue: Arc::new(EmbeddedQueue::new(QUEUE, Some(dead_letters.clone()))),
                slow_queue: Arc::new(EmbeddedQueue::new(QUEUE, Some(dead_letters.clone()))),
                dead_letters,
            }
        }
        // The directory lives as long as the test process: the database must outlive the rig.
        Kind::Durable => durable_storage(&tempfile::tempdir().unwrap().keep()).await,
        Kind::Moto => {
            let backend = aws_backend::testkit::fresh_backend().await;
            let (pipeline, resources) = aws_backend::testkit::fresh_pipeline_with(aws_backend::QueueSettings {
                visibility_timeout: VISIBILITY,
                max_receive_count: 50,
            })
            .await;
            let sqs = aws_backend::SqsClient::new(&aws_backend::local_sdk_config(&aws_backend::testkit::endpoint()));
            Storage {
                backend,
                queue: pipeline.queue,
                slow_queue: Arc::new(aws_backend::SqsQueue::new(sqs, resources.slow_queue_url)),
                dead_letters: pipeline.dead_letters,
            }
        }
    }
}

/// The durable store and queues in `dir`: opened again on the same directory, what a restarted
/// process finds.
pub async fn durable_storage(dir: &std::path::Path) -> Storage {
    let db = Arc::new(embedded_backend::Database::open(&dir.join("acp.db")).unwrap());
    let dead_letters = Arc::new(EmbeddedQueue::durable(DLQ, None, db.clone(), "dlq").unwrap());
    let durable =
        |name: &str| Arc::new(EmbeddedQueue::durable(QUEUE, Some(dead_letters.clone()), db.clone(), name).unwrap());
    // The store's outbox: events appended here are not this rig's to deliver (the tests put on
    // `queue` what they want delivered).
    let outbox = durable("events");
    let store = embedded_backend::DurableStore::open(db.clone(), outbox).await.unwrap();
    Storage {
        backend: Backend::from_one(Arc::new(store)),
        queue: durable("order-updates"),
        slow_queue: durable("slow-deliveries"),
        dead_letters,
    }
}

/// One receive from each lane (`queue`, then the slow one), carried through by `dispatcher`.
pub async fn run_once_on(dispatcher: &Dispatcher, queue: &dyn DeliveryQueue, slow_queue: &dyn DeliveryQueue) {
    let wait = Duration::from_millis(100);
    tokio::join!(
        dispatcher::worker::run_once(dispatcher, queue, Lane::Main, wait),
        dispatcher::worker::run_once(dispatcher, slow_queue, Lane::Slow, wait),
    );
}

impl Rig {
    pub async fn new(kind: Kind, config: DispatcherConfig) -> Self {
        Self::with_clock(kind, config, checkout::clock::system()).await
    }

    /// A rig whose dispatcher reads the time from `clock`.
    pub async fn with_clock(kind: Kind, config: DispatcherConfig, clock: checkout::clock::SharedClock) -> Self {
        let Storage {
            mut backend,
            queue,
            slow_queue,
            dead_letters,
        } = storage(kind).await;
        let log = Arc::new(FlakyLog {
            inner: backend.deliveries.clone(),
            fail_records: AtomicUsize::new(0),
            started_calls: AtomicUsize::new(0),
            started_pairs: AtomicUsize::new(0),
            latest_calls: AtomicUsize::new(0),
            legacy_reads: AtomicUsize::new(0),
            first_attempt_writes: AtomicUsize::new(0),
            first_attempt_records: AtomicUsize::new(0),
            before_next_skip: tokio::sync::Mutex::new(None),
            endpoints: backend.endpoints.clone(),
        });
        backend.deliveries = log.clone();
        let merchant = merchant();
        backend.merchants.put_merchant(&merchant).await.unwrap();
        let receiver = Receiver::default();
        let base_url = receiver.start().await;
        let endpoint =
            WebhookEndpoint::new(merchant.id.clone(), format!("{base_url}/hook"), checkout::clock::now()).unwrap();
        backend.endpoints.put_endpoint(&endpoint).await.unwrap();
        let dispatcher = Dispatcher::new((&backend).into(), queue.clone(), dead_letters.clone(), config)
            .unwrap()
            .with_slow_lane(slow_queue.clone())
            .with_clock(clock);
        Self {
            backend,
            log,
            queue,
            slow_queue,
            dead_letters,
            dispatcher,
            merchant,
            endpoint,
            receiver,
            base_url,
        }
    }

    /// An event of a fresh session, on the queue as the topic would put it there.
    pub async fn publish(&self) -> Event {
        let e = event(&self.merchant, None, 1);
        self.publish_event(&e).await;
        e
    }

    pub async fn publish_event(&self, e: &Event) {
        self.queue
            .send(&serde_json::to_string(e).unwrap(), Duration::ZERO)
            .await
            .unwrap();
    }

    /// One receive from each lane, carried through.
    pub async fn run_once(&self) {
        run_once_on(&self.dispatcher, self.queue.as_ref(), self.slow_queue.as_ref()).await;
    }

    /// Runs the dispatcher on both lanes until `done` holds; fails after `limit`.
    pub async fn run_until(&self, limit: Duration, what: &str, done: impl Fn(&Rig) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "gave up waiting for: {what}");
            self.run_once().await;
        }
    }

    /// Runs the dispatcher for `period`, whatever happens.
    pub async fn run_for(&self, period: Duration) {
        let until = Instant::now() + period;
        while Instant::now() < until {
            self.run_once().await;
        }
    }

    /// One batch of the main queue through the handler, with nothing deleted or hidden
    /// afterwards: what a process that dies right after the handler returns leaves behind.
    pub async fn handle_without_settling(&self) -> Vec<dispatcher::Disposition> {
        let batch = self.queue.receive(10, Duration::from_secs(1)).await.unwrap();
        let incoming: Vec<_> = batch
            .iter()
            .map(|m| dispatcher::worker::incoming(m, Lane::Main))
            .collect();
        self.dispatcher.handle(&incoming).await
    }

    pub async fn attempts(&self, target: &str, e: &Event) -> Vec<AttemptRecord> {
        self.backend.deliveries.attempts_of(target, &e.id).await.unwrap()
    }

    pub fn secret(&self) -> String {
        self.endpoint.current_secret().unwrap().to_owned()
    }

    pub async fn stored_endpoint(&self) -> WebhookEndpoint {
        self.backend
            .endpoints
            .endpoint(&self.merchant.id, &self.endpoint.id)
            .await
            .unwrap()
            .unwrap()
    }
}
