//! One partition of an exactly-once Kafka sink: a small pool of transactional
//! producers, one transaction per epoch, a staged copy, and a commit marker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::commit::KafkaCommit;
use super::config::SinkConfig;
use super::error::KafkaSinkError;
use super::log::TransactionalLog;
use super::marker::CommitMarker;
use super::output::KafkaOutput;
use super::registry::{self, lock, Phase, SharedSlot, Slot};
use super::staged::{staged_name, StagedWriter};
use crate::connector::sink::SinkError;
use crate::connector::two_phase::TwoPhaseCommitSink;

/// A pre-committed epoch not yet known complete.
struct Pending {
    epoch: u64,
    action: KafkaCommit,
}

/// One partition of a [`KafkaSink`](super::KafkaSink) in
/// [`Delivery::ExactlyOnce`](super::Delivery::ExactlyOnce).
pub struct ExactlyOncePart<F> {
    config: Arc<SinkConfig>,
    log: Arc<dyn TransactionalLog>,
    format: F,
    partition: u32,
    marker_partition: i32,
    marker_writers: Vec<String>,
    staging: PathBuf,
    slots: Vec<SharedSlot>,
    /// The slot whose transaction receives the epoch in progress, once a record came.
    filling: Option<usize>,
    staged: Option<StagedWriter>,
    pending: Vec<Pending>,
    last_epoch: Option<u64>,
    /// A step failed part way: the partition refuses work until the job recovers.
    failed: bool,
}

impl<F> ExactlyOncePart<F> {
    /// Makes the partition's producers, each fenced in (which aborts whatever
    /// transaction a crashed run left open under its id).
    pub(crate) fn new(
        config: Arc<SinkConfig>,
        log: Arc<dyn TransactionalLog>,
        format: F,
        partition: u32,
        parallelism: u32,
    ) -> Result<Self, KafkaSinkError> {
        let marker_partitions =
            log.ensure_marker_topic(&config.marker_topic, parallelism.max(1) as i32)?;
        let marker_partition = (partition as i32).rem_euclid(marker_partitions.max(1));
        let marker_writers = (0..parallelism.max(partition + 1))
            .filter(|q| (*q as i32).rem_euclid(marker_partitions.max(1)) == marker_partition)
            .flat_map(|q| (0..config.pool).map(move |s| (q, s)))
            .map(|(q, s)| config.transactional_id(q, s))
            .collect();
        let staging = config.staging_dir();
        std::fs::create_dir_all(&staging).map_err(|source| KafkaSinkError::Staging {
            what: "creating",
            path: staging.clone(),
            source,
        })?;
        let mut slots = Vec::with_capacity(config.pool as usize);
        for s in 0..config.pool {
            let id = config.transactional_id(partition, s);
            let mut producer = log.producer(Some(&id))?;
            producer.init_transactions()?;
            let slot = Arc::new(Mutex::new(Slot {
                id,
                producer: Some(producer),
                phase: Phase::Idle,
                committed_through: None,
            }));
            registry::register(&slot);
            slots.push(slot);
        }
        Ok(ExactlyOncePart {
            config,
            log,
            format,
            partition,
            marker_partition,
            marker_writers,
            staging,
            slots,
            filling: None,
            staged: None,
            pending: Vec::new(),
            last_epoch: None,
            failed: false,
        })
    }

    fn check(&self) -> Result<(), KafkaSinkError> {
        if self.failed {
            return Err(KafkaSinkError::Invalid(format!(
                "sink {} partition {}: an earlier step failed; the job must recover",
                self.config.id, self.partition
            )));
        }
        Ok(())
    }

