//! Keeps the durable data directory from growing without bound: idempotency replies past their
//! 48 h and attempt records past the attempt log's 30 days are deleted in the background
//! (DynamoDB does the same with TTL). Each pass deletes a bounded batch in one short write,
//! then yields the writer to the API, so the purge never stalls a request for long.

use embedded_backend::{DurableStore, Purged};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Records per write: a few milliseconds of the writer's time.
const BATCH: usize = 500;
/// The pause between two full batches, in which the API's writes go first.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);
/// How often the purge looks for expired records.
const EVERY: Duration = Duration::from_secs(60);

/// Purges until told to stop: at once, then every [`EVERY`].
pub async fn run(store: Arc<DurableStore>, mut stop: watch::Receiver<bool>) {
    loop {
        let total = purge_all(&store, &stop).await;
        if total.replies + total.attempts > 0 {
            info!(
                replies = total.replies,
                attempts = total.attempts,
                "purged expired records"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One sweep: batches until one comes back short (nothing more expired).
async fn purge_all(store: &DurableStore, stop: &watch::Receiver<bool>) -> Purged {
    let mut total = Purged::default();
    while !*stop.borrow() {
        match store.purge_expired(checkout::clock::now(), BATCH).await {
            Ok(pass) => {
                total.replies += pass.replies;
                total.attempts += pass.attempts;
                if pass.replies < BATCH && pass.attempts < BATCH {
                    break;
                }
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
            Err(err) => {
                warn!(error = %err, "purging expired records failed; trying again later");
                break;
            }
        }
    }
    total
}
