//! The checkpoint coordinator, driven by hand-written acknowledgements: epochs that
//! time out are abandoned without losing what they carried.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;
use weir_actors::checkpoint::{
    Acknowledge, CheckpointConfig, CheckpointCoordinator, CheckpointStats, EpochComplete,
    FinishJob, JobActors, StageAction, TaskSnapshot, TriggerEpoch,
};
use weir_actors::partition_actor::ActorId;
use weir_actors::snapshot::{LocalDirStore, SnapshotStore};
use weir_actors::supervisor::JobSupervisor;

/// Stands in for the job's actors: notes the epochs it is triggered for and told of.
#[derive(Default)]
struct Actors {
    triggered: Arc<Mutex<Vec<u64>>>,
}

impl Actor for Actors {
    type Context = Context<Self>;
}

impl Handler<TriggerEpoch> for Actors {
    type Result = ();
    fn handle(&mut self, msg: TriggerEpoch, _: &mut Context<Self>) {
        self.triggered.lock().unwrap().push(msg.0);
    }
}

impl Handler<EpochComplete> for Actors {
    type Result = ();
    fn handle(&mut self, _: EpochComplete, _: &mut Context<Self>) {}
}

/// Waits until `done` holds, polling every 2 ms; fails after 10 s. (Tests wait on
/// conditions, never for a fixed time.)
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

fn ack(stage_index: u32, epoch: Option<u64>, commits: Vec<Vec<u8>>) -> Acknowledge {
    Acknowledge {
        actor: ActorId {
            job: "job".into(),
            stage: format!("stage {stage_index}").into(),
            stage_index,
            partition: 0,
        },
        epoch,
        snapshot: TaskSnapshot {
            chunks: Vec::new(),
            commits,
        },
        alignment: Duration::ZERO,
    }
}

#[test]
fn a_final_snapshot_absorbed_by_an_abandoned_epoch_still_gets_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SnapshotStore> = Arc::new(LocalDirStore::new(dir.path()).unwrap());
    // Each applied action with the stage it was tagged with.
    let applied: Arc<Mutex<Vec<StageAction>>> = Arc::default();
    let actors = Actors::default();
    let triggered = actors.triggered.clone();
    let stats = Arc::new(CheckpointStats::default());
    let system = System::new();
    let finished = system.block_on(async {
        let actors = actors.start();
        let (supervisor, _outcome) = JobSupervisor::new("job", 2);
        let log = applied.clone();
        let coordinator = CheckpointCoordinator::new(
            CheckpointConfig {
                job: "job".into(),
                interval: Some(Duration::from_millis(10)),
                timeout: Duration::from_millis(40),
                retain: 2,
                compact_after: 4,
                store: Some(store.clone()),
                committer: Arc::new(move |stage: u32, action: &[u8]| {
                    log.lock().unwrap().push(StageAction {
                        stage,
                        action: action.to_vec(),
                    });
                    Ok(())
                }),
                merge: Arc::new(|chain: &[Vec<u8>]| Ok(chain.concat())),
                meta: BTreeMap::new(),
                first_epoch: 1,
                restored: None,
                hold_off: Duration::ZERO,
            },
            supervisor.start(),
            stats.clone(),
        )
        .start();
        // A source (stage 0) and a sink stage (stage 1).
        coordinator.do_send(JobActors {
            sources: vec![((0, 0), actors.clone().recipient())],
            all: vec![
                ((0, 0), actors.clone().recipient()),
                ((1, 0), actors.clone().recipient()),
            ],
        });
        wait_until("epoch 1 was triggered", || {
            !triggered.lock().unwrap().is_empty()
        })
        .await;
        // The sink finishes during epoch 1: its final snapshot (naming its last
        // output) joins epoch 1, which then times out for want of the source.
        coordinator.do_send(ack(1, None, vec![b"publish the last part".to_vec()]));
        wait_until("epoch 1 was abandoned", || stats.failed() >= 1).await;
        // The source acknowledges epoch 1 late, then whatever came after, then ends.
        coordinator.do_send(ack(0, Some(1), Vec::new()));
        wait_until("an epoch after 1 was triggered", || {
            triggered.lock().unwrap().len() > 1
        })
        .await;
        for epoch in triggered.lock().unwrap().clone().into_iter().skip(1) {
            coordinator.do_send(ack(0, Some(epoch), Vec::new()));
        }
        coordinator.do_send(ack(0, None, Vec::new()));
        let (tx, rx) = oneshot::channel();
        coordinator.do_send(FinishJob(tx));
        rx.await
    });
    assert!(matches!(finished, Ok(Ok(()))), "final epoch: {finished:?}");
    assert!(stats.failed() >= 1, "epoch 1 was abandoned");
    assert!(
        applied
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.stage == 1 && a.action.as_slice() == b"publish the last part"),
        "the final snapshot's commit action ran, tagged with the sink's stage"
    );
}
