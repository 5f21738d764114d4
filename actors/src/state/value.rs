//! Value state: one `T` per key. Also the storage of list state (`T = Vec<E>`).

use super::codec;
use super::error::StateError;
use super::keyed::{
    expired_at, Access, DeltaCtx, ErasedCache, FlushCtx, StateMeta, TO_BOTH, TO_DELTA, TO_SLED,
};
use super::slab::KeySlab;
use super::{StateKey, StateValue};
use std::any::Any;

/// How a cached entry relates to sled and to the last captured delta
/// ([`KeyedState::take_delta`](super::KeyedState::take_delta)).
///
/// The fourth combination, "in sled but not yet captured", needs no state: a flush
/// that writes a [`Dirty`](Self::Dirty) entry records the write in the keyed state's
/// delta log, so the entry can become clean (and be evicted) at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Synced {
    /// sled holds exactly this entry, and the image (the last capture plus the delta
    /// log) holds it too.
    Clean,
    /// Changed since the last capture and not written to sled: the next flush writes
    /// it and logs the write, the next capture encodes it.
    Dirty,
    /// In the image (captured) but not yet in sled: the next flush writes it without
    /// logging it, the next capture leaves it out.
    Captured,
}

/// One cached entry: a value (or its known absence) and its bookkeeping.
pub(crate) struct Slot<T> {
    /// `None`: absent. Clean and absent means "not on disk either"; otherwise absent
    /// is a tombstone to delete at the next flush (and, if dirty, capture).
    pub(crate) value: Option<T>,
    /// Processing time (ms) at which the entry expires; `0` for never.
    pub(crate) expires_at: u64,
    /// Whether sled and the image hold this entry.
    pub(crate) sync: Synced,
    /// Used since the last eviction pass (second-chance eviction).
    pub(crate) hot: bool,
    /// Whether the image (the last capture with this epoch's delta log, and the
    /// prefix deletes of map clears not yet captured, applied) may hold this key.
    /// `false` only when it certainly does not: the key was read from
    /// sled as absent (for uncached keys sled equals that image, see
    /// [`Slot::loaded`]), created where nothing can be stored, or deleted by the last
    /// capture. A delete of such a key changes nothing a restore would see, so
    /// captures leave it out ([`captures`]) and flushes do not log it
    /// ([`Slot::logged_at_flush`]): for windows and timers opened and closed between
    /// two barriers, most deletes are of that kind. Fits in the padding after
    /// `sync` and `hot`, so a slot is no larger.
    pub(crate) in_image: bool,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            value: None,
            expires_at: 0,
            sync: Synced::Clean,
            hot: false,
            // Unknown: assume the image may hold the key.
            in_image: true,
        }
    }
}

impl<T> Slot<T> {
    /// A fresh, used, dirty entry of a key that was not cached; `in_image` tells
    /// whether the image may hold the key (see [`Slot::in_image`]; `true` when in
    /// doubt).
    pub(crate) fn written(value: Option<T>, expires_at: u64, in_image: bool) -> Self {
        Self {
            value,
            expires_at,
            sync: Synced::Dirty,
            hot: true,
            in_image,
        }
    }

    /// An entry as read from sled (`None`: not stored); records for which `expired`
    /// holds become dirty tombstones, so the next flush deletes them and the next
    /// capture reports the deletion.
    ///
    /// Only uncached keys are read, and for those sled holds what the image holds:
    /// captured entries (in the image, not yet in sled) are never evicted, and every
    /// flush or purge that changes sled behind the image's back records the change in
    /// the delta log (a partition whose log was dropped is sent as a full image read
    /// from sled). So a key sled lacks is not in the image either.
    pub(crate) fn loaded(found: Option<(u64, T)>, expired: impl FnOnce(u64) -> bool) -> Self {
        match found {
            None => Self {
                value: None,
                expires_at: 0,
                sync: Synced::Clean,
                hot: true,
                in_image: false,
            },
            Some((exp, _)) if expired(exp) => Self::written(None, 0, true),
            Some((exp, v)) => Self {
                value: Some(v),
                expires_at: exp,
                sync: Synced::Clean,
                hot: true,
                in_image: true,
            },
        }
    }

    /// Whether sled does not hold this entry as cached (a flush has work here).
    #[inline]
    pub(crate) fn unflushed(&self) -> bool {
        self.sync != Synced::Clean
    }

