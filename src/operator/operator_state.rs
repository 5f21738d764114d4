//! Operator state: a non-keyed operator's own state, written at each epoch barrier and
//! redistributed over the partitions of the run that restores it.
//!
//! Like Flink's operator state, each named entry is a list of items with one of three
//! ways to redistribute it when the parallelism changes:
//! - **list**: the items of every partition are concatenated, then dealt round robin
//!   to the new partitions (each item goes to exactly one);
//! - **union**: every new partition gets every partition's items;
//! - **broadcast**: the entry is the same on every partition (broadcast state), and
//!   every new partition gets one copy (partition 0's).
//!
//! One partition's state is one frame: a format version, a CRC-32 of the body, and the
//! bincode body (the entries). A frame that fails its check is reported, never read.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::OperatorError;

/// The frame format's version.
const FORMAT_VERSION: u8 = 1;
/// The frame's leading bytes, so a frame of another kind is refused at once.
const MAGIC: &[u8; 4] = b"WOPS";

/// How a named entry is redistributed on a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redistribution {
    /// Concatenated, then dealt round robin.
    List,
    /// Everything to every partition.
    Union,
    /// One copy (partition 0's) to every partition.
    Broadcast,
}

/// Why operator state could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum OperatorStateError {
    /// An item did not encode.
    #[error("operator state entry '{name}': encoding failed: {source}")]
    Encode {
        /// The entry.
        name: String,
        /// What bincode reported.
        source: bincode::Error,
    },
    /// An item did not decode as the type asked for.
    #[error(
        "operator state entry '{name}': an item does not decode as the type asked for: {source}"
    )]
    Decode {
        /// The entry.
        name: String,
        /// What bincode reported.
        source: bincode::Error,
    },
    /// A partition's frame is damaged or of an unknown version.
    #[error("operator state of partition {partition}: {reason}")]
    Frame {
        /// The partition whose frame it is.
        partition: u32,
        /// What is wrong.
        reason: String,
    },
    /// Two partitions wrote one entry with different redistributions.
    #[error(
        "operator state entry '{name}' is written as {a:?} by one partition and {b:?} by another"
    )]
    Mixed {
        /// The entry.
        name: String,
        /// One partition's way.
        a: Redistribution,
        /// Another's.
        b: Redistribution,
    },
}

impl From<OperatorStateError> for OperatorError {
    fn from(e: OperatorStateError) -> Self {
        OperatorError::Failed(e.to_string())
    }
}

/// One entry: how it is redistributed, and its encoded items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    how: Redistribution,
    items: Vec<Vec<u8>>,
}

/// The body of one partition's frame.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Body {
    /// The run that wrote it (the epoch that run restored, 0 for a run from the
    /// beginning), its parallelism, and the writer's partition: a restore reads
    /// the frames of the newest run only (see [`redistribute`]).
    run: u64,
    parallelism: u32,
    partition: u32,
    entries: BTreeMap<String, Entry>,
}

/// Handed to [`Operator::snapshot_state`](super::Operator::snapshot_state): collects
/// the partition's named entries, and the commit actions of a transactional operator
/// (a two-phase-commit sink) for the epoch.
#[derive(Debug, Default)]
pub struct OperatorStateWriter {
    entries: BTreeMap<String, Entry>,
    /// Encoded commit actions, recorded with the epoch's snapshot.
    commits: Vec<Vec<u8>>,
}

impl OperatorStateWriter {
    /// A writer with no entries.
    pub fn new() -> Self {
        Self::default()
    }

