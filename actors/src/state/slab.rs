//! A hash index over a slab of entries: the storage of every cache partition.
//!
//! The index maps a typed key to a slot number, so a lookup yields a plain `usize`
//! rather than a borrow of the map. That lets accessors find an entry with one hash
//! lookup and, on a miss, insert into the same map in the same function (the "get or
//! insert and return a reference" pattern that a borrowing lookup cannot express
//! without a second lookup), and it never needs an owned key for a lookup.

use rustc_hash::FxHashMap;
use std::hash::Hash;

/// Keyed slots: `index[key]` is the position of the key's entry in `slots`.
pub(crate) struct KeySlab<K, E> {
    /// Key to slot number.
    index: FxHashMap<K, usize>,
    /// The entries; free slots hold `E::default()`.
    slots: Vec<E>,
    /// Slot numbers not in use.
    free: Vec<usize>,
}

impl<K: Hash + Eq, E: Default> KeySlab<K, E> {
    /// An empty slab.
    pub(crate) fn new() -> Self {
        Self {
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Number of keys present.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `key`, if present: one hash lookup, no clone.
    #[inline]
    pub(crate) fn find(&self, key: &K) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The entry in slot `i` (a slot returned by [`find`](Self::find) or
    /// [`insert`](Self::insert) since the last removal).
    #[inline]
    pub(crate) fn slot(&self, i: usize) -> &E {
        &self.slots[i]
    }

    /// Mutable access to the entry in slot `i`.
    #[inline]
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut E {
        &mut self.slots[i]
    }

    /// Adds `key` with `entry` and returns its slot. Callers insert only keys that
    /// [`find`](Self::find) did not find; a present key is replaced.
    pub(crate) fn insert(&mut self, key: K, entry: E) -> usize {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = entry;
                i
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        };
        if let Some(old) = self.index.insert(key, i) {
            self.slots[old] = E::default();
            self.free.push(old);
        }
        i
    }

    /// Removes `key`, returning its entry.
    pub(crate) fn remove(&mut self, key: &K) -> Option<E> {
        let i = self.index.remove(key)?;
        let entry = std::mem::take(&mut self.slots[i]);
        self.free.push(i);
        self.compact();
        Some(entry)
    }

    /// Every key with its entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &E)> {
        self.index.iter().map(move |(k, &i)| (k, &self.slots[i]))
    }

    /// Calls `f` on every entry, in no particular order.
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(&mut E)) {
        for &i in self.index.values() {
            f(&mut self.slots[i]);
        }
    }

    /// Calls `f` on every key and entry; entries for which it returns `false` are
    /// removed. Returns how many were removed.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &mut E) -> bool) -> usize {
        let Self { index, slots, free } = self;
        let before = index.len();
        index.retain(|k, &mut i| {
            let keep = f(k, &mut slots[i]);
            if !keep {
                slots[i] = E::default();
                free.push(i);
            }
            keep
        });
        let removed = before - index.len();
        if removed > 0 {
            self.compact();
        }
        removed
    }

    /// Gives memory back once most slots are free, renumbering the live ones.
    fn compact(&mut self) {
        if self.index.is_empty() {
            self.slots = Vec::new();
            self.free = Vec::new();
            return;
        }
        if self.slots.len() < 64 || self.free.len() * 2 < self.slots.len() {
            return;
        }
        let mut slots = Vec::with_capacity(self.index.len());
        for i in self.index.values_mut() {
            slots.push(std::mem::take(&mut self.slots[*i]));
            *i = slots.len() - 1;
        }
        self.slots = slots;
        self.free = Vec::new();
        self.index.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_retain_and_compact() {
        let mut s: KeySlab<u32, String> = KeySlab::new();
        for k in 0..200u32 {
            let i = s.insert(k, k.to_string());
            assert_eq!(s.find(&k), Some(i));
        }
        assert_eq!(s.len(), 200);
        assert_eq!(s.remove(&7).as_deref(), Some("7"));
        assert_eq!(s.find(&7), None);
        let mut seen = 0;
        s.for_each_mut(|v| {
            seen += 1;
            v.push('.');
            v.pop();
        });
        assert_eq!(seen, 199);
        let removed = s.retain(|k, _| k % 10 == 0);
        assert_eq!(removed, 179);
        assert_eq!(s.len(), 20);
        // Compaction renumbered slots; every survivor still maps to its own entry.
        for (k, v) in s.iter() {
            assert_eq!(*v, k.to_string());
        }
        for k in (0..200u32).step_by(10) {
            let i = s.find(&k).unwrap();
            assert_eq!(*s.slot(i), k.to_string());
            s.slot_mut(i).push('!');
        }
        let i = s.insert(1000, "new".into());
        assert_eq!(s.slot(i), "new");
        // Replacing a present key frees its old slot instead of leaking it.
        let j = s.insert(1000, "newer".into());
        assert_eq!(s.slot(j), "newer");
        assert_eq!(s.len(), 21);
        assert_eq!(s.retain(|_, _| false), 21);
        assert_eq!(s.len(), 0);
        assert!(s.slots.is_empty() && s.free.is_empty());
    }
}
