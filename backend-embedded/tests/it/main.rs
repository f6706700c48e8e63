//! The backend-embedded crate's integration tests, in one binary.

mod contract;
mod durable;
mod pipeline;
