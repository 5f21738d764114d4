//! Spawning an attempt's actors: every stage of the job graph, receivers first,
//! with what they share ([`SpawnShared`]) and what came of it ([`SpawnedJob`]).

use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use weir_actors::checkpoint::{EpochComplete, TriggerEpoch};
use weir_actors::runtime::{CoordinatorHandle, Endpoint, JobHandle, StageHandle};
use weir_actors::{ActorStats, MailboxGate, QueryState, SideOutput, WorkerPool};

use crate::graph::{JobPlan, Port};
use crate::job::error::JobError;
use crate::job::plan::{OutputWire, SpawnEnv};
use crate::job::poison::PoisonBoard;
use crate::job::recovery;

use super::Node;

impl Node {
    /// Spawns every stage's actors, each after the stages it sends to (whose
    /// mailboxes it needs), recording them in `into` as it goes so that a failure
    /// part way still lets the caller stop what started.
    pub(super) fn spawn_stages(
        &self,
        shared: &SpawnShared<'_>,
        into: &mut SpawnedJob,
    ) -> Result<(), JobError> {
        let opts = &self.options;
        let plan = shared.plan;
        let plan_error = |reason: String| JobError::Plan {
            job: shared.job.to_string(),
            reason,
        };
        let parallelism: Vec<u32> = plan
            .stages
            .iter()
            .map(|stage| self.parallelism_of(stage.as_ref()))
            .collect();
        let order = plan.receivers_first().map_err(plan_error)?;
        // Per stage: its actors' mailboxes, once spawned.
        let mut inbound: Vec<Option<Rc<dyn Any>>> = vec![None; plan.stages.len()];
        // Per (sending stage, side output): the senders its partitions use, made by
        // the stage reading the side output.
        let mut side_feeders: HashMap<(u32, String), Vec<Box<dyn SideOutput>>> = HashMap::new();
        for index in order {
            let stage = &plan.stages[index as usize];
            let stage_name = &shared.stage_names[index as usize];
            let incoming = plan.inputs_of(index);
            if stage.is_source() != incoming.is_empty() {
                return Err(plan_error(format!(
                    "stage '{stage_name}' {}",
                    if stage.is_source() {
                        "is a source but reads another stage"
                    } else {
                        "reads no stage and is not a source"
                    }
                )));
            }
            // Each input is named after the stage that feeds it.
            let input_names: Vec<Arc<str>> = incoming
                .iter()
                .map(|e| Arc::from(shared.stage_names[e.from as usize].as_str()))
                .collect();
            let input_channels: Vec<u32> = incoming
                .iter()
                .map(|e| parallelism[e.from as usize])
                .collect();
            // The wiring of each output: the receivers' mailboxes, and the channel
            // this stage's partition 0 has among their inputs.
            let mut outputs = Vec::new();
            let mut sides = Vec::new();
            for edge in plan.outputs_of(index) {
                if let Port::Side(name) = &edge.port {
                    let feeders = side_feeders
                        .remove(&(index, name.clone()))
                        .ok_or_else(|| {
                            plan_error(format!(
                                "stage '{stage_name}': nothing feeds the reader of its side output '{name}'"
                            ))
                        })?;
                    sides.push((name.clone(), feeders));
                    continue;
                }
                let receiver = edge.to as usize;
                let mailboxes = inbound[receiver].clone().ok_or_else(|| {
                    plan_error(format!(
                        "stage '{stage_name}' was spawned before the stage it sends to (planner bug)"
                    ))
                })?;
                let offset = plan
                    .inputs_of(edge.to)
                    .iter()
                    .take_while(|e| !std::ptr::eq(**e, edge))
                    .map(|e| parallelism[e.from as usize])
                    .sum();
                outputs.push(OutputWire {
                    port: edge.port.clone(),
                    inbound: mailboxes,
                    offset,
                    receivers: parallelism[receiver],
                });
            }
            let env = SpawnEnv {
                job: shared.job.clone(),
                stage_index: index,
                stage_name: Arc::from(stage_name.as_str()),
                parallelism: parallelism[index as usize],
                inputs: input_channels.iter().sum(),
                input_channels,
                input_names,
                pool: shared.pool,
                job_supervisor: shared.job_addr.clone(),
                options: opts,
                store: &self.store,
                clock: self.clock.clone(),
                side_outputs: std::cell::RefCell::new(sides),
                checkpoints: shared.coordinator.acknowledgements(),
                checkpointing: opts.checkpoint.interval.is_some(),
                restore: shared.restore,
                poison: shared.poison,
            };
            let mut spawned = stage.spawn(&env, &outputs)?;
            inbound[index as usize] = Some(spawned.inbound.clone());
            if let Some(feeders) = spawned.side_feeders.take() {
                for edge in &incoming {
                    if let Port::Side(name) = &edge.port {
                        side_feeders.insert((edge.from, name.clone()), feeders);
                        break;
                    }
                }
            }
            into.supervisors.push(spawned.supervisor);
            into.gates.extend(spawned.gates);
            into.triggers.extend(spawned.triggers);
            into.completes.extend(spawned.completes);
            into.stats[index as usize] = (stage_name.clone(), spawned.stats);
            into.queries[index as usize] = spawned.queries;
        }
        if let Some(((from, name), _)) = side_feeders.into_iter().next() {
            return Err(plan_error(format!(
                "a stage reads side output '{name}' of stage {from}, which was not spawned"
            )));
        }
        Ok(())
    }
}

/// What every stage of one attempt is spawned with.
pub(super) struct SpawnShared<'a> {
    pub(super) job: Arc<str>,
    pub(super) plan: &'a JobPlan,
    pub(super) stage_names: &'a [String],
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
