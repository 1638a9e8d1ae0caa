//! `SmallMap`: an ordered map of a few entries kept as one sorted vector. It serializes as a
//! map, exactly as a `BTreeMap` does, so a stored record reads the same either way; it must
//! never be used for maps that grow large (lookups are binary searches, inserts shift).
//!
//! A profile keeps several maps of one to a handful of entries (when each trait was set, the
//! recent occurrences of each event); a `BTreeMap` allocates a node of eleven slots for each.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The value at `key`, set to its default first if there is none.
    pub fn get_or_insert_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, V::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    /// Keeps only the entries `keep` says yes to (which may change their values).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    /// The value at `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    /// As a `BTreeMap` collects: in key order, the last value of a repeated key kept.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = SmallMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SmallMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read as a BTreeMap reads it (sorted, a repeated key's last value kept), then kept flat.
        Ok(SmallMap(
            BTreeMap::<K, V>::deserialize(d)?.into_iter().collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every operation leaves it as a BTreeMap given the same operations would be, and it
        /// reads and writes the same JSON.
        #[test]
        fn behaves_and_serializes_as_a_btree_map(
            ops in prop::collection::vec((0u8..4, "[a-e]{0,2}", any::<i32>()), 0..60)
        ) {
            let mut small: SmallMap<String, i32> = SmallMap::new();
            let mut btree: BTreeMap<String, i32> = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => prop_assert_eq!(small.insert(k.clone(), v), btree.insert(k, v)),
                    1 => prop_assert_eq!(small.remove(k.as_str()), btree.remove(k.as_str())),
                    2 => {
                        *small.get_or_insert_default(k.clone()) += 1;
                        *btree.entry(k).or_default() += 1;
                    }
                    _ => {
                        prop_assert_eq!(small.get(k.as_str()), btree.get(k.as_str()));
                        prop_assert_eq!(small.contains_key(k.as_str()), btree.contains_key(k.as_str()));
                    }
                }
                prop_assert_eq!(small.len(), btree.len());
                prop_assert!(small.iter().eq(btree.iter()));
            }
            let json = serde_json::to_string(&small).expect("json");
            prop_assert_eq!(&json, &serde_json::to_string(&btree).expect("json"));
            let back: SmallMap<String, i32> = serde_json::from_str(&json).expect("reads back");
            prop_assert_eq!(back, small);
        }
    }

    #[test]
    fn reads_a_repeated_key_as_a_btree_map_does() {
        let text = r#"{"b": 1, "a": 2, "b": 3}"#;
        let small: SmallMap<String, i32> = serde_json::from_str(text).expect("map");
        let btree: BTreeMap<String, i32> = serde_json::from_str(text).expect("map");
        assert!(small.iter().eq(btree.iter()));
        let collected: SmallMap<&str, i32> = [("b", 1), ("a", 2), ("b", 3)].into_iter().collect();
        assert_eq!(
            collected.iter().collect::<Vec<_>>(),
            [(&"a", &2), (&"b", &3)]
        );
    }
}
