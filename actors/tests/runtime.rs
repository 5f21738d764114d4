//! The kernel's face to the engine (`weir_actors::runtime`), used as the engine uses
//! it: a job supervisor, a checkpoint coordinator and stages spawned through
//! `spawn_stage`, with no actix type in sight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_actors::checkpoint::{CheckpointConfig, CheckpointStats};
use weir_actors::outbox::Outbox;
use weir_actors::runtime::{
    spawn_stage, CoordinatorHandle, Endpoint, JobHandle, Runtime, StageSpawn,
};
use weir_actors::state::SystemClock;
use weir_actors::task::{Pumped, Task, TaskError};
use weir_actors::{JobFailure, QueryAnswer, StateQuery, WorkerPool};

mod support;
use support::{checkpoint_config, Counter};

/// A sink partition that notes every record it receives.
struct Collect {
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Task for Collect {
    type In = u64;
    type Out = ();
    fn on_batch(&mut self, _: u32, batch: Vec<u64>, _: &mut Outbox<()>) -> Result<(), TaskError> {
        self.seen.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// A source that never ends and answers every query with `<state>=<key>`.
struct Endless;

impl Task for Endless {
    type In = ();
    type Out = ();
    fn on_batch(&mut self, _: u32, _: Vec<()>, _: &mut Outbox<()>) -> Result<(), TaskError> {
        Err(TaskError::msg("a source has no input"))
    }
    fn pump(&mut self, _: &mut Outbox<()>) -> Result<Pumped, TaskError> {
        Ok(Pumped::Idle)
    }
    fn query(&mut self, query: &StateQuery) -> QueryAnswer {
        QueryAnswer::Value {
            key_partition: 3,
            value: Some(format!("{}={}", query.state, query.key)),
        }
    }
}

/// A checkpoint configuration without a store (no periodic epochs; the final epoch
/// still runs its commit actions, noted in `applied`).
fn config(applied: Arc<Mutex<Vec<Vec<u8>>>>) -> CheckpointConfig {
    checkpoint_config("runtime-test", None, Duration::from_secs(10), None, applied)
}

/// The fixed parts of a stage's spawn setup.
fn stage<'a>(
    name: &str,
    stage_index: u32,
    inputs: u32,
    pool: &'a WorkerPool,
    job: &'a JobHandle,
    checkpoints: &'a Endpoint<weir_actors::checkpoint::Acknowledge>,
) -> StageSpawn<'a> {
    StageSpawn {
        job: Arc::from("runtime-test"),
        stage: Arc::from(name),
        stage_index,
        inputs,
        output_channel: 0,
        mailbox_capacity: 4,
        batch_size: 3,
        pool,
        job_supervisor: job,
        checkpoints,
        clock: Arc::new(SystemClock),
        restored_epoch: 0,
    }
}

#[test]
fn a_job_spawned_through_the_runtime_delivers_every_record_and_commits_its_final_epoch() {
    let seen: [Arc<Mutex<Vec<u64>>>; 2] = Default::default();
    let applied: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stats = Arc::new(CheckpointStats::default());
    let runtime = Runtime::new();
    let (outcome, finished, keys) = runtime.block_on(async {
        let pool = WorkerPool::start(2);
        let (job, outcome) = JobHandle::start("runtime-test", 2);
        let coordinator = CoordinatorHandle::start(config(applied.clone()), &job, stats.clone());
        let acks = coordinator.acknowledgements();
        let sinks = spawn_stage(
            &stage("sink", 1, 2, &pool, &job, &acks),
            seen.iter().map(|s| Collect { seen: s.clone() }).collect(),
            Vec::new(),
        );
        let sources = spawn_stage(
            &stage("numbers", 0, 0, &pool, &job, &acks),
            vec![
                Counter { next: 0, n: 50 },
                Counter {
                    next: 1000,
                    n: 1050,
                },
            ],
            weir_actors::channel::local(sinks.inbound.clone()),
        );
        let keys = (
            sources.triggers.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            sinks.triggers.len(),
            sinks.completes.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            (
                sources.queries.len(),
                sources.stats.len(),
                sinks.gates.len(),
            ),
        );
        let gates = sources.gates.into_iter().chain(sinks.gates).collect();
        job.adopt_stages(vec![sources.supervisor, sinks.supervisor], gates);
        let completes = sources
            .completes
            .into_iter()
            .chain(sinks.completes)
            .collect();
        coordinator.adopt_actors(sources.triggers, completes);
        let outcome = outcome.await;
        let finished = coordinator.finish_job().await;
        coordinator.shutdown().await;
        pool.shutdown();
        (outcome, finished, keys)
    });
    assert_eq!(outcome, Ok(Ok(())), "every stage finished");
    assert_eq!(finished, Ok(Ok(())), "the final epoch completed");
    assert_eq!(keys.0, vec![(0, 0), (0, 1)], "a trigger per source actor");
    assert_eq!(keys.1, 0, "a stage with inputs is not triggered");
    assert_eq!(
        keys.2,
        vec![(1, 0), (1, 1)],
        "an epoch-complete endpoint per actor"
    );
    assert_eq!(
        keys.3,
        (2, 2, 2),
        "a query endpoint, counters and a gate per actor"
    );
    for (partition, seen) in seen.iter().enumerate() {
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        let want: Vec<u64> = (0..50)
            .chain(1000..1050)
            .filter(|v| v % 2 == partition as u64)
            .collect();
        assert_eq!(got, want, "sink partition {partition} got its records once");
    }
    let mut positions: Vec<u64> = applied
        .lock()
        .unwrap()
        .iter()
        .map(|action| u64::from_le_bytes(action.clone().try_into().unwrap()))
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        vec![50, 1050],
        "the final snapshots' commit actions (each source's position) ran"
    );
}

#[test]
fn a_query_endpoint_reaches_its_actor_and_a_cancelled_job_says_so() {
    let runtime = Runtime::new();
    let (answer, outcome) = runtime.block_on(async {
        let pool = WorkerPool::start(1);
        let (job, outcome) = JobHandle::start("runtime-test", 1);
        let coordinator = CoordinatorHandle::start(
            config(Arc::default()),
            &job,
            Arc::new(CheckpointStats::default()),
        );
        let acks = coordinator.acknowledgements();
        let stage = spawn_stage(
            &stage("endless", 0, 0, &pool, &job, &acks),
            vec![Endless],
            Vec::new(),
        );
        job.adopt_stages(vec![stage.supervisor], stage.gates);
        let answer = stage.queries[0]
            .ask(StateQuery {
                state: "count".into(),
                key: "\"k\"".into(),
            })
            .await;
        job.cancel();
        let outcome = outcome.await;
        coordinator.shutdown().await;
        pool.shutdown();
        (answer, outcome)
    });
    assert_eq!(
        answer,
        Ok(QueryAnswer::Value {
            key_partition: 3,
            value: Some("count=\"k\"".into()),
        })
    );
    assert_eq!(
        outcome,
        Ok(Err(JobFailure::Cancelled {
            job: "runtime-test".into()
        }))
    );
}
