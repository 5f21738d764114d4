//! Stage plans: a stage as the builder left it (types erased), ready to be spawned as
//! partition actors once its downstream stage's mailboxes exist.

use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;

use weir_actors::checkpoint::{
    operator_chunk_stage, source_chunk_stage, state_chunk_stage, Acknowledge, EpochComplete,
    TriggerEpoch,
};
use weir_actors::runtime::{spawn_stage, Endpoint, JobHandle, StageHandle, StageSpawn};
use weir_actors::state::{Clock, StateStore};
use weir_actors::{
    ActorStats, ForwardSide, Mailbox, MailboxGate, QueryState, SideOutput, Task, WatermarkTracker,
    WorkerPool,
};

use crate::connector::{SinkRecovery, Source, SourceReader};
use crate::graph::Port;
use crate::operator::operator_state::redistribute;
use crate::operator::queryable::QueryableStates;
use crate::operator::{Chain, Operator, SideOutputs};

use super::commits::StageCommitter;
use super::error::JobError;
use super::options::EngineOptions;
use super::tasks::{
    InputMap, KeyedTask, PassTask, PendingPositions, RuleHandler, SourceSplit, SourceTask,
    SplitProgress, WireRecord,
};
use super::terminal::{TerminalEnv, TerminalSpec};
use crate::time::{AlignmentGroup, SplitLanes, TimestampStrategy};

/// The sled tree name of a keyed stage's state.
pub(crate) fn state_tree_name(job: &str, stage_index: u32) -> String {
    format!("{job}/{stage_index}")
}

/// A side output's name and its senders, one per partition of the sending stage.
pub type SideSenders = (String, Vec<Box<dyn SideOutput>>);

/// What a stage needs to spawn its actors.
pub struct SpawnEnv<'a> {
    pub job: Arc<str>,
    pub stage_index: u32,
    pub stage_name: Arc<str>,
    pub parallelism: u32,
    /// Input channels of each actor: the partitions of every stage sending to this
    /// one (0 for a source stage).
    pub inputs: u32,
    /// The channels of each input (edge into the stage), in channel order.
    pub input_channels: Vec<u32>,
    /// The name of each input (the stage feeding it), in the same order.
    pub input_names: Vec<Arc<str>>,
    pub pool: &'a WorkerPool,
    pub job_supervisor: JobHandle,
    pub options: &'a EngineOptions,
    pub store: &'a StateStore,
    pub clock: Arc<dyn Clock>,
    /// The side outputs the job reads from this stage, by name, each with one
    /// sender per partition of this stage (made by the stage that reads it).
    pub side_outputs: std::cell::RefCell<Vec<SideSenders>>,
    /// Where actors acknowledge their snapshots.
    pub checkpoints: Endpoint<Acknowledge>,
    /// Whether epochs are checkpointed (sources must then be able to rewind).
    pub checkpointing: bool,
    /// What the job was restored from, if anything.
    pub restore: Option<&'a super::recovery::RestorePoint>,
    /// Poison-record bookkeeping: which stages run suspiciously.
    pub(crate) poison: &'a super::poison::PoisonBoard,
}

/// One output of a stage, wired to the stage that reads it.
pub struct OutputWire {
    /// The output.
    pub port: Port,
    /// `Vec<Mailbox<W>>`: the receiving stage's mailboxes.
    pub inbound: Rc<dyn Any>,
    /// The receivers' input channel of this stage's partition 0 (partition `i`
    /// sends as channel `offset + i`).
    pub offset: u32,
    /// How many partitions the receiving stage has.
    pub receivers: u32,
}

/// A spawned stage.
pub struct Spawned {
    /// `Vec<Mailbox<In>>`: where the stages sending to this one send.
    pub inbound: Rc<dyn Any>,
    pub stats: Vec<Arc<ActorStats>>,
    pub gates: Vec<MailboxGate>,
    pub supervisor: StageHandle,
    /// For the first stage of a side branch: the side outputs the feeding stage's
    /// partitions send through, one per upstream partition.
    pub side_feeders: Option<Vec<Box<dyn SideOutput>>>,
    /// For a source stage: each actor's trigger, keyed by (stage index, partition).
    pub triggers: Vec<((u32, u32), Endpoint<TriggerEpoch>)>,
    /// Every actor's epoch-complete notification, keyed the same way.
    pub completes: Vec<((u32, u32), Endpoint<EpochComplete>)>,
    /// Every actor's state query endpoint, by partition.
    pub queries: Vec<Endpoint<QueryState>>,
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
    /// Spawns the stage's actors, sending to the stages `outputs` wires it to
    /// (spawned before it). Called again for each restart.
    fn spawn(&self, env: &SpawnEnv<'_>, outputs: &[OutputWire]) -> Result<Spawned, JobError>;
}

/// The mailboxes of the stage wired to `port`, with the channel offset of this
/// stage's partition 0 there (none and 0 when nothing reads the port).
pub(crate) fn wired_mailboxes<W: Send + 'static>(
    stage: &str,
    outputs: &[OutputWire],
    port: &Port,
) -> Result<(Vec<Mailbox<W>>, u32), JobError> {
    let Some(wire) = outputs.iter().find(|w| &w.port == port) else {
        return Ok((Vec::new(), 0));
    };
    wire.inbound
        .downcast_ref::<Vec<Mailbox<W>>>()
        .map(|m| (m.clone(), wire.offset))
        .ok_or_else(|| {
            JobError::Runtime(format!(
                "stage '{stage}': the stage reading its output {port:?} takes another record type (planner bug)"
            ))
        })
}

