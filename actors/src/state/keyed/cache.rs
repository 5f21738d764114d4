//! The write-back cache: the typed caches seen without their types
//! ([`ErasedCache`]), the flags of a cached entry, what an accessor borrows
//! ([`Access`]), the accessors that open a state for one key, and keeping the cache
//! within its size (flush, then evict).

use crate::state::codec;
use crate::state::descriptor::{ListHandle, MapHandle, ValueHandle};
use crate::state::error::StateError;
use crate::state::list::ListState;
use crate::state::map::{MapCache, MapState};
use crate::state::value::{ValueCache, ValueState};
use crate::state::{Clock, StateKey, StateValue};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;

use super::{DeltaCtx, FlushCtx, KeyedState, StateMeta};

/// Everything an accessor needs besides its cache partition: borrowed pieces of the
/// [`KeyedState`] that opened it.
pub(crate) struct Access<'a> {
    /// The stage's tree.
    pub(crate) tree: &'a sled::Tree,
    /// The stage's name.
    pub(crate) stage: &'a str,
    /// The accessed state.
    pub(crate) meta: &'a StateMeta,
    /// The accessed key partition.
    pub(crate) kp: u32,
    /// Processing time for TTL.
    pub(crate) clock: &'a dyn Clock,
    /// The keyed state's count of cached entries.
    pub(crate) cached: &'a mut usize,
    /// Scratch buffer for sled keys.
    pub(crate) buf: &'a mut Vec<u8>,
}

impl Access<'_> {
    /// Expiry to stamp on an entry created or written now: `0` without TTL.
    #[inline]
    pub(crate) fn write_expiry(&self) -> u64 {
        match self.meta.ttl_ms {
            Some(ttl) => self.clock.now_ms().saturating_add(ttl),
            None => 0,
        }
    }

    /// Whether an entry stamped with `expires_at` has expired (reads the clock only for
    /// entries that can expire).
    #[inline]
    pub(crate) fn is_expired(&self, expires_at: u64) -> bool {
        expires_at != 0 && expires_at <= self.clock.now_ms()
    }

    /// Puts the sled key of `key` (or the prefix of its map entries) into the buffer.
    pub(crate) fn set_key<K: Serialize>(&mut self, key: &K) -> Result<(), StateError> {
        codec::write_entry_key(self.buf, self.kp, self.meta.id, key)
            .map_err(|e| self.meta.encode_error(self.stage, self.kp, e))
    }

    /// Appends a map user key to the key in the buffer.
    pub(crate) fn push_user_key<UK: Serialize>(&mut self, uk: &UK) -> Result<(), StateError> {
        codec::append_bincode(self.buf, uk)
            .map_err(|e| self.meta.encode_error(self.stage, self.kp, e))
    }

    /// Reads and decodes the record stored under the key in the buffer.
    pub(crate) fn read<T: DeserializeOwned>(&self) -> Result<Option<(u64, T)>, StateError> {
        let raw = self
            .tree
            .get(&self.buf[..])
            .map_err(|e| self.meta.sled_error(self.stage, self.kp, "reading", e))?;
        match raw {
            None => Ok(None),
            Some(bytes) => codec::decode_value(&bytes)
                .map(Some)
                .map_err(|e| self.meta.codec_error(self.stage, self.kp, e)),
        }
    }

    /// Decodes a record read by a scan.
    pub(crate) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<(u64, T), StateError> {
        codec::decode_value(bytes).map_err(|e| self.meta.codec_error(self.stage, self.kp, e))
    }
}

/// Bit of a `pending` or `cleared` flag set: something differs from what sled holds,
/// so the next flush has work there.
pub(crate) const TO_SLED: u8 = 1;

/// Bit of a `pending` or `cleared` flag set: something changed since the last capture
/// ([`KeyedState::take_delta`]), so the next capture has work there.
pub(crate) const TO_DELTA: u8 = 2;

/// Both bits: what every write sets, with a single store.
pub(crate) const TO_BOTH: u8 = TO_SLED | TO_DELTA;

/// A typed cache seen without its types: what [`KeyedState`] does to every state
/// regardless of kind. Implemented by the value (and list) and map caches.
pub(crate) trait ErasedCache<K>: Send {
    /// For the downcast back to the typed cache in the accessors.
    fn as_any_mut(&mut self) -> &mut dyn Any;

