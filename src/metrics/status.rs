//! The latest figures of each job a node runs, readable from any thread: what a
//! status API or page shows, from the same copies the Prometheus exporter publishes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::job::progress::LiveStats;
use crate::job::report::CheckpointSummary;

/// One job's figures at its last publish.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// The job's name.
    pub job: String,
    /// Whether an attempt of the job is running (false once it finished, failed or
    /// is waiting to restart).
    pub running: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// Per stage and partition actor: the counters of the current (or last) attempt.
    pub live: LiveStats,
    /// Checkpoints of the current (or last) attempt.
    pub checkpoints: CheckpointSummary,
    /// When these figures were taken.
    pub updated: SystemTime,
}

/// The latest [`JobStatus`] of every job a node ran, by job name. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    jobs: Arc<RwLock<BTreeMap<String, JobStatus>>>,
}

impl StatusBoard {
    /// The status of job `job`, if the node ran it.
    pub fn job(&self, job: &str) -> Option<JobStatus> {
        let jobs = match self.jobs.read() {
            Ok(jobs) => jobs,
            Err(poisoned) => poisoned.into_inner(),
        };
        jobs.get(job).cloned()
    }

    /// Every job's status, by name.
    pub fn jobs(&self) -> Vec<JobStatus> {
        let jobs = match self.jobs.read() {
            Ok(jobs) => jobs,
            Err(poisoned) => poisoned.into_inner(),
        };
        jobs.values().cloned().collect()
    }

    pub(crate) fn update(&self, status: JobStatus) {
        let mut jobs = match self.jobs.write() {
            Ok(jobs) => jobs,
            Err(poisoned) => poisoned.into_inner(),
        };
        jobs.insert(status.job.clone(), status);
    }
}
