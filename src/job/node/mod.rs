//! The node: the root of the supervision tree. It owns the worker threads and the
//! state store, and runs jobs to completion.
//!
//! This module holds the [`Node`] itself and its public face; the run is split by
//! concern: `control` (how a run is controlled from outside), `restart_loop` (the
//! attempts of a run and the restart strategy between them), `recovery` (finishing a
//! run that stopped in its final commit), `attempt` (one attempt, from spawning to
//! the report), `spawn` (spawning the graph's stages, receivers first), `watch` (waiting on a running attempt), `status` (what the status
//! board and the metrics are told), `savepoint` and `signals`, and `temporary_dir`.

use std::sync::Arc;

use weir_actors::state::{Clock, StateStore, StoreConfig, SystemClock};
use weir_actors::ActorStats;

use crate::connector::DeadLetters;
use crate::status::{JobState, StatusBoard};

use super::builder::Job;
use super::error::JobError;
use super::options::EngineOptions;
use super::plan::StagePlan;
use super::report::JobReport;

mod attempt;
mod control;
mod recovery;
mod restart_loop;
mod savepoint;
mod signals;
mod spawn;
mod status;
mod temporary_dir;
mod watch;

pub use control::{Observer, RunControl};
pub use savepoint::SavepointCommand;
pub(crate) use temporary_dir::TemporaryDir;

/// One weir node: worker threads, a state store and the jobs it runs.
pub struct Node {
    options: EngineOptions,
    store: StateStore,
    clock: Arc<dyn Clock>,
    dead_letters: DeadLetters,
    status: StatusBoard,
}

impl Node {
    /// A node with `options`; opens (or creates) its state store.
    pub fn new(options: EngineOptions) -> Result<Self, JobError> {
        let config = StoreConfig {
            cache_entries: options.state_cache_entries,
            sled_cache_bytes: options.sled_cache_bytes,
        };
        let store = match &options.state_dir {
            Some(dir) => StateStore::open(&dir.join("state.sled"), config)?,
            None => StateStore::temporary(config)?,
        };
        Ok(Node {
            options,
            store,
            clock: Arc::new(SystemClock),
            dead_letters: DeadLetters::to_log(),
            status: StatusBoard::default(),
        })
    }

    /// Replaces the processing-time clock: what state TTL, processing-time timers
    /// and windows, and `KeyedContext::processing_time` read (for deterministic
    /// tests, with a [`weir_actors::state::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where poison records go (default: the log).
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    /// Where the node's poison records go.
    pub fn dead_letters(&self) -> DeadLetters {
        self.dead_letters.clone()
    }

    /// The node's options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The node's state store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// What the node's jobs are doing and did: the board the status API serves
    /// (`crate::status`), updated every tick of a running job (at most 100 ms) and
    /// at each change of state; a clone stays live.
    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// Runs `job` until its input ends (or it fails).
    pub fn run(&self, job: Job) -> Result<JobReport, JobError> {
        self.run_with(job, RunControl::default())
    }

    /// Runs `job` under `control`: restores it from its newest complete epoch (or
    /// the savepoint in the options), runs it, and on a failure restarts it from
    /// the last complete epoch for as long as the restart strategy allows.
    pub fn run_with(&self, job: Job, control: RunControl) -> Result<JobReport, JobError> {
        let board = self.status.for_job(&job.name());
        let result = self.run_job(job, control);
        board.ended();
        {
            board.update(|j| match &result {
                Ok(report) => {
                    j.state = JobState::Finished;
                    j.restarts = report.restarts;
                }
                Err(JobError::Failed(weir_actors::JobFailure::Cancelled { .. })) => {
                    j.state = JobState::Cancelled;
                }
                Err(e) => {
                    j.state = JobState::Failed;
                    j.last_failure = Some(e.to_string());
                }
            });
        }
        result
    }

    /// How many partition actors `plan` gets: the configured parallelism, capped by
    /// what the stage allows.
    fn parallelism_of(&self, plan: &dyn StagePlan) -> u32 {
        let p = self.options.parallelism;
        plan.max_parallelism().map_or(p, |m| m.min(p)).max(1)
    }
}

/// A stage's name and the counters of its actors.
type StageStats = (String, Vec<Arc<ActorStats>>);
