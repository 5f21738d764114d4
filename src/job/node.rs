//! The node: the root of the supervision tree. It owns the worker threads and the
//! state store, and runs jobs to completion.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use weir_actors::checkpoint::{
    CheckpointConfig, CheckpointCoordinator, CheckpointStats, EpochComplete, FinishJob, JobActors,
    RequestSavepoint, ShutdownCoordinator, TriggerEpoch,
};
use weir_actors::snapshot::{Manifest, SnapshotStore};
use weir_actors::state::{Clock, StateStore, StoreConfig, SystemClock};
use weir_actors::supervisor::{AdoptStages, CancelJob, StageSupervisor};
use weir_actors::{
    ActorStats, JobFailure, JobSupervisor, MailboxGate, QueryState, SideOutput, WorkerPool,
};

use crate::connector::{DeadLetters, SinkRecovery, StopFlag};
use crate::metrics::{unique_stage_labels, JobMetrics, MeasuredStage, StateUsageSampler};
use crate::status::{AttemptFeed, Edge, EdgeKind, JobState, JobStatus, StageKind, StatusBoard};

use super::builder::Job;
use super::commits::StageCommitters;
use super::error::JobError;
use super::options::EngineOptions;
use super::plan::{state_tree_name, SpawnEnv, StagePlan};
use super::poison::PoisonBoard;
use super::progress::{LiveStats, ProgressPrinter};
use super::recovery::{self, ResumePoint};
use super::report::{CheckpointSummary, JobReport, StageSummary};
use super::restart::{RestartDecision, RestartTracker};

/// Watches a running job's live counters.
pub type Observer = Box<dyn FnMut(&LiveStats) + Send>;

/// How a run is controlled from outside: when to ask the sources to stop, and who
/// watches it.
#[derive(Default)]
pub struct RunControl {
    /// Raised to end unbounded sources (the job then drains and finishes).
    pub stop: Option<StopFlag>,
    /// Raise `stop` after this long.
    pub duration: Option<Duration>,
    /// Raise `stop` on the first Ctrl-C; cancel the job on the second. Without a
    /// `stop` flag, the first Ctrl-C cancels the job: its snapshots stay, and the
    /// next start with the same state directory resumes from the newest complete
    /// epoch (what an unbounded exactly-once job wants on an interrupt).
    pub handle_ctrl_c: bool,
    /// Treat SIGTERM (what service managers send to stop a process) like Ctrl-C.
    /// Off by default: once asked for, the process no longer dies of SIGTERM.
    pub handle_sigterm: bool,
    /// Called with live counters every `observe_every` (default 1 s).
    pub observer: Option<Observer>,
    /// How often the observer is called.
    pub observe_every: Option<Duration>,
    /// Savepoint requests from the embedding program (tests, a control endpoint).
    pub savepoints: Option<std::sync::mpsc::Receiver<SavepointCommand>>,
    /// Take a savepoint on SIGUSR1 and stop with a savepoint on SIGUSR2.
    pub handle_signals: bool,
}

