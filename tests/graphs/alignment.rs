//! Barrier alignment across the inputs of a multi-input operator while one input is
//! fast and back-pressured and the other slow: checkpoints complete, the output is
//! exactly once, and the held-back fast input never takes the slots the slow
//! input's barrier needs (credits are per input channel).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir::connector::{ReadStatus, SourceError};
use weir::prelude::*;

use crate::common::paced::EpochPaced;
use crate::common::Numbers;

/// Numbers of the fast input (read as fast as the job takes them).
pub const FAST: u64 = 20_000;
/// Numbers of the slow input (one per read, then a pause).
pub const SLOW: u64 = 400;
/// Numbers each split of the slow input reads between two barriers.
pub const SLOW_PER_EPOCH: u64 = 20;
/// Epochs that complete, at the least, while a split of the slow input (at
/// parallelism 2) still has numbers to read: it needs a barrier after every
/// `SLOW_PER_EPOCH` numbers, an epoch starts only once the one before it completed,
/// and only the last one or two may complete after the split read its last number.
pub const SLOW_EPOCHS_PER_SPLIT: u64 = SLOW / 2 / SLOW_PER_EPOCH - 2;

/// How the two inputs meet.
#[derive(Debug, Clone, Copy)]
pub enum Meeting {
    /// `fast.union(slow)`, then a keyed running sum.
    Union,
    /// `fast.key_by.connect(slow.key_by)` into a keyed running sum.
    Connect,
}

/// The numbers `0..n`, one per read with a pause after it that holds its actor (so
/// a barrier waits behind it), split round robin.
struct Dribble {
    n: u64,
    pause: Duration,
    /// Completed epochs whose barrier a split sent before its last number, over
    /// the splits.
    committed_mid_run: Arc<AtomicU64>,
}

struct DribbleReader {
    next: u64,
    step: u64,
    end: u64,
    pause: Duration,
    committed_mid_run: Arc<AtomicU64>,
}

impl Source for Dribble {
    type Item = u64;
    type Reader = DribbleReader;
    fn name(&self) -> String {
        "dribble".into()
    }
    fn reader(&self, split: u32, splits: u32) -> Result<DribbleReader, SourceError> {
        Ok(DribbleReader {
            next: u64::from(split),
            step: u64::from(splits),
            end: self.n,
            pause: self.pause,
            committed_mid_run: self.committed_mid_run.clone(),
        })
    }
}

