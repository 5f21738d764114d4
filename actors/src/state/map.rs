//! Map state: a map of user keys to user values per key, stored one sled entry per
//! user entry so that single entries can be read and written without the whole map.

use super::codec;
use super::error::StateError;
use super::keyed::{
    Access, DeltaCtx, ErasedCache, FlushCtx, StateMeta, TO_BOTH, TO_DELTA, TO_SLED,
};
use super::slab::KeySlab;
use super::value::{captures, delta_kind, flush_kind, FlushKind, Slot, Synced};
use super::{StateKey, StateValue};
use rustc_hash::FxHashMap;
use std::any::Any;
use std::collections::hash_map;

/// The cached part of one key's map.
pub(crate) struct MapEntry<UK, UV> {
    /// Cached user entries (values, known absences and tombstones).
    slots: FxHashMap<UK, Slot<UV>>,
    /// Every user entry stored on disk is in `slots` (or was deliberately dropped by a
    /// clear), so lookups of missing user keys need not read sled.
    complete: bool,
    /// The map was cleared: [`TO_SLED`] since the last flush (which deletes its whole
    /// sled prefix before writing the dirty entries), [`TO_DELTA`] since the last
    /// capture (which starts with a prefix delete).
    cleared: u8,
    /// [`TO_SLED`]: some slot differs from sled; [`TO_DELTA`]: some slot changed since
    /// the last capture.
    pending: u8,
    /// Used since the last eviction pass.
    hot: bool,
}

impl<UK, UV> Default for MapEntry<UK, UV> {
    fn default() -> Self {
        Self {
            slots: FxHashMap::default(),
            complete: false,
            cleared: 0,
            pending: 0,
            hot: false,
        }
    }
}

/// Cache of one map state for one key partition.
pub(crate) struct MapPart<K, UK, UV> {
    /// The cached maps by key.
    slab: KeySlab<K, MapEntry<UK, UV>>,
    /// sled may hold entries of this state in this partition.
    on_disk: bool,
    /// sled or the image may hold entries of this state in this partition (implied by
    /// `on_disk`); when false, a clear need not delete anything.
    persisted: bool,
    /// [`TO_SLED`]: some map differs from sled; [`TO_DELTA`]: some map changed since
    /// the last capture.
    pending: u8,
    /// Some entry may expire, so flushes scan the partition for expired entries.
    has_expiring: bool,
}

/// Typed cache of one map state: one [`MapPart`] per owned key partition.
pub(crate) struct MapCache<K, UK, UV> {
    /// The state's identity.
    meta: StateMeta,
    /// One cache per owned key partition, indexed by `kp - owned.start`.
    parts: Vec<MapPart<K, UK, UV>>,
}

impl<K: StateKey, UK: StateKey, UV: StateValue> MapCache<K, UK, UV> {
    /// An empty cache; `on_disk[i]` tells whether partition `i` may have data in sled.
    pub(crate) fn new(meta: StateMeta, on_disk: Vec<bool>) -> Self {
        let parts = on_disk
            .into_iter()
            .map(|on_disk| MapPart {
                slab: KeySlab::new(),
                on_disk,
                persisted: on_disk,
                pending: 0,
                has_expiring: false,
            })
            .collect();
        Self { meta, parts }
    }

    /// The state's identity and the cache of partition index `pi`.
    #[inline]
    pub(crate) fn split(&mut self, pi: usize) -> (&StateMeta, &mut MapPart<K, UK, UV>) {
        (&self.meta, &mut self.parts[pi])
    }
}

