//! The data model of snapshots and the store trait the checkpoint machinery writes to.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::SnapshotError;

/// Names the piece of state a chunk holds: one key partition of one stage.
///
/// Source split positions use the same shape by convention (the source's name as
/// `stage`, the split number as `key_partition`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId {
    /// The stage (or source) name, exactly as the user spelled it.
    pub stage: String,
    /// The key partition (or split) number within the stage.
    pub key_partition: u32,
}

impl ChunkId {
    /// Builds a chunk id.
    pub fn new(stage: impl Into<String>, key_partition: u32) -> Self {
        ChunkId {
            stage: stage.into(),
            key_partition,
        }
    }
}

/// A handle to one stored chunk, as returned by [`SnapshotStore::put_chunk`] and listed
/// in manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Whose state the chunk holds.
    pub id: ChunkId,
    /// The epoch the chunk was written for.
    pub epoch: u64,
    /// The epoch of the chunk this one extends (an incremental chunk), or `None` for a
    /// full chunk.
    pub base: Option<u64>,
    /// The chunk's file name inside the job's chunk directory; derived from `id` and
    /// `epoch`, and checked against them on every read.
    pub file: String,
    /// The length of the engine's data in the chunk (not of the file).
    pub bytes: u64,
}

/// The record that makes an epoch complete: every chunk needed to restore the job to
/// that epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The job the epoch belongs to.
    pub job: String,
    /// The epoch this manifest completes.
    pub epoch: u64,
    /// Wall-clock creation time in milliseconds since the Unix epoch (informational).
    pub created_ms: u64,
    /// One chain per chunk id: a full chunk followed by the incremental chunks built on
    /// it, oldest first, each one's `base` being the previous one's `epoch`. Restore
    /// reads a chain in order and lets the engine merge it.
    pub chunks: Vec<Vec<ChunkRef>>,
    /// Free-form metadata from the engine (e.g. job graph version).
    pub meta: BTreeMap<String, String>,
}

impl Manifest {
    /// Every chunk the manifest refers to, across all chains.
    pub fn chunk_refs(&self) -> impl Iterator<Item = &ChunkRef> {
        self.chunks.iter().flatten()
    }

    /// Checks that the manifest is self-consistent: every chain is non-empty, about a
    /// single chunk id that no other chain uses, starts with a full chunk, links each
    /// delta to the previous chunk's epoch, and ends no later than the manifest's epoch.
    ///
    /// [`SnapshotStore::commit`] refuses manifests that fail this, so a restore never
    /// receives a chain it cannot apply.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        let invalid = |reason: String| SnapshotError::InvalidManifest {
            job: self.job.clone(),
            epoch: self.epoch,
            reason,
        };
        let mut seen = BTreeSet::new();
        for (n, chain) in self.chunks.iter().enumerate() {
            let Some(first) = chain.first() else {
                return Err(invalid(format!("chain {n} is empty")));
            };
            let id = &first.id;
            if !seen.insert(id) {
                return Err(invalid(format!(
                    "stage {:?} partition {} has more than one chain",
                    id.stage, id.key_partition
                )));
            }
            if let Some(base) = first.base {
                return Err(invalid(format!(
                    "chain for stage {:?} partition {} starts with an incremental chunk \
                     (epoch {}, base {base}) instead of a full one",
                    id.stage, id.key_partition, first.epoch
                )));
            }
            for pair in chain.windows(2) {
                let (prev, next) = (&pair[0], &pair[1]);
                if next.id != *id {
                    return Err(invalid(format!(
                        "chain for stage {:?} partition {} also holds stage {:?} partition {}",
                        id.stage, id.key_partition, next.id.stage, next.id.key_partition
                    )));
                }
                if next.base != Some(prev.epoch) || next.epoch <= prev.epoch {
                    return Err(invalid(format!(
                        "chain for stage {:?} partition {} is broken: chunk of epoch {} \
                         has base {:?} but follows the chunk of epoch {}",
                        id.stage, id.key_partition, next.epoch, next.base, prev.epoch
                    )));
                }
            }
            let last = chain.last().unwrap_or(first);
            if last.epoch > self.epoch {
                return Err(invalid(format!(
                    "chain for stage {:?} partition {} uses a chunk of later epoch {}",
                    id.stage, id.key_partition, last.epoch
                )));
            }
        }
        Ok(())
    }
}

