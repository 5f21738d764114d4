//! Delta capture: encoding, per owned key partition, what changed since the
//! previous capture (for snapshots), from the caches and the delta logs, with full
//! images of the partitions whose log was dropped, and the bound on the delta logs.

use crate::state::codec;
use crate::state::delta::{DeltaLog, DeltaWriter, PointRecords};
use crate::state::error::StateError;
use crate::state::StateKey;
use serde::Serialize;

use super::{FlushCtx, FlushStats, KeyedState, StateMeta};

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

impl<K: StateKey> KeyedState<K> {
    /// Captures, per owned key partition, everything that changed in this state since
    /// the previous capture (or since the state was opened), as an encoded delta
    /// ([`delta`](crate::state::delta)); key partitions without changes are left out. Writes
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
    pub(super) fn log_of(&mut self, pi: usize) -> Option<&mut DeltaLog> {
        match self.delta_reset.get(pi) {
            Some(false) => self.delta_log.get_mut(pi),
            _ => None,
        }
    }

    /// Keeps the delta logs within [`set_delta_log_limit`](Self::set_delta_log_limit):
    /// when over, drops the largest logs (down to half the limit), and marks their
    /// partitions for a full image at the next capture. A job that never captures
    /// thus stops logging once all partitions are marked.
    pub(super) fn bound_delta_log(&mut self) {
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
    /// [`StoreConfig::cache_entries`](crate::state::StoreConfig). Past it, the largest logs
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
}
