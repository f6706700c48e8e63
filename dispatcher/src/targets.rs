//! Where a merchant's events go: its webhook endpoints and, for completed checkouts, its ACP
//! order webhook. Looked up once per merchant and cached for a few seconds, so a batch of
//! deliveries costs no storage reads for routing.

use checkout::attempt_log::ORDER_WEBHOOK_TARGET;
use checkout::event::EventType;
use checkout::ids::MerchantId;
use checkout::merchant::OrderWebhook;
use checkout::ports::{EndpointStore, MerchantStore, StoreError};
use checkout::webhook_endpoint::WebhookEndpoint;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub enum Target {
    Endpoint(Arc<WebhookEndpoint>),
    Order(Arc<OrderWebhook>),
}

impl Target {
    /// The name attempts are logged under.
    pub fn name(&self) -> &str {
        match self {
            Self::Endpoint(e) => e.id.as_str(),
            Self::Order(_) => ORDER_WEBHOOK_TARGET,
        }
    }
}

#[derive(Debug, Default)]
pub struct MerchantTargets {
    pub endpoints: Vec<Arc<WebhookEndpoint>>,
    pub order_webhook: Option<Arc<OrderWebhook>>,
}

impl MerchantTargets {
    /// Every target for an event of `kind`: endpoints subscribed to it (disabled ones too, so
    /// the log can say the event was skipped), and the order webhook for a completed checkout.
    pub fn for_event(&self, kind: EventType) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .endpoints
            .iter()
            .filter(|e| e.subscribes_to(kind))
            .map(|e| Target::Endpoint(e.clone()))
            .collect();
        if kind == EventType::Completed
            && let Some(hook) = &self.order_webhook
        {
            targets.push(Target::Order(hook.clone()));
        }
        targets
    }

    /// The target a task names, if it still exists.
    pub fn named(&self, name: &str) -> Option<Target> {
        if name == ORDER_WEBHOOK_TARGET {
            return self.order_webhook.clone().map(Target::Order);
        }
        self.endpoints
            .iter()
            .find(|e| e.id.as_str() == name)
            .map(|e| Target::Endpoint(e.clone()))
    }
}

pub struct TargetCache {
    merchants: Arc<dyn MerchantStore>,
    endpoints: Arc<dyn EndpointStore>,
    ttl: Duration,
    cached: Mutex<HashMap<MerchantId, (Instant, Arc<MerchantTargets>)>>,
}

impl TargetCache {
    pub fn new(merchants: Arc<dyn MerchantStore>, endpoints: Arc<dyn EndpointStore>, ttl: Duration) -> Self {
        Self {
            merchants,
            endpoints,
            ttl,
            cached: Mutex::new(HashMap::new()),
        }
    }

    pub async fn get(&self, merchant: &MerchantId) -> Result<Arc<MerchantTargets>, StoreError> {
        if let Some((at, targets)) = self.cached.lock().get(merchant)
            && at.elapsed() < self.ttl
        {
            return Ok(targets.clone());
        }
        let (profile, endpoints) = tokio::join!(self.merchants.merchant(merchant), self.endpoints.endpoints(merchant));
        let targets = Arc::new(MerchantTargets {
            endpoints: endpoints?.into_iter().map(Arc::new).collect(),
            order_webhook: profile?.and_then(|m| m.order_webhook).map(Arc::new),
        });
        self.cached
            .lock()
            .insert(merchant.clone(), (Instant::now(), targets.clone()));
        Ok(targets)
    }

    /// Drops the merchant's entry, after the dispatcher itself changed one of its endpoints.
    pub fn forget(&self, merchant: &MerchantId) {
        self.cached.lock().remove(merchant);
    }
}
