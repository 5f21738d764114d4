//! Which source split owns which topic partition.
//!
//! A job's number of source splits is fixed for its life (it is recorded in every
//! snapshot), while a topic can gain partitions. So ownership is a pure function of
//! (topic, partition, splits): every reader computes the same answer on its own, no
//! group coordinator is involved, and a partition found later by discovery has an
//! owner at once.

use crate::time::LaneId;

/// The split (of `splits`) that owns `partition` of `topic`.
///
/// With one topic, split `s` owns the partitions `p` with `p % splits == s`, so the
/// partitions of a topic spread evenly. With several topics the partition number is
/// shifted by a stable hash of the topic name (FNV-1a, the same on every platform and
/// release), so that partition 0 of every topic does not land on split 0.
pub fn split_of(topic: &str, partition: i32, splits: u32, several_topics: bool) -> u32 {
    let n = u64::from(splits.max(1));
    // Kafka partition numbers are never negative; a negative one (which no broker
    // sends) is mapped by its bit pattern rather than rejected, so ownership stays
    // total.
    let p = u64::from(partition as u32);
    let shift = if several_topics { topic_hash(topic) } else { 0 };
    // `shift % n + p % n` cannot overflow: both are below 2^32.
    ((shift % n + p % n) % n) as u32
}

/// The lane (see [`crate::time::lanes`]) of `partition` of `topic` inside its split:
/// FNV-1a (64 bit) over the topic name, a zero byte and the partition number (little
/// endian). Stable across releases and restarts, since snapshots keep each lane's
/// highest timestamp under it.
pub fn lane_of(topic: &str, partition: i32) -> LaneId {
    let h = fnv1a(topic_hash(topic), &[0]);
    fnv1a(h, &partition.to_le_bytes())
}

/// FNV-1a (64 bit) of the topic name.
fn topic_hash(topic: &str) -> u64 {
    fnv1a(0xcbf2_9ce4_8422_2325, topic.as_bytes())
}

/// FNV-1a (64 bit) of `bytes`, continuing from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_topic_is_partition_modulo_splits() {
        for p in 0..12 {
            assert_eq!(split_of("t", p, 4, false), (p % 4) as u32);
        }
        assert_eq!(split_of("t", 7, 0, false), 0, "zero splits is read as one");
    }

    #[test]
    fn the_topic_hash_is_pinned() {
        // Ownership must not change between releases: a changed hash would move
        // partitions to splits whose snapshot positions do not hold them.
        assert_eq!(topic_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(topic_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn lanes_are_pinned_and_tell_partitions_and_topics_apart() {
        // Snapshots keep lanes under these ids: they must not change.
        assert_eq!(lane_of("a", 0), 0x8e1b_1f24_f9e4_7224);
        let mut seen = std::collections::HashSet::new();
        for topic in ["a", "b", "orders", "orders2"] {
            for p in 0..64 {
                assert!(seen.insert(lane_of(topic, p)), "{topic} {p}");
            }
        }
    }

    proptest! {
        #[test]
        fn every_partition_is_owned_by_exactly_one_split(
            topics in proptest::collection::vec("[a-z.]{1,12}", 1..4),
            partitions in 1i32..200,
            splits in 1u32..40,
        ) {
            let several = topics.len() > 1;
            for topic in &topics {
                for p in 0..partitions {
                    let owners = (0..splits)
                        .filter(|&s| split_of(topic, p, splits, several) == s)
                        .count();
                    prop_assert_eq!(owners, 1);
                }
            }
        }

        #[test]
        fn a_topics_partitions_spread_evenly(
            topic in "[a-z]{1,12}", several in any::<bool>(), splits in 1u32..16, rounds in 1i32..5,
        ) {
            let mut per_split = vec![0; splits as usize];
            for p in 0..(splits as i32 * rounds) {
                per_split[split_of(&topic, p, splits, several) as usize] += 1;
            }
            prop_assert!(per_split.iter().all(|&c| c == rounds));
        }
    }
}
