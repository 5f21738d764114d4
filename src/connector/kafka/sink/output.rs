//! What a Kafka sink writes for one record.

use serde::{Deserialize, Serialize};

/// One Kafka record to produce, made from a job's record by the sink's formatter.
///
/// Build it with struct update syntax:
/// `KafkaOutput { value: Some(bytes), ..KafkaOutput::default() }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KafkaOutput {
    /// The record's key (`None`: no key). The producer's partitioner places keyed
    /// records by their key unless `partition` is set.
    pub key: Option<Vec<u8>>,
    /// The record's value (`None`: a tombstone on a compacted topic).
    pub value: Option<Vec<u8>>,
    /// The topic partition to write to (`None`: the producer's partitioner chooses).
    pub partition: Option<i32>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp in milliseconds since the epoch (`None`: the
    /// producer's clock).
    pub timestamp: Option<i64>,
}
