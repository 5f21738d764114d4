//! The window join: every pair of a key's left and right records that fall in the
//! same event-time window, emitted when the watermark passes the window's end.
//!
//! Each record is stored once, in a map keyed by `(timestamp, sequence number)`, and
//! not once per window: a window's records are those whose timestamp it contains, so
//! a sliding window needs no copies, and merging two sessions moves no record (only
//! the key's [`MergedWindows`] and the timers change, as in the window operator).
//! When a window fires, its pairs are emitted and the records that belong to no
//! window still to fire are removed; once a key holds no record, its sequence counter
//! goes too, so a key leaves no state behind.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use weir_actors::state::{MapHandle, StateDescriptor, StateValue, TimerDomain, ValueHandle};

use crate::operator::{
    Collector, Either, Key, KeyedContext, KeyedProcess, OpenContext, OperatorError,
};
use crate::window::operator::LateOutput;
use crate::window::{MergedWindows, TimeDomain, TimeWindow, WindowAssigner};

use super::{event_time, next_row_id, opened, JoinError, Joined};

/// Names the join's error messages.
const WHAT: &str = "window join";

/// Where a stored record sits: its timestamp, then its sequence number within the key
/// (so records with equal timestamps stay apart, in arrival order).
type RowId = (i64, u64);

/// The keyed state of a window join, registered in `open`.
struct Handles<L, R> {
    /// Every record not yet fired for all its windows.
    rows: MapHandle<RowId, Either<L, R>>,
    /// The next sequence number of the key.
    next_row: ValueHandle<u64>,
    /// The key's sessions (merging assigners only).
    sessions: Option<ValueHandle<MergedWindows>>,
}

impl<L, R> Clone for Handles<L, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L, R> Copy for Handles<L, R> {}

/// Joins a key's left and right records that fall in the same event-time window
/// (Flink's window join): for each key and window, every pair `(l, r)` of the
/// window's left and right records, emitted when the watermark passes the window's
/// end, with the window's last instant ([`TimeWindow::max_timestamp`]) as timestamp.
/// The window's state is then dropped.
///
/// Windows come from a [`WindowAssigner`]: [`Tumbling`](crate::window::Tumbling),
/// [`Sliding`](crate::window::Sliding) (a pair meeting in several windows is emitted
/// once per window), or [`Session`](crate::window::Session) (the sessions of the two
/// sides together: a left and a right record closer than the gap, directly or through
/// other records of either side, are in one session).
///
/// A session fires when the watermark reaches its last instant (`end - 1`), as in the
/// window operator and in Flink. Since sessions that touch merge, a record stamped
/// exactly `end` that arrives after the session fired starts a session of its own,
/// where, arriving earlier, it would have extended that one: give the watermark one
/// millisecond of slack beyond the disorder if that matters.
///
/// A record whose windows have all fired is late: it goes to the join's late output
/// (see the [module docs](super)), never silently dropped.
pub struct WindowJoin<K, L, R, A> {
    assigner: A,
    late: LateOutput<K, Either<L, R>>,
    handles: Option<Handles<L, R>>,
    /// Reused buffer for the windows of the current record.
    scratch: Vec<TimeWindow>,
}

impl<K, L, R, A: Clone> Clone for WindowJoin<K, L, R, A> {
    fn clone(&self) -> Self {
        WindowJoin {
            assigner: self.assigner.clone(),
            late: self.late.clone(),
            handles: self.handles,
            scratch: Vec::new(),
        }
    }
}