impl<K: StateKey, UK: StateKey, UV: StateValue> ErasedCache<K> for MapCache<K, UK, UV> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn stage_flush(&self, ctx: &mut FlushCtx<'_>) -> Result<(), StateError> {
        let meta = &self.meta;
        for (pi, part) in self.parts.iter().enumerate() {
            if !(part.pending != 0 || part.has_expiring) {
                continue;
            }
            let scan_all = part.has_expiring;
            let kp = ctx.first_kp + pi as u32;
            for (key, entry) in part.slab.iter() {
                if !(scan_all || entry.pending != 0 || entry.cleared != 0) {
                    continue;
                }
                codec::write_entry_key(ctx.key_buf, kp, meta.id, key)
                    .map_err(|e| meta.encode_error(ctx.stage, kp, e))?;
                let prefix_len = ctx.key_buf.len();
                let cleared_in_sled = entry.cleared & TO_SLED != 0;
                let cleared_in_log = entry.cleared & TO_DELTA != 0;
                if cleared_in_sled {
                    for item in ctx.tree.scan_prefix(&ctx.key_buf[..]).keys() {
                        let stored = item.map_err(|e| {
                            meta.sled_error(ctx.stage, kp, "scanning a cleared map of", e)
                        })?;
                        ctx.delete_stored(stored);
                    }
                }
                if cleared_in_log {
                    ctx.log_prefix_delete(kp);
                }
                for (uk, slot) in &entry.slots {
                    let kind = flush_kind(slot, ctx.now);
                    if kind == FlushKind::Keep {
                        continue;
                    }
                    // A delete under a logged clear is covered by the prefix delete.
                    let log = slot.logged_at_flush(kind, ctx.now)
                        && !(kind == FlushKind::Delete && cleared_in_log);
                    // A delete under a clear is covered by the sled prefix scan.
                    let apply = !(kind == FlushKind::Delete && cleared_in_sled);
                    if !(log || apply) {
                        continue;
                    }
                    ctx.key_buf.truncate(prefix_len);
                    codec::append_bincode(ctx.key_buf, uk)
                        .map_err(|e| meta.encode_error(ctx.stage, kp, e))?;
                    match (&slot.value, kind) {
                        (Some(v), FlushKind::Write) => {
                            ctx.put(meta, kp, v, slot.expires_at, log)?
                        }
                        // The clear is pending for sled only (already captured):
                        // the prefix scan removes the key from sled, but the image
                        // holds it (captured after the clear) and must learn of it.
                        _ if !apply => ctx.log_delete(kp),
                        _ => ctx.delete(kp, log),
                    }
                }
            }
        }
        Ok(())
    }

    fn commit_flush(&mut self, now: u64, partition_on_disk: &mut [bool]) -> usize {
        let mut dropped = 0;
        for (pi, part) in self.parts.iter_mut().enumerate() {
            if !(part.pending != 0 || part.has_expiring) {
                continue;
            }
            let scan_all = part.has_expiring;
            let mut wrote = false;
            let mut expiring = false;
            part.slab.retain(|_, entry| {
                if scan_all || entry.pending != 0 || entry.cleared != 0 {
                    let before = entry.slots.len();
                    entry.slots.retain(|_, slot| match flush_kind(slot, now) {
                        FlushKind::Delete => false,
                        kind => {
                            if kind == FlushKind::Write {
                                slot.mark_flushed();
                                wrote = true;
                            }
                            expiring |= slot.expires_at != 0;
                            true
                        }
                    });
                    dropped += before - entry.slots.len();
                    entry.pending = 0;
                    entry.cleared = 0;
                }
                true
            });
            // Every change is in sled now, and the ones the image lacked are logged.
            part.pending = 0;
            // Without a full scan nothing could have expired before, and nothing was
            // written since (the flush holds `&mut`), so the flag stays false.
            part.has_expiring = scan_all && expiring;
            if wrote {
                part.on_disk = true;
                part.persisted = true;
                if let Some(flag) = partition_on_disk.get_mut(pi) {
                    *flag = true;
                }
            }
        }
        dropped
    }

    fn evict(&mut self, cold_only: bool, budget: &mut usize) -> usize {
        let mut dropped = 0;
        for part in &mut self.parts {
            if *budget == 0 {
                break;
            }
            part.slab.retain(|_, entry| {
                if entry.pending != 0 || entry.cleared != 0 || *budget == 0 {
                    return true;
                }
                if cold_only && entry.hot {
                    entry.hot = false;
                    return true;
                }
                let n = 1 + entry.slots.len();
                *budget = budget.saturating_sub(n);
                dropped += n;
                false
            });
        }
        dropped
    }

    fn stage_delta(&self, ctx: &mut DeltaCtx<'_>) -> Result<(), StateError> {
        let meta = &self.meta;
        for (pi, part) in self.parts.iter().enumerate() {
            if part.pending & TO_DELTA == 0 && !part.has_expiring {
                continue;
            }
            let scan_all = part.has_expiring;
            let kp = ctx.first_kp + pi as u32;
            for (key, entry) in part.slab.iter() {
                let cleared = entry.cleared & TO_DELTA != 0;
                if !(scan_all || cleared || entry.pending & TO_DELTA != 0) {
                    continue;
                }
                codec::write_entry_key(ctx.key_buf, kp, meta.id, key)
                    .map_err(|e| meta.encode_error(ctx.stage, kp, e))?;
                let prefix_len = ctx.key_buf.len();
                if cleared {
                    ctx.delete_prefix(kp);
                }
                for (uk, slot) in &entry.slots {
                    let kind = delta_kind(slot, ctx.now);
                    // Deletes under a captured clear are covered by its prefix delete,
                    // and deletes of keys the image cannot hold need no record.
                    if !captures(slot, kind) || (kind == FlushKind::Delete && cleared) {
                        continue;
                    }
                    ctx.key_buf.truncate(prefix_len);
                    codec::append_bincode(ctx.key_buf, uk)
                        .map_err(|e| meta.encode_error(ctx.stage, kp, e))?;
                    match (&slot.value, kind) {
                        (Some(v), FlushKind::Write) => ctx.put(meta, kp, v, slot.expires_at)?,
                        _ => ctx.delete(kp),
                    }
                }
            }
        }
        Ok(())
    }

    fn commit_delta(&mut self, now: u64) {
        for part in &mut self.parts {
            if part.pending & TO_DELTA == 0 && !part.has_expiring {
                continue;
            }
            let scan_all = part.has_expiring;
            let mut lagging = false;
            let mut wrote = false;
            part.slab.for_each_mut(|entry| {
                if !(scan_all || entry.cleared & TO_DELTA != 0 || entry.pending & TO_DELTA != 0) {
                    return;
                }
                let mut entry_lagging = false;
                for slot in entry.slots.values_mut() {
                    let kind = delta_kind(slot, now);
                    wrote |= kind == FlushKind::Write;
                    entry_lagging |= slot.mark_captured(kind);
                }
                entry.cleared &= !TO_DELTA;
                entry.pending &= !TO_DELTA;
                if entry_lagging {
                    entry.pending |= TO_SLED;
                    lagging = true;
                }
            });
            part.pending &= !TO_DELTA;
            if lagging {
                part.pending |= TO_SLED;
            }
            if wrote {
                part.persisted = true;
            }
        }
    }

    fn is_captured(&self, pi: usize, sled_key: &[u8]) -> bool {
        let Some(part) = self.parts.get(pi) else {
            return false;
        };
        let Some((key, uk)) = sled_key
            .get(codec::STATE_PREFIX_LEN..)
            .and_then(split_map_key::<K, UK>)
        else {
            return false;
        };
        part.slab.find(&key).is_some_and(|i| {
            part.slab
                .slot(i)
                .slots
                .get(&uk)
                .is_some_and(|s| s.sync == Synced::Captured)
        })
    }
}

