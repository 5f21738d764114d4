//! Joins of two keyed streams, written as keyed two-input operators.
//!
//! Each join is an ordinary [`KeyedProcess`](crate::operator::KeyedProcess) whose input
//! is [`Either<L, R>`](crate::operator::Either): the job connects a left and a right
//! stream keyed by the same key type, and the operator sees both, one record at a time,
//! with the key's state in scope; its watermark is the minimum over both inputs. Every
//! row a join holds lives in keyed state, so it is snapshotted with the stage,
//! restored exactly once after a failure, and moved with its key partition when the
//! stage is rescaled. Nothing is kept in the operator's fields.
//!
//! | join | pairs `(l, r)` of one key such that | emitted | timestamp | state dropped |
//! | --- | --- | --- | --- | --- |
//! | [`WindowJoin`] | `l` and `r` fall in the same window (tumbling, sliding, or the same session) | when the watermark passes the window's end | the window's last instant | when the window fires |
//! | [`IntervalJoin`] | `l.ts + lower <= r.ts <= l.ts + upper` | as soon as the second of the two arrives | `max(l.ts, r.ts)` | once the watermark makes a row unmatchable |
//! | [`InnerJoin`] | always (both held and not expired) | as soon as the second of the two arrives | `max(l.ts, r.ts)` | by state TTL |
//! | [`LeftJoin`] | like [`InnerJoin`], plus `(l, None)` for each `l` that never matched | pairs at once, `(l, None)` when `l` can no longer match | `max(l.ts, r.ts)`, `l.ts` | by state TTL |
//!
//! All of them emit [`Joined`] records.
//!
//! # Event time and late records
//!
//! The window and interval joins are event-time operators: a record with
//! [`NO_TIMESTAMP`](crate::record::NO_TIMESTAMP) fails the stage. A record is late when
//! its timestamp is at or behind the watermark and, for the window join, every window
//! it falls in has already fired; for the interval join, whenever it is at or behind
//! the watermark (the rows it could have met may already be gone, so joining it would
//! give a partial, arrival-dependent answer). Late records are never dropped silently:
//! they go to the join's [`LateOutput`](crate::window::operator::LateOutput) (the
//! stage's side output, as `(key, Either<L, R>)`, a sink, or the log), and are counted
//! in `weir_late_records_total`, as the window operator does.
//!
//! # Regular joins
//!
//! [`InnerJoin`] and [`LeftJoin`] keep each side's rows without regard to time, for
//! the state TTL given to them ([`StateDescriptor::with_ttl`], processing time): a row
//! that expired no longer matches. Without a TTL the rows are kept until the input
//! ends, so the state grows with the input. Because weir's streams are append-only, a
//! left join cannot emit `(l, None)` at once and retract it when a match arrives (as
//! Flink's changelog joins do): it emits `(l, None)` only once `l` can no longer match
//! (its row expired, or the input ended), so its output does not depend on the order
//! in which the two inputs arrive. Retractions, and joins of changelog streams, come
//! with the CDC work.
//!
//! [`StateDescriptor::with_ttl`]: weir_actors::state::StateDescriptor::with_ttl

mod interval;
mod regular;
mod window;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

pub use interval::IntervalJoin;
pub use regular::{InnerJoin, LeftJoin};
pub use window::WindowJoin;

use serde::{Deserialize, Serialize};

use weir_actors::state::ValueHandle;

use crate::operator::{Key, KeyedContext, OperatorError};

/// One result of a join: the key, and the left and right records that met.
///
/// A left join emits `Joined<K, L, Option<R>>`, with `right: None` for a left record
/// that never met a right one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Joined<K, L, R> {
    /// The key both records have.
    pub key: K,
    /// The left record.
    pub left: L,
    /// The right record.
    pub right: R,
}

/// Why a join could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The interval's lower bound is above its upper bound.
    #[error("interval join bounds are reversed: lower {lower} ms > upper {upper} ms")]
    ReversedBounds {
        /// The lower bound, in ms.
        lower: i64,
        /// The upper bound, in ms.
        upper: i64,
    },
    /// A window join was given processing-time windows; joins run in event time.
    #[error("window joins run in event time, but {assigner} measures processing time")]
    ProcessingTimeWindows {
        /// The assigner's name.
        assigner: String,
    },
    /// A duration does not fit in `i64` milliseconds.
    #[error("{what} of {millis} ms does not fit in i64 milliseconds")]
    TooLong {
        /// Which parameter.
        what: &'static str,
        /// Its length, in ms.
        millis: u128,
    },
}

/// The handles registered in `open`, or the error of a join used before it.
fn opened<T: Copy>(handles: &Option<T>, join: &str) -> Result<T, OperatorError> {
    handles.ok_or_else(|| OperatorError::msg(format!("{join} used before open()")))
}

/// The event timestamp of the current record, or the error of an event-time join
/// given a record without one.
fn event_time(ts: i64, join: &str) -> Result<i64, OperatorError> {
    if ts == crate::record::NO_TIMESTAMP {
        Err(OperatorError::msg(format!(
            "{join} runs in event time, but a record has no timestamp: give the sources a WatermarkStrategy (Job::source_with_time)"
        )))
    } else {
        Ok(ts)
    }
}

/// The current key's next row number from its counter in `counter`, advancing it.
fn next_row_id<K: Key, O>(
    ctx: &mut KeyedContext<'_, K, O>,
    counter: ValueHandle<u64>,
) -> Result<u64, OperatorError> {
    let mut state = ctx.value(counter);
    let id = state.value()?.unwrap_or(0);
    state.set(id.wrapping_add(1))?;
    Ok(id)
}
