//! Event time end to end: watermarks, timers, windows, lateness.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::connector::{ReadStatus, SourceError};
use weir::operator::Collector;
use weir::prelude::*;
use weir::window::{Session, Sliding, Tumbling, WindowResult};

use common::events::{time, Count, Events, EventsReader};
use weir_actors::state::{Clock, ManualClock};

type Rows = CollectSink<WindowResult<u64, u64>>;

fn tumbling_counts(
    events: Vec<(u64, i64)>,
    bound_ms: u64,
    parallelism: u32,
) -> BTreeMap<(u64, i64), u64> {
    let rows = Rows::new();
    let job = Job::new("tumbling")
        .source_with_time(Events { events, stop: None }, time(bound_ms))
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .aggregate(Count)
        .sink(rows.clone());
    Node::new(EngineOptions::for_tests(parallelism))
        .unwrap()
        .run(job)
        .unwrap();
    let mut out = BTreeMap::new();
    for r in rows.items() {
        assert!(
            out.insert((r.key, r.window.start), r.value).is_none(),
            "a window fired twice"
        );
    }
    out
}

/// Shuffles deterministically so that no event moves 8 or more places: each is
/// sorted by its index plus a pseudo-random offset in 0..8.
fn disorder(events: Vec<(u64, i64)>, seed: u64) -> Vec<(u64, i64)> {
    let mut s = seed;
    let mut keyed: Vec<(usize, (u64, i64))> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (i + (s >> 33) as usize % 8, e)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, e)| e).collect()
}

#[test]
fn out_of_order_input_within_the_bound_gives_the_in_order_result() {
    // Timestamps 0, 1, 2, ... (1 ms apart), 7 keys. Disorder moves an event at most 8
    // places, i.e. < 10 ms: a 50 ms bound covers it.
    let ordered: Vec<(u64, i64)> = (0..5_000).map(|i| (i % 7, i as i64)).collect();
    let expected = tumbling_counts(ordered.clone(), 0, 1);
    assert_eq!(expected.len(), 7 * 50);
    assert!(expected.values().all(|&c| c == 100 / 7 || c == 100 / 7 + 1));
    for (seed, parallelism) in [(1, 1), (2, 2), (3, 3)] {
        let shuffled = disorder(ordered.clone(), seed);
        assert_ne!(shuffled, ordered);
        assert_eq!(
            tumbling_counts(shuffled, 50, parallelism),
            expected,
            "seed {seed}"
        );
    }
}

#[test]
fn a_record_beyond_the_allowed_lateness_goes_to_the_late_output() {
    // Key 1: events at 0..=99 fill window [0, 100); the event at 500 moves the
    // watermark to 500 (bound 0); then an event at 10 is late (the window ended at 99).
    let mut events: Vec<(u64, i64)> = (0..100).map(|t| (1, t)).collect();
    events.push((1, 500));
    events.push((1, 10));
    let rows = Rows::new();
    let late = CollectSink::<(u64, (u64, i64))>::new();
    let windowed = Job::new("late")
        .source_with_time(Events { events, stop: None }, time(0))
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .late_data(late.clone());
    let late_count = windowed.late_records();
    let job = windowed.aggregate(Count).sink(rows.clone());
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    assert_eq!(late.items(), vec![(1, (1, 10))]);
    assert_eq!(late_count.load(Ordering::Relaxed), 1);
    let mut got: Vec<(i64, u64)> = rows
        .items()
        .iter()
        .map(|r| (r.window.start, r.value))
        .collect();
    got.sort();
    assert_eq!(got, vec![(0, 100), (500, 1)]);
}

