//! Prometheus metrics: what weir counts, and the `/metrics` endpoint that serves it.
//!
//! Partition actors count into plain per-actor atomics; [`JobMetrics`] publishes
//! them to the `metrics` recorder from the node's watch loop about once a second.
//! Rare events (a checkpoint, a restart, a dead letter, a late record, a Kafka
//! transaction) are recorded where they happen. [`install`] puts the Prometheus
//! recorder in place (once per process) and starts a [`MetricsServer`]. Without an
//! installed recorder every metric call is a no-op, so library users and tests pay
//! nothing. The status API reads the same counters through the node's status board
//! (`crate::status`), and never lags the metrics: the board gets each copy of the
//! actors' counters before the publisher does, and the checkpoint metrics are
//! recorded by [`weir_actors::checkpoint::CheckpointStats`] after it updated the
//! figures the board reads. docs/metrics.md lists every metric;
//! [`catalogue::CATALOGUE`] is the same list in code.

pub mod catalogue;
pub mod kafka;
mod publish;
mod server;
mod state_usage;

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub(crate) use publish::unique_stage_labels;
pub use publish::JobMetrics;
pub use server::{MetricsError, MetricsServer};
pub use state_usage::{MeasuredStage, StateUsageSampler};

/// The process's Prometheus recorder, installed by the first [`install`].
static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (on the first call in the process) and serves
/// its metrics at `http://addr/metrics` until the returned server is dropped.
pub fn install(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
    let handle = match RECORDER.get() {
        Some(handle) => handle.clone(),
        None => {
            let handle = build_recorder()?;
            // A racing caller may have installed one first: use whichever won.
            RECORDER.get_or_init(|| handle).clone()
        }
    };
    let server = MetricsServer::start(addr, handle)?;
    tracing::info!(addr = %server.addr(), url = %format!("http://{}/metrics", server.addr()),
        "serving Prometheus metrics");
    Ok(server)
}

/// Whether [`install`] put the Prometheus recorder in place in this process: work
/// done only to feed metrics (the state-usage scans) is skipped without it.
pub fn recorder_installed() -> bool {
    RECORDER.get().is_some()
}

fn build_recorder() -> Result<PrometheusHandle, MetricsError> {
    let bad = |e: metrics_exporter_prometheus::BuildError| MetricsError::Recorder(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(catalogue::PROCESSING.into()),
            &catalogue::processing_buckets(),
        )
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(weir_actors::checkpoint::metrics::CHECKPOINT_DURATION.into()),
            catalogue::CHECKPOINT_SECONDS_BUCKETS,
        )
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(weir_actors::checkpoint::metrics::CHECKPOINT_ALIGNMENT.into()),
            catalogue::CHECKPOINT_SECONDS_BUCKETS,
        )
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(weir_actors::checkpoint::metrics::CHECKPOINT_SIZE.into()),
            &catalogue::checkpoint_size_buckets(),
        )
        .map_err(bad)?
        .install_recorder()
        .map_err(bad)?;
    catalogue::describe_all();
    Ok(handle)
}

/// The `weir_late_records_total` counter of one window partition (registered at
/// zero, so a window stage exports it from the start).
pub(crate) fn late_records(job: &str, stage: &str, partition: u32) -> metrics::Counter {
    let counter = metrics::counter!(catalogue::LATE_RECORDS,
        "job" => job.to_string(),
        "stage" => stage.to_string(),
        "partition" => partition.to_string());
    counter.increment(0);
    counter
}