    /// Stages every pending write and delete into `ctx.staged` without changing the
    /// cache, so a failed flush leaves everything dirty for a retry. Marks for the
    /// delta log the operations the image lacks (see [`Slot::logged_at_flush`]).
    ///
    /// [`Slot::logged_at_flush`]: crate::state::value::Slot::logged_at_flush
    fn stage_flush(&self, ctx: &mut FlushCtx<'_>) -> Result<(), StateError>;

    /// After the staged operations were applied: marks staged entries clean, drops deleted and
    /// expired ones, and sets `partition_on_disk[i]` for partitions that received
    /// writes. Must select exactly what `stage_flush` staged at the same `now`.
    /// Returns how many cached entries were dropped.
    fn commit_flush(&mut self, now: u64, partition_on_disk: &mut [bool]) -> usize;

    /// Drops clean entries while `*budget > 0`, decrementing it per entry dropped.
    /// With `cold_only`, drops only entries not used since the previous eviction and
    /// marks the rest unused (second chance). Returns how many entries were dropped.
    fn evict(&mut self, cold_only: bool, budget: &mut usize) -> usize;

    /// Encodes into `ctx.parts` every change since the last capture (dirty entries,
    /// maps cleared, entries expired at `ctx.now`) without changing the cache, so a
    /// failed capture leaves everything as it was.
    fn stage_delta(&self, ctx: &mut DeltaCtx<'_>) -> Result<(), StateError>;

    /// After every cache staged its delta: marks what was staged as captured (dirty
    /// entries and expired ones become captured, i.e. in the image but not in sled).
    /// Must select exactly what `stage_delta` staged at the same `now`.
    fn commit_delta(&mut self, now: u64);

    /// Whether the entry stored under `sled_key` (of this state, in partition index
    /// `pi`) is cached as captured but not yet flushed, so the image holds a newer
    /// version than sled. `false` for keys that do not decode.
    fn is_captured(&self, pi: usize, sled_key: &[u8]) -> bool;
}

impl<K: StateKey> KeyedState<K> {
    /// The value state behind `h` for `key` in key partition `kp`.
    ///
    /// # Panics
    /// If `kp` is not owned (see the type's docs), or `h` was issued by another
    /// `KeyedState` for a state of another type.
    #[inline]
    pub fn value<'a, T: StateValue>(
        &'a mut self,
        h: ValueHandle<T>,
        kp: u32,
        key: &'a K,
    ) -> ValueState<'a, K, T> {
        let pi = self.part_index(kp);
        let cache = downcast::<K, ValueCache<K, T>>(&mut self.caches, h.index, &self.stage);
        let (meta, part) = cache.split(pi);
        ValueState::new(
            part,
            key,
            Access {
                tree: &self.tree,
                stage: &self.stage,
                meta,
                kp,
                clock: &*self.clock,
                cached: &mut self.cached,
                buf: &mut self.key_buf,
            },
        )
    }

    /// The map state behind `h` for `key` in key partition `kp`.
    ///
    /// # Panics
    /// As for [`value`](Self::value).
    pub fn map<'a, UK: StateKey, UV: StateValue>(
        &'a mut self,
        h: MapHandle<UK, UV>,
        kp: u32,
        key: &'a K,
    ) -> MapState<'a, K, UK, UV> {
        let pi = self.part_index(kp);
        let cache = downcast::<K, MapCache<K, UK, UV>>(&mut self.caches, h.index, &self.stage);
        let (meta, part) = cache.split(pi);
        MapState::new(
            part,
            key,
            Access {
                tree: &self.tree,
                stage: &self.stage,
                meta,
                kp,
                clock: &*self.clock,
                cached: &mut self.cached,
                buf: &mut self.key_buf,
            },
        )
    }

    /// The list state behind `h` for `key` in key partition `kp`.
    ///
    /// # Panics
    /// As for [`value`](Self::value).
    pub fn list<'a, T: StateValue>(
        &'a mut self,
        h: ListHandle<T>,
        kp: u32,
        key: &'a K,
    ) -> ListState<'a, K, T> {
        let pi = self.part_index(kp);
        let cache = downcast::<K, ValueCache<K, Vec<T>>>(&mut self.caches, h.index, &self.stage);
        let (meta, part) = cache.split(pi);
        ListState::new(ValueState::new(
            part,
            key,
            Access {
                tree: &self.tree,
                stage: &self.stage,
                meta,
                kp,
                clock: &*self.clock,
                cached: &mut self.cached,
                buf: &mut self.key_buf,
            },
        ))
    }

    /// Keeps the cache within [`StoreConfig::cache_entries`](crate::state::StoreConfig): when
    /// over the limit, flushes and then evicts clean entries (least recently used
    /// first, approximately) down to three quarters of the limit. Under the limit it
    /// is a single comparison. Timers are not cached entries and are never evicted.
    #[inline]
    pub fn maintain(&mut self) -> Result<(), StateError> {
        if self.cached <= self.cache_limit {
            return Ok(());
        }
        self.shrink()
    }

    /// The slow path of `maintain`: flush, then evict to the low-water mark.
    #[cold]
    fn shrink(&mut self) -> Result<(), StateError> {
        let before = self.cached;
        self.flush()?;
        let target = self.cache_limit - self.cache_limit / 4;
        let mut budget = self.cached.saturating_sub(target);
        for cold_only in [true, false] {
            for cache in &mut self.caches {
                if budget == 0 {
                    break;
                }
                let dropped = cache.evict(cold_only, &mut budget);
                self.cached = self.cached.saturating_sub(dropped);
            }
        }
        tracing::debug!(
            stage = %self.stage,
            before,
            after = self.cached,
            limit = self.cache_limit,
            "evicted keyed state cache"
        );
        Ok(())
    }

    /// Drops every clean cached entry, keeping dirty ones, and returns how many were
    /// dropped. Later reads of dropped entries go to sled.
    pub fn evict_clean(&mut self) -> usize {
        let mut budget = usize::MAX;
        let mut dropped = 0;
        for cache in &mut self.caches {
            dropped += cache.evict(false, &mut budget);
        }
        self.cached = self.cached.saturating_sub(dropped);
        dropped
    }

    /// Number of cached entries (what [`maintain`](Self::maintain) compares with the
    /// limit): values and lists count one, maps one per key plus one per user entry.
    pub fn cached_entries(&self) -> usize {
        self.cached
    }
}

/// The typed cache at `index`, panicking on a handle from another `KeyedState`.
#[inline]
fn downcast<'c, K: 'static, C: 'static>(
    caches: &'c mut [Box<dyn ErasedCache<K>>],
    index: usize,
    stage: &str,
) -> &'c mut C {
    match caches
        .get_mut(index)
        .and_then(|c| c.as_any_mut().downcast_mut::<C>())
    {
        Some(c) => c,
        None => panic!(
            "state handle #{index} does not belong to the keyed state of stage `{stage}` \
             (a handle was used with another KeyedState)"
        ),
    }
}
