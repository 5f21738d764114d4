//! Windows over time: which windows an element belongs to, and how session windows merge.
//!
//! A window is a half-open interval of milliseconds, [`TimeWindow`]. A
//! [`WindowAssigner`] is a pure function from an element's timestamp to the windows
//! that element falls in:
//!
//! - [`Tumbling`]: fixed-size windows that tile time without overlap; each element is in
//!   exactly one.
//! - [`Sliding`]: fixed-size windows that start every `slide`; an element is in every
//!   window that covers its timestamp.
//! - [`Session`]: each element opens the window `[ts, ts + gap)`; windows of the same key
//!   that overlap or touch are merged by [`MergedWindows`], so a session ends after a
//!   quiet period of `gap`.
//! - [`Global`]: one window spanning all time, for count-based and custom triggers.
//!
//! Fixed-size windows are aligned to the Unix epoch shifted by an optional offset, for
//! negative timestamps too (see [`aligned_start`]). All arithmetic saturates at the ends
//! of `i64` instead of overflowing, so no timestamp makes an assigner panic.

mod assigner;
mod error;
mod session;

pub use assigner::{Global, Session, Sliding, Tumbling, WindowAssigner};
pub use error::{Parameter, WindowError};
pub use session::{MergeOutcome, MergedWindows};

use serde::{Deserialize, Serialize};
use std::fmt;

/// A half-open interval [start, end) of time in milliseconds.
///
/// `start` is included and `end` is not, so adjacent windows such as `[0, 5)` and
/// `[5, 10)` share no instant. A window whose `end` is not after its `start` is empty:
/// it contains no timestamp. Because `end` is excluded, no window contains `i64::MAX`;
/// assigners put an element stamped `i64::MAX` in a window ending at `i64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// The first instant in the window (inclusive), in milliseconds.
    pub start: i64,
    /// The instant just after the window (exclusive), in milliseconds.
    pub end: i64,
}

impl TimeWindow {
    /// The window covering all representable time, `[i64::MIN, i64::MAX)`: what
    /// [`Global`] assigns. It completes only when the watermark reaches
    /// `i64::MAX - 1`, i.e. at the end of the input.
    pub const GLOBAL: TimeWindow = TimeWindow {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// Makes the window `[start, end)`. No check is made: a `start` at or after `end`
    /// gives an empty window.
    pub const fn new(start: i64, end: i64) -> Self {
        TimeWindow { start, end }
    }

    /// The last instant in the window, `end - 1` (saturating at `i64::MIN`). An
    /// event-time window is complete once the watermark reaches this instant, which is
    /// why triggers and cleanup timers are set for it.
    pub const fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// Whether `ts` lies in the window: `start <= ts < end`.
    pub const fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }

    /// Whether the two windows overlap or touch (`start <= other.end && other.start <=
    /// end`). Touching counts so that, as in Flink, a session that ends exactly where
    /// another begins merges with it.
    pub const fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The smallest window containing both: from the earlier start to the later end.
    /// Used to merge session windows.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Whether the window contains no instant (`end <= start`).
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for TimeWindow {
    /// Formats as `[start, end)`, the interval notation used in logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// Which time a window is measured in.
///
/// Event-time windows complete when the watermark passes them, so results do not depend
/// on how fast data arrives; processing-time windows complete by the wall clock of the
/// machine running the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// Time carried by the elements themselves, advanced by watermarks.
    EventTime,
    /// The local wall clock at the moment an element is processed.
    ProcessingTime,
}

impl fmt::Display for TimeDomain {
    /// Formats as `event time` or `processing time`, for assigner names and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeDomain::EventTime => "event time",
            TimeDomain::ProcessingTime => "processing time",
        })
    }
}

/// The start of the window of length `size` that contains `timestamp`, where windows
/// start at every `offset + k * size` for integer `k` (so at the epoch when `offset` is 0).
///
/// Computed as `timestamp - (timestamp - offset).rem_euclid(size)`, which is right for
/// negative timestamps too: with `size` 5000, `-1` lands in the window starting at `-5000`,
/// not at `0`. The arithmetic is done in 128 bits and a start below `i64::MIN` saturates to
/// `i64::MIN`. A `size` of zero or less has no windows; `timestamp` itself is returned
/// rather than panicking.
pub fn aligned_start(timestamp: i64, offset: i64, size: i64) -> i64 {
    if size <= 0 {
        return timestamp;
    }
    saturate(grid_start(timestamp, offset, size))
}