#[test]
fn a_late_record_within_the_allowed_lateness_updates_and_fires_the_window_again() {
    let mut events: Vec<(u64, i64)> = (0..100).map(|t| (1, t)).collect();
    events.push((1, 150)); // watermark 150: [0, 100) fires with 100
    events.push((1, 20)); // late by 130 ms, within 200 ms: fires again with 101
    events.push((1, 400)); // watermark 400 > 99 + 200: [0, 100) is cleared
    events.push((1, 30)); // beyond the lateness: late output
    let rows = Rows::new();
    let windowed = Job::new("lateness")
        .source_with_time(Events { events, stop: None }, time(0))
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .allowed_lateness(Duration::from_millis(200));
    let late = windowed.late_records();
    let job = windowed.aggregate(Count).sink(rows.clone());
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    let first: Vec<u64> = rows
        .items()
        .iter()
        .filter(|r| r.window.start == 0)
        .map(|r| r.value)
        .collect();
    assert_eq!(first, vec![100, 101]);
    assert_eq!(late.load(Ordering::Relaxed), 1);
}

#[test]
fn sliding_windows_count_each_record_in_every_window_it_falls_in() {
    let events: Vec<(u64, i64)> = (0..1_000).map(|t| (t as u64 % 3, t)).collect();
    let rows = Rows::new();
    let job = Job::new("sliding")
        .source_with_time(
            Events {
                events: events.clone(),
                stop: None,
            },
            time(0),
        )
        .key_by(|e: &(u64, i64)| e.0)
        .window(Sliding::of(Duration::from_millis(100), Duration::from_millis(25)).unwrap())
        .aggregate(Count)
        .sink(rows.clone());
    Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();
    let mut expected: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for &(k, t) in &events {
        let mut start = t - t.rem_euclid(25);
        while start > t - 100 {
            *expected.entry((k, start)).or_insert(0) += 1;
            start -= 25;
        }
    }
    let got: BTreeMap<(u64, i64), u64> = rows
        .items()
        .iter()
        .map(|r| ((r.key, r.window.start), r.value))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(rows.items().len(), expected.len(), "no window fired twice");
}

#[test]
fn session_windows_merge_whatever_the_arrival_order() {
    // Key 0: bursts at 0..5, 8..10 (gap 3 < 5: same session), 100..103; key 1: 50.
    let events = vec![
        (0, 0),
        (0, 2),
        (0, 4),
        (0, 8),
        (0, 10),
        (0, 100),
        (0, 103),
        (1, 50),
    ];
    let expected = vec![
        ((0u64, 0i64, 15i64), 5u64),
        ((0, 100, 108), 2),
        ((1, 50, 55), 1),
    ];
    for order in [
        events.clone(),
        events.iter().rev().copied().collect(),
        disorder(events.clone(), 9),
    ] {
        let rows = Rows::new();
        let job = Job::new("sessions")
            .source_with_time(
                Events {
                    events: order,
                    stop: None,
                },
                time(1_000),
            )
            .key_by(|e: &(u64, i64)| e.0)
            .window(Session::with_gap(Duration::from_millis(5)).unwrap())
            .aggregate(Count)
            .sink(rows.clone());
        Node::new(EngineOptions::for_tests(2))
            .unwrap()
            .run(job)
            .unwrap();
        let mut got: Vec<((u64, i64, i64), u64)> = rows
            .items()
            .iter()
            .map(|r| ((r.key, r.window.start, r.window.end), r.value))
            .collect();
        got.sort();
        assert_eq!(got, expected);
    }
}

#[test]
fn count_windows_fire_every_n_records_per_key() {
    let events: Vec<(u64, i64)> = (0..103).map(|i| (i as u64 % 2, i)).collect();
    let rows = Rows::new();
    let job = Job::new("counts")
        .source(Events { events, stop: None })
        .key_by(|e: &(u64, i64)| e.0)
        .count_window(10)
        .aggregate(Count)
        .sink(rows.clone());
    Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();
    let mut per_key: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for r in rows.items() {
        per_key.entry(r.key).or_default().push(r.value);
    }
    // Key 0 has 52 records, key 1 has 51: five full windows each, the rest unfired.
    assert_eq!(per_key[&0], vec![10; 5]);
    assert_eq!(per_key[&1], vec![10; 5]);
}