impl SourceReader for DribbleReader {
    type Item = u64;
    fn read<C: Collector<u64>>(
        &mut self,
        _budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        if self.next >= self.end {
            return Ok(ReadStatus::Exhausted);
        }
        out.collect(self.next);
        self.next += self.step;
        std::thread::sleep(self.pause);
        Ok(ReadStatus::More)
    }
    fn position(&self) -> Option<Vec<u8>> {
        Some(weir::connector::source::counter_position(self.next))
    }
    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = weir::connector::source::decode_counter_position("dribble", position)?;
        Ok(())
    }
    fn position_committed(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let at = weir::connector::source::decode_counter_position("dribble", position)?;
        if at < self.end {
            self.committed_mid_run.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// The key of a fast number (`0..10`) and of a slow one (`10..20`): every key's
/// numbers come from one split of one input, in order, so its running sums are the
/// same in every run.
fn fast_key(v: &u64) -> u64 {
    v % 10
}
fn slow_key(v: &u64) -> u64 {
    10 + v % 10
}

/// A running sum per key over both inputs of a connect.
#[derive(Clone, Default)]
struct SumBoth {
    sum: Option<ValueHandle<u64>>,
}

impl Operator for SumBoth {
    type Key = u64;
    type In = Either<u64, u64>;
    type Out = (u64, u64);
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), OperatorError> {
        self.sum = Some(ctx.value_state(StateDescriptor::new("sum"))?);
        Ok(())
    }
    fn process(
        &mut self,
        value: Either<u64, u64>,
        ctx: &mut KeyedContext<'_, u64, (u64, u64)>,
    ) -> Result<(), OperatorError> {
        let v = match value {
            Either::Left(v) | Either::Right(v) => v,
        };
        let handle = self.sum.ok_or_else(|| OperatorError::msg("not open"))?;
        let mut state = ctx.value(handle);
        let sum = state.value()?.unwrap_or(0) + v;
        state.set(sum)?;
        let key = *ctx.key();
        ctx.emit((key, sum));
        Ok(())
    }
}

/// The committed lines every run must give: each key's running sums.
fn expected() -> Vec<String> {
    let mut sums: BTreeMap<u64, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    for (numbers, key) in [(FAST, fast_key as fn(&u64) -> u64), (SLOW, slow_key)] {
        for v in 0..numbers {
            let sum = sums.entry(key(&v)).or_insert(0);
            *sum += v;
            lines.push(format!("{}\t{sum}", key(&v)));
        }
    }
    lines.sort();
    lines
}

/// What a run showed.
pub struct Aligned {
    /// Epochs completed while the slow input still had numbers to read, counted
    /// by each of its splits as it was told of them.
    pub epochs_mid_run: u64,
    /// Restarts (one fault is injected).
    pub restarts: u32,
    /// Time the fast source waited on full mailboxes.
    pub fast_blocked: Duration,
}

/// Runs a fast and a slow input into a two-input operator of `meeting` with
/// mailboxes of one batch per channel, checkpoints every 10 ms and one injected
/// fault; checks the committed output and returns what the run showed. Fails if
/// the job does not finish within a minute (a deadlock).
pub fn fast_and_slow(meeting: Meeting, root: &Path) -> Aligned {
    let out = root.join("out");
    let fault = Arc::new(AtomicBool::new(false));
    let job = Job::new("fast-and-slow");
    let fast = job.source(Numbers::upto(FAST));
    let committed_mid_run = Arc::new(AtomicU64::new(0));
    // Each slow split reads at most SLOW_PER_EPOCH numbers between two barriers,
    // so its input spans many epochs however the machine runs.
    let slow = job.source(EpochPaced::new(
        Dribble {
            n: SLOW,
            pause: Duration::from_millis(2),
            committed_mid_run: committed_mid_run.clone(),
        },
        Some(SLOW_PER_EPOCH as usize),
    ));
    let fail_once = move |v: u64| {
        if v == FAST / 2 && !fault.swap(true, Ordering::SeqCst) {
            panic!("injected fault at fast number {v}");
        }
    };
    let sink = TransactionalFileSink::new(&out, tab_separated);
    let job = match meeting {
        Meeting::Union => fast
            .map(|v: u64| (fast_key(&v), v))
            .union(slow.map(|v: u64| (slow_key(&v), v)))
            .map(move |(k, v): (u64, u64)| {
                if k < 10 {
                    fail_once(v);
                }
                (k, v)
            })
            .group_by_key()
            .reduce(|a: u64, b: u64| a + b)
            .sink(sink),
        Meeting::Connect => fast
            .map(move |v: u64| {
                fail_once(v);
                v
            })
            .key_by(fast_key)
            .connect(slow.key_by(slow_key))
            .process(SumBoth::default())
            .sink(sink),
    };
    let mut options = EngineOptions::for_tests(2);
    options.state_dir = Some(root.join("state"));
    options.mailbox_capacity = 1;
    options.batch_size = 16;
    options.checkpoint.interval = Some(Duration::from_millis(10));
    options.restart = RestartStrategy::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(5),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Node::new(options).and_then(|node| node.run(job)));
    });
    let report = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{meeting:?}: the job did not finish within a minute"))
        .expect("the job runs");
    let mut got = read_committed(&out).expect("committed output");
    got.sort();
    let want = expected();
    assert_eq!(got.len(), want.len(), "{meeting:?}: one line per record");
    assert!(got == want, "{meeting:?}: the running sums differ");
    let fast_blocked = report
        .stages
        .iter()
        .find(|s| s.name.starts_with("source:numbers"))
        .map(|s| s.send_wait)
        .unwrap_or_default();
    Aligned {
        epochs_mid_run: committed_mid_run.load(Ordering::SeqCst),
        restarts: report.restarts,
        fast_blocked,
    }
}