    /// Whether a flush's `kind` (a write or delete of this entry at `now`) must be
    /// recorded in the delta log: the entry changed since the last capture, or it
    /// expired (which the image does not know yet, unless the capture itself already
    /// turned the entry into a captured tombstone). Deletes of keys the image cannot
    /// hold ([`in_image`](Self::in_image) false) need no record.
    #[inline]
    pub(crate) fn logged_at_flush(&self, kind: FlushKind, now: u64) -> bool {
        (kind != FlushKind::Delete || self.in_image)
            && (self.sync == Synced::Dirty
                || (self.value.is_some() && expired_at(self.expires_at, now)))
    }

    /// After a flush applied `kind` (a write) to this entry: sled holds it, and so
    /// does the image (the write was logged, or the entry was captured).
    #[inline]
    pub(crate) fn mark_flushed(&mut self) {
        self.sync = Synced::Clean;
        self.in_image = true;
    }

    /// After a capture that decided `kind` for this entry (and encoded it if
    /// [`captures`] says so): it is now as in the image but maybe not in sled. An
    /// expired entry becomes a tombstone, so the flush deletes it without logging the
    /// delete again; the image no longer holds a deleted key. Returns whether sled now
    /// lags behind.
    #[inline]
    pub(crate) fn mark_captured(&mut self, kind: FlushKind) -> bool {
        match kind {
            FlushKind::Keep => return false,
            FlushKind::Write => self.in_image = true,
            FlushKind::Delete => {
                self.value = None;
                self.expires_at = 0;
                self.in_image = false;
            }
        }
        self.sync = Synced::Captured;
        true
    }
}

/// What a flush (or a capture) does with one cached entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FlushKind {
    /// Nothing.
    Keep,
    /// Write the value.
    Write,
    /// Delete it (and, at a flush, drop it from the cache).
    Delete,
}

/// The flush decision for `slot` at processing time `now`: write what sled lacks,
/// delete tombstones and expired entries. Staging and committing a flush both call
/// this with the same `now`, so they agree.
#[inline]
pub(crate) fn flush_kind<T>(slot: &Slot<T>, now: u64) -> FlushKind {
    match (&slot.value, slot.unflushed()) {
        (Some(_), _) if expired_at(slot.expires_at, now) => FlushKind::Delete,
        (Some(_), true) => FlushKind::Write,
        (None, true) => FlushKind::Delete,
        _ => FlushKind::Keep,
    }
}

/// The capture decision for `slot` at processing time `now`: encode what changed
/// since the last capture, and deletes of entries that expired (as a flush at `now`
/// would delete them). Staging and committing a capture both call this with the same
/// `now`, so they agree.
#[inline]
pub(crate) fn delta_kind<T>(slot: &Slot<T>, now: u64) -> FlushKind {
    match (&slot.value, slot.sync) {
        (Some(_), _) if expired_at(slot.expires_at, now) => FlushKind::Delete,
        (Some(_), Synced::Dirty) => FlushKind::Write,
        (None, Synced::Dirty) => FlushKind::Delete,
        _ => FlushKind::Keep,
    }
}

/// Whether a capture that decided `kind` ([`delta_kind`]) for `slot` must encode it:
/// every write, and deletes of keys the image may hold. A delete of a key the image
/// cannot hold ([`Slot::in_image`] false: created and deleted since the last capture,
/// never logged by a flush) would only make the delta larger; the capture still marks
/// the entry captured ([`Slot::mark_captured`]) so that sled gets the delete.
#[inline]
pub(crate) fn captures<T>(slot: &Slot<T>, kind: FlushKind) -> bool {
    match kind {
        FlushKind::Keep => false,
        FlushKind::Write => true,
        FlushKind::Delete => slot.in_image,
    }
}

/// Cache of one value state for one key partition.
pub(crate) struct ValuePart<K, T> {
    /// The cached entries by key.
    slab: KeySlab<K, Slot<T>>,
    /// sled may hold entries of this state in this partition; when false, misses do
    /// not read sled.
    on_disk: bool,
    /// sled or the image may hold entries of this state in this partition (implied by
    /// `on_disk`); when false, clearing a cached entry can simply forget it.
    persisted: bool,
    /// [`TO_SLED`]: some entry differs from sled; [`TO_DELTA`]: some entry changed
    /// since the last capture. Writes set both with one store.
    pending: u8,
    /// Some entry may expire, so flushes scan the partition for expired entries.
    has_expiring: bool,
}

