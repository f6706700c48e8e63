//! The embedded backend: every port in one process, with the semantics of the AWS services it
//! stands in for — conditional appends and atomic event + idempotency commits (DynamoDB), a
//! topic fanning out to queues with visibility timeouts and a dead-letter redrive (SNS, SQS).
//! In memory ([`EmbeddedStore`], queues from [`EmbeddedQueue::new`]) or on disk
//! ([`DurableStore`], queues from [`EmbeddedQueue::durable`]), fsynced on every commit.

mod durable;
mod queue;
mod store;
mod topic;

pub use durable::{Commits, Database, Durability, DurableStore, Purged};

/// The names of the local stack's queues in a durable database.
pub mod queue_names {
    /// Every event, from the topic; replays and redrives.
    pub const ORDER_UPDATES: &str = "order-updates";
    /// Deliveries to failing or slow endpoints.
    pub const SLOW_DELIVERIES: &str = "slow-deliveries";
    pub const DEAD_LETTERS: &str = "order-updates-dlq";
    /// Steps of running replays.
    pub const REPLAY_STEPS: &str = "replay-steps";
}

/// The database file inside a data directory.
pub const DATABASE_FILE: &str = "acp.db";
pub use queue::{EmbeddedQueue, QueueConfig};
pub use store::EmbeddedStore;
pub use topic::EmbeddedTopic;
