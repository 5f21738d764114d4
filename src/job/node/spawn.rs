//! Spawning an attempt's actors: every stage of every pipeline, downstream first,
//! with what they share ([`SpawnShared`]) and what came of it ([`SpawnedJob`]).

use std::any::Any;
use std::sync::Arc;

use weir_actors::checkpoint::{EpochComplete, TriggerEpoch};
use weir_actors::runtime::{CoordinatorHandle, Endpoint, JobHandle, StageHandle};
use weir_actors::{ActorStats, MailboxGate, QueryState, SideOutput, WorkerPool};

use crate::job::error::JobError;
use crate::job::plan::SpawnEnv;
use crate::job::poison::PoisonBoard;
use crate::job::recovery;

use super::{Node, Pipeline};

impl Node {
    /// Spawns every stage's actors, downstream first (the branches, each from its
    /// last stage to its first, then the main pipeline), recording them in `into` as
    /// it goes so that a failure part way still lets the caller stop what started.
    pub(super) fn spawn_pipelines(
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
                    checkpoints: shared.coordinator.acknowledgements(),
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
pub(super) struct SpawnShared<'a> {
    pub(super) job: Arc<str>,
    pub(super) pipelines: &'a [Pipeline],
    pub(super) stage_names: &'a [String],
    /// Actors per stage of the main pipeline (a branch's first stage reads one).
    pub(super) main_parallelism: &'a [u32],
    pub(super) pool: &'a WorkerPool,
    pub(super) job_addr: &'a JobHandle,
    pub(super) coordinator: &'a CoordinatorHandle,
    pub(super) restore: Option<&'a recovery::RestorePoint>,
    pub(super) poison: &'a PoisonBoard,
}

/// The actors of one attempt, as far as they were spawned.
pub(super) struct SpawnedJob {
    pub(super) supervisors: Vec<StageHandle>,
    pub(super) gates: Vec<MailboxGate>,
    pub(super) triggers: Vec<((u32, u32), Endpoint<TriggerEpoch>)>,
    pub(super) completes: Vec<((u32, u32), Endpoint<EpochComplete>)>,
    /// Per stage index: the stage's name and its actors' counters.
    pub(super) stats: Vec<(String, Vec<Arc<ActorStats>>)>,
    /// Per stage index: its actors' state query endpoints.
    pub(super) queries: Vec<Vec<Endpoint<QueryState>>>,
}

impl SpawnedJob {
    /// Nothing spawned yet, for a job of `stages` stages.
    pub(super) fn new(stages: usize) -> Self {
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
