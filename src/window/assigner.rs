//! The window assigners: which windows an element with a given timestamp belongs to.

use super::error::{offset_within, positive, to_millis, Parameter, WindowError};
use super::{grid_start, window_from};
// Re-exported so sibling modules can take the window vocabulary from one place,
// `super::assigner::{TimeDomain, TimeWindow, WindowAssigner}`.
pub use super::{TimeDomain, TimeWindow};
use std::time::Duration;

/// Decides the windows of an element from its timestamp. Open for users to implement.
///
/// An assigner is a pure function: the same timestamp always gives the same windows, so
/// it can be cloned into every partition and re-run during recovery. Timestamps are
/// milliseconds and may be any `i64`; implementations must not panic on any of them.
pub trait WindowAssigner: Clone + Send + 'static {
    /// Appends to `out` every window an element stamped `timestamp` belongs to. `out` is
    /// not cleared, so a caller can reuse one buffer across elements.
    fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>);

    /// Whether windows of one key must be merged when they intersect (session windows);
    /// the window operator then keeps them in a [`MergedWindows`](super::MergedWindows).
    fn is_merging(&self) -> bool {
        false
    }

    /// Which time the timestamps passed to [`assign`](Self::assign) are measured in, and
    /// so which clock completes the windows.
    fn domain(&self) -> TimeDomain {
        TimeDomain::EventTime
    }

    /// A short human-readable description with the parameters, for logs and plans.
    fn name(&self) -> String;

    /// The windows of `timestamp` in a fresh vector; a convenience over
    /// [`assign`](Self::assign) for callers that do not reuse a buffer.
    fn windows_of(&self, timestamp: i64) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        self.assign(timestamp, &mut out);
        out
    }
}

/// Fixed-size windows that tile time without overlap: each element is in exactly one.
///
/// Windows are `[offset + k * size, offset + (k + 1) * size)` for every integer `k`, so
/// with no offset they are aligned to the epoch (an hourly window starts on the hour in
/// UTC); an offset shifts them, for example to align daily windows with a time zone.
/// Near the ends of `i64` the windows are cut at `i64::MIN` and `i64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tumbling {
    size: i64,
    offset: i64,
    domain: TimeDomain,
}

impl Tumbling {
    /// Event-time tumbling windows of length `size`, aligned to the epoch.
    ///
    /// Fails if `size` is zero, has a fraction of a millisecond, or exceeds `i64::MAX`
    /// milliseconds.
    pub fn of(size: Duration) -> Result<Self, WindowError> {
        Self::of_millis(to_millis(Parameter::Size, size)?)
    }

    /// Like [`of`](Self::of), with the size in milliseconds; fails unless `size > 0`.
    pub fn of_millis(size: i64) -> Result<Self, WindowError> {
        Ok(Tumbling {
            size: positive(Parameter::Size, size)?,
            offset: 0,
            domain: TimeDomain::EventTime,
        })
    }

    /// Shifts window starts forward by `offset` from the epoch. Fails unless
    /// `offset < size` (and on fractions of a millisecond).
    pub fn with_offset(self, offset: Duration) -> Result<Self, WindowError> {
        self.with_offset_millis(to_millis(Parameter::Offset, offset)?)
    }

    /// Shifts window starts by `offset` milliseconds, which may be negative (a negative
    /// offset `-o` is the same as `size - o`). Fails unless `|offset| < size`.
    pub fn with_offset_millis(self, offset: i64) -> Result<Self, WindowError> {
        Ok(Tumbling {
            offset: offset_within(offset, self.size, Parameter::Size)?,
            ..self
        })
    }

    /// The same windows measured in processing time (the local clock) instead of event
    /// time.
    pub fn processing_time(self) -> Self {
        Tumbling {
            domain: TimeDomain::ProcessingTime,
            ..self
        }
    }

    /// The window length in milliseconds.
    pub fn size_millis(&self) -> i64 {
        self.size
    }

    /// The shift of window starts from the epoch, in milliseconds.
    pub fn offset_millis(&self) -> i64 {
        self.offset
    }
}

