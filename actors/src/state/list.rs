//! List state: a `Vec<T>` per key, cached and stored as one value.

use super::error::StateError;
use super::value::ValueState;
use super::{StateKey, StateValue};

/// Access to the list of one key in one list state, from
/// [`KeyedState::list`](super::KeyedState::list).
///
/// The whole list is one stored value (one sled entry, one TTL). That keeps appends
/// on cached keys allocation-cheap and flushes simple; lists expected to grow without
/// bound belong in a map state instead.
pub struct ListState<'a, K, T> {
    /// The list as one value.
    inner: ValueState<'a, K, Vec<T>>,
}

impl<'a, K: StateKey, T: StateValue> ListState<'a, K, T> {
    /// Wraps the value state holding the list.
    pub(crate) fn new(inner: ValueState<'a, K, Vec<T>>) -> Self {
        Self { inner }
    }

    /// The elements, cloned (empty if absent or expired).
    pub fn get(&mut self) -> Result<Vec<T>, StateError> {
        Ok(self.inner.get()?.cloned().unwrap_or_default())
    }

    /// Appends `item` (refreshes the list's TTL).
    pub fn add(&mut self, item: T) -> Result<(), StateError> {
        self.inner.get_or_insert_with(Vec::new)?.push(item);
        Ok(())
    }

    /// Replaces the whole list (an empty list clears it).
    pub fn update(&mut self, items: Vec<T>) -> Result<(), StateError> {
        if items.is_empty() {
            self.inner.clear()
        } else {
            self.inner.set(items)
        }
    }

    /// Removes the list.
    pub fn clear(&mut self) -> Result<(), StateError> {
        self.inner.clear()
    }

    /// Number of elements (0 if absent or expired), without cloning them.
    pub fn len(&mut self) -> Result<usize, StateError> {
        Ok(self.inner.get()?.map_or(0, Vec::len))
    }

    /// Whether the list has no elements.
    pub fn is_empty(&mut self) -> Result<bool, StateError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use std::time::Duration;

    #[test]
    fn add_get_update_clear_len() {
        let (_store, mut ks, _clock) = keyed::<u64>("buf", 0..3);
        let h = ks
            .register_list::<String>(StateDescriptor::new("pending"))
            .unwrap();
        let mut l = ks.list(h, 2, &7);
        assert_eq!(l.get().unwrap(), Vec::<String>::new());
        assert!(l.is_empty().unwrap());
        l.add("a".into()).unwrap();
        l.add("b".into()).unwrap();
        assert_eq!(l.get().unwrap(), vec!["a", "b"]);
        assert_eq!(l.len().unwrap(), 2);
        ks.flush().unwrap();
        ks.evict_clean();
        let mut l = ks.list(h, 2, &7);
        assert_eq!(l.get().unwrap(), vec!["a", "b"]);
        l.add("c".into()).unwrap();
        assert_eq!(l.len().unwrap(), 3);
        l.update(vec!["z".into()]).unwrap();
        assert_eq!(l.get().unwrap(), vec!["z"]);
        ks.flush().unwrap();
        ks.evict_clean();
        assert_eq!(ks.list(h, 2, &7).get().unwrap(), vec!["z"]);
        ks.list(h, 2, &7).clear().unwrap();
        assert_eq!(ks.list(h, 2, &7).len().unwrap(), 0);
        ks.list(h, 2, &8).update(vec!["q".into()]).unwrap();
        ks.list(h, 2, &8).update(Vec::new()).unwrap();
        assert!(ks.list(h, 2, &8).is_empty().unwrap());
        ks.flush().unwrap();
        assert!(raw_entries(&ks, 2).is_empty());
    }

    #[test]
    fn list_expires_as_a_whole_and_add_refreshes() {
        let (_store, mut ks, clock) = keyed::<u64>("buf", 0..1);
        let h = ks
            .register_list::<u8>(StateDescriptor::new("l").with_ttl(Duration::from_millis(10)))
            .unwrap();
        ks.list(h, 0, &1).add(1).unwrap();
        clock.advance(8);
        ks.list(h, 0, &1).add(2).unwrap();
        clock.advance(8);
        assert_eq!(ks.list(h, 0, &1).get().unwrap(), vec![1, 2]);
        clock.advance(2);
        assert!(ks.list(h, 0, &1).get().unwrap().is_empty());
        ks.list(h, 0, &1).add(3).unwrap();
        assert_eq!(ks.list(h, 0, &1).get().unwrap(), vec![3]);
    }
}
