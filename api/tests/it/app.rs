//! A running API on a free port, a demo merchant, and request helpers.

use checkout::merchant::{Merchant, generate_api_key};
use checkout::payment::TestPaymentProcessor;
use checkout::ports::{Backend, PipelineError, Resolver};
use checkout::replay::{ReplayPorts, Replayer};
use checkout::url_safety::UrlPolicy;
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub api_key: String,
    pub merchant: Merchant,
    /// Where replays queue their deliveries.
    pub queue: Arc<embedded_backend::EmbeddedQueue>,
    /// Where replays start; [`TestApp::run_replay_steps`] plays the replay runner.
    pub steps: Arc<embedded_backend::EmbeddedQueue>,
    pub replayer: Arc<Replayer>,
}

pub async fn embedded() -> Backend {
    embedded_backend::EmbeddedStore::backend()
}

/// The durable store `acp-local` runs on by default, in a fresh folder.
pub async fn durable() -> Backend {
    let path = tempfile::tempdir().unwrap().keep().join("acp.db");
    let db = std::sync::Arc::new(embedded_backend::Database::open(&path).unwrap());
    let settings = embedded_backend::QueueConfig {
        visibility_timeout: std::time::Duration::from_secs(60),
        max_receive_count: 5,
    };
    let queue = embedded_backend::EmbeddedQueue::durable(settings, None, db.clone(), "order-updates").unwrap();
    let store = embedded_backend::DurableStore::open(db, std::sync::Arc::new(queue))
        .await
        .unwrap();
    Backend::from_one(std::sync::Arc::new(store))
}

pub async fn dynamodb() -> Backend {
    aws_backend::testkit::fresh_backend().await
}

/// Fixed answers for host names, so URL checks run without a network.
pub struct StaticResolver;

