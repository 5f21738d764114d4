//! The checkpoint coordinator: starts epochs, collects acknowledgements, and has the
//! writer thread make complete epochs durable.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::snapshot::{ChunkId, ChunkRef, Manifest, SnapshotStore};
use crate::supervisor::{CheckpointFailed, JobSupervisor};

use super::stats::{CheckpointStats, EpochOutcome, EpochRecord};
use super::writer::{self, EpochWrite, Written};
use super::{Acknowledge, ChunkData, EpochComplete, StageAction, TriggerEpoch};

/// Applies one commit action of an epoch whose manifest is durable: the stage index
/// of the actor that returned it, and the action as that stage's sink encoded it.
/// Must be idempotent (recovery redoes the restored epoch's actions).
pub type Committer = Arc<dyn Fn(u32, &[u8]) -> Result<(), String> + Send + Sync>;

/// Folds a chain of state chunks (a full image, then deltas) into one full image.
pub type Merger = Arc<dyn Fn(&[Vec<u8>]) -> Result<Vec<u8>, String> + Send + Sync>;

/// How a job is checkpointed.
pub struct CheckpointConfig {
    /// The job's name (the manifests' namespace in the store).
    pub job: String,
    /// Time between epochs; `None` runs no periodic epochs (only savepoints and the
    /// final commit at the end of input).
    pub interval: Option<Duration>,
    /// An epoch not complete after this long is abandoned (counted as failed; its
    /// changes are kept and completed by the next epoch).
    pub timeout: Duration,
    /// Complete epochs kept in the store.
    pub retain: usize,
    /// Deltas a chain may have before the next one is compacted into a full chunk.
    pub compact_after: usize,
    /// Where snapshots go; `None` when checkpointing is off.
    pub store: Option<Arc<dyn SnapshotStore>>,
    /// Runs sinks' commit actions.
    pub committer: Committer,
    /// Folds state chains for compaction.
    pub merge: Merger,
    /// Written into every manifest (key partitions, source splits, ...).
    pub meta: BTreeMap<String, String>,
    /// The first epoch number to use (above every epoch already on disk).
    pub first_epoch: u64,
    /// The epoch the job was restored from, whose chains later epochs extend.
    pub restored: Option<Manifest>,
    /// No periodic epoch starts before the job has run this long (after a failure,
    /// replays then start from the same epoch while a failing record is identified).
    pub hold_off: Duration,
}

/// Now, in ms since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Which actors take part, sent once they are spawned.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JobActors {
    /// Source actors, triggered at each epoch, keyed by (stage index, partition).
    pub sources: Vec<((u32, u32), Recipient<TriggerEpoch>)>,
    /// Every actor (sources included), told when an epoch completes.
    pub all: Vec<((u32, u32), Recipient<EpochComplete>)>,
}

/// Takes a savepoint: a checkpoint exported to `dir`; replies with its path.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestSavepoint {
    /// The directory the savepoint goes under.
    pub dir: PathBuf,
    /// Told the savepoint's path, or why it failed.
    pub reply: oneshot::Sender<Result<PathBuf, String>>,
}

/// What a finished savepoint reports (for logs and the job report).
pub type SavepointDone = Result<PathBuf, String>;

/// Every actor finished: complete the final epoch (commit what the sinks staged last)
/// and reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FinishJob(pub oneshot::Sender<Result<(), String>>);

type ActorKey = (u32, u32);

struct Epoch {
    number: u64,
    started: Instant,
    acked: HashSet<ActorKey>,
    chunks: Vec<ChunkData>,
    /// Commit actions, tagged with the stage of the actor that returned them.
    commits: Vec<StageAction>,
    abandoned: bool,
    is_final: bool,
    alignment: Duration,
    savepoint: Option<RequestSavepoint>,
}

impl Epoch {
    /// Takes actor `key`'s snapshot as its acknowledgement of this epoch.
    fn absorb(&mut self, key: ActorKey, snapshot: super::TaskSnapshot, alignment: Duration) {
        self.acked.insert(key);
        self.chunks.extend(snapshot.chunks);
        self.commits.extend(tag(key, snapshot.commits));
        self.alignment = self.alignment.max(alignment);
    }
}

/// Tags the commit actions actor `key` returned with its stage.
fn tag(key: ActorKey, commits: Vec<Vec<u8>>) -> impl Iterator<Item = StageAction> {
    commits.into_iter().map(move |action| StageAction {
        stage: key.0,
        action,
    })
}

