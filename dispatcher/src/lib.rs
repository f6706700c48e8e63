//! The webhook dispatcher's delivery core: the signed request for one (event, endpoint, attempt),
//! an HTTP client that only ever connects to vetted public addresses, one attempt's result, and
//! the rate limits deliveries are deferred by.

mod admission;
pub mod client;
pub mod config;
pub mod dead_letters;
mod deferral;
mod delivery;
mod endpoint_health;
mod first_attempts;
pub mod handler;
mod headers;
mod in_flight;
mod in_progress;
pub mod lambda;
mod legacy_log;
mod metrics;
mod pinned_dns;
mod rate_limit;
pub mod replay_runner;
pub mod request;
pub mod send;
mod targets;
pub mod worker;

pub use config::DispatcherConfig;
pub use handler::{DeliveryStores, Dispatcher, Disposition, Incoming, Lane};
