//! Sinks are operator types: a terminal operator of the user's own (`Key = NoKey`,
//! `Out = Infallible`) ends a stream through `Stream::sink` and gets every handler a
//! built-in sink gets; one that keeps operator state is refused with a clear error;
//! and two transactional sinks fed by one shared stream are both exactly-once under
//! injected panics.

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::faults::Faults;
use common::Numbers;
use weir::prelude::*;

/// What the partitions of a [`Tally`] saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// (partition, parallelism) of every `open`.
    opened: Vec<(u32, u32)>,
    /// Every record, from every partition.
    records: Vec<u64>,
    /// Per partition: the records counted at each barrier, with its epoch.
    barriers: Vec<(u32, u64, u64)>,
    /// Epochs heard complete.
    completed: Vec<u64>,
    /// Partitions closed.
    closed: Vec<u32>,
}

/// A terminal operator written by a user: counts what it receives, and reports
/// through every handler.
#[derive(Clone)]
struct Tally {
    seen: Arc<Mutex<Seen>>,
    partition: u32,
    count: u64,
    /// Whether to write operator state at barriers (which a terminal may not).
    keep_state: bool,
}

impl Tally {
    fn new(seen: Arc<Mutex<Seen>>) -> Self {
        Tally {
            seen,
            partition: 0,
            count: 0,
            keep_state: false,
        }
    }
}

impl Operator for Tally {
    type Key = NoKey;
    type In = u64;
    type Out = Infallible;

    fn name(&self) -> String {
        "tally".into()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, NoKey>) -> Result<(), OperatorError> {
        self.partition = ctx.partition();
        self.seen
            .lock()
            .unwrap()
            .opened
            .push((ctx.partition(), ctx.parallelism()));
        Ok(())
    }

    fn process(
        &mut self,
        value: u64,
        _ctx: &mut KeyedContext<'_, NoKey, Infallible>,
    ) -> Result<(), OperatorError> {
        self.count += 1;
        self.seen.lock().unwrap().records.push(value);
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        epoch: u64,
        state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        if self.keep_state {
            state.list("count", [self.count])?;
        }
        self.seen
            .lock()
            .unwrap()
            .barriers
            .push((self.partition, epoch, self.count));
        Ok(())
    }

    fn epoch_complete(&mut self, epoch: u64) -> Result<(), OperatorError> {
        self.seen.lock().unwrap().completed.push(epoch);
        Ok(())
    }

    fn close(&mut self, _out: &mut dyn Collector<Infallible>) -> Result<(), OperatorError> {
        self.seen.lock().unwrap().closed.push(self.partition);
        Ok(())
    }
}

fn checkpointed(state: &Path, parallelism: u32) -> EngineOptions {
    let mut o = EngineOptions::for_tests(parallelism);
    o.state_dir = Some(state.to_path_buf());
    o.checkpoint.interval = Some(Duration::from_millis(20));
    o
}

