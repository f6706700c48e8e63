//! Where a merchant's events go: its webhook endpoints and, for completed checkouts, its ACP
//! order webhook.
//!
//! The rule merchants rely on: an endpoint gets every event created after its registration
//! returned, signed with the secrets in force then or later; a deleted or disabled endpoint gets
//! nothing created after that change returned. So targets are never served from a cache that
//! could predate the event: every batch reads them with a strongly consistent read that starts
//! after the batch was received — and so after each of its events was created. Concurrent
//! batches share a read that started after all of them were received (one read per merchant
//! per batch at most, usually fewer under load). What this may delay: nothing (a reader waits
//! only for a read already in flight that started after its batch arrived). What it may reorder:
//! nothing.

use checkout::attempt_log::LogTarget;
use checkout::clock::Timestamp;
use checkout::event::EventType;
use checkout::ids::MerchantId;
use checkout::merchant::OrderWebhook;
use checkout::ports::{EndpointStore, MerchantStore, StoreError};
use checkout::webhook_endpoint::WebhookEndpoint;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Endpoints registered up to this long after an event was created may still get it: clocks
/// of the machines that stamp events and endpoints may differ by this much.
pub const CLOCK_SKEW_ALLOWANCE: chrono::Duration = chrono::Duration::seconds(1);

#[derive(Clone, Debug)]
pub enum Target {
    Endpoint(Arc<WebhookEndpoint>),
    /// The merchant's ACP order webhook, and the name its attempts are logged under (see
    /// [`LogTarget`]: the merchant's own, or the shared one a delivery begun before began under).
    Order {
        hook: Arc<OrderWebhook>,
        name: String,
    },
}

impl Target {
    /// The name attempts are logged under.
    pub fn name(&self) -> &str {
        match self {
            Self::Endpoint(e) => e.id.as_str(),
            Self::Order { name, .. } => name,
        }
    }

    /// The same order webhook under the name every merchant's shared before (see
    /// [`LogTarget::LegacyOrderWebhook`]): where a delivery begun before an upgrade was logged.
    pub fn legacy_twin(&self) -> Option<Target> {
        let Self::Order { hook, name } = self else { return None };
        let legacy = LogTarget::LegacyOrderWebhook.name();
        (*name != legacy).then(|| Self::Order {
            hook: hook.clone(),
            name: legacy,
        })
    }

    pub fn endpoint(&self) -> Option<&WebhookEndpoint> {
        match self {
            Self::Endpoint(e) => Some(e),
            Self::Order { .. } => None,
        }
    }
}

#[derive(Debug)]
pub struct MerchantTargets {
    pub merchant: MerchantId,
    pub endpoints: Vec<Arc<WebhookEndpoint>>,
    pub order_webhook: Option<Arc<OrderWebhook>>,
}

impl MerchantTargets {
    /// Every target for an event of `kind` created at `created_at`: endpoints that existed
    /// then and subscribe to it (disabled ones too, so the log can say the event was skipped),
    /// and the order webhook for a completed checkout.
    pub fn for_event(&self, kind: EventType, created_at: Timestamp) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .endpoints
            .iter()
            .filter(|e| e.subscribes_to(kind) && e.created_at <= created_at + CLOCK_SKEW_ALLOWANCE)
            .map(|e| Target::Endpoint(e.clone()))
            .collect();
        if kind == EventType::Completed
            && let Some(hook) = &self.order_webhook
        {
            targets.push(Target::Order {
                hook: hook.clone(),
                name: LogTarget::OrderWebhook(self.merchant.clone()).name(),
            });
        }
        targets
    }

    /// The target a task names, if it still exists.
    pub fn named(&self, name: &str) -> Option<Target> {
        match LogTarget::parse(name)? {
            LogTarget::OrderWebhook(m) if m != self.merchant => return None,
            order if order.is_order_webhook() => {
                let hook = self.order_webhook.clone()?;
                return Some(Target::Order {
                    hook,
                    name: name.to_owned(),
                });
            }
            _ => {}
        }
        self.endpoints
            .iter()
            .find(|e| e.id.as_str() == name)
            .map(|e| Target::Endpoint(e.clone()))
    }
}

/// Reads merchants' targets, sharing reads between batches that may share them.
pub struct TargetReader {
    merchants: Arc<dyn MerchantStore>,
    endpoints: Arc<dyn EndpointStore>,
    endpoint_reads: SharedReads<MerchantId, Vec<Arc<WebhookEndpoint>>>,
    order_reads: SharedReads<MerchantId, Option<Arc<OrderWebhook>>>,
}

