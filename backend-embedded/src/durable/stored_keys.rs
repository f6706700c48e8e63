//! Which idempotency keys may have a stored reply: a counting filter of the keys in the
//! database, so a request with a new key (nearly all of them) claims it without reading the
//! database. A key whose counter is zero has no stored reply; any other is read as before.
//!
//! One counter per bucket of keys (by a hash with a per-process seed). Every stored reply
//! counts in its bucket from before anybody can miss it (loaded at open; added after its commit
//! and before its claim is let go of) until its row is purged; counting a reply twice (a
//! replaced row, a rolled-back one) only makes its bucket read for nothing. A counter that
//! reaches its maximum stays there. So a bucket is never zero while one of its keys is stored:
//! what this may cost is a read a request did not need (as many buckets as there are keys, at
//! most), never a stored reply missed.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, Ordering};

/// Buckets: 1 MiB of counters. Requests read the database for nothing about as often as the
/// share of buckets in use (≈ 1 % with ten thousand stored replies).
const BUCKETS: usize = 1 << 20;

pub(super) struct StoredKeys {
    counters: Box<[AtomicU8]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for StoredKeys {
    fn default() -> Self {
        Self {
            counters: (0..BUCKETS).map(|_| AtomicU8::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl StoredKeys {
    fn counter(&self, key: &str) -> &AtomicU8 {
        let bucket = self.hasher.hash_one(key) as usize % BUCKETS;
        &self.counters[bucket]
    }

    /// A reply stored under `key`.
    pub fn add(&self, key: &str) {
        let _ = self
            .counter(key)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_add(1));
    }

    /// A reply under `key` deleted. A counter at its maximum stays (it may count more keys).
    pub fn remove(&self, key: &str) {
        let _ = self
            .counter(key)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match n {
                0 | u8::MAX => None,
                n => Some(n - 1),
            });
    }

    /// Whether a reply may be stored under `key` (`false`: certainly none is).
    pub fn may_hold(&self, key: &str) -> bool {
        self.counter(key).load(Ordering::Acquire) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_from_its_add_until_its_remove() {
        let keys = StoredKeys::default();
        assert!(!keys.may_hold("a"));
        keys.add("a");
        assert!(keys.may_hold("a"));
        keys.remove("a");
        assert!(!keys.may_hold("a"));
    }

    /// Thousands of keys share buckets: removing some never hides another that is still held.
    #[test]
    fn no_stored_key_is_ever_missed() {
        let keys = StoredKeys::default();
        let names: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
        for name in &names {
            keys.add(name);
        }
        for name in names.iter().step_by(2) {
            keys.remove(name);
        }
        assert!(names.iter().skip(1).step_by(2).all(|name| keys.may_hold(name)));
        let misses = names.iter().step_by(2).filter(|name| keys.may_hold(name)).count();
        assert!(
            misses < 200,
            "{misses} removed keys still read (buckets shared by chance)"
        );
    }

    #[test]
    fn a_full_counter_stays_full() {
        let keys = StoredKeys::default();
        for _ in 0..300 {
            keys.add("hot");
        }
        for _ in 0..300 {
            keys.remove("hot");
        }
        assert!(keys.may_hold("hot"), "it may count keys it could not count any more");
    }
}
