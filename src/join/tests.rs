//! Property tests: each join, run in the operator harness on random keyed streams of
//! both sides (bounded disorder, random interleaving, random watermarks that lag the
//! highest timestamp by the disorder bound, so nothing is late), outputs the same
//! multiset as the reference join of [`super::reference`]; and a run snapshotted and
//! restored in the middle (into one harness, or two that split the key partitions as
//! a rescaled stage would) outputs the same as one without.

use std::time::Duration;

use proptest::prelude::*;

use crate::operator::harness::{HarnessOptions, OperatorHarness};
use crate::operator::{Either, KeyedProcess};
use crate::partition::{key_partition, owned_range};
use crate::window::{Session, Sliding, Tumbling, WindowAssigner};

use super::reference::{self, Arrival};
use super::{InnerJoin, IntervalJoin, LeftJoin, WindowJoin};

type Input = Arrival<u8, u32, u32>;

/// One thing the harness is told.
#[derive(Debug, Clone)]
enum Step {
    /// Record `.0` of the input arrives.
    Record(usize),
    /// The watermark advances.
    Watermark(i64),
}

/// A random input and the order of steps that delivers it.
#[derive(Debug, Clone)]
struct Script {
    input: Vec<Input>,
    steps: Vec<Step>,
}

/// Which watermark follows a record, if any.
#[derive(Debug, Clone, Copy)]
enum Mark {
    /// None.
    None,
    /// The highest timestamp so far less the disorder bound, less one: what a
    /// bounded-disorder watermark strategy sends.
    Lagging,
    /// Just below the lowest timestamp still to come: the highest watermark that
    /// leaves nothing late, so the next record may sit right on it (where a join's
    /// off-by-one in its cleanup or firing would show).
    Tight,
}

/// Per record: left or right, key, how far time advances before it, how far its
/// timestamp lags that time, how far processing time advances, which watermark
/// follows.
type RawRecord = (bool, u8, i64, i64, u64, Mark);

/// Random scripts: up to `max_len` records of two keys, timestamps from around zero
/// (negative ones too), disorder up to `max_disorder`.
fn scripts(max_len: usize, max_disorder: i64) -> impl Strategy<Value = Script> {
    let record = (
        any::<bool>(),
        0u8..2,
        0i64..5,
        // A third of the records lag by the most the disorder allows, a third not
        // at all.
        prop_oneof![Just(i64::MAX), Just(0), 0i64..=max_disorder],
        0u64..6,
        prop_oneof![
            4 => Just(Mark::None),
            1 => Just(Mark::Lagging),
            1 => Just(Mark::Tight),
        ],
    );
    (
        -50i64..50,
        0..=max_disorder,
        prop::collection::vec(record, 0..max_len),
    )
        .prop_map(|(start, disorder, records)| build(start, disorder, records))
}

fn build(start: i64, disorder: i64, records: Vec<RawRecord>) -> Script {
    let (mut time, mut processing_time) = (start, 1_000u64);
    let mut input = Vec::with_capacity(records.len());
    for (i, &(is_left, key, advance, lag, tick, _)) in records.iter().enumerate() {
        time += advance;
        processing_time += tick;
        // The lag is cut to the disorder bound: a record is never more than
        // `disorder` behind the latest time, so never behind a lagging watermark.
        let id = i as u32;
        input.push(Arrival {
            key,
            ts: time - lag.min(disorder),
            processing_time,
            value: if is_left {
                Either::Left(id)
            } else {
                Either::Right(id)
            },
        });
    }
    // The lowest timestamp after each record (i64::MAX after the last).
    let mut lowest_after = vec![i64::MAX; input.len()];
    for i in (0..input.len().saturating_sub(1)).rev() {
        lowest_after[i] = lowest_after[i + 1].min(input[i + 1].ts);
    }
    let mut steps = Vec::new();
    let mut max_ts = i64::MIN;
    for (i, &(.., mark)) in records.iter().enumerate() {
        max_ts = max_ts.max(input[i].ts);
        steps.push(Step::Record(i));
        let lagging = max_ts - disorder - 1;
        match mark {
            Mark::None => {}
            Mark::Lagging => steps.push(Step::Watermark(lagging)),
            Mark::Tight => steps.push(Step::Watermark(lagging.max(lowest_after[i] - 1))),
        }
    }
    Script { input, steps }
}

/// The script with every watermark `by` lower. Sessions need one more millisecond
/// than the disorder bound: a session fires when the watermark reaches its last
/// instant (`end - 1`, as in the window operator and Flink), and a record at exactly
/// `end` would still have touched, so merged with, it (see the window join's docs).
fn lower_watermarks(script: &Script, by: i64) -> Script {
    let steps = script
        .steps
        .iter()
        .map(|step| match step {
            Step::Watermark(w) => Step::Watermark(w - by),
            record => record.clone(),
        })
        .collect();
    Script {
        input: script.input.clone(),
        steps,
    }
}

