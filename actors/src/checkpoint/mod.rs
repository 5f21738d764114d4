//! Epoch checkpoints: the messages between partition actors and the checkpoint
//! coordinator, barrier alignment, and the coordinator that turns acknowledged
//! snapshots into complete epochs.
//!
//! The protocol, in order:
//!
//! 1. The [`CheckpointCoordinator`] starts epoch `e` by sending [`TriggerEpoch`] to
//!    every running source actor.
//! 2. A source snapshots its split positions, then sends [`crate::Marker::Barrier`]
//!    `e` on every output channel right after the last record of epoch `e - 1`, and
//!    acknowledges with its snapshot ([`Acknowledge`]).
//! 3. An actor with several inputs aligns the barrier ([`Aligner`]): once an input
//!    delivered it, that input's further messages are held back (they keep their
//!    mailbox slots, so that input's sender waits) until every input that has not
//!    ended delivered it too. The actor then snapshots its state, forwards the barrier
//!    and acknowledges; the held messages are handled next.
//! 4. Snapshots are handed over as bytes and written by the coordinator's writer
//!    thread while the actor goes on processing (asynchronous snapshots).
//! 5. When every actor acknowledged `e` (an actor that finished counts with its final
//!    snapshot) and every chunk is durable, the manifest of `e` is committed
//!    atomically; only then do the sinks' commit actions run and actors hear
//!    [`EpochComplete`].

mod align;
pub mod commit_list;
mod coordinator;
pub mod metrics;
mod stats;
mod writer;

pub use align::{Aligned, Aligner};
pub use commit_list::{
    decode_commit_list, encode_commit_list, CommitList, CommitListError, StageAction,
};
pub use coordinator::{
    CheckpointConfig, CheckpointCoordinator, Committer, FinishJob, JobActors, Merger,
    RequestSavepoint, SavepointDone, ShutdownCoordinator,
};
pub use stats::{
    CheckpointFigures, CheckpointStats, EpochOutcome, EpochRecord, CHECKPOINT_HISTORY,
};

use std::time::Duration;

use actix::Message;

use crate::partition_actor::ActorId;
use crate::snapshot::{ChunkId, Manifest};

/// Chunk-id stage prefix of a keyed stage's state: `state/<stage index>`, one chunk
/// per key partition.
pub fn state_chunk_stage(stage_index: u32) -> String {
    format!("state/{stage_index}")
}

/// Chunk-id stage prefix of a source stage's split positions: `source/<stage index>`,
/// one chunk per split.
pub fn source_chunk_stage(stage_index: u32) -> String {
    format!("source/{stage_index}")
}

/// Chunk-id stage prefix of a stage's operator state (its operators' own non-keyed
/// state): `operator/<stage index>`, one chunk per partition actor.
pub fn operator_chunk_stage(stage_index: u32) -> String {
    format!("operator/{stage_index}")
}

/// The chunk id under which an epoch's sink commit actions are stored (a
/// [`commit_list`]).
pub const COMMITS_CHUNK_STAGE: &str = "commits";

/// Manifest metadata key on the two manifests that end a run of a bounded job.
pub const META_FINAL: &str = "final";

/// [`META_FINAL`] of the final epoch's manifest: the input ended and the epoch is
/// complete, but its commit actions may not all have run (they run after the
/// manifest is durable, and the process may die in between). A run that finds it
/// newest only redoes its commit actions; it must not read the input again.
pub const FINAL_COMMITTING: &str = "committing";

/// [`META_FINAL`] of the manifest committed once the final epoch's commit actions
/// all ran (see [`finished_manifest`]): the run finished, and the next run starts
/// from the beginning.
pub const FINAL_DONE: &str = "true";

/// The manifest, numbered `epoch`, that records that the run whose final epoch's
/// manifest is `last` finished: every commit action of `last` ran. It refers to no
/// chunk (nothing is ever restored from it) and keeps `last`'s metadata.
pub fn finished_manifest(last: &Manifest, epoch: u64) -> Manifest {
    let mut meta = last.meta.clone();
    meta.insert(META_FINAL.into(), FINAL_DONE.into());
    Manifest {
        job: last.job.clone(),
        epoch,
        created_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        chunks: Vec::new(),
        meta,
    }
}

/// One piece of an actor's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkData {
    /// Whose state it is (a key partition of a stage, or a split of a source).
    pub id: ChunkId,
    /// `true` for a complete image, `false` for the changes since the previous epoch
    /// (incremental; folded into the chain by the coordinator).
    pub full: bool,
    /// The engine's bytes.
    pub data: Vec<u8>,
}

/// What a task hands over at a barrier: the chunks to store and the commit actions to
/// run once the epoch is complete (opaque to the kernel; the coordinator tags each
/// with the task's stage and hands it to the job's [`Committer`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// Chunks to store.
    pub chunks: Vec<ChunkData>,
    /// Commit actions, each idempotent.
    pub commits: Vec<Vec<u8>>,
}

/// Coordinator to source actor: emit barrier `.0` now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct TriggerEpoch(pub u64);

/// Coordinator to every actor: epoch `.0` is complete and its commit actions ran.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct EpochComplete(pub u64);

/// Actor to coordinator: the actor's snapshot for an epoch, or its final snapshot
/// when it finished.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Acknowledge {
    /// Who acknowledges.
    pub actor: ActorId,
    /// The epoch, or `None` for the final snapshot of an actor whose input ended (it
    /// stands for every epoch the actor will not see).
    pub epoch: Option<u64>,
    /// The snapshot.
    pub snapshot: TaskSnapshot,
    /// How long the barrier's alignment took (zero for sources).
    pub alignment: Duration,
}
