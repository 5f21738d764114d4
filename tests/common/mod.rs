//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use weir::connector::{ReadStatus, SourceError};
use weir::operator::Collector;
use weir::prelude::*;

/// A source of the numbers `0..n` (or endless until `stop`), counting what it emitted.
#[derive(Clone)]
pub struct Numbers {
    pub n: Option<u64>,
    pub stop: StopFlag,
    pub emitted: Arc<AtomicU64>,
    /// Sleep this long after each read (so a run lasts long enough to checkpoint).
    pub pause: Option<std::time::Duration>,
}

impl Numbers {
    pub fn upto(n: u64) -> Self {
        Numbers {
            n: Some(n),
            stop: StopFlag::new(),
            emitted: Arc::default(),
            pause: None,
        }
    }
    /// Pauses `pause` after every read.
    pub fn paced(mut self, pause: std::time::Duration) -> Self {
        self.pause = Some(pause);
        self
    }
    pub fn endless(stop: StopFlag) -> Self {
        Numbers {
            n: None,
            stop,
            emitted: Arc::default(),
            pause: None,
        }
    }
}

pub struct NumbersReader {
    pause: Option<std::time::Duration>,
    next: u64,
    step: u64,
    end: u64,
    stop: StopFlag,
    emitted: Arc<AtomicU64>,
}

impl Source for Numbers {
    type Item = u64;
    type Reader = NumbersReader;
    fn name(&self) -> String {
        "numbers".into()
    }
    fn reader(&self, split: u32, splits: u32) -> Result<NumbersReader, SourceError> {
        Ok(NumbersReader {
            pause: self.pause,
            next: u64::from(split),
            step: u64::from(splits),
            end: self.n.unwrap_or(u64::MAX),
            stop: self.stop.clone(),
            emitted: self.emitted.clone(),
        })
    }
}

impl SourceReader for NumbersReader {
    type Item = u64;
    fn read<C: Collector<u64>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        if self.stop.is_stopped() {
            return Ok(ReadStatus::Exhausted);
        }
        for _ in 0..budget {
            if self.next >= self.end {
                return Ok(ReadStatus::Exhausted);
            }
            out.collect(self.next);
            self.emitted.fetch_add(1, Ordering::Relaxed);
            self.next += self.step;
        }
        if let Some(pause) = self.pause {
            std::thread::sleep(pause);
        }
        Ok(ReadStatus::More)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(weir::connector::source::counter_position(self.next))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = weir::connector::source::decode_counter_position("numbers", position)?;
        Ok(())
    }
}

/// A slow endless source: one number per read, then it reports that nothing more is
/// available right now (as an interactive input would).
#[derive(Clone)]
pub struct Trickle {
    pub stop: StopFlag,
}

pub struct TrickleReader {
    next: u64,
    stop: StopFlag,
}

impl Source for Trickle {
    type Item = u64;
    type Reader = TrickleReader;
    fn name(&self) -> String {
        "trickle".into()
    }
    fn max_parallelism(&self) -> Option<u32> {
        Some(1)
    }
    fn reader(&self, _split: u32, _splits: u32) -> Result<TrickleReader, SourceError> {
        Ok(TrickleReader {
            next: 0,
            stop: self.stop.clone(),
        })
    }
}

impl SourceReader for TrickleReader {
    type Item = u64;
    fn read<C: Collector<u64>>(
        &mut self,
        _budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        if self.stop.is_stopped() {
            return Ok(ReadStatus::Exhausted);
        }
        out.collect(self.next);
        self.next += 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
        Ok(ReadStatus::Idle)
    }
}
pub mod kafka_model;
