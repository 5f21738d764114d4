//! The two-phase-commit sink API: a sink whose output becomes visible only once the
//! epoch that produced it is complete, so that a job's committed output is the same
//! with crashes as without (exactly-once).
//!
//! The two phases, for every sink partition and epoch `e`:
//!
//! 1. **Pre-commit**, at barrier `e`, in the partition actor:
//!    [`TwoPhaseCommitSink::pre_commit`] makes the output written since the last
//!    barrier durable *without* making it visible (a staged file, an open Kafka
//!    transaction) and returns commit actions of the sink's own type, which name
//!    that staged output. The engine encodes each (a versioned, checksummed
//!    [`action_frame`](super::action_frame)) and records it with the epoch's
//!    snapshot, tagged with the stage.
//! 2. **Commit**, after the epoch's manifest is durable, on the checkpoint writer's
//!    thread: the stage's [`Committer::commit`] makes each action's output visible.
//!    A crash may fall between the manifest and the commit, so recovery calls
//!    `commit` again for the actions of the epoch it restores (the **redo**), before
//!    any partition sink exists: a commit must be idempotent, and an action must
//!    carry everything its commit needs (paths, names, settings).
//!
//! **Abort** is the rollback: when an attempt fails, the job restores its newest
//! complete epoch, and every action this process pre-committed for an epoch after it
//! (which no manifest will ever list) is handed to [`Committer::abort`] before the
//! next attempt's sinks are created. A process that died cannot say which actions it
//! had pre-committed, so a sink also sweeps in
//! [`TwoPhaseCommitSinkFactory::recover`], which runs after the redo and the aborts:
//! whatever it still finds staged for an epoch after the restored one was never
//! committed and never will be.
//!
//! Plain sinks ([`Sink`](super::Sink)) stay as they are; `Job::sink` takes either
//! kind. See docs/operator-api.md, "Writing a transactional sink", for a complete
//! example and docs/exactly-once.md for the argument.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::sink::{SinkError, SinkRecovery};

/// One partition of a transactional sink: stages what it receives per epoch and
/// makes it visible only through the actions it returns at each barrier.
pub trait TwoPhaseCommitSink<T>: Send + 'static {
    /// What makes one epoch's staged output visible, e.g. "rename this staged file
    /// to that name" or "commit this transaction". Recorded in the epoch's snapshot,
    /// so its serialized form is part of the job's snapshot format: changing the type
    /// makes older snapshots unreadable unless the new type still decodes the old
    /// bytes (an enum with a variant per layout is one way).
    type Action: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Writes one record into the epoch in progress (staged, not yet visible).
    fn write(&mut self, item: T) -> Result<(), SinkError>;

    /// The input has ended. The last output is staged by the final
    /// [`pre_commit`](Self::pre_commit) that follows, not here. Does nothing by
    /// default.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Barrier `epoch` reached the sink: everything written before it belongs to the
    /// snapshot being taken. Makes that output durable but invisible, and returns
    /// the actions that will make it visible: the epoch's own (if it had output), and
    /// again those of earlier epochs not yet known complete (an epoch can be
    /// abandoned on its timeout, and then a later one that completes commits its
    /// output). Epochs grow within a run, and a run restored from epoch `R` numbers
    /// its epochs above every epoch on disk. An error fails the snapshot (the job
    /// rolls back).
    fn pre_commit(&mut self, epoch: u64) -> Result<Vec<Self::Action>, SinkError>;

    /// Epoch `epoch` is complete and every action returned up to its barrier was
    /// committed: the sink can forget them. Does nothing by default.
    fn committed(&mut self, _epoch: u64) {}
}

/// Commits and aborts a transactional sink's actions. It runs where no partition sink
/// may exist (the checkpoint writer's thread after an epoch's manifest is durable;
/// recovery before the sinks are created), so it works from the action alone and
/// whatever the factory gave it.
pub trait Committer: Send + Sync + 'static {
    /// The action type of the sink partitions (their
    /// [`TwoPhaseCommitSink::Action`]).
    type Action: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Makes the output `action` names visible. Called once the manifest of an epoch
    /// whose snapshot lists the action is durable, and again by recovery for every
    /// action of the epoch it restores: doing it again after it succeeded (or after a
    /// crash part way) must be a no-op. An error fails the epoch's checkpoint: the
    /// job restarts, and the restart redoes the action.
    fn commit(&self, action: &Self::Action) -> Result<(), SinkError>;

    /// Discards the staged output `action` names: its epoch will never complete (the
    /// job rolled back to an earlier epoch, whose replay stages that output again).
    /// Never called for an action of the epoch being restored or of any epoch
    /// before it, but it may be called for an action whose output a crash or an
    /// earlier sweep already discarded: like `commit`, it must tolerate being done
    /// twice. An error fails the restart.
    fn abort(&self, action: &Self::Action) -> Result<(), SinkError>;
}

/// Makes the transactional sink of each partition of the last stage, and the stage's
/// committer.
pub trait TwoPhaseCommitSinkFactory<T>: Send + 'static {
    /// The per-partition sink.
    type Sink: TwoPhaseCommitSink<T>;
    /// What commits and aborts the partitions' actions.
    type Committer: Committer<Action = <Self::Sink as TwoPhaseCommitSink<T>>::Action>;

    /// A short name for the stage name.
    fn name(&self) -> String;

    /// The sink of partition `partition` of `parallelism`.
    fn create(&self, partition: u32, parallelism: u32) -> Result<Self::Sink, SinkError>;

    /// The stage's committer. Called once, when the job is built; it lives as long
    /// as the job runs, across restarts.
    fn committer(&self) -> Self::Committer;

    /// Called before each run and each restart, after recovery redid the restored
    /// epoch's actions and aborted those of later epochs this process knew of, and
    /// before any partition's sink is created: discard whatever is still staged for
    /// epochs after `recovery.restored` (a process that died left it, and nothing
    /// will commit it), retract output published after it if the sink can (the run
    /// restarts from an earlier point), and learn where the job keeps its files.
    /// Does nothing by default.
    fn recover(&self, _recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}