/// Decodes `bincode(key) bincode(user key)`, the tail of a map entry's sled key after
/// the state prefix; `None` if it is not one.
fn split_map_key<K: StateKey, UK: StateKey>(tail: &[u8]) -> Option<(K, UK)> {
    use bincode::Options;
    let mut rest = tail;
    // The limit makes a damaged length prefix fail instead of allocating.
    let key: K = bincode::options()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(tail.len() as u64)
        .deserialize_from(&mut rest)
        .ok()?;
    let uk: UK = codec::decode_exact(rest).ok()?;
    Some((key, uk))
}

/// Access to the map of one key in one map state, from
/// [`KeyedState::map`](super::KeyedState::map).
///
/// Each user entry is cached, stored and expires on its own. Point operations touch
/// one user entry (reading it from sled at most once); [`entries`](Self::entries),
/// [`len`](Self::len) and [`is_empty`](Self::is_empty) load the whole map once, after
/// which it is served from the cache until evicted.
pub struct MapState<'a, K, UK, UV> {
    /// The cache of the state in the key's partition.
    part: &'a mut MapPart<K, UK, UV>,
    /// The record key.
    key: &'a K,
    /// Everything else borrowed from the keyed state.
    ctx: Access<'a>,
}

impl<'a, K: StateKey, UK: StateKey, UV: StateValue> MapState<'a, K, UK, UV> {
    /// Access to the map of `key` in the partition cache `part`.
    pub(crate) fn new(part: &'a mut MapPart<K, UK, UV>, key: &'a K, ctx: Access<'a>) -> Self {
        Self { part, key, ctx }
    }

