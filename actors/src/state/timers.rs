//! Timers: event-time and processing-time timers per key, like Flink's `TimerService`.
//!
//! A timer is `(domain, key partition, key, timestamp)`; registering it twice is one
//! timer. Timers are keyed state of the stage: they belong to a key partition, are
//! written to the stage's tree at [`KeyedState::flush`](super::KeyedState::flush)
//! under the reserved state id [`codec::TIMER_STATE_ID`] (layout in
//! [`codec::write_timer_key`], value an empty-payload value record), and are loaded
//! back, for the owned key partitions only, when the keyed state is opened.
//!
//! Unlike the caches of other state, every pending timer of the owned partitions is in
//! memory, because firing needs them in timestamp order across keys: per domain, one
//! ordered set of `(timestamp, key partition, bincode(key))`. The key is kept encoded
//! (the bytes of the sled key, and the order timers fire in) and decoded when the timer
//! fires. Timers are never evicted.

use super::codec;
use super::error::StateError;
use super::keyed::{DeltaCtx, FlushCtx, StateMeta};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::BTreeSet;
use std::ops::Range;

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerDomain {
    /// Fires when the watermark passes its timestamp.
    EventTime,
    /// Fires when processing time passes its timestamp.
    ProcessingTime,
}

impl TimerDomain {
    /// Both domains, in tag order.
    pub const ALL: [TimerDomain; 2] = [TimerDomain::EventTime, TimerDomain::ProcessingTime];

    /// The domain's byte in a timer's sled key: 0 for event time, 1 for processing
    /// time.
    pub fn tag(self) -> u8 {
        match self {
            TimerDomain::EventTime => 0,
            TimerDomain::ProcessingTime => 1,
        }
    }

    /// The domain of a sled key's domain byte, `None` for an unknown byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(TimerDomain::EventTime),
            1 => Some(TimerDomain::ProcessingTime),
            _ => None,
        }
    }

    /// Index of the domain's queue.
    #[inline]
    fn index(self) -> usize {
        self.tag() as usize
    }
}

/// A timer that is due: when, and for which key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredTimer<K> {
    /// The clock the timer followed.
    pub domain: TimerDomain,
    /// The timestamp it was registered for.
    pub timestamp: i64,
    /// The key partition of the key.
    pub kp: u32,
    /// The key it was registered for.
    pub key: K,
}

/// One pending timer of a domain. The derived order (timestamp, key partition, key
/// bytes) is the firing order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Queued {
    /// When it fires.
    timestamp: i64,
    /// The key partition.
    kp: u32,
    /// bincode of the key.
    key: Box<[u8]>,
}

/// A timer seen as `(timestamp, kp, key bytes)`, so the queues can be probed with a
/// borrowed key (no allocation for a duplicate registration or a delete).
trait TimerRef {
    /// The fields, in firing order.
    fn parts(&self) -> (i64, u32, &[u8]);
}

impl TimerRef for Queued {
    fn parts(&self) -> (i64, u32, &[u8]) {
        (self.timestamp, self.kp, &self.key)
    }
}

impl TimerRef for (i64, u32, &[u8]) {
    fn parts(&self) -> (i64, u32, &[u8]) {
        *self
    }
}

impl<'a> Borrow<dyn TimerRef + 'a> for Queued {
    fn borrow(&self) -> &(dyn TimerRef + 'a) {
        self
    }
}

impl PartialEq for dyn TimerRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn TimerRef + '_ {}

impl PartialOrd for dyn TimerRef + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn TimerRef + '_ {
    // Must agree with the derived `Ord` of `Queued` (same fields, same order).
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// What the next flush (or capture) does with a timer's sled key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// The timer is pending in memory and (perhaps) not on disk: write it.
    Write,
    /// The timer fired or was deleted and is (perhaps) on disk: delete it.
    Delete,
}

/// How a changed timer differs from sled and from the last captured delta.
///
/// Timers are never evicted, so unlike cached entries they need no delta log: a
/// change stays here until both the next flush and the next capture have taken it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Changes {
    /// What the next flush must do, if anything.
    sled: Option<Pending>,
    /// What the next capture must encode, if anything.
    delta: Option<Pending>,
}