/// The side outputs the job reads from a stage, dealt out partition by partition:
/// each call of [`SideSenderDeal::next_partition`] gives the next partition its
/// sender of every side output.
struct SideSenderDeal {
    outputs: Vec<(String, std::vec::IntoIter<Box<dyn SideOutput>>)>,
}

impl SideSenderDeal {
    /// Takes the stage's side output senders out of `env`.
    fn take(env: &SpawnEnv<'_>) -> Self {
        SideSenderDeal {
            outputs: env
                .side_outputs
                .take()
                .into_iter()
                .map(|(name, senders)| (name, senders.into_iter()))
                .collect(),
        }
    }

    /// The side outputs of the next partition.
    fn next_partition(&mut self) -> SideOutputs {
        SideOutputs::new(
            self.outputs
                .iter_mut()
                .filter_map(|(name, senders)| senders.next().map(|s| (name.clone(), s)))
                .collect(),
        )
    }
}

/// Starts one partition actor per task on the worker pool under a new stage
/// supervisor.
fn spawn_tasks<T: Task>(
    env: &SpawnEnv<'_>,
    tasks: Vec<T>,
    (downstream, offset): (Vec<Mailbox<T::Out>>, u32),
) -> Spawned
where
    T::Out: crate::exchange::Data,
{
    let stage = spawn_stage(
        &StageSpawn {
            job: env.job.clone(),
            stage: env.stage_name.clone(),
            stage_index: env.stage_index,
            inputs: env.inputs,
            output_channel: offset,
            mailbox_capacity: env.options.mailbox_capacity,
            batch_size: env.options.batch_size,
            pool: env.pool,
            job_supervisor: &env.job_supervisor,
            checkpoints: &env.checkpoints,
            clock: env.clock.clone(),
            restored_epoch: env.restore.map_or(0, |r| r.epoch),
        },
        tasks,
        crate::exchange::senders(downstream, env.options.exchange),
    );
    Spawned {
        inbound: Rc::new(stage.inbound),
        stats: stage.stats,
        gates: stage.gates,
        supervisor: stage.supervisor,
        side_feeders: None,
        triggers: stage.triggers,
        completes: stage.completes,
        queries: stage.queries,
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
    outputs: &[OutputWire],
    i: u32,
) -> Result<Ts::Terminal, JobError> {
    let receivers = outputs
        .iter()
        .find(|w| w.port == Port::Main)
        .map_or(0, |w| w.receivers);
    term.build_with(&TerminalEnv {
        partition: i,
        parallelism: env.parallelism,
        receivers,
        key_partitions: env.options.key_partitions,
        batch_size: env.options.batch_size,
        exchange: env.options.exchange,
        outputs,
        job: &env.job,
        stage: &env.stage_name,
        stage_index: env.stage_index,
        store: env.store,
        clock: env.clock.clone(),
    })
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

    fn spawn(&self, env: &SpawnEnv<'_>, outputs: &[OutputWire]) -> Result<Spawned, JobError> {
        let downstream = wired_mailboxes(&env.stage_name, outputs, &Port::Main)?;
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
            let term = build_terminal(&self.term, env, outputs, i)?;
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

/// A stage that starts at an operator; `W` is what it receives on the wire.
pub(crate) struct KeyedStagePlan<P: Operator, C, Ts, W: WireRecord> {
    pub process: P,
    pub chain: C,
    pub term: Ts,
    pub on_rule: RuleHandler<P, W::Rule>,
}

/// The rule handler of a stage that reads no broadcast stream: it never runs.
pub(crate) fn no_rules<P: Operator>(
    _op: &mut P,
    rule: std::convert::Infallible,
    _ctx: &mut crate::operator::BroadcastContext<'_, P::Out>,
) -> Result<(), crate::operator::OperatorError> {
    match rule {}
}

impl<P, C, Ts> KeyedStagePlan<P, C, Ts, crate::record::Keyed<P::Key, P::In>>
where
    P: Operator,
{
    /// The plan of a stage reading keyed records (no broadcast stream).
    pub(crate) fn new(process: P, chain: C, term: Ts) -> Self {
        KeyedStagePlan {
            process,
            chain,
            term,
            on_rule: no_rules::<P>,
        }
    }
}

impl<P, C, Ts, W> StagePlan for KeyedStagePlan<P, C, Ts, W>
where
    P: Operator,
    C: Chain<P::Out>,
    Ts: TerminalSpec<C::Out>,
    W: WireRecord<Key = P::Key, Value = P::In>,
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
        self.process
            .recover(recovery)
            .map_err(|e| JobError::Runtime(format!("stage '{}': recover: {e}", self.name())))?;
        recover_terminal(&self.term, self.name(), recovery)
    }

    /// The committer of the stage's transactional operator: its first operator's or
    /// its terminal's (a stage with both is refused when it is spawned).
    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        self.process.committer().or_else(|| self.term.committer())
    }

    fn spawn(&self, env: &SpawnEnv<'_>, outputs: &[OutputWire]) -> Result<Spawned, JobError> {
        if self.process.committer().is_some() && self.term.committer().is_some() {
            return Err(JobError::Runtime(format!(
                "stage '{}' has two transactional operators (its first and its sink): \
                 their commit actions would share one committer; put a partitioning \
                 (e.g. forward()) between them",
                env.stage_name
            )));
        }
        let downstream = wired_mailboxes(&env.stage_name, outputs, &Port::Main)?;
        // The node restored (or cleared) this stage's keyed state before the run;
        // the operator state is dealt out here.
        let state_name = state_tree_name(&env.job, env.stage_index);
        let mut restored = match env.restore.map(|r| r.operator_state(env.stage_index)) {
            Some(frames) if !frames.is_empty() => redistribute(frames, env.parallelism)
                .map_err(|e| {
                    JobError::Runtime(format!(
                        "stage '{}': restoring operator state: {e}",
                        env.stage_name
                    ))
                })?
                .into_iter()
                .map(Some)
                .collect(),
            _ => Vec::new(),
        };
        let inputs = InputMap::new(&env.input_channels, &env.input_names);
        let mut sides = SideSenderDeal::take(env);
        let mut tasks = Vec::with_capacity(env.parallelism as usize);
        for i in 0..env.parallelism {
            let owned =
                crate::partition::owned_range(i, env.options.key_partitions, env.parallelism);
            let state = env.store.keyed(&state_name, owned, env.clock.clone())?;
            let term = build_terminal(&self.term, env, outputs, i)?;
            tasks.push(KeyedTask::<P, C, Ts::Terminal, W> {
                process: self.process.clone(),
                state,
                chain: self.chain.clone(),
                term,
                job: env.job.clone(),
                stage: env.stage_name.clone(),
                partition: i,
                parallelism: env.parallelism,
                watermark: weir_actors::NO_WATERMARK,
                sides: sides.next_partition(),
                chunk_stage: state_chunk_stage(env.stage_index),
                operator_chunk_stage: operator_chunk_stage(env.stage_index),
                wrote_operator_state: false,
                restored: restored.get_mut(i as usize).and_then(Option::take),
                run: env.restore.map_or(0, |r| r.epoch),
                suspect: env.poison.suspect(&env.stage_name, i),
                queryables: QueryableStates::default(),
                key_partitions: env.options.key_partitions,
                inputs: inputs.clone(),
                on_rule: self.on_rule,
                _wire: std::marker::PhantomData,
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
    T: crate::exchange::Data,
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

    fn spawn(&self, env: &SpawnEnv<'_>, outputs: &[OutputWire]) -> Result<Spawned, JobError> {
        let downstream = wired_mailboxes(&env.stage_name, outputs, &Port::Main)?;
        let mut tasks = Vec::with_capacity(env.parallelism as usize);
        for i in 0..env.parallelism {
            let term = build_terminal(&self.term, env, outputs, i)?;
            tasks.push(PassTask {
                chain: self.chain.clone(),
                term,
                _in: std::marker::PhantomData::<fn(T)>,
            });
        }
        let mut spawned = spawn_tasks(env, tasks, downstream);
        let receivers = spawned
            .inbound
            .downcast_ref::<Vec<Mailbox<crate::record::Keyed<crate::operator::NoKey, T>>>>()
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
                    Box::new(ForwardSide::over(
                        p,
                        p,
                        crate::exchange::senders(receivers.clone(), env.options.exchange),
                        env.options.batch_size,
                    )) as Box<dyn SideOutput>
                })
                .collect(),
        );
        Ok(spawned)
    }
}
