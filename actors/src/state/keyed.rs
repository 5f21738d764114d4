//! [`KeyedState`]: the state of one stage for a range of key partitions, with its
//! write-back cache.

use super::codec::{self, CodecError};
use super::delta::{DeltaLog, DeltaWriter, PointRecords};
use super::descriptor::{ListHandle, MapHandle, StateDescriptor, StateKind, ValueHandle};
use super::error::StateError;
use super::list::ListState;
use super::map::{MapCache, MapState};
use super::timers::{FiredTimer, TimerDomain, Timers};
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
    /// Expired entries found on disk (not in the cache) and deleted by the flush's
    /// incremental purge step (see [`KeyedState::set_purge_per_flush`]).
    pub purged: u64,
}

/// Default number of stored entries of TTL states examined per flush for expiry.
pub const DEFAULT_PURGE_PER_FLUSH: usize = 1024;

/// Where the incremental purge of expired on-disk entries resumes.
#[derive(Clone, Debug, Default)]
struct PurgeCursor {
    /// Owned partition index.
    pi: usize,
    /// Position among the TTL states (registration order).
    ttl_pos: usize,
    /// Sled key to resume from within that (partition, state) prefix.
    resume: Option<Vec<u8>>,
}

/// Identity of a registered state, shared by its cache and its accessors.
pub(crate) struct StateMeta {
    /// The descriptor's name.
    pub(crate) name: String,
    /// The state id in sled keys (CRC-32 of the name).
    pub(crate) id: u32,
    /// TTL in milliseconds (at least 1), `None` without TTL.
    pub(crate) ttl_ms: Option<u64>,
}

impl StateMeta {
    /// "state `x` of stage `s` in key partition n", for error messages.
    pub(crate) fn what(&self, stage: &str, kp: u32) -> String {
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

    /// A `Decode` error for this state.
    pub(crate) fn decode_error(&self, stage: &str, kp: u32, source: bincode::Error) -> StateError {
        StateError::Decode {
            stage: stage.to_owned(),
            name: self.name.clone(),
            kp,
            source,
        }
    }

    /// An `Encode` error for this state.
    pub(crate) fn encode_error(&self, stage: &str, kp: u32, source: bincode::Error) -> StateError {
        StateError::Encode {
            stage: stage.to_owned(),
            name: self.name.clone(),
            kp,
            source,
        }
    }

    /// A `Sled` error for this state; `doing` says what was being done to it.
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

/// Most writes and deletes a flush hands to sled in one batch.
///
/// sled 0.34 holds a whole batch in memory several times over while applying it (one
/// batch of 200,000 small writes peaked above 1 GB), so a large flush is applied as a
/// sequence of bounded batches. The size was measured on W1's final flush of 100,000
/// keys: peak RSS 91 MB with batches of 64, 95 MB with 128, 145-199 MB with 1,024 and
/// 430 MB with 16,384, with no loss of speed for the small ones.
pub const FLUSH_CHUNK: usize = 128;

/// Bit of a `pending` or `cleared` flag set: something differs from what sled holds,
/// so the next flush has work there.
pub(crate) const TO_SLED: u8 = 1;

/// Bit of a `pending` or `cleared` flag set: something changed since the last capture
/// ([`KeyedState::take_delta`]), so the next capture has work there.
pub(crate) const TO_DELTA: u8 = 2;

/// Both bits: what every write sets, with a single store.
pub(crate) const TO_BOTH: u8 = TO_SLED | TO_DELTA;

/// A write or delete applied to sled that the delta log must learn about once the
/// flush succeeded: key partition, sled key, value record (`None`: delete).
type Logged = (u32, sled::IVec, Option<sled::IVec>);

/// The state shared by every cache during one flush.
pub(crate) struct FlushCtx<'a> {
    /// The stage's tree (read for prefix deletes of cleared maps).
    pub(crate) tree: &'a sled::Tree,
    /// The stage's name.
    pub(crate) stage: &'a str,
    /// Key partition of cache partition 0.
    pub(crate) first_kp: u32,
    /// Processing time of this flush; entries expired by then are deleted.
    pub(crate) now: u64,
    /// Writes (`Some`) and deletes (`None`) staged so far, in staging order.
    pub(crate) staged: Vec<(sled::IVec, Option<sled::IVec>)>,
    /// Counts of what was staged.
    pub(crate) stats: FlushStats,
    /// Prefix deletes (cleared maps) to record in the delta log: key partition and
    /// prefix. Logged before `logged`: a flush clears maps before writing them.
    pub(crate) logged_prefixes: Vec<(u32, Vec<u8>)>,
    /// Staged operations the delta log must record (changes the image lacks).
    pub(crate) logged: Vec<Logged>,
    /// Scratch buffer for sled keys.
    pub(crate) key_buf: &'a mut Vec<u8>,
    /// Scratch buffer for value records.
    pub(crate) val_buf: &'a mut Vec<u8>,
}

impl FlushCtx<'_> {
    /// Stages a write of `value` under the key in `key_buf`; with `log`, the write is
    /// also recorded in the delta log of `kp` once applied.
    pub(crate) fn put<T: Serialize>(
        &mut self,
        meta: &StateMeta,
        kp: u32,
        value: &T,
        expires_at: u64,
        log: bool,
    ) -> Result<(), StateError> {
        codec::encode_value(value, expires_at, self.val_buf)
            .map_err(|e| meta.encode_error(self.stage, kp, e))?;
        self.stats.written += 1;
        self.stats.bytes += (self.key_buf.len() + self.val_buf.len()) as u64;
        let key: sled::IVec = self.key_buf[..].into();
        let value: sled::IVec = self.val_buf[..].into();
        if log {
            self.logged.push((kp, key.clone(), Some(value.clone())));
        }
        self.staged.push((key, Some(value)));
        Ok(())
    }