/// The coordinator actor of one job.
pub struct CheckpointCoordinator {
    job: String,
    interval: Option<Duration>,
    timeout: Duration,
    next_epoch: u64,
    sources: Vec<(ActorKey, Recipient<TriggerEpoch>)>,
    actors: Vec<(ActorKey, Recipient<EpochComplete>)>,
    finished: HashSet<ActorKey>,
    /// Final snapshots not yet attached to an epoch.
    carry: (Vec<ChunkData>, Vec<StageAction>),
    inflight: VecDeque<Epoch>,
    last_trigger: Instant,
    hold_until: Instant,
    /// Epochs handed to the writer and not yet reported back.
    writing: usize,
    waiting_savepoints: VecDeque<RequestSavepoint>,
    finishing: Option<oneshot::Sender<Result<(), String>>>,
    writer: std::sync::mpsc::Sender<EpochWrite>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<CheckpointStats>,
    supervisor: Addr<JobSupervisor>,
}

impl CheckpointCoordinator {
    /// A coordinator for the job `supervisor` runs, with its writer thread started.
    pub fn new(
        config: CheckpointConfig,
        supervisor: Addr<JobSupervisor>,
        stats: Arc<CheckpointStats>,
    ) -> Self {
        let chains: BTreeMap<ChunkId, Vec<ChunkRef>> = config
            .restored
            .as_ref()
            .map(|m| {
                m.chunks
                    .iter()
                    .filter_map(|chain| chain.first().map(|c| (c.id.clone(), chain.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let (writer, writer_thread) = writer::start(writer::WriterSetup {
            job: config.job.clone(),
            store: config.store,
            retain: config.retain,
            compact_after: config.compact_after,
            committer: config.committer,
            merge: config.merge,
            meta: config.meta,
            chains,
        });
        super::metrics::register(&config.job, config.interval);
        CheckpointCoordinator {
            job: config.job,
            interval: config.interval,
            timeout: config.timeout,
            next_epoch: config.first_epoch.max(1),
            sources: Vec::new(),
            actors: Vec::new(),
            finished: HashSet::new(),
            carry: (Vec::new(), Vec::new()),
            inflight: VecDeque::new(),
            last_trigger: Instant::now(),
            hold_until: Instant::now() + config.hold_off,
            writing: 0,
            waiting_savepoints: VecDeque::new(),
            finishing: None,
            writer,
            writer_thread,
            stats,
            supervisor,
        }
    }

    fn live_sources(&self) -> usize {
        self.sources
            .iter()
            .filter(|(k, _)| !self.finished.contains(k))
            .count()
    }

    /// Whether an epoch that still counts (not abandoned) is in flight or still
    /// being written: the next one starts only after it is durable, so a slow disk
    /// spaces epochs out instead of queueing writes.
    fn busy(&self) -> bool {
        self.writing > 0 || self.inflight.iter().any(|e| !e.abandoned)
    }

    fn start_epoch(&mut self, savepoint: Option<RequestSavepoint>, is_final: bool) {
        let number = self.next_epoch;
        self.next_epoch += 1;
        self.last_trigger = Instant::now();
        let (chunks, commits) = std::mem::take(&mut self.carry);
        tracing::debug!(job = %self.job, epoch = number, is_final, "starting epoch");
        self.inflight.push_back(Epoch {
            number,
            started: Instant::now(),
            acked: HashSet::new(),
            chunks,
            commits,
            abandoned: false,
            is_final,
            alignment: Duration::ZERO,
            savepoint,
        });
        if !is_final {
            for (key, source) in &self.sources {
                if !self.finished.contains(key) {
                    source.do_send(TriggerEpoch(number));
                }
            }
        }
    }

    fn tick(&mut self) {
        for epoch in self.inflight.iter_mut() {
            if !epoch.abandoned && !epoch.is_final && epoch.started.elapsed() > self.timeout {
                epoch.abandoned = true;
                self.stats.finished(
                    &self.job,
                    EpochRecord {
                        epoch: epoch.number,
                        outcome: EpochOutcome::Abandoned,
                        duration: epoch.started.elapsed(),
                        bytes: 0,
                        alignment: epoch.alignment,
                        finished_at_ms: unix_ms(),
                        savepoint: epoch.savepoint.is_some(),
                        is_final: false,
                    },
                );
                tracing::warn!(job = %self.job, epoch = epoch.number, timeout = ?self.timeout,
                    "checkpoint not complete within its timeout; abandoned (its changes go into the next epoch)");
                if let Some(sp) = epoch.savepoint.take() {
                    let _ = sp.reply.send(Err(format!(
                        "the savepoint's epoch {} did not complete within {:?}",
                        epoch.number, self.timeout
                    )));
                }
            }
        }
        if self.busy() || self.finishing.is_some() || self.live_sources() == 0 {
            return;
        }
        if let Some(sp) = self.waiting_savepoints.pop_front() {
            self.start_epoch(Some(sp), false);
        } else if self
            .interval
            .is_some_and(|i| self.last_trigger.elapsed() >= i && Instant::now() >= self.hold_until)
        {
            self.start_epoch(None, false);
        }
    }

    /// Hands every epoch at the front whose acknowledgements are all in to the
    /// writer, in epoch order.
    fn complete_ready(&mut self, ctx: &mut Context<Self>) {
        let total = self.actors.len();
        while let Some(front) = self.inflight.front() {
            let done = front.acked.len()
                + self
                    .finished
                    .iter()
                    .filter(|k| !front.acked.contains(k))
                    .count();
            if total == 0 || done < total {
                break;
            }
            let Some(epoch) = self.inflight.pop_front() else {
                break;
            };
            self.submit(epoch, ctx);
        }
    }

    fn submit(&mut self, mut epoch: Epoch, ctx: &mut Context<Self>) {
        if epoch.abandoned && !epoch.commits.is_empty() {
            // An abandoned epoch runs no commit actions, yet they may be the only
            // copy (an actor's final snapshot names its last output there, and no
            // later snapshot repeats it): the next epoch runs them (they are
            // idempotent).
            let target = match self.inflight.front_mut() {
                Some(next) => &mut next.commits,
                None => &mut self.carry.1,
            };
            let later = std::mem::replace(target, std::mem::take(&mut epoch.commits));
            target.extend(later);
        }
        let (tx, rx) = oneshot::channel();
        let Epoch {
            number,
            started,
            chunks,
            commits,
            abandoned,
            is_final,
            alignment,
            savepoint,
            ..
        } = epoch;
        let write = EpochWrite {
            epoch: number,
            chunks,
            commits,
            abandoned,
            is_final,
            savepoint: savepoint.as_ref().map(|s| s.dir.clone()),
            reply: tx,
        };
        self.writing += 1;
        if self.writer.send(write).is_err() {
            self.fail(format!(
                "epoch {number}: the checkpoint writer thread is gone"
            ));
            return;
        }
        ctx.spawn(actix::fut::wrap_future(rx).map(
            move |written: Result<Result<Written, String>, _>, act: &mut Self, ctx| {
                let written =
                    written.unwrap_or_else(|_| Err("the checkpoint writer thread stopped".into()));
                act.written(
                    number, started, alignment, abandoned, is_final, savepoint, written, ctx,
                );
            },
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn written(
        &mut self,
        number: u64,
        started: Instant,
        alignment: Duration,
        abandoned: bool,
        is_final: bool,
        savepoint: Option<RequestSavepoint>,
        written: Result<Written, String>,
        ctx: &mut Context<Self>,
    ) {
        self.writing = self.writing.saturating_sub(1);
        match written {
            Ok(w) if !abandoned => {
                let took = started.elapsed();
                self.stats.finished(
                    &self.job,
                    EpochRecord {
                        epoch: number,
                        outcome: EpochOutcome::Completed,
                        duration: took,
                        bytes: w.bytes,
                        alignment,
                        finished_at_ms: unix_ms(),
                        savepoint: savepoint.is_some(),
                        is_final,
                    },
                );
                tracing::debug!(job = %self.job, epoch = number, bytes = w.bytes,
                    took = ?took, write = ?w.took, "epoch complete");
                for (_, actor) in &self.actors {
                    actor.do_send(EpochComplete(number));
                }
                if let (Some(sp), Some(path)) = (savepoint, w.savepoint) {
                    tracing::info!(job = %self.job, epoch = number, path = %path.display(), "savepoint taken");
                    let _ = sp.reply.send(Ok(path));
                }
                if is_final {
                    if let Some(done) = self.finishing.take() {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Ok(_) => {}
            Err(reason) => {
                let savepoint_requested = savepoint.is_some();
                let reason = format!("checkpoint of epoch {number} failed: {reason}");
                if let Some(sp) = savepoint {
                    let _ = sp.reply.send(Err(reason.clone()));
                }
                if is_final {
                    if let Some(done) = self.finishing.take() {
                        let _ = done.send(Err(reason.clone()));
                    }
                }
                self.stats.finished(
                    &self.job,
                    EpochRecord {
                        epoch: number,
                        outcome: EpochOutcome::Failed,
                        duration: started.elapsed(),
                        bytes: 0,
                        alignment,
                        finished_at_ms: unix_ms(),
                        savepoint: savepoint_requested,
                        is_final,
                    },
                );
                self.fail(reason);
            }
        }
        self.tick();
        self.complete_ready(ctx);
    }

    /// A snapshot could not be made durable: later epochs would miss its changes, so
    /// the job fails and recovers from the last complete epoch.
    fn fail(&mut self, reason: String) {
        tracing::error!(job = %self.job, %reason, "checkpoint failed; failing the job");
        self.supervisor.do_send(CheckpointFailed(reason));
    }
}

impl Actor for CheckpointCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Ticks decide when an epoch is due and find epochs past their timeout.
        let period = self
            .interval
            .map_or(Duration::from_millis(100), |i| i / 4)
            .clamp(Duration::from_millis(5), Duration::from_millis(100));
        ctx.run_interval(period, |act, ctx| {
            act.tick();
            act.complete_ready(ctx);
        });
    }
}

impl Handler<JobActors> for CheckpointCoordinator {
    type Result = ();
    fn handle(&mut self, msg: JobActors, ctx: &mut Context<Self>) {
        self.sources = msg.sources;
        self.actors = msg.all;
        self.complete_ready(ctx);
    }
}

impl Handler<Acknowledge> for CheckpointCoordinator {
    type Result = ();
    fn handle(&mut self, ack: Acknowledge, ctx: &mut Context<Self>) {
        let key = (ack.actor.stage_index, ack.actor.partition);
        match ack.epoch {
            Some(number) => match self.inflight.iter_mut().find(|e| e.number == number) {
                Some(epoch) => epoch.absorb(key, ack.snapshot, ack.alignment),
                None => tracing::warn!(job = %self.job, actor = %ack.actor, epoch = number,
                    "acknowledgement for an epoch not in flight; ignored"),
            },
            None => {
                self.finished.insert(key);
                let target = self.inflight.iter_mut().find(|e| !e.acked.contains(&key));
                match target {
                    Some(epoch) => epoch.absorb(key, ack.snapshot, ack.alignment),
                    None => {
                        self.carry.0.extend(ack.snapshot.chunks);
                        self.carry.1.extend(tag(key, ack.snapshot.commits));
                    }
                }
            }
        }
        self.complete_ready(ctx);
    }
}

impl Handler<RequestSavepoint> for CheckpointCoordinator {
    type Result = ();
    fn handle(&mut self, msg: RequestSavepoint, ctx: &mut Context<Self>) {
        if self.finishing.is_some() || self.live_sources() == 0 {
            let _ = msg.reply.send(Err(
                "the job's input has ended; no savepoint can be taken".into()
            ));
            return;
        }
        self.waiting_savepoints.push_back(msg);
        self.tick();
        self.complete_ready(ctx);
    }
}

impl Handler<FinishJob> for CheckpointCoordinator {
    type Result = ();
    fn handle(&mut self, msg: FinishJob, ctx: &mut Context<Self>) {
        let missing = self.actors.len().saturating_sub(self.finished.len());
        if missing > 0 {
            let _ = msg.0.send(Err(format!(
                "{missing} actor(s) finished without a final snapshot"
            )));
            return;
        }
        for sp in self.waiting_savepoints.drain(..) {
            let _ = sp
                .reply
                .send(Err("the job's input ended before the savepoint".into()));
        }
        self.finishing = Some(msg.0);
        self.start_epoch(None, true);
        // The writer records the end of the run under the next number (see
        // `super::finished_manifest`); no epoch may take it.
        self.next_epoch += 1;
        self.complete_ready(ctx);
    }
}

/// Stops the coordinator once its writer thread has written everything handed to it
/// (so a restart restores from a settled store), then replies.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutdownCoordinator(pub oneshot::Sender<()>);

impl Handler<ShutdownCoordinator> for CheckpointCoordinator {
    type Result = ();
    fn handle(&mut self, msg: ShutdownCoordinator, ctx: &mut Context<Self>) {
        // Replace the writer's channel so the thread sees the end of its queue, then
        // wait for it off the actor thread.
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.writer, closed));
        let handle = self.writer_thread.take();
        for sp in self.waiting_savepoints.drain(..) {
            let _ = sp
                .reply
                .send(Err("the job stopped before the savepoint".into()));
        }
        ctx.stop();
        std::thread::spawn(move || {
            if let Some(h) = handle {
                let _ = h.join();
            }
            let _ = msg.0.send(());
        });
    }
}
