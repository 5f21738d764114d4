//! What a finished job reports.

use std::time::Duration;

use weir_actors::StatsSnapshot;

/// Totals of one stage over a whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSummary {
    /// The stage's name.
    pub name: String,
    /// Its partition actors.
    pub parallelism: u32,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Time its actors spent running, summed.
    pub busy: Duration,
    /// Time its actors spent waiting on full mailboxes downstream, summed.
    pub send_wait: Duration,
}

impl StageSummary {
    /// Sums the counters of a stage's actors.
    pub fn from_snapshots(name: &str, snaps: &[StatsSnapshot]) -> Self {
        StageSummary {
            name: name.to_string(),
            parallelism: snaps.len() as u32,
            records_in: snaps.iter().map(|s| s.records_in).sum(),
            records_out: snaps.iter().map(|s| s.records_out).sum(),
            busy: snaps.iter().map(|s| s.busy).sum(),
            send_wait: snaps.iter().map(|s| s.send_wait).sum(),
        }
    }
}

/// The outcome of a job that finished.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// The job's name.
    pub job: String,
    /// Wall time from start to finish, start-up included.
    pub elapsed: Duration,
    /// Per-stage totals, in stage order.
    pub stages: Vec<StageSummary>,
    /// Restarts after failures (each from the last complete epoch).
    pub restarts: u32,
    /// Checkpoints of the whole run, across its attempts (restarts).
    pub checkpoints: CheckpointSummary,
    /// The savepoint a stop-with-savepoint took, if the job stopped that way.
    pub savepoint: Option<std::path::PathBuf>,
    /// The epoch the last attempt restored (a checkpoint or savepoint), if any.
    pub restored_from: Option<u64>,
}

/// Checkpoint counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Epochs completed (the final commit at the end of input included).
    pub completed: u64,
    /// Epochs abandoned or failed.
    pub failed: u64,
    /// The last completed epoch (0 for none).
    pub last_epoch: u64,
    /// Trigger-to-manifest time of the last completed epoch.
    pub last_duration: Duration,
    /// Bytes stored for the last completed epoch.
    pub last_bytes: u64,
    /// Longest barrier alignment of the last completed epoch.
    pub last_alignment: Duration,
    /// Trigger-to-manifest time of the slowest periodic epoch (the final one at the
    /// end of input not counted).
    pub longest_duration: Duration,
    /// Bytes stored for the largest periodic epoch.
    pub largest_bytes: u64,
}

impl CheckpointSummary {
    /// Reads the run's checkpoint figures (all at the same moment).
    pub fn read(stats: &weir_actors::checkpoint::CheckpointStats) -> Self {
        let f = stats.figures();
        CheckpointSummary {
            completed: f.completed,
            failed: f.failed,
            last_epoch: f.last_epoch,
            last_duration: f.last_duration,
            last_bytes: f.last_bytes,
            last_alignment: f.last_alignment,
            longest_duration: f.longest_duration,
            largest_bytes: f.largest_bytes,
        }
    }
}

impl JobReport {
    /// Records the sources emitted.
    pub fn records_read(&self) -> u64 {
        self.stages.first().map_or(0, |s| s.records_in)
    }
}

impl std::fmt::Display for JobReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "job '{}' finished in {secs:.2} s", self.job)?;
        for s in &self.stages {
            let wall = secs * f64::from(s.parallelism.max(1));
            writeln!(
                f,
                "  stage '{}' x{}: in {}, out {}, busy {:.0}%, blocked on backpressure {:.0}%",
                s.name,
                s.parallelism,
                s.records_in,
                s.records_out,
                100.0 * s.busy.as_secs_f64() / wall.max(1e-9),
                100.0 * s.send_wait.as_secs_f64() / wall.max(1e-9),
            )?;
        }
        Ok(())
    }
}
