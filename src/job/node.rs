//! The node: the root of the supervision tree. It owns the worker threads and the
//! state store, and runs jobs to completion.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use weir_actors::state::{Clock, StateStore, StoreConfig, SystemClock};
use weir_actors::supervisor::{AdoptStages, CancelJob};
use weir_actors::{ActorStats, JobSupervisor, WorkerPool};

use crate::connector::StopFlag;

use super::builder::Job;
use super::error::JobError;
use super::options::EngineOptions;
use super::plan::SpawnEnv;
use super::progress::{LiveStats, ProgressPrinter};
use super::report::{JobReport, StageSummary};

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
    /// Raise `stop` on the first Ctrl-C; cancel the job on the second.
    pub handle_ctrl_c: bool,
    /// Called with live counters every `observe_every` (default 1 s).
    pub observer: Option<Observer>,
    /// How often the observer is called.
    pub observe_every: Option<Duration>,
}

/// One weir node: worker threads, a state store and the jobs it runs.
pub struct Node {
    options: EngineOptions,
    store: StateStore,
    clock: Arc<dyn Clock>,
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
        })
    }

    /// Replaces the processing-time clock (for tests of state TTL).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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

    /// Runs `job` until its input ends (or it fails).
    pub fn run(&self, job: Job) -> Result<JobReport, JobError> {
        self.run_with(job, RunControl::default())
    }

    /// Runs `job` under `control`.
    pub fn run_with(&self, job: Job, control: RunControl) -> Result<JobReport, JobError> {
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
        let parallelism_of = |s: &dyn super::plan::StagePlan| {
            s.max_parallelism()
                .map_or(opts.parallelism, |m| m.min(opts.parallelism))
                .max(1)
        };
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
        let main_parallelism: Vec<u32> = pipelines[0]
            .plans
            .iter()
            .map(|p| parallelism_of(p.as_ref()))
            .collect();
        let total: usize = pipelines.iter().map(|p| p.plans.len()).sum();
        let job_name: Arc<str> = Arc::from(name.as_str());

        let system = actix::System::new();
        system.block_on(async move {
            let started = Instant::now();
            let pool = WorkerPool::start(opts.workers);
            let (supervisor, outcome) = JobSupervisor::new(name.clone(), total);
            let job_addr = supervisor.start();

            let mut stage_sups = Vec::with_capacity(total);
            let mut gates = Vec::new();
            let mut stats: Vec<(String, Vec<Arc<ActorStats>>)> =
                vec![(String::new(), Vec::new()); total];
            let mut side_feeders: std::collections::HashMap<
                usize,
                Vec<Box<dyn weir_actors::SideOutput>>,
            > = std::collections::HashMap::new();
            // Branches first (they are downstream of the main pipeline), each from
            // its last stage to its first; then the main pipeline.
            let mut index_base = main_len;
            let mut order: Vec<(usize, usize)> = Vec::new(); // (pipeline, index base)
            for (p, pipeline) in pipelines.iter().enumerate().skip(1) {
                order.push((p, index_base));
                index_base += pipeline.plans.len();
            }
            order.push((0, 0));
            let mut pipelines: Vec<Option<Pipeline>> = pipelines.into_iter().map(Some).collect();
            for (p, base) in order {
                let Some(pipeline) = pipelines[p].take() else {
                    continue;
                };
                let names: Vec<String> = pipeline.plans.iter().map(|s| s.name()).collect();
                let parallelism: Vec<u32> = pipeline
                    .plans
                    .iter()
                    .map(|p| parallelism_of(p.as_ref()))
                    .collect();
                let n = pipeline.plans.len();
                let mut downstream: Box<dyn Any> = Box::new(());
                for (i, plan) in pipeline.plans.into_iter().enumerate().rev() {
                    let inputs = match (i, pipeline.from) {
                        (0, None) => 0,
                        (0, Some(from)) => main_parallelism[from],
                        _ => parallelism[i - 1],
                    };
                    let env = SpawnEnv {
                        job: job_name.clone(),
                        stage_index: (base + i) as u32,
                        stage_name: Arc::from(names[i].as_str()),
                        parallelism: parallelism[i],
                        inputs,
                        downstream: if i + 1 < n { parallelism[i + 1] } else { 0 },
                        pool: &pool,
                        job_supervisor: job_addr.clone(),
                        options: opts,
                        store: &self.store,
                        clock: self.clock.clone(),
                        side_outputs: std::cell::RefCell::new(if p == 0 {
                            side_feeders.remove(&i)
                        } else {
                            None
                        }),
                    };
                    let misplaced_source = plan.is_source() != (i == 0 && pipeline.from.is_none());
                    let spawned = if misplaced_source {
                        Err(JobError::Plan {
                            job: name.clone(),
                            reason: format!(
                                "stage '{}' is a source but not the first stage",
                                names[i]
                            ),
                        })
                    } else {
                        plan.spawn(&env, downstream)
                    };
                    match spawned {
                        Ok(mut spawned) => {
                            downstream = std::mem::replace(&mut spawned.inbound, Box::new(()));
                            if let (0, Some(from), Some(feeders)) =
                                (i, pipeline.from, spawned.side_feeders.take())
                            {
                                side_feeders.insert(from, feeders);
                            }
                            stage_sups.push(spawned.supervisor);
                            gates.extend(spawned.gates);
                            stats[base + i] = (names[i].clone(), spawned.stats);
                        }
                        Err(e) => {
                            job_addr.do_send(AdoptStages {
                                stages: stage_sups,
                                gates,
                            });
                            job_addr.do_send(CancelJob);
                            pool.shutdown();
                            return Err(e);
                        }
                    }
                }
            }
            if !side_feeders.is_empty() {
                job_addr.do_send(AdoptStages {
                    stages: stage_sups,
                    gates,
                });
                job_addr.do_send(CancelJob);
                pool.shutdown();
                return Err(JobError::Plan {
                    job: name,
                    reason: "a branch reads the side output of a stage that has none".into(),
                });
            }
            job_addr.do_send(AdoptStages {
                stages: stage_sups,
                gates,
            });

            let outcome = watch(
                &name,
                &job_addr,
                outcome,
                control,
                opts.progress,
                started,
                (&stats, main_len),
            )
            .await;
            let elapsed = started.elapsed();
            pool.shutdown();
            let live = LiveStats::read(elapsed, &stats, main_len);
            outcome?;
            Ok(JobReport {
                job: name,
                elapsed,
                stages: live
                    .stages
                    .iter()
                    .map(|(n, s)| StageSummary::from_snapshots(n, s))
                    .collect(),
            })
        })
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

/// Waits for the job's outcome while printing progress, calling the observer, and
/// handling the duration limit and Ctrl-C.
async fn watch(
    name: &str,
    job: &Addr<JobSupervisor>,
    mut outcome: tokio::sync::oneshot::Receiver<weir_actors::JobOutcome>,
    mut control: RunControl,
    progress: Option<Duration>,
    started: Instant,
    (stats, main_stages): (&[StageStats], usize),
) -> Result<(), JobError> {
    let tick = match (progress, control.observer.is_some()) {
        (Some(p), true) => p.min(control.observe_every.unwrap_or(Duration::from_secs(1))),
        (Some(p), false) => p,
        (None, true) => control.observe_every.unwrap_or(Duration::from_secs(1)),
        (None, false) => Duration::from_millis(100),
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut printer = ProgressPrinter::new();
    let mut last_print = Duration::ZERO;
    let mut interrupts = 0u32;
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            result = &mut outcome => {
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(failure)) => Err(JobError::Failed(failure)),
                    Err(_) => Err(JobError::Runtime(format!("job '{name}': its supervisor vanished"))),
                };
            }
            _ = ticker.tick() => {
                let elapsed = started.elapsed();
                if let (Some(limit), Some(stop)) = (control.duration, control.stop.as_ref()) {
                    if elapsed >= limit && !stop.is_stopped() {
                        tracing::info!(job = name, "duration reached; ending the input");
                        stop.stop();
                    }
                }
                let live = LiveStats::read(elapsed, stats, main_stages);
                if let Some(observer) = control.observer.as_mut() {
                    observer(&live);
                }
                if let Some(p) = progress {
                    if elapsed - last_print >= p {
                        printer.print(name, &live);
                        last_print = elapsed;
                    }
                }
            }
            _ = &mut ctrl_c, if control.handle_ctrl_c => {
                interrupts += 1;
                ctrl_c = Box::pin(tokio::signal::ctrl_c());
                match (interrupts, control.stop.as_ref()) {
                    (1, Some(stop)) => {
                        eprintln!("[weir] interrupted: ending the input and draining (Ctrl-C again to cancel)");
                        stop.stop();
                    }
                    _ => {
                        eprintln!("[weir] cancelling the job");
                        job.do_send(CancelJob);
                    }
                }
            }
        }
    }
}
