//! Regular joins: every left and right record of a key meet, whatever their
//! timestamps, for as long as their rows are held (the state TTL).
//!
//! Each side's rows are a map from a row number (per key) to the row, with the TTL on
//! the map, so every row expires on its own, `ttl` after it arrived (processing time);
//! an expired row is never read, so it no longer matches, and the state store purges
//! it. An arriving record meets the other side's live rows, then is held itself.
//!
//! The left join also keeps, for each left row that has not matched yet, a second copy
//! without TTL (the row itself expires, and then it cannot be read any more to be
//! emitted): that copy goes when the row first matches, or is emitted as `(l, None)`
//! by a timer when the row can no longer match: a processing-time timer at the row's
//! expiry, or, without TTL, an event-time timer at the end of time, which fires when
//! the input ends. Pending processing-time timers fire when the input ends too, so in
//! both cases every left row that never matched is emitted exactly once.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_actors::state::{MapHandle, StateDescriptor, StateValue, TimerDomain, ValueHandle};

use crate::operator::{Either, Key, KeyedContext, KeyedProcess, OpenContext, OperatorError};

use super::{next_row_id, opened, JoinError, Joined};

/// One held row: the record and its timestamp.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row<T> {
    value: T,
    ts: i64,
}

/// A left row that has not matched yet, with the processing time at which it
/// expires (`i64::MAX` without TTL).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Unmatched<T> {
    value: T,
    ts: i64,
    expires_at: i64,
}

/// The rows of both sides, registered in `open`.
struct Rows<L, R> {
    left: MapHandle<u64, Row<L>>,
    right: MapHandle<u64, Row<R>>,
    /// The key's next row number (with the rows' TTL: it outlives every row).
    next_row: ValueHandle<u64>,
}

impl<L, R> Clone for Rows<L, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L, R> Copy for Rows<L, R> {}

impl<L: StateValue, R: StateValue> Rows<L, R> {
    /// Registers both sides' rows (named after `join`), with `ttl` if any.
    fn register<K: Key>(
        ctx: &mut OpenContext<'_, K>,
        join: &str,
        ttl: Option<Duration>,
    ) -> Result<Self, OperatorError> {
        let descriptor = |name: &str| {
            let descriptor = StateDescriptor::new(format!("{join}-{name}"));
            match ttl {
                Some(ttl) => descriptor.with_ttl(ttl),
                None => descriptor,
            }
        };
        Ok(Rows {
            left: ctx.map_state(descriptor("left"))?,
            right: ctx.map_state(descriptor("right"))?,
            next_row: ctx.value_state(descriptor("next-row"))?,
        })
    }
}

/// A side's live rows, in arrival order.
fn live_rows<K: Key, O, T: StateValue>(
    ctx: &mut KeyedContext<'_, K, O>,
    side: MapHandle<u64, Row<T>>,
) -> Result<Vec<(u64, Row<T>)>, OperatorError> {
    let mut rows = ctx.map(side).entries()?;
    rows.sort_unstable_by_key(|(id, _)| *id);
    Ok(rows)
}

/// `ttl` in ms, checked to fit.
fn ttl_millis(ttl: Duration) -> Result<i64, JoinError> {
    i64::try_from(ttl.as_millis()).map_err(|_| JoinError::TooLong {
        what: "state TTL",
        millis: ttl.as_millis(),
    })
}

/// The inner join of two keyed streams: each arriving record is paired with every
/// live row of the other side of its key, and held for the other side's later
/// records. Emits `Joined { key, left, right }` with timestamp `max(l.ts, r.ts)`.
///
/// Rows are held for the TTL given by [`with_ttl`](Self::with_ttl) (processing time,
/// from arrival); without one, until the input ends. See the [module docs](super).
pub struct InnerJoin<K, L, R> {
    ttl: Option<Duration>,
    rows: Option<Rows<L, R>>,
    _key: PhantomData<fn() -> K>,
}

impl<K, L, R> Clone for InnerJoin<K, L, R> {
    fn clone(&self) -> Self {
        InnerJoin {
            ttl: self.ttl,
            rows: self.rows,
            _key: PhantomData,
        }
    }
}

