//! The checkout API at the HTTP edge. [`router`] is the whole API as one axum `Router`:
//! `acp-local` serves it on a socket, the `session-manager` Lambda serves it behind API Gateway.
//!
//! Everything HTTP-specific lives here: extractors for the caller, the idempotency key and the
//! body (`extract`), one error type mapped once to the ACP error shape (`error`), the headers
//! every response echoes (`echo`). What a checkout command means, and its reply's status, is
//! decided by the `checkout` crate's service; what a merchant may set on an endpoint, by its
//! `endpoint_settings`. The merchant API's handlers read and store endpoints, attempts and
//! replays through the ports and choose their statuses here.

mod auth;
mod deliveries;
pub mod discovery;
mod echo;
mod endpoints;
mod error;
mod extract;
pub mod headers;
pub mod lambda;
pub mod onboarding;
mod path_id;
mod pause;
mod portal;
mod reply;
mod resolver;
mod routes;
pub mod webhook_keys;

pub use auth::MerchantCache;
pub use echo::echo as echo_request_headers;
pub use resolver::SystemResolver;
pub use routes::router;

use checkout::payment::PaymentProcessor;
use checkout::ports::{Backend, DeliveryQueue, Resolver};
use checkout::service::CheckoutService;
use checkout::url_safety::UrlPolicy;
use std::sync::Arc;

/// Largest request body accepted; larger ones get a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a client may take to send a request body, unless the state says otherwise (a slow
/// sender holds a connection).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What every handler shares, built once at startup.
#[derive(Clone)]
pub struct AppState {
    service: Arc<CheckoutService>,
    merchants: Arc<MerchantCache>,
    backend: Backend,
    url_policy: UrlPolicy,
    resolver: Arc<dyn Resolver>,
    /// Where replay steps are queued for the replay runner; without it, replay answers 503.
    replay_steps: Option<Arc<dyn DeliveryQueue>>,
    /// The dispatcher's queue, for test events (`POST /webhook_endpoints/{id}/test`).
    deliveries: Option<Arc<dyn DeliveryQueue>>,
    /// How long a client may take to send a request body.
    body_read_timeout: std::time::Duration,
    /// Where clients reach the API, when configured (else as the front names it per request).
    public_base_url: Option<String>,
    /// The currencies the discovery document announces (ISO 4217, lower case).
    supported_currencies: Vec<String>,
}

impl AppState {
    /// Webhook URLs are checked strictly and resolved by the operating system.
    pub fn new(backend: Backend, payments: Arc<dyn PaymentProcessor>) -> Self {
        Self {
            merchants: Arc::new(MerchantCache::new(backend.merchants.clone())),
            service: Arc::new(CheckoutService::new(backend.clone(), payments)),
            backend,
            url_policy: UrlPolicy::default(),
            resolver: Arc::new(SystemResolver),
            replay_steps: None,
            deliveries: None,
            body_read_timeout: BODY_READ_TIMEOUT,
            public_base_url: None,
            supported_currencies: vec!["usd".to_owned()],
        }
    }

    /// Local mode may allow loopback webhook URLs (`ACP_ALLOW_LOOPBACK_WEBHOOKS=1`).
    /// How long a client may take to send a request body (default [`BODY_READ_TIMEOUT`]);
    /// a slower one gets a 408.
    pub fn with_body_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    pub fn with_url_policy(mut self, policy: UrlPolicy) -> Self {
        self.url_policy = policy;
        self
    }

    /// The replay-steps queue, where replays start.
    pub fn with_replay_steps(mut self, queue: Arc<dyn DeliveryQueue>) -> Self {
        self.replay_steps = Some(queue);
        self
    }

    /// Where test events go: the queue the dispatcher consumes.
    pub fn with_deliveries(mut self, queue: Arc<dyn DeliveryQueue>) -> Self {
        self.deliveries = Some(queue);
        self
    }

    /// Where clients reach the API, when configured.
    pub fn public_base_url(&self) -> Option<&str> {
        self.public_base_url.as_deref()
    }

    /// The API's address as clients reach it (`/.well-known/acp.json`'s `api_base_url`).
    pub fn with_public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The currencies `/.well-known/acp.json` announces (default `usd`, the demo catalog's).
    pub fn with_supported_currencies(mut self, currencies: Vec<String>) -> Self {
        self.supported_currencies = currencies;
        self
    }

    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }
}