/// The timers of one [`KeyedState`](super::KeyedState): every pending timer of the
/// owned key partitions, and what changed since the last flush.
pub(crate) struct Timers {
    /// The reserved state's identity, for sled keys and error messages.
    meta: StateMeta,
    /// Pending timers per domain ([`TimerDomain::index`]), in firing order.
    queues: [BTreeSet<Queued>; 2],
    /// Timers whose sled entry or captured state differs from memory. Invariant
    /// (for `sled`, outside `in_doubt`): a `None` side, or absence here, means that
    /// side holds exactly the in-memory state of the timer.
    pending: FxHashMap<(TimerDomain, Queued), Changes>,
    /// A flush with pending timer changes failed, so sled may hold any prefix of it:
    /// until the next successful flush, a change that undoes a pending one is staged
    /// as well instead of cancelling it.
    in_doubt: bool,
}

impl Timers {
    /// No timers.
    pub(crate) fn new() -> Self {
        Self {
            meta: StateMeta {
                name: codec::TIMER_STATE_NAME.to_owned(),
                id: codec::TIMER_STATE_ID,
                ttl_ms: None,
            },
            queues: [BTreeSet::new(), BTreeSet::new()],
            pending: FxHashMap::default(),
            in_doubt: false,
        }
    }

    /// Loads the stored timers of the owned key partitions that may hold data
    /// (`partition_on_disk[i]` for key partition `owned.start + i`): one prefix scan
    /// per such partition, none for the others. Keys are checked to decode as `K`, so
    /// a key type change is reported when the state is opened.
    pub(crate) fn load<K: DeserializeOwned>(
        tree: &sled::Tree,
        stage: &str,
        owned: &Range<u32>,
        partition_on_disk: &[bool],
    ) -> Result<Self, StateError> {
        let mut timers = Self::new();
        for (pi, _) in partition_on_disk.iter().enumerate().filter(|(_, d)| **d) {
            let kp = owned.start + pi as u32;
            let prefix = codec::state_prefix(kp, codec::TIMER_STATE_ID);
            for item in tree.scan_prefix(prefix) {
                let (sled_key, record) = item.map_err(|e| {
                    timers
                        .meta
                        .sled_error(stage, kp, "loading the timers of", e)
                })?;
                let parts =
                    codec::parse_timer_key(&sled_key).map_err(|reason| StateError::Corrupt {
                        what: format!("sled key of {}", timers.meta.what(stage, kp)),
                        reason,
                    })?;
                codec::decode_value::<()>(&record)
                    .map_err(|e| timers.meta.codec_error(stage, kp, e))?;
                codec::decode_exact::<K>(parts.key)
                    .map_err(|e| timers.meta.decode_error(stage, kp, e))?;
                timers.queues[parts.domain.index()].insert(Queued {
                    timestamp: parts.timestamp,
                    kp,
                    key: parts.key.into(),
                });
            }
        }
        Ok(timers)
    }

    /// The reserved state's identity (for error messages).
    pub(crate) fn meta(&self) -> &StateMeta {
        &self.meta
    }

    /// Records that `timer` of `domain` now needs `op` at the next flush and the next
    /// capture (one hash lookup, as before captures existed).
    fn note(&mut self, domain: TimerDomain, timer: Queued, op: Pending) {
        match self.pending.entry((domain, timer)) {
            Entry::Vacant(e) => {
                e.insert(Changes {
                    sled: Some(op),
                    delta: Some(op),
                });
            }
            Entry::Occupied(mut e) => {
                // On each side, the timer is in memory iff the pending op is a write,
                // and `op` flips that, so a pending op is the opposite one: `op`
                // returns the timer to what that side holds. Unless a failed flush may
                // have applied the pending sled op already.
                let in_doubt = self.in_doubt;
                let c = e.get_mut();
                debug_assert!(c.sled != Some(op) && c.delta != Some(op));
                c.sled = match c.sled {
                    Some(_) if !in_doubt => None,
                    _ => Some(op),
                };
                c.delta = match c.delta {
                    Some(_) => None,
                    None => Some(op),
                };
                if c.sled.is_none() && c.delta.is_none() {
                    e.remove();
                }
            }
        }
    }

    /// Adds a timer (`key` is the bincode of the record key); no-op if present.
    pub(crate) fn register(&mut self, domain: TimerDomain, kp: u32, key: &[u8], timestamp: i64) {
        let probe = (timestamp, kp, key);
        let queue = &mut self.queues[domain.index()];
        if queue.contains(&probe as &dyn TimerRef) {
            return;
        }
        let timer = Queued {
            timestamp,
            kp,
            key: key.into(),
        };
        queue.insert(timer.clone());
        self.note(domain, timer, Pending::Write);
    }

