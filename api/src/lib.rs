//! The checkout API at the HTTP edge. [`router`] is the whole API as one axum `Router`:
//! `acp-local` serves it on a socket, the `session-manager` Lambda serves it behind API Gateway.
//!
//! Everything HTTP-specific lives here (headers, auth, body limits, status codes); what a
//! command means is decided in the `checkout` crate.

mod auth;
mod edge;
mod error;
pub mod headers;
mod routes;

pub use auth::MerchantCache;
pub use routes::router;

use checkout::payment::PaymentProcessor;
use checkout::ports::Backend;
use checkout::service::CheckoutService;
use std::sync::Arc;

/// Largest request body accepted; larger ones get a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares, built once at startup.
#[derive(Clone)]
pub struct AppState {
    service: Arc<CheckoutService>,
    merchants: Arc<MerchantCache>,
}

impl AppState {
    pub fn new(backend: Backend, payments: Arc<dyn PaymentProcessor>) -> Self {
        Self {
            merchants: Arc::new(MerchantCache::new(backend.merchants.clone())),
            service: Arc::new(CheckoutService::new(backend, payments)),
        }
    }
}