    fn put<T: Serialize>(
        &mut self,
        name: &str,
        how: Redistribution,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(), OperatorStateError> {
        let items = items
            .into_iter()
            .map(|item| {
                bincode::serialize(&item).map_err(|source| OperatorStateError::Encode {
                    name: name.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.entries.insert(name.to_string(), Entry { how, items });
        Ok(())
    }

    /// Writes `items` as list state `name`: on a restore each item goes to one
    /// partition (round robin).
    pub fn list<T: Serialize>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(), OperatorStateError> {
        self.put(name, Redistribution::List, items)
    }

    /// Writes `items` as union state `name`: on a restore every partition gets the
    /// items of every partition.
    pub fn union<T: Serialize>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(), OperatorStateError> {
        self.put(name, Redistribution::Union, items)
    }

    /// Writes `items` as broadcast state `name`, the same on every partition: on a
    /// restore every partition gets one copy.
    pub fn broadcast<T: Serialize>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(), OperatorStateError> {
        self.put(name, Redistribution::Broadcast, items)
    }

    /// Hands the engine one commit action of the epoch being snapshotted, encoded
    /// with [`encode_action`](crate::connector::action_frame::encode_action). The
    /// engine records it with the epoch's snapshot and, once the epoch is complete,
    /// gives it to the stage's committer ([`Operator::committer`]); recovery redoes
    /// it. Only an operator whose stage has a committer may hand over actions.
    ///
    /// [`Operator::committer`]: super::Operator::committer
    pub fn commit_action(&mut self, encoded: Vec<u8>) {
        self.commits.push(encoded);
    }

    /// Whether no operator state was written (the engine then stores none). Commit
    /// actions do not count: they are not operator state.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The commit actions handed over, in order.
    pub(crate) fn take_commit_actions(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.commits)
    }

    /// The frame of partition `partition` of `parallelism`.
    pub(crate) fn encode(self, run: u64, partition: u32, parallelism: u32) -> Vec<u8> {
        let body = Body {
            run,
            parallelism,
            partition,
            entries: self.entries,
        };
        // Encoding a struct of strings and byte vectors into memory cannot fail.
        let body = bincode::serialize(&body).unwrap_or_default();
        let mut frame = Vec::with_capacity(body.len() + 9);
        frame.extend_from_slice(MAGIC);
        frame.push(FORMAT_VERSION);
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        frame
    }
}

fn decode_frame(partition: u32, frame: &[u8]) -> Result<Body, OperatorStateError> {
    let bad = |reason: String| OperatorStateError::Frame { partition, reason };
    if frame.len() < 9 || &frame[..4] != MAGIC {
        return Err(bad("not an operator state frame".into()));
    }
    if frame[4] != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {} is not the supported {FORMAT_VERSION}",
            frame[4]
        )));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&frame[5..9]);
    let body = &frame[9..];
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(bad("checksum mismatch (the frame is damaged)".into()));
    }
    bincode::deserialize(body).map_err(|e| bad(format!("body does not decode: {e}")))
}

/// Handed to [`Operator::restore_state`](super::Operator::restore_state): this
/// partition's share of the restored entries.
#[derive(Debug, Default, Clone)]
pub struct OperatorStateReader {
    entries: BTreeMap<String, Vec<Vec<u8>>>,
}

impl OperatorStateReader {
    /// The items of entry `name` for this partition (none if it was never written).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Vec<T>, OperatorStateError> {
        let Some(items) = self.entries.get(name) else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|bytes| {
                // Whole items only: an item of another type that happens to decode
                // from a prefix of the bytes is an error, not a value.
                bincode::Options::deserialize(
                    bincode::Options::with_fixint_encoding(bincode::options()),
                    bytes,
                )
                .map_err(|source| OperatorStateError::Decode {
                    name: name.to_string(),
                    source,
                })
            })
            .collect()
    }

    /// The names of the entries restored.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// Splits the frames a stage's partitions wrote (indexed by the chunk's partition
