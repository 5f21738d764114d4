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
    /// The positions in `stages` of the job's source stages (a job graph may read
    /// several sources).
    pub sources: Vec<usize>,
    /// Restarts after failures (each from the last complete epoch).
    pub restarts: u32,
    /// Checkpoints of the whole run, across its attempts (restarts).
    pub checkpoints: CheckpointSummary,
    /// The savepoint a stop-with-savepoint took, if the job stopped that way.
    pub savepoint: Option<std::path::PathBuf>,
    /// The epoch the last attempt restored (a checkpoint or savepoint), if any.
    pub restored_from: Option<u64>,
}

/// Checkpoint figures of a run: the counts, the last and the largest epochs, and
/// the newest epochs' outcomes, as the status API shows them (one source).
pub type CheckpointSummary = weir_actors::checkpoint::CheckpointFigures;

impl JobReport {
    /// Records the sources emitted, over every source stage.
    pub fn records_read(&self) -> u64 {
        self.sources
            .iter()
            .filter_map(|&i| self.stages.get(i))
            .map(|s| s.records_in)
            .sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, records_in: u64) -> StageSummary {
        StageSummary {
            name: name.into(),
            parallelism: 2,
            records_in,
            records_out: records_in,
            busy: Duration::ZERO,
            send_wait: Duration::ZERO,
        }
    }

    #[test]
    fn records_read_counts_every_source_stage_of_a_graph() {
        // Two sources (stages 0 and 2) feeding a join (stage 1) and a sink (3).
        let report = JobReport {
            job: "graph".into(),
            elapsed: Duration::ZERO,
            stages: vec![
                stage("source:a", 100),
                stage("join", 130),
                stage("source:b", 30),
                stage("sink", 130),
            ],
            sources: vec![0, 2],
            restarts: 0,
            checkpoints: CheckpointSummary::default(),
            savepoint: None,
            restored_from: None,
        };
        assert_eq!(report.records_read(), 130);
    }
}
