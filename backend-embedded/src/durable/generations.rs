//! A map bounded in size and age, kept in two generations: new entries go to the current one;
//! when it holds `capacity` entries or is `max_age` old it becomes the previous one and the old
//! previous one is dropped. So the map holds at most 2 × `capacity` entries, and nothing older
//! than 2 × `max_age` once nothing is inserted (as long as [`Generations::rotate_if_due`] is
//! called now and then). What it forgets is forgotten whole-generation at a time: the store's
//! uses of it fall back to reading the database for what is not found.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub(super) struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    since: Option<Instant>,
    capacity: usize,
    max_age: Duration,
}

impl<K: Hash + Eq, V> Generations<K, V> {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            since: None,
            capacity,
            max_age,
        }
    }

    pub fn rotate_if_due(&mut self, now: Instant) {
        let old = self
            .since
            .is_some_and(|since| now.duration_since(since) >= self.max_age);
        if self.current.len() >= self.capacity || old {
            self.previous = std::mem::take(&mut self.current);
            self.since = Some(now);
        }
    }

    /// Inserts into the current generation, replacing the key's entry in either.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        self.rotate_if_due(now);
        self.since.get_or_insert(now);
        self.previous.remove(&key);
        self.current.insert(key, value);
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// The key's entry where it is, without moving it to the current generation.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.current.get_mut(key) {
            Some(value) => Some(value),
            None => self.previous.get_mut(key),
        }
    }

    pub fn remove(&mut self, key: &K) {
        self.current.remove(key);
        self.previous.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(60);

    #[test]
    fn bounded_in_number() {
        let start = Instant::now();
        let mut map = Generations::new(4, AGE);
        map.insert(0, "first", start);
        for key in 1..20 {
            map.insert(key, "more", start);
            assert!(map.len() <= 8);
        }
        assert_eq!(map.get(&0), None, "the oldest generation is gone");
        assert_eq!(map.get(&19), Some(&"more"));
    }

    #[test]
    fn bounded_in_age_and_the_newest_value_answers() {
        let start = Instant::now();
        let mut map = Generations::new(100, AGE);
        map.insert("k", 1, start);
        map.rotate_if_due(start + AGE);
        assert_eq!(map.get(&"k"), Some(&1), "kept one generation more");
        if let Some(value) = map.get_mut(&"k") {
            *value = 2;
        }
        assert_eq!(map.get(&"k"), Some(&2), "changed where it is");
        map.insert("k", 3, start + AGE);
        assert_eq!(map.get(&"k"), Some(&3), "the newest value answers");
        assert_eq!(map.len(), 1, "one entry per key");
        map.rotate_if_due(start + AGE * 2);
        map.rotate_if_due(start + AGE * 3);
        assert_eq!(map.len(), 0, "an idle map forgets everything after two ages");
    }
}
