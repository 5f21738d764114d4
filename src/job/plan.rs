//! Stage plans: a stage as the builder left it (types erased), ready to be spawned as
//! partition actors once its downstream stage's mailboxes exist.

use std::any::Any;
use std::sync::Arc;

use actix::prelude::*;
use weir_actors::checkpoint::{
    source_chunk_stage, state_chunk_stage, Acknowledge, EpochComplete, TriggerEpoch,
};
use weir_actors::state::{Clock, StateStore};
use weir_actors::supervisor::AdoptPartitions;
use weir_actors::{
    ActorId, ActorStats, ForwardSide, JobSupervisor, Mailbox, MailboxGate, Outbox, PartitionActor,
    QueryState, SideOutput, StageSupervisor, Task, WatermarkTracker, WorkerPool,
};

use crate::connector::{SinkRecovery, Source, SourceReader};
use crate::operator::queryable::QueryableStates;
use crate::operator::{Chain, KeyedProcess};

use super::commits::StageCommitter;
use super::error::JobError;
use super::options::EngineOptions;
use super::tasks::{KeyedTask, PassTask, PendingPositions, SourceSplit, SourceTask, SplitProgress};
use super::terminal::TerminalSpec;
use crate::time::{AlignmentGroup, SplitLanes, TimestampStrategy};

/// The sled tree name of a keyed stage's state.
pub(crate) fn state_tree_name(job: &str, stage_index: u32) -> String {
    format!("{job}/{stage_index}")
}

/// What a stage needs to spawn its actors.
pub struct SpawnEnv<'a> {
    pub job: Arc<str>,
    pub stage_index: u32,
    pub stage_name: Arc<str>,
    pub parallelism: u32,
    /// Partition actors of the stage before (0 for a source stage).
    pub inputs: u32,
    /// Partition actors of the stage after (0 when the stage ends in a sink).
    pub downstream: u32,
    pub pool: &'a WorkerPool,
    pub job_supervisor: Addr<JobSupervisor>,
    pub options: &'a EngineOptions,
    pub store: &'a StateStore,
    pub clock: Arc<dyn Clock>,
    /// Side outputs feeding a branch, one per partition of this stage (taken by the
    /// stage that produces the side output).
    pub side_outputs: std::cell::RefCell<Option<Vec<Box<dyn SideOutput>>>>,
    /// Where actors acknowledge their snapshots.
    pub checkpoints: Recipient<Acknowledge>,
    /// Whether epochs are checkpointed (sources must then be able to rewind).
    pub checkpointing: bool,
    /// What the job was restored from, if anything.
    pub restore: Option<&'a super::recovery::RestorePoint>,
    /// Poison-record bookkeeping: which stages run suspiciously.
    pub(crate) poison: &'a super::poison::PoisonBoard,
}

/// A spawned stage.
pub struct Spawned {
    /// `Vec<Mailbox<In>>`: where the stage before sends.
    pub inbound: Box<dyn Any>,
    pub stats: Vec<Arc<ActorStats>>,
    pub gates: Vec<MailboxGate>,
    pub supervisor: Addr<StageSupervisor>,
    /// For the first stage of a side branch: the side outputs the feeding stage's
    /// partitions send through, one per upstream partition.
    pub side_feeders: Option<Vec<Box<dyn SideOutput>>>,
    /// For a source stage: each actor's trigger, keyed by (stage index, partition).
    pub triggers: Vec<((u32, u32), Recipient<TriggerEpoch>)>,
    /// Every actor's epoch-complete notification, keyed the same way.
    pub completes: Vec<((u32, u32), Recipient<EpochComplete>)>,
    /// Every actor's state query endpoint, by partition.
    pub queries: Vec<Recipient<QueryState>>,
}

/// A stage, types erased.
pub trait StagePlan: Send {
    /// The stage's name: its operators joined by arrows.
    fn name(&self) -> String;
    /// The most partition actors this stage may have.
    fn max_parallelism(&self) -> Option<u32>;
    /// Whether this is a source stage.
    fn is_source(&self) -> bool;
    /// For a source stage: how many splits its source is cut into at `parallelism`.
    fn splits(&self, _parallelism: u32) -> u32 {
        0
    }
    /// Whether the stage keeps keyed state (restored from snapshots before a run).
    fn has_keyed_state(&self) -> bool {
        false
    }
    /// Before a run: lets the stage's sink discard output staged by a run that did
    /// not complete its epoch.
    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), JobError>;
    /// The committer of the stage's transactional sink, if it ends in one.
    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        None
    }
    /// Spawns the stage's actors; `downstream` is the next stage's `Vec<Mailbox<_>>`
    /// (or `()` when this stage ends in a sink). Called again for each restart.
    fn spawn(&self, env: &SpawnEnv<'_>, downstream: Box<dyn Any>) -> Result<Spawned, JobError>;
}