#[test]
fn a_terminal_operator_of_your_own_ends_a_stream_with_every_handler_called() {
    const N: u64 = 4_000;
    let root = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    // The source idles after its last number until stopped, so the job checkpoints
    // on (and its epochs complete) after every record reached the sink.
    let numbers = Numbers::upto(N).paced(Duration::from_millis(1)).then_idle();
    let stop = numbers.stop.clone();
    let job = Job::new("tally")
        .source(numbers)
        .rebalance()
        .process(Fused::new(weir::operator::fused::map(|x: u64| x * 2)))
        .sink(Tally::new(seen.clone()));
    let node = Node::new(checkpointed(root.path(), 2)).unwrap();
    let run = std::thread::spawn(move || node.run(job));
    common::wait_until(
        "every record reached the sink and an epoch completed",
        || {
            let seen = seen.lock().unwrap();
            seen.records.len() as u64 == N && !seen.completed.is_empty()
        },
    );
    stop.stop();
    let report = run.join().unwrap().unwrap();
    assert!(report.checkpoints.completed > 0);
    let seen = seen.lock().unwrap();
    let mut opened = seen.opened.clone();
    opened.sort();
    assert_eq!(opened, [(0, 2), (1, 2)], "one open per partition");
    let mut records = seen.records.clone();
    records.sort();
    assert_eq!(records, (0..N).map(|x| x * 2).collect::<Vec<_>>());
    let mut closed = seen.closed.clone();
    closed.sort();
    assert_eq!(closed, [0, 1], "one close per partition");
    // Each partition's barriers come in epoch order with counts that only grow, and
    // the last barrier (the final epoch's) has counted all its records.
    let mut total_at_last = 0;
    for partition in 0..2 {
        let mine: Vec<(u64, u64)> = seen
            .barriers
            .iter()
            .filter(|b| b.0 == partition)
            .map(|b| (b.1, b.2))
            .collect();
        assert!(mine.len() >= 2, "partition {partition}: {mine:?}");
        assert!(mine.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        total_at_last += mine.last().map_or(0, |b| b.1);
    }
    assert_eq!(total_at_last, N);
    assert!(
        !seen.completed.is_empty(),
        "epoch_complete reached the terminal operator"
    );
}

#[test]
fn a_terminal_operator_that_keeps_operator_state_is_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let mut options = checkpointed(root.path(), 1);
    options.restart = RestartStrategy::None;
    let mut tally = Tally::new(Arc::default());
    tally.keep_state = true;
    let job = Job::new("stateful-terminal")
        .source(Numbers::upto(2_000).paced(Duration::from_millis(1)))
        .sink(tally);
    let err = Node::new(options).unwrap().run(job).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("tally") && text.contains("cannot keep operator state"),
        "{text}"
    );
}

/// numbers -> [fault] -> shared: one route commits every number, the other the even
/// ones, each into its own exactly-once file sink.
fn two_sink_job(all: &Path, even: &Path, n: u64, faults: Faults) -> Job {
    let shared = Job::new("two-sinks")
        .source(Numbers::upto(n).paced(Duration::from_millis(1)))
        .map(move |x: u64| {
            faults.check(x);
            (x, x * 3)
        })
        .share();
    shared
        .stream()
        .sink(TransactionalFileSink::new(all, tab_separated));
    shared
        .stream()
        .filter(|(x, _): &(u64, u64)| x % 2 == 0)
        .sink(TransactionalFileSink::new(even, tab_separated))
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[test]
fn two_transactional_sinks_on_one_shared_stream_are_both_exactly_once_under_panics() {
    const N: u64 = 6_000;
    let root = tempfile::tempdir().unwrap();
    let line = |x: u64| format!("{x}\t{}", x * 3);
    let want_all = sorted((0..N).map(line).collect());
    let want_even = sorted((0..N).filter(|x| x % 2 == 0).map(line).collect());
    let faults = Faults::seeded(0x5EED, 3, N);
    let (all, even) = (root.path().join("all"), root.path().join("even"));
    let mut options = checkpointed(&root.path().join("state"), 2);
    options.restart = RestartStrategy::FixedDelay {
        attempts: 10,
        delay: Duration::from_millis(5),
    };
    let report = Node::new(options)
        .unwrap()
        .run(two_sink_job(&all, &even, N, faults.clone()))
        .expect("the job recovers from every injected panic");
    assert_eq!(faults.fired(), 3, "every fault fired");
    assert!(report.restarts >= 1);
    let got_all = sorted(read_committed(&all).unwrap());
    let got_even = sorted(read_committed(&even).unwrap());
    assert_eq!(got_all.len(), want_all.len(), "every number, once");
    assert!(got_all == want_all, "the first sink's output differs");
    assert_eq!(got_even.len(), want_even.len(), "every even number, once");
    assert!(got_even == want_even, "the second sink's output differs");
}