pub const PUBLIC_IP: &str = "93.184.216.34";

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<IpAddr>, PipelineError> {
        let ips: &[&str] = match host {
            "hooks.example.com" | "orders.example.com" => &[PUBLIC_IP],
            "localhost" | "loopback.example.com" => &["127.0.0.1", "::1"],
            "internal.example.com" => &["10.0.0.7"],
            "metadata.example.com" => &["169.254.169.254"],
            "mixed.example.com" => &[PUBLIC_IP, "192.168.1.20"],
            "v6private.example.com" => &["fd12:3456::1"],
            _ => {
                return Err(PipelineError::NotFound {
                    what: format!("host {host}"),
                });
            }
        };
        Ok(ips.iter().map(|ip| ip.parse().expect("valid test address")).collect())
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, UrlPolicy::default()).await
    }

    pub async fn spawn_with(backend: Backend, policy: UrlPolicy) -> Self {
        let settings = embedded_backend::QueueConfig {
            visibility_timeout: std::time::Duration::from_secs(30),
            max_receive_count: 10,
        };
        let queue = Arc::new(embedded_backend::EmbeddedQueue::new(settings, None));
        let steps = Arc::new(embedded_backend::EmbeddedQueue::new(settings, None));
        let replayer = Arc::new(Replayer::new(
            ReplayPorts {
                events: backend.events.clone(),
                log: backend.deliveries.clone(),
                jobs: backend.replays.clone(),
                deliveries: queue.clone(),
                steps: steps.clone(),
            },
            checkout::clock::system(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = api::AppState::new(backend.clone(), Arc::new(TestPaymentProcessor::new()))
            .with_resolver(Arc::new(StaticResolver))
            .with_url_policy(policy)
            .with_replay_steps(steps.clone())
            .with_deliveries(queue.clone())
            .with_public_base_url(base.as_str());
        tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
        let (merchant, api_key) = add_merchant(&backend).await;
        Self {
            base,
            client: reqwest::Client::new(),
            backend,
            api_key,
            merchant,
            queue,
            steps,
            replayer,
        }
    }

    /// Runs the replay steps waiting on their queue until none is left, as the replay runner
    /// does in the background; returns how many ran.
    pub async fn run_replay_steps(&self) -> usize {
        use checkout::ports::DeliveryQueue;
        let mut ran = 0;
        loop {
            let batch = self
                .steps
                .receive(10, std::time::Duration::from_millis(20))
                .await
                .unwrap();
            if batch.is_empty() {
                return ran;
            }
            for message in batch {
                let outcome = self.replayer.step_of_body(&message.body).await.unwrap();
                assert_eq!(outcome, checkout::replay::StepOutcome::Finished);
                self.steps.delete(&message.receipt).await.unwrap();
                ran += 1;
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A POST with this merchant's key and a fresh idempotency key.
    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.post_as(&self.api_key, path, body)
    }

    pub fn post_as(&self, api_key: &str, path: &str, body: &Value) -> RequestBuilder {
        self.keyed(api_key, path, body, &ulid::Ulid::new().to_string())
    }

    /// A POST under a chosen idempotency key.
    pub fn post_keyed(&self, path: &str, body: &Value, idempotency_key: &str) -> RequestBuilder {
        self.keyed(&self.api_key, path, body, idempotency_key)
    }

    pub fn keyed(&self, api_key: &str, path: &str, body: &Value, idempotency_key: &str) -> RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(api_key)
            .header("Idempotency-Key", idempotency_key)
            .header("API-Version", "2026-04-17")
            .json(body)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.api_key)
    }

    /// Creates a session with one `test_1` and returns its body.
    pub async fn create(&self) -> Value {
        let response = self
            .post(
                "/checkout_sessions",
                &json!({"currency": "usd", "line_items": [{"id": "test_1"}]}),
            )
            .send()
            .await
            .unwrap();
        expect(response, 201).await
    }

    /// A session with an address and a shipping option: ready for payment.
    pub async fn ready(&self) -> Value {
        let id = self.create().await["id"].as_str().unwrap().to_owned();
        let response = self
            .post(&format!("/checkout_sessions/{id}"), &shipping_details())
            .send()
            .await
            .unwrap();
        let session = expect(response, 200).await;
        assert_eq!(session["status"], "ready_for_payment", "{session}");
        session
    }

    /// `/complete` with a test payment token.
    pub async fn complete(&self, session_id: &str, token: &str) -> Response {
        self.post(&format!("/checkout_sessions/{session_id}/complete"), &payment(token))
            .send()
            .await
            .unwrap()
    }

    pub async fn history_len(&self, session_id: &str) -> usize {
        let id = checkout::ids::SessionId::parse(session_id).unwrap();
        self.backend.events.history(&id).await.unwrap().len()
    }
}

pub async fn add_merchant(backend: &Backend) -> (Merchant, String) {
    let api_key = generate_api_key().unwrap();
    let merchant = Merchant::demo(checkout::ids::MerchantId::generate(), &api_key);
    backend.merchants.put_merchant(&merchant).await.unwrap();
    (merchant, api_key)
}

pub fn shipping_details() -> Value {
    json!({
        "fulfillment_details": {
            "name": "Jane Doe",
            "email": "jane@example.com",
            "address": {
                "name": "Jane Doe", "line_one": "1 Main St", "city": "Springfield",
                "state": "IL", "country": "US", "postal_code": "62701"
            }
        },
        "selected_fulfillment_options": [
            {"type": "shipping", "option_id": "fulfillment_option_123", "item_ids": ["test_1"]}
        ]
    })
}

pub fn payment(token: &str) -> Value {
    json!({
        "payment_data": {
            "handler_id": "card_tokenized",
            "instrument": {"type": "card", "credential": {"type": "spt", "token": token}}
        }
    })
}

/// Asserts the status and returns the JSON body.
pub async fn expect(response: Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// One test per backend (in memory, durable, DynamoDB on moto) for each scenario
/// `async fn name(app: TestApp)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    let app = $crate::app::TestApp::spawn($crate::app::embedded().await).await;
                    super::$scenario(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn durable() {
                    let app = $crate::app::TestApp::spawn($crate::app::durable().await).await;
                    super::$scenario(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn dynamodb() {
                    let app = $crate::app::TestApp::spawn($crate::app::dynamodb().await).await;
                    super::$scenario(app).await;
                }
            }
        )+
    };
}