    /// The slot of this key's map entry, creating an empty one. A new entry is
    /// complete when the partition has nothing on disk.
    fn entry_or_create(&mut self) -> usize {
        if let Some(i) = self.part.slab.find(self.key) {
            self.part.slab.slot_mut(i).hot = true;
            return i;
        }
        let entry = MapEntry {
            complete: !self.part.on_disk,
            hot: true,
            ..MapEntry::default()
        };
        *self.ctx.cached += 1;
        self.part.slab.insert(self.key.clone(), entry)
    }

    /// The slot of this key's map entry; `None` when there is none and none can be on
    /// disk (the map is empty, and nothing need be cached).
    fn entry_if_any(&mut self) -> Option<usize> {
        if self.part.on_disk {
            Some(self.entry_or_create())
        } else {
            let i = self.part.slab.find(self.key)?;
            self.part.slab.slot_mut(i).hot = true;
            Some(i)
        }
    }

    /// Makes sure `uk` is cached if it is stored; returns the map entry's slot.
    fn resolve(&mut self, uk: &UK) -> Result<Option<usize>, StateError> {
        let Some(ei) = self.entry_if_any() else {
            return Ok(None);
        };
        let entry = self.part.slab.slot(ei);
        if entry.complete || entry.slots.contains_key(uk) {
            return Ok(Some(ei));
        }
        self.ctx.set_key(self.key)?;
        self.ctx.push_user_key(uk)?;
        let found = self.ctx.read::<UV>()?;
        let slot = Slot::loaded(found, |exp| self.ctx.is_expired(exp));
        self.part.has_expiring |= slot.expires_at != 0;
        let entry = self.part.slab.slot_mut(ei);
        if slot.unflushed() {
            entry.pending = TO_BOTH;
            self.part.pending = TO_BOTH;
        }
        entry.slots.insert(uk.clone(), slot);
        *self.ctx.cached += 1;
        Ok(Some(ei))
    }

    /// Loads every stored user entry of this map into the cache (cached entries win,
    /// being newer).
    fn ensure_complete(&mut self, ei: usize) -> Result<(), StateError> {
        if self.part.slab.slot(ei).complete {
            return Ok(());
        }
        self.ctx.set_key(self.key)?;
        let prefix_len = self.ctx.buf.len();
        for item in self.ctx.tree.scan_prefix(&self.ctx.buf[..]) {
            let (stored_key, record) = item.map_err(|e| {
                self.ctx
                    .meta
                    .sled_error(self.ctx.stage, self.ctx.kp, "scanning map", e)
            })?;
            let uk: UK = codec::decode_exact(stored_key.get(prefix_len..).unwrap_or_default())
                .map_err(|e| self.ctx.meta.decode_error(self.ctx.stage, self.ctx.kp, e))?;
            if self.part.slab.slot(ei).slots.contains_key(&uk) {
                continue;
            }
            let found = self.ctx.decode::<UV>(&record)?;
            let slot = Slot::loaded(Some(found), |exp| self.ctx.is_expired(exp));
            self.part.has_expiring |= slot.expires_at != 0;
            let entry = self.part.slab.slot_mut(ei);
            if slot.unflushed() {
                entry.pending = TO_BOTH;
                self.part.pending = TO_BOTH;
            }
            entry.slots.insert(uk, slot);
            *self.ctx.cached += 1;
        }
        self.part.slab.slot_mut(ei).complete = true;
        Ok(())
    }

    /// The live value of `uk` in the (resolved) entry `ei`.
    fn live(&self, ei: usize, uk: &UK) -> Option<&UV> {
        let slot = self.part.slab.slot(ei).slots.get(uk)?;
        if self.ctx.is_expired(slot.expires_at) {
            None
        } else {
            slot.value.as_ref()
        }
    }

    /// The value of `uk`, cloned; `None` if absent or expired.
    pub fn get(&mut self, uk: &UK) -> Result<Option<UV>, StateError> {
        Ok(match self.resolve(uk)? {
            Some(ei) => self.live(ei, uk).cloned(),
            None => None,
        })
    }