/// Feeds `steps` of `script` to `harness` (moving its clock to each record's
/// processing time first) and returns what it emitted.
fn feed<P>(harness: &mut OperatorHarness<P>, script: &Script, steps: &[Step])
where
    P: KeyedProcess<Key = u8, In = Either<u32, u32>>,
    P::Out: Send,
{
    for step in steps {
        match step {
            Step::Record(i) => {
                let arrival = &script.input[*i];
                harness
                    .set_processing_time(arrival.processing_time)
                    .unwrap();
                harness
                    .process_element(arrival.key, arrival.value.clone(), arrival.ts)
                    .unwrap();
            }
            Step::Watermark(w) => harness.process_watermark(*w).unwrap(),
        }
    }
}

/// Runs `join` over the whole script, to the end of input; the output sorted.
fn run<P>(join: P, script: &Script) -> Vec<(i64, P::Out)>
where
    P: KeyedProcess<Key = u8, In = Either<u32, u32>>,
    P::Out: Send + Ord,
{
    run_checked(join, script).0
}

/// Like [`run`], also saying whether the join left any state or timer behind.
fn run_checked<P>(join: P, script: &Script) -> (Vec<(i64, P::Out)>, bool)
where
    P: KeyedProcess<Key = u8, In = Either<u32, u32>>,
    P::Out: Send + Ord,
{
    let mut harness = OperatorHarness::new(join).unwrap();
    feed(&mut harness, script, &script.steps);
    harness.end_input().unwrap();
    let clean = harness.state_entries().unwrap() == 0 && harness.pending_timers() == 0;
    (sorted(harness.take_output()), clean)
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

/// Which windows a window-join test uses.
#[derive(Debug, Clone)]
enum Windows {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

fn windows() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (1i64..20).prop_map(Windows::Tumbling),
        (1i64..20)
            .prop_flat_map(|size| (Just(size), 1..=size))
            .prop_map(|(size, slide)| Windows::Sliding(size, slide)),
        (1i64..10).prop_map(Windows::Session),
    ]
}

fn check_window_join<A: WindowAssigner>(assigner: A, script: &Script) -> Result<(), TestCaseError> {
    let expected = sorted(reference::window_join(&assigner, &script.input));
    let (actual, clean) = run_checked(WindowJoin::new(assigner).unwrap(), script);
    prop_assert_eq!(actual, expected);
    prop_assert!(clean, "every window fired, so no state is left");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_window_join_outputs_what_the_reference_does(
        windows in windows(),
        script in scripts(40, 8),
    ) {
        match windows {
            Windows::Tumbling(size) => check_window_join(Tumbling::of_millis(size).unwrap(), &script)?,
            Windows::Sliding(size, slide) => {
                check_window_join(Sliding::of_millis(size, slide).unwrap(), &script)?
            }
            Windows::Session(gap) => {
                check_window_join(Session::with_gap_millis(gap).unwrap(), &lower_watermarks(&script, 1))?
            }
        }
    }

    #[test]
    fn the_interval_join_outputs_what_the_reference_does(
        (lower, upper) in (-15i64..15).prop_flat_map(|lower| (Just(lower), lower..20)),
        script in scripts(40, 8),
    ) {
        let expected = sorted(reference::interval_join(lower, upper, &script.input));
        let (actual, clean) = run_checked(IntervalJoin::new(lower, upper).unwrap(), &script);
        prop_assert_eq!(actual, expected);
        prop_assert!(clean, "at the end of time every row is unmatchable, so gone");
    }

    #[test]
    fn the_inner_join_outputs_what_the_reference_does(
        ttl in prop::option::of(1u64..15),
        script in scripts(40, 8),
    ) {
        let expected = sorted(reference::inner_join(ttl, &script.input));
        let mut join = InnerJoin::new();
        if let Some(ttl) = ttl {
            join = join.with_ttl(Duration::from_millis(ttl)).unwrap();
        }
        prop_assert_eq!(run(join, &script), expected);
    }

    #[test]
    fn the_left_join_outputs_what_the_reference_does(
        ttl in prop::option::of(1u64..15),
        script in scripts(40, 8),
    ) {
        let expected = sorted(reference::left_join(ttl, &script.input));
        let mut join = LeftJoin::new();
        if let Some(ttl) = ttl {
            join = join.with_ttl(Duration::from_millis(ttl)).unwrap();
        }
        prop_assert_eq!(run(join, &script), expected);
    }
}

/// Key partitions of the restore tests: few, so that two harnesses each get keys.
const KEY_PARTITIONS: u32 = 4;