impl TargetReader {
    pub fn new(merchants: Arc<dyn MerchantStore>, endpoints: Arc<dyn EndpointStore>) -> Self {
        Self {
            merchants,
            endpoints,
            endpoint_reads: SharedReads::default(),
            order_reads: SharedReads::default(),
        }
    }

    /// The merchant's targets as stored at some moment after `received`. The merchant profile
    /// (which can be large: it holds the catalog) is read only when `with_order_webhook`.
    pub async fn read(
        &self,
        merchant: &MerchantId,
        received: Instant,
        with_order_webhook: bool,
    ) -> Result<MerchantTargets, Arc<StoreError>> {
        let endpoints = self.endpoint_reads.get(merchant, received, || async {
            let list = self.endpoints.endpoints(merchant).await?;
            Ok(list.into_iter().map(Arc::new).collect())
        });
        let order = async {
            if !with_order_webhook {
                return Ok(None);
            }
            self.order_reads
                .get(merchant, received, || async {
                    let profile = self.merchants.merchant(merchant).await?;
                    Ok(profile.and_then(|m| m.order_webhook).map(Arc::new))
                })
                .await
        };
        let (endpoints, order_webhook) = tokio::join!(endpoints, order);
        Ok(MerchantTargets {
            merchant: merchant.clone(),
            endpoints: endpoints?,
            order_webhook: order_webhook?,
        })
    }
}

type ReadResult<V> = Result<V, Arc<StoreError>>;

/// One read in flight or done, and when it started.
struct Read<V> {
    started: Instant,
    result: Arc<OnceCell<ReadResult<V>>>,
}

/// Reads of one kind by key: a caller received at `t` joins a read that started at or after
/// `t`, or starts one. Only the newest read of a key is kept, and keys whose newest read is
/// older than [`SharedReads::KEEP`] are dropped, so the map stays as small as the set of
/// merchants with traffic right now.
struct SharedReads<K, V> {
    reads: Mutex<HashMap<K, Read<V>>>,
}

impl<K, V> Default for SharedReads<K, V> {
    fn default() -> Self {
        Self {
            reads: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SharedReads<K, V> {
    const KEEP: Duration = Duration::from_secs(5);
    const PRUNE_ABOVE: usize = 1024;

    async fn get<F, Fut>(&self, key: &K, received: Instant, load: F) -> ReadResult<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        let cell = self.cell_for(key, received);
        cell.get_or_init(|| async { load().await.map_err(Arc::new) })
            .await
            .clone()
    }

    fn cell_for(&self, key: &K, received: Instant) -> Arc<OnceCell<ReadResult<V>>> {
        let mut reads = self.reads.lock();
        if let Some(read) = reads.get(key)
            && read.started >= received
        {
            return read.result.clone();
        }
        let now = Instant::now();
        if reads.len() > Self::PRUNE_ABOVE {
            reads.retain(|_, read| now.duration_since(read.started) < Self::KEEP);
        }
        let result = Arc::new(OnceCell::new());
        reads.insert(
            key.clone(),
            Read {
                started: now,
                result: result.clone(),
            },
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_read_is_shared_only_by_batches_received_before_it_started() {
        let reads: SharedReads<u32, usize> = SharedReads::default();
        let loads = AtomicUsize::new(0);
        let load = || async { Ok(loads.fetch_add(1, Ordering::SeqCst) + 1) };
        let early = Instant::now();
        assert_eq!(reads.get(&1, early, load).await.unwrap(), 1);
        assert_eq!(
            reads.get(&1, early, load).await.unwrap(),
            1,
            "a batch received before the read started shares it"
        );
        let late = Instant::now();
        assert_eq!(
            reads.get(&1, late, load).await.unwrap(),
            2,
            "a batch received after the read started reads again"
        );
        assert_eq!(reads.get(&2, early, load).await.unwrap(), 3, "keys do not share");
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept_for_later_batches() {
        let reads: SharedReads<u32, usize> = SharedReads::default();
        let failed = reads
            .get(&1, Instant::now(), || async { Err(StoreError::Corrupt("down".into())) })
            .await;
        assert!(failed.is_err());
        let again = reads.get(&1, Instant::now(), || async { Ok(7) }).await;
        assert_eq!(again.unwrap(), 7);
    }
}
