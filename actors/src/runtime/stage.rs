//! Spawning one stage: its partition actors on the worker pool under a new stage
//! supervisor.

use std::sync::Arc;

use actix::Actor;

use crate::channel::Sender;
use crate::checkpoint::{Acknowledge, EpochComplete, TriggerEpoch};
use crate::mailbox::{Mailbox, MailboxGate};
use crate::outbox::Outbox;
use crate::partition_actor::{ActorId, PartitionActor};
use crate::query::QueryState;
use crate::state::Clock;
use crate::stats::ActorStats;
use crate::supervisor::{AdoptPartitions, StageSupervisor};
use crate::task::Task;
use crate::workers::WorkerPool;

use super::{Endpoint, JobHandle, StageHandle};

/// What a stage's partition actors are spawned with.
pub struct StageSpawn<'a> {
    /// The job's name.
    pub job: Arc<str>,
    /// The stage's name.
    pub stage: Arc<str>,
    /// The stage's index in the job.
    pub stage_index: u32,
    /// Input channels of each actor: the partitions of every stage sending to it
    /// (0 for a source stage).
    pub inputs: u32,
    /// The input channel partition 0 of this stage has at its receivers (partition
    /// `i` sends as channel `output_channel + i`): 0 unless the receivers read
    /// other stages before this one.
    pub output_channel: u32,
    /// Slots of each actor's mailbox.
    pub mailbox_capacity: usize,
    /// Records per batch an actor sends downstream.
    pub batch_size: usize,
    /// The worker threads the actors are placed on, round-robin.
    pub pool: &'a WorkerPool,
    /// The job supervisor the stage's supervisor reports to.
    pub job_supervisor: &'a JobHandle,
    /// Where the actors acknowledge their snapshots.
    pub checkpoints: &'a Endpoint<Acknowledge>,
    /// The processing-time clock the actors read.
    pub clock: Arc<dyn Clock>,
    /// The epoch the job was restored from (0 for none): the actors' barriers
    /// continue after it.
    pub restored_epoch: u64,
}

/// A spawned stage: one entry per partition actor in each list, in partition order.
pub struct SpawnedStage<In: Send + 'static> {
    /// Where the stage before sends.
    pub inbound: Vec<Mailbox<In>>,
    /// The actors' counters.
    pub stats: Vec<Arc<ActorStats>>,
    /// The actors' mailbox gates (closed when the job stops).
    pub gates: Vec<MailboxGate>,
    /// The stage's supervisor.
    pub supervisor: StageHandle,
    /// For a source stage: each actor's epoch trigger, keyed by (stage index,
    /// partition); empty otherwise.
    pub triggers: Vec<((u32, u32), Endpoint<TriggerEpoch>)>,
    /// Every actor's epoch-complete notification, keyed the same way.
    pub completes: Vec<((u32, u32), Endpoint<EpochComplete>)>,
    /// Every actor's state query endpoint.
    pub queries: Vec<Endpoint<QueryState>>,
}

/// Starts one partition actor per task (task `i` is partition `i`) on the worker
/// pool under a new stage supervisor, each sending to `downstream`. Must be called
/// inside a running [`super::Runtime`].
pub fn spawn_stage<T: Task>(
    setup: &StageSpawn<'_>,
    tasks: Vec<T>,
    downstream: Vec<Sender<T::Out>>,
) -> SpawnedStage<T::In> {
    let supervisor = StageSupervisor::new(
        setup.stage.to_string(),
        tasks.len(),
        setup.job_supervisor.addr().clone(),
    )
    .start();
    let mut inbound = Vec::with_capacity(tasks.len());
    let mut stats = Vec::with_capacity(tasks.len());
    let mut gates = Vec::with_capacity(tasks.len());
    let mut stops = Vec::with_capacity(tasks.len());
    let mut triggers = Vec::new();
    let mut completes = Vec::with_capacity(tasks.len());
    let mut queries = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        let gate = MailboxGate::new(setup.mailbox_capacity, setup.inputs);
        let actor_stats = Arc::new(ActorStats::new(gate.clone()));
        let out = Outbox::over(
            setup.output_channel + i as u32,
            downstream.clone(),
            setup.batch_size,
        );
        let id = ActorId {
            job: setup.job.clone(),
            stage: setup.stage.clone(),
            stage_index: setup.stage_index,
            partition: i as u32,
        };
        let report_to = supervisor.clone().recipient();
        let inputs = setup.inputs;
        let s = actor_stats.clone();
        let acks = setup.checkpoints.clone().into_recipient();
        let clock = setup.clock.clone();
        let restored_epoch = setup.restored_epoch;
        let addr = PartitionActor::start_in_arbiter(&setup.pool.worker(i), move |_ctx| {
            PartitionActor::new(id, task, inputs, out, report_to, s)
                .with_clock(clock)
                .with_checkpoints(acks)
                .with_restored_epoch(restored_epoch)
        });
        let key = (setup.stage_index, i as u32);
        if setup.inputs == 0 {
            triggers.push((key, Endpoint::new(addr.clone().recipient())));
        }
        completes.push((key, Endpoint::new(addr.clone().recipient())));
        queries.push(Endpoint::new(addr.clone().recipient()));
        inbound.push(Mailbox::new(addr.clone().recipient(), gate.clone()));
        stops.push(addr.recipient());
        stats.push(actor_stats);
        gates.push(gate);
    }
    supervisor.do_send(AdoptPartitions(stops));
    SpawnedStage {
        inbound,
        stats,
        gates,
        supervisor: StageHandle::new(supervisor),
        triggers,
        completes,
        queries,
    }
}
