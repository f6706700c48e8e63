//! A cap on requests in flight per endpoint, so one slow receiver cannot take every connection
//! the dispatcher has. A delivery that finds its endpoint at the cap may wait a moment for a
//! place, then is deferred, like a rate-limited one.
//!
//! Whether waiting is worth it depends on the endpoint: one that answers in milliseconds frees
//! a place in milliseconds, one that has stopped answering frees none until its requests time
//! out. So each endpoint's places keep their pace — how long requests typically hold one, and
//! when the endpoint last made progress (freed a place, or took its last free one) — and
//! [`Patience::WhileQuick`] waits only for a quick endpoint.

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
/// An endpoint is quick when requests typically hold a place for less than this and it made
/// progress within this long: a waiter at the head of the line gets a place within about that.
const QUICK: Duration = Duration::from_millis(250);

/// How long a delivery may wait for a place at an endpoint at its cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Up to this long.
    For(Duration),
    /// Up to this long if the endpoint is quick and fewer deliveries than its cap already wait
    /// so; else not at all.
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
    /// Deliveries waiting for a place as [`Patience::WhileQuick`] allows.
    waiting: AtomicUsize,
    created: Instant,
}

#[derive(Default)]
struct Pace {
    last_freed: Option<Instant>,
    /// When the last free place was taken; cleared when one is freed.
    full_since: Option<Instant>,
    /// How long requests held a place, a moving average (the latest weighs 1/8).
    typical_hold: Duration,
    /// How long the request that freed a place last held it.
    last_hold: Duration,
    /// When a request last ended within [`QUICK`].
    last_quick: Option<Instant>,
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
        pace.last_hold = held;
        if held < QUICK {
            pace.last_quick = Some(now);
        }
        pace.last_freed = Some(now);
        pace.full_since = None;
    }
}

/// One of the [`Places::waiting`] slots, given back when the wait ends however it ends.
struct WaitSlot<'a>(&'a AtomicUsize);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
                let (within, _slot) = match patience {
                    Patience::For(within) => (within, None),
                    Patience::WhileQuick(within) if places.is_quick() => match places.wait_slot(self.cap) {
                        Some(slot) => (within, Some(slot)),
                        None => return None,
                    },
                    Patience::WhileQuick(_) => return None,
                };
                if within.is_zero() {
                    return None;
                }
                tokio::time::timeout(within, places.semaphore.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        if places.semaphore.available_permits() == 0 {
            places.pace.lock().full_since.get_or_insert_with(Instant::now);
        }
        Some(InFlightPermit {
            _permit: permit,
            places,
            since: Instant::now(),
        })
    }

    /// How long the endpoint has gone without progress — freeing a place, or taking its last
    /// free one — while at its cap: how long a stuck endpoint has been stuck. Zero for an
    /// endpoint this instance has not sent to.
    pub fn stalled_for(&self, key: &K) -> Duration {
        let places = self.known(key);
        places.map_or(Duration::ZERO, |p| p.last_progress().elapsed())
    }

    /// How often the endpoint frees a place while at its cap, as far as this instance can
    /// tell: how long requests typically hold one (or how long it has been stuck, if longer),
    /// over its number of places. Zero for an endpoint this instance has not sent to.
    pub fn place_interval(&self, key: &K) -> Duration {
        let places = self.known(key);
        places.map_or(Duration::ZERO, |p| {
            let typical_hold = p.pace.lock().typical_hold;
            let hold = typical_hold.max(p.last_progress().elapsed());
            hold / u32::try_from(self.cap).unwrap_or(u32::MAX)
        })
    }

    /// Whether every place of the endpoint is taken.
    pub fn is_full(&self, key: &K) -> bool {
        let places = self.known(key);
        places.is_some_and(|p| p.semaphore.available_permits() == 0)
    }

    /// Whether the endpoint answers quickly (see [`QUICK`]).
    pub fn is_quick(&self, key: &K) -> bool {
        let places = self.known(key);
        places.is_some_and(|p| p.is_quick())
    }

    /// How long since a request to the endpoint last ended within [`QUICK`] (since this instance
    /// first sent to it, if none has). Zero for an endpoint this instance has not sent to.
    pub fn unanswered_for(&self, key: &K) -> Duration {
        let places = self.known(key);
        places.map_or(Duration::ZERO, |p| {
            let last_quick = p.pace.lock().last_quick;
            last_quick.unwrap_or(p.created).elapsed()
        })
    }

    /// Whether the endpoint's latest request to end held its place for less than [`QUICK`]:
    /// the first sign of an endpoint that answers again, however long ago that was.
    pub fn last_answered_quickly(&self, key: &K) -> bool {
        let places = self.known(key);
        places.is_some_and(|p| {
            let pace = p.pace.lock();
            pace.last_freed.is_some() && pace.last_hold < QUICK
        })
    }

    /// The endpoint's places, if this instance has sent to it (without tracking it if not).
    fn known(&self, key: &K) -> Option<Arc<Places>> {
        self.places.lock().get(key).cloned()
    }

    fn places(&self, key: &K) -> Arc<Places> {
        let mut all = self.places.lock();
        if let Some(places) = all.get(key) {
            return places.clone();
        }
        if all.len() > PRUNE_ABOVE {
            all.retain(|_, p| p.semaphore.available_permits() < self.cap);
        }
        all.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Places {
                    semaphore: Arc::new(Semaphore::new(self.cap)),
                    pace: Mutex::default(),
                    waiting: AtomicUsize::new(0),
                    created: Instant::now(),
                })
            })
            .clone()
    }
}