/// The start of the period of the grid `offset + k * period` that contains `timestamp`,
/// exactly, in 128 bits (it may lie below `i64::MIN`). `period` must be positive.
fn grid_start(timestamp: i64, offset: i64, period: i64) -> i128 {
    let ts = i128::from(timestamp);
    ts - (ts - i128::from(offset)).rem_euclid(i128::from(period.max(1)))
}

/// Narrows a 128-bit instant to `i64`, clamping at the ends instead of wrapping.
fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// The window of length `size` starting at `start` (given in 128 bits, so it may lie
/// below `i64::MIN`), with both ends saturated into `i64`.
fn window_from(start: i128, size: i64) -> TimeWindow {
    TimeWindow::new(saturate(start), saturate(start + i128::from(size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_timestamp_is_end_minus_one_and_saturates() {
        assert_eq!(TimeWindow::new(0, 10).max_timestamp(), 9);
        assert_eq!(TimeWindow::GLOBAL.max_timestamp(), i64::MAX - 1);
        assert_eq!(
            TimeWindow::new(i64::MIN, i64::MIN).max_timestamp(),
            i64::MIN
        );
    }

    #[test]
    fn contains_is_half_open() {
        let w = TimeWindow::new(-5, 5);
        assert!(w.contains(-5));
        assert!(w.contains(4));
        assert!(!w.contains(5));
        assert!(!w.contains(-6));
        assert!(!TimeWindow::new(3, 3).contains(3));
        assert!(!TimeWindow::GLOBAL.contains(i64::MAX));
        assert!(TimeWindow::GLOBAL.contains(i64::MIN));
    }

    #[test]
    fn intersects_counts_touching_windows() {
        let a = TimeWindow::new(0, 5);
        assert!(a.intersects(&TimeWindow::new(5, 10)));
        assert!(TimeWindow::new(5, 10).intersects(&a));
        assert!(a.intersects(&TimeWindow::new(2, 3)));
        assert!(!a.intersects(&TimeWindow::new(6, 10)));
        assert!(!TimeWindow::new(6, 10).intersects(&a));
    }

    #[test]
    fn cover_spans_both() {
        let a = TimeWindow::new(0, 5);
        let b = TimeWindow::new(8, 12);
        assert_eq!(a.cover(&b), TimeWindow::new(0, 12));
        assert_eq!(b.cover(&a), TimeWindow::new(0, 12));
        assert_eq!(a.cover(&TimeWindow::new(1, 2)), a);
    }

    #[test]
    fn display_uses_interval_notation() {
        assert_eq!(TimeWindow::new(-3, 7).to_string(), "[-3, 7)");
        assert_eq!(TimeDomain::ProcessingTime.to_string(), "processing time");
    }

    #[test]
    fn aligned_start_handles_negative_and_extreme_timestamps() {
        assert_eq!(aligned_start(0, 0, 5000), 0);
        assert_eq!(aligned_start(4999, 0, 5000), 0);
        assert_eq!(aligned_start(-1, 0, 5000), -5000);
        assert_eq!(aligned_start(-5000, 0, 5000), -5000);
        assert_eq!(aligned_start(-5001, 0, 5000), -10000);
        assert_eq!(aligned_start(0, 1000, 5000), -4000);
        assert_eq!(aligned_start(0, -1000, 5000), -1000);
        assert_eq!(aligned_start(i64::MIN, 1, 10), i64::MIN);
        assert_eq!(aligned_start(i64::MAX, 0, i64::MAX), i64::MAX);
        assert_eq!(aligned_start(7, 0, 0), 7);
        assert_eq!(aligned_start(7, 0, -3), 7);
    }

    #[test]
    fn window_from_saturates_both_ends() {
        assert_eq!(
            window_from(i128::from(i64::MIN) - 5, 10),
            TimeWindow::new(i64::MIN, i64::MIN + 5)
        );
        assert_eq!(
            window_from(i128::from(i64::MAX) - 5, 10),
            TimeWindow::new(i64::MAX - 5, i64::MAX)
        );
    }
}

pub mod operator;
pub mod preagg;
pub mod stream;
pub mod trigger;

pub use operator::{WindowFunction, WindowOperator, WindowResult};
pub use preagg::{PreAggregatedWindow, WindowInput};
pub use stream::{GlobalWindowedStream, WindowedStream};
pub use trigger::{CountTrigger, EveryEventTime, Trigger, TriggerContext, TriggerResult};
pub use weir_actors::state::TimerDomain;
