//! The (event, target) pairs whose delivery this process is making right now. A copy of the
//! same event that arrives meanwhile (SNS at-least-once, a re-published stream record, a
//! message back after a restart) is not delivered beside it: the delivery in hand carries the
//! pair, and its message comes back if it fails. Held only while an attempt runs, so it delays
//! and reorders nothing.

use checkout::ids::EventId;
use parking_lot::Mutex;
use std::collections::HashSet;

type Key = (EventId, String);

#[derive(Default)]
pub(crate) struct InProgress {
    pairs: Mutex<HashSet<Key>>,
}

/// A pair's place in [`InProgress`], given back when dropped.
pub(crate) struct Claim<'a> {
    set: &'a InProgress,
    key: Key,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set.pairs.lock().remove(&self.key);
    }
}

impl InProgress {
    /// The pair's place, or `None` when its delivery is already in hand here.
    pub fn claim(&self, event: &EventId, target: &str) -> Option<Claim<'_>> {
        let key = (event.clone(), target.to_owned());
        let inserted = self.pairs.lock().insert(key.clone());
        // Built only when inserted: a claim dropped here would give back someone else's place.
        inserted.then(|| Claim { set: self, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_in_hand_cannot_be_claimed_twice_until_it_is_given_back() {
        let set = InProgress::default();
        let event = EventId::generate();
        let first = set.claim(&event, "we_1").expect("free");
        assert!(set.claim(&event, "we_1").is_none(), "in hand");
        assert!(
            set.claim(&event, "we_1").is_none(),
            "a refused claim gives back nothing"
        );
        assert!(set.claim(&event, "we_2").is_some(), "another target is its own pair");
        drop(first);
        assert!(set.claim(&event, "we_1").is_some(), "given back");
    }
}