    /// Whether `uk` has a live value.
    pub fn contains(&mut self, uk: &UK) -> Result<bool, StateError> {
        Ok(match self.resolve(uk)? {
            Some(ei) => self.live(ei, uk).is_some(),
            None => false,
        })
    }

    /// Sets `uk` to `uv` (no read of the old value), refreshing the entry's TTL.
    pub fn insert(&mut self, uk: UK, uv: UV) -> Result<(), StateError> {
        let expires_at = self.ctx.write_expiry();
        let ei = self.entry_or_create();
        self.part.pending = TO_BOTH;
        self.part.has_expiring |= expires_at != 0;
        let entry = self.part.slab.slot_mut(ei);
        entry.pending = TO_BOTH;
        // An uncached user key of a complete map is neither in sled nor in the image
        // (captured slots are dropped only by a clear, whose prefix delete covers the
        // key); otherwise, in doubt, the image may hold it.
        let in_image = !entry.complete;
        match entry.slots.entry(uk) {
            // Overwritten in place: whether the image may hold the key is unchanged.
            hash_map::Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                slot.value = Some(uv);
                slot.expires_at = expires_at;
                slot.sync = Synced::Dirty;
                slot.hot = true;
            }
            hash_map::Entry::Vacant(v) => {
                v.insert(Slot::written(Some(uv), expires_at, in_image));
                *self.ctx.cached += 1;
            }
        }
        Ok(())
    }

    /// Removes `uk`, returning its live value if it had one.
    pub fn remove(&mut self, uk: &UK) -> Result<Option<UV>, StateError> {
        let Some(ei) = self.resolve(uk)? else {
            return Ok(None);
        };
        let entry = self.part.slab.slot_mut(ei);
        let Some(slot) = entry.slots.get_mut(uk) else {
            return Ok(None);
        };
        let Some(old) = slot.value.take() else {
            return Ok(None);
        };
        let live = !self.ctx.is_expired(slot.expires_at);
        slot.expires_at = 0;
        slot.sync = Synced::Dirty;
        entry.pending = TO_BOTH;
        self.part.pending = TO_BOTH;
        Ok(live.then_some(old))
    }

    /// Every live user entry, cloned, in no particular order: the cached entries
    /// merged with those stored in sled.
    pub fn entries(&mut self) -> Result<Vec<(UK, UV)>, StateError> {
        let Some(ei) = self.entry_if_any() else {
            return Ok(Vec::new());
        };
        self.ensure_complete(ei)?;
        let now = self.ctx.clock.now_ms();
        Ok(self
            .part
            .slab
            .slot(ei)
            .slots
            .iter()
            .filter(|(_, s)| !super::keyed::expired_at(s.expires_at, now))
            .filter_map(|(uk, s)| s.value.as_ref().map(|v| (uk.clone(), v.clone())))
            .collect())
    }

    /// Number of live user entries (loads the whole map once).
    pub fn len(&mut self) -> Result<usize, StateError> {
        let Some(ei) = self.entry_if_any() else {
            return Ok(0);
        };
        self.ensure_complete(ei)?;
        let now = self.ctx.clock.now_ms();
        Ok(self
            .part
            .slab
            .slot(ei)
            .slots
            .values()
            .filter(|s| s.value.is_some() && !super::keyed::expired_at(s.expires_at, now))
            .count())
    }

    /// Whether the map has no live entry.
    pub fn is_empty(&mut self) -> Result<bool, StateError> {
        Ok(self.len()? == 0)
    }

    /// Removes every user entry; the stored ones are deleted at the next flush.
    pub fn clear(&mut self) -> Result<(), StateError> {
        let Some(ei) = self.entry_if_any() else {
            return Ok(());
        };
        // Captured entries stay cached until flushed, so a map with nothing in sled
        // or the image has nothing to delete beyond its cached slots.
        let persisted = self.part.persisted;
        let entry = self.part.slab.slot_mut(ei);
        *self.ctx.cached -= entry.slots.len();
        entry.slots = FxHashMap::default();
        entry.complete = true;
        if persisted {
            entry.cleared = TO_BOTH;
            entry.pending = TO_BOTH;
            self.part.pending = TO_BOTH;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    fn sorted<UK: Ord, UV>(mut v: Vec<(UK, UV)>) -> Vec<(UK, UV)> {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn insert_get_remove_clear_entries() {
        let (_store, mut ks, _clock) = keyed::<String>("join", 0..2);
        let h = ks
            .register_map::<u32, String>(StateDescriptor::new("side"))
            .unwrap();
        let k = "k".to_string();
        let mut m = ks.map(h, 0, &k);
        assert!(m.is_empty().unwrap());
        m.insert(1, "one".into()).unwrap();
        m.insert(2, "two".into()).unwrap();
        m.insert(2, "deux".into()).unwrap();
        assert_eq!(m.get(&2).unwrap().as_deref(), Some("deux"));
        assert!(m.contains(&1).unwrap());
        assert!(!m.contains(&3).unwrap());
        assert_eq!(m.len().unwrap(), 2);
        assert_eq!(m.remove(&1).unwrap().as_deref(), Some("one"));
        assert_eq!(m.remove(&1).unwrap(), None);
        assert_eq!(sorted(m.entries().unwrap()), vec![(2, "deux".to_string())]);

        ks.flush().unwrap();
        ks.evict_clean();
        assert_eq!(ks.cached_entries(), 0);
        let mut m = ks.map(h, 0, &k);
        assert_eq!(m.get(&2).unwrap().as_deref(), Some("deux"));
        m.insert(3, "three".into()).unwrap();
        assert_eq!(m.len().unwrap(), 2);
        m.clear().unwrap();
        assert!(m.is_empty().unwrap());
        assert_eq!(m.get(&2).unwrap(), None);
        m.insert(4, "four".into()).unwrap();
        let stats = ks.flush().unwrap();
        assert_eq!((stats.written, stats.deleted), (1, 1));
        ks.evict_clean();
        assert_eq!(
            sorted(ks.map(h, 0, &k).entries().unwrap()),
            vec![(4, "four".to_string())]
        );
        assert_eq!(raw_entries(&ks, 0).len(), 1);
    }

    #[test]
    fn entries_expire_individually() {
        let (_store, mut ks, clock) = keyed::<u8>("join", 0..1);
        let h = ks
            .register_map::<u8, u8>(StateDescriptor::new("m").with_ttl(Duration::from_millis(10)))
            .unwrap();
        ks.map(h, 0, &0).insert(1, 1).unwrap();
        clock.advance(5);
        ks.map(h, 0, &0).insert(2, 2).unwrap();
        ks.flush().unwrap();
        clock.advance(5);
        assert_eq!(ks.map(h, 0, &0).get(&1).unwrap(), None);
        assert_eq!(ks.map(h, 0, &0).entries().unwrap(), vec![(2, 2)]);
        assert_eq!(ks.flush().unwrap().deleted, 1);
        assert_eq!(raw_entries(&ks, 0).len(), 1);
        ks.evict_clean();
        assert_eq!(ks.map(h, 0, &0).len().unwrap(), 1);
        clock.advance(5);
        assert!(ks.map(h, 0, &0).is_empty().unwrap());
        ks.flush().unwrap();
        assert!(raw_entries(&ks, 0).is_empty());
    }

    #[test]
    fn clear_then_rewrite_survives_a_flush_split_into_chunks() {
        let (_store, mut ks, _clock) = keyed::<u8>("join", 0..1);
        let h = ks
            .register_map::<u32, u32>(StateDescriptor::new("m"))
            .unwrap();
        let n = 3 * FLUSH_CHUNK as u32 / 2;
        for uk in 0..n {
            ks.map(h, 0, &1).insert(uk, uk).unwrap();
        }
        assert_eq!(ks.flush().unwrap().written, u64::from(n));
        ks.evict_clean();
        // Clearing stages a delete of every stored key; rewriting the same keys stages
        // a write for each. Deletes must stay before writes across chunk boundaries.
        ks.map(h, 0, &1).clear().unwrap();
        for uk in 0..n {
            ks.map(h, 0, &1).insert(uk, uk + 1).unwrap();
        }
        let stats = ks.flush().unwrap();
        assert_eq!((stats.written, stats.deleted), (u64::from(n), u64::from(n)));
        ks.evict_clean();
        let mut got = ks.map(h, 0, &1).entries().unwrap();
        got.sort_unstable();
        assert_eq!(got, (0..n).map(|uk| (uk, uk + 1)).collect::<Vec<_>>());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32, u8, u8, u16),
        Remove(u32, u8, u8),
        Get(u32, u8, u8),
        Clear(u32, u8),
        Entries(u32, u8),
        Len(u32, u8),
        Flush,
        Evict,
        Maintain,
    }

    fn op() -> impl Strategy<Value = Op> {
        let kp = 10u32..12;
        let key = 0u8..3;
        let uk = 0u8..6;
        prop_oneof![
            6 => (kp.clone(), key.clone(), uk.clone(), any::<u16>())
                .prop_map(|(p, k, u, v)| Op::Insert(p, k, u, v)),
            3 => (kp.clone(), key.clone(), uk.clone()).prop_map(|(p, k, u)| Op::Remove(p, k, u)),
            3 => (kp.clone(), key.clone(), uk).prop_map(|(p, k, u)| Op::Get(p, k, u)),
            1 => (kp.clone(), key.clone()).prop_map(|(p, k)| Op::Clear(p, k)),
            1 => (kp.clone(), key.clone()).prop_map(|(p, k)| Op::Entries(p, k)),
            1 => (kp, key).prop_map(|(p, k)| Op::Len(p, k)),
            1 => Just(Op::Flush),
            1 => Just(Op::Evict),
            1 => Just(Op::Maintain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn map_state_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..80)) {
            let store = StateStore::temporary(StoreConfig {
                cache_entries: 6,
                sled_cache_bytes: 1 << 20,
            }).unwrap();
            let mut ks = store
                .keyed::<u8>("model", 10..12, Arc::new(ManualClock::new(0)))
                .unwrap();
            let h = ks.register_map::<u8, u16>(StateDescriptor::new("m")).unwrap();
            let mut model: BTreeMap<(u32, u8), BTreeMap<u8, u16>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(p, k, u, v) => {
                        ks.map(h, p, &k).insert(u, v).unwrap();
                        model.entry((p, k)).or_default().insert(u, v);
                    }
                    Op::Remove(p, k, u) => {
                        let got = ks.map(h, p, &k).remove(&u).unwrap();
                        let want = model.entry((p, k)).or_default().remove(&u);
                        prop_assert_eq!(got, want);
                    }
                    Op::Get(p, k, u) => {
                        let got = ks.map(h, p, &k).get(&u).unwrap();
                        let want = model.get(&(p, k)).and_then(|m| m.get(&u)).copied();
                        prop_assert_eq!(got, want);
                    }
                    Op::Clear(p, k) => {
                        ks.map(h, p, &k).clear().unwrap();
                        model.remove(&(p, k));
                    }
                    Op::Entries(p, k) => {
                        let got = sorted(ks.map(h, p, &k).entries().unwrap());
                        let want: Vec<_> = model
                            .get(&(p, k))
                            .map(|m| m.iter().map(|(a, b)| (*a, *b)).collect())
                            .unwrap_or_default();
                        prop_assert_eq!(got, want);
                    }
                    Op::Len(p, k) => {
                        let got = ks.map(h, p, &k).len().unwrap();
                        prop_assert_eq!(got, model.get(&(p, k)).map_or(0, |m| m.len()));
                    }
                    Op::Flush => {
                        ks.flush().unwrap();
                    }
                    Op::Evict => {
                        ks.evict_clean();
                    }
                    Op::Maintain => {
                        ks.maintain().unwrap();
                        prop_assert!(ks.cached_entries() <= 6);
                    }
                }
            }
            // Whatever is cached, flushed state read back cold equals the model.
            ks.flush().unwrap();
            ks.evict_clean();
            prop_assert_eq!(ks.cached_entries(), 0);
            for p in 10..12u32 {
                for k in 0..3u8 {
                    let got = sorted(ks.map(h, p, &k).entries().unwrap());
                    let want: Vec<_> = model
                        .get(&(p, k))
                        .map(|m| m.iter().map(|(a, b)| (*a, *b)).collect())
                        .unwrap_or_default();
                    prop_assert_eq!(got, want);
                }
            }
            let stored: usize = (10..12).map(|p| raw_entries(&ks, p).len()).sum();
            prop_assert_eq!(stored, model.values().map(|m| m.len()).sum::<usize>());
        }
    }
}