impl WindowAssigner for Tumbling {
    /// Appends the one window `[start, start + size)` with `start` aligned to the offset.
    fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>) {
        let start = grid_start(timestamp, self.offset, self.size);
        out.push(window_from(start, self.size));
    }

    fn domain(&self) -> TimeDomain {
        self.domain
    }

    fn name(&self) -> String {
        format!(
            "Tumbling(size={}ms, offset={}ms, {})",
            self.size, self.offset, self.domain
        )
    }
}

/// Fixed-size windows that start every `slide` and so overlap when `slide < size`: an
/// element belongs to every window whose `[start, start + size)` contains its timestamp.
///
/// Window starts are `offset + k * slide` for every integer `k`. When `slide` divides
/// `size` every element is in exactly `size / slide` windows; otherwise in
/// `floor(size / slide)` or `ceil(size / slide)` of them. A slide equal to the size gives
/// tumbling windows. Near the ends of `i64` windows are cut at `i64::MIN` and
/// `i64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sliding {
    size: i64,
    slide: i64,
    offset: i64,
    domain: TimeDomain,
}

impl Sliding {
    /// The most windows one element may be put in, `ceil(size / slide)`. Each window
    /// holds its own copy of the element's state, so beyond this a configuration (say,
    /// a one-day window sliding every millisecond) would exhaust memory; such assigners
    /// are refused when built.
    pub const MAX_WINDOWS_PER_ELEMENT: u64 = 100_000;

    /// Event-time windows of length `size` starting every `slide`, aligned to the epoch.
    ///
    /// Fails if either is zero, has a fraction of a millisecond or exceeds `i64::MAX`
    /// milliseconds, if `slide > size`, or if `size / slide` exceeds
    /// [`MAX_WINDOWS_PER_ELEMENT`](Self::MAX_WINDOWS_PER_ELEMENT).
    pub fn of(size: Duration, slide: Duration) -> Result<Self, WindowError> {
        let size = to_millis(Parameter::Size, size)?;
        let slide = to_millis(Parameter::Slide, slide)?;
        Self::of_millis(size, slide)
    }

    /// Like [`of`](Self::of), with size and slide in milliseconds.
    pub fn of_millis(size: i64, slide: i64) -> Result<Self, WindowError> {
        let size = positive(Parameter::Size, size)?;
        let slide = positive(Parameter::Slide, slide)?;
        if slide > size {
            return Err(WindowError::SlideExceedsSize { slide, size });
        }
        // Both are positive here, so the conversions cannot fail.
        let per_element = size.unsigned_abs().div_ceil(slide.unsigned_abs());
        if per_element > Self::MAX_WINDOWS_PER_ELEMENT {
            return Err(WindowError::TooManyWindows {
                size,
                slide,
                limit: Self::MAX_WINDOWS_PER_ELEMENT,
            });
        }
        Ok(Sliding {
            size,
            slide,
            offset: 0,
            domain: TimeDomain::EventTime,
        })
    }

    /// Shifts window starts forward by `offset` from the epoch. Fails unless
    /// `offset < slide` (and on fractions of a millisecond).
    pub fn with_offset(self, offset: Duration) -> Result<Self, WindowError> {
        self.with_offset_millis(to_millis(Parameter::Offset, offset)?)
    }

    /// Shifts window starts by `offset` milliseconds, which may be negative. Fails unless
    /// `|offset| < slide`.
    pub fn with_offset_millis(self, offset: i64) -> Result<Self, WindowError> {
        Ok(Sliding {
            offset: offset_within(offset, self.slide, Parameter::Slide)?,
            ..self
        })
    }

    /// The same windows measured in processing time (the local clock) instead of event
    /// time.
    pub fn processing_time(self) -> Self {
        Sliding {
            domain: TimeDomain::ProcessingTime,
            ..self
        }
    }

    /// The window length in milliseconds.
    pub fn size_millis(&self) -> i64 {
        self.size
    }

    /// The distance between consecutive window starts, in milliseconds.
    pub fn slide_millis(&self) -> i64 {
        self.slide
    }

    /// The shift of window starts from the epoch, in milliseconds.
    pub fn offset_millis(&self) -> i64 {
        self.offset
    }
}

