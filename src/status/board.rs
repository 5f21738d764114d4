//! The board a running node writes its job's status on and the status server reads.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use weir_actors::checkpoint::CheckpointStats;

use crate::job::node::SavepointCommand;
use crate::job::progress::LiveStats;

use super::error::StatusError;
use super::model::{
    unix_ms, CheckpointStatus, Edge, JobState, JobStatus, SavepointRecord, StageKind, StageStatus,
};
use super::sampler::{backpressure_level, checkpoint_status, Sampler};

/// Shared between the node (writer) and the status server (reader); cheap to clone.
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The job the node runs, or ran last.
    job: Mutex<Option<JobStatus>>,
    /// Where savepoint requests go while a job listens for them.
    savepoints: Mutex<Option<mpsc::Sender<SavepointCommand>>>,
}

/// Locks `m`, taking the data of a poisoned lock as it is: the status is a report,
/// and a panic elsewhere must not hide it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StatusBoard {
    /// An empty board (no job yet).
    pub fn new() -> Self {
        StatusBoard::default()
    }

    /// A copy of the current (or last) job's status.
    pub fn job(&self) -> Option<JobStatus> {
        lock(&self.inner.job).clone()
    }

    /// A channel for savepoint requests made through the board; the node reads the
    /// receiver ([`crate::job::RunControl::savepoints`]). A later call replaces the
    /// earlier channel.
    pub fn savepoint_requests(&self) -> mpsc::Receiver<SavepointCommand> {
        let (tx, rx) = mpsc::channel();
        *lock(&self.inner.savepoints) = Some(tx);
        rx
    }

    /// Asks the running job `job` for a savepoint (and to stop after it when
    /// `stop`); the returned receiver hears its path, or why it failed.
    pub fn request_savepoint(
        &self,
        job: &str,
        stop: bool,
    ) -> Result<mpsc::Receiver<Result<PathBuf, String>>, StatusError> {
        match self.job() {
            Some(j) if j.name == job => {
                if j.state != JobState::Running {
                    return Err(StatusError::NotRunning {
                        job: j.name,
                        state: j.state.as_str().to_string(),
                    });
                }
            }
            _ => return Err(StatusError::NoSuchJob(job.to_string())),
        }
        let (reply, rx) = mpsc::channel();
        let sent = lock(&self.inner.savepoints).as_ref().map(|tx| {
            tx.send(SavepointCommand {
                stop,
                reply: Some(reply),
            })
        });
        match sent {
            Some(Ok(())) => Ok(rx),
            _ => Err(StatusError::NoSavepoints(job.to_string())),
        }
    }

    /// A new job: its graph, before anything runs.
    pub(crate) fn job_created(&self, job: JobStatus) {
        *lock(&self.inner.job) = Some(job);
    }

    /// Changes the job's status in place.
    pub(crate) fn update(&self, change: impl FnOnce(&mut JobStatus)) {
        if let Some(job) = lock(&self.inner.job).as_mut() {
            change(job);
        }
    }

    /// A savepoint completed at `path`.
    pub(crate) fn savepoint_taken(&self, path: &std::path::Path) {
        self.update(|j| {
            j.savepoints.push(SavepointRecord {
                path: path.display().to_string(),
                taken_at_ms: unix_ms(),
            })
        });
    }
}

impl JobStatus {
    /// A job about to start: its stages (`name`, kind, parallelism) and edges, with
    /// no counters yet.
    pub(crate) fn created(
        name: &str,
        key_partitions: u32,
        stages: Vec<(String, StageKind, u32)>,
        edges: Vec<Edge>,
        checkpoint_interval: Option<Duration>,
    ) -> Self {
        JobStatus {
            name: name.to_string(),
            state: JobState::Created,
            started_at_ms: unix_ms(),
            elapsed_ms: 0,
            key_partitions,
            attempt: 1,
            restarts: 0,
            last_failure: None,
            restored_from_epoch: None,
            stages: stages
                .into_iter()
                .enumerate()
                .map(|(i, (name, kind, parallelism))| StageStatus {
                    index: i as u32,
                    name,
                    kind,
                    parallelism,
                    records_in: 0,
                    records_out: 0,
                    records_in_per_second: 0.0,
                    records_out_per_second: 0.0,
                    backpressure: 0.0,
                    backpressure_level: backpressure_level(0.0),
                    busy: 0.0,
                    watermark_ms: None,
                    partitions: Vec::new(),
                })
                .collect(),
            edges,
            checkpoints: CheckpointStatus {
                enabled: checkpoint_interval.is_some(),
                interval_ms: checkpoint_interval.map(|i| i.as_millis() as u64),
                ..CheckpointStatus::default()
            },
            savepoints: Vec::new(),
        }
    }
}

/// What one attempt of a job publishes on the board: the live counters through a
/// [`Sampler`], and its checkpoints.
pub(crate) struct AttemptFeed {
    board: StatusBoard,
    sampler: Sampler,
    checkpoints: Arc<CheckpointStats>,
    interval: Option<Duration>,
    started_at_ms: u64,
}

impl AttemptFeed {
    /// The feed of an attempt whose checkpoints are counted in `checkpoints`.
    pub fn new(
        board: StatusBoard,
        checkpoints: Arc<CheckpointStats>,
        interval: Option<Duration>,
    ) -> Self {
        let started_at_ms = board.job().map_or_else(unix_ms, |j| j.started_at_ms);
        AttemptFeed {
            board,
            sampler: Sampler::new(),
            checkpoints,
            interval,
            started_at_ms,
        }
    }

    /// The board it publishes on.
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// Publishes `live` and the checkpoint counters, and sets the state to `state`
    /// when given.
    pub fn publish(&mut self, live: &LiveStats, state: Option<JobState>) {
        let checkpoints = checkpoint_status(&self.checkpoints, self.interval);
        let elapsed_ms = unix_ms().saturating_sub(self.started_at_ms);
        let sampler = &mut self.sampler;
        self.board.update(|j| {
            let kinds: Vec<StageKind> = j.stages.iter().map(|s| s.kind).collect();
            j.stages = sampler.stages(live, &kinds);
            j.checkpoints = checkpoints;
            if let Some(state) = state {
                j.state = state;
            }
            j.elapsed_ms = elapsed_ms;
        });
    }
}
