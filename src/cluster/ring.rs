//! The ring: which node owns each of a job's `P` key partitions, with a generation
//! number that fences every message and commit of an older assignment.
//!
//! The first ring spreads the key partitions over the nodes in contiguous ranges, as
//! [`owned_range`] spreads them over a stage's partition actors. After that, a node
//! joining or leaving goes through [`rebalance`], which moves as few key partitions as
//! possible while keeping every node's share within `floor(P / N) ..= ceil(P / N)`:
//! the partitions of departed nodes move, and so do the surplus partitions of nodes
//! holding more than their new share, and nothing else.
//!
//! A ring is stored with [`Ring::encode`]: a versioned, checksummed record
//! (`super::record`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::node::NodeId;
use super::record::{self, RecordError, RecordKind};
use crate::partition::owned_range;

/// A ring that cannot be built or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    /// A ring needs at least one node to own the key partitions.
    #[error("a ring needs at least one node")]
    NoNodes,
    /// A ring needs at least one key partition.
    #[error("a ring needs at least one key partition")]
    NoPartitions,
    /// The stored ring cannot be decoded.
    #[error("stored ring: {0}")]
    Record(#[from] RecordError),
}

/// The assignment of a job's key partitions to node ids, at one generation.
///
/// Invariants (checked when decoding): `nodes` is sorted and has no duplicates, and
/// there is one owner per key partition, each an index into `nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    generation: u64,
    nodes: Vec<NodeId>,
    owners: Vec<u32>,
}

/// The node set a ring is built over: sorted, without duplicates, not empty.
fn node_set(nodes: impl IntoIterator<Item = NodeId>) -> Result<Vec<NodeId>, RingError> {
    let mut nodes: Vec<NodeId> = nodes.into_iter().collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return Err(RingError::NoNodes);
    }
    Ok(nodes)
}

impl Ring {
    /// The first ring (generation 1): `key_partitions` spread over `nodes` (in node id
    /// order) in contiguous ranges, node `i` owning `owned_range(i, P, N)`.
    pub fn initial(
        key_partitions: u32,
        nodes: impl IntoIterator<Item = NodeId>,
    ) -> Result<Ring, RingError> {
        if key_partitions == 0 {
            return Err(RingError::NoPartitions);
        }
        let nodes = node_set(nodes)?;
        let n = nodes.len() as u32;
        let mut owners = vec![0; key_partitions as usize];
        for index in 0..n {
            for kp in owned_range(index, key_partitions, n) {
                owners[kp as usize] = index;
            }
        }
        Ok(Ring {
            generation: 1,
            nodes,
            owners,
        })
    }

    /// The generation: 1 for the first ring, one more for each rebalance.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of key partitions `P`.
    pub fn key_partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The nodes the ring was built over, in node id order (some may own nothing when
    /// there are more nodes than key partitions).
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The owner of key partition `kp`, or `None` if `kp` is not below `P`.
    pub fn owner(&self, kp: u32) -> Option<&NodeId> {
        let index = *self.owners.get(kp as usize)?;
        self.nodes.get(index as usize)
    }

    /// The key partitions `node` owns, ascending (empty for a node not in the ring).
    pub fn partitions_of(&self, node: &NodeId) -> Vec<u32> {
        let Ok(index) = self.nodes.binary_search(node) else {
            return Vec::new();
        };
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, &owner)| owner as usize == index)
            .map(|(kp, _)| kp as u32)
            .collect()
    }

    /// The key partitions whose owner differs between `self` and `other` (both rings
    /// of the same `P`; key partitions beyond the shorter ring count as moved).
    pub fn moved_partitions(&self, other: &Ring) -> Vec<u32> {
        let p = self.key_partitions().max(other.key_partitions());
        (0..p)
            .filter(|&kp| self.owner(kp) != other.owner(kp))
            .collect()
    }

    /// The stored form: a versioned, checksummed record.
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::Ring, self)
    }

    /// Decodes a stored ring, refusing damaged bytes and rings that break the
    /// invariants.
    pub fn decode(bytes: &[u8]) -> Result<Ring, RingError> {
        let ring: Ring = record::decode(RecordKind::Ring, bytes)?;
        ring.check()?;
        Ok(ring)
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.owners.is_empty() {
            return Err(RecordError::Invalid("a ring with no key partitions".into()));
        }
        if self.nodes.is_empty() {
            return Err(RecordError::Invalid("a ring with no nodes".into()));
        }
        if self.nodes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(RecordError::Invalid(
                "the ring's nodes are not sorted and distinct".into(),
            ));
        }
        if let Some(kp) = self
            .owners
            .iter()
            .position(|&owner| owner as usize >= self.nodes.len())
        {
            return Err(RecordError::Invalid(format!(
                "key partition {kp} is owned by no node"
            )));
        }
        Ok(())
    }
}

