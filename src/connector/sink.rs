//! The plain sink API, and what every sink shares: its error type and what it is told
//! before each run. The transactional sink API is in
//! [`two_phase`](super::two_phase).

use std::path::Path;

/// Why a sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error, with what was being written.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure.
    #[error("{0}")]
    Failed(String),
    /// The Kafka sink failed.
    #[error(transparent)]
    Kafka(#[from] crate::connector::kafka::KafkaSinkError),
    /// An encoded commit action could not be written or read.
    #[error(transparent)]
    Action(#[from] super::action_frame::ActionFrameError),
}

/// One partition's plain sink: receives the records of one partition actor and writes
/// them as they come. Under recovery the records since the restored epoch are written
/// again (at-least-once); a sink that must not repeat output is a
/// [`TwoPhaseCommitSink`](super::two_phase::TwoPhaseCommitSink) instead.
pub trait Sink<T>: Send + 'static {
    /// Writes one record.
    fn write(&mut self, item: T) -> Result<(), SinkError>;
    /// The input has ended: write out what is buffered.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// An epoch barrier reached the sink: make everything written before it durable
    /// where it goes (e.g. wait for the broker's acknowledgements), so that a restart
    /// from the epoch loses nothing. An error fails the epoch's snapshot. Does nothing
    /// by default.
    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Makes the plain sink of each partition of the last stage.
pub trait SinkFactory<T>: Send + 'static {
    /// The per-partition sink.
    type Sink: Sink<T>;
    /// A short name for the stage name.
    fn name(&self) -> String;
    /// The sink of partition `partition` of `parallelism`.
    fn create(&self, partition: u32, parallelism: u32) -> Result<Self::Sink, SinkError>;
    /// Called once per run (and per restart) before any partition's sink is created:
    /// a sink can learn where the job keeps its files. Does nothing by default.
    fn recover(&self, _recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// What a sink is told before each run of its job.
#[derive(Debug, Clone, Copy)]
pub struct SinkRecovery<'a> {
    /// The epoch the run restores (`None` for a run from the beginning).
    pub restored: Option<u64>,
    /// The directory the job keeps its state and snapshots in (a temporary one for
    /// a checkpointed job given no state directory); `None` when it keeps none. A
    /// sink's own durable files (staged output, commit ledgers) belong inside it.
    pub state_dir: Option<&'a Path>,
}