#[test]
fn an_idle_split_does_not_stall_the_watermark() {
    // Split 0 has every event; split 1 has none and stays open until stopped. Without
    // idleness the watermark (the minimum over both splits) would never advance and
    // no window would fire while the job runs.
    let events: Vec<(u64, i64)> = (0..400).map(|t| (1, t)).collect();
    let mut only_split0 = Vec::new();
    for e in events {
        only_split0.push(e);
        only_split0.push((99, i64::MIN)); // placeholder for split 1, filtered below
    }
    let stop = StopFlag::new();
    let source = Events {
        events: only_split0,
        stop: Some(stop.clone()),
    };
    let time = time(0).with_idleness(Duration::from_millis(30));
    let rows = common::LiveSink::<WindowResult<u64, u64>>::new();
    let job = Job::new("idle")
        .source_with_time(source, time)
        .filter(|e: &(u64, i64)| e.0 != 99)
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .aggregate(Count)
        .sink(rows.clone());
    let control = RunControl {
        stop: Some(stop.clone()),
        ..Default::default()
    };
    let run = std::thread::spawn(move || {
        Node::new(EngineOptions::for_tests(2))
            .unwrap()
            .run_with(job, control)
            .unwrap()
    });
    // Windows [0,100), [100,200), [200,300) and [300,400) fire on the watermark 399
    // once split 1 is idle, while the input is still open: the input ends only once
    // they have. Without idleness the watermark (the minimum over both splits) would
    // not move until the end, and this wait would time out.
    common::wait_until("every window fired while the input is open", || {
        rows.items().len() == 4
    });
    stop.stop();
    run.join().expect("the job ran");
    let rows = rows.items();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let starts: BTreeSet<i64> = rows.iter().map(|r| r.window.start).collect();
    assert_eq!(starts, BTreeSet::from([0, 100, 200, 300]), "{rows:?}");
}

/// Registers a timer at `ts + 10` for each record and emits (key, fire time) when it
/// fires; registering the same time twice must give one firing.
#[derive(Clone)]
struct Timers;

impl KeyedProcess for Timers {
    type Key = u64;
    type In = (u64, i64);
    type Out = (u64, i64);
    fn process(
        &mut self,
        e: (u64, i64),
        ctx: &mut KeyedContext<'_, u64, (u64, i64)>,
    ) -> Result<(), OperatorError> {
        ctx.register_event_timer(e.1 + 10)?;
        ctx.register_event_timer(e.1 + 10)?;
        Ok(())
    }
    fn on_timer(
        &mut self,
        ts: i64,
        ctx: &mut KeyedContext<'_, u64, (u64, i64)>,
    ) -> Result<(), OperatorError> {
        assert_eq!(ctx.timestamp(), ts);
        assert!(ctx.current_watermark() >= ts);
        let key = *ctx.key();
        ctx.emit((key, ts));
        Ok(())
    }
}

#[test]
fn timers_fire_in_timestamp_order_and_exactly_once() {
    let events: Vec<(u64, i64)> = disorder((0..600).map(|t| (t as u64 % 5, t * 3)).collect(), 4);
    let fired = CollectSink::<(u64, i64)>::new();
    let job = Job::new("timers")
        .source_with_time(
            Events {
                events: events.clone(),
                stop: None,
            },
            time(50),
        )
        .key_by(|e: &(u64, i64)| e.0)
        .process(Timers)
        .sink(fired.clone());
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    let got = fired.items();
    let mut expected: Vec<(u64, i64)> = events.iter().map(|&(k, t)| (k, t + 10)).collect();
    expected.sort_by_key(|&(k, t)| (t, k));
    expected.dedup();
    assert_eq!(got.len(), expected.len(), "each timer once");
    let times: Vec<i64> = got.iter().map(|e| e.1).collect();
    let bad: Vec<_> = times
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] > w[1])
        .take(3)
        .collect();
    assert!(
        bad.is_empty(),
        "in timestamp order: {bad:?} of {}",
        times.len()
    );
    let mut sorted = got.clone();
    sorted.sort_by_key(|&(k, t)| (t, k));
    assert_eq!(sorted, expected);
}

