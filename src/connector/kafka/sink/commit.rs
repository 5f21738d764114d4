//! The commit action of an exactly-once Kafka sink partition for one epoch, and how
//! it is applied: commit the live transaction, or redo the epoch from its staged
//! copy if the transaction is gone. See docs/exactly-once.md, "Kafka sink".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::KafkaSinkError;
use super::log::{LogProducer, TransactionalLog};
use super::marker::CommitMarker;
use super::registry::{self, lock, Phase};
use super::staged::{read_staged, remove_staged};

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

    /// Makes the epoch's output visible, exactly once: doing it again after it
    /// succeeded (or after a crash part way) is safe.
    ///
    /// Fast path: a producer of this process holds the transaction pre-committed
    /// for this epoch: commit it. If that commit fails (e.g. the broker aborted the
    /// transaction when `transaction.timeout.ms` expired), or no producer of this
    /// process holds the transaction (a redo after a restart), [`redo`](Self::redo).
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
                    return remove_staged(&self.staged);
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
            return remove_staged(&self.staged);
        }
        let producer = self.redo()?;
        slot.producer = Some(producer);
        slot.phase = Phase::Idle;
        slot.committed_through = Some(self.epoch);
        Ok(())
    }

    /// The slow path. Fences the transactional id (which aborts its half-done
    /// transaction, if any) and the other writers of the marker partition that no
    /// producer of this process holds; reads the marker partition as a
    /// `read_committed` consumer; if this id's newest committed marker is of this
    /// epoch or later, the transaction committed: nothing to do. Otherwise produces
    /// the staged copy and the marker again in a new transaction and commits it.
    /// Then deletes the staged copy. Returns the producer, fenced-in and idle.
    pub fn redo(&self) -> Result<Box<dyn LogProducer>, KafkaSinkError> {
        let log = self.log();
        let mut producer = log.producer(Some(&self.transactional_id))?;
        producer.init_transactions()?;
        for other in &self.marker_writers {
            if *other != self.transactional_id && !registry::held(other) {
                log.producer(Some(other))?.init_transactions()?;
            }
        }
        if self.committed(log.as_ref())? {
            remove_staged(&self.staged)?;
            return Ok(producer);
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
        remove_staged(&self.staged)?;
        Ok(producer)
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