/// What [`SnapshotStore::retain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetainStats {
    /// The complete epochs kept, oldest first.
    pub kept: Vec<u64>,
    /// The epochs whose manifests were deleted, oldest first.
    pub removed_manifests: Vec<u64>,
    /// How many chunk files were deleted.
    pub removed_chunks: usize,
    /// The total size of the deleted chunk files.
    pub removed_bytes: u64,
}

/// One chunk to store with [`SnapshotStore::put_chunks`].
#[derive(Debug, Clone, Copy)]
pub struct NewChunk<'a> {
    /// Whose state it is.
    pub id: &'a ChunkId,
    /// The epoch of the chunk this one extends (a delta), or `None` for a full image.
    pub base: Option<u64>,
    /// The bytes.
    pub data: &'a [u8],
}

/// Durable storage for epoch snapshots.
///
/// The checkpoint coordinator writes chunks as stages report them, then commits a
/// manifest once an epoch is fully captured; only then does the epoch count. A store
/// expects a single coordinator per job (one writer of manifests); chunk writes for
/// different chunk ids may run concurrently.
pub trait SnapshotStore: Send + Sync {
    /// Stores one chunk of `epoch` and returns its reference; the data is durable
    /// (fsynced) before this returns. Writing the same chunk again replaces it.
    fn put_chunk(
        &self,
        job: &str,
        epoch: u64,
        id: &ChunkId,
        base: Option<u64>,
        data: &[u8],
    ) -> Result<ChunkRef, SnapshotError> {
        let mut refs = self.put_chunks(job, epoch, &[NewChunk { id, base, data }])?;
        refs.pop().ok_or_else(|| {
            SnapshotError::InvalidArgument("storing one chunk returned no reference".into())
        })
    }

    /// Stores every chunk of `chunks` for `epoch`, like [`SnapshotStore::put_chunk`]
    /// for each, and returns their references in the same order; all are durable
    /// before this returns. A store makes them durable together where it can, which
    /// is much cheaper than one by one when an epoch has many chunks.
    fn put_chunks(
        &self,
        job: &str,
        epoch: u64,
        chunks: &[NewChunk<'_>],
    ) -> Result<Vec<ChunkRef>, SnapshotError>;

    /// Reads a chunk back, verifying its checksum and that it is the chunk `chunk`
    /// describes.
    fn read_chunk(&self, job: &str, chunk: &ChunkRef) -> Result<Vec<u8>, SnapshotError>;

    /// Makes `manifest.epoch` complete, atomically: either the whole manifest becomes
    /// visible or nothing does. Every referenced chunk must already be stored.
    fn commit(&self, manifest: &Manifest) -> Result<(), SnapshotError>;

    /// The newest epoch whose manifest and every chunk read back cleanly; unusable
    /// epochs are skipped with a warning (falling back to older ones). `None` when no
    /// epoch is usable.
    fn latest_complete(&self, job: &str) -> Result<Option<Manifest>, SnapshotError>;

    /// The epochs that have a manifest file, oldest first (contents not verified).
    fn manifests(&self, job: &str) -> Result<Vec<u64>, SnapshotError>;

    /// Takes over as the only writer of `job`'s manifests, for a store several
    /// processes share: once this returns, a commit by any writer that claimed the
    /// job earlier is refused with [`SnapshotError::Fenced`]. A node calls it once
    /// per run, before it restores. The default does nothing: a store only one
    /// process uses has no one to fence.
    fn claim(&self, job: &str) -> Result<(), SnapshotError> {
        let _ = job;
        Ok(())
    }

    /// Keeps the newest `keep` complete epochs and deletes older manifests plus every
    /// chunk no kept manifest refers to; nothing newer than the newest complete epoch
    /// is touched, as it may be in progress. Retention runs after every epoch, so a
    /// store may judge completeness more cheaply here than when restoring (e.g. by
    /// the presence of the chunk files rather than their checksums).
    fn retain(&self, job: &str, keep: usize) -> Result<RetainStats, SnapshotError>;
}
