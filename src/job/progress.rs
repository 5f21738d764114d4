//! Live progress of a running job: what the stages did so far, printed on stderr and
//! handed to observers (tests, the demo).

use std::sync::Arc;
use std::time::Duration;

use weir_actors::{ActorStats, StatsSnapshot};

/// The counters of every actor of a running job at one moment.
#[derive(Debug, Clone)]
pub struct LiveStats {
    /// Time since the job started.
    pub elapsed: Duration,
    /// Per stage: its name and its actors' counters (the main pipeline's stages
    /// first, then those of branches).
    pub stages: Vec<(String, Vec<StatsSnapshot>)>,
    /// Which stages read the job's input and which write its output.
    pub roles: StageRoles,
}

/// Which stages of a job read its input (its sources) and which write its output
/// (the stages none of whose outputs feeds another stage, side outputs' readers
/// aside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageRoles {
    /// The source stages.
    pub sources: Vec<usize>,
    /// The sink stages.
    pub sinks: Vec<usize>,
}

impl LiveStats {
    pub(crate) fn read(
        elapsed: Duration,
        stages: &[(String, Vec<Arc<ActorStats>>)],
        roles: &StageRoles,
    ) -> Self {
        LiveStats {
            elapsed,
            roles: roles.clone(),
            stages: stages
                .iter()
                .map(|(name, actors)| (name.clone(), actors.iter().map(|a| a.snapshot()).collect()))
                .collect(),
        }
    }

    /// Records the sources emitted so far.
    pub fn records_read(&self) -> u64 {
        self.sum_in(&self.roles.sources)
    }

    /// Records the job's sink stages received so far.
    pub fn records_written(&self) -> u64 {
        self.sum_in(&self.roles.sinks)
    }

    /// The records `stages` received (a source's: read).
    fn sum_in(&self, stages: &[usize]) -> u64 {
        stages
            .iter()
            .filter_map(|&i| self.stages.get(i))
            .map(|(_, a)| a.iter().map(|s| s.records_in).sum::<u64>())
            .sum()
    }
}

/// Prints one progress line per interval on stderr: records read, the rate since the
/// last line, records written, and the share of time the sources were blocked.
pub(crate) struct ProgressPrinter {
    last_read: u64,
    last_at: Duration,
}

impl ProgressPrinter {
    pub fn new() -> Self {
        ProgressPrinter {
            last_read: 0,
            last_at: Duration::ZERO,
        }
    }

    pub fn print(&mut self, job: &str, live: &LiveStats) {
        let read = live.records_read();
        let dt = (live.elapsed - self.last_at).as_secs_f64().max(1e-9);
        let rate = (read - self.last_read.min(read)) as f64 / dt;
        let blocked = live.stages.first().map_or(0.0, |(_, a)| {
            let wait: f64 = a.iter().map(|s| s.send_wait.as_secs_f64()).sum();
            wait / (live.elapsed.as_secs_f64() * a.len().max(1) as f64).max(1e-9)
        });
        if crate::console::is_json() {
            tracing::info!(target: "weir::progress", job, elapsed_s = live.elapsed.as_secs_f64(),
                read, rate_per_s = rate, written = live.records_written(),
                sources_blocked = blocked, "progress");
        } else {
            eprintln!(
                "[weir] {job}: {:>6.1}s  read {:>12}  ({:>10}/s)  written {:>12}  sources blocked {:>3.0}%",
                live.elapsed.as_secs_f64(),
                read,
                human(rate),
                live.records_written(),
                100.0 * blocked
            );
        }
        self.last_read = read;
        self.last_at = live.elapsed;
    }
}

/// `1234567.0` as `1.23 M`.
pub fn human(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