    /// Removes a timer; no-op if absent.
    pub(crate) fn delete(&mut self, domain: TimerDomain, kp: u32, key: &[u8], timestamp: i64) {
        let probe = (timestamp, kp, key);
        if let Some(timer) = self.queues[domain.index()].take(&probe as &dyn TimerRef) {
            self.note(domain, timer, Pending::Delete);
        }
    }

    /// The earliest timestamp of `domain`.
    #[inline]
    pub(crate) fn next(&self, domain: TimerDomain) -> Option<i64> {
        self.queues[domain.index()].first().map(|t| t.timestamp)
    }

    /// Removes and returns the earliest timer of `domain` due at `up_to`. A key that
    /// does not decode is reported and stays queued.
    pub(crate) fn pop<K: DeserializeOwned>(
        &mut self,
        domain: TimerDomain,
        up_to: i64,
        stage: &str,
    ) -> Result<Option<FiredTimer<K>>, StateError> {
        let queue = &mut self.queues[domain.index()];
        let Some(first) = queue.first() else {
            return Ok(None);
        };
        if first.timestamp > up_to {
            return Ok(None);
        }
        let key: K = codec::decode_exact(&first.key)
            .map_err(|e| self.meta.decode_error(stage, first.kp, e))?;
        let Some(timer) = queue.pop_first() else {
            unreachable!("the queue had a first timer a moment ago");
        };
        let fired = FiredTimer {
            domain,
            timestamp: timer.timestamp,
            kp: timer.kp,
            key,
        };
        self.note(domain, timer, Pending::Delete);
        Ok(Some(fired))
    }

    /// Pending timers of both domains.
    pub(crate) fn len(&self) -> usize {
        self.queues.iter().map(BTreeSet::len).sum()
    }

    /// Timer changes not yet flushed.
    #[cfg(test)]
    pub(crate) fn unflushed(&self) -> usize {
        self.pending.values().filter(|c| c.sled.is_some()).count()
    }

    /// Timer changes not yet captured.
    #[cfg(test)]
    pub(crate) fn uncaptured(&self) -> usize {
        self.pending.values().filter(|c| c.delta.is_some()).count()
    }

    /// Stages the writes and deletes of changed timers into `ctx`, without changing
    /// anything here, so a failed flush can be retried. Nothing is logged for the
    /// next capture: it takes timer changes from here.
    pub(crate) fn stage_flush(&self, ctx: &mut FlushCtx<'_>) -> Result<(), StateError> {
        for ((domain, timer), c) in &self.pending {
            let Some(op) = c.sled else { continue };
            codec::write_timer_key(ctx.key_buf, timer.kp, *domain, timer.timestamp, &timer.key);
            match op {
                Pending::Write => ctx.put(&self.meta, timer.kp, &(), 0, false)?,
                Pending::Delete => ctx.delete(timer.kp, false),
            }
        }
        Ok(())
    }

    /// Encodes the timer changes since the last capture into `ctx`, without changing
    /// anything here.
    pub(crate) fn stage_delta(&self, ctx: &mut DeltaCtx<'_>) -> Result<(), StateError> {
        let mut record_ready = false;
        for ((domain, timer), c) in &self.pending {
            let Some(op) = c.delta else { continue };
            codec::write_timer_key(ctx.key_buf, timer.kp, *domain, timer.timestamp, &timer.key);
            match op {
                Pending::Write => {
                    if !record_ready {
                        codec::encode_value(&(), 0, ctx.val_buf)
                            .map_err(|e| self.meta.encode_error(ctx.stage, timer.kp, e))?;
                        record_ready = true;
                    }
                    ctx.put_record(timer.kp);
                }
                Pending::Delete => ctx.delete(timer.kp),
            }
        }
        Ok(())
    }

    /// After a capture staged by [`stage_delta`](Self::stage_delta): the image now
    /// matches memory.
    pub(crate) fn commit_delta(&mut self) {
        self.pending.retain(|_, c| {
            c.delta = None;
            c.sled.is_some()
        });
    }

    /// Called just before the staged operations are applied: if they include timer
    /// changes and the apply fails part way, sled's state of those timers is unknown.
    pub(crate) fn begin_apply(&mut self) {
        if self.pending.values().any(|c| c.sled.is_some()) {
            self.in_doubt = true;
        }
    }