/// Typed cache of one value (or list) state: one [`ValuePart`] per owned partition.
pub(crate) struct ValueCache<K, T> {
    /// The state's identity.
    meta: StateMeta,
    /// One cache per owned key partition, indexed by `kp - owned.start`.
    parts: Vec<ValuePart<K, T>>,
}

impl<K: StateKey, T: StateValue> ValueCache<K, T> {
    /// An empty cache; `on_disk[i]` tells whether partition `i` may have data in sled.
    pub(crate) fn new(meta: StateMeta, on_disk: Vec<bool>) -> Self {
        let parts = on_disk
            .into_iter()
            .map(|on_disk| ValuePart {
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
    pub(crate) fn split(&mut self, pi: usize) -> (&StateMeta, &mut ValuePart<K, T>) {
        (&self.meta, &mut self.parts[pi])
    }
}

impl<K: StateKey, T: StateValue> ErasedCache<K> for ValueCache<K, T> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn stage_flush(&self, ctx: &mut FlushCtx<'_>) -> Result<(), StateError> {
        for (pi, part) in self.parts.iter().enumerate() {
            if !(part.pending != 0 || part.has_expiring) {
                continue;
            }
            let kp = ctx.first_kp + pi as u32;
            for (key, slot) in part.slab.iter() {
                let kind = flush_kind(slot, ctx.now);
                if kind == FlushKind::Keep {
                    continue;
                }
                codec::write_entry_key(ctx.key_buf, kp, self.meta.id, key)
                    .map_err(|e| self.meta.encode_error(ctx.stage, kp, e))?;
                let log = slot.logged_at_flush(kind, ctx.now);
                match (&slot.value, kind) {
                    (Some(v), FlushKind::Write) => {
                        ctx.put(&self.meta, kp, v, slot.expires_at, log)?
                    }
                    _ => ctx.delete(kp, log),
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
            let mut wrote = false;
            let mut expiring = false;
            dropped += part.slab.retain(|_, slot| match flush_kind(slot, now) {
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
            // Every change is in sled now, and the ones the image lacked are logged.
            part.pending = 0;
            part.has_expiring = expiring;
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
            dropped += part.slab.retain(|_, slot| {
                if slot.unflushed() || *budget == 0 {
                    return true;
                }
                if cold_only && slot.hot {
                    slot.hot = false;
                    return true;
                }
                *budget -= 1;
                false
            });
        }
        dropped
    }

    fn stage_delta(&self, ctx: &mut DeltaCtx<'_>) -> Result<(), StateError> {
        for (pi, part) in self.parts.iter().enumerate() {
            if part.pending & TO_DELTA == 0 && !part.has_expiring {
                continue;
            }
            let kp = ctx.first_kp + pi as u32;
            for (key, slot) in part.slab.iter() {
                let kind = delta_kind(slot, ctx.now);
                if !captures(slot, kind) {
                    continue;
                }
                codec::write_entry_key(ctx.key_buf, kp, self.meta.id, key)
                    .map_err(|e| self.meta.encode_error(ctx.stage, kp, e))?;
                match (&slot.value, kind) {
                    (Some(v), FlushKind::Write) => ctx.put(&self.meta, kp, v, slot.expires_at)?,
                    _ => ctx.delete(kp),
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
            let mut lagging = false;
            let mut wrote = false;
            part.slab.for_each_mut(|slot| {
                let kind = delta_kind(slot, now);
                wrote |= kind == FlushKind::Write;
                lagging |= slot.mark_captured(kind);
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
        let Some(Ok(key)) = sled_key
            .get(codec::STATE_PREFIX_LEN..)
            .map(codec::decode_exact::<K>)
        else {
            return false;
        };
        part.slab
            .find(&key)
            .is_some_and(|i| part.slab.slot(i).sync == Synced::Captured)
    }
}

/// Access to the value of one key in one value state, from
/// [`KeyedState::value`](super::KeyedState::value).
///
/// Short-lived: open it per record. On a cached key every operation is one hash
/// lookup; a miss reads sled once (unless the key partition has nothing on disk) and
/// caches the result, including absence.
pub struct ValueState<'a, K, T> {
    /// The cache of the state in the key's partition.
    part: &'a mut ValuePart<K, T>,
    /// The record key.
    key: &'a K,
    /// Everything else borrowed from the keyed state.
    ctx: Access<'a>,
}

impl<'a, K: StateKey, T: StateValue> ValueState<'a, K, T> {
    /// Access to `key` in the partition cache `part`.
    pub(crate) fn new(part: &'a mut ValuePart<K, T>, key: &'a K, ctx: Access<'a>) -> Self {
        Self { part, key, ctx }
    }

    /// Reads the key from sled into the cache. `None` when the partition has nothing
    /// on disk (nothing is cached then, so no key clone).
    #[cold]
    fn load(&mut self) -> Result<Option<usize>, StateError> {
        if !self.part.on_disk {
            return Ok(None);
        }
        self.ctx.set_key(self.key)?;
        let found = self.ctx.read::<T>()?;
        let slot = Slot::loaded(found, |exp| self.ctx.is_expired(exp));
        if slot.unflushed() {
            self.part.pending = TO_BOTH;
        }
        self.part.has_expiring |= slot.expires_at != 0;
        let i = self.part.slab.insert(self.key.clone(), slot);
        *self.ctx.cached += 1;
        Ok(Some(i))
    }

    /// The cached slot of the key, loading it on a miss.
    #[inline]
    fn find_or_load(&mut self) -> Result<Option<usize>, StateError> {
        match self.part.slab.find(self.key) {
            Some(i) => Ok(Some(i)),
            None => self.load(),
        }
    }

    /// The current value, borrowed from the cache; `None` if absent or expired.
    pub fn get(&mut self) -> Result<Option<&T>, StateError> {
        let Some(i) = self.find_or_load()? else {
            return Ok(None);
        };
        let expires_at = self.part.slab.slot(i).expires_at;
        if self.ctx.is_expired(expires_at) {
            return Ok(None);
        }
        let slot = self.part.slab.slot_mut(i);
        slot.hot = true;
        Ok(slot.value.as_ref())
    }

    /// The current value, cloned; `None` if absent or expired.
    pub fn value(&mut self) -> Result<Option<T>, StateError> {
        Ok(self.get()?.cloned())
    }

    /// Sets the value (no read of the old one) and refreshes its TTL.
    pub fn set(&mut self, v: T) -> Result<(), StateError> {
        let expires_at = self.ctx.write_expiry();
        self.part.pending = TO_BOTH;
        self.part.has_expiring |= expires_at != 0;
        match self.part.slab.find(self.key) {
            Some(i) => {
                let slot = self.part.slab.slot_mut(i);
                slot.value = Some(v);
                slot.expires_at = expires_at;
                slot.sync = Synced::Dirty;
                slot.hot = true;
            }
            None => {
                // Not cached, so sled holds what the image holds (see `Slot::loaded`):
                // the image can hold the key only if sled may.
                let in_image = self.part.on_disk;
                self.part.slab.insert(
                    self.key.clone(),
                    Slot::written(Some(v), expires_at, in_image),
                );
                *self.ctx.cached += 1;
            }
        }
        Ok(())
    }

    /// The value for in-place update, inserting `f()` if absent or expired.
    ///
    /// Counts as a write: the entry becomes dirty and its TTL is refreshed, since the
    /// caller may change it through the returned reference. The hot path of keyed
    /// aggregation: one hash lookup on a cached key.
    #[inline]
    pub fn get_or_insert_with(&mut self, f: impl FnOnce() -> T) -> Result<&mut T, StateError> {
        let i = match self.find_or_load()? {
            Some(i) => i,
            None => {
                // `find_or_load` reads sled unless the partition has nothing there,
                // so neither sled nor the image holds the key.
                let i = self
                    .part
                    .slab
                    .insert(self.key.clone(), Slot::written(None, 0, false));
                *self.ctx.cached += 1;
                i
            }
        };
        let ttl = self.ctx.meta.ttl_ms;
        let slot = self.part.slab.slot_mut(i);
        if ttl.is_some() || slot.expires_at != 0 {
            let now = self.ctx.clock.now_ms();
            if expired_at(slot.expires_at, now) {
                slot.value = None;
            }
            slot.expires_at = ttl.map_or(0, |t| now.saturating_add(t));
        }
        slot.sync = Synced::Dirty;
        slot.hot = true;
        self.part.pending = TO_BOTH;
        self.part.has_expiring |= slot.expires_at != 0;
        Ok(slot.value.get_or_insert_with(f))
    }

    /// Removes the value; deleted from sled at the next flush.
    pub fn clear(&mut self) -> Result<(), StateError> {
        match self.part.slab.find(self.key) {
            Some(_) if !self.part.persisted => {
                // Never flushed nor captured, so nothing to delete: just forget it.
                self.part.slab.remove(self.key);
                *self.ctx.cached -= 1;
            }
            Some(i) => {
                let slot = self.part.slab.slot_mut(i);
                slot.value = None;
                slot.expires_at = 0;
                slot.sync = Synced::Dirty;
                self.part.pending = TO_BOTH;
            }
            // An uncached key can only be stored in sled (captured entries are never
            // evicted), so `on_disk` decides as it does for reads.
            None if self.part.on_disk => {
                self.part
                    .slab
                    .insert(self.key.clone(), Slot::written(None, 0, true));
                *self.ctx.cached += 1;
                self.part.pending = TO_BOTH;
            }
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn get_set_clear_and_get_or_insert_with() {
        let (_store, mut ks, _clock) = keyed::<String>("agg", 0..4);
        let h = ks
            .register_value::<u64>(StateDescriptor::new("count"))
            .unwrap();
        let a = "a".to_string();
        assert_eq!(ks.value(h, 1, &a).get().unwrap(), None);
        ks.value(h, 1, &a).set(5).unwrap();
        assert_eq!(ks.value(h, 1, &a).value().unwrap(), Some(5));
        *ks.value(h, 1, &a).get_or_insert_with(|| 100).unwrap() += 1;
        assert_eq!(ks.value(h, 1, &a).get().unwrap(), Some(&6));
        let b = "b".to_string();
        *ks.value(h, 1, &b).get_or_insert_with(|| 100).unwrap() += 1;
        assert_eq!(ks.value(h, 1, &b).value().unwrap(), Some(101));
        ks.value(h, 1, &a).clear().unwrap();
        assert_eq!(ks.value(h, 1, &a).get().unwrap(), None);
        assert_eq!(ks.cached_entries(), 1);

        // The same through sled: flush, evict, read back, clear, flush.
        ks.value(h, 1, &a).set(7).unwrap();
        ks.flush().unwrap();
        assert_eq!(ks.evict_clean(), 2);
        assert_eq!(ks.value(h, 1, &a).value().unwrap(), Some(7));
        ks.value(h, 1, &a).clear().unwrap();
        let stats = ks.flush().unwrap();
        assert_eq!((stats.written, stats.deleted), (0, 1));
        ks.evict_clean();
        assert_eq!(ks.value(h, 1, &a).value().unwrap(), None);
        assert_eq!(ks.value(h, 1, &b).value().unwrap(), Some(101));
        assert_eq!(raw_entries(&ks, 1).len(), 1);
    }

    #[test]
    fn clear_of_an_uncached_key_deletes_it_on_disk() {
        let (_store, mut ks, _clock) = keyed::<u32>("agg", 0..1);
        let h = ks.register_value::<u32>(StateDescriptor::new("v")).unwrap();
        ks.value(h, 0, &1).set(1).unwrap();
        ks.flush().unwrap();
        ks.evict_clean();
        ks.value(h, 0, &1).clear().unwrap();
        assert_eq!(ks.flush().unwrap().deleted, 1);
        assert!(raw_entries(&ks, 0).is_empty());
    }

    #[test]
    fn ttl_expires_refreshes_on_write_and_is_deleted_at_flush() {
        let (_store, mut ks, clock) = keyed::<u32>("agg", 0..2);
        let h = ks
            .register_value::<String>(
                StateDescriptor::new("s").with_ttl(Duration::from_millis(100)),
            )
            .unwrap();
        ks.value(h, 0, &1).set("x".into()).unwrap(); // expires at 1100
        ks.value(h, 0, &2).set("y".into()).unwrap();
        clock.advance(99);
        assert_eq!(ks.value(h, 0, &1).value().unwrap().as_deref(), Some("x"));
        // A read does not refresh; a write does.
        ks.value(h, 0, &2)
            .get_or_insert_with(String::new)
            .unwrap()
            .push('!'); // 1199
        ks.flush().unwrap();
        assert_eq!(raw_entries(&ks, 0).len(), 2);
        clock.advance(1); // 1100: key 1 expired
        assert_eq!(ks.value(h, 0, &1).get().unwrap(), None);
        assert_eq!(ks.value(h, 0, &2).value().unwrap().as_deref(), Some("y!"));
        let stats = ks.flush().unwrap();
        assert_eq!((stats.written, stats.deleted), (0, 1));
        assert_eq!(raw_entries(&ks, 0).len(), 1);
        // Expiry survives the round trip through sled.
        ks.evict_clean();
        assert_eq!(ks.value(h, 0, &2).value().unwrap().as_deref(), Some("y!"));
        clock.set(1199);
        assert_eq!(ks.value(h, 0, &2).value().unwrap(), None);
        // Expired entries are not resurrected by get_or_insert_with.
        assert_eq!(
            ks.value(h, 0, &2)
                .get_or_insert_with(|| "new".into())
                .unwrap(),
            "new"
        );
        ks.flush().unwrap();
        clock.advance(1_000);
        assert_eq!(ks.flush().unwrap().deleted, 1);
        assert!(raw_entries(&ks, 0).is_empty());
        assert_eq!(ks.cached_entries(), 0);
    }

    #[test]
    fn expired_entry_loaded_from_disk_is_absent_and_deleted() {
        let (_store, mut ks, clock) = keyed::<u32>("agg", 0..1);
        let h = ks
            .register_value::<u8>(StateDescriptor::new("v").with_ttl(Duration::from_secs(1)))
            .unwrap();
        ks.value(h, 0, &9).set(9).unwrap();
        ks.flush().unwrap();
        ks.evict_clean();
        clock.advance(5_000);
        assert_eq!(ks.value(h, 0, &9).value().unwrap(), None);
        assert_eq!(ks.flush().unwrap().deleted, 1);
        assert!(raw_entries(&ks, 0).is_empty());
    }

    /// The `in_image` flag lives in the padding after `sync` and `hot`: a slot is
    /// its value, its expiry and one word of flags.
    #[test]
    fn slot_flags_fit_in_one_word() {
        use super::super::value::Slot;
        use std::mem::size_of;
        assert_eq!(size_of::<Slot<u64>>(), size_of::<(Option<u64>, u64, u64)>());
        assert_eq!(size_of::<Slot<Vec<u8>>>(), size_of::<(Vec<u8>, u64, u64)>());
    }

    static CLONES: AtomicUsize = AtomicUsize::new(0);

    #[derive(serde::Serialize, serde::Deserialize, Hash, PartialEq, Eq, Debug)]
    struct CountingKey(u64);

    impl Clone for CountingKey {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            CountingKey(self.0)
        }
    }

    #[test]
    fn hits_do_not_clone_the_key() {
        let (_store, mut ks, _clock) = keyed::<CountingKey>("agg", 0..1);
        let h = ks.register_value::<u64>(StateDescriptor::new("n")).unwrap();
        let keys: Vec<CountingKey> = (0..10).map(CountingKey).collect();
        let before = CLONES.load(Ordering::SeqCst);
        for _ in 0..5 {
            for k in &keys {
                *ks.value(h, 0, k).get_or_insert_with(|| 0).unwrap() += 1;
                let _ = ks.value(h, 0, k).get().unwrap();
            }
        }
        // One clone per distinct key (on insert), none per hit.
        assert_eq!(CLONES.load(Ordering::SeqCst) - before, keys.len());
        assert_eq!(ks.value(h, 0, &keys[3]).value().unwrap(), Some(5));
    }

    #[test]
    fn partition_known_empty_is_not_read() {
        let (_store, mut ks, _clock) = keyed::<u32>("agg", 0..2);
        let h = ks.register_value::<u32>(StateDescriptor::new("v")).unwrap();
        // Smuggle a record in behind the cache's back: the partition was empty when the
        // keyed state opened, so misses must not look at sled.
        let mut key = Vec::new();
        codec::write_entry_key(&mut key, 1, codec::state_id("v"), &5u32).unwrap();
        let mut rec = Vec::new();
        codec::encode_value(&77u32, 0, &mut rec).unwrap();
        ks.tree().insert(&key, rec).unwrap();
        assert_eq!(ks.value(h, 1, &5).value().unwrap(), None);
        assert_eq!(ks.cached_entries(), 0);
        // Once this state flushed into the partition, misses do read sled.
        ks.value(h, 1, &6).set(6).unwrap();
        ks.flush().unwrap();
        assert_eq!(ks.value(h, 1, &5).value().unwrap(), Some(77));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Set(u32, u8, u32),
        Add(u32, u8, u32),
        Get(u32, u8),
        Clear(u32, u8),
        Advance(u64),
        Flush,
        Evict,
        Maintain,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let kp = 3u32..5;
        let key = 0u8..5;
        prop_oneof![
            4 => (kp.clone(), key.clone(), any::<u32>()).prop_map(|(p, k, v)| Op::Set(p, k, v)),
            4 => (kp.clone(), key.clone(), 0u32..100).prop_map(|(p, k, v)| Op::Add(p, k, v)),
            4 => (kp.clone(), key.clone()).prop_map(|(p, k)| Op::Get(p, k)),
            2 => (kp, key).prop_map(|(p, k)| Op::Clear(p, k)),
            2 => (0u64..30).prop_map(Op::Advance),
            1 => Just(Op::Flush),
            1 => Just(Op::Evict),
            1 => Just(Op::Maintain),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Value state with a TTL behaves like a map of (value, expiry) under random
        /// writes, reads, clock moves, flushes and evictions.
        #[test]
        fn value_state_with_ttl_matches_a_model(
            ops in proptest::collection::vec(op(), 1..100),
        ) {
            use std::collections::BTreeMap;
            const TTL: u64 = 20;
            let store = StateStore::temporary(StoreConfig {
                cache_entries: 4,
                sled_cache_bytes: 1 << 20,
            })
            .unwrap();
            let clock = ManualClock::new(0);
            let mut ks = store
                .keyed::<u8>("model", 3..5, std::sync::Arc::new(clock.clone()))
                .unwrap();
            let h = ks
                .register_value::<u32>(
                    StateDescriptor::new("v").with_ttl(Duration::from_millis(TTL)),
                )
                .unwrap();
            let mut model: BTreeMap<(u32, u8), (u32, u64)> = BTreeMap::new();
            let live = |m: &BTreeMap<(u32, u8), (u32, u64)>, k: (u32, u8), now: u64| {
                m.get(&k).filter(|(_, exp)| *exp > now).map(|(v, _)| *v)
            };
            for op in ops {
                let now = clock.now_ms();
                match op {
                    Op::Set(p, k, v) => {
                        ks.value(h, p, &k).set(v).unwrap();
                        model.insert((p, k), (v, now + TTL));
                    }
                    Op::Add(p, k, v) => {
                        let got = {
                            let mut s = ks.value(h, p, &k);
                            let slot = s.get_or_insert_with(|| 0).unwrap();
                            *slot = slot.wrapping_add(v);
                            *slot
                        };
                        let base = live(&model, (p, k), now).unwrap_or(0);
                        model.insert((p, k), (base.wrapping_add(v), now + TTL));
                        proptest::prop_assert_eq!(got, base.wrapping_add(v));
                    }
                    Op::Get(p, k) => {
                        let got = ks.value(h, p, &k).value().unwrap();
                        proptest::prop_assert_eq!(got, live(&model, (p, k), now));
                    }
                    Op::Clear(p, k) => {
                        ks.value(h, p, &k).clear().unwrap();
                        model.remove(&(p, k));
                    }
                    Op::Advance(ms) => clock.advance(ms),
                    Op::Flush => {
                        ks.flush().unwrap();
                    }
                    Op::Evict => {
                        ks.evict_clean();
                    }
                    Op::Maintain => {
                        ks.maintain().unwrap();
                        proptest::prop_assert!(ks.cached_entries() <= 4);
                    }
                }
            }
            // After a flush and a purge, sled holds exactly the live entries, and reads
            // agree.
            ks.flush().unwrap();
            ks.purge_expired().unwrap();
            ks.evict_clean();
            let now = clock.now_ms();
            let stored: usize = (3..5).map(|p| raw_entries(&ks, p).len()).sum();
            let expected = model.values().filter(|(_, exp)| *exp > now).count();
            proptest::prop_assert_eq!(stored, expected);
            for p in 3..5u32 {
                for k in 0..5u8 {
                    let got = ks.value(h, p, &k).value().unwrap();
                    proptest::prop_assert_eq!(got, live(&model, (p, k), now));
                }
            }
        }
    }
}