#[test]
fn w2_at_small_n_passes_its_check() {
    for parallelism in [1, 2] {
        for alignment in [None, Some(Duration::from_millis(500))] {
            let options = EngineOptions::for_tests(parallelism);
            let result = weir::bench::w2::run(options, 300_000, alignment).unwrap();
            assert!(
                result.passed(),
                "parallelism {parallelism}, alignment {alignment:?}: {result:?}"
            );
        }
    }
}

/// Registers a processing-time timer 30 ms after the first record of each key and
/// emits `(key, timer time, registration time, actual firing time)` when it fires;
/// notes each key whose timer it registered in `registered_keys`.
#[derive(Clone, Default)]
struct WallTimers {
    registered: Option<ValueHandle<i64>>,
    registered_keys: Arc<Mutex<BTreeSet<u64>>>,
}

impl KeyedProcess for WallTimers {
    type Key = u64;
    type In = u64;
    type Out = (u64, i64, i64, i64);
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), OperatorError> {
        self.registered = Some(ctx.value_state(StateDescriptor::new("registered"))?);
        Ok(())
    }
    fn process(
        &mut self,
        _x: u64,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<(), OperatorError> {
        let now = ctx.processing_time();
        let handle = self
            .registered
            .ok_or_else(|| OperatorError::msg("not open"))?;
        let mut state = ctx.value(handle);
        if state.value()?.is_none() {
            state.set(now)?;
            ctx.register_processing_timer(now + 30)?;
            if let Ok(mut keys) = self.registered_keys.lock() {
                keys.insert(*ctx.key());
            }
        }
        Ok(())
    }
    fn on_timer(
        &mut self,
        ts: i64,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<(), OperatorError> {
        if ctx.timer_domain() != Some(weir_actors::state::TimerDomain::ProcessingTime) {
            return Err(OperatorError::msg("expected a processing-time timer"));
        }
        let handle = self
            .registered
            .ok_or_else(|| OperatorError::msg("not open"))?;
        let registered = ctx.value(handle).value()?.unwrap_or(0);
        let key = *ctx.key();
        let now = ctx.processing_time();
        ctx.emit((key, ts, registered, now));
        Ok(())
    }
}

/// Processing time in these tests starts here (a multiple of every window size), on
/// a clock the test moves by hand.
const CLOCK_START: u64 = 1_000_000;

/// Runs `job` on a node whose processing-time clock is `clock`, on a thread of its
/// own, with `observer` called every 5 ms.
fn run_on_clock(
    job: Job,
    clock: &ManualClock,
    stop: &StopFlag,
    observer: Option<weir::job::node::Observer>,
) -> std::thread::JoinHandle<JobReport> {
    let clock: Arc<dyn weir_actors::state::Clock> = Arc::new(clock.clone());
    let control = RunControl {
        stop: Some(stop.clone()),
        observer,
        observe_every: Some(Duration::from_millis(5)),
        ..Default::default()
    };
    std::thread::spawn(move || {
        Node::new(EngineOptions::for_tests(2))
            .unwrap()
            .with_clock(clock)
            .run_with(job, control)
            .unwrap()
    })
}

#[test]
fn processing_time_timers_fire_by_the_node_clock_while_the_job_runs() {
    let clock = ManualClock::new(CLOCK_START);
    let start = CLOCK_START as i64;
    let stop = StopFlag::new();
    let fired = common::LiveSink::<(u64, i64, i64, i64)>::new();
    let timers = WallTimers::default();
    let registered = timers.registered_keys.clone();
    let job = Job::new("wall-timers")
        .source(common::Trickle { stop: stop.clone() })
        .key_by(|x: &u64| x % 4)
        .process(timers)
        .sink(fired.clone());
    let run = run_on_clock(job, &clock, &stop, None);
    common::wait_until("every key registered its timer", || {
        registered.lock().unwrap().len() == 4
    });
    // The clock has not moved: no timer is due.
    assert!(fired.items().is_empty(), "fired early: {:?}", fired.items());
    // A timer for t fires once the clock has passed t.
    clock.set(CLOCK_START + 31);
    common::wait_until("every timer fired while the job runs", || {
        fired.items().len() == 4
    });
    stop.stop();
    run.join().expect("the job ran");
    let fired = fired.items();
    assert_eq!(fired.len(), 4, "one timer per key, each once: {fired:?}");
    for (key, at, registered, actual) in &fired {
        assert_eq!(*registered, start, "key {key}");
        assert_eq!(*at, registered + 30, "key {key}");
        assert_eq!(*actual, start + 31, "key {key} fired by the clock");
    }
}

#[derive(Clone, Copy, Default)]
struct CountU64;

impl AggregateFn<u64> for CountU64 {
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

#[test]
fn processing_time_windows_fire_by_the_node_clock_and_count_every_record() {
    let clock = ManualClock::new(CLOCK_START);
    let start = CLOCK_START as i64;
    let stop = StopFlag::new();
    let source = common::Trickle { stop: stop.clone() };
    // Each result is stamped with the processing time it was emitted at.
    let rows = common::LiveSink::<(WindowResult<u64, u64>, i64)>::new();
    let stamp = clock.clone();
    let job = Job::new("wall-windows")
        .source(source)
        .key_by(|x: &u64| x % 2)
        .window(
            Tumbling::of(Duration::from_millis(100))
                .unwrap()
                .processing_time(),
        )
        .aggregate(CountU64)
        .map(move |r: WindowResult<u64, u64>| (r, stamp.now_ms() as i64))
        .sink(rows.clone());
    // Records the window stage received so far.
    let windowed = Arc::new(AtomicU64::new(0));
    let seen = windowed.clone();
    let observer: weir::job::node::Observer =
        Box::new(move |live: &weir::job::progress::LiveStats| {
            seen.store(live.records_written(), Ordering::SeqCst);
        });
    let run = run_on_clock(job, &clock, &stop, Some(observer));
    // Three windows' worth of processing time, each with records of both keys:
    // each window of both keys fires once the clock reaches its end, while the
    // job runs.
    for step in 1..=3i64 {
        let before = windowed.load(Ordering::SeqCst);
        common::wait_until("the window stage received more records", || {
            windowed.load(Ordering::SeqCst) >= before + 10
        });
        assert!(
            rows.items()
                .iter()
                .all(|(r, _)| r.window.end < start + step * 100),
            "a window fired before the clock reached its end: {:?}",
            rows.items()
        );
        clock.set(CLOCK_START + step as u64 * 100);
        common::wait_until("both keys' window fired", || {
            rows.items()
                .iter()
                .filter(|(r, _)| r.window.end == start + step * 100)
                .count()
                == 2
        });
    }
    let fired_while_running = rows.items();
    stop.stop();
    let report = run.join().expect("the job ran");
    let rows = rows.items();
    let total: u64 = rows.iter().map(|(r, _)| r.value).sum();
    assert_eq!(
        total,
        report.records_read(),
        "every record is in exactly one window"
    );
    let mut windows = BTreeSet::new();
    for (r, _) in &rows {
        assert_eq!(r.window.end - r.window.start, 100);
        assert_eq!(r.window.start.rem_euclid(100), 0);
        assert!(
            windows.insert((r.key, r.window.start)),
            "window {:?} fired twice",
            r.window
        );
        assert!(r.window.start >= start, "{r:?}");
    }
    // While the job ran, a window fired only once the clock had passed it; the
    // window still open when the input ended fired then (end of input).
    for (r, emitted) in &fired_while_running {
        assert!(*emitted > r.window.max_timestamp(), "{r:?} at {emitted}");
    }
    assert_eq!(fired_while_running.len(), 6, "{fired_while_running:?}");
    assert!(
        rows.iter().all(|(r, _)| r.window.end <= start + 400),
        "{rows:?}"
    );
}

/// A user-written trigger: fires and purges when a record with timestamp divisible by
/// 100 arrives (a "punctuation" record), and purges without firing when a window
/// grows past 1,000 records.
#[derive(Clone)]
struct Punctuation;

impl weir::window::Trigger<(u64, i64)> for Punctuation {
    fn name(&self) -> String {
        "punctuation".into()
    }
    fn on_element(
        &mut self,
        value: &(u64, i64),
        _ts: i64,
        ctx: &mut weir::window::TriggerContext,
    ) -> weir::window::TriggerResult {
        use weir::window::TriggerResult;
        if value.1 % 100 == 0 {
            TriggerResult::FireAndPurge
        } else if ctx.count() > 1_000 {
            TriggerResult::Purge
        } else {
            TriggerResult::Continue
        }
    }
}

#[test]
fn a_global_window_fires_when_a_custom_trigger_says_so() {
    // Key 0: timestamps 1..=250 -> fires at 100 (100 records) and 200 (100 records);
    // 201..=250 never fire.
    let events: Vec<(u64, i64)> = (1..=250).map(|t| (0, t)).collect();
    let rows = Rows::new();
    let job = Job::new("punctuation")
        .source(Events { events, stop: None })
        .key_by(|e: &(u64, i64)| e.0)
        .global_window(Punctuation)
        .aggregate(Count)
        .sink(rows.clone());
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    let counts: Vec<u64> = rows.items().iter().map(|r| r.value).collect();
    assert_eq!(counts, vec![100, 100]);
}

#[test]
fn a_continuous_event_time_trigger_fires_the_running_window_every_interval() {
    // Timestamps 0..1000, one key; fire every 250 ms of event time without purging:
    // the running count at 249, 499, 749 and 999.
    let events: Vec<(u64, i64)> = (0..1_000).map(|t| (0, t)).collect();
    let rows = Rows::new();
    let job = Job::new("continuous")
        .source_with_time(Events { events, stop: None }, time(0))
        .key_by(|e: &(u64, i64)| e.0)
        .global_window(weir::window::EveryEventTime::of(Duration::from_millis(250)))
        .aggregate(Count)
        .sink(rows.clone());
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    let counts: Vec<u64> = rows.items().iter().map(|r| r.value).collect();
    // The last timer (999) fires when the input ends and the watermark jumps to
    // +infinity; from there no further timer is registered, so it fires only once.
    assert_eq!(counts, vec![250, 500, 750, 1_000]);
}

/// One split (so that lateness is decided by list order), one event per round.
#[derive(Clone)]
struct OneSplit(Vec<(u64, i64)>);

impl Source for OneSplit {
    type Item = (u64, i64);
    type Reader = EventsReader;
    fn name(&self) -> String {
        "one-split".into()
    }
    fn max_parallelism(&self) -> Option<u32> {
        Some(1)
    }
    fn reader(&self, _split: u32, _splits: u32) -> Result<EventsReader, SourceError> {
        Ok(EventsReader::of(self.0.clone()))
    }
}

#[test]
fn late_records_can_be_read_as_a_stream_and_keyed_again() {
    // Keys 0..5: a full window [0, 100) each, then an event at 1000 moves the
    // watermark past it, then key k sends k + 1 late events into [0, 100).
    let mut events = Vec::new();
    for t in 0..100 {
        events.extend((0..5u64).map(|k| (k, t)));
    }
    events.push((0, 1_000));
    for k in 0..5u64 {
        events.extend((0..=k).map(|i| (k, 10 + i as i64)));
    }
    let rows = Rows::new();
    let late_counts = CountingSink::<u64, u64>::new();
    let lc = late_counts.clone();
    // Bound 1: events sharing a timestamp (one per key) are not late to each other.
    let windowed = Job::new("late-stream")
        .source_with_time(OneSplit(events), time(1))
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .late_stream(move |late| {
            late.map(|(key, _event): (u64, (u64, i64))| (key, 1u64))
                .group_by_key()
                .reduce(|a, b| a + b)
                .sink(lc)
        });
    let late = windowed.late_records();
    let job = windowed.aggregate(Count).sink(rows.clone());
    let names = job.stage_names();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names[2].starts_with("late-data -> map -> key_by"),
        "{names:?}"
    );
    let report = Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();

    // The late branch: each key's late events counted, through its own keyed stage.
    let got: BTreeMap<u64, u64> = late_counts.result().last.into_iter().collect();
    let expected: BTreeMap<u64, u64> = (0..5).map(|k| (k, k + 1)).collect();
    assert_eq!(got, expected);
    assert_eq!(late.load(Ordering::Relaxed), 15);
    // The main results do not change: 100 per key in [0, 100), and key 0 at 1000.
    let mut main: Vec<(u64, i64, u64)> = rows
        .items()
        .iter()
        .map(|r| (r.key, r.window.start, r.value))
        .collect();
    main.sort();
    let mut want: Vec<(u64, i64, u64)> = (0..5).map(|k| (k, 0, 100)).collect();
    want.push((0, 1_000, 1));
    want.sort();
    assert_eq!(main, want);
    // Every stage, branch included, is in the report.
    assert_eq!(
        report.stages.len(),
        4,
        "{:?}",
        report.stages.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

#[test]
fn a_window_reduce_keeps_the_reduced_value_per_window() {
    // The latest event of each key in each 100 ms window.
    let events: Vec<(u64, i64)> = disorder((0..1_000).map(|t| (t as u64 % 3, t)).collect(), 5);
    let rows = CollectSink::<WindowResult<u64, Option<(u64, i64)>>>::new();
    let job = Job::new("reduce")
        .source_with_time(
            Events {
                events: events.clone(),
                stop: None,
            },
            time(20),
        )
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .reduce(|a: (u64, i64), b: (u64, i64)| if a.1 >= b.1 { a } else { b })
        .sink(rows.clone());
    Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();
    let mut expected: BTreeMap<(u64, i64), i64> = BTreeMap::new();
    for &(k, t) in &events {
        let slot = expected.entry((k, t - t % 100)).or_insert(i64::MIN);
        *slot = (*slot).max(t);
    }
    let got: BTreeMap<(u64, i64), i64> = rows
        .items()
        .iter()
        .map(|r| ((r.key, r.window.start), r.value.map_or(i64::MIN, |v| v.1)))
        .collect();
    assert_eq!(got, expected);
}

/// Two splits at very different speeds: split 0 reads 64 records per round at once,
/// split 1 sleeps 2 ms per round of 16. Records are `(split, event time)`, the event
/// time counting up by 1 ms per record in each split.
#[derive(Clone)]
struct Lopsided {
    per_split: i64,
}

struct LopsidedReader {
    split: u32,
    next: i64,
    end: i64,
}

impl Source for Lopsided {
    type Item = (u32, i64);
    type Reader = LopsidedReader;
    fn name(&self) -> String {
        "lopsided".into()
    }
    fn splits(&self, _parallelism: u32) -> u32 {
        2
    }
    fn reader(&self, split: u32, _splits: u32) -> Result<LopsidedReader, SourceError> {
        Ok(LopsidedReader {
            split,
            next: 0,
            end: self.per_split,
        })
    }
}

impl SourceReader for LopsidedReader {
    type Item = (u32, i64);
    fn read<C: Collector<(u32, i64)>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        let round = if self.split == 0 {
            budget
        } else {
            budget.min(16)
        };
        for _ in 0..round {
            if self.next == self.end {
                return Ok(ReadStatus::Exhausted);
            }
            out.collect((self.split, self.next));
            self.next += 1;
        }
        if self.split == 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(ReadStatus::More)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(weir::connector::source::counter_position(self.next as u64))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let next = weir::connector::source::decode_counter_position("lopsided", position)?;
        self.next = i64::try_from(next)
            .map_err(|_| SourceError::Invalid(format!("lopsided: position {next} out of range")))?;
        Ok(())
    }
}

/// The largest lead in event time of one split over the other seen while the
/// source stage ran, and the job's per-split counts.
fn lopsided_run(alignment: Option<Duration>) -> (i64, Vec<(u32, u64)>) {
    use std::sync::atomic::AtomicI64;
    use std::sync::Arc;
    let seen: Arc<[AtomicI64; 2]> = Arc::new([AtomicI64::new(-1), AtomicI64::new(-1)]);
    let lead = Arc::new(AtomicI64::new(0));
    let (seen_in, lead_in) = (seen.clone(), lead.clone());
    let mut time = WatermarkStrategy::ascending(|r: &(u32, i64)| r.1);
    if let Some(drift) = alignment {
        time = time.with_alignment(drift);
    }
    let sink = CountingSink::new();
    let job = Job::new("lopsided")
        .source_with_time(Lopsided { per_split: 12_000 }, time)
        .map(move |(split, ts): (u32, i64)| {
            seen_in[split as usize].fetch_max(ts, Ordering::Relaxed);
            let other = seen_in[1 - split as usize].load(Ordering::Relaxed);
            if (0..11_999).contains(&other) {
                lead_in.fetch_max(ts - other, Ordering::Relaxed);
            }
            (split, 1u64)
        })
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(sink.clone());
    Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();
    let mut counts: Vec<(u32, u64)> = sink.result().last.into_iter().collect();
    counts.sort();
    (lead.load(Ordering::Relaxed), counts)
}

#[test]
fn watermark_alignment_keeps_a_fast_split_near_the_slow_one_without_changing_results() {
    let (free_lead, free) = lopsided_run(None);
    let (aligned_lead, aligned) = lopsided_run(Some(Duration::from_millis(200)));
    assert_eq!(free, vec![(0, 12_000), (1, 12_000)]);
    assert_eq!(
        aligned, free,
        "alignment changes when splits are read, not what"
    );
    // Unaligned, the fast split finishes while the slow one is near its start.
    assert!(free_lead > 5_000, "unaligned lead {free_lead} ms");
    // Aligned, it leads by at most the drift plus one read round (64 records).
    assert!(
        aligned_lead <= 200 + 64 + 16,
        "aligned lead {aligned_lead} ms"
    );
}

#[test]
fn aligned_sources_resume_after_a_restart_from_a_checkpoint() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    // Restored splits start with watermarks; every actor must still get to read.
    let root = tempfile::tempdir().unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let fail = failed.clone();
    let time = WatermarkStrategy::ascending(|r: &(u32, i64)| r.1)
        .with_alignment(Duration::from_millis(200));
    let sink = CountingSink::new();
    let job = Job::new("aligned-restart")
        .source_with_time(Lopsided { per_split: 6_000 }, time)
        .map(move |(split, ts): (u32, i64)| {
            if split == 1 && ts == 4_000 && !fail.swap(true, Ordering::Relaxed) {
                panic!("injected fault at event time {ts}");
            }
            (split, 1u64)
        })
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(sink.clone());
    let mut options = EngineOptions::for_tests(2);
    options.state_dir = Some(root.path().to_path_buf());
    options.checkpoint.interval = Some(Duration::from_millis(50));
    options.restart = RestartStrategy::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(5),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let report = Node::new(options).and_then(|node| node.run(job));
        let _ = tx.send(report.map(|r| (r.restarts, r.restored_from)));
    });
    let (restarts, restored) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the job finishes (aligned sources must not wait on each other forever)")
        .expect("the job succeeds");
    assert_eq!(restarts, 1, "the injected fault restarted the job once");
    assert!(restored.is_some(), "the restart resumed from a checkpoint");
    let mut counts: Vec<(u32, u64)> = sink.result().last.into_iter().collect();
    counts.sort();
    assert_eq!(counts, vec![(0, 6_000), (1, 6_000)]);
}