    /// Stages a delete of the key in `key_buf`; with `log`, the delete is also
    /// recorded in the delta log of `kp` once applied.
    pub(crate) fn delete(&mut self, kp: u32, log: bool) {
        self.stats.deleted += 1;
        let key: sled::IVec = self.key_buf[..].into();
        if log {
            self.logged.push((kp, key.clone(), None));
        }
        self.staged.push((key, None));
    }

    /// Records a delete of the key in `key_buf` in the delta log of `kp` without
    /// staging it (sled loses the key to a staged prefix scan already).
    pub(crate) fn log_delete(&mut self, kp: u32) {
        self.logged.push((kp, self.key_buf[..].into(), None));
    }

    /// Records a delete of every key under the prefix in `key_buf` in the delta log of
    /// `kp` (a cleared map; sled gets the deletes through
    /// [`delete_stored`](Self::delete_stored)).
    pub(crate) fn log_prefix_delete(&mut self, kp: u32) {
        self.logged_prefixes.push((kp, self.key_buf.clone()));
    }

    /// Stages a delete of a key read from sled (entries under a cleared map).
    pub(crate) fn delete_stored(&mut self, key: sled::IVec) {
        self.stats.deleted += 1;
        self.staged.push((key, None));
    }

    /// Applies everything staged to sled in key order, [`FLUSH_CHUNK`] operations per
    /// batch.
    ///
    /// Key order turns the flush into sequential inserts, which sled applies several
    /// times faster than keys in hash order. The sort is stable, so a delete staged
    /// before a write of the same key (a cleared map written again) stays before it,
    /// also across chunk boundaries.
    fn apply(&mut self) -> Result<(), StateError> {
        self.staged.sort_by(|a, b| a.0.cmp(&b.0));
        let total = self.staged.len();
        for (i, chunk) in self.staged.chunks(FLUSH_CHUNK).enumerate() {
            let mut batch = sled::Batch::default();
            for (key, value) in chunk {
                match value {
                    Some(v) => batch.insert(key.clone(), v.clone()),
                    None => batch.remove(key.clone()),
                }
            }
            self.tree
                .apply_batch(batch)
                .map_err(|source| StateError::Sled {
                    context: format!(
                        "applying flush batch {} of {} ({total} operations) of stage `{}`",
                        i + 1,
                        total.div_ceil(FLUSH_CHUNK),
                        self.stage
                    ),
                    source,
                })?;
        }
        self.staged = Vec::new();
        Ok(())
    }
}

/// What one key partition's delta collects while a capture walks the caches.
#[derive(Default)]
pub(crate) struct PartDelta {
    /// Maps cleared since the last capture: their sled key prefixes.
    pub(crate) prefixes: Vec<Vec<u8>>,
    /// Puts and deletes of entries changed since the last capture.
    pub(crate) points: PointRecords,
}

/// The state shared by every cache during one capture ([`KeyedState::take_delta`]).
pub(crate) struct DeltaCtx<'a> {
    /// The stage's name.
    pub(crate) stage: &'a str,
    /// Key partition of cache partition 0.
    pub(crate) first_kp: u32,
    /// Processing time of the capture; entries expired by then are captured as
    /// deletes.
    pub(crate) now: u64,
    /// What each owned key partition's delta collects, indexed like the caches.
    pub(crate) parts: &'a mut [PartDelta],
    /// Scratch buffer for sled keys.
    pub(crate) key_buf: &'a mut Vec<u8>,
    /// Scratch buffer for value records.
    pub(crate) val_buf: &'a mut Vec<u8>,
}

