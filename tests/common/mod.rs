//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod dead_letters;
pub mod deps;
pub mod etcd;
pub mod events;
pub mod faults;
pub mod http;
pub mod kafka;
pub mod kafka_model;
pub mod kill;
pub mod moto;
pub mod node;
pub mod paced;
pub mod tansu;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::path::Path;
use std::time::Duration;
use weir::connector::{ReadStatus, SourceError};
use weir::operator::Collector;
use weir::prelude::*;

/// Waits until `done` holds, polling every 2 ms; fails after 30 s. Tests wait on
/// conditions like this, never for a fixed time (docs/testing.md).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A source of the numbers `0..n` (or endless until `stop`), counting what it emitted.
#[derive(Clone)]
pub struct Numbers {
    pub n: Option<u64>,
    pub stop: StopFlag,
    pub emitted: Arc<AtomicU64>,
    /// Sleep this long after each read (so a run lasts long enough to checkpoint).
    pub pause: Option<std::time::Duration>,
    /// After `n`, report nothing available (the job keeps running, idle) until
    /// `stop`, instead of ending.
    pub then_idle: bool,
    /// The splits (by their first number) that were told a completed epoch whose
    /// barrier came after their last number: every marker they sent before it has
    /// been handled by every actor of the job.
    pub ends_committed: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
}

impl Numbers {
    pub fn upto(n: u64) -> Self {
        Numbers {
            n: Some(n),
            stop: StopFlag::new(),
            emitted: Arc::default(),
            pause: None,
            then_idle: false,
            ends_committed: Arc::default(),
        }
    }
    /// Idles after the last number until `stop`, rather than ending.
    pub fn then_idle(mut self) -> Self {
        self.then_idle = true;
        self
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
            then_idle: false,
            ends_committed: Arc::default(),
        }
    }

    /// How many splits were told a completed epoch past their last number.
    pub fn splits_ended_and_committed(&self) -> usize {
        self.ends_committed.lock().map_or(0, |s| s.len())
    }
}

pub struct NumbersReader {
    split: u64,
    ends_committed: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
    pause: Option<std::time::Duration>,
    then_idle: bool,
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
            split: u64::from(split),
            ends_committed: self.ends_committed.clone(),
            pause: self.pause,
            then_idle: self.then_idle,
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
            if self.next >= self.end && self.then_idle {
                std::thread::sleep(std::time::Duration::from_millis(1));
                return Ok(ReadStatus::Idle);
            }
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

    fn position_committed(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let at = weir::connector::source::decode_counter_position("numbers", position)?;
        if at >= self.end {
            if let Ok(mut ends) = self.ends_committed.lock() {
                ends.insert(self.split);
            }
        }
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

/// Options for a checkpointed run at parallelism 2: checkpoints every 50 ms into
/// `state`, and a fixed-delay restart strategy (20 attempts, 5 ms apart).
pub fn checkpointed(state: &Path) -> EngineOptions {
    let mut o = EngineOptions::for_tests(2);
    o.state_dir = Some(state.to_path_buf());
    o.checkpoint.interval = Some(Duration::from_millis(50));
    o.restart = RestartStrategy::FixedDelay {
        attempts: 20,
        delay: Duration::from_millis(5),
    };
    o
}

/// The committed lines of a transactional file sink's directory, sorted.
pub fn sorted_committed(dir: &Path) -> Vec<String> {
    let mut lines = weir::connector::txn_file::read_committed(dir).expect("committed output");
    lines.sort();
    lines
}

/// A sink whose items are visible as soon as an actor writes them (a
/// [`CollectSink`] shows them only at the end of input), for tests that watch a
/// running job.
pub struct LiveSink<T> {
    items: Arc<std::sync::Mutex<Vec<T>>>,
}

impl<T> Clone for LiveSink<T> {
    fn clone(&self) -> Self {
        LiveSink {
            items: self.items.clone(),
        }
    }
}

impl<T: Clone> LiveSink<T> {
    pub fn new() -> Self {
        LiveSink {
            items: Arc::default(),
        }
    }

    /// What the sink received so far, in arrival order.
    pub fn items(&self) -> Vec<T> {
        self.items.lock().unwrap().clone()
    }
}

impl<T: Send + 'static> SinkFactory<T> for LiveSink<T> {
    type Sink = LiveSink<T>;
    fn name(&self) -> String {
        "live".into()
    }
    fn create(
        &self,
        _partition: u32,
        _parallelism: u32,
    ) -> Result<Self::Sink, weir::connector::SinkError> {
        Ok(LiveSink {
            items: self.items.clone(),
        })
    }
}

impl<T: Send + 'static> Sink<T> for LiveSink<T> {
    fn write(&mut self, item: T) -> Result<(), weir::connector::SinkError> {
        self.items
            .lock()
            .map_err(|_| weir::connector::SinkError::Failed("live sink lock poisoned".into()))?
            .push(item);
        Ok(())
    }
}