    /// After the staged operations were applied: sled now matches memory. Sets
    /// `partition_on_disk[kp - first_kp]` for partitions that received timers.
    pub(crate) fn commit_flush(&mut self, first_kp: u32, partition_on_disk: &mut [bool]) {
        self.pending.retain(|(_, timer), c| {
            if c.sled == Some(Pending::Write) {
                if let Some(flag) = partition_on_disk.get_mut((timer.kp - first_kp) as usize) {
                    *flag = true;
                }
            }
            c.sled = None;
            c.delta.is_some()
        });
        self.in_doubt = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use super::{Changes, Pending, Queued, Timers};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    const ET: TimerDomain = TimerDomain::EventTime;
    const PT: TimerDomain = TimerDomain::ProcessingTime;

    /// Pops every timer of `domain` due at `up_to` as `(timestamp, kp, key)`.
    fn drain<K: StateKey>(
        ks: &mut KeyedState<K>,
        domain: TimerDomain,
        up_to: i64,
    ) -> Vec<(i64, u32, K)> {
        let mut out = Vec::new();
        while let Some(t) = ks.pop_timer(domain, up_to).unwrap() {
            assert_eq!(t.domain, domain);
            assert!(t.timestamp <= up_to);
            out.push((t.timestamp, t.kp, t.key));
        }
        out
    }

    /// The timer entries stored in sled for key partition `kp`.
    fn stored_timers<K: StateKey>(ks: &KeyedState<K>, kp: u32) -> Vec<(TimerDomain, i64, Vec<u8>)> {
        ks.tree()
            .scan_prefix(codec::state_prefix(kp, codec::TIMER_STATE_ID))
            .map(|item| {
                let (k, v) = item.unwrap();
                assert!(codec::decode_value::<()>(&v).is_ok());
                let p = codec::parse_timer_key(&k).unwrap();
                assert_eq!(p.kp, kp);
                (p.domain, p.timestamp, p.key.to_vec())
            })
            .collect()
    }

    #[test]
    fn timers_pop_in_timestamp_order_each_once() {
        let (_store, mut ks, _clock) = keyed::<String>("t", 0..4);
        let k = |s: &str| s.to_string();
        for (ts, kp, key) in [
            (30, 1, "c"),
            (10, 2, "a"),
            (20, 0, "b"),
            (10, 1, "z"),
            (10, 1, "a"),
        ] {
            ks.register_timer(ET, kp, &k(key), ts).unwrap();
            // Registering again is a no-op.
            ks.register_timer(ET, kp, &k(key), ts).unwrap();
        }
        assert_eq!(ks.timer_count(), 5);
        assert_eq!(ks.next_timer(ET), Some(10));
        assert_eq!(ks.next_timer(PT), None);
        assert_eq!(
            drain(&mut ks, ET, i64::MAX),
            vec![
                (10, 1, k("a")),
                (10, 1, k("z")),
                (10, 2, k("a")),
                (20, 0, k("b")),
                (30, 1, k("c")),
            ]
        );
        assert_eq!(ks.timer_count(), 0);
        assert_eq!(ks.next_timer(ET), None);
        assert_eq!(ks.pop_timer(ET, i64::MAX).unwrap(), None);
    }

    #[test]
    fn up_to_is_inclusive_and_respected() {
        let (_store, mut ks, _clock) = keyed::<u32>("t", 0..1);
        for ts in [5, 1, 3, 4, 2] {
            ks.register_timer(ET, 0, &(ts as u32), ts).unwrap();
        }
        assert_eq!(ks.pop_timer(ET, 0).unwrap(), None);
        assert_eq!(drain(&mut ks, ET, 3), vec![(1, 0, 1), (2, 0, 2), (3, 0, 3)]);
        assert_eq!(ks.next_timer(ET), Some(4));
        assert_eq!(ks.pop_timer(ET, 3).unwrap(), None);
        assert_eq!(
            ks.pop_timer(ET, 4).unwrap(),
            Some(FiredTimer {
                domain: ET,
                timestamp: 4,
                kp: 0,
                key: 4
            })
        );
        assert_eq!(ks.timer_count(), 1);
    }

    #[test]
    fn delete_removes_a_timer_and_ignores_absent_ones() {
        let (_store, mut ks, _clock) = keyed::<u32>("t", 0..2);
        ks.register_timer(ET, 0, &1, 10).unwrap();
        ks.register_timer(ET, 0, &2, 10).unwrap();
        ks.register_timer(ET, 1, &1, 20).unwrap();
        ks.register_timer(PT, 0, &1, 10).unwrap();
        ks.delete_timer(ET, 0, &1, 10).unwrap();
        // Absent: other timestamp, key, partition, domain.
        ks.delete_timer(ET, 0, &2, 11).unwrap();
        ks.delete_timer(ET, 0, &3, 10).unwrap();
        ks.delete_timer(ET, 1, &2, 10).unwrap();
        ks.delete_timer(PT, 0, &2, 10).unwrap();
        ks.delete_timer(ET, 0, &1, 10).unwrap();
        assert_eq!(ks.timer_count(), 3);
        assert_eq!(drain(&mut ks, ET, 100), vec![(10, 0, 2), (20, 1, 1)]);
        assert_eq!(drain(&mut ks, PT, 100), vec![(10, 0, 1)]);
    }

    #[test]
    fn timers_registered_while_firing_are_seen() {
        let (_store, mut ks, _clock) = keyed::<u32>("t", 0..1);
        ks.register_timer(ET, 0, &1, 10).unwrap();
        ks.register_timer(ET, 0, &2, 50).unwrap();
        let mut fired = Vec::new();
        while let Some(t) = ks.pop_timer(ET, 40).unwrap() {
            fired.push((t.timestamp, t.key));
            if t.key == 1 {
                // A handler registering a due timer, one at the same time for another
                // key, its own timer again (fires again: the old one is gone), and a
                // timer beyond the bound.
                ks.register_timer(ET, 0, &3, 20).unwrap();
                ks.register_timer(ET, 0, &4, 10).unwrap();
                ks.register_timer(ET, 0, &1, 10).unwrap();
                ks.register_timer(ET, 0, &5, 41).unwrap();
                ks.delete_timer(ET, 0, &1, 10).unwrap();
            }
        }
        assert_eq!(fired, vec![(10, 1), (10, 4), (20, 3)]);
        assert_eq!(ks.next_timer(ET), Some(41));
    }

    #[test]
    fn domains_are_separate() {
        let (_store, mut ks, _clock) = keyed::<u32>("t", 0..1);
        ks.register_timer(ET, 0, &1, 10).unwrap();
        ks.register_timer(PT, 0, &1, 10).unwrap();
        ks.register_timer(PT, 0, &2, 5).unwrap();
        assert_eq!(ks.timer_count(), 3);
        assert_eq!(ks.next_timer(ET), Some(10));
        assert_eq!(ks.next_timer(PT), Some(5));
        ks.delete_timer(ET, 0, &2, 5).unwrap();
        assert_eq!(drain(&mut ks, PT, 100), vec![(5, 0, 2), (10, 0, 1)]);
        assert_eq!(ks.timer_count(), 1);
        assert_eq!(drain(&mut ks, ET, 100), vec![(10, 0, 1)]);
    }

    #[test]
    fn negative_timestamps_order_numerically_in_memory_and_on_disk() {
        let (_store, mut ks, _clock) = keyed::<u8>("t", 0..1);
        let stamps = [0, i64::MAX, -1, i64::MIN, 1, -1000, i64::MIN + 1];
        for (i, ts) in stamps.iter().enumerate() {
            ks.register_timer(ET, 0, &(i as u8), *ts).unwrap();
        }
        ks.flush().unwrap();
        let mut sorted = stamps.to_vec();
        sorted.sort();
        let on_disk: Vec<i64> = stored_timers(&ks, 0).iter().map(|t| t.1).collect();
        assert_eq!(on_disk, sorted);
        assert_eq!(ks.next_timer(ET), Some(i64::MIN));
        let fired: Vec<i64> = drain(&mut ks, ET, -1).iter().map(|t| t.0).collect();
        assert_eq!(fired, vec![i64::MIN, i64::MIN + 1, -1000, -1]);
        let fired: Vec<i64> = drain(&mut ks, ET, i64::MAX).iter().map(|t| t.0).collect();
        assert_eq!(fired, vec![0, 1, i64::MAX]);
    }

    #[test]
    fn timers_survive_flush_and_reopen_and_fired_ones_stay_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let clock = Arc::new(ManualClock::new(0));
        let k = |s: &str| s.to_string();
        {
            let store = StateStore::open(&path, small_config()).unwrap();
            let mut ks = store.keyed::<String>("win", 0..4, clock.clone()).unwrap();
            for (ts, kp, key) in [(300, 3, "c"), (-5, 0, "neg"), (100, 1, "a"), (200, 2, "b")] {
                ks.register_timer(ET, kp, &k(key), ts).unwrap();
            }
            ks.register_timer(PT, 1, &k("p"), 7).unwrap();
            ks.register_timer(PT, 1, &k("gone"), 8).unwrap();
            let stats = ks.flush().unwrap();
            assert_eq!(stats.written, 6);
            // Fire one, delete one, add one, and flush that too.
            assert_eq!(ks.pop_timer(ET, -5).unwrap().unwrap().key, "neg");
            ks.delete_timer(PT, 1, &k("gone"), 8).unwrap();
            ks.register_timer(ET, 2, &k("late"), 150).unwrap();
            let stats = ks.flush().unwrap();
            assert_eq!((stats.written, stats.deleted), (1, 2));
            // Changes after the last flush are lost on purpose.
            ks.register_timer(ET, 0, &k("unflushed"), 1).unwrap();
            assert_eq!(ks.pop_timer(ET, 100).unwrap().unwrap().key, "unflushed");
            assert_eq!(ks.pop_timer(ET, 100).unwrap().unwrap().key, "a");
            store.flush().unwrap();
        }
        let store = StateStore::open(&path, small_config()).unwrap();
        let mut ks = store.keyed::<String>("win", 0..4, clock).unwrap();
        assert_eq!(ks.timer_count(), 5);
        assert_eq!(ks.next_timer(ET), Some(100));
        assert_eq!(
            drain(&mut ks, ET, i64::MAX),
            vec![
                (100, 1, k("a")),
                (150, 2, k("late")),
                (200, 2, k("b")),
                (300, 3, k("c"))
            ]
        );
        assert_eq!(drain(&mut ks, PT, i64::MAX), vec![(7, 1, k("p"))]);
        // Fired timers are deleted from disk by the next flush.
        let stats = ks.flush().unwrap();
        assert_eq!((stats.written, stats.deleted), (0, 5));
        assert!((0..4).all(|kp| stored_timers(&ks, kp).is_empty()));
    }