impl<K, L, R> Default for InnerJoin<K, L, R> {
    fn default() -> Self {
        InnerJoin {
            ttl: None,
            rows: None,
            _key: PhantomData,
        }
    }
}

impl<K, L, R> InnerJoin<K, L, R> {
    /// An inner join that holds rows until the input ends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds each row for `ttl` after it arrived (processing time, ms resolution):
    /// an expired row no longer matches. Fails if `ttl` does not fit in `i64` ms (a
    /// zero TTL fails when the operator opens).
    pub fn with_ttl(mut self, ttl: Duration) -> Result<Self, JoinError> {
        ttl_millis(ttl)?;
        self.ttl = Some(ttl);
        Ok(self)
    }
}

impl<K, L, R> KeyedProcess for InnerJoin<K, L, R>
where
    K: Key,
    L: StateValue + Unpin,
    R: StateValue + Unpin,
{
    type Key = K;
    type In = Either<L, R>;
    type Out = Joined<K, L, R>;

    fn name(&self) -> String {
        "inner-join".to_string()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        self.rows = Some(Rows::register(ctx, "inner-join", self.ttl)?);
        Ok(())
    }

    fn process(
        &mut self,
        value: Either<L, R>,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let rows = opened(&self.rows, "inner join")?;
        let ts = ctx.timestamp();
        let key = ctx.key().clone();
        match value {
            Either::Left(l) => {
                for (_, r) in live_rows(ctx, rows.right)? {
                    let pair = Joined {
                        key: key.clone(),
                        left: l.clone(),
                        right: r.value,
                    };
                    ctx.emit_at(pair, ts.max(r.ts));
                }
                let id = next_row_id(ctx, rows.next_row)?;
                ctx.map(rows.left).insert(id, Row { value: l, ts })?;
            }
            Either::Right(r) => {
                for (_, l) in live_rows(ctx, rows.left)? {
                    let pair = Joined {
                        key: key.clone(),
                        left: l.value,
                        right: r.clone(),
                    };
                    ctx.emit_at(pair, ts.max(l.ts));
                }
                let id = next_row_id(ctx, rows.next_row)?;
                ctx.map(rows.right).insert(id, Row { value: r, ts })?;
            }
        }
        Ok(())
    }
}

/// The left outer join of two keyed streams: like [`InnerJoin`], with right side
/// `Some(r)`, plus `Joined { key, left: l, right: None }` for each left record that
/// never met a right one, emitted (at `l.ts`) once it can no longer match: when its row
/// expires, or when the input ends. The final output does not depend on the order in
/// which the two inputs arrive. See the [module docs](super).
pub struct LeftJoin<K, L, R> {
    ttl: Option<Duration>,
    /// The TTL in ms (checked to fit when set).
    ttl_ms: Option<i64>,
    rows: Option<Rows<L, R>>,
    unmatched: Option<MapHandle<u64, Unmatched<L>>>,
    _key: PhantomData<fn() -> K>,
}

impl<K, L, R> Clone for LeftJoin<K, L, R> {
    fn clone(&self) -> Self {
        LeftJoin {
            ttl: self.ttl,
            ttl_ms: self.ttl_ms,
            rows: self.rows,
            unmatched: self.unmatched,
            _key: PhantomData,
        }
    }
}

impl<K, L, R> Default for LeftJoin<K, L, R> {
    fn default() -> Self {
        LeftJoin {
            ttl: None,
            ttl_ms: None,
            rows: None,
            unmatched: None,
            _key: PhantomData,
        }
    }
}

impl<K, L, R> LeftJoin<K, L, R> {
    /// A left join that holds rows until the input ends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds each row for `ttl` after it arrived (processing time, ms resolution):
    /// an expired row no longer matches, and a left row that never matched is
    /// emitted as `(l, None)` when it expires. Fails if `ttl` does not fit in `i64`
    /// ms (a zero TTL fails when the operator opens).
    pub fn with_ttl(mut self, ttl: Duration) -> Result<Self, JoinError> {
        self.ttl_ms = Some(ttl_millis(ttl)?);
        self.ttl = Some(ttl);
        Ok(self)
    }
}

