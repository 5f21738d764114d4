//! What every partition of a Kafka sink shares: its settings and the names derived
//! from them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The delivery guarantee of a [`KafkaSink`](super::KafkaSink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// An idempotent producer, flushed at every epoch barrier: after a crash, the
    /// records written since the last complete epoch are written again (never lost,
    /// possibly repeated). Works with any broker and any consumer. The default.
    #[default]
    AtLeastOnce,
    /// Kafka transactions per epoch and sink partition, committed once the epoch is
    /// complete, with a staged copy for redo: a `read_committed` consumer sees each
    /// record once, whatever crashes.
    ExactlyOnce,
}

/// The default number of transactional producers per sink partition.
pub const DEFAULT_POOL: u32 = 3;
/// The default bound on a broker call (flush, commit, init, lookups).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The directory staged copies go under by default (relative to the working
/// directory), each sink in a subdirectory named by its id.
pub const DEFAULT_STAGING: &str = "weir-kafka-staging";

/// The shared settings of a sink.
#[derive(Debug, Clone)]
pub(crate) struct SinkConfig {
    pub id: String,
    pub bootstrap: String,
    pub topic: String,
    pub marker_topic: String,
    pub settings: BTreeMap<String, String>,
    pub delivery: Delivery,
    pub pool: u32,
    pub staging: Option<PathBuf>,
    pub timeout: Duration,
}

impl SinkConfig {
    /// The transactional id of slot `slot` of sink partition `partition`:
    /// `<sink id>-p<partition>-s<slot>`. Stable across restarts, so a restarted
    /// sink's producers fence the ones a crashed run left.
    pub fn transactional_id(&self, partition: u32, slot: u32) -> String {
        format!("{}-p{partition}-s{slot}", self.id)
    }

    /// Where this sink's staged copies live.
    pub fn staging_dir(&self) -> PathBuf {
        self.staging
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STAGING))
            .join(&self.id)
    }
}
