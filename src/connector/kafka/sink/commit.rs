//! The commit action of an exactly-once Kafka sink partition for one epoch, and how
//! it is applied: commit the live transaction, or redo the epoch from its staged
//! copy if the transaction is gone, deciding which from durable facts only (the
//! commit ledger, or a marker partition whose transactions have all ended). See
//! docs/exactly-once.md, "Kafka sink".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::KafkaSinkError;
use super::ledger;
use super::log::{LogProducer, TransactionalLog};
use super::marker::CommitMarker;
use super::output::KafkaOutput;
use super::registry::{self, lock, Phase};
use super::staged::{read_staged, remove_staged};
use crate::connector::sink::SinkError;
use crate::connector::two_phase::Committer;

/// Everything needed to finish epoch `epoch` of one sink partition, with or without
/// the producer that holds its transaction: recorded in the epoch's snapshot, and
/// applied after the epoch's manifest is durable (and again by recovery).
///
/// It carries the producer settings, because a redo after a restart must reach
/// the cluster on its own; so snapshot files hold them (credentials included).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KafkaCommit {
    /// The cluster's bootstrap servers.
    pub bootstrap: String,
    /// The librdkafka settings passed through (sorted).
    pub settings: Vec<(String, String)>,
    /// How long a broker call may take, in milliseconds.
    pub timeout_ms: u64,
    /// The sink's id.
    pub sink: String,
    /// The sink partition.
    pub partition: u32,
    /// The transactional id whose transaction holds the epoch's output.
    pub transactional_id: String,
    /// Every transactional id that writes markers to the same marker partition
    /// (this one included): a redo fences those no producer of this process holds,
    /// so no transaction of a dead process keeps the partition's end unreadable.
    pub marker_writers: Vec<String>,
    /// The epoch.
    pub epoch: u64,
    /// The output topic.
    pub topic: String,
    /// The marker topic.
    pub marker_topic: String,
    /// The marker topic partition of this sink partition.
    pub marker_partition: i32,
    /// The staged copy of the epoch's output.
    pub staged: PathBuf,
}

impl KafkaCommit {
    /// The marker this action's transaction carries.
    pub fn marker(&self) -> CommitMarker {
        CommitMarker {
            sink: self.sink.clone(),
            partition: self.partition,
            epoch: self.epoch,
            transactional_id: self.transactional_id.clone(),
        }
    }

    fn log(&self) -> std::sync::Arc<dyn TransactionalLog> {
        let settings: BTreeMap<String, String> = self.settings.iter().cloned().collect();
        registry::log_for(
            &self.bootstrap,
            &settings,
            Duration::from_millis(self.timeout_ms),
        )
    }

    /// The directory of the staged copy, where the partition's commit ledger
    /// lives too.
    fn staging_dir(&self) -> &Path {
        self.staged.parent().unwrap_or_else(|| Path::new("."))
    }

    /// Records the epoch committed in the ledger, then deletes its staged copy: in
    /// that order, so a staged copy is gone only once a durable local fact says
    /// its transaction committed.
    fn settle_locally(&self) -> Result<(), KafkaSinkError> {
        ledger::record_committed(self.staging_dir(), self.partition, self.epoch)?;
        remove_staged(&self.staged)
    }

    /// Whether the partition's ledger already says this epoch committed.
    fn known_committed(&self) -> Result<bool, KafkaSinkError> {
        Ok(
            ledger::committed_through(self.staging_dir(), self.partition)?
                .is_some_and(|through| through >= self.epoch),
        )
    }