/// Runs `join` over the script with a snapshot after `cut` steps, restored into
/// `restore_into` harnesses that split the key partitions between them (each record
/// goes to the one owning its key, every watermark to all); the output of the run
/// before the snapshot and of the restored ones after it, sorted.
fn run_restored<P>(join: P, script: &Script, cut: usize, restore_into: u32) -> Vec<(i64, P::Out)>
where
    P: KeyedProcess<Key = u8, In = Either<u32, u32>>,
    P::Out: Send + Ord,
{
    let options = HarnessOptions {
        key_partitions: KEY_PARTITIONS,
        ..HarnessOptions::default()
    };
    let mut first = OperatorHarness::with_options(join.clone(), options.clone()).unwrap();
    let cut = cut.min(script.steps.len());
    feed(&mut first, script, &script.steps[..cut]);
    let mut out = first.take_output();
    let snapshot = first.snapshot().unwrap();
    drop(first);
    let mut restored: Vec<_> = (0..restore_into)
        .map(|i| {
            let owned = owned_range(i, KEY_PARTITIONS, restore_into);
            let options = HarnessOptions {
                owned: Some(owned.clone()),
                ..options.clone()
            };
            let harness =
                OperatorHarness::restore_with_options(join.clone(), &snapshot, options).unwrap();
            (owned, harness)
        })
        .collect();
    for step in &script.steps[cut..] {
        for (owned, harness) in &mut restored {
            let mine = match step {
                Step::Record(i) => {
                    owned.contains(&key_partition(&script.input[*i].key, KEY_PARTITIONS).unwrap())
                }
                Step::Watermark(_) => true,
            };
            if mine {
                feed(harness, script, std::slice::from_ref(step));
            }
        }
    }
    for (_, harness) in &mut restored {
        // Processing time goes on to the last arrival's everywhere, as one clock.
        if let Some(last) = script.input.last() {
            harness.set_processing_time(last.processing_time).unwrap();
        }
        harness.end_input().unwrap();
        out.extend(harness.take_output());
    }
    sorted(out)
}

/// Which join a restore test runs.
#[derive(Debug, Clone)]
enum AnyJoin {
    Window(Windows),
    Interval(i64, i64),
    Inner(Option<u64>),
    Left(Option<u64>),
}

fn any_join() -> impl Strategy<Value = AnyJoin> {
    prop_oneof![
        windows().prop_map(AnyJoin::Window),
        (-10i64..10)
            .prop_flat_map(|lower| (Just(lower), lower..15))
            .prop_map(|(lower, upper)| AnyJoin::Interval(lower, upper)),
        prop::option::of(1u64..15).prop_map(AnyJoin::Inner),
        prop::option::of(1u64..15).prop_map(AnyJoin::Left),
    ]
}

/// Checks that a snapshot and restore after `cut` steps changes nothing.
fn check_restore<P>(join: P, script: &Script, cut: usize, into: u32) -> Result<(), TestCaseError>
where
    P: KeyedProcess<Key = u8, In = Either<u32, u32>>,
    P::Out: Send + Ord + std::fmt::Debug,
{
    let uninterrupted = run(join.clone(), script);
    let restored = run_restored(join, script, cut, into);
    prop_assert_eq!(restored, uninterrupted);
    Ok(())
}

fn check_window_restore<A: WindowAssigner>(
    assigner: A,
    script: &Script,
    cut: usize,
    into: u32,
) -> Result<(), TestCaseError> {
    check_restore(
        WindowJoin::<u8, u32, u32, A>::new(assigner).unwrap(),
        script,
        cut,
        into,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_snapshot_and_restore_midway_changes_no_join_output(
        join in any_join(),
        script in scripts(30, 6),
        cut in 0usize..40,
        into in 1u32..=2,
    ) {
        match join {
            AnyJoin::Window(Windows::Tumbling(size)) => {
                check_window_restore(Tumbling::of_millis(size).unwrap(), &script, cut, into)?
            }
            AnyJoin::Window(Windows::Sliding(size, slide)) => {
                check_window_restore(Sliding::of_millis(size, slide).unwrap(), &script, cut, into)?
            }
            AnyJoin::Window(Windows::Session(gap)) => {
                let script = lower_watermarks(&script, 1);
                check_window_restore(Session::with_gap_millis(gap).unwrap(), &script, cut, into)?
            }
            AnyJoin::Interval(lower, upper) => check_restore(
                IntervalJoin::<u8, u32, u32>::new(lower, upper).unwrap(),
                &script,
                cut,
                into,
            )?,
            AnyJoin::Inner(ttl) => {
                let mut join = InnerJoin::<u8, u32, u32>::new();
                if let Some(ttl) = ttl {
                    join = join.with_ttl(Duration::from_millis(ttl)).unwrap();
                }
                check_restore(join, &script, cut, into)?
            }
            AnyJoin::Left(ttl) => {
                let mut join = LeftJoin::<u8, u32, u32>::new();
                if let Some(ttl) = ttl {
                    join = join.with_ttl(Duration::from_millis(ttl)).unwrap();
                }
                check_restore(join, &script, cut, into)?
            }
        }
    }
}
