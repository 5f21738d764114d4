//! One attempt of a run: starts the job supervisor and the checkpoint coordinator,
//! spawns the actors, watches them until the job finishes, fails or stops with a
//! savepoint, and reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_actors::checkpoint::{CheckpointConfig, CheckpointStats};
use weir_actors::runtime::{CoordinatorHandle, JobHandle};
use weir_actors::snapshot::SnapshotStore;
use weir_actors::{JobFailure, WorkerPool};

use crate::graph::{JobPlan, Port};
use crate::job::commits::StageCommitters;
use crate::job::error::JobError;
use crate::job::plan::StagePlan;
use crate::job::poison::PoisonBoard;
use crate::job::progress::{LiveStats, StageRoles};
use crate::job::recovery;
use crate::job::report::{JobReport, StageSummary};
use crate::metrics::JobMetrics;
use crate::status::{AttemptFeed, JobState};

use super::spawn::{SpawnShared, SpawnedJob};
use super::status::Publisher;
use super::watch::{watch, Watched};
use super::{Node, RunControl};

impl Node {
    /// One attempt: spawns the job's actors and its checkpoint coordinator, runs
    /// until the job finishes, fails or stops with a savepoint.
    pub(super) async fn attempt(
        &self,
        setup: AttemptSetup<'_>,
        control: &mut RunControl,
        metrics: &mut JobMetrics,
    ) -> Result<JobReport, JobError> {
        let AttemptSetup {
            name,
            plan,
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
        let total = plan.stages.len();
        let roles = stage_roles(plan);
        let job_name: Arc<str> = Arc::from(name.as_str());
        let attempt_started = Instant::now();
        let pool = WorkerPool::start(opts.workers);
        let (job_addr, outcome) = JobHandle::start(name.clone(), total);
        let mut meta = recovery::manifest_meta(opts.key_partitions, stage_names);
        // The source stages' split counts go into every manifest.
        for (index, stage) in plan.stages.iter().enumerate() {
            if stage.is_source() {
                let splits = match restore {
                    Some(r) => r.splits_of(index as u32).unwrap_or(0),
                    None => stage.splits(parallelism_of(stage.as_ref())),
                };
                meta.insert(
                    format!("{}{index}", recovery::META_SPLITS),
                    splits.to_string(),
                );
            }
        }
        let coordinator = CoordinatorHandle::start(
            CheckpointConfig {
                job: name.clone(),
                interval: opts.checkpoint.interval,
                timeout: opts.checkpoint.timeout,
                retain: opts.checkpoint.retain,
                compact_after: opts.checkpoint.compact_after,
                store: snapshots,
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
            &job_addr,
            checkpoint_stats.clone(),
        );
        let mut spawned = SpawnedJob::new(total);
        let spawning = self.spawn_stages(
            &SpawnShared {
                job: job_name.clone(),
                plan,
                stage_names,
                pool: &pool,
                job_addr: &job_addr,
                coordinator: &coordinator,
                restore,
                poison,
            },
            &mut spawned,
        );
        job_addr.adopt_stages(spawned.supervisors, spawned.gates);
        if let Err(e) = spawning {
            job_addr.cancel();
            coordinator.shutdown().await;
            pool.shutdown();
            return Err(e);
        }
        coordinator.adopt_actors(spawned.triggers, spawned.completes);
        let stats = spawned.stats;
        let mut feed = Some(AttemptFeed::new(self.status.for_job(setup.name)));
        if let Some(feed) = feed.as_mut() {
            let live = LiveStats::read(attempt_started.elapsed(), &stats, &roles);
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
            (&stats, &roles),
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
                match coordinator.finish_job().await {
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
        coordinator.shutdown().await;
        let elapsed = started.elapsed();
        pool.shutdown();
        let live = LiveStats::read(elapsed, &stats, &roles);
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
            sources: live.roles.sources.clone(),
            restarts: 0,
            checkpoints: checkpoint_stats.figures(),
            savepoint,
            restored_from: restore.map(|r| r.epoch),
        })
    }
}

/// What one attempt needs besides the node.
pub(super) struct AttemptSetup<'a> {
    pub(super) name: &'a str,
    pub(super) plan: &'a JobPlan,
    pub(super) stage_names: &'a [String],
    pub(super) snapshots: Option<Arc<dyn SnapshotStore>>,
    pub(super) manifest: Option<weir_actors::snapshot::Manifest>,
    pub(super) restore: Option<&'a recovery::RestorePoint>,
    pub(super) first_epoch: u64,
    pub(super) started: Instant,
    pub(super) poison: &'a PoisonBoard,
    /// The run's checkpoint figures (every attempt counts into them).
    pub(super) checkpoints: &'a Arc<CheckpointStats>,
    /// The transactional sink stages' committers.
    pub(super) committers: &'a StageCommitters,
}

/// The job's source stages, and its sink stages: those none of whose outputs feeds
/// another stage (side outputs aside), other than those reading a side output.
fn stage_roles(plan: &JobPlan) -> StageRoles {
    let n = plan.stages.len() as u32;
    let sinks = (0..n)
        .filter(|&i| {
            let feeds = plan
                .edges
                .iter()
                .any(|e| e.from == i && !matches!(e.port, Port::Side(_)));
            let reads_side = plan
                .edges
                .iter()
                .any(|e| e.to == i && matches!(e.port, Port::Side(_)));
            !feeds && !reads_side
        })
        .map(|i| i as usize)
        .collect();
    let sources = (0..plan.stages.len())
        .filter(|&i| plan.stages[i].is_source())
        .collect();
    StageRoles { sources, sinks }
}