fn downcast_mailboxes<W: Send + 'static>(
    env: &SpawnEnv<'_>,
    downstream: Box<dyn Any>,
) -> Result<Vec<Mailbox<W>>, JobError> {
    if env.downstream == 0 {
        return Ok(Vec::new());
    }
    downstream
        .downcast::<Vec<Mailbox<W>>>()
        .map(|b| *b)
        .map_err(|_| {
            JobError::Runtime(format!(
                "stage '{}': the next stage does not take this stage's output type (planner bug)",
                env.stage_name
            ))
        })
}

/// Starts one partition actor per task on the worker pool under a new stage
/// supervisor.
fn spawn_tasks<T: Task>(
    env: &SpawnEnv<'_>,
    tasks: Vec<T>,
    downstream: Vec<Mailbox<T::Out>>,
) -> Spawned {
    let supervisor = StageSupervisor::new(
        env.stage_name.to_string(),
        tasks.len(),
        env.job_supervisor.clone(),
    )
    .start();
    let mut inbound = Vec::with_capacity(tasks.len());
    let mut stats = Vec::with_capacity(tasks.len());
    let mut gates = Vec::with_capacity(tasks.len());
    let mut stops = Vec::with_capacity(tasks.len());
    let mut triggers = Vec::new();
    let mut completes = Vec::with_capacity(tasks.len());
    let mut queries = Vec::with_capacity(tasks.len());
    let restored_epoch = env.restore.map_or(0, |r| r.epoch);
    for (i, task) in tasks.into_iter().enumerate() {
        let gate = MailboxGate::new(env.options.mailbox_capacity, env.inputs);
        let actor_stats = Arc::new(ActorStats::new(gate.clone()));
        let out = Outbox::new(i as u32, downstream.clone(), env.options.batch_size);
        let id = ActorId {
            job: env.job.clone(),
            stage: env.stage_name.clone(),
            stage_index: env.stage_index,
            partition: i as u32,
        };
        let report_to = supervisor.clone().recipient();
        let inputs = env.inputs;
        let s = actor_stats.clone();
        let acks = env.checkpoints.clone();
        let clock = env.clock.clone();
        let addr = PartitionActor::start_in_arbiter(&env.pool.worker(i), move |_ctx| {
            PartitionActor::new(id, task, inputs, out, report_to, s)
                .with_clock(clock)
                .with_checkpoints(acks)
                .with_restored_epoch(restored_epoch)
        });
        let key = (env.stage_index, i as u32);
        if env.inputs == 0 {
            triggers.push((key, addr.clone().recipient()));
        }
        completes.push((key, addr.clone().recipient()));
        queries.push(addr.clone().recipient());
        inbound.push(Mailbox::new(addr.clone().recipient(), gate.clone()));
        stops.push(addr.recipient());
        stats.push(actor_stats);
        gates.push(gate);
    }
    supervisor.do_send(AdoptPartitions(stops));
    Spawned {
        inbound: Box::new(inbound),
        stats,
        gates,
        supervisor,
        side_feeders: None,
        triggers,
        completes,
        queries,
    }
}

/// A stage's name: its first operator, then the chain's, then the terminal.
fn stage_name<In, C: Chain<In>, Ts: TerminalSpec<C::Out>>(
    first: String,
    chain: &C,
    term: &Ts,
) -> String {
    let mut parts = vec![first];
    chain.names(&mut parts);
    parts.push(term.describe());
    parts.join(" -> ")
}

/// Runs a terminal spec's recovery, with a failure naming the stage.
fn recover_terminal<T, Ts: TerminalSpec<T>>(
    term: &Ts,
    stage: String,
    recovery: &SinkRecovery<'_>,
) -> Result<(), JobError> {
    term.recover(recovery)
        .map_err(|source| JobError::Sink { stage, source })
}