impl WindowAssigner for Sliding {
    /// Appends every window containing `timestamp`, in increasing order of start, each
    /// `slide` after the previous one.
    fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>) {
        let ts = i128::from(timestamp);
        let slide = i128::from(self.slide);
        // The latest window start at or before `ts`; windows starting after `ts - size`
        // still contain `ts`. Work in i128 so starts below i64::MIN do not overflow.
        let last = grid_start(timestamp, self.offset, self.slide);
        let earliest_allowed = ts - i128::from(self.size); // exclusive
        let steps = (last - earliest_allowed - 1) / slide; // >= 0 since last > ts - size
        let first = last - steps * slide;
        let mut start = first;
        while start <= last {
            out.push(window_from(start, self.size));
            start += slide;
        }
    }

    fn domain(&self) -> TimeDomain {
        self.domain
    }

    fn name(&self) -> String {
        format!(
            "Sliding(size={}ms, slide={}ms, offset={}ms, {})",
            self.size, self.slide, self.offset, self.domain
        )
    }
}

/// Session windows: activity separated by at least `gap` of silence.
///
/// Each element opens the window `[ts, ts + gap)` (the end saturates at `i64::MAX`);
/// windows of one key that overlap or touch are merged by
/// [`MergedWindows`](super::MergedWindows), so a session lasts from its first element
/// until `gap` after its last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Session {
    gap: i64,
    domain: TimeDomain,
}

impl Session {
    /// Event-time sessions closed by `gap` of inactivity. Fails if `gap` is zero, has a
    /// fraction of a millisecond, or exceeds `i64::MAX` milliseconds.
    pub fn with_gap(gap: Duration) -> Result<Self, WindowError> {
        Self::with_gap_millis(to_millis(Parameter::Gap, gap)?)
    }

    /// Like [`with_gap`](Self::with_gap), with the gap in milliseconds; fails unless
    /// `gap > 0`.
    pub fn with_gap_millis(gap: i64) -> Result<Self, WindowError> {
        Ok(Session {
            gap: positive(Parameter::Gap, gap)?,
            domain: TimeDomain::EventTime,
        })
    }

    /// The same sessions measured in processing time (the local clock) instead of event
    /// time.
    pub fn processing_time(self) -> Self {
        Session {
            domain: TimeDomain::ProcessingTime,
            ..self
        }
    }

    /// The inactivity gap in milliseconds.
    pub fn gap_millis(&self) -> i64 {
        self.gap
    }
}

impl WindowAssigner for Session {
    /// Appends `[timestamp, timestamp + gap)`, saturating at `i64::MAX`.
    fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::new(
            timestamp,
            timestamp.saturating_add(self.gap),
        ));
    }

    fn is_merging(&self) -> bool {
        true
    }

    fn domain(&self) -> TimeDomain {
        self.domain
    }

    fn name(&self) -> String {
        format!("Session(gap={}ms, {})", self.gap, self.domain)
    }
}

/// Puts every element in the single window [`TimeWindow::GLOBAL`].
///
/// The global window never completes by time before the end of the input, so it is used
/// with triggers that fire on something else: a count of elements, or custom logic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Global;

