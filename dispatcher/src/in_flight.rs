//! A cap on requests in flight per endpoint, so one slow receiver cannot take every connection
//! the dispatcher has. A delivery that finds its endpoint at the cap waits a moment for a place,
//! then is deferred, like a rate-limited one.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Above this many tracked keys, idle ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

pub struct InFlightLimits<K: Hash + Eq + Clone> {
    cap: usize,
    slots: Mutex<HashMap<K, Arc<Semaphore>>>,
}

impl<K: Hash + Eq + Clone> InFlightLimits<K> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one request to `key`, held until the permit is dropped; `None` at the cap.
    pub fn try_acquire(&self, key: &K) -> Option<OwnedSemaphorePermit> {
        self.semaphore(key).try_acquire_owned().ok()
    }

    /// A place, waiting up to `within` for one to free up.
    pub async fn acquire_within(&self, key: &K, within: std::time::Duration) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.semaphore(key);
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if within.is_zero() => None,
            Err(_) => tokio::time::timeout(within, semaphore.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        }
    }

    fn semaphore(&self, key: &K) -> Arc<Semaphore> {
        {
            let mut slots = self.slots.lock();
            if slots.len() > PRUNE_ABOVE {
                slots.retain(|_, s| s.available_permits() < self.cap);
            }
            match slots.get(key) {
                Some(semaphore) => semaphore.clone(),
                None => slots
                    .entry(key.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.cap)))
                    .clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_further_requests_wait_for_a_slot() {
        let limits = InFlightLimits::new(2);
        let a = limits.try_acquire(&"we_1").expect("first slot");
        let _b = limits.try_acquire(&"we_1").expect("second slot");
        assert!(limits.try_acquire(&"we_1").is_none(), "third is over the cap");
        assert!(
            limits.try_acquire(&"we_2").is_some(),
            "another endpoint has its own slots"
        );
        drop(a);
        assert!(
            limits.try_acquire(&"we_1").is_some(),
            "a finished request frees its slot"
        );
    }
}
