//! The backend-aws crate's integration tests, in one binary.

mod contract;
mod pipeline;