impl<K, L, R, A> WindowJoin<K, L, R, A>
where
    K: Key,
    L: StateValue + Unpin,
    R: StateValue + Unpin,
    A: WindowAssigner,
{
    /// A window join over the windows `assigner` gives; late records are counted and
    /// logged until [`late_output`](Self::late_output) says otherwise. Fails for a
    /// processing-time assigner: joins run in event time.
    pub fn new(assigner: A) -> Result<Self, JoinError> {
        if assigner.domain() != TimeDomain::EventTime {
            return Err(JoinError::ProcessingTimeWindows {
                assigner: assigner.name(),
            });
        }
        Ok(WindowJoin {
            assigner,
            late: LateOutput::counted(Arc::new(AtomicU64::new(0))),
            handles: None,
            scratch: Vec::new(),
        })
    }

    /// Sends late records to `late` (the stage's side output, a sink, or the log),
    /// counted by its counter.
    pub fn late_output(mut self, late: LateOutput<K, Either<L, R>>) -> Self {
        self.late = late;
        self
    }

    /// How many records arrived after all their windows fired (shared by the copies
    /// running in every partition).
    pub fn late_records(&self) -> Arc<AtomicU64> {
        self.late.counter()
    }

    /// Adds the record's windows to the key's sessions, moving the timers of the
    /// sessions merged away to the session they merged into.
    fn add_to_sessions(
        &self,
        sessions: ValueHandle<MergedWindows>,
        windows: &[TimeWindow],
        ctx: &mut KeyedContext<'_, K, Joined<K, L, R>>,
    ) -> Result<(), OperatorError> {
        let mut merged = ctx.value(sessions).value()?.unwrap_or_default();
        for &window in windows {
            let outcome = merged.add(window);
            for gone in &outcome.absorbed {
                ctx.delete_event_timer(gone.max_timestamp())?;
            }
            ctx.register_event_timer(outcome.result.max_timestamp())?;
        }
        ctx.value(sessions).set(merged)?;
        Ok(())
    }

    /// The windows ending at `timestamp`: the key's session ending there, or every
    /// window of a stored record that ends there.
    fn windows_ending_at(
        &self,
        timestamp: i64,
        rows: &[(RowId, Either<L, R>)],
        merged: Option<&MergedWindows>,
    ) -> Vec<TimeWindow> {
        if let Some(merged) = merged {
            return merged
                .windows()
                .iter()
                .filter(|w| w.max_timestamp() == timestamp)
                .copied()
                .collect();
        }
        let mut ending = BTreeSet::new();
        let mut windows = Vec::new();
        for ((ts, _), _) in rows {
            windows.clear();
            self.assigner.assign(*ts, &mut windows);
            ending.extend(windows.iter().filter(|w| w.max_timestamp() == timestamp));
        }
        ending.into_iter().collect()
    }

    /// Whether the record at `ts` still belongs to a window that fires after
    /// `timestamp` (for non-merging assigners).
    fn has_later_window(&self, ts: i64, timestamp: i64, windows: &mut Vec<TimeWindow>) -> bool {
        windows.clear();
        self.assigner.assign(ts, windows);
        windows.iter().any(|w| w.max_timestamp() > timestamp)
    }
}

/// Emits every pair of `window`'s left and right records, at the window's last instant.
fn emit_pairs<K: Key, L: Clone, R: Clone>(
    window: &TimeWindow,
    rows: &[(RowId, Either<L, R>)],
    ctx: &mut KeyedContext<'_, K, Joined<K, L, R>>,
) {
    let inside = || {
        rows.iter()
            .filter(|((ts, _), _)| window.contains(*ts))
            .map(|(_, row)| row)
    };
    let rights: Vec<&R> = inside()
        .filter_map(|row| match row {
            Either::Right(r) => Some(r),
            Either::Left(_) => None,
        })
        .collect();
    if rights.is_empty() {
        return;
    }
    let key = ctx.key().clone();
    for row in inside() {
        if let Either::Left(l) = row {
            for &r in &rights {
                ctx.emit_at(
                    Joined {
                        key: key.clone(),
                        left: l.clone(),
                        right: r.clone(),
                    },
                    window.max_timestamp(),
                );
            }
        }
    }
}

