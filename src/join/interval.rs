//! The interval join: pairs `(l, r)` of a key with `l.ts + lower <= r.ts <= l.ts +
//! upper`, emitted as soon as the second of the two arrives.
//!
//! Each side's records are buffered in a map from timestamp to the records of that
//! timestamp. An arriving record is matched against the other side's buffer, then
//! buffered itself unless the watermark already makes it unmatchable. A buffered
//! left record can meet only right records up to `l.ts + upper`, and every right
//! record still to come is later than the watermark, so the left record is dropped
//! once the watermark reaches `l.ts + upper`; a right record once it reaches
//! `r.ts - lower`. One event-time timer per such instant drops the bucket(s) due
//! then, so cleaning up costs one map removal per bucket, not a scan.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use weir_actors::state::{MapHandle, StateDescriptor, StateValue, TimerDomain};

use crate::operator::{
    Collector, Either, Key, KeyedContext, KeyedProcess, OpenContext, OperatorError,
};
use crate::window::operator::LateOutput;

use super::{event_time, opened, JoinError, Joined};

/// Names the join's error messages.
const WHAT: &str = "interval join";

/// The keyed state of an interval join, registered in `open`.
struct Handles<L, R> {
    /// Buffered left records by timestamp.
    left: MapHandle<i64, Vec<L>>,
    /// Buffered right records by timestamp.
    right: MapHandle<i64, Vec<R>>,
}

impl<L, R> Clone for Handles<L, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L, R> Copy for Handles<L, R> {}

/// Joins each left record `l` with every right record `r` of the same key whose
/// timestamp lies in `[l.ts + lower, l.ts + upper]` (bounds inclusive, either may be
/// negative), as Flink's `IntervalJoin`. Each pair is emitted once, when the second
/// of its two records arrives, with timestamp `max(l.ts, r.ts)` (which is never behind
/// the watermark).
///
/// A record at or behind the watermark is late: it goes to the join's late output
/// (see the [module docs](super)) and is not joined.
pub struct IntervalJoin<K, L, R> {
    lower: i64,
    upper: i64,
    late: LateOutput<K, Either<L, R>>,
    handles: Option<Handles<L, R>>,
}

impl<K, L, R> Clone for IntervalJoin<K, L, R> {
    fn clone(&self) -> Self {
        IntervalJoin {
            lower: self.lower,
            upper: self.upper,
            late: self.late.clone(),
            handles: self.handles,
        }
    }
}

impl<K, L, R> IntervalJoin<K, L, R>
where
    K: Key,
    L: StateValue + Unpin,
    R: StateValue + Unpin,
{
    /// An interval join with bounds `lower` and `upper` in ms: `l` meets `r` when
    /// `l.ts + lower <= r.ts <= l.ts + upper`. Fails if `lower > upper`. Late records
    /// are counted and logged until [`late_output`](Self::late_output) says otherwise.
    pub fn new(lower: i64, upper: i64) -> Result<Self, JoinError> {
        if lower > upper {
            return Err(JoinError::ReversedBounds { lower, upper });
        }
        Ok(IntervalJoin {
            lower,
            upper,
            late: LateOutput::counted(Arc::new(AtomicU64::new(0))),
            handles: None,
        })
    }

    /// Sends late records to `late` (the stage's side output, a sink, or the log),
    /// counted by its counter.
    pub fn late_output(mut self, late: LateOutput<K, Either<L, R>>) -> Self {
        self.late = late;
        self
    }

    /// How many records arrived at or behind the watermark (shared by the copies
    /// running in every partition).
    pub fn late_records(&self) -> Arc<AtomicU64> {
        self.late.counter()
    }

    /// The bounds, in ms.
    pub fn bounds(&self) -> (i64, i64) {
        (self.lower, self.upper)
    }
}

/// `ts + offset`, computed exactly and saturated into `i64`.
fn shifted(ts: i64, offset: i128) -> i64 {
    let exact = i128::from(ts) + offset;
    i64::try_from(exact).unwrap_or(if exact < 0 { i64::MIN } else { i64::MAX })
}

/// Whether `ts` lies in `[from + lower, from + upper]`, computed without overflow.
fn within(ts: i64, from: i64, lower: i64, upper: i64) -> bool {
    let (ts, from) = (i128::from(ts), i128::from(from));
    from + i128::from(lower) <= ts && ts <= from + i128::from(upper)
}

/// Appends `value` to the bucket of `ts` in `buffer`.
fn buffer<K: Key, O, T: StateValue>(
    ctx: &mut KeyedContext<'_, K, O>,
    buffer: MapHandle<i64, Vec<T>>,
    ts: i64,
    value: T,
) -> Result<(), OperatorError> {
    let mut map = ctx.map(buffer);
    let mut bucket = map.get(&ts)?.unwrap_or_default();
    bucket.push(value);
    map.insert(ts, bucket)?;
    Ok(())
}

