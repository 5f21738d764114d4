//! The Kafka connectors' metrics: consumer lag per partition (published by the
//! source's readers) and transactions committed and aborted (called by the
//! transactional Kafka sink). Each call is a registry lookup, so callers make them
//! at most once per poll interval or per transaction, never per record.

use super::catalogue as names;

/// Sets the lag of `topic` partition `partition` read by source `source`: records
/// between the next offset to read and the partition's high watermark.
pub fn consumer_lag(source: &str, topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(names::KAFKA_CONSUMER_LAG,
        "source" => source.to_string(),
        "topic" => topic.to_string(),
        "partition" => partition.to_string())
    .set(lag as f64);
}

/// Kafka sink `sink` committed a transaction.
pub fn transaction_committed(sink: &str) {
    metrics::counter!(names::KAFKA_TXN_COMMITTED, "sink" => sink.to_string()).increment(1);
}

/// Kafka sink `sink` aborted a transaction.
pub fn transaction_aborted(sink: &str) {
    metrics::counter!(names::KAFKA_TXN_ABORTED, "sink" => sink.to_string()).increment(1);
}