impl<K, L, R, A> KeyedProcess for WindowJoin<K, L, R, A>
where
    K: Key,
    L: StateValue + Unpin,
    R: StateValue + Unpin,
    A: WindowAssigner,
{
    type Key = K;
    type In = Either<L, R>;
    type Out = Joined<K, L, R>;

    fn name(&self) -> String {
        format!("window-join({})", self.assigner.name())
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        self.handles = Some(Handles {
            rows: ctx.map_state(StateDescriptor::new("window-join-rows"))?,
            next_row: ctx.value_state(StateDescriptor::new("window-join-next-row"))?,
            sessions: if self.assigner.is_merging() {
                Some(ctx.value_state(StateDescriptor::new("window-join-sessions"))?)
            } else {
                None
            },
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
        let mut windows = std::mem::take(&mut self.scratch);
        windows.clear();
        self.assigner.assign(ts, &mut windows);
        windows.retain(|w| w.max_timestamp() > watermark);
        let result = if windows.is_empty() {
            let key = ctx.key().clone();
            self.late.send(key, value, ts, watermark, ctx)
        } else {
            let timers = match handles.sessions {
                Some(sessions) => self.add_to_sessions(sessions, &windows, ctx),
                None => windows
                    .iter()
                    .try_for_each(|w| ctx.register_event_timer(w.max_timestamp())),
            };
            timers.and_then(|()| {
                let id = (ts, next_row_id(ctx, handles.next_row)?);
                Ok(ctx.map(handles.rows).insert(id, value)?)
            })
        };
        self.scratch = windows;
        result
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        if ctx.timer_domain() != Some(TimerDomain::EventTime) {
            return Ok(());
        }
        let handles = opened(&self.handles, WHAT)?;
        let mut rows = ctx.map(handles.rows).entries()?;
        rows.sort_unstable_by_key(|(id, _)| *id);
        let merged = match handles.sessions {
            Some(sessions) => Some(ctx.value(sessions).value()?.unwrap_or_default()),
            None => None,
        };
        let firing = self.windows_ending_at(timestamp, &rows, merged.as_ref());
        for window in &firing {
            emit_pairs(window, &rows, ctx);
        }
        // Drop what no window still to fire needs.
        let mut windows = std::mem::take(&mut self.scratch);
        let mut kept = 0;
        for ((ts, seq), _) in &rows {
            let done = match merged {
                Some(_) => firing.iter().any(|w| w.contains(*ts)),
                None => !self.has_later_window(*ts, timestamp, &mut windows),
            };
            if done {
                ctx.map(handles.rows).remove(&(*ts, *seq))?;
            } else {
                kept += 1;
            }
        }
        self.scratch = windows;
        if let (Some(sessions), Some(mut merged)) = (handles.sessions, merged) {
            for window in &firing {
                merged.remove(window);
            }
            if merged.is_empty() {
                ctx.value(sessions).clear()?;
            } else {
                ctx.value(sessions).set(merged)?;
            }
        }
        if kept == 0 {
            ctx.value(handles.next_row).clear()?;
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
    use crate::window::{Session, Sliding, Tumbling};

    type Out = Joined<u32, String, String>;

    fn left(s: &str) -> Either<String, String> {
        Either::Left(s.to_string())
    }

    fn right(s: &str) -> Either<String, String> {
        Either::Right(s.to_string())
    }

    fn joined(key: u32, l: &str, r: &str) -> Out {
        Joined {
            key,
            left: l.to_string(),
            right: r.to_string(),
        }
    }

    fn harness<A: WindowAssigner>(
        join: WindowJoin<u32, String, String, A>,
    ) -> OperatorHarness<WindowJoin<u32, String, String, A>> {
        OperatorHarness::with_options(
            join,
            HarnessOptions {
                side_output: true,
                ..HarnessOptions::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn tumbling_windows_pair_within_each_window_and_fire_at_the_watermark() {
        let mut h = harness(WindowJoin::new(Tumbling::of_millis(10).unwrap()).unwrap());
        h.process_element(1, left("a"), 1).unwrap();
        h.process_element(1, right("x"), 9).unwrap();
        h.process_element(1, right("y"), 10).unwrap(); // next window
        h.process_element(2, right("z"), 5).unwrap(); // other key
        h.process_watermark(8).unwrap();
        assert!(
            h.take_output().is_empty(),
            "nothing before the window's end"
        );
        h.process_watermark(9).unwrap();
        assert_eq!(h.take_output(), vec![(9, joined(1, "a", "x"))]);
        h.process_element(1, left("b"), 12).unwrap();
        h.end_input().unwrap();
        assert_eq!(h.take_output(), vec![(19, joined(1, "b", "y"))]);
        assert_eq!(
            h.state_entries().unwrap(),
            0,
            "every window's state is dropped"
        );
        assert_eq!(h.pending_timers(), 0);
    }

    #[test]
    fn a_sliding_window_pair_is_emitted_once_per_shared_window() {
        let mut h = harness(WindowJoin::new(Sliding::of_millis(10, 5).unwrap()).unwrap());
        h.process_element(7, left("a"), 6).unwrap(); // windows [0,10) and [5,15)
        h.process_element(7, right("x"), 8).unwrap(); // windows [0,10) and [5,15)
        h.process_element(7, right("y"), 12).unwrap(); // windows [5,15) and [10,20)
        h.end_input().unwrap();
        let mut out = h.take_output();
        out.sort();
        assert_eq!(
            out,
            vec![
                (9, joined(7, "a", "x")),
                (14, joined(7, "a", "x")),
                (14, joined(7, "a", "y")),
            ]
        );
        assert_eq!(h.state_entries().unwrap(), 0);
    }

    #[test]
    fn sessions_of_both_sides_merge_and_fire_once_with_every_pair() {
        let mut h = harness(WindowJoin::new(Session::with_gap_millis(5).unwrap()).unwrap());
        h.process_element(1, left("a"), 0).unwrap(); // [0, 5)
        h.process_element(1, right("x"), 12).unwrap(); // [12, 17): a second session
        h.process_watermark(3).unwrap();
        h.process_element(1, right("y"), 4).unwrap(); // [4, 9) merges with [0, 5)
        h.process_element(1, left("b"), 8).unwrap(); // [8, 13) merges [0,9) and [12,17)
        h.process_watermark(15).unwrap();
        assert!(h.take_output().is_empty(), "the merged session ends at 17");
        h.process_watermark(16).unwrap();
        let mut out = h.take_output();
        out.sort();
        assert_eq!(
            out,
            vec![
                (16, joined(1, "a", "x")),
                (16, joined(1, "a", "y")),
                (16, joined(1, "b", "x")),
                (16, joined(1, "b", "y")),
            ]
        );
        assert_eq!(h.state_entries().unwrap(), 0);
        assert_eq!(
            h.pending_timers(),
            0,
            "the absorbed sessions' timers are gone"
        );
    }

    #[test]
    fn separate_sessions_do_not_pair() {
        let mut h = harness(WindowJoin::new(Session::with_gap_millis(5).unwrap()).unwrap());
        h.process_element(1, left("a"), 0).unwrap(); // [0, 5)
        h.process_element(1, right("x"), 6).unwrap(); // [6, 11)
        h.process_element(1, right("y"), 2).unwrap(); // [2, 7): bridges both
        h.process_element(2, left("b"), 0).unwrap();
        h.process_element(2, right("z"), 5).unwrap(); // touches [0,5): merges
        h.process_element(3, left("c"), 0).unwrap();
        h.process_element(3, right("w"), 6).unwrap(); // a gap of 6 > 5: no session
        h.end_input().unwrap();
        let mut out = h.take_output();
        out.sort();
        assert_eq!(
            out,
            vec![
                (9, joined(2, "b", "z")),
                (10, joined(1, "a", "x")),
                (10, joined(1, "a", "y")),
            ]
        );
    }

    #[test]
    fn a_record_at_the_end_of_a_fired_session_starts_a_new_one() {
        let mut h = harness(WindowJoin::new(Session::with_gap_millis(3).unwrap()).unwrap());
        h.process_element(1, left("a"), 0).unwrap(); // [0, 3)
        h.process_watermark(2).unwrap(); // fires [0, 3): no pair
        h.process_element(1, right("x"), 3).unwrap(); // not late; [3, 6) is new
        h.end_input().unwrap();
        assert!(h.take_output().is_empty());
        let mut before = harness(WindowJoin::new(Session::with_gap_millis(3).unwrap()).unwrap());
        before.process_element(1, left("a"), 0).unwrap();
        before.process_element(1, right("x"), 3).unwrap(); // touches [0, 3): merges
        before.end_input().unwrap();
        assert_eq!(before.take_output(), vec![(5, joined(1, "a", "x"))]);
    }

    #[test]
    fn late_records_go_to_the_side_output_and_are_counted() {
        let count = Arc::new(AtomicU64::new(0));
        let join = WindowJoin::new(Tumbling::of_millis(10).unwrap())
            .unwrap()
            .late_output(LateOutput::to_side_output(count.clone()));
        let mut h = harness(join);
        h.process_element(1, left("a"), 3).unwrap();
        h.process_element(1, right("x"), 4).unwrap();
        h.process_watermark(9).unwrap();
        assert_eq!(h.take_output(), vec![(9, joined(1, "a", "x"))]);
        // Window [0, 10) has fired: these are late.
        h.process_element(1, right("late"), 9).unwrap();
        h.process_element(2, left("late too"), 0).unwrap();
        // Not late: window [10, 20) is still open.
        h.process_element(1, left("b"), 10).unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 2);
        assert_eq!(
            h.take_side_output::<(u32, Either<String, String>)>()
                .unwrap(),
            vec![(1, right("late")), (2, left("late too"))]
        );
        h.end_input().unwrap();
        assert!(h.take_output().is_empty(), "the late right did not pair");
    }

    #[test]
    fn a_sliding_record_late_for_some_windows_still_joins_in_the_open_ones() {
        let join = WindowJoin::new(Sliding::of_millis(10, 5).unwrap()).unwrap();
        let late = join.late_records();
        let mut h = harness(join);
        h.process_element(1, right("x"), 8).unwrap(); // [0,10) and [5,15)
        h.process_watermark(9).unwrap(); // fires [0,10) (no pair)
        h.process_element(1, left("a"), 7).unwrap(); // [0,10) late, [5,15) open
        h.end_input().unwrap();
        assert_eq!(h.take_output(), vec![(14, joined(1, "a", "x"))]);
        assert_eq!(late.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn processing_time_windows_are_refused() {
        let err = WindowJoin::<u32, String, String, _>::new(
            Tumbling::of_millis(10).unwrap().processing_time(),
        )
        .err()
        .unwrap();
        assert!(
            matches!(err, JoinError::ProcessingTimeWindows { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_record_without_timestamp_fails_the_operator() {
        let mut h = harness(WindowJoin::new(Tumbling::of_millis(10).unwrap()).unwrap());
        let err = h
            .process_element(1, left("a"), crate::record::NO_TIMESTAMP)
            .unwrap_err();
        assert!(err.to_string().contains("no timestamp"), "{err}");
    }
}
