//! The sink API.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error, with what was being written.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure.
    #[error("{0}")]
    Failed(String),
    /// The Kafka sink failed.
    #[error(transparent)]
    Kafka(#[from] crate::connector::kafka::KafkaSinkError),
}

/// Work a transactional sink asks for once an epoch is complete (its manifest is
/// committed): making output staged during the epoch visible.
///
/// Actions are recorded in the epoch's snapshot, so recovery redoes the actions of
/// the epoch it restores (a crash may fall between the manifest commit and the
/// action). Every action is therefore idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommitAction {
    /// Rename the staged file `staged` to `visible`. Already done when `staged` is
    /// gone and `visible` exists.
    PublishFile {
        /// The staged file, written and synced before the barrier was acknowledged.
        staged: PathBuf,
        /// Its final name.
        visible: PathBuf,
    },
    /// Commit (or redo from its staged copy) one Kafka transaction of an
    /// exactly-once Kafka sink partition. Already done when the transactional id's
    /// newest committed marker is of this epoch or later.
    Kafka(Box<crate::connector::kafka::KafkaCommit>),
}

/// One partition's sink: receives the records of one partition actor.
///
/// A plain sink writes as records come (at-least-once under recovery); a
/// transactional sink stages what it receives per epoch in
/// [`pre_commit`](Sink::pre_commit) and makes it visible only through the
/// [`CommitAction`]s it returns, which run once the epoch is complete (exactly-once).
pub trait Sink<T>: Send + 'static {
    /// Writes one record.
    fn write(&mut self, item: T) -> Result<(), SinkError>;
    /// The input has ended: write out what is buffered. (A transactional sink's last
    /// output is then staged by a final [`pre_commit`](Sink::pre_commit).)
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// An epoch barrier reached the sink: everything written before it belongs to the
    /// snapshot being taken. Returns the actions that make that output visible once
    /// the epoch completes, including those of earlier epochs not yet known complete
    /// (an epoch may be abandoned). A plain sink flushes and returns none.
    fn pre_commit(&mut self, _epoch: u64) -> Result<Vec<CommitAction>, SinkError> {
        Ok(Vec::new())
    }
    /// Epoch `epoch` is complete and the actions returned up to it were applied.
    fn committed(&mut self, _epoch: u64) {}
}

/// Makes the sink of each partition of the last stage.
pub trait SinkFactory<T>: Send + 'static {
    /// The per-partition sink.
    type Sink: Sink<T>;
    /// A short name for the stage name.
    fn name(&self) -> String;
    /// The sink of partition `partition` of `parallelism`.
    fn create(&self, partition: u32, parallelism: u32) -> Result<Self::Sink, SinkError>;
    /// Called once per run before any partition's sink is created, after recovery has
    /// redone the [`CommitAction`]s of the restored epoch: a transactional sink
    /// discards output staged by a run that did not complete its epoch, retracts
    /// output published after the restored epoch, and learns where the job keeps
    /// its files.
    fn recover(&self, _recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// What a sink is told before each run of its job.
#[derive(Debug, Clone, Copy)]
pub struct SinkRecovery<'a> {
    /// The epoch the run restores (`None` for a run from the beginning).
    pub restored: Option<u64>,
    /// The directory the job keeps its state and snapshots in (a temporary one for
    /// a checkpointed job given no state directory); `None` when it keeps none. A
    /// sink's own durable files (staged output, commit ledgers) belong inside it.
    pub state_dir: Option<&'a Path>,
}

impl CommitAction {
    /// Performs the action; doing it again after it succeeded is a no-op.
    pub fn apply(&self) -> Result<(), SinkError> {
        match self {
            CommitAction::PublishFile { staged, visible } => publish_file(staged, visible),
            CommitAction::Kafka(commit) => Ok(commit.apply()?),
        }
    }
}

/// Renames `staged` to `visible` and syncs the directory, unless that already happened.
fn publish_file(staged: &PathBuf, visible: &PathBuf) -> Result<(), SinkError> {
    let io = |what: &PathBuf| {
        let what = what.display().to_string();
        move |source| SinkError::Io { what, source }
    };
    if !staged.exists() {
        if visible.exists() {
            return Ok(());
        }
        return Err(SinkError::Failed(format!(
            "cannot publish {}: neither it nor its staged file {} exists",
            visible.display(),
            staged.display()
        )));
    }
    std::fs::rename(staged, visible).map_err(io(visible))?;
    if let Some(dir) = visible.parent() {
        #[cfg(unix)]
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir.to_path_buf()))?;
    }
    Ok(())
}
