//! The broker interaction of the sink, behind a small trait: a *transactional log*
//! that makes producers, creates the marker topic and finds committed markers.
//!
//! [`RdKafkaLog`](super::rdkafka_log::RdKafkaLog) is the implementation over
//! librdkafka. Tests drive the real sink through an in-memory model with Kafka's
//! transaction semantics (tests/common/kafka_model.rs), because neither librdkafka's
//! mock cluster nor the Tansu broker hides aborted transactions from
//! `read_committed` readers.

use super::error::KafkaSinkError;
use super::output::KafkaOutput;

/// A cluster as the sink sees it.
pub trait TransactionalLog: Send + Sync + 'static {
    /// A producer: transactional with `transactional_id` (call
    /// [`LogProducer::init_transactions`] before use), or an idempotent plain one
    /// for `None`.
    fn producer(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<Box<dyn LogProducer>, KafkaSinkError>;
    /// Makes sure the compacted marker topic `topic` exists (created with
    /// `partitions` partitions if it does not) and returns its partition count.
    fn ensure_marker_topic(&self, topic: &str, partitions: i32) -> Result<i32, KafkaSinkError>;
    /// The value of the newest record with key `key` in `topic`/`partition` that a
    /// `read_committed` reader sees, reading up to the partition's end (an error if
    /// an open transaction keeps the end from being reached in time).
    fn newest_committed(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, KafkaSinkError>;
    /// The offset and value of the newest record with key `key` in
    /// `topic`/`partition` that a `read_uncommitted` reader sees: every record
    /// written, whether its transaction is open, committed or aborted.
    fn newest_written(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<(i64, Vec<u8>)>, KafkaSinkError>;
    /// The two ends of `topic`/`partition`: where every record written so far ends,
    /// and where what a `read_committed` reader may see ends.
    fn ends(&self, topic: &str, partition: i32) -> Result<PartitionEnds, KafkaSinkError>;
}

/// The ends of one partition, as offsets one past the last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEnds {
    /// The high watermark: the end of every record written (a `read_uncommitted`
    /// reader's end).
    pub high: i64,
    /// The last stable offset: the end below which every transaction has ended (a
    /// `read_committed` reader's end). An open transaction holds it back at its
    /// first record.
    pub stable: i64,
}

/// One producer. Errors say what was being done.
pub trait LogProducer: Send {
    /// Registers the transactional id with the cluster: fences every older producer
    /// of the id and aborts its open transaction.
    fn init_transactions(&mut self) -> Result<(), KafkaSinkError>;
    /// Begins a transaction.
    fn begin(&mut self) -> Result<(), KafkaSinkError>;
    /// Queues one record for `topic` (in the open transaction, if any).
    fn send(&mut self, topic: &str, record: &KafkaOutput) -> Result<(), KafkaSinkError>;
    /// Waits until every queued record is acknowledged; a record the broker did not
    /// take is an error.
    fn flush(&mut self) -> Result<(), KafkaSinkError>;
    /// Commits the open transaction (flushing first).
    fn commit(&mut self) -> Result<(), KafkaSinkError>;
    /// Aborts the open transaction.
    fn abort(&mut self) -> Result<(), KafkaSinkError>;
}