/// Asks a running job for a savepoint.
#[derive(Debug)]
pub struct SavepointCommand {
    /// Stop the job once the savepoint is taken (stop-with-savepoint); nothing after
    /// the savepoint's epoch is committed.
    pub stop: bool,
    /// Told the savepoint's directory, or why it could not be taken.
    pub reply: Option<std::sync::mpsc::Sender<Result<PathBuf, String>>>,
}

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
        let result = self.run_job(job, control);
        {
            self.status.update(|j| match &result {
                Ok(report) => {
                    j.state = JobState::Finished;
                    j.restarts = report.restarts;
                }
                Err(e) => {
                    j.state = JobState::Failed;
                    j.last_failure = Some(e.to_string());
                }
            });
        }
        result
    }

    /// [`Node::run_with`] without the final status.
    fn run_job(&self, job: Job, mut control: RunControl) -> Result<JobReport, JobError> {
        let Job {
            name,
            stages,
            branches,
        } = job;
        let plan_error = |reason: String| JobError::Plan {
            job: name.clone(),
            reason,
        };
        if stages.is_empty() {
            return Err(plan_error("it has no stage".into()));
        }
        let opts = &self.options;
        if opts.parallelism > opts.key_partitions {
            return Err(plan_error(format!(
                "parallelism {} is above the number of key partitions {}",
                opts.parallelism, opts.key_partitions
            )));
        }
        // The main pipeline, then each branch (fed by a side output of a main stage).
        let main_len = stages.len();
        let mut pipelines: Vec<Pipeline> = vec![Pipeline {
            from: None,
            plans: stages,
        }];
        for branch in branches {
            if !branch.job.branches.is_empty() || branch.job.stages.is_empty() {
                return Err(plan_error(
                    "a branch must be a simple pipeline ending in a sink".into(),
                ));
            }
            if branch.from >= main_len {
                return Err(plan_error(format!(
                    "a branch reads stage {} of {main_len}",
                    branch.from
                )));
            }
            pipelines.push(Pipeline {
                from: Some(branch.from),
                plans: branch.job.stages,
            });
        }
        // Every stage with its index: the main pipeline's first, then the branches'.
        let indexed: Vec<(u32, &dyn super::plan::StagePlan)> = pipelines
            .iter()
            .flat_map(|p| p.plans.iter())
            .enumerate()
            .map(|(i, plan)| (i as u32, plan.as_ref()))
            .collect();
        let stage_names: Vec<String> = indexed.iter().map(|(_, p)| p.name()).collect();
        // Where each transactional sink stage's commit actions go: after an epoch
        // completes, and when recovery redoes them.
        let committers = StageCommitters::of(&indexed);
        let _state_usage = self.start_state_usage(&name, &indexed, &stage_names)?;
        self.publish_graph(&self.status, &name, &pipelines);
        // One record of the run's checkpoints, across its attempts: the coordinators
        // count into it, the checkpoint metrics are recorded from it, and the status
        // API reads it.
        let checkpoint_stats = Arc::new(CheckpointStats::default());
        self.status.count_checkpoints(checkpoint_stats.clone());
        if control.savepoints.is_none() {
            control.savepoints = Some(self.status.savepoint_requests());
        }

        let checkpointing = opts.checkpoint.interval.is_some();
        let (snapshots, temporary) = match &opts.state_dir {
            Some(dir) => (
                Some(recovery::open_store(&recovery::snapshot_dir(dir))?),
                None,
            ),
            None if checkpointing || opts.from_savepoint.is_some() => {
                let tmp = TemporaryDir::new("snapshots", &name)?;
                (Some(recovery::open_store(tmp.path())?), Some(tmp))
            }
            None => (None, None),
        };
        let mut restarts = RestartTracker::new(opts.restart.clone());
        let mut savepoint = opts.from_savepoint.clone();
        let mut poison = PoisonBoard::new(
            opts.poison.enabled,
            opts.poison.replays,
            self.dead_letters.clone(),
        );
        let system = actix::System::new();
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
                    let store = snapshots.as_deref().map(|s| s as &dyn SnapshotStore);
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
            self.status.update(|j| {
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
                pipelines: &pipelines,
                main_len,
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
                    self.status.update(|j| {
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

    /// Completes a run of `name` that stopped during its final commit (the final
    /// epoch `last` is complete, its commit actions may not all have run): redoes
    /// them, lets the sinks recover to that epoch (dropping anything staged after
    /// it; `state_dir` is where they keep their files), and records that the run
    /// finished. No input is read: every record's output is in the final epoch or
    /// before it.
    fn finish_final_commit(
        &self,
        name: &str,
        last: &Manifest,
        store: &dyn SnapshotStore,
        indexed: &[(u32, &dyn StagePlan)],
        state_dir: Option<&std::path::Path>,
        started: Instant,
    ) -> Result<JobReport, JobError> {
        recovery::redo_commit_actions(name, last, store, &StageCommitters::of(indexed))?;
        for (_, plan) in indexed {
            plan.recover(&SinkRecovery {
                restored: Some(last.epoch),
                state_dir,
            })?;
        }
        recovery::record_finished(last, store)?;
        self.status
            .update(|j| j.restored_from_epoch = Some(last.epoch));
        tracing::info!(
            job = name,
            epoch = last.epoch,
            "the final commit of the job's last run is done; the run finished"
        );
        Ok(JobReport {
            job: name.to_string(),
            elapsed: started.elapsed(),
            stages: Vec::new(),
            restarts: 0,
            checkpoints: CheckpointSummary::default(),
            savepoint: None,
            restored_from: Some(last.epoch),
        })
    }

    /// One attempt: spawns the job's actors and its checkpoint coordinator, runs
    /// until the job finishes, fails or stops with a savepoint.
    async fn attempt(
        &self,
        setup: AttemptSetup<'_>,
        control: &mut RunControl,
        metrics: &mut JobMetrics,
    ) -> Result<JobReport, JobError> {
        let AttemptSetup {
            name,
            pipelines,
            main_len,
            stage_names,
            snapshots,
            manifest,
            restore,
            first_epoch,
            started,
            poison,
            checkpoints: checkpoint_stats,
            committers,
        } = setup;
        let name = name.to_string();
        let opts = &self.options;
        let parallelism_of = |s: &dyn StagePlan| self.parallelism_of(s);
        let main_parallelism: Vec<u32> = pipelines[0]
            .plans
            .iter()
            .map(|p| parallelism_of(p.as_ref()))
            .collect();
        let total: usize = pipelines.iter().map(|p| p.plans.len()).sum();
        let job_name: Arc<str> = Arc::from(name.as_str());
        let attempt_started = Instant::now();
        let pool = WorkerPool::start(opts.workers);
        let (supervisor, outcome) = JobSupervisor::new(name.clone(), total);
        let job_addr = supervisor.start();
        let mut meta = recovery::manifest_meta(opts.key_partitions, stage_names);
        // The source stages' split counts go into every manifest.
        for (index, plan) in pipelines.iter().flat_map(|p| p.plans.iter()).enumerate() {
            if plan.is_source() {
                let splits = match restore {
                    Some(r) => r.splits_of(index as u32).unwrap_or(0),
                    None => plan.splits(parallelism_of(plan.as_ref())),
                };
                meta.insert(
                    format!("{}{index}", recovery::META_SPLITS),
                    splits.to_string(),
                );
            }
        }
        let coordinator = CheckpointCoordinator::new(
            CheckpointConfig {
                job: name.clone(),
                interval: opts.checkpoint.interval,
                timeout: opts.checkpoint.timeout,
                retain: opts.checkpoint.retain,
                compact_after: opts.checkpoint.compact_after,
                store: snapshots.map(|s| s as Arc<dyn SnapshotStore>),
                committer: committers.for_coordinator(),
                merge: Arc::new(|chain: &[Vec<u8>]| {
                    let parts: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
                    weir_actors::state::merge_chain(&parts).map_err(|e| e.to_string())
                }),
                meta,
                first_epoch,
                restored: manifest,
                hold_off: if poison.suspicious() {
                    opts.checkpoint
                        .interval
                        .map_or(Duration::ZERO, |i| (i * 10).max(Duration::from_secs(1)))
                } else {
                    Duration::ZERO
                },
            },
            job_addr.clone(),
            checkpoint_stats.clone(),
        );

        let coordinator = coordinator.start();
        let mut spawned = SpawnedJob::new(total);
        let spawning = self.spawn_pipelines(
            &SpawnShared {
                job: job_name.clone(),
                pipelines,
                stage_names,
                main_parallelism: &main_parallelism,
                pool: &pool,
                job_addr: &job_addr,
                coordinator: &coordinator,
                restore,
                poison,
            },
            &mut spawned,
        );
        job_addr.do_send(AdoptStages {
            stages: spawned.supervisors,
            gates: spawned.gates,
        });
        if let Err(e) = spawning {
            job_addr.do_send(CancelJob);
            shutdown_coordinator(&coordinator).await;
            pool.shutdown();
            return Err(e);
        }
        coordinator.do_send(JobActors {
            sources: spawned.triggers,
            all: spawned.completes,
        });
        let stats = spawned.stats;
        let mut feed = Some(AttemptFeed::new(self.status.clone()));
        if let Some(feed) = feed.as_mut() {
            let live = LiveStats::read(attempt_started.elapsed(), &stats, main_len);
            feed.publish(&live, Some(JobState::Running));
            feed.serve_queries(std::mem::take(&mut spawned.queries));
        }

        let watched = watch(
            &name,
            &job_addr,
            &coordinator,
            outcome,
            control,
            opts,
            (started, attempt_started),
            (&stats, main_len),
            feed.as_mut(),
            &mut Publisher {
                metrics,
                store: &self.store,
                last: None,
            },
        )
        .await;
        if let Some(feed) = feed.as_mut() {
            feed.stop_queries();
        }
        let mut savepoint = None;
        let outcome = match watched {
            Ok(Watched::Finished) => {
                // Every actor finished: the final epoch commits what sinks staged last.
                let (tx, rx) = tokio::sync::oneshot::channel();
                coordinator.do_send(FinishJob(tx));
                match rx.await {
                    Ok(Ok(())) => Ok(()),
                    // Like any failed checkpoint, restartable: the next attempt
                    // finishes the final commit if its manifest is durable, or
                    // restores the last complete epoch if it is not.
                    Ok(Err(reason)) => Err(JobError::Failed(JobFailure::Checkpoint {
                        job: name.clone(),
                        reason: format!("the final commit failed: {reason}"),
                    })),
                    Err(_) => Err(JobError::Runtime(format!(
                        "job '{name}': the checkpoint coordinator vanished"
                    ))),
                }
            }
            Ok(Watched::StoppedWithSavepoint(path)) => {
                savepoint = Some(path);
                Ok(())
            }
            Err(e) => Err(e),
        };
        shutdown_coordinator(&coordinator).await;
        let elapsed = started.elapsed();
        pool.shutdown();
        let live = LiveStats::read(elapsed, &stats, main_len);
        if let Some(feed) = feed.as_mut() {
            feed.publish(&live, outcome.is_ok().then_some(JobState::Finished));
        }
        metrics.publish(&live, self.store.db().size_on_disk().ok());
        outcome?;
        Ok(JobReport {
            job: name,
            elapsed,
            stages: live
                .stages
                .iter()
                .map(|(n, s)| StageSummary::from_snapshots(n, s))
                .collect(),
            restarts: 0,
            checkpoints: checkpoint_stats.figures(),
            savepoint,
            restored_from: restore.map(|r| r.epoch),
        })
    }

    /// Publishes the job's graph on `board`: every stage with its kind and
    /// parallelism, the main pipeline's edges and each branch's side edge.
    fn publish_graph(&self, board: &StatusBoard, name: &str, pipelines: &[Pipeline]) {
        let mut stages = Vec::new();
        let mut edges = Vec::new();
        for pipeline in pipelines {
            let base = stages.len() as u32;
            if let Some(from) = pipeline.from {
                edges.push(Edge {
                    from: from as u32,
                    to: base,
                    kind: EdgeKind::Side,
                });
            }
            for (i, plan) in pipeline.plans.iter().enumerate() {
                if i > 0 {
                    edges.push(Edge {
                        from: base + i as u32 - 1,
                        to: base + i as u32,
                        kind: EdgeKind::Data,
                    });
                }
                let kind = if plan.is_source() {
                    StageKind::Source
                } else {
                    StageKind::Keyed
                };
                stages.push((plan.name(), kind, self.parallelism_of(plan.as_ref())));
            }
        }
        board.job_created(JobStatus::created(
            name,
            self.options.key_partitions,
            stages,
            edges,
            self.options.checkpoint.interval,
        ));
    }

    /// Starts measuring the keyed stages' stored state for `weir_state_keys` and
    /// `weir_state_bytes`, when the options ask for it and the Prometheus recorder
    /// is installed; the measurement stops when the returned sampler is dropped.
    fn start_state_usage(
        &self,
        job: &str,
        indexed: &[(u32, &dyn StagePlan)],
        stage_names: &[String],
    ) -> Result<Option<StateUsageSampler>, JobError> {
        let Some(interval) = self.options.state_metrics_interval else {
            return Ok(None);
        };
        if !crate::metrics::recorder_installed() {
            return Ok(None);
        }
        let labels = unique_stage_labels(stage_names.iter().map(String::as_str));
        let stages: Vec<MeasuredStage> = indexed
            .iter()
            .zip(labels)
            .filter(|((_, plan), _)| plan.has_keyed_state())
            .map(|(&(index, plan), label)| MeasuredStage {
                tree: state_tree_name(job, index),
                label,
                parallelism: self.parallelism_of(plan),
            })
            .collect();
        if stages.is_empty() {
            return Ok(None);
        }
        StateUsageSampler::start(
            job,
            self.store.clone(),
            stages,
            self.options.key_partitions,
            interval,
        )
        .map(Some)
        .map_err(|e| {
            JobError::Runtime(format!(
                "starting the state-usage sampler of job '{job}': {e}"
            ))
        })
    }

    /// How many partition actors `plan` gets: the configured parallelism, capped by
    /// what the stage allows.
    fn parallelism_of(&self, plan: &dyn StagePlan) -> u32 {
        let p = self.options.parallelism;
        plan.max_parallelism().map_or(p, |m| m.min(p)).max(1)
    }

    /// Spawns every stage's actors, downstream first (the branches, each from its
    /// last stage to its first, then the main pipeline), recording them in `into` as
    /// it goes so that a failure part way still lets the caller stop what started.
    fn spawn_pipelines(
        &self,
        shared: &SpawnShared<'_>,
        into: &mut SpawnedJob,
    ) -> Result<(), JobError> {
        let opts = &self.options;
        let pipelines = shared.pipelines;
        let mut side_feeders: std::collections::HashMap<usize, Vec<Box<dyn SideOutput>>> =
            std::collections::HashMap::new();
        let mut order: Vec<(usize, usize)> = Vec::new(); // (pipeline, stage index base)
        let mut index_base = pipelines[0].plans.len();
        for (p, pipeline) in pipelines.iter().enumerate().skip(1) {
            order.push((p, index_base));
            index_base += pipeline.plans.len();
        }
        order.push((0, 0));
        for (p, base) in order {
            let pipeline = &pipelines[p];
            let parallelism: Vec<u32> = pipeline
                .plans
                .iter()
                .map(|plan| self.parallelism_of(plan.as_ref()))
                .collect();
            let n = pipeline.plans.len();
            let mut downstream: Box<dyn Any> = Box::new(());
            for (i, plan) in pipeline.plans.iter().enumerate().rev() {
                let stage_name = &shared.stage_names[base + i];
                if plan.is_source() != (i == 0 && pipeline.from.is_none()) {
                    return Err(JobError::Plan {
                        job: shared.job.to_string(),
                        reason: format!("stage '{stage_name}' is a source but not the first stage"),
                    });
                }
                let env = SpawnEnv {
                    job: shared.job.clone(),
                    stage_index: (base + i) as u32,
                    stage_name: Arc::from(stage_name.as_str()),
                    parallelism: parallelism[i],
                    inputs: match (i, pipeline.from) {
                        (0, None) => 0,
                        (0, Some(from)) => shared.main_parallelism[from],
                        _ => parallelism[i - 1],
                    },
                    downstream: if i + 1 < n { parallelism[i + 1] } else { 0 },
                    pool: shared.pool,
                    job_supervisor: shared.job_addr.clone(),
                    options: opts,
                    store: &self.store,
                    clock: self.clock.clone(),
                    side_outputs: std::cell::RefCell::new(if p == 0 {
                        side_feeders.remove(&i)
                    } else {
                        None
                    }),
                    checkpoints: shared.coordinator.clone().recipient(),
                    checkpointing: opts.checkpoint.interval.is_some(),
                    restore: shared.restore,
                    poison: shared.poison,
                };
                let mut spawned = plan.spawn(&env, downstream)?;
                downstream = std::mem::replace(&mut spawned.inbound, Box::new(()));
                if let (0, Some(from), Some(feeders)) =
                    (i, pipeline.from, spawned.side_feeders.take())
                {
                    side_feeders.insert(from, feeders);
                }
                into.supervisors.push(spawned.supervisor);
                into.gates.extend(spawned.gates);
                into.triggers.extend(spawned.triggers);
                into.completes.extend(spawned.completes);
                into.stats[base + i] = (stage_name.clone(), spawned.stats);
                into.queries[base + i] = spawned.queries;
            }
        }
        if !side_feeders.is_empty() {
            return Err(JobError::Plan {
                job: shared.job.to_string(),
                reason: "a branch reads the side output of a stage that has none".into(),
            });
        }
        Ok(())
    }
}

/// What every stage of one attempt is spawned with.
struct SpawnShared<'a> {
    job: Arc<str>,
    pipelines: &'a [Pipeline],
    stage_names: &'a [String],
    /// Actors per stage of the main pipeline (a branch's first stage reads one).
    main_parallelism: &'a [u32],
    pool: &'a WorkerPool,
    job_addr: &'a Addr<JobSupervisor>,
    coordinator: &'a Addr<CheckpointCoordinator>,
    restore: Option<&'a recovery::RestorePoint>,
    poison: &'a PoisonBoard,
}

/// The actors of one attempt, as far as they were spawned.
struct SpawnedJob {
    supervisors: Vec<Addr<StageSupervisor>>,
    gates: Vec<MailboxGate>,
    triggers: Vec<((u32, u32), Recipient<TriggerEpoch>)>,
    completes: Vec<((u32, u32), Recipient<EpochComplete>)>,
    /// Per stage index: the stage's name and its actors' counters.
    stats: Vec<(String, Vec<Arc<ActorStats>>)>,
    /// Per stage index: its actors' state query endpoints.
    queries: Vec<Vec<Recipient<QueryState>>>,
}

impl SpawnedJob {
    /// Nothing spawned yet, for a job of `stages` stages.
    fn new(stages: usize) -> Self {
        SpawnedJob {
            supervisors: Vec::new(),
            gates: Vec::new(),
            triggers: Vec::new(),
            completes: Vec::new(),
            stats: vec![(String::new(), Vec::new()); stages],
            queries: vec![Vec::new(); stages],
        }
    }
}

/// What one attempt needs besides the node.
struct AttemptSetup<'a> {
    name: &'a str,
    pipelines: &'a [Pipeline],
    main_len: usize,
    stage_names: &'a [String],
    snapshots: Option<Arc<weir_actors::snapshot::LocalDirStore>>,
    manifest: Option<weir_actors::snapshot::Manifest>,
    restore: Option<&'a recovery::RestorePoint>,
    first_epoch: u64,
    started: Instant,
    poison: &'a PoisonBoard,
    /// The run's checkpoint figures (every attempt counts into them).
    checkpoints: &'a Arc<CheckpointStats>,
    /// The transactional sink stages' committers.
    committers: &'a StageCommitters,
}

/// Whether a failure is one a restart may cure (an operator or a checkpoint), rather
/// than a cancellation.
fn is_restartable(failure: &JobFailure) -> bool {
    matches!(
        failure,
        JobFailure::Operator { .. } | JobFailure::Checkpoint { .. }
    )
}

/// Stops the coordinator and waits until its writer thread has finished what it was
/// writing, so that the next attempt restores from a settled store.
async fn shutdown_coordinator(coordinator: &Addr<CheckpointCoordinator>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if coordinator.try_send(ShutdownCoordinator(tx)).is_ok() {
        let _ = rx.await;
    }
}

/// A directory removed when dropped: the snapshot store of a checkpointed job run
/// without a state directory, or a benchmark's Kafka staging directory.
pub(crate) struct TemporaryDir(PathBuf);

impl TemporaryDir {
    /// Creates `weir-<kind>-<job>-<pid>-<nanos>` under the system's temporary directory.
    pub(crate) fn new(kind: &str, job: &str) -> Result<Self, JobError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let safe: String = job
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir =
            std::env::temp_dir().join(format!("weir-{kind}-{safe}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            JobError::Runtime(format!(
                "creating a temporary {kind} directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(TemporaryDir(dir))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stage's name and the counters of its actors.
type StageStats = (String, Vec<Arc<ActorStats>>);

/// A pipeline of stages: the job's main one, or a branch fed by the side output of
/// main stage `from`.
struct Pipeline {
    from: Option<usize>,
    plans: Vec<Box<dyn super::plan::StagePlan>>,
}

/// How a watched attempt ended (failures are errors).
enum Watched {
    /// Every actor finished.
    Finished,
    /// A stop-with-savepoint took this savepoint and cancelled the job.
    StoppedWithSavepoint(PathBuf),
}

/// A savepoint on its way: whether the job stops after it, and who hears the result.
struct PendingSavepoint {
    rx: tokio::sync::oneshot::Receiver<Result<PathBuf, String>>,
    stop: bool,
    reply: Option<std::sync::mpsc::Sender<Result<PathBuf, String>>>,
}

/// Where savepoints go: the configured directory, or `<state dir>/savepoints`.
fn savepoint_dir(opts: &EngineOptions) -> Result<PathBuf, String> {
    match (&opts.savepoint_dir, &opts.state_dir) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(state)) => Ok(state.join("savepoints")),
        (None, None) => Err(
            "no savepoint directory: set savepoint.dir (--savepoint-dir) or state.dir (--state-dir)"
                .into(),
        ),
    }
}

/// Waits for the job's outcome while printing progress, calling the observer,
/// handling the duration limit, Ctrl-C, savepoint requests and signals.
#[allow(clippy::too_many_arguments)]
async fn watch(
    name: &str,
    job: &Addr<JobSupervisor>,
    coordinator: &Addr<CheckpointCoordinator>,
    mut outcome: tokio::sync::oneshot::Receiver<weir_actors::JobOutcome>,
    control: &mut RunControl,
    opts: &EngineOptions,
    (started, attempt_started): (Instant, Instant),
    (stats, main_stages): (&[StageStats], usize),
    mut feed: Option<&mut AttemptFeed>,
    publisher: &mut Publisher<'_>,
) -> Result<Watched, JobError> {
    let progress = opts.progress;
    let tick = match (progress, control.observer.is_some()) {
        (Some(p), true) => p.min(control.observe_every.unwrap_or(Duration::from_secs(1))),
        (Some(p), false) => p,
        (None, true) => control.observe_every.unwrap_or(Duration::from_secs(1)),
        (None, false) => Duration::from_millis(100),
    }
    .min(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut printer = ProgressPrinter::new();
    let mut last_print = Duration::ZERO;
    let mut last_observed = Duration::ZERO;
    let observe_every = control.observe_every.unwrap_or(Duration::from_secs(1));
    let mut interrupts = 0u32;
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let mut terminate = Terminate::new(control.handle_sigterm);
    let mut signals = SavepointSignals::new(control.handle_signals);
    let mut pending: Option<PendingSavepoint> = None;
    let mut stopped_with: Option<PathBuf> = None;
    let mut signalled: Option<bool> = None;
    loop {
        // A savepoint request from the embedding program or a signal.
        let mut request: Option<SavepointCommand> = None;
        if pending.is_none() {
            request = match signalled.take() {
                Some(stop) => Some(SavepointCommand { stop, reply: None }),
                None => control
                    .savepoints
                    .as_ref()
                    .and_then(|rx| rx.try_recv().ok()),
            };
        }
        if let Some(cmd) = request.take() {
            match savepoint_dir(opts) {
                Ok(dir) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    coordinator.do_send(RequestSavepoint { dir, reply: tx });
                    pending = Some(PendingSavepoint {
                        rx,
                        stop: cmd.stop,
                        reply: cmd.reply,
                    });
                }
                Err(reason) => {
                    tracing::error!(job = name, %reason, "cannot take a savepoint");
                    if let Some(reply) = cmd.reply {
                        let _ = reply.send(Err(reason));
                    }
                }
            }
        }
        tokio::select! {
            result = &mut outcome => {
                if let Some(p) = pending.take() {
                    if let Some(reply) = p.reply {
                        let _ = reply.send(Err("the job ended before the savepoint completed".into()));
                    }
                }
                return match result {
                    Ok(Ok(())) => Ok(Watched::Finished),
                    Ok(Err(JobFailure::Cancelled { .. })) if stopped_with.is_some() => {
                        Ok(Watched::StoppedWithSavepoint(stopped_with.take().unwrap_or_default()))
                    }
                    Ok(Err(failure)) => Err(JobError::Failed(failure)),
                    Err(_) => Err(JobError::Runtime(format!("job '{name}': its supervisor vanished"))),
                };
            }
            done = async { match pending.as_mut() { Some(p) => (&mut p.rx).await, None => std::future::pending().await } } => {
                let Some(p) = pending.take() else { continue };
                let result = done.unwrap_or_else(|_| Err("the checkpoint coordinator stopped".into()));
                match &result {
                    Ok(path) => {
                        if let Some(feed) = feed.as_deref_mut() {
                            feed.board().savepoint_taken(path);
                        }
                        crate::console::notice(&format!("savepoint taken: {}", path.display()));
                        if p.stop {
                            tracing::info!(job = name, path = %path.display(), "stopping with a savepoint");
                            stopped_with = Some(path.clone());
                            job.do_send(CancelJob);
                        }
                    }
                    Err(reason) => {
                        crate::console::notice(&format!("savepoint failed: {reason}"));
                        tracing::error!(job = name, %reason, "savepoint failed");
                    }
                }
                if let Some(reply) = p.reply {
                    let _ = reply.send(result);
                }
            }
            stop = signals.next() => {
                signalled = Some(stop);
            }
            _ = ticker.tick() => {
                let elapsed = started.elapsed();
                if let (Some(limit), Some(stop)) = (control.duration, control.stop.as_ref()) {
                    if elapsed >= limit && !stop.is_stopped() {
                        tracing::info!(job = name, "duration reached; ending the input");
                        stop.stop();
                    }
                }
                let live = LiveStats::read(attempt_started.elapsed(), stats, main_stages);
                if let Some(feed) = feed.as_deref_mut() {
                    feed.publish(&live, Some(JobState::Running));
                }
                publisher.maybe_publish(&live);
                if let Some(observer) = control.observer.as_mut() {
                    if elapsed - last_observed >= observe_every {
                        observer(&live);
                        last_observed = elapsed;
                    }
                }
                if let Some(p) = progress {
                    if elapsed - last_print >= p {
                        printer.print(name, &live);
                        last_print = elapsed;
                    }
                }
            }
            interrupted = async {
                tokio::select! {
                    _ = &mut ctrl_c, if control.handle_ctrl_c => true,
                    () = terminate.next() => false,
                }
            } => {
                interrupts += 1;
                if interrupted {
                    ctrl_c = Box::pin(tokio::signal::ctrl_c());
                }
                match (interrupts, control.stop.as_ref()) {
                    (1, Some(stop)) => {
                        crate::console::notice("interrupted: ending the input and draining (Ctrl-C again to cancel)");
                        stop.stop();
                    }
                    _ => {
                        crate::console::notice("cancelling the job");
                        job.do_send(CancelJob);
                    }
                }
            }
        }
    }
}

/// How often the watch loop publishes a running job's counters to the metrics
/// recorder.
const METRICS_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes a running attempt's counters at most once per
/// [`METRICS_PUBLISH_INTERVAL`].
struct Publisher<'a> {
    metrics: &'a mut JobMetrics,
    store: &'a StateStore,
    last: Option<Instant>,
}

impl Publisher<'_> {
    fn maybe_publish(&mut self, live: &LiveStats) {
        if self
            .last
            .is_some_and(|at| at.elapsed() < METRICS_PUBLISH_INTERVAL)
        {
            return;
        }
        self.last = Some(Instant::now());
        self.metrics
            .publish(live, self.store.db().size_on_disk().ok());
    }
}

/// SIGTERM, when asked for ([`RunControl::handle_sigterm`]).
struct Terminate {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Terminate {
    fn new(enabled: bool) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = enabled
                .then(|| signal(SignalKind::terminate()).ok())
                .flatten();
            Terminate { signal }
        }
        #[cfg(not(unix))]
        {
            let _ = enabled;
            Terminate {}
        }
    }

    /// The next SIGTERM (never, when not asked for).
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

/// SIGUSR1 (take a savepoint) and SIGUSR2 (stop with a savepoint), when asked for.
struct SavepointSignals {
    #[cfg(unix)]
    usr: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl SavepointSignals {
    fn new(enabled: bool) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let usr = enabled
                .then(|| {
                    Some((
                        signal(SignalKind::user_defined1()).ok()?,
                        signal(SignalKind::user_defined2()).ok()?,
                    ))
                })
                .flatten();
            SavepointSignals { usr }
        }
        #[cfg(not(unix))]
        {
            let _ = enabled;
            SavepointSignals {}
        }
    }

    /// The next signal: `false` for a savepoint, `true` for stop-with-savepoint.
    async fn next(&mut self) -> bool {
        #[cfg(unix)]
        if let Some((one, two)) = self.usr.as_mut() {
            return tokio::select! {
                _ = one.recv() => false,
                _ = two.recv() => true,
            };
        }
        std::future::pending().await
    }
}
