//! The checkout domain: everything about an ACP checkout session that does not touch I/O.
//!
//! - [`acp`]: the wire types of the Agentic Commerce Protocol (2026-04-17) that the API reads and writes.
//! - [`session`]: the session aggregate — commands in, a new session state and an event out.
//! - [`pricing`]: line items, fulfillment options and totals, always from the merchant's catalog.
//! - [`event`]: the event envelope every change is stored and published as; [`event_codec`] how
//!   it is kept compressed ([`deflate`]).
//! - [`idempotency`]: the ACP idempotency rules (request fingerprint, stored replies).
//! - [`ports`]: the small traits the storage adapters implement.
//! - [`webhook_endpoint`], [`url_safety`]: where merchants want events, and which URLs we refuse to call.
//! - [`signature`], [`retry_schedule`], [`delivery_outcome`]: how webhooks are signed, what an answer
//!   means, and when a failed one is tried again.
//! - [`delivery_task`], [`attempt_log`]: what travels on the delivery queue, and the record of each attempt.
//! - [`service`]: runs one API command through the ports (idempotency claim, decide, append, retry on a race).

pub mod acp;
pub mod attempt_log;
pub mod catalog;
pub mod clock;
pub mod deflate;
pub mod delivery_outcome;
pub mod delivery_task;
pub mod endpoint_settings;
pub mod event;
pub mod event_codec;
pub mod event_docs;
pub mod idempotency;
pub mod ids;
pub mod merchant;
pub mod payment;
pub mod portal_access;
pub mod ports;
pub mod pricing;
pub mod replay;
pub mod replay_job;
pub mod retry_schedule;
pub mod service;
pub mod session;
pub mod signature;
pub mod signing_key;
pub mod url_safety;
pub mod webhook_endpoint;

#[cfg(feature = "testkit")]
pub mod testkit;
