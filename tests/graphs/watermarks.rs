//! Watermarks over several inputs: a two-input operator's watermark is the minimum
//! over its inputs, an idle input is left out of that minimum, and a busy input
//! that has nothing more to say holds it back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir::prelude::*;
use weir::window::{Tumbling, WindowResult};

use crate::common::{wait_until, LiveSink, Numbers};

/// Numbers read by the fast input: event times `0..X_END`.
const X_END: u64 = 1_000;
/// Numbers read by the input that goes quiet: event times `0..Y_END`.
const Y_END: u64 = 100;
/// Both sources run at this parallelism (two splits each).
const PARALLELISM: u32 = 2;
/// Windows and timers are this long (ms of event time).
const WINDOW: i64 = 100;

/// The highest watermark a split of `Numbers::upto(end)` reaches at parallelism
/// [`PARALLELISM`]: split `s` reads `s, s + 2, ...`, so the lower of the two
/// splits' last numbers.
fn last_watermark(end: u64) -> i64 {
    (end - u64::from(PARALLELISM)) as i64
}

/// How the two inputs meet.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `x.union_into(y, probe)`, then a keyed tumbling window count.
    Union,
    /// `x.key_by.connect(y.key_by)` into a keyed operator with one event-time timer
    /// per key and window.
    Connect,
    /// Like `Union`, but `x` is shared: one consumer is the union, another counts
    /// its records apart.
    SharedUnion,
}

/// Passes records on and keeps the highest watermark it was given.
#[derive(Clone)]
struct WatermarkProbe {
    seen: Arc<AtomicI64>,
}

impl Operator for WatermarkProbe {
    type Key = NoKey;
    type In = u64;
    type Out = u64;
    fn process(
        &mut self,
        value: u64,
        ctx: &mut KeyedContext<'_, NoKey, u64>,
    ) -> Result<(), OperatorError> {
        ctx.emit(value);
        Ok(())
    }
    fn on_watermark(
        &mut self,
        watermark: i64,
        _out: &mut dyn Collector<u64>,
    ) -> Result<(), OperatorError> {
        self.seen.fetch_max(watermark, Ordering::SeqCst);
        Ok(())
    }
}

/// A keyed two-input operator: one event-time timer per key at the last instant of
/// each window a record of either input falls in; emits `(key, timer)` when it
/// fires. Keeps the highest watermark it was given.
#[derive(Clone)]
struct WindowTimers {
    seen: Arc<AtomicI64>,
}

