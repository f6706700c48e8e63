//! Storage ports in memory, behind one lock, with the semantics of the DynamoDB adapters.

use async_trait::async_trait;
use checkout::attempt_log::{self, AttemptQuery, AttemptRecord};
use checkout::clock::Timestamp;
use checkout::event::Event;
use checkout::idempotency::{self, Claim, Completion, IdempotencyKey, IdempotencyRecord, RecordState};
use checkout::ids::EventId;
use checkout::ids::{EndpointId, MerchantId, SessionId};
use checkout::merchant::Merchant;
use checkout::ports::{
    Backend, DeliveryLog, EndpointStore, EventStore, IdempotencyStore, KeyRegistry, MerchantStore, ReplayStore,
    StoreError,
};
use checkout::replay::ReplayJob;
use checkout::signing_key::PublishedKey;
use checkout::webhook_endpoint::WebhookEndpoint;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Default)]
struct State {
    /// Each session's events, in version order (index = version - 1).
    streams: HashMap<SessionId, Vec<Event>>,
    idempotency: HashMap<String, IdempotencyRecord>,
    merchants: HashMap<MerchantId, Merchant>,
    api_keys: HashMap<String, MerchantId>,
    /// Per merchant, in creation order.
    endpoints: HashMap<MerchantId, Vec<WebhookEndpoint>>,
    replays: HashMap<(MerchantId, EndpointId), ReplayJob>,
}

#[derive(Default)]
pub struct EmbeddedStore {
    state: Mutex<State>,
    /// The attempt log by (target, sort key); apart from `state` so deliveries and API calls do
    /// not wait for each other.
    deliveries: Mutex<BTreeMap<(String, String), AttemptRecord>>,
    /// Committed events, in commit order: the embedded stand-in for DynamoDB Streams.
    feed: Option<mpsc::UnboundedSender<Event>>,
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that also hands every committed event, in commit order, to the receiver.
    pub fn with_feed() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let store = Self {
            feed: Some(sender),
            ..Self::default()
        };
        (store, receiver)
    }

    /// A [`Backend`] with every port served by one fresh store.
    pub fn backend() -> Backend {
        Backend::from_one(Arc::new(Self::new()))
    }
}

/// The claim `token` still holds `key` (it may have been taken over after its lease).
fn holds_claim(state: &State, key: &IdempotencyKey, token: &str) -> bool {
    matches!(
        state.idempotency.get(&key.storage_key()),
        Some(IdempotencyRecord { state: RecordState::InFlight { token: held, .. }, .. }) if held == token
    )
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, event: &Event, completes: Option<&Completion>) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        let next_version = state.streams.get(&event.session_id).map_or(1, |s| s.len() as u64 + 1);
        if event.version != next_version {
            return Err(StoreError::VersionConflict {
                session_id: event.session_id.clone(),
                version: event.version,
            });
        }
        if let Some(done) = completes {
            if !holds_claim(&state, &done.key, &done.hold.token) {
                return Err(StoreError::ClaimLost);
            }
            state.idempotency.insert(done.key.storage_key(), done.record());
        }
        state
            .streams
            .entry(event.session_id.clone())
            .or_default()
            .push(event.clone());
        if let Some(feed) = &self.feed {
            // Sent under the lock, so the feed's order is the commit order. A closed feed means
            // the process is stopping; the event itself is stored.
            let _ = feed.send(event.clone());
        }
        Ok(())
    }

    async fn latest(&self, session_id: &SessionId) -> Result<Option<Event>, StoreError> {
        Ok(self
            .state
            .lock()
            .streams
            .get(session_id)
            .and_then(|s| s.last().cloned()))
    }

    async fn history(&self, session_id: &SessionId) -> Result<Vec<Event>, StoreError> {
        Ok(self.state.lock().streams.get(session_id).cloned().unwrap_or_default())
    }

    async fn event_at(&self, session_id: &SessionId, version: u64) -> Result<Option<Event>, StoreError> {
        let state = self.state.lock();
        let stream = state.streams.get(session_id);
        Ok(stream.and_then(|s| s.iter().find(|e| e.version == version).cloned()))
    }
}

#[async_trait]
impl IdempotencyStore for EmbeddedStore {
    async fn claim(&self, key: &IdempotencyKey, fingerprint: &str, now: Timestamp) -> Result<Claim, StoreError> {
        let mut state = self.state.lock();
        let storage_key = key.storage_key();
        if let Some(verdict) = state
            .idempotency
            .get(&storage_key)
            .and_then(|existing| idempotency::judge(existing, fingerprint, now))
        {
            return Ok(verdict);
        }
        let (hold, record) = idempotency::new_claim(fingerprint, None, now);
        state.idempotency.insert(storage_key, record);
        Ok(Claim::Acquired(hold))
    }

    async fn complete(&self, completion: &Completion) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        if !holds_claim(&state, &completion.key, &completion.hold.token) {
            return Err(StoreError::ClaimLost);
        }
        state
            .idempotency
            .insert(completion.key.storage_key(), completion.record());
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey, token: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        if holds_claim(&state, key, token) {
            state.idempotency.remove(&key.storage_key());
        }
        Ok(())
    }
}

#[async_trait]
impl MerchantStore for EmbeddedStore {
    async fn put_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        let stored = state.merchants.get(&merchant.id).map_or(0, |m| m.revision);
        if stored != merchant.revision {
            return Err(StoreError::Changed {
                what: "merchant",
                id: merchant.id.to_string(),
            });
        }
        let mut next = merchant.clone();
        next.revision += 1;
        if let Some(old) = state.merchants.insert(merchant.id.clone(), next) {
            state.api_keys.remove(&old.api_key_hash);
        }
        state
            .api_keys
            .insert(merchant.api_key_hash.clone(), merchant.id.clone());
        Ok(())
    }

    async fn merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        Ok(self.state.lock().merchants.get(id).cloned())
    }

    async fn merchant_by_api_key_hash(&self, api_key_hash: &str) -> Result<Option<Merchant>, StoreError> {
        let state = self.state.lock();
        Ok(state
            .api_keys
            .get(api_key_hash)
            .and_then(|id| state.merchants.get(id))
            .cloned())
    }
}