    fn guarded<R>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<R, KafkaSinkError>,
    ) -> Result<R, SinkError> {
        self.check()?;
        let result = op(self);
        if result.is_err() {
            self.failed = true;
        }
        Ok(result?)
    }

    /// The slot filling the epoch in progress, beginning its transaction (and the
    /// staged copy) at the epoch's first record.
    fn filling_slot(&mut self) -> Result<usize, KafkaSinkError> {
        if let Some(s) = self.filling {
            return Ok(s);
        }
        let s = self
            .slots
            .iter()
            .position(|slot| lock(slot).phase == Phase::Idle)
            .ok_or_else(|| {
                KafkaSinkError::Invalid(format!(
                    "sink {} partition {}: all {} transactional producers hold epochs not \
                     yet complete (epochs {:?}); raise the pool size or let checkpoints \
                     complete",
                    self.config.id,
                    self.partition,
                    self.slots.len(),
                    self.pending.iter().map(|p| p.epoch).collect::<Vec<_>>()
                ))
            })?;
        {
            let mut slot = lock(&self.slots[s]);
            if slot.producer.is_none() {
                // A failed commit left it unusable and no redo replaced it.
                let mut producer = self.log.producer(Some(&slot.id))?;
                producer.init_transactions()?;
                slot.producer = Some(producer);
            }
            producer_of(&mut slot)?.begin()?;
            slot.phase = Phase::Filling;
        }
        self.staged = Some(StagedWriter::create(&self.staging, self.partition)?);
        self.filling = Some(s);
        Ok(s)
    }

    fn write_record(&mut self, record: KafkaOutput) -> Result<(), KafkaSinkError> {
        let s = self.filling_slot()?;
        producer_of(&mut lock(&self.slots[s]))?.send(&self.config.topic, &record)?;
        match self.staged.as_mut() {
            Some(staged) => staged.append(&record),
            None => Err(KafkaSinkError::Invalid("no staged copy is open".into())),
        }
    }

    /// Flushes the epoch's transaction, writes its marker into it, seals the staged
    /// copy, and records the epoch's commit action.
    fn pre_commit_epoch(&mut self, epoch: u64) -> Result<(), KafkaSinkError> {
        if let Some(last) = self.last_epoch {
            if epoch <= last {
                return Err(KafkaSinkError::Invalid(format!(
                    "sink {} partition {}: pre_commit of epoch {epoch} after epoch {last}",
                    self.config.id, self.partition
                )));
            }
        }
        self.last_epoch = Some(epoch);
        let Some(s) = self.filling else {
            return Ok(());
        };
        let id = lock(&self.slots[s]).id.clone();
        let marker = CommitMarker {
            sink: self.config.id.clone(),
            partition: self.partition,
            epoch,
            transactional_id: id.clone(),
        };
        {
            let mut slot = lock(&self.slots[s]);
            let producer = producer_of(&mut slot)?;
            producer.flush()?;
            producer.send(
                &self.config.marker_topic,
                &marker.record(self.marker_partition)?,
            )?;
            producer.flush()?;
        }
        let staged = self.staging.join(staged_name(self.partition, epoch));
        match self.staged.take() {
            Some(writer) => writer.seal(epoch, &staged)?,
            None => return Err(KafkaSinkError::Invalid("no staged copy is open".into())),
        };
        lock(&self.slots[s]).phase = Phase::PreCommitted(epoch);
        self.filling = None;
        let commit = KafkaCommit {
            bootstrap: self.config.bootstrap.clone(),
            settings: self
                .config
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout_ms: self.config.timeout.as_millis() as u64,
            sink: self.config.id.clone(),
            partition: self.partition,
            transactional_id: id,
            marker_writers: self.marker_writers.clone(),
            epoch,
            topic: self.config.topic.clone(),
            marker_topic: self.config.marker_topic.clone(),
            marker_partition: self.marker_partition,
            staged,
        };
        self.pending.push(Pending {
            epoch,
            action: commit,
        });
        Ok(())
    }
}

/// The producer of a slot, or an error if a failure took it.
fn producer_of(slot: &mut Slot) -> Result<&mut Box<dyn super::log::LogProducer>, KafkaSinkError> {
    let id = slot.id.clone();
    slot.producer
        .as_mut()
        .ok_or_else(|| KafkaSinkError::Invalid(format!("producer {id} was lost to a failure")))
}

impl<T, F> TwoPhaseCommitSink<T> for ExactlyOncePart<F>
where
    F: Fn(&T) -> KafkaOutput + Send + 'static,
{
    type Action = KafkaCommit;

    fn write(&mut self, item: T) -> Result<(), SinkError> {
        let record = (self.format)(&item);
        self.guarded(|part| part.write_record(record))
    }

    /// Nothing to do: the final [`pre_commit`](TwoPhaseCommitSink::pre_commit) ends
    /// the last epoch's transaction, and only committed transactions are visible.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(self.check()?)
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<Vec<KafkaCommit>, SinkError> {
        self.guarded(|part| part.pre_commit_epoch(epoch))?;
        Ok(self.pending.iter().map(|p| p.action.clone()).collect())
    }

    fn committed(&mut self, epoch: u64) {
        self.pending.retain(|p| p.epoch > epoch);
    }
}

impl<F> Drop for ExactlyOncePart<F> {
    /// Aborts the epoch in progress (a rollback replays it). Pre-committed
    /// transactions stay open, their producers kept in the registry: their epoch may
    /// be complete with its commit action still to run (the final epoch of a job
    /// that finished, or the epoch a rollback restores); if not, the rollback's
    /// abort of their actions ([`KafkaCommit::abort`]) ends them, and the restarted
    /// sink's producers fence whatever is left. Slots that committed are kept too, so an action
    /// applied again (an epoch's action list repeats those not yet known complete)
    /// sees that its epoch committed.
    fn drop(&mut self) {
        for slot in &self.slots {
            let keep = {
                let slot = lock(slot);
                matches!(slot.phase, Phase::PreCommitted(_)) || slot.committed_through.is_some()
            };
            if keep {
                registry::adopt(slot.clone());
            }
        }
        if let Some(s) = self.filling {
            let mut slot = lock(&self.slots[s]);
            if let Some(producer) = slot.producer.as_mut() {
                match producer.abort() {
                    Ok(()) => registry::count_abort(&self.config.id),
                    Err(error) => tracing::debug!(%error,
                        "kafka sink: aborting the epoch in progress failed; fencing will"),
                }
            }
            slot.phase = Phase::Idle;
        }
    }
}
