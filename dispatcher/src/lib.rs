//! The webhook dispatcher's delivery core: the signed request for one (event, endpoint, attempt),
//! an HTTP client that only ever connects to vetted public addresses, and one attempt's result.

pub mod client;
pub mod headers;
pub mod pinned_dns;
pub mod request;
pub mod send;