    /// Makes the epoch's output visible, exactly once: doing it again after it
    /// succeeded (or after a crash part way) is safe.
    ///
    /// Fast path: a producer of this process holds the transaction pre-committed
    /// for this epoch: commit it, record the commit in the ledger, delete the
    /// staged copy. If that commit fails (e.g. the broker aborted the transaction
    /// when `transaction.timeout.ms` expired), or no producer of this process holds
    /// the transaction (a redo after a restart), [`redo`](Self::redo).
    pub fn apply(&self) -> Result<(), KafkaSinkError> {
        let Some(slot) = registry::live(&self.transactional_id) else {
            return self.redo().map(drop);
        };
        let mut slot = lock(&slot);
        if slot.phase == Phase::PreCommitted(self.epoch) {
            let committed = match slot.producer.as_mut() {
                Some(producer) => producer.commit(),
                None => Err(KafkaSinkError::Invalid("the producer was lost".into())),
            };
            match committed {
                Ok(()) => {
                    slot.phase = Phase::Idle;
                    slot.committed_through = Some(self.epoch);
                    registry::count_commit(&self.sink);
                    return self.settle_locally();
                }
                Err(error) => {
                    tracing::warn!(id = %self.transactional_id, epoch = self.epoch, %error,
                        "kafka sink: commit failed; checking the marker, then producing the \
                         epoch again from its staged copy if it did not commit");
                    // The producer is unusable (Kafka fences or aborts it); the redo
                    // replaces it.
                    slot.producer = None;
                    slot.phase = Phase::Idle;
                }
            }
        } else if slot.committed_through >= Some(self.epoch) {
            return self.settle_locally();
        }
        let producer = self.redo()?;
        slot.producer = Some(producer);
        slot.phase = Phase::Idle;
        slot.committed_through = Some(self.epoch);
        Ok(())
    }

    /// Discards the epoch's output because the epoch will never complete (the job
    /// rolled back to an earlier one, whose replay produces these records again in
    /// epochs of its own).
    ///
    /// If a producer of this process still holds the transaction pre-committed for
    /// this epoch (a dropped partition's slot, kept in the registry), aborts it and
    /// counts the abort. A failed abort is only logged: the restarted partition's
    /// producers fence the id on creation, which aborts the transaction anyway (and
    /// is what ends it when no producer of this process holds it, e.g. after the
    /// process died). Then deletes the staged copy. The ledger is not touched: the
    /// epoch never committed, and no redo will ask about it.
    pub fn abort(&self) -> Result<(), KafkaSinkError> {
        if let Some(slot) = registry::live(&self.transactional_id) {
            let mut slot = lock(&slot);
            if slot.phase == Phase::PreCommitted(self.epoch) {
                match slot.producer.as_mut().map(|producer| producer.abort()) {
                    Some(Ok(())) => registry::count_abort(&self.sink),
                    Some(Err(error)) => {
                        tracing::debug!(id = %self.transactional_id, epoch = self.epoch, %error,
                            "kafka sink: aborting a rolled-back epoch's transaction failed;                              fencing will");
                        // Unusable now; the next partition of this id makes a new one.
                        slot.producer = None;
                    }
                    None => {}
                }
                slot.phase = Phase::Idle;
            }
        }
        remove_staged(&self.staged)
    }

    /// The slow path, deciding from durable facts only:
    ///
    /// 1. Fences the transactional id (which ends its half-done transaction, if
    ///    any) and the other writers of the marker partition that no producer of
    ///    this process holds.
    /// 2. If the partition's ledger says the epoch committed, that is the answer:
    ///    the broker is not asked.
    /// 3. Otherwise the staged copy must still be there (it is deleted only after
    ///    the ledger records the commit). The id's marker is made to settle (see
    ///    [`settle`](Self::settle)): the transaction that wrote it has ended. Only
    ///    then is a missing committed marker evidence that the transaction did not
    ///    commit, and the epoch is produced again from its staged copy in a new
    ///    transaction.
    /// 4. The commit is recorded in the ledger, then the staged copy deleted.
    ///
    /// Returns the producer, fenced-in and idle.
    pub fn redo(&self) -> Result<Box<dyn LogProducer>, KafkaSinkError> {
        let log = self.log();
        let mut producer = log.producer(Some(&self.transactional_id))?;
        producer.init_transactions()?;
        for other in &self.marker_writers {
            if *other != self.transactional_id && !registry::held(other) {
                log.producer(Some(other))?.init_transactions()?;
            }
        }
        if self.known_committed()? {
            remove_staged(&self.staged)?;
            return Ok(producer);
        }
        self.settle(log.as_ref(), producer.as_mut())?;
        if self.committed(log.as_ref())? {
            self.settle_locally()?;
            return Ok(producer);
        }
        if !self.staged.exists() {
            return Err(KafkaSinkError::Invalid(format!(
                "epoch {} of {}: no committed marker in {}/{}, no entry in the commit \
                 ledger {}, and no staged copy {}: the staging directory was lost or \
                 changed since the epoch completed, so its output cannot be produced again",
                self.epoch,
                self.transactional_id,
                self.marker_topic,
                self.marker_partition,
                self.staging_dir()
                    .join(ledger::ledger_name(self.partition))
                    .display(),
                self.staged.display()
            )));
        }
        let records = read_staged(&self.staged, self.epoch).map_err(|e| {
            KafkaSinkError::Invalid(format!(
                "epoch {} of {}: its transaction did not commit and its staged copy \
                 cannot be read: {e}",
                self.epoch, self.transactional_id
            ))
        })?;
        producer.begin()?;
        for record in &records {
            producer.send(&self.topic, record)?;
        }
        producer.send(
            &self.marker_topic,
            &self.marker().record(self.marker_partition)?,
        )?;
        producer.commit()?;
        registry::count_commit(&self.sink);
        tracing::info!(id = %self.transactional_id, epoch = self.epoch, records = records.len(),
            "kafka sink: produced a completed epoch again from its staged copy");
        self.settle_locally()?;
        Ok(producer)
    }

