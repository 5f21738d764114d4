//! What the status API reports: the JSON shapes of `/api/jobs`.
//!
//! Times are milliseconds; wall-clock instants are milliseconds since the Unix
//! epoch. Ratios (backpressure, busy) are between 0 and 1.

use serde::Serialize;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Restoring state and spawning actors (before the first attempt runs).
    Created,
    /// Every actor of the current attempt is running.
    Running,
    /// The last attempt failed; the job waits for its restart delay, restores and
    /// spawns again.
    Restarting,
    /// The input ended and the final epoch committed (or it stopped with a
    /// savepoint).
    Finished,
    /// The job stopped with an error (restarts exhausted, or a failure no restart
    /// cures).
    Failed,
    /// The job was cancelled from outside (its snapshots stay: a new run resumes
    /// from the newest complete epoch).
    Cancelled,
}

impl JobState {
    /// The state as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Running => "running",
            JobState::Restarting => "restarting",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// What a stage starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// A source: its actors read splits.
    Source,
    /// A keyed operator: its actors own ranges of key partitions.
    Keyed,
}

/// How records reach a stage from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// The main output, through a key exchange.
    Data,
    /// A side output (for example a window's late records) feeding a branch.
    Side,
}

/// One edge of the job graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The sending stage's index.
    pub from: u32,
    /// The receiving stage's index.
    pub to: u32,
    /// Main or side output.
    pub kind: EdgeKind,
    /// How records are spread over the receiving stage's partitions: `key`,
    /// `forward`, `rebalance`, `broadcast` or `side`.
    pub partitioning: &'static str,
}

/// One partition actor of a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionStatus {
    /// The actor's index within its stage.
    pub index: u32,
    /// Records received (a source: read) in the current attempt.
    pub records_in: u64,
    /// Records emitted in the current attempt.
    pub records_out: u64,
    /// Batches waiting in its mailbox now.
    pub mailbox_depth: usize,
    /// Its mailbox's capacity in batches.
    pub mailbox_capacity: usize,
    /// Share of the last sampling window it spent waiting on full mailboxes
    /// downstream.
    pub backpressure: f64,
    /// Share of the last sampling window it spent running its task.
    pub busy: f64,
    /// The last event-time watermark it sent downstream (ms), if any.
    pub watermark_ms: Option<i64>,
}

/// One stage of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageStatus {
    /// Its index (the main pipeline's stages first, then the branches').
    pub index: u32,
    /// Its name, made of the operators it runs.
    pub name: String,
    /// What it starts with.
    pub kind: StageKind,
    /// Its partition actors.
    pub parallelism: u32,
    /// Records received by all its actors in the current attempt.
    pub records_in: u64,
    /// Records emitted by all its actors in the current attempt.
    pub records_out: u64,
    /// Records received per second over the last sampling window.
    pub records_in_per_second: f64,
    /// Records emitted per second over the last sampling window.
    pub records_out_per_second: f64,
    /// The highest backpressure ratio of its actors (as Flink reports a task's).
    pub backpressure: f64,
    /// `ok` (at most 10 %), `low` (at most 50 %) or `high`.
    pub backpressure_level: &'static str,
    /// The highest busy ratio of its actors.
    pub busy: f64,
    /// The lowest watermark its actors sent (ms): the stage's event-time progress.
    pub watermark_ms: Option<i64>,
    /// Its actors.
    pub partitions: Vec<PartitionStatus>,
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointRecord {
    /// The epoch number.
    pub epoch: u64,
    /// `completed`, `abandoned` (timed out) or `failed`.
    pub outcome: &'static str,
    /// From trigger to outcome.
    pub duration_ms: f64,
    /// Bytes stored.
    pub bytes: u64,
    /// Longest barrier alignment.
    pub alignment_ms: f64,
    /// When it ended (ms since the Unix epoch).
    pub finished_at_ms: u64,
    /// A savepoint was taken at this epoch.
    pub savepoint: bool,
    /// The final epoch at the end of input.
    pub is_final: bool,
}

/// Checkpoints of the current attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct CheckpointStatus {
    /// Periodic checkpoints are on.
    pub enabled: bool,
    /// Time between two checkpoints.
    pub interval_ms: Option<u64>,
    /// Epochs completed.
    pub completed: u64,
    /// Epochs abandoned or failed.
    pub failed: u64,
    /// The last completed epoch.
    pub last_epoch: Option<u64>,
    /// Trigger-to-manifest time of the last completed epoch.
    pub last_duration_ms: f64,
    /// Bytes stored for the last completed epoch.
    pub last_bytes: u64,
    /// The newest finished epochs, oldest first.
    pub history: Vec<CheckpointRecord>,
}

/// A savepoint taken while the node ran the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavepointRecord {
    /// Its directory (what `--from-savepoint` takes).
    pub path: String,
    /// When it completed (ms since the Unix epoch).
    pub taken_at_ms: u64,
}

/// Everything the API says about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Where it is in its life.
    pub state: JobState,
    /// When the node started it (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// Time since then, or its whole run time once it ended.
    pub elapsed_ms: u64,
    /// Key partitions `P`.
    pub key_partitions: u32,
    /// The current attempt, from 1 (a restart starts the next).
    pub attempt: u32,
    /// Restarts after failures so far.
    pub restarts: u32,
    /// Why the last attempt failed, if one did.
    pub last_failure: Option<String>,
    /// The epoch the current attempt restored from (a checkpoint or savepoint).
    pub restored_from_epoch: Option<u64>,
    /// Its stages, by index.
    pub stages: Vec<StageStatus>,
    /// The edges between them.
    pub edges: Vec<Edge>,
    /// Its checkpoints.
    pub checkpoints: CheckpointStatus,
    /// Savepoints taken so far, oldest first.
    pub savepoints: Vec<SavepointRecord>,
}

/// Now, in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
