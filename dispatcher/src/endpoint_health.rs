//! Endpoint health: how long an endpoint has failed without a success (`failing_since`, stored
//! on the endpoint), disabling it past the limit or on 410, and which endpoints are slow right
//! now — failing, or timed out at this instance — so their deliveries take the slow lane and
//! never hold up a batch of healthy ones.

use crate::targets::Target;
use checkout::clock::Timestamp;
use checkout::ids::EndpointId;
use checkout::ports::{EndpointStore, StoreError};
use checkout::webhook_endpoint::{EndpointState, WebhookEndpoint};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a timeout seen at this instance marks an endpoint slow (unless a success clears it).
const REMEMBER_TIMEOUT: Duration = Duration::from_secs(600);
/// Tries of a read-modify-write of the endpoint that keeps meeting concurrent writers.
const CHANGE_TRIES: usize = 20;
/// Entries kept before old ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// Where a paused endpoint stands for a held delivery (see [`EndpointHealth::cover_hold`]).
pub(crate) enum Cover {
    /// Paused, and its resume reaches the event.
    Covered,
    /// Resumed or disabled meanwhile: the endpoint as it is now.
    NotPaused(Target),
    /// Deleted.
    Gone,
}

pub(crate) struct EndpointHealth {
    endpoints: Arc<dyn EndpointStore>,
    disable_after: chrono::Duration,
    /// Endpoints that timed out here, and when.
    timed_out: Mutex<HashMap<EndpointId, Instant>>,
}

impl EndpointHealth {
    pub fn new(endpoints: Arc<dyn EndpointStore>, disable_after: chrono::Duration) -> Self {
        Self {
            endpoints,
            disable_after,
            timed_out: Mutex::new(HashMap::new()),
        }
    }

    /// Failing (as stored) or timed out here recently: its deliveries go by the slow lane.
    pub fn is_slow(&self, target: &Target) -> bool {
        let Target::Endpoint(e) = target else { return false };
        e.failing_since.is_some()
            || self
                .timed_out
                .lock()
                .get(&e.id)
                .is_some_and(|at| at.elapsed() < REMEMBER_TIMEOUT)
    }

    /// The endpoint as stored now (strongly consistent); `None` if it is gone or unreadable.
    pub async fn reread(&self, target: &Target) -> Option<Target> {
        let Target::Endpoint(e) = target else { return None };
        match self.endpoints.endpoint(&e.merchant_id, &e.id).await {
            Ok(found) => found.map(|fresh| Target::Endpoint(Arc::new(fresh))),
            Err(err) => {
                warn!(endpoint_id = %e.id, error = %err, "could not read the endpoint");
                None
            }
        }
    }

    pub fn note_timeout(&self, target: &Target) {
        let Target::Endpoint(e) = target else { return };
        let mut timed_out = self.timed_out.lock();
        if timed_out.len() > PRUNE_ABOVE {
            timed_out.retain(|_, at| at.elapsed() < REMEMBER_TIMEOUT);
        }
        timed_out.insert(e.id.clone(), Instant::now());
    }

    pub async fn note_success(&self, target: &Target) {
        let Target::Endpoint(e) = target else { return };
        self.timed_out.lock().remove(&e.id);
        if e.failing_since.is_some() {
            self.change_endpoint(e, |fresh| fresh.failing_since.take().is_some())
                .await;
        }
    }

    /// Tracks how long the endpoint has failed without a success; past the limit it is disabled
    /// and the reason returned.
    pub async fn note_failure(&self, target: &Target, now: Timestamp) -> Option<String> {
        let Target::Endpoint(e) = target else { return None };
        match e.failing_since {
            None => {
                self.change_endpoint(e, |fresh| {
                    let first = fresh.failing_since.is_none();
                    fresh.failing_since.get_or_insert(now);
                    first
                })
                .await;
                None
            }
            Some(since) if now - since >= self.disable_after => {
                let hours = self.disable_after.num_hours();
                let reason = format!("failing without a success for {hours} hours");
                self.disable(target, &reason, now).await;
                Some(format!("the endpoint was disabled: {reason}"))
            }
            Some(_) => None,
        }
    }

    /// Disables the endpoint for an answer to a request sent at `sent_at` to its URL then. A
    /// change the merchant made since (enabled it again, moved it to another URL) wins: an
    /// answer to an older request, or from the URL it left, disables nothing.
    pub async fn disable(&self, target: &Target, reason: &str, sent_at: Timestamp) {
        let Target::Endpoint(e) = target else { return };
        let applied = self
            .change_endpoint(e, |fresh| {
                if fresh.url != e.url || fresh.updated_at > sent_at || !fresh.enabled {
                    return false;
                }
                fresh.disable(reason.to_owned(), sent_at);
                true
            })
            .await;
        if applied {
            warn!(
                endpoint_id = %e.id,
                merchant_id = %e.merchant_id,
                reason,
                operational_event = "endpoint.disabled",
                "webhook endpoint disabled"
            );
        } else {
            info!(endpoint_id = %e.id, reason, "not disabled: the endpoint changed since the request was sent");
        }
    }

    /// Reads the endpoint as stored now and, while it is paused, makes its pause's resume reach
    /// an event created at `event_at` whose delivery it holds (see [`WebhookEndpoint::hold`]):
    /// only an event older than the pause and than any held before costs a write. Says whether
    /// it is paused still, or how it stands instead.
    pub async fn cover_hold(&self, target: &Target, event_at: Timestamp) -> Result<Cover, StoreError> {
        let Target::Endpoint(e) = target else {
            return Ok(Cover::Gone);
        };
        for _ in 0..CHANGE_TRIES {
            let Some(mut fresh) = self.endpoints.endpoint(&e.merchant_id, &e.id).await? else {
                return Ok(Cover::Gone);
            };
            if fresh.state() != EndpointState::Paused {
                return Ok(Cover::NotPaused(Target::Endpoint(Arc::new(fresh))));
            }
            if !fresh.hold(event_at) {
                return Ok(Cover::Covered);
            }
            match self.endpoints.put_endpoint(&fresh).await {
                Ok(()) => return Ok(Cover::Covered),
                Err(StoreError::Changed { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(StoreError::Changed {
            what: "endpoint",
            id: e.id.to_string(),
        })
    }

    /// Changes the stored endpoint: re-read, changed, and stored only if nobody stored it
    /// meanwhile (else again from a fresh read), so a merchant's edit made in the same instant is
    /// kept. Best effort: bookkeeping that fails is tried again at the next attempt. `change`
    /// says whether it changed anything (nothing is written otherwise); returns whether a
    /// change was stored.
    async fn change_endpoint(&self, endpoint: &WebhookEndpoint, change: impl Fn(&mut WebhookEndpoint) -> bool) -> bool {
        for _ in 0..CHANGE_TRIES {
            let mut fresh = match self.endpoints.endpoint(&endpoint.merchant_id, &endpoint.id).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return false,
                Err(err) => {
                    warn!(endpoint_id = %endpoint.id, error = %err, "could not read the endpoint");
                    return false;
                }
            };
            if !change(&mut fresh) {
                return false;
            }
            match self.endpoints.put_endpoint(&fresh).await {
                Ok(()) => return true,
                Err(StoreError::Changed { .. }) => continue,
                Err(err) => {
                    warn!(endpoint_id = %endpoint.id, error = %err, "could not update the endpoint");
                    return false;
                }
            }
        }
        false
    }
}
