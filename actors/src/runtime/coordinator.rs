//! A handle on a job's running checkpoint coordinator.

use std::path::PathBuf;
use std::sync::Arc;

use actix::{Actor, Addr};
use tokio::sync::oneshot;

use crate::checkpoint::{
    Acknowledge, CheckpointConfig, CheckpointCoordinator, CheckpointStats, EpochComplete,
    FinishJob, JobActors, RequestSavepoint, ShutdownCoordinator, TriggerEpoch,
};

use super::{Endpoint, JobHandle};

/// A running checkpoint coordinator of one attempt. Cheap to clone.
#[derive(Clone)]
pub struct CoordinatorHandle {
    addr: Addr<CheckpointCoordinator>,
}

impl CoordinatorHandle {
    /// Starts the coordinator of the attempt `job` supervises (a checkpoint that
    /// cannot be made durable fails that job); it counts into `stats`. Must be
    /// called inside a running [`super::Runtime`].
    pub fn start(config: CheckpointConfig, job: &JobHandle, stats: Arc<CheckpointStats>) -> Self {
        CoordinatorHandle {
            addr: CheckpointCoordinator::new(config, job.addr().clone(), stats).start(),
        }
    }

    /// Where the attempt's actors acknowledge their snapshots.
    pub fn acknowledgements(&self) -> Endpoint<Acknowledge> {
        Endpoint::new(self.addr.clone().recipient())
    }

    /// Tells the coordinator which actors take part, once they are spawned: the
    /// source actors it triggers each epoch, and every actor it tells when an epoch
    /// completes, each keyed by (stage index, partition).
    pub fn adopt_actors(
        &self,
        sources: Vec<((u32, u32), Endpoint<TriggerEpoch>)>,
        all: Vec<((u32, u32), Endpoint<EpochComplete>)>,
    ) {
        self.addr.do_send(JobActors {
            sources: sources
                .into_iter()
                .map(|(key, e)| (key, e.into_recipient()))
                .collect(),
            all: all
                .into_iter()
                .map(|(key, e)| (key, e.into_recipient()))
                .collect(),
        });
    }

    /// Asks for a savepoint under `dir`; its path, or why it failed, arrives on the
    /// returned receiver.
    pub fn request_savepoint(&self, dir: PathBuf) -> oneshot::Receiver<Result<PathBuf, String>> {
        let (reply, result) = oneshot::channel();
        self.addr.do_send(RequestSavepoint { dir, reply });
        result
    }

    /// Every actor finished: asks the coordinator to complete the final epoch
    /// (committing what the sinks staged last); the result arrives on the returned
    /// receiver.
    pub fn finish_job(&self) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        self.addr.do_send(FinishJob(tx));
        rx
    }

    /// Stops the coordinator and waits until its writer thread has finished what it
    /// was writing, so that the next attempt restores from a settled store.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.addr.try_send(ShutdownCoordinator(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
