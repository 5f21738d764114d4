//! Every metric weir exports: its name, type, labels and meaning. The names are
//! the single source for the code that records them, for the `# HELP` lines of the
//! exporter, and for the test that holds docs/metrics.md to the exported set.

use weir_actors::checkpoint::metrics as checkpoint;

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted into buckets, with their sum and count.
    Histogram,
}

impl Kind {
    /// The type as Prometheus writes it (`# TYPE name counter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names.
    pub labels: &'static [&'static str],
    /// What it measures (the `# HELP` text).
    pub help: &'static str,
}

/// Per partition actor: records received (for a source, records read).
pub const RECORDS_IN: &str = "weir_records_in_total";
/// Per partition actor: records emitted.
pub const RECORDS_OUT: &str = "weir_records_out_total";
/// Per source partition actor: bytes of input consumed.
pub const SOURCE_BYTES: &str = "weir_source_bytes_total";
/// Per partition actor: messages (batches and markers) handled.
pub const MESSAGES_IN: &str = "weir_messages_in_total";
/// Per partition actor: time to handle one message.
pub const PROCESSING: &str = "weir_processing_seconds";
/// Per partition actor: share of wall time spent running the task.
pub const BUSY_RATIO: &str = "weir_busy_ratio";
/// Per partition actor: share of wall time blocked on full downstream mailboxes.
pub const BACKPRESSURE_RATIO: &str = "weir_backpressure_ratio";
/// Per partition actor: messages in its mailbox.
pub const MAILBOX_DEPTH: &str = "weir_mailbox_depth";
/// Per partition actor: its mailbox's capacity.
pub const MAILBOX_CAPACITY: &str = "weir_mailbox_capacity";
/// Per partition actor: the watermark it last sent.
pub const WATERMARK: &str = "weir_watermark_timestamp_seconds";
/// Per partition actor: wall clock minus its watermark.
pub const WATERMARK_LAG: &str = "weir_watermark_lag_seconds";
/// Per window partition: records too late for every window.
pub const LATE_RECORDS: &str = "weir_late_records_total";
/// Per origin: records sent to the dead-letter output.
pub const DEAD_LETTERS: &str = "weir_dead_letters_total";
/// Per origin: dead letters that could not be written to their output.
pub const DEAD_LETTER_ERRORS: &str = "weir_dead_letter_errors_total";
/// Per job: restarts from the last complete epoch.
pub const RESTARTS: &str = "weir_restarts_total";
/// Per partition actor: failures (panics, errors) that failed its job.
pub const OPERATOR_FAILURES: &str = "weir_operator_failures_total";
/// Per node: bytes the state store takes on disk.
pub const STATE_STORE_BYTES: &str = "weir_state_store_bytes";
/// Per keyed partition actor: stored state entries, as of its last flush.
pub const STATE_KEYS: &str = "weir_state_keys";
/// Per keyed partition actor: stored state bytes, as of its last flush.
pub const STATE_BYTES: &str = "weir_state_bytes";
/// Per Kafka partition read: high watermark minus the next offset to read.
pub const KAFKA_CONSUMER_LAG: &str = "weir_kafka_consumer_lag_records";
/// Per Kafka sink: transactions committed.
pub const KAFKA_TXN_COMMITTED: &str = "weir_kafka_transactions_committed_total";
/// Per Kafka sink: transactions aborted.
pub const KAFKA_TXN_ABORTED: &str = "weir_kafka_transactions_aborted_total";

/// Labels of the per-partition-actor metrics.
pub const ACTOR_LABELS: &[&str] = &["job", "stage", "partition"];