fn replay_changed(job: &ReplayJob) -> StoreError {
    StoreError::Changed {
        what: "replay",
        id: job.id.to_string(),
    }
}

#[async_trait]
impl ReplayStore for EmbeddedStore {
    async fn start_replay(&self, job: &ReplayJob, now: Timestamp) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        let key = (job.merchant_id.clone(), job.endpoint_id.clone());
        if job.revision != 0 || state.replays.get(&key).is_some_and(|j| !j.replaceable(now)) {
            return Err(replay_changed(job));
        }
        state.replays.insert(
            key,
            ReplayJob {
                revision: 1,
                ..job.clone()
            },
        );
        Ok(())
    }

    async fn put_replay(&self, job: &ReplayJob) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        let key = (job.merchant_id.clone(), job.endpoint_id.clone());
        match state.replays.get_mut(&key) {
            Some(stored) if stored.id == job.id && stored.revision == job.revision => {
                *stored = ReplayJob {
                    revision: job.revision + 1,
                    ..job.clone()
                };
                Ok(())
            }
            _ => Err(replay_changed(job)),
        }
    }

    async fn replay(&self, merchant: &MerchantId, endpoint: &EndpointId) -> Result<Option<ReplayJob>, StoreError> {
        Ok(self
            .state
            .lock()
            .replays
            .get(&(merchant.clone(), endpoint.clone()))
            .cloned())
    }
}

#[async_trait]
impl EndpointStore for EmbeddedStore {
    async fn put_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        let list = state.endpoints.entry(endpoint.merchant_id.clone()).or_default();
        let existing = list.iter_mut().find(|e| e.id == endpoint.id);
        if existing.as_ref().map_or(0, |e| e.revision) != endpoint.revision {
            return Err(StoreError::Changed {
                what: "endpoint",
                id: endpoint.id.to_string(),
            });
        }
        let mut next = endpoint.clone();
        next.revision += 1;
        match existing {
            Some(existing) => *existing = next,
            None => list.push(next),
        }
        Ok(())
    }

    async fn endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let state = self.state.lock();
        Ok(state
            .endpoints
            .get(merchant)
            .and_then(|list| list.iter().find(|e| &e.id == id))
            .cloned())
    }

    async fn endpoints(&self, merchant: &MerchantId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut endpoints = self.state.lock().endpoints.get(merchant).cloned().unwrap_or_default();
        checkout::webhook_endpoint::sort_oldest_first(&mut endpoints);
        Ok(endpoints)
    }

    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<bool, StoreError> {
        let mut state = self.state.lock();
        let Some(list) = state.endpoints.get_mut(merchant) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|e| &e.id != id);
        Ok(list.len() < before)
    }
}

#[async_trait]
impl KeyRegistry for EmbeddedStore {
    async fn published_keys(&self) -> Result<Vec<PublishedKey>, StoreError> {
        // All in one map already: the registry is the endpoints themselves.
        let state = self.state.lock();
        let endpoints = state.endpoints.values().flatten();
        Ok(endpoints
            .flat_map(|e| e.signing_keys.iter().map(|k| k.published()))
            .collect())
    }
}

#[async_trait]
impl DeliveryLog for EmbeddedStore {
    async fn record(&self, record: &AttemptRecord) -> Result<bool, StoreError> {
        let mut log = self.deliveries.lock();
        let key = (record.target.clone(), record.sort_key());
        match log.get(&key) {
            Some(stored) if stored.delivered() || !record.delivered() => Ok(false),
            _ => {
                log.insert(key, record.clone());
                Ok(true)
            }
        }
    }

    async fn started(&self, pairs: &[(&str, &EventId)]) -> Result<Vec<bool>, StoreError> {
        let log = self.deliveries.lock();
        Ok(pairs
            .iter()
            .map(|(target, event)| log.contains_key(&((*target).to_owned(), attempt_log::sort_key(event, 1))))
            .collect())
    }

    async fn latest(&self, target: &str, event: &EventId) -> Result<Option<AttemptRecord>, StoreError> {
        Ok(self.attempts_of(target, event).await?.pop())
    }

    async fn attempts_of(&self, target: &str, event: &EventId) -> Result<Vec<AttemptRecord>, StoreError> {
        let prefix = attempt_log::event_prefix(event);
        let log = self.deliveries.lock();
        Ok(log
            .range((target.to_owned(), prefix.clone())..)
            .take_while(|((t, sk), _)| t == target && sk.starts_with(&prefix))
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn attempts(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError> {
        let log = self.deliveries.lock();
        // The range starts at the tighter lower bound; `contains` drops the `after` key itself.
        let lowest = [&query.from, &query.after].into_iter().flatten().max().cloned();
        let low = (target.to_owned(), lowest.unwrap_or_default());
        let found = match &query.before {
            // (`range` refuses a start above its end.)
            Some(before) if *before <= low.1 => return Ok(Vec::new()),
            Some(before) => log.range(low..(target.to_owned(), before.clone())),
            None => log.range(low..(target.to_owned() + "\u{0}", String::new())),
        };
        let records = found
            .filter(|((_, key), _)| query.contains(key))
            .map(|(_, r)| r.clone());
        Ok(if query.oldest_first {
            records.take(query.limit).collect()
        } else {
            records.rev().take(query.limit).collect()
        })
    }
}