/// Partition `i`'s terminal, with a failure naming the stage.
fn build_terminal<T, Ts: TerminalSpec<T>>(
    term: &Ts,
    env: &SpawnEnv<'_>,
    i: u32,
) -> Result<Ts::Terminal, JobError> {
    term.build(
        i,
        env.parallelism,
        env.downstream,
        env.options.key_partitions,
    )
    .map_err(|source| JobError::Sink {
        stage: env.stage_name.to_string(),
        source,
    })
}

/// A stage that starts at a source.
pub(crate) struct SourceStagePlan<S, T, C, Ts> {
    pub source: S,
    pub time: T,
    pub chain: C,
    pub term: Ts,
}

impl<S, T, C, Ts> StagePlan for SourceStagePlan<S, T, C, Ts>
where
    S: Source,
    T: TimestampStrategy<S::Item>,
    C: Chain<S::Item>,
    Ts: TerminalSpec<C::Out>,
{
    fn name(&self) -> String {
        stage_name(
            format!("source:{}", self.source.name()),
            &self.chain,
            &self.term,
        )
    }

    fn max_parallelism(&self) -> Option<u32> {
        self.source.max_parallelism()
    }

    fn is_source(&self) -> bool {
        true
    }

    fn splits(&self, parallelism: u32) -> u32 {
        self.source.splits(parallelism)
    }

    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), JobError> {
        recover_terminal(&self.term, self.name(), recovery)
    }

    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        self.term.committer()
    }

    fn spawn(&self, env: &SpawnEnv<'_>, downstream: Box<dyn Any>) -> Result<Spawned, JobError> {
        let downstream = downcast_mailboxes(env, downstream)?;
        let source_error = |source| JobError::Source {
            stage: env.stage_name.to_string(),
            source,
        };
        // The splits are fixed for the job's life: restored from the snapshot, or
        // chosen by the source at the first start; actor i reads splits i, i + p, ...
        let total = match env.restore {
            Some(r) => r.splits_of(env.stage_index).unwrap_or(0),
            None => self.source.splits(env.parallelism),
        };
        let mut tasks = Vec::with_capacity(env.parallelism as usize);
        // One alignment group for the stage's actors, if the strategy asks for one.
        let alignment = TimestampStrategy::<S::Item>::max_drift(&self.time).map(|drift| {
            let drift_ms = i64::try_from(drift.as_millis()).unwrap_or(i64::MAX);
            Arc::new(AlignmentGroup::new(env.parallelism as usize, drift_ms))
        });
        for i in 0..env.parallelism {
            let mut splits = Vec::new();
            for id in (i..total).step_by(env.parallelism.max(1) as usize) {
                let mut reader = self.source.reader(id, total).map_err(source_error)?;
                let mut progress = SplitProgress::new();
                let mut exhausted = false;
                if let Some(saved) = env.restore.and_then(|r| r.split(env.stage_index, id)) {
                    exhausted = saved.exhausted;
                    progress.max_ts = saved.max_ts;
                    if !saved.lanes.is_empty() {
                        progress.lanes = Some(SplitLanes::restored(
                            saved.max_ts,
                            saved.lanes.iter().copied(),
                        ));
                    }
                    if let (false, Some(position)) = (saved.exhausted, &saved.position) {
                        reader.seek(position).map_err(source_error)?;
                    }
                }
                if env.checkpointing && !exhausted && reader.position().is_none() {
                    return Err(JobError::Plan {
                        job: env.job.to_string(),
                        reason: format!(
                            "source {} cannot rewind, so it cannot be read with checkpointing on",
                            self.source.name()
                        ),
                    });
                }
                splits.push(SourceSplit {
                    id,
                    reader,
                    progress,
                    exhausted,
                    idle_now: false,
                });
            }
            let term = build_terminal(&self.term, env, i)?;
            tasks.push(SourceTask {
                watermarks: WatermarkTracker::new(splits.len()),
                splits,
                cursor: 0,
                idle_sent: false,
                time: self.time.clone(),
                read: 0,
                chain: self.chain.clone(),
                term,
                budget: env.options.batch_size.max(1),
                what: self.source.name(),
                chunk_stage: source_chunk_stage(env.stage_index),
                alignment: alignment.clone().map(|group| (group, i as usize)),
                pending: PendingPositions::default(),
            });
        }
        Ok(spawn_tasks(env, tasks, downstream))
    }
}