/// Every metric weir exports.
pub const CATALOGUE: &[MetricDef] = &[
    MetricDef { name: RECORDS_IN, kind: Kind::Counter, labels: ACTOR_LABELS,
        help: "Records received by a partition actor (for a source: records read)." },
    MetricDef { name: RECORDS_OUT, kind: Kind::Counter, labels: ACTOR_LABELS,
        help: "Records emitted by a partition actor." },
    MetricDef { name: SOURCE_BYTES, kind: Kind::Counter, labels: ACTOR_LABELS,
        help: "Bytes of input a source partition actor consumed (lines with their line ends, Kafka keys and values)." },
    MetricDef { name: MESSAGES_IN, kind: Kind::Counter, labels: ACTOR_LABELS,
        help: "Messages (record batches and markers) handled by a partition actor." },
    MetricDef { name: PROCESSING, kind: Kind::Histogram, labels: ACTOR_LABELS,
        help: "Time a partition actor took to handle one message (bucketed in the actor; the sum is taken from bucket bounds)." },
    MetricDef { name: BUSY_RATIO, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "Share of wall time a partition actor spent running its task, over the last publish interval." },
    MetricDef { name: BACKPRESSURE_RATIO, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "Share of wall time a partition actor was blocked on full downstream mailboxes, over the last publish interval (Flink levels: OK <= 0.1 < LOW <= 0.5 < HIGH)." },
    MetricDef { name: MAILBOX_DEPTH, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "Messages queued, held or being handled in a partition actor's mailbox." },
    MetricDef { name: MAILBOX_CAPACITY, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "The most messages a partition actor's mailbox holds." },
    MetricDef { name: WATERMARK, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "The event-time watermark a partition actor last sent, in seconds since the Unix epoch." },
    MetricDef { name: WATERMARK_LAG, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "Wall clock minus a partition actor's watermark, in seconds." },
    MetricDef { name: LATE_RECORDS, kind: Kind::Counter, labels: ACTOR_LABELS,
        help: "Records a window partition received after every window they belong to had closed." },
    MetricDef { name: DEAD_LETTERS, kind: Kind::Counter, labels: &["origin"],
        help: "Records sent to the dead-letter output, by what rejected them." },
    MetricDef { name: DEAD_LETTER_ERRORS, kind: Kind::Counter, labels: &["origin"],
        help: "Dead letters that could not be written to their output (the job fails rather than drop them)." },
    MetricDef { name: OPERATOR_FAILURES, kind: Kind::Counter, labels: ACTOR_LABELS,
        help: "Failures (a panic or an error in its operator) of a partition actor, each of which failed its job." },
    MetricDef { name: RESTARTS, kind: Kind::Counter, labels: &["job"],
        help: "Restarts of a job from its last complete epoch after a failure." },
    MetricDef { name: STATE_STORE_BYTES, kind: Kind::Gauge, labels: &[],
        help: "Bytes the node's state store (sled) takes on disk." },
    MetricDef { name: STATE_KEYS, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "Keyed-state entries a partition actor's key partitions hold on disk (one per key of a value or list state, one per map entry; timers and entries only in the write-back cache not counted), measured every metrics.state_interval_ms." },
    MetricDef { name: STATE_BYTES, kind: Kind::Gauge, labels: ACTOR_LABELS,
        help: "Bytes of the sled keys and values of those entries, as of the partition actor's last flush, measured every metrics.state_interval_ms." },
    MetricDef { name: checkpoint::CHECKPOINTS_COMPLETED, kind: Kind::Counter, labels: &["job"],
        help: "Checkpoints (epochs) completed, the final one at the end of input included." },
    MetricDef { name: checkpoint::CHECKPOINTS_FAILED, kind: Kind::Counter, labels: &["job"],
        help: "Checkpoints abandoned after their timeout or failed to write." },
    MetricDef { name: checkpoint::LAST_COMPLETED_EPOCH, kind: Kind::Gauge, labels: &["job"],
        help: "The last completed epoch of a job." },
    MetricDef { name: checkpoint::CHECKPOINT_DURATION, kind: Kind::Histogram, labels: &["job"],
        help: "Time from a checkpoint's trigger to its durable manifest." },
    MetricDef { name: checkpoint::CHECKPOINT_SIZE, kind: Kind::Histogram, labels: &["job"],
        help: "Snapshot bytes stored for one checkpoint." },
    MetricDef { name: checkpoint::CHECKPOINT_INTERVAL, kind: Kind::Gauge, labels: &["job"],
        help: "The time between two checkpoints' starts (checkpoint.interval_ms), in seconds; only while periodic checkpoints are on." },
    MetricDef { name: checkpoint::CHECKPOINT_ALIGNMENT, kind: Kind::Histogram, labels: &["job"],
        help: "The longest barrier alignment of one checkpoint." },
    MetricDef { name: KAFKA_CONSUMER_LAG, kind: Kind::Gauge, labels: &["source", "topic", "partition"],
        help: "Records of a Kafka partition not read yet: its high watermark minus the next offset to read." },
    MetricDef { name: KAFKA_TXN_COMMITTED, kind: Kind::Counter, labels: &["sink"],
        help: "Kafka transactions a sink committed." },
    MetricDef { name: KAFKA_TXN_ABORTED, kind: Kind::Counter, labels: &["sink"],
        help: "Kafka transactions a sink aborted." },
];

/// Bucket bounds of [`PROCESSING`], in seconds (the kernel's buckets).
pub fn processing_buckets() -> Vec<f64> {
    weir_actors::stats::PROCESSING_BUCKET_BOUNDS_US
        .iter()
        .map(|us| *us as f64 / 1e6)
        .collect()
}

/// Bucket bounds of the checkpoint duration and alignment histograms, in seconds.
pub const CHECKPOINT_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Bucket bounds of the checkpoint size histogram, in bytes: powers of four from
/// 1 KiB to 4 GiB.
pub fn checkpoint_size_buckets() -> Vec<f64> {
    (0..12).map(|i| 1024.0 * 4f64.powi(i)).collect()
}

/// Gives every metric its `# HELP` text in the installed recorder.
pub fn describe_all() {
    for def in CATALOGUE {
        match def.kind {
            Kind::Counter => metrics::describe_counter!(def.name, def.help),
            Kind::Gauge => metrics::describe_gauge!(def.name, def.help),
            Kind::Histogram => metrics::describe_histogram!(def.name, def.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for def in CATALOGUE {
            assert!(seen.insert(def.name), "{} listed twice", def.name);
            assert!(def.name.starts_with("weir_"), "{}", def.name);
            assert!(
                def.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                def.name
            );
            assert_eq!(
                def.kind == Kind::Counter,
                def.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                def.name
            );
        }
    }
}
