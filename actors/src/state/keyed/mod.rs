//! [`KeyedState`]: the state of one stage for a range of key partitions, with its
//! write-back cache.
//!
//! This module holds the type, how it is opened and what it owns; its work is split
//! by concern: `registry` (the registered state descriptors and their identity),
//! `cache` (the typed caches, the accessors that open them, and keeping the cache
//! within its size), `flush` (writing what changed to sled), `capture` (encoding
//! what changed since the previous capture, for snapshots), `ttl` (purging expired
//! entries stored in sled) and `timer_service` (registering and firing timers).

mod cache;
mod capture;
mod flush;
mod registry;
mod timer_service;
mod ttl;

pub(crate) use cache::{Access, ErasedCache, TO_BOTH, TO_DELTA, TO_SLED};
pub(crate) use capture::DeltaCtx;
pub(crate) use flush::FlushCtx;
pub use flush::{FlushStats, FLUSH_CHUNK};
pub(crate) use registry::StateMeta;
pub(crate) use ttl::expired_at;
pub use ttl::DEFAULT_PURGE_PER_FLUSH;

use crate::state::codec;
use crate::state::delta::DeltaLog;
use crate::state::error::StateError;
use crate::state::timers::Timers;
use crate::state::{Clock, StateKey};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use registry::Registration;
use ttl::PurgeCursor;

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

#[cfg(test)]
mod tests;
