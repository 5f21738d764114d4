//! What every partition of a Kafka sink shares: its settings and the names derived
//! from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
/// The directory staged copies and commit ledgers go under by default, inside the
/// job's state directory (under the system's temporary directory for a job that
/// keeps none), each sink in a subdirectory named by its id.
pub const DEFAULT_STAGING: &str = "kafka-staging";

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

    /// The staging directory for a run of a job whose state directory is
    /// `state_dir`: the one set on the sink, or [`DEFAULT_STAGING`] inside the
    /// state directory, or inside the system's temporary directory for a job that
    /// keeps none. Made absolute, so a commit action recorded in a snapshot still
    /// finds its staged copy after a restart from another working directory.
    pub fn staging_base(&self, state_dir: Option<&Path>) -> PathBuf {
        let base = match (&self.staging, state_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(state)) => state.join(DEFAULT_STAGING),
            (None, None) => std::env::temp_dir().join(format!("weir-{DEFAULT_STAGING}")),
        };
        std::path::absolute(&base).unwrap_or(base)
    }

    /// Where this sink's staged copies and ledgers live: `<staging>/<id>` (see
    /// [`staging_base`](Self::staging_base); resolved before each run).
    pub fn staging_dir(&self) -> PathBuf {
        self.staging_base(None).join(&self.id)
    }
}
