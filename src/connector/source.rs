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
