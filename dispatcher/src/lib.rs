//! The webhook dispatcher's delivery core: the signed request for one (event, endpoint, attempt),
//! an HTTP client that only ever connects to vetted public addresses, one attempt's result, and
//! the rate limits deliveries are deferred by.

mod admission;
pub mod client;
pub mod config;
pub mod dead_letters;
pub mod deferral;
mod delivery;
mod endpoint_health;
mod first_attempts;
pub mod handler;
pub mod headers;
pub mod in_flight;
mod in_progress;
pub mod lambda;
pub mod metrics;
pub mod pinned_dns;
pub mod rate_limit;
pub mod request;
pub mod send;
pub mod targets;
pub mod worker;

pub use config::DispatcherConfig;
pub use handler::{DeliveryStores, Dispatcher, Disposition, Incoming, Lane};
