//! A source wrapper that bounds what each split emits between two epoch barriers,
//! so a test's run spans a known least number of epochs however slow or loaded the
//! machine is (timing-free, unlike sleeps in a map).
#![allow(dead_code)]

use std::time::Duration;

use weir::connector::{ReadStatus, Source, SourceError, SourceReader};
use weir::operator::Collector;

/// `S`, each split emitting at most `per_epoch` records between two barriers
/// (`None`: no bound, for runs without periodic epochs).
pub struct EpochPaced<S> {
    inner: S,
    per_epoch: Option<usize>,
}

impl<S> EpochPaced<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, per_epoch: Option<usize>) -> Self {
        EpochPaced { inner, per_epoch }
    }
}

/// A reader of [`EpochPaced`].
pub struct EpochPacedReader<R> {
    inner: R,
    per_epoch: usize,
    since_barrier: usize,
}

/// Counts what passes through.
struct Counting<'a, C> {
    out: &'a mut C,
    count: usize,
}

impl<T, C: Collector<T>> Collector<T> for Counting<'_, C> {
    fn collect(&mut self, item: T) {
        self.count += 1;
        self.out.collect(item);
    }
}

impl<S: Source> Source for EpochPaced<S> {
    type Item = S::Item;
    type Reader = EpochPacedReader<S::Reader>;
    fn name(&self) -> String {
        self.inner.name()
    }
    fn max_parallelism(&self) -> Option<u32> {
        self.inner.max_parallelism()
    }
    fn splits(&self, parallelism: u32) -> u32 {
        self.inner.splits(parallelism)
    }
    fn reader(&self, split: u32, splits: u32) -> Result<Self::Reader, SourceError> {
        Ok(EpochPacedReader {
            inner: self.inner.reader(split, splits)?,
            per_epoch: self.per_epoch.unwrap_or(usize::MAX),
            since_barrier: 0,
        })
    }
}

impl<R: SourceReader> SourceReader for EpochPacedReader<R> {
    type Item = R::Item;
    fn read<C: Collector<R::Item>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        let left = self.per_epoch - self.since_barrier;
        if left == 0 {
            // Wait for the next barrier.
            std::thread::sleep(Duration::from_millis(1));
            return Ok(ReadStatus::Idle);
        }
        let mut counting = Counting { out, count: 0 };
        let status = self.inner.read(budget.min(left), &mut counting)?;
        self.since_barrier += counting.count;
        Ok(status)
    }
    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }
    fn position(&self) -> Option<Vec<u8>> {
        self.inner.position()
    }
    fn before_barrier(&mut self) -> Result<(), SourceError> {
        self.since_barrier = 0;
        self.inner.before_barrier()
    }
    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.inner.seek(position)
    }
    fn position_committed(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.inner.position_committed(position)
    }
}
