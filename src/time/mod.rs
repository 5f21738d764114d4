//! Event time: how sources stamp records with timestamps and generate watermarks.
//!
//! A source stage given a [`WatermarkStrategy`] takes each record's timestamp from it,
//! tracks the highest timestamp its split has seen, and emits the watermark
//! `max_seen - max_out_of_orderness` in-band (at most once per `interval`); its
//! end-of-input marker stands for a watermark of +infinity. Each source partition reads one split, so a split's watermark is its
//! partition's; downstream actors take the minimum over their inputs (the kernel's
//! `WatermarkTracker`), which makes a source's watermark the minimum over its splits.
//! A split with no input for `idle_timeout` declares itself idle and stops holding the
//! watermark back until it reads again. A split made of several independently ordered
//! streams (a Kafka split's partitions) reports them as lanes, and its highest
//! timestamp is then the minimum over its non-idle lanes ([`lanes`]).

pub mod alignment;
pub mod lanes;

use std::time::Duration;

use crate::record::NO_TIMESTAMP;

pub use alignment::AlignmentGroup;
pub use lanes::{LaneId, SplitLanes};

/// How a source's records get timestamps and its splits watermarks.
pub trait TimestampStrategy<T>: Clone + Send + 'static {
    /// Whether the job uses event time at all (no watermarks are sent otherwise).
    const ENABLED: bool;
    /// The timestamp of `item`, in milliseconds.
    fn timestamp(&self, item: &T) -> i64;
    /// The watermark after seeing timestamps up to `max_seen`.
    fn watermark(&self, max_seen: i64) -> i64;
    /// How often (at most) a split sends its watermark.
    fn interval(&self) -> Duration;
    /// After how long without input a split declares itself idle (`None`: never).
    fn idle_timeout(&self) -> Option<Duration>;
    /// How far (in event time) a source actor may read ahead of the slowest actor of
    /// its stage (`None`: no alignment; see [`alignment`]).
    fn max_drift(&self) -> Option<Duration> {
        None
    }
}

/// No event time: records carry no timestamp and no watermarks are sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEventTime;

impl<T> TimestampStrategy<T> for NoEventTime {
    const ENABLED: bool = false;
    #[inline(always)]
    fn timestamp(&self, _item: &T) -> i64 {
        NO_TIMESTAMP
    }
    fn watermark(&self, _max_seen: i64) -> i64 {
        NO_TIMESTAMP
    }
    fn interval(&self) -> Duration {
        Duration::MAX
    }
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }
}

/// Timestamps from a function of the record, and watermarks that trail the highest
/// timestamp seen by a fixed bound: records may arrive up to `max_out_of_orderness`
/// out of order without being late (Flink's `forBoundedOutOfOrderness`).
pub struct WatermarkStrategy<F> {
    timestamp: F,
    max_out_of_orderness: i64,
    interval: Duration,
    idle_timeout: Option<Duration>,
    max_drift: Option<Duration>,
}

impl<F: Clone> Clone for WatermarkStrategy<F> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            timestamp: self.timestamp.clone(),
            max_out_of_orderness: self.max_out_of_orderness,
            interval: self.interval,
            idle_timeout: self.idle_timeout,
            max_drift: self.max_drift,
        }
    }
}

/// How often a split sends its watermark by default.
pub const DEFAULT_WATERMARK_INTERVAL: Duration = Duration::from_millis(50);

impl<F> WatermarkStrategy<F> {
    /// Watermark = highest timestamp seen - `bound`; timestamps from `timestamp`.
    pub fn bounded_out_of_orderness(bound: Duration, timestamp: F) -> Self {
        WatermarkStrategy {
            timestamp,
            max_out_of_orderness: i64::try_from(bound.as_millis()).unwrap_or(i64::MAX),
            interval: DEFAULT_WATERMARK_INTERVAL,
            idle_timeout: None,
            max_drift: None,
        }
    }

    /// Timestamps that never go backwards within a split (bound 0).
    pub fn ascending(timestamp: F) -> Self {
        Self::bounded_out_of_orderness(Duration::ZERO, timestamp)
    }

    /// A split without input for `timeout` stops holding the watermark back.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Aligns the source actors of the stage: one whose watermark is more than
    /// `max_drift` ahead of the slowest one's pauses until it catches up (Flink's
    /// `withWatermarkAlignment`). Bounds how long windows stay open because one
    /// split is read faster than another, and so the state and checkpoints a
    /// windowed job carries. Results do not change.
    pub fn with_alignment(mut self, max_drift: Duration) -> Self {
        self.max_drift = Some(max_drift);
        self
    }

    /// Sends watermarks at most every `interval` (default 50 ms).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

impl<T, F> TimestampStrategy<T> for WatermarkStrategy<F>
where
    F: Fn(&T) -> i64 + Clone + Send + 'static,
{
    const ENABLED: bool = true;
    #[inline(always)]
    fn timestamp(&self, item: &T) -> i64 {
        (self.timestamp)(item)
    }
    fn watermark(&self, max_seen: i64) -> i64 {
        if max_seen == NO_TIMESTAMP {
            NO_TIMESTAMP
        } else {
            max_seen.saturating_sub(self.max_out_of_orderness)
        }
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
    fn max_drift(&self) -> Option<Duration> {
        self.max_drift
    }
}

/// The current processing time in milliseconds since the Unix epoch.
pub fn processing_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_trails_the_maximum() {
        let s =
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(500), |x: &i64| *x);
        assert_eq!(TimestampStrategy::<i64>::timestamp(&s, &1234), 1234);
        assert_eq!(TimestampStrategy::<i64>::watermark(&s, 10_000), 9_500);
        assert_eq!(
            TimestampStrategy::<i64>::watermark(&s, NO_TIMESTAMP),
            NO_TIMESTAMP
        );
        assert_eq!(
            TimestampStrategy::<i64>::watermark(&s, i64::MIN + 1),
            i64::MIN
        );
    }
}
