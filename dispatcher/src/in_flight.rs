//! A cap on requests in flight per endpoint, so one slow receiver cannot take every connection
//! the dispatcher has. A delivery that finds its endpoint at the cap may wait a moment for a
//! place, then is deferred, like a rate-limited one.
//!
//! Whether waiting is worth it depends on the endpoint: one that answers in milliseconds frees
//! a place in milliseconds, one that has stopped answering frees none until its requests time
//! out. So each endpoint's places keep their pace — when one was last freed and how long
//! requests typically hold one — and [`Patience::WhileQuick`] waits only for a quick endpoint.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Above this many tracked keys, idle ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;
/// An endpoint is quick when a place was freed within this long and requests typically hold
/// a place for less: a waiter at the head of the line gets one within about this long.
const QUICK: Duration = Duration::from_millis(250);

/// How long a delivery may wait for a place at an endpoint at its cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Up to this long.
    For(Duration),
    /// Up to this long if the endpoint is quick and no more deliveries than its cap already
    /// wait; else not at all.
    WhileQuick(Duration),
}

pub struct InFlightLimits<K: Hash + Eq + Clone> {
    cap: usize,
    places: Mutex<HashMap<K, Arc<Places>>>,
}

/// One endpoint's places and their pace.
struct Places {
    semaphore: Arc<Semaphore>,
    pace: Mutex<Pace>,
    waiting: AtomicUsize,
    created: Instant,
}

#[derive(Default)]
struct Pace {
    last_freed: Option<Instant>,
    /// How long requests held a place, a moving average (the latest weighs 1/8).
    typical_hold: Duration,
}

/// A place for one request, held until dropped.
pub struct InFlightPermit {
    _permit: OwnedSemaphorePermit,
    places: Arc<Places>,
    since: Instant,
}

impl std::fmt::Debug for InFlightPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightPermit").field("since", &self.since).finish()
    }
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        let now = Instant::now();
        let held = now.saturating_duration_since(self.since);
        let mut pace = self.places.pace.lock();
        pace.typical_hold = match pace.last_freed {
            None => held,
            Some(_) => (pace.typical_hold * 7 + held) / 8,
        };
        pace.last_freed = Some(now);
    }
}

impl<K: Hash + Eq + Clone> InFlightLimits<K> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            places: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one request to `key`, waiting for one as `patience` allows; `None` when none
    /// came.
    pub async fn acquire(&self, key: &K, patience: Patience) -> Option<InFlightPermit> {
        let places = self.places(key);
        let permit = match places.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let within = match patience {
                    Patience::For(within) => within,
                    Patience::WhileQuick(within) if places.is_quick(self.cap) => within,
                    Patience::WhileQuick(_) => Duration::ZERO,
                };
                if within.is_zero() {
                    return None;
                }
                places.waiting.fetch_add(1, Ordering::Relaxed);
                let waited = tokio::time::timeout(within, places.semaphore.clone().acquire_owned()).await;
                places.waiting.fetch_sub(1, Ordering::Relaxed);
                waited.ok()?.ok()?
            }
        };
        Some(InFlightPermit {
            _permit: permit,
            places,
            since: Instant::now(),
        })
    }

    /// How long the endpoint has gone without freeing a place (since its first request, when it
    /// never freed one): how long a stuck endpoint has been stuck.
    pub fn stalled_for(&self, key: &K) -> Duration {
        let places = self.places(key);
        let since = places.pace.lock().last_freed.unwrap_or(places.created);
        since.elapsed()
    }

    fn places(&self, key: &K) -> Arc<Places> {
        let mut all = self.places.lock();
        if all.len() > PRUNE_ABOVE {
            all.retain(|_, p| p.semaphore.available_permits() < self.cap);
        }
        match all.get(key) {
            Some(places) => places.clone(),
            None => all
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Places {
                        semaphore: Arc::new(Semaphore::new(self.cap)),
                        pace: Mutex::default(),
                        waiting: AtomicUsize::new(0),
                        created: Instant::now(),
                    })
                })
                .clone(),
        }
    }
}

impl Places {
    fn is_quick(&self, cap: usize) -> bool {
        if self.waiting.load(Ordering::Relaxed) >= cap {
            return false;
        }
        let pace = self.pace.lock();
        pace.typical_hold < QUICK && pace.last_freed.is_some_and(|at| at.elapsed() < QUICK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Patience = Patience::For(Duration::ZERO);

    #[tokio::test]
    async fn at_the_cap_further_requests_wait_for_a_slot() {
        let limits = InFlightLimits::new(2);
        let a = limits.acquire(&"we_1", NOW).await.expect("first slot");
        let _b = limits.acquire(&"we_1", NOW).await.expect("second slot");
        assert!(limits.acquire(&"we_1", NOW).await.is_none(), "third is over the cap");
        assert!(
            limits.acquire(&"we_2", NOW).await.is_some(),
            "another endpoint has its own slots"
        );
        drop(a);
        assert!(
            limits.acquire(&"we_1", NOW).await.is_some(),
            "a finished request frees its slot"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_cap_wait_for_a_quick_endpoint() {
        let limits = Arc::new(InFlightLimits::new(1));
        drop(limits.acquire(&"we_1", NOW).await);
        let _held = limits.acquire(&"we_1", NOW).await.expect("the one place");
        let waiting = {
            let limits = limits.clone();
            tokio::spawn(async move { limits.acquire(&"we_1", Patience::WhileQuick(QUICK)).await.is_some() })
        };
        tokio::task::yield_now().await;
        let started = Instant::now();
        let second = limits.acquire(&"we_1", Patience::WhileQuick(QUICK)).await;
        assert!(second.is_none(), "a second waiter would be over the cap");
        assert_eq!(started.elapsed(), Duration::ZERO, "and is turned away at once");
        assert!(!waiting.await.unwrap(), "the first waited its time, in vain");
    }
}
