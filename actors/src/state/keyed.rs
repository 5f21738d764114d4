//! [`KeyedState`]: the state of one stage for a range of key partitions, with its
//! write-back cache.

use super::codec::{self, CodecError};
use super::descriptor::{ListHandle, MapHandle, StateDescriptor, StateKind, ValueHandle};
use super::error::StateError;
use super::list::ListState;
use super::map::{MapCache, MapState};
use super::value::{ValueCache, ValueState};
use super::{Clock, StateKey, StateValue};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::{Any, TypeId};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// What one [`KeyedState::flush`] wrote to sled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Entries written (inserted or overwritten).
    pub written: u64,
    /// Entries deleted (cleared, removed, expired, or under a cleared map).
    pub deleted: u64,
    /// Bytes of keys and values written.
    pub bytes: u64,
}

/// Identity of a registered state, shared by its cache and its accessors.
pub(crate) struct StateMeta {
    pub(crate) name: String,
    pub(crate) id: u32,
    /// TTL in milliseconds (at least 1), `None` without TTL.
    pub(crate) ttl_ms: Option<u64>,
}

impl StateMeta {
    fn what(&self, stage: &str, kp: u32) -> String {
        format!(
            "state `{}` of stage `{stage}` in key partition {kp}",
            self.name
        )
    }

    /// Maps a rejected value record to `Corrupt` (damaged bytes) or `Decode` (intact
    /// bytes of another type).
    pub(crate) fn codec_error(&self, stage: &str, kp: u32, err: CodecError) -> StateError {
        match err {
            CodecError::Payload(source) => self.decode_error(stage, kp, source),
            other => StateError::Corrupt {
                what: self.what(stage, kp),
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn decode_error(&self, stage: &str, kp: u32, source: bincode::Error) -> StateError {
        StateError::Decode {
            stage: stage.to_owned(),
            name: self.name.clone(),
            kp,
            source,
        }
    }

    pub(crate) fn encode_error(&self, stage: &str, kp: u32, source: bincode::Error) -> StateError {
        StateError::Encode {
            stage: stage.to_owned(),
            name: self.name.clone(),
            kp,
            source,
        }
    }

    pub(crate) fn sled_error(
        &self,
        stage: &str,
        kp: u32,
        doing: &str,
        source: sled::Error,
    ) -> StateError {
        StateError::Sled {
            context: format!("{doing} {}", self.what(stage, kp)),
            source,
        }
    }
}

/// Everything an accessor needs besides its cache partition: borrowed pieces of the
/// [`KeyedState`] that opened it.
pub(crate) struct Access<'a> {
    pub(crate) tree: &'a sled::Tree,
    pub(crate) stage: &'a str,
    pub(crate) meta: &'a StateMeta,
    pub(crate) kp: u32,
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

/// The state shared by every cache during one flush.
pub(crate) struct FlushCtx<'a> {
    pub(crate) tree: &'a sled::Tree,
    pub(crate) stage: &'a str,
    /// Key partition of cache partition 0.
    pub(crate) first_kp: u32,
    /// Processing time of this flush; entries expired by then are deleted.
    pub(crate) now: u64,
    pub(crate) batch: sled::Batch,
    pub(crate) stats: FlushStats,
    pub(crate) key_buf: &'a mut Vec<u8>,
    pub(crate) val_buf: &'a mut Vec<u8>,
}

impl FlushCtx<'_> {
    /// Stages a write of `value` under the key in `key_buf`.
    pub(crate) fn put<T: Serialize>(
        &mut self,
        meta: &StateMeta,
        kp: u32,
        value: &T,
        expires_at: u64,
    ) -> Result<(), StateError> {
        codec::encode_value(value, expires_at, self.val_buf)
            .map_err(|e| meta.encode_error(self.stage, kp, e))?;
        self.stats.written += 1;
        self.stats.bytes += (self.key_buf.len() + self.val_buf.len()) as u64;
        self.batch.insert(&self.key_buf[..], &self.val_buf[..]);
        Ok(())
    }

    /// Stages a delete of the key in `key_buf`.
    pub(crate) fn delete(&mut self) {
        self.stats.deleted += 1;
        self.batch.remove(&self.key_buf[..]);
    }
}

/// Whether an entry stamped `expires_at` has expired at `now`.
#[inline]
pub(crate) fn expired_at(expires_at: u64, now: u64) -> bool {
    expires_at != 0 && expires_at <= now
}

/// A typed cache seen without its types: what [`KeyedState`] does to every state
/// regardless of kind. Implemented by the value (and list) and map caches.
pub(crate) trait ErasedCache<K>: Send {
    /// For the downcast back to the typed cache in the accessors.
    fn as_any_mut(&mut self) -> &mut dyn Any;

