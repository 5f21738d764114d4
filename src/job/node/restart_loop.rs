//! The restart loop: freezes a job's graph, then runs its attempts, each restored
//! from the last complete epoch, until one finishes or the restart strategy gives up.

use std::sync::Arc;
use std::time::Instant;

use weir_actors::checkpoint::CheckpointStats;
use weir_actors::runtime::Runtime;
use weir_actors::snapshot::SnapshotStore;
use weir_actors::JobFailure;

use crate::connector::SinkRecovery;
use crate::job::builder::Job;
use crate::job::commits::StageCommitters;
use crate::job::error::JobError;
use crate::job::poison::PoisonBoard;
use crate::job::recovery::{self, ResumePoint};
use crate::job::report::JobReport;
use crate::job::restart::{RestartDecision, RestartTracker};
use crate::metrics::JobMetrics;
use crate::status::JobState;

use super::attempt::AttemptSetup;
use super::{Node, RunControl, TemporaryDir};

impl Node {
    /// [`Node::run_with`] without the final status.
    pub(super) fn run_job(&self, job: Job, mut control: RunControl) -> Result<JobReport, JobError> {
        let plan = job.freeze()?;
        let name = plan.name.clone();
        let plan_error = |reason: String| JobError::Plan {
            job: name.clone(),
            reason,
        };
        let opts = &self.options;
        if opts.parallelism > opts.key_partitions {
            return Err(plan_error(format!(
                "parallelism {} is above the number of key partitions {}",
                opts.parallelism, opts.key_partitions
            )));
        }
        // Every stage with its index.
        let indexed: Vec<(u32, &dyn crate::job::plan::StagePlan)> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, stage)| (i as u32, stage.as_ref()))
            .collect();
        let stage_names: Vec<String> = indexed.iter().map(|(_, p)| p.name()).collect();
        // Where each transactional sink stage's commit actions go: after an epoch
        // completes, and when recovery redoes them.
        let committers = StageCommitters::of(&indexed);
        let _state_usage = self.start_state_usage(&name, &indexed, &stage_names)?;
        let board = self.status.for_job(&name);
        self.publish_graph(&board, &name, &plan);
        // One record of the run's checkpoints, across its attempts: the coordinators
        // count into it, the checkpoint metrics are recorded from it, and the status
        // API reads it.
        let checkpoint_stats = Arc::new(CheckpointStats::default());
        board.count_checkpoints(checkpoint_stats.clone());
        if control.savepoints.is_none() {
            control.savepoints = Some(board.savepoint_requests());
        }

        let checkpointing = opts.checkpoint.interval.is_some();
        let (snapshots, temporary): (Option<Arc<dyn SnapshotStore>>, _) =
            match (&opts.snapshot_store, &opts.state_dir) {
                (Some(spec), _) if checkpointing || opts.from_savepoint.is_some() => {
                    (Some(recovery::open_shared_store(spec)?), None)
                }
                (_, Some(dir)) => (
                    Some(recovery::open_store(&recovery::snapshot_dir(dir))?),
                    None,
                ),
                (_, None) if checkpointing || opts.from_savepoint.is_some() => {
                    let tmp = TemporaryDir::new("snapshots", &name)?;
                    (Some(recovery::open_store(tmp.path())?), Some(tmp))
                }
                (_, None) => (None, None),
            };
        if let Some(store) = &snapshots {
            // This run is now the job's only manifest writer: an earlier writer of a
            // shared store (a deposed node) can no longer commit.
            store.claim(&name).map_err(|e| {
                JobError::Runtime(format!("snapshot store: claiming job {name}: {e}"))
            })?;
        }
        let mut restarts = RestartTracker::new(opts.restart.clone());
        let mut savepoint = opts.from_savepoint.clone();
        let mut poison = PoisonBoard::new(
            opts.poison.enabled,
            opts.poison.replays,
            self.dead_letters.clone(),
        );
        let system = Runtime::new();
        let started = Instant::now();
        let mut metrics = JobMetrics::new(&name);
        loop {
            let attempt_started = Instant::now();
            metrics.start_attempt();
            let manifest = match (&snapshots, savepoint.take()) {
                (Some(store), Some(path)) => {
                    Some(recovery::import_savepoint(&path, store.as_ref(), &name)?)
                }
                (Some(store), None) => match recovery::resume_point(store.as_ref(), &name)? {
                    ResumePoint::Beginning => None,
                    ResumePoint::Epoch(m) => Some(m),
                    ResumePoint::FinalCommit(last) => {
                        let mut report = self.finish_final_commit(
                            &name,
                            &last,
                            store.as_ref(),
                            &indexed,
                            opts.state_dir
                                .as_deref()
                                .or(temporary.as_ref().map(|t| t.path())),
                            started,
                        )?;
                        report.restarts = restarts.restarts();
                        return Ok(report);
                    }
                },
                (None, _) => None,
            };
            let restore = match &manifest {
                Some(m) => {
                    tracing::info!(job = %name, epoch = m.epoch, "restoring from the last complete epoch");
                    let store = snapshots.as_deref();
                    let Some(store) = store else {
                        return Err(JobError::Runtime("no snapshot store".into()));
                    };
                    Some(recovery::restore(
                        &name,
                        m,
                        store,
                        &self.store,
                        &indexed,
                        opts.key_partitions,
                        &stage_names,
                    )?)
                }
                None => {
                    recovery::clear_state(&name, &self.store, &indexed)?;
                    None
                }
            };
            let sink_recovery = SinkRecovery {
                restored: restore.as_ref().map(|r| r.epoch),
                state_dir: opts
                    .state_dir
                    .as_deref()
                    .or(temporary.as_ref().map(|t| t.path())),
            };
            for (_, plan) in &indexed {
                plan.recover(&sink_recovery)?;
            }
            board.update(|j| {
                j.attempt = restarts.restarts() + 1;
                j.restarts = restarts.restarts();
                j.restored_from_epoch = restore.as_ref().map(|r| r.epoch);
            });
            let first_epoch = match &snapshots {
                Some(store) => store
                    .manifests(&name)
                    .map_err(|e| JobError::Runtime(format!("snapshot store: {e}")))?
                    .into_iter()
                    .max()
                    .map_or(1, |m| m + 1),
                None => 1,
            };
            let setup = AttemptSetup {
                name: &name,
                plan: &plan,
                stage_names: &stage_names,
                snapshots: snapshots.clone(),
                manifest,
                restore: restore.as_ref(),
                first_epoch,
                started,
                poison: &poison,
                checkpoints: &checkpoint_stats,
                committers: &committers,
            };
            let attempt = system.block_on(self.attempt(setup, &mut control, &mut metrics));
            match attempt {
                Ok(mut report) => {
                    report.restarts = restarts.restarts();
                    // The node's own letters (poison records) are durable before
                    // the run reports success.
                    self.dead_letters
                        .flush()
                        .map_err(|e| JobError::DeadLetters(Box::new(e)))?;
                    return Ok(report);
                }
                Err(JobError::Failed(failure)) if is_restartable(&failure) => {
                    if let JobFailure::Operator {
                        stage,
                        partition,
                        failure: cause,
                        ..
                    } = &failure
                    {
                        metrics.operator_failed(stage, *partition);
                        poison.on_failure(stage, *partition, &cause.to_string());
                    }
                    let decision = restarts.on_failure(Instant::now(), attempt_started.elapsed());
                    board.update(|j| {
                        j.state = JobState::Restarting;
                        j.restarts = restarts.restarts();
                        j.last_failure = Some(failure.to_string());
                    });
                    match decision {
                        RestartDecision::Restart { delay, attempt } => {
                            metrics.restarted();
                            tracing::warn!(job = %name, %failure, attempt, ?delay,
                                "job failed; restarting from the last complete epoch");
                            std::thread::sleep(delay);
                        }
                        RestartDecision::GiveUp { reason } => {
                            let kept = snapshots.as_ref().and_then(|s| {
                                s.manifests(&name).ok().and_then(|m| m.into_iter().max())
                            });
                            return Err(JobError::RestartsExhausted {
                                failure: Box::new(failure),
                                restarts: restarts.restarts(),
                                reason,
                                kept_epoch: kept,
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a failure is one a restart may cure (an operator or a checkpoint), rather
/// than a cancellation.
fn is_restartable(failure: &JobFailure) -> bool {
    matches!(
        failure,
        JobFailure::Operator { .. } | JobFailure::Checkpoint { .. }
    )
}
