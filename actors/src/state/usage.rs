//! How much keyed state each key partition of a stage holds on disk: entries and
//! bytes, counted by a scan of the stage's sled tree.
//!
//! sled keeps no per-tree or per-prefix count or size, so the only exact answer is a
//! scan. [`StateStore::stage_usage`] reads the tree with sled's lock-free iterator,
//! which runs beside the partition actors' reads and writes without blocking them;
//! callers run it off the record path (the node's state-metrics sampler, every
//! `metrics.state_interval_ms`). It sees what reached sled: entries still only in a
//! partition actor's write-back cache are not counted until it flushes.

use std::collections::BTreeMap;

use super::codec::{self, STATE_PREFIX_LEN, TIMER_STATE_ID};
use super::error::StateError;
use super::store::{tree_name, StateStore};

/// The stored state of one key partition of a stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionUsage {
    /// sled entries of user states: one per key of a value or list state, one per
    /// (key, map key) of a map state. Timers are not counted.
    pub entries: u64,
    /// Bytes of those entries' sled keys and values (value record headers included).
    pub bytes: u64,
}

impl PartitionUsage {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: PartitionUsage) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }
}

impl StateStore {
    /// Entries and bytes per key partition of `stage`'s stored state, as of the last
    /// flush of its partition actors. Key partitions with no stored entry are absent;
    /// a stage that never stored anything gives an empty map (and no tree is
    /// created for it).
    pub fn stage_usage(&self, stage: &str) -> Result<BTreeMap<u32, PartitionUsage>, StateError> {
        let name = tree_name(stage);
        let mut usage = BTreeMap::new();
        if !self.db().tree_names().iter().any(|t| t == name.as_bytes()) {
            return Ok(usage);
        }
        let tree = self
            .db()
            .open_tree(&name)
            .map_err(|source| StateError::Sled {
                context: format!("opening the state of stage `{stage}` to measure it"),
                source,
            })?;
        for entry in tree.iter() {
            let (key, value) = entry.map_err(|source| StateError::Sled {
                context: format!("scanning the state of stage `{stage}` to measure it"),
                source,
            })?;
            let Some(kp) = codec::key_partition(&key) else {
                return Err(StateError::Corrupt {
                    what: format!("state of stage `{stage}`"),
                    reason: format!(
                        "a sled key of {} bytes, shorter than its key-partition prefix",
                        key.len()
                    ),
                });
            };
            if is_timer(&key) {
                continue;
            }
            usage
                .entry(kp)
                .or_insert_with(PartitionUsage::default)
                .add(PartitionUsage {
                    entries: 1,
                    bytes: (key.len() + value.len()) as u64,
                });
        }
        Ok(usage)
    }
}

/// Whether a sled key is a timer's (state id [`TIMER_STATE_ID`]).
fn is_timer(key: &[u8]) -> bool {
    key.get(codec::PARTITION_PREFIX_LEN..STATE_PREFIX_LEN)
        .is_some_and(|id| id == TIMER_STATE_ID.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::keyed;
    use super::super::{StateDescriptor, TimerDomain};
    use super::*;

    #[test]
    fn counts_flushed_entries_and_bytes_per_key_partition_without_timers() {
        let (store, mut ks, _clock) = keyed::<String>("usage", 0..4);
        assert!(store.stage_usage("usage").unwrap().is_empty());
        let count = ks.register_value::<u64>(StateDescriptor::new("n")).unwrap();
        let seen = ks
            .register_map::<u8, u8>(StateDescriptor::new("m"))
            .unwrap();
        let a = "a".to_string();
        let b = "bb".to_string();
        ks.value(count, 1, &a).set(7).unwrap();
        ks.value(count, 3, &b).set(9).unwrap();
        ks.map(seen, 3, &b).insert(1, 10).unwrap();
        ks.map(seen, 3, &b).insert(2, 20).unwrap();
        ks.register_timer(TimerDomain::EventTime, 1, &a, 50)
            .unwrap();
        assert!(
            store.stage_usage("usage").unwrap().is_empty(),
            "the write-back cache is not on disk yet"
        );
        ks.flush().unwrap();
        let usage = store.stage_usage("usage").unwrap();
        let on_disk = |kp: u32| -> PartitionUsage {
            let mut sum = PartitionUsage::default();
            for (k, v) in super::super::testutil::raw_entries(&ks, kp) {
                if !is_timer(&k) {
                    sum.add(PartitionUsage {
                        entries: 1,
                        bytes: (k.len() + v.len()) as u64,
                    });
                }
            }
            sum
        };
        assert_eq!(usage.keys().copied().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(usage[&1].entries, 1, "the timer is not counted");
        assert_eq!(usage[&3].entries, 3, "one value and two map entries");
        // A value entry: 8-byte prefix + bincode(String "a") (8 + 1) as key, and a
        // 13-byte record header + bincode(u64) as value.
        assert_eq!(usage[&1].bytes, (8 + 9) + (13 + 8));
        assert_eq!(usage[&1], on_disk(1));
        assert_eq!(usage[&3], on_disk(3));
        assert_eq!(raw_len(&ks, 1), 2, "the timer is on disk beside the value");
    }

    fn raw_len(ks: &super::super::KeyedState<String>, kp: u32) -> usize {
        super::super::testutil::raw_entries(ks, kp).len()
    }
}
