//! The checkpoint coordinator's Prometheus metrics, recorded through the `metrics`
//! facade once per epoch (never on the record path), by [`super::CheckpointStats`]
//! right after it updated the figures the status API reads, so that the metrics
//! never run ahead of them. Without an installed recorder every call here is a
//! no-op.

use std::time::Duration;

/// Counter: epochs completed (manifest durable), the final one included. Label `job`.
pub const CHECKPOINTS_COMPLETED: &str = "weir_checkpoints_completed_total";
/// Counter: epochs abandoned after their timeout or failed to write. Label `job`.
pub const CHECKPOINTS_FAILED: &str = "weir_checkpoints_failed_total";
/// Gauge: the last completed epoch. Label `job`.
pub const LAST_COMPLETED_EPOCH: &str = "weir_checkpoint_last_completed_epoch";
/// Histogram: from an epoch's trigger to its durable manifest, in seconds. Label `job`.
pub const CHECKPOINT_DURATION: &str = "weir_checkpoint_duration_seconds";
/// Histogram: chunk bytes stored for an epoch. Label `job`.
pub const CHECKPOINT_SIZE: &str = "weir_checkpoint_size_bytes";
/// Histogram: the longest barrier alignment of an epoch, in seconds. Label `job`.
pub const CHECKPOINT_ALIGNMENT: &str = "weir_checkpoint_alignment_seconds";

/// Gauge: the time between two checkpoints' starts (`checkpoint.interval_ms`), in
/// seconds; exported only while periodic checkpoints are on. Alerts compare
/// checkpoint durations with it. Label `job`.
pub const CHECKPOINT_INTERVAL: &str = "weir_checkpoint_interval_seconds";

/// Registers the job's checkpoint counters at zero, so that they are exported from
/// the start rather than from the first epoch on, and its checkpoint interval.
pub(crate) fn register(job: &str, interval: Option<Duration>) {
    metrics::counter!(CHECKPOINTS_COMPLETED, "job" => job.to_string()).increment(0);
    metrics::counter!(CHECKPOINTS_FAILED, "job" => job.to_string()).increment(0);
    if let Some(interval) = interval {
        metrics::gauge!(CHECKPOINT_INTERVAL, "job" => job.to_string()).set(interval.as_secs_f64());
    }
}

/// Epoch `epoch` of `job` completed after `took`, storing `bytes`, with its longest
/// alignment `alignment`.
pub(crate) fn completed(job: &str, epoch: u64, took: Duration, bytes: u64, alignment: Duration) {
    let job = job.to_string();
    metrics::counter!(CHECKPOINTS_COMPLETED, "job" => job.clone()).increment(1);
    metrics::gauge!(LAST_COMPLETED_EPOCH, "job" => job.clone()).set(epoch as f64);
    metrics::histogram!(CHECKPOINT_DURATION, "job" => job.clone()).record(took.as_secs_f64());
    metrics::histogram!(CHECKPOINT_SIZE, "job" => job.clone()).record(bytes as f64);
    metrics::histogram!(CHECKPOINT_ALIGNMENT, "job" => job).record(alignment.as_secs_f64());
}

/// An epoch of `job` was abandoned or failed.
pub(crate) fn failed(job: &str) {
    metrics::counter!(CHECKPOINTS_FAILED, "job" => job.to_string()).increment(1);
}