impl<K, L, R> KeyedProcess for IntervalJoin<K, L, R>
where
    K: Key,
    L: StateValue + Unpin,
    R: StateValue + Unpin,
{
    type Key = K;
    type In = Either<L, R>;
    type Out = Joined<K, L, R>;

    fn name(&self) -> String {
        format!("interval-join[{}, {}]", self.lower, self.upper)
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        self.handles = Some(Handles {
            left: ctx.map_state(StateDescriptor::new("interval-join-left"))?,
            right: ctx.map_state(StateDescriptor::new("interval-join-right"))?,
        });
        self.late.open(ctx)
    }

    fn process(
        &mut self,
        value: Either<L, R>,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let handles = opened(&self.handles, WHAT)?;
        let ts = event_time(ctx.timestamp(), WHAT)?;
        let watermark = ctx.current_watermark();
        if ts <= watermark {
            let key = ctx.key().clone();
            return self.late.send(key, value, ts, watermark, ctx);
        }
        let key = ctx.key().clone();
        let (lower, upper) = (self.lower, self.upper);
        match value {
            Either::Left(l) => {
                let mut rights = ctx.map(handles.right).entries()?;
                rights.sort_unstable_by_key(|(rts, _)| *rts);
                for (rts, bucket) in rights {
                    if within(rts, ts, lower, upper) {
                        for r in bucket {
                            let pair = Joined {
                                key: key.clone(),
                                left: l.clone(),
                                right: r,
                            };
                            ctx.emit_at(pair, ts.max(rts));
                        }
                    }
                }
                let cleanup = shifted(ts, i128::from(upper));
                if cleanup > watermark {
                    buffer(ctx, handles.left, ts, l)?;
                    ctx.register_event_timer(cleanup)?;
                }
            }
            Either::Right(r) => {
                let mut lefts = ctx.map(handles.left).entries()?;
                lefts.sort_unstable_by_key(|(lts, _)| *lts);
                for (lts, bucket) in lefts {
                    if within(ts, lts, lower, upper) {
                        for l in bucket {
                            let pair = Joined {
                                key: key.clone(),
                                left: l,
                                right: r.clone(),
                            };
                            ctx.emit_at(pair, ts.max(lts));
                        }
                    }
                }
                let cleanup = shifted(ts, -i128::from(lower));
                if cleanup > watermark {
                    buffer(ctx, handles.right, ts, r)?;
                    ctx.register_event_timer(cleanup)?;
                }
            }
        }
        Ok(())
    }

    /// Drops the buckets that became unmatchable at `timestamp`: the left one at
    /// `timestamp - upper` and the right one at `timestamp + lower` (whichever
    /// registered the timer, the other is due too). At the end of time, everything.
    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        if ctx.timer_domain() != Some(TimerDomain::EventTime) {
            return Ok(());
        }
        let handles = opened(&self.handles, WHAT)?;
        if timestamp == i64::MAX {
            // Cleanup instants that saturated land here: nothing can match any more.
            ctx.map(handles.left).clear()?;
            ctx.map(handles.right).clear()?;
            return Ok(());
        }
        if let Some(lts) = timestamp.checked_sub(self.upper) {
            ctx.map(handles.left).remove(&lts)?;
        }
        if let Some(rts) = timestamp.checked_add(self.lower) {
            ctx.map(handles.right).remove(&rts)?;
        }
        Ok(())
    }

    fn close(&mut self, _out: &mut dyn Collector<Self::Out>) -> Result<(), OperatorError> {
        self.late.close()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::operator::harness::{HarnessOptions, OperatorHarness};

    type Join = IntervalJoin<u8, u32, u32>;

    fn harness(join: Join) -> OperatorHarness<Join> {
        OperatorHarness::with_options(
            join,
            HarnessOptions {
                side_output: true,
                ..HarnessOptions::default()
            },
        )
        .unwrap()
    }

    fn pair(left: u32, right: u32) -> Joined<u8, u32, u32> {
        Joined {
            key: 1,
            left,
            right,
        }
    }

    #[test]
    fn bounds_are_inclusive_and_the_timestamp_is_the_later_one() {
        let mut h = harness(Join::new(-2, 3).unwrap());
        h.process_element(1, Either::Left(100), 10).unwrap();
        for rts in [7, 8, 13, 14] {
            h.process_element(1, Either::Right(rts as u32), rts)
                .unwrap();
        }
        h.process_element(2, Either::Right(99), 10).unwrap(); // other key
        h.end_input().unwrap();
        assert_eq!(
            h.take_output(),
            vec![(10, pair(100, 8)), (13, pair(100, 13))]
        );
    }

    #[test]
    fn negative_bounds_join_only_earlier_right_records() {
        // r.ts in [l.ts - 10, l.ts - 5].
        let mut h = harness(Join::new(-10, -5).unwrap());
        h.process_element(1, Either::Right(1), 1).unwrap();
        h.process_element(1, Either::Right(4), 4).unwrap();
        h.process_element(1, Either::Right(9), 9).unwrap();
        h.process_watermark(3).unwrap();
        h.process_element(1, Either::Left(100), 11).unwrap();
        h.process_element(1, Either::Left(200), 14).unwrap();
        assert_eq!(
            h.take_output(),
            vec![
                (11, pair(100, 1)),
                (11, pair(100, 4)),
                (14, pair(200, 4)),
                (14, pair(200, 9))
            ]
        );
        // r.ts - lower = r + 10: right 1 is unmatchable once the watermark is 11.
        h.process_watermark(11).unwrap();
        h.process_element(1, Either::Left(300), 12).unwrap(); // would want right 2..7
        assert_eq!(h.take_output(), vec![(12, pair(300, 4))]);
        // Left 300 was not even buffered: 12 + upper is behind the watermark.
        h.process_watermark(19).unwrap();
        assert_eq!(h.state_entries().unwrap(), 0, "everything was cleaned up");
        assert_eq!(h.pending_timers(), 0);
    }

    #[test]
    fn positive_bounds_join_only_later_right_records() {
        let mut h = harness(Join::new(5, 10).unwrap());
        h.process_element(1, Either::Left(100), 0).unwrap();
        h.process_element(1, Either::Right(4), 4).unwrap();
        h.process_element(1, Either::Right(5), 5).unwrap();
        h.process_element(1, Either::Right(10), 10).unwrap();
        h.process_element(1, Either::Right(11), 11).unwrap();
        h.end_input().unwrap();
        assert_eq!(
            h.take_output(),
            vec![(5, pair(100, 5)), (10, pair(100, 10))]
        );
    }

    #[test]
    fn buffers_are_cleaned_up_when_the_watermark_makes_rows_unmatchable() {
        let mut h = harness(Join::new(-1, 1).unwrap());
        h.process_element(1, Either::Left(1), 10).unwrap();
        h.process_element(1, Either::Right(2), 20).unwrap();
        assert!(h.state_entries().unwrap() > 0);
        h.process_watermark(11).unwrap(); // left 10 + 1
        h.process_watermark(21).unwrap(); // right 20 - (-1)
        assert_eq!(h.state_entries().unwrap(), 0);
        assert_eq!(h.pending_timers(), 0);
    }

    #[test]
    fn a_row_is_kept_until_the_watermark_reaches_its_last_possible_match() {
        let mut h = harness(Join::new(0, 5).unwrap());
        h.process_element(1, Either::Left(1), 0).unwrap(); // meets rights 0..=5
        h.process_element(1, Either::Right(2), 10).unwrap(); // meets lefts 5..=10
        h.process_watermark(4).unwrap();
        h.process_element(1, Either::Right(3), 5).unwrap(); // right on the edge
        h.process_watermark(9).unwrap();
        h.process_element(1, Either::Left(4), 10).unwrap(); // right on the other edge
        assert_eq!(h.take_output(), vec![(5, pair(1, 3)), (10, pair(4, 2))]);
    }

    #[test]
    fn late_records_go_to_the_side_output_unjoined() {
        let count = Arc::new(AtomicU64::new(0));
        let join = Join::new(-5, 5)
            .unwrap()
            .late_output(LateOutput::to_side_output(count.clone()));
        let mut h = harness(join);
        h.process_element(1, Either::Left(1), 10).unwrap();
        h.process_watermark(10).unwrap();
        h.process_element(1, Either::Right(2), 10).unwrap(); // at the watermark: late
        h.process_element(1, Either::Right(3), 11).unwrap();
        assert_eq!(h.take_output(), vec![(11, pair(1, 3))]);
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert_eq!(
            h.take_side_output::<(u8, Either<u32, u32>)>().unwrap(),
            vec![(1, Either::Right(2))]
        );
    }

    #[test]
    fn extreme_timestamps_and_bounds_neither_overflow_nor_leak() {
        // r.ts in [l.ts + i64::MIN, l.ts + i64::MAX], computed without overflow.
        let mut h = harness(Join::new(i64::MIN, i64::MAX).unwrap());
        h.process_element(1, Either::Left(1), i64::MAX - 1).unwrap();
        h.process_element(1, Either::Right(2), i64::MIN + 1)
            .unwrap(); // before 1's reach
        h.process_element(1, Either::Left(3), 0).unwrap();
        h.process_element(1, Either::Right(4), i64::MAX - 1)
            .unwrap();
        h.end_input().unwrap();
        assert_eq!(
            h.take_output(),
            vec![
                (0, pair(3, 2)),
                (i64::MAX - 1, pair(3, 4)),
                (i64::MAX - 1, pair(1, 4)),
            ]
        );
        assert_eq!(h.state_entries().unwrap(), 0);
        assert_eq!(h.pending_timers(), 0);
    }

    #[test]
    fn reversed_bounds_are_refused() {
        assert_eq!(
            Join::new(3, 2).err(),
            Some(JoinError::ReversedBounds { lower: 3, upper: 2 })
        );
    }
}
