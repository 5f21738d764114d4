//! The source API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::operator::Collector;

/// Why a source could not read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An I/O error, with what was being read.
    #[error("{what}: {source}")]
    Io {
        /// What was being read (a path, "stdin", ...).
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The source was configured wrongly.
    #[error("invalid source configuration: {0}")]
    Invalid(String),
    /// The Kafka source failed (a client call, a position, its configuration).
    /// Boxed: the client's error is large, and every `Result` of a job carries this.
    #[error(transparent)]
    Kafka(Box<super::kafka::KafkaSourceError>),
    /// The dead-letter output could not take the letters of rejected records.
    /// Boxed, like [`SourceError::Kafka`].
    #[error(transparent)]
    DeadLetters(Box<super::dead_letter::DeadLetterError>),
}

impl From<super::dead_letter::DeadLetterError> for SourceError {
    fn from(e: super::dead_letter::DeadLetterError) -> Self {
        SourceError::DeadLetters(Box::new(e))
    }
}

impl From<super::kafka::KafkaSourceError> for SourceError {
    fn from(e: super::kafka::KafkaSourceError) -> Self {
        SourceError::Kafka(Box::new(e))
    }
}

/// What a read round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// There may be more to read.
    More,
    /// Nothing more can be read right now (the input is slow); read again soon.
    Idle,
    /// This split is exhausted.
    Exhausted,
}

/// A source of records, readable as `splits` independent parts (one per partition
/// actor of the source stage); every record belongs to exactly one split.
pub trait Source: Send + 'static {
    /// What the source emits.
    type Item: 'static;
    /// Reads one split.
    type Reader: SourceReader<Item = Self::Item>;

    /// A short name for the stage name.
    fn name(&self) -> String;

    /// The most splits this source can be read as (e.g. 1 for stdin); `None` for any.
    fn max_parallelism(&self) -> Option<u32> {
        None
    }

    /// The reader of split `split` of `splits`.
    fn reader(&self, split: u32, splits: u32) -> Result<Self::Reader, SourceError>;

    /// How many splits the source is cut into when a job first starts at
    /// `parallelism`. The number is fixed for the job's life (it is recorded in every
    /// snapshot); a job restored at another parallelism spreads the same splits over
    /// its partition actors. Defaults to one split per partition actor.
    fn splits(&self, parallelism: u32) -> u32 {
        match self.max_parallelism() {
            Some(max) => parallelism.min(max).max(1),
            None => parallelism.max(1),
        }
    }
}

/// Reads one split of a source, a bounded round at a time.
pub trait SourceReader: Send + 'static {
    /// What it emits.
    type Item;

    /// Emits up to about `budget` records into `out`.
    fn read<C: Collector<Self::Item>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError>;

    /// Where the reader is: the bytes [`SourceReader::seek`] takes to resume right
    /// after the last record read. `None` when the source cannot rewind (stdin), which
    /// rules out exactly-once checkpointing of a job reading it.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// Called at every checkpoint barrier, before [`SourceReader::position`]: the
    /// reader makes durable what it wrote outside the record stream for the records
    /// it read before the barrier (e.g. dead letters to a Kafka topic), so the
    /// epoch completes only after that is. An error fails the snapshot, and the
    /// attempt. Does nothing by default.
    fn before_barrier(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Moves the reader to `position` (from [`SourceReader::position`] of a reader of
    /// the same split), so that it reads on from there after a recovery.
    fn seek(&mut self, _position: &[u8]) -> Result<(), SourceError> {
        Err(SourceError::Invalid(
            "this source cannot resume from a snapshot position".into(),
        ))
    }

    /// Told, when a checkpoint epoch completes (its manifest is durable), the
    /// position ([`SourceReader::position`]) this reader had at that epoch's barrier,
    /// so the reader can report its progress to an outside system, e.g. commit
    /// offsets to a Kafka consumer group for lag tools. Informational only: recovery
    /// always seeks to the positions in the snapshot, never to what was reported
    /// here. Called on the reader's actor thread, so it must not block long (start
    /// an asynchronous request rather than wait for one); an error is logged and
    /// never fails the job. An exhausted split is told the position its reader
    /// reports at the barrier, when it has one. Does nothing by default.
    fn position_committed(&mut self, _position: &[u8]) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Encodes a position that is one counter.
pub fn counter_position(next: u64) -> Vec<u8> {
    next.to_le_bytes().to_vec()
}

/// Decodes a position made by [`counter_position`], naming `what` in the error.
pub fn decode_counter_position(what: &str, position: &[u8]) -> Result<u64, SourceError> {
    let bytes: [u8; 8] = position.try_into().map_err(|_| {
        SourceError::Invalid(format!(
            "{what}: a snapshot position of {} bytes, expected 8",
            position.len()
        ))
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// Asks unbounded sources to end their input, so a job drains and finishes cleanly
/// (used for `--duration` and Ctrl-C).
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not yet raised.
    pub fn new() -> Self {
        StopFlag::default()
    }

    /// Raises the flag.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag was raised.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