impl Operator for WindowTimers {
    type Key = u64;
    type In = Either<u64, u64>;
    type Out = (u64, i64);
    fn process(
        &mut self,
        _value: Either<u64, u64>,
        ctx: &mut KeyedContext<'_, u64, (u64, i64)>,
    ) -> Result<(), OperatorError> {
        let ts = ctx.timestamp();
        ctx.register_event_timer(ts - ts.rem_euclid(WINDOW) + WINDOW - 1)
    }
    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, u64, (u64, i64)>,
    ) -> Result<(), OperatorError> {
        let key = *ctx.key();
        ctx.emit((key, timestamp));
        Ok(())
    }
    fn on_watermark(
        &mut self,
        watermark: i64,
        _out: &mut dyn Collector<(u64, i64)>,
    ) -> Result<(), OperatorError> {
        self.seen.fetch_max(watermark, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct CountRecords;

impl AggregateFn<u64> for CountRecords {
    type Acc = u64;
    type Output = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: u64) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

type EventTime = WatermarkStrategy<fn(&u64) -> i64>;

fn number_time() -> EventTime {
    let ts: fn(&u64) -> i64 = |x| *x as i64;
    WatermarkStrategy::ascending(ts).with_interval(Duration::ZERO)
}

/// What a run of [`two_inputs`] shows.
struct Observed {
    /// The two-input operator's highest watermark once both inputs had sent all
    /// they had and an epoch after that had completed (everything they sent was
    /// handled), while the inputs were still open.
    watermark_while_open: i64,
    /// `(key, window end)` of the results emitted by then.
    fired_while_open: Vec<(u64, i64)>,
    /// Every result of the run, `(key, window end) -> records` (the timer shape
    /// counts one per firing).
    all: BTreeMap<(u64, i64), u64>,
}

/// Runs `x` (event times `0..X_END`, never idle) and `y` (event times `0..Y_END`,
/// then quiet; idle after 30 ms when `y_idles`) into a two-input operator of
/// `shape`, both inputs staying open until the test has looked.
fn two_inputs(shape: Shape, y_idles: bool) -> Observed {
    let root = tempfile::tempdir().unwrap();
    let stop = StopFlag::new();
    let xs = Numbers {
        stop: stop.clone(),
        ..Numbers::upto(X_END).then_idle()
    };
    let ys = Numbers {
        stop: stop.clone(),
        ..Numbers::upto(Y_END).then_idle()
    };
    let y_time = if y_idles {
        number_time().with_idleness(Duration::from_millis(30))
    } else {
        number_time()
    };
    let seen = Arc::new(AtomicI64::new(i64::MIN));
    let results = LiveSink::<(u64, i64, u64)>::new();
    let shared_count = CountingSink::<u64, u64>::new();
    let job = Job::new("two-inputs");
    let x = job.source_with_time(xs.clone(), number_time());
    let y = job.source_with_time(ys.clone(), y_time);
    let window = || Tumbling::of(Duration::from_millis(WINDOW as u64)).unwrap();
    let as_row = |r: WindowResult<u64, u64>| (r.key, r.window.end, r.value);
    let job = match shape {
        Shape::Union => x
            .union_into(y, WatermarkProbe { seen: seen.clone() })
            .key_by(|v: &u64| v % 2)
            .window(window())
            .aggregate(CountRecords)
            .map(as_row)
            .sink(results.clone()),
        Shape::SharedUnion => {
            let x = x.share();
            x.stream()
                .map(|v: u64| (v % 2, 1u64))
                .group_by_key()
                .reduce(|a, b| a + b)
                .sink(shared_count.clone());
            x.stream()
                .union_into(y, WatermarkProbe { seen: seen.clone() })
                .key_by(|v: &u64| v % 2)
                .window(window())
                .aggregate(CountRecords)
                .map(as_row)
                .sink(results.clone())
        }
        Shape::Connect => x
            .key_by(|v: &u64| v % 2)
            .connect(y.key_by(|v: &u64| v % 2))
            .process(WindowTimers { seen: seen.clone() })
            .map(|(key, timer): (u64, i64)| (key, timer + 1, 1))
            .sink(results.clone()),
    };
    let mut options = EngineOptions::for_tests(PARALLELISM);
    options.state_dir = Some(root.path().to_path_buf());
    options.checkpoint.interval = Some(Duration::from_millis(20));
    let control = RunControl {
        stop: Some(stop.clone()),
        ..Default::default()
    };
    let run = std::thread::spawn(move || Node::new(options).unwrap().run_with(job, control));
    let splits = PARALLELISM as usize;
    wait_until(
        "both inputs sent everything and an epoch after that completed",
        || xs.splits_ended_and_committed() == splits && ys.splits_ended_and_committed() == splits,
    );
    if y_idles {
        // Idleness is declared on a timer of its own: wait for its effect (the
        // watermark cannot pass the busy input's while that input is open, which
        // the assertions check).
        wait_until("the watermark moved past the quiet input", || {
            seen.load(Ordering::SeqCst) >= last_watermark(X_END)
        });
    }
    let watermark_while_open = seen.load(Ordering::SeqCst);
    let expected_fired = if y_idles {
        // Every window whose last instant the fast input's watermark passed.
        (last_watermark(X_END) + 1) / WINDOW * 2
    } else {
        0
    };
    if y_idles {
        wait_until("the windows the watermark closed fired", || {
            results.items().len() as i64 >= expected_fired
        });
    }
    let fired_while_open: Vec<(u64, i64)> = results
        .items()
        .iter()
        .map(|(k, end, _)| (*k, *end))
        .collect();
    stop.stop();
    let report = run.join().unwrap().expect("the job runs");
    assert!(report.checkpoints.completed > 0);
    if let Shape::SharedUnion = shape {
        let counts = shared_count.result().last;
        assert_eq!(counts.values().sum::<u64>(), X_END, "{counts:?}");
    }
    let mut all = BTreeMap::new();
    for (key, end, count) in results.items() {
        *all.entry((key, end)).or_insert(0) += count;
    }
    Observed {
        watermark_while_open,
        fired_while_open,
        all,
    }
}

/// What every shape emits in the end, once both inputs ended: `(key, window end)
/// -> records` (or firings, for the timers).
fn final_results(shape: Shape) -> BTreeMap<(u64, i64), u64> {
    let mut want = BTreeMap::new();
    for v in (0..X_END).chain(0..Y_END) {
        let end = v as i64 - (v as i64).rem_euclid(WINDOW) + WINDOW;
        let slot = want.entry((v % 2, end)).or_insert(0);
        match shape {
            Shape::Connect => *slot = 1,
            Shape::Union | Shape::SharedUnion => *slot += 1,
        }
    }
    want
}

/// The idle-input check for one shape.
pub fn an_idle_input_is_left_out_of_the_minimum(shape: Shape) {
    let seen = two_inputs(shape, true);
    assert_eq!(
        seen.watermark_while_open,
        last_watermark(X_END),
        "{shape:?}: with the quiet input idle, the watermark is the busy input's"
    );
    // Every window the watermark passed fired while both inputs were open; the
    // last one ([900, 1000), last instant 999) waits for the end of input.
    let mut want: Vec<(u64, i64)> = (1..X_END as i64 / WINDOW)
        .flat_map(|w| [(0, w * WINDOW), (1, w * WINDOW)])
        .collect();
    want.sort();
    let mut fired = seen.fired_while_open.clone();
    fired.sort();
    assert_eq!(fired, want, "{shape:?}: fired while the inputs were open");
    assert_eq!(seen.all, final_results(shape), "{shape:?}: final results");
}

/// The held-back check for one shape.
pub fn a_quiet_input_that_is_not_idle_holds_the_watermark_back(shape: Shape) {
    let seen = two_inputs(shape, false);
    assert_eq!(
        seen.watermark_while_open,
        last_watermark(Y_END),
        "{shape:?}: the watermark is the minimum over both inputs"
    );
    assert!(
        seen.fired_while_open.is_empty(),
        "{shape:?}: nothing fires past the quiet input's watermark: {:?}",
        seen.fired_while_open
    );
    assert_eq!(seen.all, final_results(shape), "{shape:?}: final results");
}