impl<K, L, R> LeftJoin<K, L, R>
where
    K: Key,
    L: StateValue + Unpin,
    R: StateValue + Unpin,
{
    /// Emits, at their own timestamps, the unmatched left rows of the current key
    /// that `due` selects, and forgets them.
    fn emit_unmatched(
        &self,
        ctx: &mut KeyedContext<'_, K, Joined<K, L, Option<R>>>,
        due: impl Fn(&Unmatched<L>) -> bool,
    ) -> Result<(), OperatorError> {
        let unmatched = opened(&self.unmatched, "left join")?;
        let mut pending = ctx.map(unmatched).entries()?;
        pending.sort_unstable_by_key(|(id, _)| *id);
        let key = ctx.key().clone();
        for (id, row) in pending.into_iter().filter(|(_, row)| due(row)) {
            ctx.map(unmatched).remove(&id)?;
            let lone = Joined {
                key: key.clone(),
                left: row.value,
                right: None,
            };
            ctx.emit_at(lone, row.ts);
        }
        Ok(())
    }
}

impl<K, L, R> KeyedProcess for LeftJoin<K, L, R>
where
    K: Key,
    L: StateValue + Unpin,
    R: StateValue + Unpin,
{
    type Key = K;
    type In = Either<L, R>;
    type Out = Joined<K, L, Option<R>>;

    fn name(&self) -> String {
        "left-join".to_string()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        self.rows = Some(Rows::register(ctx, "left-join", self.ttl)?);
        self.unmatched = Some(ctx.map_state(StateDescriptor::new("left-join-unmatched"))?);
        Ok(())
    }

    fn process(
        &mut self,
        value: Either<L, R>,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let rows = opened(&self.rows, "left join")?;
        let unmatched = opened(&self.unmatched, "left join")?;
        let ts = ctx.timestamp();
        let key = ctx.key().clone();
        match value {
            Either::Left(l) => {
                let rights = live_rows(ctx, rows.right)?;
                for (_, r) in &rights {
                    let pair = Joined {
                        key: key.clone(),
                        left: l.clone(),
                        right: Some(r.value.clone()),
                    };
                    ctx.emit_at(pair, ts.max(r.ts));
                }
                // The row number must not name an unmatched row still waiting for its
                // timer (the counter may have expired before that row was emitted).
                let mut id = next_row_id(ctx, rows.next_row)?;
                while ctx.map(unmatched).contains(&id)? {
                    id = id.wrapping_add(1);
                    ctx.value(rows.next_row).set(id.wrapping_add(1))?;
                }
                if rights.is_empty() {
                    let expires_at = match self.ttl_ms {
                        Some(ttl) => {
                            let at = ctx.processing_time().saturating_add(ttl);
                            ctx.register_processing_timer(at)?;
                            at
                        }
                        None => {
                            ctx.register_event_timer(i64::MAX)?;
                            i64::MAX
                        }
                    };
                    let row = Unmatched {
                        value: l.clone(),
                        ts,
                        expires_at,
                    };
                    ctx.map(unmatched).insert(id, row)?;
                }
                ctx.map(rows.left).insert(id, Row { value: l, ts })?;
            }
            Either::Right(r) => {
                for (id, l) in live_rows(ctx, rows.left)? {
                    if ctx.map(unmatched).contains(&id)? {
                        ctx.map(unmatched).remove(&id)?;
                    }
                    let pair = Joined {
                        key: key.clone(),
                        left: l.value,
                        right: Some(r.clone()),
                    };
                    ctx.emit_at(pair, ts.max(l.ts));
                }
                let id = next_row_id(ctx, rows.next_row)?;
                ctx.map(rows.right).insert(id, Row { value: r, ts })?;
            }
        }
        Ok(())
    }

    /// A processing-time timer: the unmatched left rows expired by now can no longer
    /// match. The event-time timer at the end of time (no TTL): none can.
    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        match ctx.timer_domain() {
            Some(TimerDomain::ProcessingTime) => {
                self.emit_unmatched(ctx, |row| row.expires_at <= timestamp)
            }
            Some(TimerDomain::EventTime) if timestamp == i64::MAX => {
                self.emit_unmatched(ctx, |_| true)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::harness::OperatorHarness;
    use crate::record::NO_TIMESTAMP;

    type Pair = Joined<char, u32, Option<u32>>;

    fn pair(key: char, left: u32, right: Option<u32>) -> Pair {
        Joined { key, left, right }
    }

    #[test]
    fn an_inner_join_pairs_each_arrival_with_the_other_sides_rows() {
        let mut h = OperatorHarness::new(InnerJoin::<char, u32, u32>::new()).unwrap();
        h.process_element('a', Either::Left(1), 5).unwrap();
        h.process_element('a', Either::Left(2), 3).unwrap();
        h.process_element('b', Either::Right(9), 1).unwrap();
        h.process_element('a', Either::Right(10), 4).unwrap();
        h.process_element('a', Either::Left(3), 2).unwrap();
        assert_eq!(
            h.take_output(),
            vec![
                (
                    5,
                    Joined {
                        key: 'a',
                        left: 1,
                        right: 10
                    }
                ),
                (
                    4,
                    Joined {
                        key: 'a',
                        left: 2,
                        right: 10
                    }
                ),
                (
                    4,
                    Joined {
                        key: 'a',
                        left: 3,
                        right: 10
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_join_without_event_time_runs_and_stamps_nothing() {
        let mut h = OperatorHarness::new(LeftJoin::<char, u32, u32>::new()).unwrap();
        h.process_element('a', Either::Right(10), NO_TIMESTAMP)
            .unwrap();
        h.process_element('a', Either::Left(1), NO_TIMESTAMP)
            .unwrap();
        h.process_element('b', Either::Left(2), NO_TIMESTAMP)
            .unwrap();
        h.end_input().unwrap();
        assert_eq!(
            h.take_output(),
            vec![
                (NO_TIMESTAMP, pair('a', 1, Some(10))),
                (NO_TIMESTAMP, pair('b', 2, None)),
            ]
        );
    }

    #[test]
    fn a_left_join_emits_unmatched_rows_at_the_end_whatever_the_arrival_order() {
        let run = |right_first: bool| {
            let mut h = OperatorHarness::new(LeftJoin::<char, u32, u32>::new()).unwrap();
            let rights = [('a', 10, 7)];
            let lefts = [('a', 1, 5), ('b', 2, 6), ('a', 3, 8)];
            let feed = |h: &mut OperatorHarness<_>, right: bool| {
                if right {
                    for (k, v, ts) in rights {
                        h.process_element(k, Either::Right(v), ts).unwrap();
                    }
                } else {
                    for (k, v, ts) in lefts {
                        h.process_element(k, Either::Left(v), ts).unwrap();
                    }
                }
            };
            feed(&mut h, right_first);
            feed(&mut h, !right_first);
            h.end_input().unwrap();
            let mut out = h.take_output();
            out.sort();
            out
        };
        let expected = vec![
            (6, pair('b', 2, None)),
            (7, pair('a', 1, Some(10))),
            (8, pair('a', 3, Some(10))),
        ];
        assert_eq!(run(true), expected);
        assert_eq!(run(false), expected);
    }

    #[test]
    fn expired_rows_no_longer_match_and_unmatched_left_rows_are_emitted_at_expiry() {
        let join = LeftJoin::<char, u32, u32>::new()
            .with_ttl(Duration::from_millis(100))
            .unwrap();
        let mut h = OperatorHarness::new(join).unwrap();
        h.set_processing_time(1_000).unwrap();
        h.process_element('a', Either::Left(1), 1).unwrap(); // expires at 1100
        h.process_element('a', Either::Right(10), 2).unwrap(); // expires at 1100
        h.set_processing_time(1_050).unwrap();
        h.process_element('a', Either::Left(2), 3).unwrap(); // meets 10; expires 1150
        h.process_element('b', Either::Left(3), 4).unwrap(); // expires at 1150
        assert_eq!(
            h.take_output(),
            vec![(2, pair('a', 1, Some(10))), (3, pair('a', 2, Some(10)))]
        );
        h.set_processing_time(1_100).unwrap();
        // Left 1 and right 10 expired at 1100: right 11 meets left 2 only.
        h.process_element('a', Either::Right(11), 5).unwrap();
        assert_eq!(h.take_output(), vec![(5, pair('a', 2, Some(11)))]);
        h.set_processing_time(1_150).unwrap();
        assert!(
            h.take_output().is_empty(),
            "a timer fires once the clock is past it"
        );
        h.set_processing_time(1_151).unwrap();
        assert_eq!(h.take_output(), vec![(4, pair('b', 3, None))]);
        h.set_processing_time(1_300).unwrap();
        assert_eq!(h.state_entries().unwrap(), 0, "expired rows are purged");
        assert_eq!(h.pending_timers(), 0);
        h.end_input().unwrap();
        assert!(
            h.take_output().is_empty(),
            "each unmatched row is emitted once"
        );
    }

    #[test]
    fn an_inner_join_forgets_expired_rows() {
        let join = InnerJoin::<char, u32, u32>::new()
            .with_ttl(Duration::from_millis(10))
            .unwrap();
        let mut h = OperatorHarness::new(join).unwrap();
        h.process_element('a', Either::Left(1), 1).unwrap();
        h.set_processing_time(9).unwrap();
        h.process_element('a', Either::Right(10), 2).unwrap();
        h.set_processing_time(10).unwrap();
        h.process_element('a', Either::Right(11), 3).unwrap();
        assert_eq!(
            h.take_output(),
            vec![(
                2,
                Joined {
                    key: 'a',
                    left: 1,
                    right: 10
                }
            )]
        );
        h.set_processing_time(100).unwrap();
        assert_eq!(h.state_entries().unwrap(), 0);
    }

    #[test]
    fn left_rows_pending_at_the_end_of_input_are_emitted_then_not_again_at_expiry() {
        let join = LeftJoin::<char, u32, u32>::new()
            .with_ttl(Duration::from_secs(60))
            .unwrap();
        let mut h = OperatorHarness::new(join).unwrap();
        h.process_element('a', Either::Left(1), 1).unwrap();
        h.end_input().unwrap();
        assert_eq!(h.take_output(), vec![(1, pair('a', 1, None))]);
        assert_eq!(h.pending_timers(), 0);
    }

    #[test]
    fn a_row_number_never_reuses_that_of_an_unmatched_row_waiting_for_its_timer() {
        let join = LeftJoin::<char, u32, u32>::new()
            .with_ttl(Duration::from_millis(10))
            .unwrap();
        let mut h = OperatorHarness::new(join).unwrap();
        h.process_element('a', Either::Left(1), 1).unwrap(); // row 0, expires at 10
                                                             // At 10 the row and the key's row counter have expired, but the row's timer
                                                             // fires only once the clock is past 10 (an actor may be late just as well):
                                                             // the next left row must not take row number 0 and overwrite it.
        h.set_processing_time(10).unwrap();
        assert!(h.take_output().is_empty());
        h.process_element('a', Either::Left(2), 2).unwrap();
        h.set_processing_time(25).unwrap();
        assert_eq!(
            h.take_output(),
            vec![(1, pair('a', 1, None)), (2, pair('a', 2, None))]
        );
    }

    #[test]
    fn a_left_join_lone_rows_expire_without_a_timer_for_matched_ones() {
        let join = LeftJoin::<char, u32, u32>::new()
            .with_ttl(Duration::from_millis(10))
            .unwrap();
        let mut h = OperatorHarness::new(join).unwrap();
        h.process_element('a', Either::Right(10), 1).unwrap();
        h.process_element('a', Either::Left(1), 2).unwrap();
        assert_eq!(h.pending_timers(), 0, "a matched left row needs no timer");
        h.process_element('a', Either::Left(2), 3).unwrap();
        h.take_output();
        h.set_processing_time(11).unwrap();
        h.process_element('a', Either::Left(3), 4).unwrap(); // right 10 expired
        h.set_processing_time(100).unwrap();
        assert_eq!(h.take_output(), vec![(4, pair('a', 3, None))]);
    }
}
