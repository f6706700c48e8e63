//! The dispatcher's integration tests, one binary: end-to-end deliveries on every backend, the
//! delivery guarantees, single attempts, the dead-letter command, replays and independent verification.

#[macro_use]
mod common;

mod delivery;
mod dlq_command;
mod guarantees;
mod independent_verification;
mod replay;
mod send;