impl Places {
    fn last_progress(&self) -> Instant {
        let pace = self.pace.lock();
        let latest = pace.last_freed.max(pace.full_since);
        latest.unwrap_or(self.created)
    }

    /// Requests held a place briefly (measured at least once), and the endpoint made progress
    /// within [`QUICK`].
    fn is_quick(&self) -> bool {
        let measured = {
            let pace = self.pace.lock();
            pace.last_freed.is_some() && pace.typical_hold < QUICK
        };
        measured && self.last_progress().elapsed() < QUICK
    }

    /// A waiting slot, if fewer than `cap` are taken.
    fn wait_slot(&self, cap: usize) -> Option<WaitSlot<'_>> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .ok()
            .map(|_| WaitSlot(&self.waiting))
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
        // Its slot was given back: the next waiter may wait again.
        let third = limits.acquire(&"we_1", Patience::WhileQuick(QUICK)).await;
        assert!(third.is_none());
        assert_eq!(limits.places(&"we_1").waiting.load(Ordering::Acquire), 0);
    }

    /// A quick endpoint idle for a minute, then a burst that takes every place: the burst's
    /// overflow waits (the endpoint has not been stuck, it just filled up).
    #[tokio::test(start_paused = true)]
    async fn a_burst_after_a_quiet_minute_waits_for_a_quick_endpoint() {
        let limits = Arc::new(InFlightLimits::new(2));
        drop(limits.acquire(&"we_1", NOW).await);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let first = limits.acquire(&"we_1", NOW).await.expect("a place");
        let _second = limits.acquire(&"we_1", NOW).await.expect("the last place");
        assert_eq!(limits.stalled_for(&"we_1"), Duration::ZERO, "it just filled up");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(first);
        });
        let waited = limits.acquire(&"we_1", Patience::WhileQuick(QUICK)).await;
        assert!(waited.is_some(), "a place freed within milliseconds");
    }

    /// Two places held 10 s each, then both held again for 30 s: a place frees every 5 s, then
    /// (stuck longer than requests used to take) every 15 s.
    #[tokio::test(start_paused = true)]
    async fn the_interval_between_freed_places_follows_how_long_requests_hold_them() {
        let limits = InFlightLimits::new(2);
        let held = [limits.acquire(&"we_1", NOW).await, limits.acquire(&"we_1", NOW).await];
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(held);
        assert_eq!(limits.place_interval(&"we_1"), Duration::from_secs(5));
        let _held = [limits.acquire(&"we_1", NOW).await, limits.acquire(&"we_1", NOW).await];
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(limits.place_interval(&"we_1"), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn whether_the_latest_request_answered_quickly_is_known_however_long_ago() {
        let limits = InFlightLimits::new(2);
        let slow = limits.acquire(&"we_1", NOW).await;
        tokio::time::sleep(Duration::from_secs(15)).await;
        drop(slow);
        assert!(!limits.last_answered_quickly(&"we_1"), "it timed out");
        let quick = limits.acquire(&"we_1", NOW).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(quick);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(limits.last_answered_quickly(&"we_1"));
        assert_eq!(limits.unanswered_for(&"we_1"), Duration::from_secs(600));
        assert!(
            !limits.is_quick(&"we_1"),
            "though not quick by its average, nor recently"
        );
    }

    #[test]
    fn asking_how_long_an_unknown_endpoint_is_stalled_tracks_nothing() {
        let limits: InFlightLimits<&str> = InFlightLimits::new(2);
        assert_eq!(limits.stalled_for(&"we_never"), Duration::ZERO);
        assert_eq!(limits.place_interval(&"we_never"), Duration::ZERO);
        assert!(!limits.is_quick(&"we_never"));
        assert!(!limits.last_answered_quickly(&"we_never"));
        assert_eq!(limits.unanswered_for(&"we_never"), Duration::ZERO);
        assert!(limits.places.lock().is_empty());
    }
}