    /// Stages every pending write and delete into `ctx.batch` without changing the
    /// cache, so a failed batch leaves everything dirty for a retry.
    fn stage_flush(&self, ctx: &mut FlushCtx<'_>) -> Result<(), StateError>;

    /// After the batch was applied: marks staged entries clean, drops deleted and
    /// expired ones, and sets `partition_on_disk[i]` for partitions that received
    /// writes. Must select exactly what `stage_flush` staged at the same `now`.
    /// Returns how many cached entries were dropped.
    fn commit_flush(&mut self, now: u64, partition_on_disk: &mut [bool]) -> usize;

    /// Drops clean entries while `*budget > 0`, decrementing it per entry dropped.
    /// With `cold_only`, drops only entries not used since the previous eviction and
    /// marks the rest unused (second chance). Returns how many entries were dropped.
    fn evict(&mut self, cold_only: bool, budget: &mut usize) -> usize;
}

struct Registration {
    name: String,
    id: u32,
    kind: StateKind,
    types: [TypeId; 2],
    type_names: [&'static str; 2],
    ttl: Option<Duration>,
}

/// The keyed state of one stage for a contiguous range of key partitions, owned by
/// one partition actor.
///
/// Reads and writes go through a write-back cache of decoded values: per registered
/// state, per owned key partition, a hash map keyed by the record key. Nothing reaches
/// sled until [`flush`](Self::flush) (call it at epoch markers and end of input) or
/// [`maintain`](Self::maintain) (call it regularly, e.g. after each record or batch;
/// it costs one comparison while the cache is under its limit).
///
/// Accessors take the record's key partition `kp`, computed upstream. They **panic**
/// if `kp` is outside [`owned`](Self::owned): a record routed to the wrong actor is a
/// bug in routing, not bad input, and continuing would corrupt another owner's state.
pub struct KeyedState<K> {
    stage: String,
    owned: Range<u32>,
    tree: sled::Tree,
    clock: Arc<dyn Clock>,
    cache_limit: usize,
    /// Per owned key partition: may sled hold anything for it?
    partition_on_disk: Vec<bool>,
    registry: Vec<Registration>,
    caches: Vec<Box<dyn ErasedCache<K>>>,
    cached: usize,
    key_buf: Vec<u8>,
    val_buf: Vec<u8>,
}

impl<K> fmt::Debug for KeyedState<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedState")
            .field("stage", &self.stage)
            .field("owned", &self.owned)
            .field("states", &self.registry.iter().map(|r| &r.name).collect::<Vec<_>>())
            .field("cached", &self.cached)
            .field("cache_limit", &self.cache_limit)
            .finish_non_exhaustive()
    }
}

impl<K: StateKey> KeyedState<K> {
    /// Opens the state of `stage` over `owned` in `tree`, learning which partitions have
    /// data on disk with one seek per non-empty partition.
    pub(crate) fn new(
        stage: String,
        owned: Range<u32>,
        tree: sled::Tree,
        clock: Arc<dyn Clock>,
        cache_limit: usize,
    ) -> Result<Self, StateError> {
        let len = (owned.end - owned.start) as usize;
        let mut partition_on_disk = vec![false; len];
        let mut next = owned.start;
        while next < owned.end {
            let first = tree
                .range(codec::partition_prefix(next)..)
                .next()
                .transpose()
                .map_err(|source| StateError::Sled {
                    context: format!(
                        "scanning key partitions {next}..{} of stage `{stage}`",
                        owned.end
                    ),
                    source,
                })?;
            let Some((key, _)) = first else { break };
            let kp = codec::key_partition(&key).ok_or_else(|| StateError::Corrupt {
                what: format!("sled key in the tree of stage `{stage}`"),
                reason: format!(
                    "key of {} bytes is shorter than the key partition prefix",
                    key.len()
                ),
            })?;
            if kp >= owned.end {
                break;
            }
            partition_on_disk[(kp - owned.start) as usize] = true;
            next = kp + 1;
        }
        tracing::debug!(
            stage = %stage,
            start = owned.start,
            end = owned.end,
            with_data = partition_on_disk.iter().filter(|b| **b).count(),
            "opened keyed state"
        );
        Ok(Self {
            stage,
            owned,
            tree,
            clock,
            cache_limit,
            partition_on_disk,
            registry: Vec::new(),
            caches: Vec::new(),
            cached: 0,
            key_buf: Vec::new(),
            val_buf: Vec::new(),
        })
    }