/// The ring after a change of node set: generation one more than `current`'s, every
/// node of `nodes` owning between `floor(P / N)` and `ceil(P / N)` key partitions,
/// and as few key partitions as possible moved.
///
/// Which nodes get the `P mod N` larger shares is chosen to keep partitions where they
/// are: the nodes that hold the most already (ties to the smaller node id). Then the
/// departed nodes' partitions and each node's surplus over its share (its
/// highest-numbered partitions) are handed, in ascending order, to the nodes under
/// their share, in node id order. A node therefore either keeps all its partitions and
/// gains some, or loses some and gains none; nothing else moves.
pub fn rebalance(
    current: &Ring,
    nodes: impl IntoIterator<Item = NodeId>,
) -> Result<Ring, RingError> {
    let nodes = node_set(nodes)?;
    let p = current.owners.len();
    let n = nodes.len();
    // Where each surviving node's partitions are, by its index in the new node set.
    let mut held: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut pool: Vec<u32> = Vec::new();
    for (kp, &old) in current.owners.iter().enumerate() {
        match nodes.binary_search(&current.nodes[old as usize]) {
            Ok(new) => held[new].push(kp as u32),
            Err(_) => pool.push(kp as u32),
        }
    }
    // Shares: the `p % n` nodes holding the most get one more than the rest.
    let (base, larger) = (p / n, p % n);
    let mut by_holding: Vec<usize> = (0..n).collect();
    by_holding.sort_by(|&a, &b| held[b].len().cmp(&held[a].len()).then(a.cmp(&b)));
    let mut share = vec![base; n];
    for &index in by_holding.iter().take(larger) {
        share[index] += 1;
    }
    for (partitions, &share) in held.iter_mut().zip(&share) {
        if partitions.len() > share {
            pool.extend(partitions.drain(share..));
        }
    }
    pool.sort_unstable();
    let mut pool = pool.into_iter();
    for (partitions, &share) in held.iter_mut().zip(&share) {
        while partitions.len() < share {
            match pool.next() {
                Some(kp) => partitions.push(kp),
                None => break,
            }
        }
    }
    let mut owners = vec![0u32; p];
    for (index, partitions) in held.iter().enumerate() {
        for &kp in partitions {
            owners[kp as usize] = index as u32;
        }
    }
    Ok(Ring {
        generation: current.generation + 1,
        nodes,
        owners,
    })
}