/// A stage that starts at a keyed operator.
pub(crate) struct KeyedStagePlan<P, C, Ts> {
    pub process: P,
    pub chain: C,
    pub term: Ts,
}

impl<P, C, Ts> StagePlan for KeyedStagePlan<P, C, Ts>
where
    P: KeyedProcess,
    C: Chain<P::Out>,
    Ts: TerminalSpec<C::Out>,
{
    fn name(&self) -> String {
        stage_name(self.process.name(), &self.chain, &self.term)
    }

    fn max_parallelism(&self) -> Option<u32> {
        None
    }

    fn is_source(&self) -> bool {
        false
    }

    fn has_keyed_state(&self) -> bool {
        true
    }

    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), JobError> {
        recover_terminal(&self.term, self.name(), recovery)
    }

    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        self.term.committer()
    }

    fn spawn(&self, env: &SpawnEnv<'_>, downstream: Box<dyn Any>) -> Result<Spawned, JobError> {
        let downstream = downcast_mailboxes(env, downstream)?;
        // The node restored (or cleared) this stage's state before the run.
        let state_name = state_tree_name(&env.job, env.stage_index);
        let mut tasks = Vec::with_capacity(env.parallelism as usize);
        let mut sides = env.side_outputs.borrow_mut().take().map(Vec::into_iter);
        for i in 0..env.parallelism {
            let owned =
                crate::partition::owned_range(i, env.options.key_partitions, env.parallelism);
            let state = env.store.keyed(&state_name, owned, env.clock.clone())?;
            let term = build_terminal(&self.term, env, i)?;
            tasks.push(KeyedTask {
                process: self.process.clone(),
                state,
                chain: self.chain.clone(),
                term,
                job: env.job.clone(),
                stage: env.stage_name.clone(),
                partition: i,
                parallelism: env.parallelism,
                watermark: weir_actors::NO_WATERMARK,
                side: sides.as_mut().and_then(Iterator::next),
                chunk_stage: state_chunk_stage(env.stage_index),
                suspect: env.poison.suspect(&env.stage_name, i),
                queryables: QueryableStates::default(),
                key_partitions: env.options.key_partitions,
            });
        }
        Ok(spawn_tasks(env, tasks, downstream))
    }
}

/// The first stage of a branch that reads another stage's side output: partition `i`
/// receives what partition `i` of the feeding stage sends to its side output.
pub(crate) struct SideStagePlan<T, C, Ts> {
    pub chain: C,
    pub term: Ts,
    pub what: String,
    pub _in: std::marker::PhantomData<fn(T)>,
}

impl<T, C, Ts> StagePlan for SideStagePlan<T, C, Ts>
where
    T: Send + Unpin + 'static,
    C: Chain<T>,
    Ts: TerminalSpec<C::Out>,
{
    fn name(&self) -> String {
        stage_name(self.what.clone(), &self.chain, &self.term)
    }

    fn max_parallelism(&self) -> Option<u32> {
        None
    }

    fn is_source(&self) -> bool {
        false
    }

    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), JobError> {
        recover_terminal(&self.term, self.name(), recovery)
    }

    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        self.term.committer()
    }

    fn spawn(&self, env: &SpawnEnv<'_>, downstream: Box<dyn Any>) -> Result<Spawned, JobError> {
        let downstream = downcast_mailboxes(env, downstream)?;
        let mut tasks = Vec::with_capacity(env.parallelism as usize);
        for i in 0..env.parallelism {
            let term = build_terminal(&self.term, env, i)?;
            tasks.push(PassTask {
                chain: self.chain.clone(),
                term,
                _in: std::marker::PhantomData::<fn(T)>,
            });
        }
        let mut spawned = spawn_tasks(env, tasks, downstream);
        let receivers = spawned
            .inbound
            .downcast_ref::<Vec<Mailbox<T>>>()
            .cloned()
            .ok_or_else(|| {
                JobError::Runtime(format!(
                    "stage '{}': side input type (planner bug)",
                    env.stage_name
                ))
            })?;
        spawned.side_feeders = Some(
            (0..env.inputs)
                .map(|p| {
                    Box::new(ForwardSide::new(
                        p,
                        receivers.clone(),
                        env.options.batch_size,
                    )) as Box<dyn SideOutput>
                })
                .collect(),
        );
        Ok(spawned)
    }
}