impl DeltaCtx<'_> {
    /// The collected delta of key partition `kp`.
    #[inline]
    fn part(&mut self, kp: u32) -> &mut PartDelta {
        &mut self.parts[(kp - self.first_kp) as usize]
    }

    /// Encodes a put of `value` under the key in `key_buf`.
    pub(crate) fn put<T: Serialize>(
        &mut self,
        meta: &StateMeta,
        kp: u32,
        value: &T,
        expires_at: u64,
    ) -> Result<(), StateError> {
        codec::encode_value(value, expires_at, self.val_buf)
            .map_err(|e| meta.encode_error(self.stage, kp, e))?;
        let (key, val) = (&self.key_buf[..], &self.val_buf[..]);
        self.parts[(kp - self.first_kp) as usize]
            .points
            .put(key, val);
        Ok(())
    }

    /// Encodes a put of the value record already in `val_buf` under the key in
    /// `key_buf`.
    pub(crate) fn put_record(&mut self, kp: u32) {
        let (key, val) = (&self.key_buf[..], &self.val_buf[..]);
        self.parts[(kp - self.first_kp) as usize]
            .points
            .put(key, val);
    }

    /// Encodes a delete of the key in `key_buf`.
    pub(crate) fn delete(&mut self, kp: u32) {
        let key = &self.key_buf[..];
        self.parts[(kp - self.first_kp) as usize].points.delete(key);
    }

    /// Records a delete of every key under the prefix in `key_buf`.
    pub(crate) fn delete_prefix(&mut self, kp: u32) {
        let prefix = self.key_buf.clone();
        self.part(kp).prefixes.push(prefix);
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

    /// Stages every pending write and delete into `ctx.staged` without changing the
    /// cache, so a failed flush leaves everything dirty for a retry. Marks for the
    /// delta log the operations the image lacks (see [`Slot::logged_at_flush`]).
    ///
    /// [`Slot::logged_at_flush`]: super::value::Slot::logged_at_flush
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

/// A registered descriptor, to detect conflicting registrations.
struct Registration {
    /// The state's name.
    name: String,
    /// Its state id.
    id: u32,
    /// Value, map or list.
    kind: StateKind,
    /// The value type (or user key and value types), `()` where unused.
    types: [TypeId; 2],
    /// Names of `types`, for error messages.
    type_names: [&'static str; 2],
    /// The descriptor's TTL.
    ttl: Option<Duration>,
}

/// The keyed state of one stage for a contiguous range of key partitions, owned by
/// one partition actor.
///
/// Reads and writes go through a write-back cache of decoded values: per registered
/// state, per owned key partition, a hash map keyed by the record key. Nothing reaches
/// sled until [`flush`](Self::flush) (call it at end of input) or
/// [`maintain`](Self::maintain) (call it regularly, e.g. after each record or batch;
/// it costs one comparison while the cache is under its limit). At epoch markers,
/// [`take_delta`](Self::take_delta) captures what changed for a snapshot without
/// writing to sled.
///
/// Dropping a `KeyedState` discards unflushed writes: flush first (or capture them
/// with [`take_delta`](Self::take_delta), for a restore).
///
/// Accessors take the record's key partition `kp`, computed upstream. They **panic**
/// if `kp` is outside [`owned`](Self::owned): a record routed to the wrong actor is a
/// bug in routing, not bad input, and continuing would corrupt another owner's state.
pub struct KeyedState<K> {
    /// The stage's name.
    stage: String,
    /// The owned key partitions.
    owned: Range<u32>,
    /// The stage's tree.
    tree: sled::Tree,
    /// Processing time for TTL.
    clock: Arc<dyn Clock>,
    /// `StoreConfig::cache_entries`.
    cache_limit: usize,
    /// Per owned key partition: may sled hold anything for it?
    partition_on_disk: Vec<bool>,
    /// Registered descriptors, indexed like `caches`.
    registry: Vec<Registration>,
    /// One typed cache per registered state, indexed by handle.
    caches: Vec<Box<dyn ErasedCache<K>>>,
    /// Cached entries over all caches (what `maintain` compares).
    cached: usize,
    /// Scratch buffer for sled keys.
    key_buf: Vec<u8>,
    /// Scratch buffer for value records.
    val_buf: Vec<u8>,
    /// Stored entries examined for expiry per flush.
    purge_per_flush: usize,
    /// Where the next purge step starts.
    purge_cursor: PurgeCursor,
    /// Every pending timer of the owned partitions (never evicted).
    timers: Timers,
    /// Per owned key partition: what flushes and purges wrote to sled since the last
    /// capture on behalf of changes the image lacks (see [`take_delta`](Self::take_delta)).
    delta_log: Vec<DeltaLog>,
    /// Per owned key partition: its delta log was dropped to bound memory, so the
    /// next capture sends a full image of the partition instead of a delta.
    delta_reset: Vec<bool>,
    /// Most entries all delta logs together may hold.
    delta_log_limit: usize,
}

impl<K> fmt::Debug for KeyedState<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedState")
            .field("stage", &self.stage)
            .field("owned", &self.owned)
            .field(
                "states",
                &self.registry.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .field("cached", &self.cached)
            .field("cache_limit", &self.cache_limit)
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

impl<K: StateKey> KeyedState<K> {
    /// Opens the state of `stage` over `owned` in `tree`, learning which partitions have
    /// data on disk with one seek per non-empty partition, and loading the timers of
    /// those partitions.
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
        let timers = Timers::load::<K>(&tree, &stage, &owned, &partition_on_disk)?;
        tracing::debug!(
            stage = %stage,
            start = owned.start,
            end = owned.end,
            with_data = partition_on_disk.iter().filter(|b| **b).count(),
            timers = timers.len(),
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
            purge_per_flush: DEFAULT_PURGE_PER_FLUSH,
            purge_cursor: PurgeCursor::default(),
            timers,
            delta_log: (0..len).map(|_| DeltaLog::default()).collect(),
            delta_reset: vec![false; len],
            delta_log_limit: cache_limit,
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

    /// Validates and records a descriptor, returning its (new or existing) index.
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
        if name == codec::TIMER_STATE_NAME || id == codec::TIMER_STATE_ID {
            return Err(StateError::DescriptorConflict {
                stage: self.stage.clone(),
                name,
                reason: format!(
                    "the name `{}` and its state id {:#010x} are reserved for timers",
                    codec::TIMER_STATE_NAME,
                    codec::TIMER_STATE_ID
                ),
            });
        }
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

    /// Writes every dirty entry to sled and deletes cleared, removed and expired
    /// entries. Entries stay cached and become clean. Timers registered since the last
    /// flush are written, and timers fired or deleted since then are deleted.
    ///
    /// Whatever it writes that the last capture did not see (entries changed since,
    /// expiries, map clears) is recorded in the delta log of its key partition, so
    /// the next [`take_delta`](Self::take_delta) reports it even if the entries are
    /// evicted meanwhile. Captured entries are written without being recorded again.
    ///
    /// The operations are applied in key order as atomic [`sled::Batch`]es of at most
    /// [`FLUSH_CHUNK`] operations, because sled's memory for a single batch grows with
    /// its size. Each batch is atomic; the flush as a whole is not: a crash in the
    /// middle leaves a key-ordered prefix of it applied, so recovery must restore from
    /// a completed snapshot, not trust the live tree. If a batch fails, the cache is
    /// unchanged (still dirty) and the flush can be retried: re-applying is idempotent.
    ///
    /// This does not fsync; call [`StateStore::flush`](super::StateStore::flush) for
    /// durability.
    ///
    /// Entries that expire while not cached are invisible but would stay on disk, so
    /// each flush then also examines up to
    /// [`set_purge_per_flush`](Self::set_purge_per_flush) stored entries of TTL states,
    /// resuming where the previous flush stopped, and deletes the expired ones in a
    /// separate batch (like Flink's incremental TTL cleanup). Deleting an expired entry
    /// changes nothing a reader can see, so it needs no atomicity with the writes.
    /// An error there is returned although the flush's own writes were applied.
    pub fn flush(&mut self) -> Result<FlushStats, StateError> {
        let now = self.clock.now_ms();
        let mut ctx = FlushCtx {
            tree: &self.tree,
            stage: &self.stage,
            first_kp: self.owned.start,
            now,
            staged: Vec::new(),
            stats: FlushStats::default(),
            logged_prefixes: Vec::new(),
            logged: Vec::new(),
            key_buf: &mut self.key_buf,
            val_buf: &mut self.val_buf,
        };
        for cache in &self.caches {
            cache.stage_flush(&mut ctx)?;
        }
        self.timers.stage_flush(&mut ctx)?;
        self.timers.begin_apply();
        ctx.apply()?;
        let FlushCtx {
            mut stats,
            logged_prefixes,
            logged,
            ..
        } = ctx;
        let first = self.owned.start;
        for (kp, prefix) in logged_prefixes {
            if let Some(log) = self.log_of((kp - first) as usize) {
                log.delete_prefix(&prefix);
            }
        }
        for (kp, key, value) in logged {
            if let Some(log) = self.log_of((kp - first) as usize) {
                log.point(key, value);
            }
        }
        self.bound_delta_log();
        for cache in &mut self.caches {
            let dropped = cache.commit_flush(now, &mut self.partition_on_disk);
            self.cached = self.cached.saturating_sub(dropped);
        }
        self.timers
            .commit_flush(self.owned.start, &mut self.partition_on_disk);
        stats.purged = self.purge_step(self.purge_per_flush, now)?;
        tracing::trace!(
            stage = %self.stage,
            written = stats.written,
            deleted = stats.deleted,
            bytes = stats.bytes,
            purged = stats.purged,
            cached = self.cached,
            "flushed keyed state"
        );
        Ok(stats)
    }

    /// Captures, per owned key partition, everything that changed in this state since
    /// the previous capture (or since the state was opened), as an encoded delta
    /// ([`delta`](super::delta)); key partitions without changes are left out. Writes
    /// nothing to sled.
    ///
    /// Meant for every epoch barrier: the deltas go to a snapshot file (on another
    /// thread), and a key partition's chain of deltas from a full image on,
    /// applied in order, reproduces exactly the sled content the partition would have
    /// after a full [`flush`](Self::flush) at the moment of each capture: values,
    /// lists, map entries and map clears, deletes, TTL expiries, and timers registered,
    /// deleted or fired. The one exception is the purge of expired entries that are
    /// not cached (invisible to readers): it is captured when a flush or
    /// [`purge_expired`](Self::purge_expired) performs it, not when it is merely due.
    ///
    /// The capture has two sources:
    ///
    /// * cached entries changed since the previous capture and not yet flushed: they
    ///   are encoded here and become *captured*, still pending for sled, so the next
    ///   flush writes them (without logging them again); entries expired by now are
    ///   captured as deletes and become tombstones;
    /// * changes a flush or purge wrote to sled since the previous capture (for
    ///   instance before [`maintain`](Self::maintain) evicted the entries): each flush
    ///   records them in a per-partition delta log, which this call empties.
    ///
    /// The per-record path pays nothing for this: a write sets the same flags it always
    /// did, and keys are encoded only here, once per changed entry.
    ///
    /// On an encoding error nothing is marked captured, and the call can be retried.
    pub fn take_delta(&mut self) -> Result<Vec<(u32, Vec<u8>)>, StateError> {
        let now = self.clock.now_ms();
        let mut parts: Vec<PartDelta> = (0..self.delta_log.len())
            .map(|_| PartDelta::default())
            .collect();
        let mut ctx = DeltaCtx {
            stage: &self.stage,
            first_kp: self.owned.start,
            now,
            parts: &mut parts,
            key_buf: &mut self.key_buf,
            val_buf: &mut self.val_buf,
        };
        for cache in &self.caches {
            cache.stage_delta(&mut ctx)?;
        }
        self.timers.stage_delta(&mut ctx)?;
        let mut images = if self.delta_reset.contains(&true) {
            self.stage_images(now)?
        } else {
            Vec::new()
        }
        .into_iter()
        .peekable();
        for cache in &mut self.caches {
            cache.commit_delta(now);
        }
        self.timers.commit_delta();
        let mut out = Vec::new();
        for (pi, (part, log)) in parts.iter().zip(&mut self.delta_log).enumerate() {
            let kp = self.owned.start + pi as u32;
            if let Some((_, image)) = images.next_if(|(i, _)| *i == pi) {
                self.delta_reset[pi] = false;
                out.push((kp, image));
                continue;
            }
            if part.prefixes.is_empty() && part.points.is_empty() && log.is_empty() {
                continue;
            }
            out.push((kp, log.drain_into_delta(kp, &part.prefixes, &part.points)));
        }
        tracing::trace!(
            stage = %self.stage,
            partitions = out.len(),
            bytes = out.iter().map(|(_, d)| d.len()).sum::<usize>(),
            "captured keyed state delta"
        );
        Ok(out)
    }

    /// Full images, as deltas, of the key partitions whose delta log was dropped
    /// (`delta_reset`), with their partition indexes in ascending order: each starts
    /// with a delete of the whole partition, then puts what sled would hold after a
    /// full flush at `now` (sled's content with the operations a flush would stage
    /// applied). Reads sled; changes nothing.
    #[cold]
    fn stage_images(&self, now: u64) -> Result<Vec<(usize, Vec<u8>)>, StateError> {
        let (mut key_buf, mut val_buf) = (Vec::new(), Vec::new());
        let mut ctx = FlushCtx {
            tree: &self.tree,
            stage: &self.stage,
            first_kp: self.owned.start,
            now,
            staged: Vec::new(),
            stats: FlushStats::default(),
            logged_prefixes: Vec::new(),
            logged: Vec::new(),
            key_buf: &mut key_buf,
            val_buf: &mut val_buf,
        };
        for cache in &self.caches {
            cache.stage_flush(&mut ctx)?;
        }
        self.timers.stage_flush(&mut ctx)?;
        let mut staged = ctx.staged;
        // Stable: a delete staged before a write of the same key stays before it.
        staged.sort_by(|a, b| a.0.cmp(&b.0));
        let mut images = Vec::new();
        for (pi, _) in self.delta_reset.iter().enumerate().filter(|(_, r)| **r) {
            let kp = self.owned.start + pi as u32;
            let prefix = codec::partition_prefix(kp);
            let mut image: std::collections::BTreeMap<sled::IVec, sled::IVec> =
                std::collections::BTreeMap::new();
            for item in self.tree.scan_prefix(prefix) {
                let (key, value) = item.map_err(|source| StateError::Sled {
                    context: format!(
                        "reading key partition {kp} of stage `{}` for a full image",
                        self.stage
                    ),
                    source,
                })?;
                image.insert(key, value);
            }
            // Keys start with the partition, so the partition's operations are a run.
            let from = staged.partition_point(|(k, _)| k[..] < prefix[..]);
            for (key, value) in staged[from..]
                .iter()
                .take_while(|(k, _)| k.starts_with(&prefix))
            {
                match value {
                    Some(v) => image.insert(key.clone(), v.clone()),
                    None => image.remove(key),
                };
            }
            let size = image.iter().map(|(k, v)| k.len() + v.len() + 12).sum();
            let mut out = DeltaWriter::new(kp, [&prefix[..]], size);
            for (key, value) in &image {
                out.put(key, value);
            }
            images.push((pi, out.finish()));
        }
        tracing::debug!(
            stage = %self.stage,
            partitions = images.len(),
            "captured full images of key partitions whose delta log was dropped"
        );
        Ok(images)
    }

    /// The delta log of partition index `pi`, `None` if the partition's next capture
    /// is a full image anyway.
    fn log_of(&mut self, pi: usize) -> Option<&mut DeltaLog> {
        match self.delta_reset.get(pi) {
            Some(false) => self.delta_log.get_mut(pi),
            _ => None,
        }
    }

    /// Keeps the delta logs within [`set_delta_log_limit`](Self::set_delta_log_limit):
    /// when over, drops the largest logs (down to half the limit), and marks their
    /// partitions for a full image at the next capture. A job that never captures
    /// thus stops logging once all partitions are marked.
    fn bound_delta_log(&mut self) {
        let total: usize = self.delta_log.iter().map(DeltaLog::len).sum();
        if total <= self.delta_log_limit {
            return;
        }
        let mut by_size: Vec<(usize, usize)> = self
            .delta_log
            .iter()
            .enumerate()
            .map(|(pi, log)| (log.len(), pi))
            .filter(|(len, _)| *len > 0)
            .collect();
        by_size.sort_unstable_by(|a, b| b.cmp(a));
        let mut left = total;
        let mut dropped = 0;
        for (len, pi) in by_size {
            if left <= self.delta_log_limit / 2 {
                break;
            }
            self.delta_log[pi] = DeltaLog::default();
            self.delta_reset[pi] = true;
            left -= len;
            dropped += 1;
        }
        tracing::debug!(
            stage = %self.stage,
            total,
            limit = self.delta_log_limit,
            dropped,
            "delta logs over their limit: dropped the largest, their partitions get full images at the next capture"
        );
    }

    /// Sets how many entries (writes, deletes, map clears) the delta logs of all
    /// owned partitions may hold together between two captures; the default is
    /// [`StoreConfig::cache_entries`](super::StoreConfig). Past it, the largest logs
    /// are dropped and the next [`take_delta`](Self::take_delta) sends those key
    /// partitions as full images (a delete of the whole partition, then every entry,
    /// read from sled) instead of deltas: correct, but slower to capture. So the logs
    /// never hold more than about a cache's worth of entries, even in a job that never
    /// captures.
    pub fn set_delta_log_limit(&mut self, entries: usize) {
        self.delta_log_limit = entries;
        self.bound_delta_log();
    }

    /// Entries held by all delta logs, for tests.
    #[cfg(test)]
    pub(crate) fn delta_log_len(&self) -> usize {
        self.delta_log.iter().map(DeltaLog::len).sum()
    }

    /// Per owned partition index: is a full image due at the next capture? For tests.
    #[cfg(test)]
    pub(crate) fn delta_resets(&self) -> &[bool] {
        &self.delta_reset
    }

    /// Sets how many stored entries of TTL states each [`flush`](Self::flush)
    /// examines for expiry ([`DEFAULT_PURGE_PER_FLUSH`] by default; 0 turns the
    /// incremental purge off).
    pub fn set_purge_per_flush(&mut self, entries: usize) {
        self.purge_per_flush = entries;
    }

    /// Deletes every expired entry of the TTL states stored in the owned partitions,
    /// in one pass over them, and returns how many were deleted. Flushes do this
    /// incrementally; call this for a full sweep (e.g. before a savepoint).
    pub fn purge_expired(&mut self) -> Result<u64, StateError> {
        self.purge_cursor = PurgeCursor::default();
        let now = self.clock.now_ms();
        let purged = self.purge_step(usize::MAX, now)?;
        self.purge_cursor = PurgeCursor::default();
        Ok(purged)
    }

    /// Examines up to `budget` stored entries of TTL states from the purge cursor, at
    /// most one pass over the owned partitions, and deletes those expired at `now`.
    ///
    /// Safe whatever the cache holds: a cached dirty entry is rewritten by the next
    /// flush, and a clean cached entry equals the stored one, so it is expired in the
    /// cache too.
    ///
    /// Each delete is recorded in the delta log, except for keys cached as captured:
    /// the image holds their newer value, which the next flush writes back to sled.
    fn purge_step(&mut self, budget: usize, now: u64) -> Result<u64, StateError> {
        // (state id, cache index) of the TTL states, in registration order.
        let ttl_ids: Vec<(u32, usize)> = self
            .registry
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ttl.is_some())
            .map(|(i, r)| (r.id, i))
            .collect();
        let parts = self.partition_on_disk.len();
        if ttl_ids.is_empty() || budget == 0 || parts == 0 {
            return Ok(0);
        }
        let mut cur = std::mem::take(&mut self.purge_cursor);
        // Expired stored entries: sled key, cache index, partition index.
        let mut doomed: Vec<(sled::IVec, usize, usize)> = Vec::new();
        let mut examined = 0usize;
        let mut visited = 0usize;
        'parts: while visited < parts {
            if cur.pi >= parts {
                cur = PurgeCursor::default();
            }
            if self.partition_on_disk[cur.pi] {
                let kp = self.owned.start + cur.pi as u32;
                while let Some(&(id, cache)) = ttl_ids.get(cur.ttl_pos) {
                    let prefix = codec::state_prefix(kp, id);
                    let from = cur.resume.take().unwrap_or_else(|| prefix.to_vec());
                    for item in self.tree.range(from..) {
                        let (key, record) = item.map_err(|source| StateError::Sled {
                            context: format!(
                                "scanning stage `{}` key partition {kp} for expired state",
                                self.stage
                            ),
                            source,
                        })?;
                        if !key.starts_with(&prefix) {
                            break;
                        }
                        if examined == budget {
                            cur.resume = Some(key.to_vec());
                            break 'parts;
                        }
                        examined += 1;
                        match codec::open_value(&record) {
                            Ok((expires_at, _)) if expired_at(expires_at, now) => {
                                doomed.push((key, cache, cur.pi));
                            }
                            Ok(_) => {}
                            // Left for a read to report with full context; a purge must
                            // not fail a flush over a record it would not delete.
                            Err(e) => tracing::warn!(
                                stage = %self.stage,
                                kp,
                                state_id = id,
                                error = %e,
                                "skipping a corrupt state record while purging expired entries"
                            ),
                        }
                    }
                    cur.ttl_pos += 1;
                }
            }
            cur.pi += 1;
            cur.ttl_pos = 0;
            visited += 1;
        }
        self.purge_cursor = cur;
        for chunk in doomed.chunks(FLUSH_CHUNK) {
            let mut batch = sled::Batch::default();
            for (key, _, _) in chunk {
                batch.remove(key.clone());
            }
            self.tree
                .apply_batch(batch)
                .map_err(|source| StateError::Sled {
                    context: format!(
                        "deleting {} expired entries of stage `{}` (key partitions {}..{})",
                        doomed.len(),
                        self.stage,
                        self.owned.start,
                        self.owned.end
                    ),
                    source,
                })?;
            for (key, cache, pi) in chunk {
                let captured = self
                    .caches
                    .get(*cache)
                    .is_some_and(|c| c.is_captured(*pi, key));
                if let (false, Some(log)) = (captured, self.log_of(*pi)) {
                    log.point(key.clone(), None);
                }
            }
        }
        self.bound_delta_log();
        Ok(doomed.len() as u64)
    }

    /// Registers a timer of `domain` for `key` (in key partition `kp`) at `timestamp`.
    /// Registering the same `(domain, kp, key, timestamp)` again is a no-op: one timer
    /// fires once. The timer is written to sled at the next [`flush`](Self::flush).
    ///
    /// # Panics
    /// If `kp` is not owned (see the type's docs).
    pub fn register_timer(
        &mut self,
        domain: TimerDomain,
        kp: u32,
        key: &K,
        timestamp: i64,
    ) -> Result<(), StateError> {
        self.encode_timer_key(kp, key)?;
        self.timers.register(domain, kp, &self.key_buf, timestamp);
        Ok(())
    }

    /// Deletes a timer registered with
    /// [`register_timer`](Self::register_timer); a no-op if there is none.
    ///
    /// # Panics
    /// If `kp` is not owned (see the type's docs).
    pub fn delete_timer(
        &mut self,
        domain: TimerDomain,
        kp: u32,
        key: &K,
        timestamp: i64,
    ) -> Result<(), StateError> {
        self.encode_timer_key(kp, key)?;
        self.timers.delete(domain, kp, &self.key_buf, timestamp);
        Ok(())
    }

    /// The timestamp of the earliest timer of `domain`, if any. Cheap (no allocation,
    /// no disk): meant to be called on every watermark.
    #[inline]
    pub fn next_timer(&self, domain: TimerDomain) -> Option<i64> {
        self.timers.next(domain)
    }

    /// Removes and returns the earliest timer of `domain` with a timestamp `<= up_to`,
    /// or `None`. Timers come out in `(timestamp, kp, bincode(key))` order, each once;
    /// timers registered in between (e.g. by the handler of the previous one) are
    /// seen. The removal reaches sled at the next [`flush`](Self::flush).
    ///
    /// A stored key that does not decode as `K` is a [`StateError::Decode`] and stays
    /// queued (keys are checked when the state is opened, so this is not expected).
    pub fn pop_timer(
        &mut self,
        domain: TimerDomain,
        up_to: i64,
    ) -> Result<Option<FiredTimer<K>>, StateError> {
        self.timers.pop(domain, up_to, &self.stage)
    }

    /// Number of pending timers of both domains, for metrics.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Checks `kp` and puts `bincode(key)` into the key buffer.
    fn encode_timer_key(&mut self, kp: u32, key: &K) -> Result<(), StateError> {
        self.part_index(kp);
        self.key_buf.clear();
        codec::append_bincode(&mut self.key_buf, key)
            .map_err(|e| self.timers.meta().encode_error(&self.stage, kp, e))
    }

    /// Keeps the cache within [`StoreConfig::cache_entries`](super::StoreConfig): when
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

    /// The key partitions this state owns.
    pub fn owned(&self) -> Range<u32> {
        self.owned.clone()
    }

    /// The stage (operator) this state belongs to.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Processing time now, in ms since the Unix epoch, from the clock this state
    /// was opened with (the node's clock: the wall clock, or a test's).
    pub fn processing_time_ms(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use std::time::Duration;

    fn assert_send<T: Send>() {}

    fn assert_sync<T: Sync>() {}

    #[test]
    fn keyed_state_is_send() {
        assert_send::<KeyedState<String>>();
        assert_send::<StateStore>();
        assert_sync::<StateStore>();
    }

    #[test]
    fn descriptor_registration_rules() {
        let (_store, mut ks, _clock) = keyed::<u32>("s", 0..1);
        let a = ks.register_value::<u64>(StateDescriptor::new("a")).unwrap();
        // Same descriptor, same type: the same handle.
        assert_eq!(
            ks.register_value::<u64>(StateDescriptor::new("a")).unwrap(),
            a
        );
        let conflict = |e: StateError| matches!(e, StateError::DescriptorConflict { ref name, .. } if name == "a");
        assert!(conflict(
            ks.register_value::<u32>(StateDescriptor::new("a"))
                .unwrap_err()
        ));
        assert!(conflict(
            ks.register_list::<u64>(StateDescriptor::new("a"))
                .unwrap_err()
        ));
        assert!(conflict(
            ks.register_map::<u64, u64>(StateDescriptor::new("a"))
                .unwrap_err()
        ));
        assert!(conflict(
            ks.register_value::<u64>(StateDescriptor::new("a").with_ttl(Duration::from_secs(1)))
                .unwrap_err()
        ));
        // Two names with one CRC-32.
        assert_eq!(
            codec::state_id("state-29685295"),
            codec::state_id("state-32060020")
        );
        ks.register_value::<u8>(StateDescriptor::new("state-29685295"))
            .unwrap();
        let err = ks
            .register_value::<u8>(StateDescriptor::new("state-32060020"))
            .unwrap_err();
        assert!(
            matches!(err, StateError::DescriptorConflict { ref name, ref reason, .. }
                if name == "state-32060020" && reason.contains("state-29685295")),
            "{err}"
        );
        assert!(matches!(
            ks.register_value::<u8>(StateDescriptor::new(""))
                .unwrap_err(),
            StateError::InvalidDescriptor { .. }
        ));
        assert!(matches!(
            ks.register_value::<u8>(StateDescriptor::new("z").with_ttl(Duration::from_micros(10)))
                .unwrap_err(),
            StateError::InvalidDescriptor { .. }
        ));
    }

    #[test]
    #[should_panic(expected = "key partition 4 is not owned")]
    fn foreign_key_partition_panics() {
        let (_store, mut ks, _clock) = keyed::<u32>("s", 2..4);
        let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
        let _ = ks.value(h, 4, &1).get();
    }

    #[test]
    #[should_panic(expected = "does not belong")]
    fn foreign_handle_panics() {
        let (_store, mut ks, _clock) = keyed::<u32>("s", 0..1);
        let (_store2, mut other, _clock2) = keyed::<u32>("s", 0..1);
        let _ = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
        let h = other
            .register_value::<String>(StateDescriptor::new("v"))
            .unwrap();
        let _ = ks.value(h, 0, &1).get();
    }

    #[test]
    fn stages_and_partitions_are_isolated() {
        let store = StateStore::temporary(small_config()).unwrap();
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(ManualClock::new(0));
        let mut a = store.keyed::<u32>("a", 0..2, clock.clone()).unwrap();
        let mut b = store.keyed::<u32>("b", 0..2, clock.clone()).unwrap();
        let ha = a.register_value::<u32>(StateDescriptor::new("v")).unwrap();
        let hb = b.register_value::<u32>(StateDescriptor::new("v")).unwrap();
        let ma = a
            .register_map::<u32, u32>(StateDescriptor::new("m"))
            .unwrap();
        a.value(ha, 0, &1).set(10).unwrap();
        a.value(ha, 1, &1).set(11).unwrap();
        a.map(ma, 0, &1).insert(5, 50).unwrap();
        b.value(hb, 0, &1).set(20).unwrap();
        a.flush().unwrap();
        b.flush().unwrap();
        for _ in 0..2 {
            assert_eq!(a.value(ha, 0, &1).value().unwrap(), Some(10));
            assert_eq!(a.value(ha, 1, &1).value().unwrap(), Some(11));
            assert_eq!(b.value(hb, 0, &1).value().unwrap(), Some(20));
            assert_eq!(b.value(hb, 1, &1).value().unwrap(), None);
            assert_eq!(a.map(ma, 0, &1).entries().unwrap(), vec![(5, 50)]);
            assert!(a.map(ma, 1, &1).is_empty().unwrap());
            a.evict_clean();
            b.evict_clean();
        }
        // A later keyed state over part of the range sees only its partitions.
        drop(a);
        let mut a1 = store.keyed::<u32>("a", 1..2, clock).unwrap();
        let ha1 = a1.register_value::<u32>(StateDescriptor::new("v")).unwrap();
        assert_eq!(a1.value(ha1, 1, &1).value().unwrap(), Some(11));
        a1.value(ha1, 1, &1).clear().unwrap();
        a1.flush().unwrap();
        assert_eq!(
            raw_entries(&a1, 0).len(),
            2,
            "partition 0 (value and map) untouched"
        );
        assert!(raw_entries(&a1, 1).is_empty());
        assert_eq!(raw_entries(&b, 0).len(), 1);
    }

    #[test]
    fn maintain_flushes_and_evicts_over_the_limit_and_values_survive() {
        let store = StateStore::temporary(StoreConfig {
            cache_entries: 100,
            sled_cache_bytes: 1 << 20,
        })
        .unwrap();
        let mut ks = store
            .keyed::<u64>("agg", 0..4, std::sync::Arc::new(ManualClock::new(0)))
            .unwrap();
        let h = ks
            .register_value::<u64>(StateDescriptor::new("sum"))
            .unwrap();
        for round in 0..3u64 {
            for k in 0..1000u64 {
                *ks.value(h, (k % 4) as u32, &k)
                    .get_or_insert_with(|| 0)
                    .unwrap() += k + round;
                ks.maintain().unwrap();
                assert!(ks.cached_entries() <= 100);
            }
        }
        // Under the limit, maintain changes nothing.
        let before = ks.cached_entries();
        ks.maintain().unwrap();
        assert_eq!(ks.cached_entries(), before);
        assert!(before > 0);
        ks.flush().unwrap();
        ks.evict_clean();
        for k in 0..1000u64 {
            assert_eq!(
                ks.value(h, (k % 4) as u32, &k).value().unwrap(),
                Some(3 * k + 3)
            );
        }
    }

    #[test]
    fn flipped_byte_on_disk_is_reported_as_corrupt() {
        let (_store, mut ks, _clock) = keyed::<String>("agg", 0..8);
        let h = ks
            .register_value::<String>(StateDescriptor::new("label"))
            .unwrap();
        let key = "k".to_string();
        ks.value(h, 5, &key).set("some value".into()).unwrap();
        ks.flush().unwrap();
        ks.evict_clean();
        let raw = raw_entries(&ks, 5);
        assert_eq!(raw.len(), 1);
        let (k, v) = &raw[0];
        let mut bad = v.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        ks.tree().insert(k, bad).unwrap();
        let err = ks.value(h, 5, &key).value().unwrap_err();
        match &err {
            StateError::Corrupt { what, reason } => {
                assert!(
                    what.contains("`label`")
                        && what.contains("`agg`")
                        && what.contains("partition 5"),
                    "{what}"
                );
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // An unknown format version is corrupt too, not decoded.
        let mut future = v.to_vec();
        future[0] = 2;
        ks.tree().insert(k, future).unwrap();
        assert!(matches!(
            ks.value(h, 5, &key).value().unwrap_err(),
            StateError::Corrupt { .. }
        ));
    }

    #[test]
    fn intact_bytes_of_another_type_are_a_decode_error() {
        let store = StateStore::temporary(small_config()).unwrap();
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(ManualClock::new(0));
        let mut ks = store.keyed::<u8>("agg", 0..1, clock.clone()).unwrap();
        let h = ks
            .register_value::<String>(StateDescriptor::new("v"))
            .unwrap();
        ks.value(h, 0, &1).set("hello".into()).unwrap();
        ks.flush().unwrap();
        drop(ks);
        let mut ks = store.keyed::<u8>("agg", 0..1, clock).unwrap();
        let h = ks.register_value::<u64>(StateDescriptor::new("v")).unwrap();
        assert!(matches!(
            ks.value(h, 0, &1).value().unwrap_err(),
            StateError::Decode { ref name, kp: 0, .. } if name == "v"
        ));
    }

    #[test]
    fn flush_stats_count_writes_deletes_and_bytes() {
        let (_store, mut ks, _clock) = keyed::<u8>("s", 0..1);
        let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
        assert_eq!(ks.flush().unwrap(), FlushStats::default());
        ks.value(h, 0, &1).set(1).unwrap();
        ks.value(h, 0, &2).set(2).unwrap();
        let s = ks.flush().unwrap();
        // key: 8-byte prefix + 1; value: 13-byte header + 1.
        assert_eq!(
            s,
            FlushStats {
                written: 2,
                deleted: 0,
                bytes: 2 * (9 + 14),
                purged: 0,
            }
        );
        // Clean entries are not written again.
        assert_eq!(ks.flush().unwrap(), FlushStats::default());
    }

    #[test]
    fn flush_purges_expired_entries_that_are_not_cached_incrementally() {
        let (_store, mut ks, clock) = keyed::<u32>("ttl", 0..3);
        let ttl = Duration::from_millis(50);
        let v = ks
            .register_value::<u32>(StateDescriptor::new("v").with_ttl(ttl))
            .unwrap();
        let m = ks
            .register_map::<u8, u8>(StateDescriptor::new("m").with_ttl(ttl))
            .unwrap();
        let keep = ks
            .register_value::<u32>(StateDescriptor::new("keep"))
            .unwrap();
        for k in 0..10u32 {
            ks.value(v, k % 2, &k).set(k).unwrap();
            ks.value(keep, k % 2, &k).set(k).unwrap();
        }
        ks.map(m, 2, &1).insert(1, 1).unwrap();
        ks.map(m, 2, &1).insert(2, 2).unwrap();
        ks.flush().unwrap();
        ks.evict_clean();
        assert_eq!(ks.cached_entries(), 0);
        clock.advance(50);
        ks.set_purge_per_flush(0);
        assert_eq!(ks.flush().unwrap().purged, 0);
        ks.set_purge_per_flush(4);
        let mut total = 0;
        for _ in 0..4 {
            let purged = ks.flush().unwrap().purged;
            assert!(purged <= 4, "{purged}");
            total += purged;
        }
        assert_eq!(total, 12);
        assert_eq!(ks.flush().unwrap().purged, 0);
        // Only the TTL states lost entries; the rest is intact.
        let stored: usize = (0..3).map(|p| raw_entries(&ks, p).len()).sum();
        assert_eq!(stored, 10);
        assert_eq!(ks.value(keep, 1, &7).value().unwrap(), Some(7));
        assert_eq!(ks.value(v, 1, &7).value().unwrap(), None);
    }

    #[test]
    fn purge_expired_sweeps_everything_and_spares_live_entries() {
        let (_store, mut ks, clock) = keyed::<u32>("ttl", 0..2);
        let v = ks
            .register_value::<u32>(StateDescriptor::new("v").with_ttl(Duration::from_millis(10)))
            .unwrap();
        ks.set_purge_per_flush(0);
        for k in 0..6u32 {
            ks.value(v, k % 2, &k).set(k).unwrap();
        }
        ks.flush().unwrap();
        ks.evict_clean();
        clock.advance(5);
        ks.value(v, 0, &0).set(100).unwrap(); // refreshed: lives until 1015
        ks.flush().unwrap();
        clock.advance(5);
        assert_eq!(ks.purge_expired().unwrap(), 5);
        assert_eq!(ks.purge_expired().unwrap(), 0);
        assert_eq!(raw_entries(&ks, 0).len() + raw_entries(&ks, 1).len(), 1);
        ks.evict_clean();
        assert_eq!(ks.value(v, 0, &0).value().unwrap(), Some(100));
    }
}