/// How many key partitions each node of `ring` owns (every node of the ring listed).
pub fn shares(ring: &Ring) -> BTreeMap<NodeId, u32> {
    let mut counts: BTreeMap<NodeId, u32> = ring.nodes.iter().map(|n| (n.clone(), 0)).collect();
    for &owner in &ring.owners {
        if let Some(count) = counts.get_mut(&ring.nodes[owner as usize]) {
            *count += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::owner_of;
    use proptest::prelude::*;

    fn ids(names: &[u8]) -> Vec<NodeId> {
        names
            .iter()
            .map(|i| NodeId::new(format!("n{i:02}")))
            .collect()
    }

    /// Any ring, balanced or not: `p` key partitions owned by arbitrary nodes of
    /// `n00..n15`.
    fn any_ring() -> impl Strategy<Value = Ring> {
        (1usize..200, 1u64..1000).prop_flat_map(|(p, generation)| {
            proptest::collection::vec(0u8..16, p).prop_map(move |picks| {
                let nodes = node_set(ids(&picks)).unwrap();
                let owners = picks
                    .iter()
                    .map(|&i| {
                        nodes
                            .binary_search(&NodeId::new(format!("n{i:02}")))
                            .unwrap() as u32
                    })
                    .collect();
                Ring {
                    generation,
                    nodes,
                    owners,
                }
            })
        })
    }

    fn any_nodes() -> impl Strategy<Value = Vec<NodeId>> {
        proptest::collection::vec(0u8..24, 1..20).prop_map(|names| ids(&names))
    }

    fn assert_balanced(ring: &Ring) -> Result<(), TestCaseError> {
        let p = ring.key_partitions();
        let n = ring.nodes().len() as u32;
        for (node, count) in shares(ring) {
            prop_assert!(
                (p / n..=p.div_ceil(n)).contains(&count),
                "{node} owns {count} of {p} over {n} nodes"
            );
        }
        Ok(())
    }

    /// The fewest moves any balanced assignment over `nodes` needs from `current`: the
    /// departed nodes' partitions plus each survivor's surplus, the larger shares
    /// going to the survivors that hold the most.
    fn fewest_moves(current: &Ring, nodes: &[NodeId]) -> usize {
        let p = current.owners.len();
        let old = shares(current);
        let mut surviving: Vec<usize> = nodes
            .iter()
            .map(|n| old.get(n).copied().unwrap_or(0) as usize)
            .collect();
        let departed = p - surviving.iter().sum::<usize>();
        surviving.sort_unstable_by(|a, b| b.cmp(a));
        let (base, larger) = (p / nodes.len(), p % nodes.len());
        let surplus: usize = surviving
            .iter()
            .enumerate()
            .map(|(i, &count)| count.saturating_sub(base + usize::from(i < larger)))
            .sum();
        departed + surplus
    }

    proptest! {
        #[test]
        fn the_initial_ring_is_contiguous_ranges_like_owned_range(p in 1u32..600, nodes in any_nodes()) {
            let ring = Ring::initial(p, nodes).unwrap();
            let n = ring.nodes().len() as u32;
            prop_assert_eq!(ring.generation(), 1);
            for kp in 0..p {
                let expected = &ring.nodes()[owner_of(kp, p, n) as usize];
                prop_assert_eq!(ring.owner(kp), Some(expected));
            }
            prop_assert_eq!(ring.owner(p), None);
            assert_balanced(&ring)?;
        }

        #[test]
        fn rebalancing_keeps_every_share_within_floor_and_ceiling(current in any_ring(), nodes in any_nodes()) {
            let next = rebalance(&current, nodes.clone()).unwrap();
            prop_assert_eq!(next.generation(), current.generation() + 1);
            prop_assert_eq!(next.key_partitions(), current.key_partitions());
            let expected = node_set(nodes).unwrap();
            prop_assert_eq!(next.nodes(), expected.as_slice());
            assert_balanced(&next)?;
        }

        #[test]
        fn rebalancing_moves_only_departed_or_surplus_partitions_and_as_few_as_possible(
            current in any_ring(),
            nodes in any_nodes(),
        ) {
            let next = rebalance(&current, nodes.clone()).unwrap();
            let moved = next.moved_partitions(&current);
            prop_assert_eq!(moved.len(), fewest_moves(&current, next.nodes()));
            let before = shares(&current);
            let after = shares(&next);
            for &kp in &moved {
                let from = current.owner(kp).unwrap();
                // The old owner departed, or it holds fewer now: it gave up surplus.
                if let Some(&now) = after.get(from) {
                    prop_assert!(now < before[from], "{from} gave {kp} away but did not shrink");
                }
            }
            // A node either only gains or only loses.
            for node in next.nodes() {
                let old = current.partitions_of(node);
                let new = next.partitions_of(node);
                let kept = old.iter().filter(|kp| new.contains(kp)).count();
                prop_assert!(kept == old.len() || kept == new.len(), "{node} both lost and gained");
            }
        }

        #[test]
        fn a_joining_node_takes_partitions_only_from_nodes_over_their_share(p in 1u32..400, n in 1u8..12) {
            let nodes = ids(&(0..n).collect::<Vec<_>>());
            let ring = Ring::initial(p, nodes.clone()).unwrap();
            let mut grown = nodes;
            grown.push(NodeId::new("n99"));
            let next = rebalance(&ring, grown).unwrap();
            let newcomer = next.partitions_of(&NodeId::new("n99"));
            prop_assert_eq!(next.moved_partitions(&ring), newcomer.clone());
            prop_assert!(newcomer.len() as u32 >= p / (u32::from(n) + 1));
        }

        #[test]
        fn a_ring_round_trips_through_its_encoding(ring in any_ring()) {
            prop_assert_eq!(Ring::decode(&ring.encode()), Ok(ring));
        }

        #[test]
        fn a_damaged_ring_is_refused(ring in any_ring(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = ring.encode();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(Ring::decode(&bytes).is_err());
        }
    }

    #[test]
    fn a_ring_needs_nodes_and_partitions() {
        assert_eq!(Ring::initial(8, []), Err(RingError::NoNodes));
        assert_eq!(Ring::initial(0, ids(&[1])), Err(RingError::NoPartitions));
    }

    #[test]
    fn a_decoded_ring_with_an_owner_outside_its_nodes_is_refused() {
        let bad = Ring {
            generation: 1,
            nodes: ids(&[1]),
            owners: vec![0, 1],
        };
        let bytes = record::encode(RecordKind::Ring, &bad);
        assert!(matches!(
            Ring::decode(&bytes),
            Err(RingError::Record(RecordError::Invalid(_)))
        ));
    }

    #[test]
    fn a_node_leaving_hands_over_exactly_its_partitions() {
        let ring = Ring::initial(12, ids(&[1, 2, 3])).unwrap();
        let gone = ring.partitions_of(&NodeId::new("n02"));
        let next = rebalance(&ring, ids(&[1, 3])).unwrap();
        assert_eq!(next.moved_partitions(&ring), gone);
        assert_eq!(next.partitions_of(&NodeId::new("n02")), Vec::<u32>::new());
    }
}
