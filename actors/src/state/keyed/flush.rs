//! Flushing: writing a keyed state's dirty entries, deletes, expiries and timers to
//! sled in bounded, key-ordered batches, and recording in the delta logs what the
//! last capture did not see.

use crate::state::codec;
use crate::state::error::StateError;
use crate::state::StateKey;
use serde::Serialize;

use super::{KeyedState, StateMeta};

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

/// Most writes and deletes a flush hands to sled in one batch.
///
/// sled 0.34 holds a whole batch in memory several times over while applying it (one
/// batch of 200,000 small writes peaked above 1 GB), so a large flush is applied as a
/// sequence of bounded batches. The size was measured on W1's final flush of 100,000
/// keys: peak RSS 91 MB with batches of 64, 95 MB with 128, 145-199 MB with 1,024 and
/// 430 MB with 16,384, with no loss of speed for the small ones.
pub const FLUSH_CHUNK: usize = 128;

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

impl<K: StateKey> KeyedState<K> {
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
    /// This does not fsync; call [`StateStore::flush`](crate::state::StateStore::flush) for
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
}