    /// Registers a value state holding one `T` per key and returns its handle.
    ///
    /// Registering the same descriptor again with the same type returns the same
    /// handle; the same name with another kind, type or TTL, or another name with the
    /// same state id, is a [`StateError::DescriptorConflict`].
    pub fn register_value<T: StateValue>(
        &mut self,
        d: StateDescriptor,
    ) -> Result<ValueHandle<T>, StateError> {
        let types = [TypeId::of::<T>(), TypeId::of::<()>()];
        let names = [std::any::type_name::<T>(), ""];
        let index = self.register(d, StateKind::Value, types, names, |meta, on_disk| {
            Box::new(ValueCache::<K, T>::new(meta, on_disk))
        })?;
        Ok(ValueHandle::new(index))
    }

    /// Registers a map state holding a map `UK -> UV` per key and returns its handle.
    /// Each map entry is stored (and expires) on its own. Conflicts as for
    /// [`register_value`](Self::register_value).
    pub fn register_map<UK: StateKey, UV: StateValue>(
        &mut self,
        d: StateDescriptor,
    ) -> Result<MapHandle<UK, UV>, StateError> {
        let types = [TypeId::of::<UK>(), TypeId::of::<UV>()];
        let names = [std::any::type_name::<UK>(), std::any::type_name::<UV>()];
        let index = self.register(d, StateKind::Map, types, names, |meta, on_disk| {
            Box::new(MapCache::<K, UK, UV>::new(meta, on_disk))
        })?;
        Ok(MapHandle::new(index))
    }

    /// Registers a list state holding a `Vec<T>` per key and returns its handle. The
    /// list is stored, cached and expires as one value. Conflicts as for
    /// [`register_value`](Self::register_value).
    pub fn register_list<T: StateValue>(
        &mut self,
        d: StateDescriptor,
    ) -> Result<ListHandle<T>, StateError> {
        let types = [TypeId::of::<T>(), TypeId::of::<()>()];
        let names = [std::any::type_name::<T>(), ""];
        let index = self.register(d, StateKind::List, types, names, |meta, on_disk| {
            Box::new(ValueCache::<K, Vec<T>>::new(meta, on_disk))
        })?;
        Ok(ListHandle::new(index))
    }