    /// Waits until the transaction that wrote this id's newest marker has ended,
    /// so that a `read_committed` reader's view of it is final.
    ///
    /// First finds the newest marker record of this id as a `read_uncommitted`
    /// reader sees it (whatever its transaction's fate). None, or one of an earlier
    /// epoch: this epoch's transaction never wrote its marker, so it cannot have
    /// committed, and nothing need be waited for.
    ///
    /// Otherwise commits one small transaction of the (fenced-in) `producer` to
    /// the marker partition: a tombstone keyed `<id>.settle`, which marker lookups
    /// ignore and compaction removes. On Apache Kafka it changes nothing that
    /// matters; on brokers that complete a committed or aborted transaction only
    /// once the earlier transactions on its partitions have ended (Tansu 0.6), the
    /// end of this one completes those the fences ended (docs/kafka.md, "Tansu").
    /// Then waits, up to the sink's timeout, for the last stable offset to pass the
    /// marker record; if it does not, this is [`KafkaSinkError::Unsettled`], never
    /// a guess.
    fn settle(
        &self,
        log: &dyn TransactionalLog,
        producer: &mut dyn LogProducer,
    ) -> Result<(), KafkaSinkError> {
        let at = format!("{}/{}", self.marker_topic, self.marker_partition);
        let Some((offset, value)) = log.newest_written(
            &self.marker_topic,
            self.marker_partition,
            self.transactional_id.as_bytes(),
        )?
        else {
            return Ok(());
        };
        if CommitMarker::decode(&value, &format!("{at}@{offset}"))?.epoch < self.epoch {
            return Ok(());
        }
        producer.begin()?;
        producer.send(
            &self.marker_topic,
            &KafkaOutput {
                key: Some(format!("{}.settle", self.transactional_id).into_bytes()),
                value: None,
                partition: Some(self.marker_partition),
                ..KafkaOutput::default()
            },
        )?;
        producer.commit()?;
        let started = Instant::now();
        let timeout = Duration::from_millis(self.timeout_ms);
        let mut pause = Duration::from_millis(5);
        loop {
            let ends = log.ends(&self.marker_topic, self.marker_partition)?;
            if ends.stable > offset {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(KafkaSinkError::Unsettled {
                    transactional_id: self.transactional_id.clone(),
                    epoch: self.epoch,
                    topic: self.marker_topic.clone(),
                    partition: self.marker_partition,
                    stable: ends.stable,
                    high: offset + 1,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Whether this id's newest committed marker is of this epoch or later. Markers
    /// of one id commit in epoch order (an id takes a new epoch only after its
    /// previous transaction committed, and a restarted job redoes its restored
    /// epoch before it begins any), so a later marker means this epoch's committed
    /// too; that is also what a compacted marker topic keeps.
    fn committed(&self, log: &dyn TransactionalLog) -> Result<bool, KafkaSinkError> {
        let newest = log.newest_committed(
            &self.marker_topic,
            self.marker_partition,
            self.transactional_id.as_bytes(),
        )?;
        let Some(value) = newest else {
            return Ok(false);
        };
        let at = format!("{}/{}", self.marker_topic, self.marker_partition);
        let marker = CommitMarker::decode(&value, &at)?;
        if marker.transactional_id != self.transactional_id {
            return Err(KafkaSinkError::Invalid(format!(
                "the marker keyed {} in {at} names {}",
                self.transactional_id, marker.transactional_id
            )));
        }
        Ok(marker.epoch >= self.epoch)
    }
}

/// The [`Committer`] of a [`KafkaSink`](super::KafkaSink). Every [`KafkaCommit`] is
/// self-contained (it names the cluster and its settings, the ids, the topics and the
/// staged copy), so the committer holds nothing: `commit` is [`KafkaCommit::apply`]
/// (which is also the redo after a restart) and `abort` is [`KafkaCommit::abort`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaCommitter;

impl Committer for KafkaCommitter {
    type Action = KafkaCommit;

    fn commit(&self, action: &KafkaCommit) -> Result<(), SinkError> {
        Ok(action.apply()?)
    }

    fn abort(&self, action: &KafkaCommit) -> Result<(), SinkError> {
        Ok(action.abort()?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::connector::kafka::sink::registry::Slot;

    /// A producer that only counts its aborts.
    struct CountsAborts(Arc<AtomicU32>);

    impl LogProducer for CountsAborts {
        fn init_transactions(&mut self) -> Result<(), KafkaSinkError> {
            Ok(())
        }
        fn begin(&mut self) -> Result<(), KafkaSinkError> {
            Ok(())
        }
        fn send(&mut self, _topic: &str, _record: &KafkaOutput) -> Result<(), KafkaSinkError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), KafkaSinkError> {
            Ok(())
        }
        fn commit(&mut self) -> Result<(), KafkaSinkError> {
            Err(KafkaSinkError::Invalid(
                "a test producer never commits".into(),
            ))
        }
        fn abort(&mut self) -> Result<(), KafkaSinkError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn action(id: &str, epoch: u64, staged: PathBuf) -> KafkaCommit {
        KafkaCommit {
            bootstrap: "unused:9092".into(),
            settings: Vec::new(),
            timeout_ms: 1000,
            sink: format!("{id}-sink"),
            partition: 0,
            transactional_id: id.into(),
            marker_writers: vec![id.into()],
            epoch,
            topic: "out".into(),
            marker_topic: "markers".into(),
            marker_partition: 0,
            staged,
        }
    }

    /// A dropped partition's slot holding `id`'s transaction in `phase`.
    fn orphan(id: &str, phase: Phase, aborts: &Arc<AtomicU32>) -> Arc<Mutex<Slot>> {
        let slot = Arc::new(Mutex::new(Slot {
            id: id.into(),
            producer: Some(Box::new(CountsAborts(aborts.clone()))),
            phase,
            committed_through: None,
        }));
        registry::adopt(slot.clone());
        slot
    }

    #[test]
    fn an_abort_ends_the_pre_committed_transaction_of_its_epoch_once_and_deletes_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("p00000-e00000000000000000007.staged");
        std::fs::write(&staged, b"copy").unwrap();
        let aborts = Arc::new(AtomicU32::new(0));
        let id = "commit-test-abort-p0-s1";
        let slot = orphan(id, Phase::PreCommitted(7), &aborts);
        let before = registry::transaction_counts(&format!("{id}-sink")).aborted();
        let action = action(id, 7, staged.clone());
        KafkaCommitter.abort(&action).unwrap();
        assert_eq!(aborts.load(Ordering::Relaxed), 1);
        assert_eq!(lock(&slot).phase, Phase::Idle);
        assert!(!staged.exists());
        assert_eq!(
            registry::transaction_counts(&format!("{id}-sink")).aborted(),
            before + 1
        );
        // Done twice: nothing more to end, nothing more to delete.
        KafkaCommitter.abort(&action).unwrap();
        assert_eq!(aborts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_abort_leaves_a_transaction_of_another_epoch_alone() {
        let dir = tempfile::tempdir().unwrap();
        let aborts = Arc::new(AtomicU32::new(0));
        let id = "commit-test-other-p0-s2";
        let slot = orphan(id, Phase::PreCommitted(9), &aborts);
        KafkaCommitter
            .abort(&action(id, 8, dir.path().join("gone.staged")))
            .unwrap();
        assert_eq!(aborts.load(Ordering::Relaxed), 0);
        assert_eq!(lock(&slot).phase, Phase::PreCommitted(9));
    }
}