impl WindowAssigner for Global {
    /// Appends [`TimeWindow::GLOBAL`] whatever the timestamp.
    fn assign(&self, _timestamp: i64, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::GLOBAL);
    }

    fn name(&self) -> String {
        "Global".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAFE: i64 = 1 << 60;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn w(start: i64, end: i64) -> TimeWindow {
        TimeWindow::new(start, end)
    }

    // ---- tumbling ----

    #[test]
    fn tumbling_known_examples() {
        let t = Tumbling::of(ms(5000)).unwrap();
        assert_eq!(t.windows_of(0), vec![w(0, 5000)]);
        assert_eq!(t.windows_of(4999), vec![w(0, 5000)]);
        assert_eq!(t.windows_of(5000), vec![w(5000, 10000)]);
        assert_eq!(t.windows_of(-1), vec![w(-5000, 0)]);
        assert_eq!(t.windows_of(-5000), vec![w(-5000, 0)]);
        assert_eq!(t.windows_of(-5001), vec![w(-10000, -5000)]);

        let shifted = t.with_offset(ms(1000)).unwrap();
        assert_eq!(shifted.windows_of(0), vec![w(-4000, 1000)]);
        assert_eq!(shifted.windows_of(1000), vec![w(1000, 6000)]);
        assert_eq!(shifted.windows_of(-4001), vec![w(-9000, -4000)]);

        // A negative offset is the positive one less a size.
        let back = t.with_offset_millis(-4000).unwrap();
        for ts in [-12_345, -1, 0, 999, 1000, 77_777] {
            assert_eq!(back.windows_of(ts), shifted.windows_of(ts));
        }
    }

    #[test]
    fn tumbling_hourly_aligns_to_the_hour() {
        let hour = Tumbling::of(Duration::from_secs(3600)).unwrap();
        // 2021-01-01T10:30:00Z
        let ts = 1_609_497_000_000;
        assert_eq!(
            hour.windows_of(ts),
            vec![w(1_609_495_200_000, 1_609_498_800_000)]
        );
    }

    #[test]
    fn tumbling_appends_without_clearing() {
        let t = Tumbling::of_millis(10).unwrap();
        let mut out = vec![w(1, 2)];
        t.assign(15, &mut out);
        assert_eq!(out, vec![w(1, 2), w(10, 20)]);
    }

    #[test]
    fn tumbling_saturates_at_the_ends_of_time() {
        let t = Tumbling::of_millis(10).unwrap();
        let low = t.windows_of(i64::MIN);
        assert_eq!(low.len(), 1);
        assert!(low[0].contains(i64::MIN));
        assert_eq!(low[0].start, i64::MIN);
        // i64::MIN = -9223372036854775808 lies in [-...810, -...800): cut at MIN.
        assert_eq!(low[0].end, -9_223_372_036_854_775_800);

        let high = t.windows_of(i64::MAX);
        assert_eq!(high, vec![w(9_223_372_036_854_775_800, i64::MAX)]);
        assert!(high[0].contains(i64::MAX - 1));

        let huge = Tumbling::of_millis(i64::MAX).unwrap();
        assert_eq!(huge.windows_of(0), vec![w(0, i64::MAX)]);
        assert_eq!(huge.windows_of(-1), vec![w(-i64::MAX, 0)]);
        assert_eq!(huge.windows_of(i64::MIN), vec![w(i64::MIN, -i64::MAX)]);

        let shifted = Tumbling::of_millis(i64::MAX)
            .unwrap()
            .with_offset_millis(i64::MAX - 1)
            .unwrap();
        for ts in [i64::MIN, -1, 0, 1, i64::MAX - 2, i64::MAX - 1] {
            let got = shifted.windows_of(ts);
            assert_eq!(got.len(), 1);
            assert!(got[0].contains(ts), "{ts} not in {}", got[0]);
        }
    }

    #[test]
    fn tumbling_rejects_bad_parameters() {
        let err = Tumbling::of(Duration::ZERO).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Size);
        assert!(err.to_string().contains("size 0 ms"), "{err}");

        let err = Tumbling::of_millis(-5).unwrap_err();
        assert_eq!(
            err,
            WindowError::NotPositive {
                parameter: Parameter::Size,
                millis: -5
            }
        );
        assert!(err.to_string().contains("-5"));

        let err = Tumbling::of(Duration::from_micros(500)).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Size);
        assert!(err.to_string().contains("500µs"), "{err}");

        assert_eq!(
            Tumbling::of(Duration::MAX).unwrap_err().parameter(),
            Parameter::Size
        );

        let t = Tumbling::of(ms(5000)).unwrap();
        let err = t.with_offset(ms(5000)).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Offset);
        let text = err.to_string();
        assert!(
            text.contains("offset 5000 ms") && text.contains("size"),
            "{text}"
        );
        assert!(t.with_offset_millis(-5000).is_err());
        assert!(t.with_offset_millis(i64::MIN).is_err());
        assert!(t.with_offset(ms(4999)).is_ok());
    }

    #[test]
    fn tumbling_accessors_domain_and_name() {
        let t = Tumbling::of(ms(5000))
            .unwrap()
            .with_offset(ms(250))
            .unwrap();
        assert_eq!((t.size_millis(), t.offset_millis()), (5000, 250));
        assert_eq!(t.domain(), TimeDomain::EventTime);
        assert!(!t.is_merging());
        let p = t.processing_time();
        assert_eq!(p.domain(), TimeDomain::ProcessingTime);
        assert_eq!(p.windows_of(7), t.windows_of(7));
        assert_eq!(
            p.name(),
            "Tumbling(size=5000ms, offset=250ms, processing time)"
        );
    }

    proptest! {
        #[test]
        fn tumbling_every_timestamp_in_exactly_one_aligned_window(
            ts in -SAFE..SAFE,
            size in 1i64..(1 << 40),
            offset_frac in -1.0f64..1.0,
        ) {
            // An offset strictly inside (-size, size).
            let offset = ((size - 1) as f64 * offset_frac) as i64;
            let t = Tumbling::of_millis(size).unwrap().with_offset_millis(offset).unwrap();
            let got = t.windows_of(ts);
            prop_assert_eq!(got.len(), 1);
            let win = got[0];
            prop_assert!(win.contains(ts));
            prop_assert_eq!(win.end - win.start, size);
            prop_assert_eq!((win.start - offset).rem_euclid(size), 0);
            // The neighbouring windows of the same grid do not contain it.
            prop_assert!(!TimeWindow::new(win.start - size, win.start).contains(ts));
            prop_assert!(!TimeWindow::new(win.end, win.end + size).contains(ts));
            // Every timestamp of the window maps back to the same window.
            prop_assert_eq!(t.windows_of(win.start), vec![win]);
            prop_assert_eq!(t.windows_of(win.max_timestamp()), vec![win]);
        }

        #[test]
        fn tumbling_never_panics_on_any_input(
            ts in any::<i64>(),
            size in 1i64..=i64::MAX,
            offset_frac in -1.0f64..1.0,
        ) {
            let offset = ((size - 1) as f64 * offset_frac) as i64;
            let offset = offset.clamp(-(size - 1), size - 1);
            let t = Tumbling::of_millis(size).unwrap().with_offset_millis(offset).unwrap();
            let got = t.windows_of(ts);
            prop_assert_eq!(got.len(), 1);
            prop_assert!(got[0].start <= ts);
            if ts < i64::MAX {
                prop_assert!(got[0].contains(ts));
            } else {
                prop_assert_eq!(got[0].end, i64::MAX);
            }
        }
    }

    // ---- sliding ----

    /// Every window of the (size, slide, offset) grid that contains `ts`, found by
    /// testing each candidate start one millisecond at a time.
    fn brute_force_sliding(ts: i64, size: i64, slide: i64, offset: i64) -> Vec<TimeWindow> {
        ((ts - size - slide)..=(ts + slide))
            .filter(|s| (s - offset).rem_euclid(slide) == 0)
            .map(|s| TimeWindow::new(s, s + size))
            .filter(|win| win.contains(ts))
            .collect()
    }

    #[test]
    fn sliding_known_examples() {
        let s = Sliding::of(ms(10), ms(5)).unwrap();
        assert_eq!(s.windows_of(7), vec![w(0, 10), w(5, 15)]);
        assert_eq!(s.windows_of(0), vec![w(-5, 5), w(0, 10)]);
        assert_eq!(s.windows_of(-1), vec![w(-10, 0), w(-5, 5)]);

        let s = Sliding::of_millis(10, 3).unwrap();
        assert_eq!(
            s.windows_of(0),
            vec![w(-9, 1), w(-6, 4), w(-3, 7), w(0, 10)]
        );
        assert_eq!(s.windows_of(1), vec![w(-6, 4), w(-3, 7), w(0, 10)]);

        let s = Sliding::of_millis(10, 5)
            .unwrap()
            .with_offset_millis(2)
            .unwrap();
        assert_eq!(s.windows_of(0), vec![w(-8, 2), w(-3, 7)]);

        // slide == size: tumbling.
        let s = Sliding::of_millis(10, 10).unwrap();
        assert_eq!(s.windows_of(-3), vec![w(-10, 0)]);
    }

    #[test]
    fn sliding_saturates_at_the_ends_of_time() {
        let s = Sliding::of_millis(10, 3).unwrap();
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX] {
            let got = s.windows_of(ts);
            assert!(!got.is_empty() && got.len() <= 4, "{got:?}");
            for win in &got {
                assert!(win.start <= ts);
                if ts < i64::MAX {
                    assert!(win.contains(ts), "{ts} not in {win}");
                }
            }
            // Distinct and increasing.
            assert!(got.windows(2).all(|p| p[0] < p[1]), "{got:?}");
        }
        let huge = Sliding::of_millis(i64::MAX, i64::MAX / 2).unwrap();
        for ts in [i64::MIN, -1, 0, i64::MAX - 1] {
            for win in huge.windows_of(ts) {
                assert!(win.contains(ts), "{ts} not in {win}");
            }
        }
    }

    #[test]
    fn sliding_rejects_bad_parameters() {
        let err = Sliding::of(Duration::ZERO, ms(5)).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Size);
        let err = Sliding::of(ms(10), Duration::ZERO).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Slide);
        assert!(err.to_string().contains("slide 0 ms"), "{err}");
        let err = Sliding::of_millis(10, -2).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Slide);
        assert!(err.to_string().contains("-2"));

        let err = Sliding::of(ms(10), ms(11)).unwrap_err();
        assert_eq!(
            err,
            WindowError::SlideExceedsSize {
                slide: 11,
                size: 10
            }
        );
        assert!(err.to_string().contains("slide 11 ms"), "{err}");

        let err = Sliding::of(Duration::from_secs(86_400), ms(1)).unwrap_err();
        assert!(matches!(err, WindowError::TooManyWindows { .. }));
        assert_eq!(err.parameter(), Parameter::Slide);
        let limit = Sliding::MAX_WINDOWS_PER_ELEMENT as i64;
        assert!(Sliding::of_millis(limit, 1).is_ok());
        assert!(Sliding::of_millis(limit + 1, 1).is_err());

        let s = Sliding::of(ms(10), ms(5)).unwrap();
        let err = s.with_offset(ms(5)).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Offset);
        let text = err.to_string();
        assert!(
            text.contains("offset 5 ms") && text.contains("slide"),
            "{text}"
        );
        assert!(s.with_offset(ms(4)).is_ok());
        assert!(s.with_offset_millis(-4).is_ok());
        assert!(s.with_offset_millis(-5).is_err());
    }

    #[test]
    fn sliding_accessors_domain_and_name() {
        let s = Sliding::of(ms(10), ms(5))
            .unwrap()
            .with_offset(ms(1))
            .unwrap();
        assert_eq!(
            (s.size_millis(), s.slide_millis(), s.offset_millis()),
            (10, 5, 1)
        );
        assert_eq!(s.domain(), TimeDomain::EventTime);
        assert!(!s.is_merging());
        assert_eq!(s.processing_time().domain(), TimeDomain::ProcessingTime);
        assert_eq!(
            s.name(),
            "Sliding(size=10ms, slide=5ms, offset=1ms, event time)"
        );
    }

    proptest! {
        #[test]
        fn sliding_matches_brute_force(
            ts in -SAFE..SAFE,
            slide in 1i64..200,
            extra in 0i64..1000,
            offset_frac in -1.0f64..1.0,
        ) {
            let size = slide + extra;
            let offset = ((slide - 1) as f64 * offset_frac) as i64;
            let s = Sliding::of_millis(size, slide).unwrap().with_offset_millis(offset).unwrap();
            let got = s.windows_of(ts);
            for win in &got {
                prop_assert!(win.contains(ts));
                prop_assert_eq!(win.end - win.start, size);
                prop_assert_eq!((win.start - offset).rem_euclid(slide), 0);
            }
            for pair in got.windows(2) {
                prop_assert_eq!(pair[1].start - pair[0].start, slide);
            }
            prop_assert_eq!(&got, &brute_force_sliding(ts, size, slide, offset));
            let n = got.len() as i64;
            prop_assert!(n == size / slide || n == (size + slide - 1) / slide);
            if size % slide == 0 {
                prop_assert_eq!(n, size / slide);
            }
        }

        #[test]
        fn sliding_never_panics_on_any_input(
            ts in any::<i64>(),
            size in 1i64..=i64::MAX,
            slide_frac in 0.0f64..=1.0,
            offset_frac in -1.0f64..1.0,
        ) {
            // Keep size/slide within the per-element limit.
            let min_slide = (size / Sliding::MAX_WINDOWS_PER_ELEMENT as i64).max(1);
            let slide = (min_slide as f64 + (size - min_slide) as f64 * slide_frac) as i64;
            let slide = slide.clamp(min_slide, size);
            let slide = if size.unsigned_abs().div_ceil(slide.unsigned_abs())
                > Sliding::MAX_WINDOWS_PER_ELEMENT { slide + 1 } else { slide };
            let offset = ((slide - 1) as f64 * offset_frac) as i64;
            let offset = offset.clamp(-(slide - 1), slide - 1);
            let s = Sliding::of_millis(size, slide).unwrap().with_offset_millis(offset).unwrap();
            let got = s.windows_of(ts);
            prop_assert!(!got.is_empty());
            prop_assert!(got.len() as u64 <= size.unsigned_abs().div_ceil(slide.unsigned_abs()));
            for win in &got {
                prop_assert!(win.start <= ts);
                if ts < i64::MAX {
                    prop_assert!(win.contains(ts));
                }
            }
            prop_assert!(got.windows(2).all(|p| p[0] < p[1]));
        }
    }

    // ---- session and global ----

    #[test]
    fn session_assigns_gap_window_and_merges() {
        let s = Session::with_gap(Duration::from_secs(30)).unwrap();
        assert!(s.is_merging());
        assert_eq!(s.gap_millis(), 30_000);
        assert_eq!(s.windows_of(-10), vec![w(-10, 29_990)]);
        assert_eq!(s.windows_of(i64::MAX - 5), vec![w(i64::MAX - 5, i64::MAX)]);
        assert_eq!(s.windows_of(i64::MIN), vec![w(i64::MIN, i64::MIN + 30_000)]);
        assert_eq!(s.domain(), TimeDomain::EventTime);
        let p = s.processing_time();
        assert_eq!(p.domain(), TimeDomain::ProcessingTime);
        assert_eq!(p.name(), "Session(gap=30000ms, processing time)");
    }

    #[test]
    fn session_rejects_bad_gap() {
        let err = Session::with_gap(Duration::ZERO).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Gap);
        assert!(err.to_string().contains("gap 0 ms"), "{err}");
        let err = Session::with_gap_millis(-100).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Gap);
        assert!(err.to_string().contains("-100"));
        assert_eq!(
            Session::with_gap(Duration::from_nanos(1))
                .unwrap_err()
                .parameter(),
            Parameter::Gap
        );
    }

    #[test]
    fn global_assigns_the_global_window() {
        for ts in [i64::MIN, -1, 0, i64::MAX] {
            assert_eq!(Global.windows_of(ts), vec![TimeWindow::GLOBAL]);
        }
        assert!(!Global.is_merging());
        assert_eq!(Global.name(), "Global");
    }

    /// A user-defined assigner only has to provide `assign` and `name`.
    #[derive(Clone)]
    struct EveryOther;

    impl WindowAssigner for EveryOther {
        fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>) {
            if timestamp % 2 == 0 {
                out.push(TimeWindow::new(timestamp, timestamp.saturating_add(1)));
            }
        }
        fn name(&self) -> String {
            "EveryOther".into()
        }
    }

    #[test]
    fn users_can_implement_assigners() {
        fn boxed_names<A: WindowAssigner>(a: &A) -> String {
            a.name()
        }
        assert_eq!(EveryOther.windows_of(4), vec![w(4, 5)]);
        assert!(EveryOther.windows_of(3).is_empty());
        assert_eq!(EveryOther.domain(), TimeDomain::EventTime);
        assert_eq!(boxed_names(&EveryOther), "EveryOther");
    }
}