    fn register(
        &mut self,
        d: StateDescriptor,
        kind: StateKind,
        types: [TypeId; 2],
        type_names: [&'static str; 2],
        make: impl FnOnce(StateMeta, Vec<bool>) -> Box<dyn ErasedCache<K>>,
    ) -> Result<usize, StateError> {
        let name = d.name().to_owned();
        if name.is_empty() {
            return Err(StateError::InvalidDescriptor {
                stage: self.stage.clone(),
                name,
                reason: "the state name is empty".into(),
            });
        }
        let ttl_ms = match d.ttl() {
            None => None,
            Some(ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                if ms == 0 {
                    return Err(StateError::InvalidDescriptor {
                        stage: self.stage.clone(),
                        name,
                        reason: format!("TTL {ttl:?} is below the 1 ms resolution"),
                    });
                }
                Some(ms)
            }
        };
        let id = d.state_id();
        for (index, r) in self.registry.iter().enumerate() {
            if r.name == name {
                if r.kind == kind && r.types == types && r.ttl == d.ttl() {
                    return Ok(index);
                }
                return Err(StateError::DescriptorConflict {
                    stage: self.stage.clone(),
                    name,
                    reason: format!(
                        "already registered as {:?} state of {} {} with TTL {:?}; now requested as {:?} state of {} {} with TTL {:?}",
                        r.kind, r.type_names[0], r.type_names[1], r.ttl,
                        kind, type_names[0], type_names[1], d.ttl()
                    ),
                });
            }
            if r.id == id {
                return Err(StateError::DescriptorConflict {
                    stage: self.stage.clone(),
                    name,
                    reason: format!(
                        "its state id {id:#010x} (CRC-32 of the name) equals that of state `{}`",
                        r.name
                    ),
                });
            }
        }
        let mut on_disk = vec![false; self.partition_on_disk.len()];
        for (i, flag) in on_disk.iter_mut().enumerate() {
            if !self.partition_on_disk[i] {
                continue;
            }
            let kp = self.owned.start + i as u32;
            let first = self
                .tree
                .scan_prefix(codec::state_prefix(kp, id))
                .next()
                .transpose()
                .map_err(|source| StateError::Sled {
                    context: format!(
                        "probing state `{name}` of stage `{}` in key partition {kp}",
                        self.stage
                    ),
                    source,
                })?;
            *flag = first.is_some();
        }
        let meta = StateMeta {
            name: name.clone(),
            id,
            ttl_ms,
        };
        self.caches.push(make(meta, on_disk));
        self.registry.push(Registration {
            name,
            id,
            kind,
            types,
            type_names,
            ttl: d.ttl(),
        });
        Ok(self.caches.len() - 1)
    }

    /// Cache partition index of `kp`; panics outside the owned range (routing bug).
    #[inline]
    fn part_index(&self, kp: u32) -> usize {
        assert!(
            self.owned.contains(&kp),
            "key partition {kp} is not owned by the keyed state of stage `{}` (owns {}..{}): records are misrouted",
            self.stage,
            self.owned.start,
            self.owned.end
        );
        (kp - self.owned.start) as usize
    }

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

    /// Writes every dirty entry to sled in one atomic [`sled::Batch`] and deletes
    /// cleared, removed and expired entries. Entries stay cached and become clean.
    ///
    /// This applies the batch to sled but does not fsync; call
    /// [`StateStore::flush`](super::StateStore::flush) for durability. If the batch
    /// fails, the cache is unchanged and the flush can be retried.
    pub fn flush(&mut self) -> Result<FlushStats, StateError> {
        let now = self.clock.now_ms();
        let mut ctx = FlushCtx {
            tree: &self.tree,
            stage: &self.stage,
            first_kp: self.owned.start,
            now,
            batch: sled::Batch::default(),
            stats: FlushStats::default(),
            key_buf: &mut self.key_buf,
            val_buf: &mut self.val_buf,
        };
        for cache in &self.caches {
            cache.stage_flush(&mut ctx)?;
        }
        let FlushCtx { batch, stats, .. } = ctx;
        if stats.written + stats.deleted > 0 {
            self.tree.apply_batch(batch).map_err(|source| StateError::Sled {
                context: format!(
                    "applying the flush batch of stage `{}` (key partitions {}..{}, {} writes, {} deletes)",
                    self.stage, self.owned.start, self.owned.end, stats.written, stats.deleted
                ),
                source,
            })?;
        }
        for cache in &mut self.caches {
            let dropped = cache.commit_flush(now, &mut self.partition_on_disk);
            self.cached = self.cached.saturating_sub(dropped);
        }
        tracing::trace!(
            stage = %self.stage,
            written = stats.written,
            deleted = stats.deleted,
            bytes = stats.bytes,
            cached = self.cached,
            "flushed keyed state"
        );
        Ok(stats)
    }

    /// Keeps the cache within [`StoreConfig::cache_entries`](super::StoreConfig): when
    /// over the limit, flushes and then evicts clean entries (least recently used
    /// first, approximately) down to three quarters of the limit. Under the limit it
    /// is a single comparison.
    #[inline]
    pub fn maintain(&mut self) -> Result<(), StateError> {
        if self.cached <= self.cache_limit {
            return Ok(());
        }
        self.shrink()
    }

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

    /// The key partitions this state owns.
    pub fn owned(&self) -> Range<u32> {
        self.owned.clone()
    }

    /// The stage (operator) this state belongs to.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The sled tree of this stage, for snapshot code and tests.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }
}

/// The typed cache at `index`, panicking on a handle from another `KeyedState`.
#[inline]
fn downcast<'c, K: 'static, C: 'static>(
    caches: &'c mut [Box<dyn ErasedCache<K>>],
    index: usize,
    stage: &str,
) -> &'c mut C {
    match caches.get_mut(index).and_then(|c| c.as_any_mut().downcast_mut::<C>()) {
        Some(c) => c,
        None => panic!(
            "state handle #{index} does not belong to the keyed state of stage `{stage}` \
             (a handle was used with another KeyedState)"
        ),
    }
}