/// number) over `parallelism` new partitions.
///
/// A manifest may still carry frames of an earlier run (chunk ids that no
/// partition of a later run rewrote, e.g. after a restore at a lower parallelism):
/// only the frames of the newest run (the one that restored the newest epoch) are
/// read, the others are stale. A partition of that run that wrote no frame held no
/// operator state.
pub(crate) fn redistribute(
    frames: &[(u32, Vec<u8>)],
    parallelism: u32,
) -> Result<Vec<OperatorStateReader>, OperatorStateError> {
    let mut bodies = Vec::with_capacity(frames.len());
    for (partition, frame) in frames {
        bodies.push(decode_frame(*partition, frame)?);
    }
    let newest = bodies.iter().map(|b| b.run).max().unwrap_or(0);
    bodies.retain(|b| b.run == newest && b.partition < b.parallelism);
    bodies.sort_by_key(|b| b.partition);
    let n = parallelism.max(1) as usize;
    let mut out = vec![OperatorStateReader::default(); n];
    let mut kinds: BTreeMap<String, Redistribution> = BTreeMap::new();
    let mut dealt: BTreeMap<String, usize> = BTreeMap::new();
    for body in bodies {
        for (name, entry) in body.entries {
            match kinds.get(&name) {
                Some(how) if *how != entry.how => {
                    return Err(OperatorStateError::Mixed {
                        name,
                        a: *how,
                        b: entry.how,
                    })
                }
                Some(_) if entry.how == Redistribution::Broadcast => continue,
                _ => {}
            }
            kinds.insert(name.clone(), entry.how);
            match entry.how {
                Redistribution::List => {
                    let next = dealt.entry(name.clone()).or_insert(0);
                    for item in entry.items {
                        out[*next % n]
                            .entries
                            .entry(name.clone())
                            .or_default()
                            .push(item);
                        *next += 1;
                    }
                }
                Redistribution::Union | Redistribution::Broadcast => {
                    for reader in &mut out {
                        reader
                            .entries
                            .entry(name.clone())
                            .or_default()
                            .extend(entry.items.iter().cloned());
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(
        partition: u32,
        parallelism: u32,
        list: &[u64],
        union: &[u64],
        rules: &[u64],
    ) -> (u32, Vec<u8>) {
        frame_of_run(0, partition, parallelism, list, union, rules)
    }

    fn frame_of_run(
        run: u64,
        partition: u32,
        parallelism: u32,
        list: &[u64],
        union: &[u64],
        rules: &[u64],
    ) -> (u32, Vec<u8>) {
        let mut w = OperatorStateWriter::new();
        w.list("offsets", list.iter().copied()).unwrap();
        w.union("seen", union.iter().copied()).unwrap();
        w.broadcast("rules", rules.iter().copied()).unwrap();
        (partition, w.encode(run, partition, parallelism))
    }

    #[test]
    fn union_goes_everywhere_and_broadcast_once() {
        let frames = vec![
            frame(0, 2, &[1], &[10], &[7, 8]),
            frame(1, 2, &[2], &[20], &[7, 8]),
        ];
        let readers = redistribute(&frames, 3).unwrap();
        for r in &readers {
            assert_eq!(r.get::<u64>("seen").unwrap(), vec![10, 20]);
            assert_eq!(r.get::<u64>("rules").unwrap(), vec![7, 8]);
        }
    }

    #[test]
    fn stale_frames_of_an_earlier_run_are_not_read() {
        // A run at parallelism 2 restored epoch 5, so only its partition 1 wrote
        // chunk 1 (partition 0 held nothing); chunk 0 is left from the first run,
        // at the same parallelism, and must not be read.
        let frames = vec![
            frame_of_run(0, 0, 2, &[99], &[], &[]),
            frame_of_run(5, 1, 2, &[1], &[], &[]),
        ];
        let readers = redistribute(&frames, 2).unwrap();
        let all: Vec<u64> = readers
            .iter()
            .flat_map(|r| r.get::<u64>("offsets").unwrap())
            .collect();
        assert_eq!(all, vec![1]);
    }

    #[test]
    fn empty_frames_of_a_newer_run_supersede_an_older_runs_state() {
        // The restored run drained its state: its partitions write empty frames,
        // which must win over the first run's frames still in the manifest.
        let mut empty = OperatorStateWriter::new();
        empty.list::<u64>("offsets", []).unwrap();
        let frames = vec![
            frame_of_run(0, 0, 1, &[7, 8], &[], &[]),
            (0, OperatorStateWriter::new().encode(3, 0, 2)),
            (1, empty.encode(3, 1, 2)),
        ];
        let readers = redistribute(&frames, 2).unwrap();
        assert!(readers
            .iter()
            .all(|r| r.get::<u64>("offsets").unwrap().is_empty()));
    }

    #[test]
    fn a_damaged_frame_is_reported() {
        let (p, mut bytes) = frame(0, 1, &[1, 2, 3], &[], &[]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = redistribute(&[(p, bytes)], 1).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = redistribute(&[(0, b"nonsense".to_vec())], 1).unwrap_err();
        assert!(
            err.to_string().contains("not an operator state frame"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_is_an_error_not_a_panic() {
        let mut w = OperatorStateWriter::new();
        w.list("names", ["a".to_string()]).unwrap();
        let readers = redistribute(&[(0, w.encode(0, 0, 1))], 1).unwrap();
        assert!(readers[0].get::<u64>("names").is_err());
    }

    proptest! {
        /// List state: every item lands on exactly one new partition, and the shares
        /// differ by at most one, whatever the old and new parallelism.
        #[test]
        fn list_state_is_dealt_without_loss_or_duplication(
            per_partition in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 0..20), 1..6),
            new_parallelism in 1u32..8,
        ) {
            let old = per_partition.len() as u32;
            let frames: Vec<_> = per_partition
                .iter()
                .enumerate()
                .map(|(i, items)| frame(i as u32, old, items, &[], &[]))
                .collect();
            let readers = redistribute(&frames, new_parallelism).unwrap();
            prop_assert_eq!(readers.len(), new_parallelism as usize);
            let mut got: Vec<u64> = readers.iter().flat_map(|r| r.get::<u64>("offsets").unwrap()).collect();
            let mut want: Vec<u64> = per_partition.into_iter().flatten().collect();
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
            let sizes: Vec<usize> = readers.iter().map(|r| r.get::<u64>("offsets").unwrap().len()).collect();
            let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1);
        }
    }
}
