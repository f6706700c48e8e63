//! The embedded backend on disk: SQLite with group commit.

mod database;
mod directory;
pub(crate) mod event_row;
mod generations;
mod store;
mod stored_keys;
mod write_queue;

pub use database::{Commits, Database, Durability};
pub use store::{DurableStore, Purged};