    #[test]
    fn register_then_delete_before_a_flush_touches_nothing() {
        let (_store, mut ks, _clock) = keyed::<u32>("t", 0..1);
        ks.register_timer(ET, 0, &1, 1).unwrap();
        ks.delete_timer(ET, 0, &1, 1).unwrap();
        ks.register_timer(ET, 0, &2, 2).unwrap();
        assert_eq!(ks.pop_timer(ET, 2).unwrap().unwrap().key, 2);
        assert_eq!(ks.flush().unwrap(), FlushStats::default());
        // A stored timer deleted and registered again is left alone too.
        ks.register_timer(ET, 0, &3, 3).unwrap();
        let s = ks.flush().unwrap();
        // Key: 8-byte prefix + domain + timestamp + 4-byte key; value: 13-byte header.
        assert_eq!((s.written, s.deleted, s.bytes), (1, 0, 8 + 1 + 8 + 4 + 13));
        ks.delete_timer(ET, 0, &3, 3).unwrap();
        ks.register_timer(ET, 0, &3, 3).unwrap();
        assert_eq!(ks.flush().unwrap(), FlushStats::default());
        assert_eq!(stored_timers(&ks, 0).len(), 1);
    }

    #[test]
    fn a_failed_flush_makes_undoing_changes_explicit() {
        let mut t = Timers::new();
        t.register(ET, 0, &[1], 5);
        t.begin_apply(); // ... and the apply fails: the write may or may not be on disk.
        t.delete(ET, 0, &[1], 5);
        let timer = Queued {
            timestamp: 5,
            kp: 0,
            key: Box::new([1]),
        };
        // The capture side cancels (it is never in doubt); the sled side does not.
        assert_eq!(
            t.pending.get(&(ET, timer.clone())),
            Some(&Changes {
                sled: Some(Pending::Delete),
                delta: None
            })
        );
        t.register(ET, 0, &[1], 5);
        assert_eq!(
            t.pending.get(&(ET, timer.clone())),
            Some(&Changes {
                sled: Some(Pending::Write),
                delta: Some(Pending::Write)
            })
        );
        let mut on_disk = [false];
        t.commit_flush(0, &mut on_disk);
        assert!(on_disk[0] && t.unflushed() == 0 && !t.in_doubt);
        assert_eq!(t.uncaptured(), 1);
        t.commit_delta();
        assert!(t.pending.is_empty());
        // Once a flush succeeded, undoing changes cancel again.
        t.delete(ET, 0, &[1], 5);
        t.register(ET, 0, &[1], 5);
        assert_eq!(t.unflushed(), 0);
        assert_eq!(t.uncaptured(), 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn only_owned_partitions_are_loaded() {
        let store = StateStore::temporary(small_config()).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let mut all = store.keyed::<u32>("s", 0..4, clock.clone()).unwrap();
        for kp in 0..4 {
            all.register_timer(ET, kp, &kp, i64::from(kp)).unwrap();
            all.register_timer(PT, kp, &kp, i64::from(kp)).unwrap();
        }
        all.flush().unwrap();
        drop(all);
        let mut mid = store.keyed::<u32>("s", 1..3, clock.clone()).unwrap();
        assert_eq!(mid.timer_count(), 4);
        assert_eq!(drain(&mut mid, ET, i64::MAX), vec![(1, 1, 1), (2, 2, 2)]);
        assert_eq!(drain(&mut mid, PT, i64::MAX), vec![(1, 1, 1), (2, 2, 2)]);
        mid.flush().unwrap();
        drop(mid);
        // The partitions it did not own kept their timers.
        let mut all = store.keyed::<u32>("s", 0..4, clock.clone()).unwrap();
        assert_eq!(drain(&mut all, ET, i64::MAX), vec![(0, 0, 0), (3, 3, 3)]);
        // Another stage has none.
        assert_eq!(
            store
                .keyed::<u32>("other", 0..4, clock)
                .unwrap()
                .timer_count(),
            0
        );
    }

    #[test]
    fn timers_and_other_state_share_partitions() {
        let (store, mut ks, clock) = keyed::<u32>("s", 0..2);
        ks.register_timer(ET, 1, &7, 70).unwrap();
        ks.flush().unwrap();
        drop(ks);
        let mut ks = store.keyed::<u32>("s", 0..2, Arc::new(clock)).unwrap();
        // Partition 1 has data on disk (the timer) but no value entries.
        let v = ks.register_value::<u64>(StateDescriptor::new("v")).unwrap();
        assert_eq!(ks.value(v, 1, &7).value().unwrap(), None);
        ks.value(v, 1, &7).set(1).unwrap();
        ks.flush().unwrap();
        assert_eq!(raw_entries(&ks, 1).len(), 2);
        assert_eq!(ks.pop_timer(ET, 70).unwrap().unwrap().key, 7);
        ks.flush().unwrap();
        assert_eq!(raw_entries(&ks, 1).len(), 1);
        assert_eq!(ks.value(v, 1, &7).value().unwrap(), Some(1));
    }

    #[test]
    fn maintain_never_evicts_timers() {
        let store = StateStore::temporary(StoreConfig {
            cache_entries: 10,
            sled_cache_bytes: 1 << 20,
        })
        .unwrap();
        let mut ks = store
            .keyed::<u64>("s", 0..2, Arc::new(ManualClock::new(0)))
            .unwrap();
        let v = ks.register_value::<u64>(StateDescriptor::new("v")).unwrap();
        for k in 0..100u64 {
            let kp = (k % 2) as u32;
            ks.value(v, kp, &k).set(k).unwrap();
            ks.register_timer(ET, kp, &k, 1000 - k as i64).unwrap();
            ks.maintain().unwrap();
        }
        assert!(ks.cached_entries() <= 10);
        ks.evict_clean();
        assert_eq!(ks.timer_count(), 100);
        assert_eq!(ks.pop_timer(ET, i64::MAX).unwrap().unwrap().key, 99);
    }

    #[test]
    fn reserved_name_is_a_descriptor_conflict() {
        let (_store, mut ks, _clock) = keyed::<u32>("s", 0..1);
        let err = ks
            .register_value::<u8>(StateDescriptor::new(codec::TIMER_STATE_NAME))
            .unwrap_err();
        assert!(
            matches!(err, StateError::DescriptorConflict { ref name, ref reason, .. }
                if name == "__weir_timers" && reason.contains("timers")),
            "{err}"
        );
        assert!(matches!(
            ks.register_map::<u8, u8>(StateDescriptor::new("__weir_timers"))
                .unwrap_err(),
            StateError::DescriptorConflict { .. }
        ));
    }

    #[test]
    fn corrupt_or_foreign_timer_records_fail_the_open() {
        let (store, mut ks, clock) = keyed::<String>("s", 0..1);
        ks.register_timer(ET, 0, &"k".to_string(), 1).unwrap();
        ks.flush().unwrap();
        let (key, value) = raw_entries(&ks, 0).pop().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(clock);

        let mut bad = value.to_vec();
        bad[5] ^= 1;
        ks.tree().insert(&key, bad).unwrap();
        let err = store.keyed::<String>("s", 0..1, clock.clone()).unwrap_err();
        assert!(
            matches!(err, StateError::Corrupt { ref what, .. } if what.contains("__weir_timers")),
            "{err}"
        );
        ks.tree().insert(&key, value).unwrap();

        // Intact, but the key is not a u8.
        let err = store.keyed::<u8>("s", 0..1, clock.clone()).unwrap_err();
        assert!(
            matches!(err, StateError::Decode { ref name, kp: 0, .. } if name == "__weir_timers"),
            "{err}"
        );

        let mut bad_key = key.to_vec();
        bad_key[8] = 9;
        ks.tree().insert(bad_key, &[][..]).unwrap();
        let err = store.keyed::<String>("s", 0..1, clock).unwrap_err();
        assert!(err.to_string().contains("domain tag 9"), "{err}");
    }

    #[test]
    #[should_panic(expected = "key partition 2 is not owned")]
    fn timers_of_foreign_partitions_panic() {
        let (_store, mut ks, _clock) = keyed::<u32>("s", 0..2);
        let _ = ks.register_timer(ET, 2, &1, 1);
    }

    /// One step of the model test.
    #[derive(Clone, Debug)]
    enum Op {
        Register(bool, u32, u16, i64),
        Delete(bool, u32, u16, i64),
        Pop(bool, i64),
        Flush,
        /// Drop the keyed state and open it again: unflushed changes are lost.
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys and timestamps, so duplicates, deletes of present timers and ties
        // are common; u16 keys encode little-endian, so byte order is not numeric.
        let ts = -8i64..8;
        prop_oneof![
            6 => (any::<bool>(), 0u32..3, 0u16..300, ts.clone()).prop_map(|(d, kp, k, t)| Op::Register(d, kp, k, t)),
            3 => (any::<bool>(), 0u32..3, 0u16..300, ts.clone()).prop_map(|(d, kp, k, t)| Op::Delete(d, kp, k, t)),
            4 => (any::<bool>(), ts).prop_map(|(d, t)| Op::Pop(d, t)),
            1 => Just(Op::Flush),
            1 => Just(Op::Reopen),
        ]
    }

    fn domain(event: bool) -> TimerDomain {
        if event {
            ET
        } else {
            PT
        }
    }

    type Model = [BTreeSet<(i64, u32, Vec<u8>)>; 2];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn behaves_like_an_ordered_set(ops in proptest::collection::vec(op(), 1..120)) {
            let store = StateStore::temporary(small_config()).unwrap();
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
            let mut ks = store.keyed::<u16>("m", 0..3, clock.clone()).unwrap();
            let mut model: Model = Default::default();
            let mut flushed: Model = Default::default();
            let enc = |k: u16| bincode::serialize(&k).unwrap();
            for op in ops {
                match op {
                    Op::Register(d, kp, k, t) => {
                        ks.register_timer(domain(d), kp, &k, t).unwrap();
                        model[domain(d).tag() as usize].insert((t, kp, enc(k)));
                    }
                    Op::Delete(d, kp, k, t) => {
                        ks.delete_timer(domain(d), kp, &k, t).unwrap();
                        model[domain(d).tag() as usize].remove(&(t, kp, enc(k)));
                    }
                    Op::Pop(d, up_to) => {
                        let q = &mut model[domain(d).tag() as usize];
                        let expected = match q.first() {
                            Some(first) if first.0 <= up_to => q.pop_first(),
                            _ => None,
                        };
                        let got = ks.pop_timer(domain(d), up_to).unwrap();
                        prop_assert_eq!(
                            got.map(|f| (f.timestamp, f.kp, enc(f.key))),
                            expected
                        );
                    }
                    Op::Flush => {
                        ks.flush().unwrap();
                        flushed = model.clone();
                    }
                    Op::Reopen => {
                        drop(ks);
                        ks = store.keyed::<u16>("m", 0..3, clock.clone()).unwrap();
                        model = flushed.clone();
                    }
                }
                for d in TimerDomain::ALL {
                    prop_assert_eq!(ks.next_timer(d), model[d.tag() as usize].first().map(|t| t.0));
                }
                prop_assert_eq!(ks.timer_count(), model[0].len() + model[1].len());
            }
            // What is on disk after a last flush is exactly the model.
            ks.flush().unwrap();
            let mut on_disk: Model = Default::default();
            for kp in 0..3 {
                for (d, t, k) in stored_timers(&ks, kp) {
                    on_disk[d.tag() as usize].insert((t, kp, k));
                }
            }
            prop_assert_eq!(on_disk, model);
        }
    }
}
