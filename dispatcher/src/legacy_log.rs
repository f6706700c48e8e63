//! Whether any attempt is still logged under the order webhook's former shared name
//! (`order_webhook`, before each merchant's order webhook had a log of its own).
//!
//! While such records exist, an order-webhook delivery is also looked up under that name (a
//! copy handled before the upgrade may have begun it there). That partition is shared by every
//! merchant: reading it for every completed checkout would make it hot forever. So the
//! dispatcher first asks whether it holds anything at all (one query of one item) and skips the
//! lookups while it is empty — always on a deployment that never ran an earlier version, and
//! once the records from before an upgrade have expired (30 days).
//!
//! A cache, so what it may delay: the answer is kept [`RECHECK`]. A record that an instance of
//! the earlier version writes during a rolling upgrade, just after a check found the partition
//! empty, is not looked for until the next check; a copy of that message handled meanwhile is
//! sent again (a duplicate with the same `webhook-id`, never a loss). A failed check counts as
//! "in use", so a storage error never skips a lookup.

use checkout::attempt_log::{AttemptQuery, LogTarget};
use checkout::ports::DeliveryLog;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// How long an answer is kept.
pub const RECHECK: Duration = Duration::from_secs(600);

pub(crate) struct LegacyOrderLog {
    log: Arc<dyn DeliveryLog>,
    checked: Mutex<Option<(Instant, bool)>>,
}

impl LegacyOrderLog {
    pub fn new(log: Arc<dyn DeliveryLog>) -> Self {
        Self {
            log,
            checked: Mutex::new(None),
        }
    }

    /// Whether order-webhook deliveries must still be looked up under the former name.
    pub async fn in_use(&self) -> bool {
        if let Some((at, in_use)) = *self.checked.lock()
            && at.elapsed() < RECHECK
        {
            return in_use;
        }
        let query = AttemptQuery {
            limit: 1,
            ..AttemptQuery::default()
        };
        let in_use = match self.log.attempts(&LogTarget::LegacyOrderWebhook.name(), &query).await {
            Ok(found) => !found.is_empty(),
            Err(err) => {
                warn!(error = %err, "could not tell whether order-webhook attempts remain under the former name");
                return true;
            }
        };
        *self.checked.lock() = Some((Instant::now(), in_use));
        in_use
    }
}
