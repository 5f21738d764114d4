//! Time to live: when an entry has expired, and the purge of expired entries that
//! are stored in sled but not cached (incremental per flush, or a full sweep).

use crate::state::codec;
use crate::state::error::StateError;
use crate::state::StateKey;

use super::{KeyedState, FLUSH_CHUNK};

/// Default number of stored entries of TTL states examined per flush for expiry.
pub const DEFAULT_PURGE_PER_FLUSH: usize = 1024;

/// Where the incremental purge of expired on-disk entries resumes.
#[derive(Clone, Debug, Default)]
pub(super) struct PurgeCursor {
    /// Owned partition index.
    pi: usize,
    /// Position among the TTL states (registration order).
    ttl_pos: usize,
    /// Sled key to resume from within that (partition, state) prefix.
    resume: Option<Vec<u8>>,
}

/// Whether an entry stamped `expires_at` has expired at `now`.
#[inline]
pub(crate) fn expired_at(expires_at: u64, now: u64) -> bool {
    expires_at != 0 && expires_at <= now
}

impl<K: StateKey> KeyedState<K> {
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
    pub(super) fn purge_step(&mut self, budget: usize, now: u64) -> Result<u64, StateError> {
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
}
