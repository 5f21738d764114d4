//! `weir bench`: the workloads of `shared/bench/WORKLOADS.md`, run exactly as defined,
//! checked, and reported as one JSON line.

pub mod kafka;
pub mod rss;
pub mod w1;
pub mod w2;

use serde::Serialize;

/// The result line every benchmark prints last.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchResult {
    /// "w1" or "w2".
    pub workload: String,
    /// Records in the workload.
    pub n: u64,
    /// Partition actors per stage.
    pub parallelism: u32,
    /// Whether checkpoints were taken.
    pub checkpointing: bool,
    /// Periodic checkpoints completed during the run (the final commit at the end of
    /// input not counted).
    pub checkpoints_completed: u64,
    /// Trigger-to-durable time of the slowest periodic checkpoint, in milliseconds.
    pub checkpoint_longest_ms: f64,
    /// Bytes written by the largest periodic checkpoint (incremental chunks).
    pub checkpoint_largest_bytes: u64,
    /// Wall time of the whole job, start-up included.
    pub seconds: f64,
    /// `n / seconds`.
    pub records_per_sec: f64,
    /// Peak resident memory of the process, when the platform reports it.
    pub peak_rss_bytes: Option<u64>,
    /// "passed" or "failed".
    pub check: String,
}

impl BenchResult {
    /// Times `run` (which builds and runs the job on a new node) and fills in the
    /// result line; `check` then says whether the job's output is right.
    pub fn measure<T>(
        workload: &str,
        options: crate::job::EngineOptions,
        n: u64,
        run: impl FnOnce(crate::job::Node) -> Result<(T, crate::job::JobReport), crate::job::JobError>,
        check: impl FnOnce(T) -> Result<(), String>,
    ) -> Result<BenchResult, crate::job::JobError> {
        let parallelism = options.parallelism;
        let checkpointing = options.checkpoint.interval.is_some();
        let started = std::time::Instant::now();
        let (output, report) = run(crate::job::Node::new(options)?)?;
        let seconds = started.elapsed().as_secs_f64();
        let check = match check(output) {
            Ok(()) => "passed".to_string(),
            Err(why) => {
                eprintln!("{} check failed: {why}", workload.to_uppercase());
                "failed".to_string()
            }
        };
        Ok(BenchResult {
            workload: workload.into(),
            n,
            parallelism,
            checkpointing,
            checkpoints_completed: report.checkpoints.completed.saturating_sub(1),
            checkpoint_longest_ms: report.checkpoints.longest_duration.as_secs_f64() * 1e3,
            checkpoint_largest_bytes: report.checkpoints.largest_bytes,
            seconds,
            records_per_sec: n as f64 / seconds.max(1e-9),
            peak_rss_bytes: rss::peak_rss_bytes(),
            check,
        })
    }

    /// Whether the workload's check passed.
    pub fn passed(&self) -> bool {
        self.check == "passed"
    }

    /// The JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
