//! Why a window assigner could not be built.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// A parameter of a window assigner, named in a [`WindowError`] so the user knows which
/// argument to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Parameter {
    /// The length of a tumbling or sliding window.
    Size,
    /// How far apart sliding windows start.
    Slide,
    /// The shift of window starts away from the epoch.
    Offset,
    /// The quiet period that closes a session window.
    Gap,
}

impl fmt::Display for Parameter {
    /// Formats as the lower-case parameter name used in the constructors' docs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Parameter::Size => "size",
            Parameter::Slide => "slide",
            Parameter::Offset => "offset",
            Parameter::Gap => "gap",
        })
    }
}

/// A window assigner was given parameters that describe no sensible set of windows.
///
/// Every variant names the offending parameter (see [`WindowError::parameter`]) and the
/// value it was given, and its `Display` says both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// A length (size, slide or gap) was zero or negative.
    NotPositive {
        /// The parameter at fault.
        parameter: Parameter,
        /// The value it was given, in milliseconds.
        millis: i64,
    },
    /// A duration had a fraction of a millisecond; windows are measured in whole
    /// milliseconds, and rounding silently would change the windows.
    NotWholeMillis {
        /// The parameter at fault.
        parameter: Parameter,
        /// The duration it was given.
        value: Duration,
    },
    /// A duration too long to count in `i64` milliseconds (about 292 million years).
    TooLarge {
        /// The parameter at fault.
        parameter: Parameter,
        /// The duration it was given.
        value: Duration,
    },
    /// A sliding window's slide was longer than its size, which would leave gaps of time
    /// that belong to no window.
    SlideExceedsSize {
        /// The slide given, in milliseconds.
        slide: i64,
        /// The size given, in milliseconds.
        size: i64,
    },
    /// An offset was not smaller in magnitude than the period it shifts (the size of a
    /// tumbling window, the slide of a sliding one); such an offset is better written
    /// as its remainder.
    OffsetOutOfRange {
        /// The offset given, in milliseconds.
        offset: i64,
        /// The period the offset must stay within, in milliseconds.
        limit: i64,
        /// Which parameter `limit` is (size or slide).
        limit_parameter: Parameter,
    },
    /// A sliding window whose size is so many slides long that every element would be
    /// copied into more than [`Sliding::MAX_WINDOWS_PER_ELEMENT`](super::Sliding::MAX_WINDOWS_PER_ELEMENT)
    /// windows, which would exhaust memory rather than compute anything useful.
    TooManyWindows {
        /// The size given, in milliseconds.
        size: i64,
        /// The slide given, in milliseconds.
        slide: i64,
        /// The most windows one element may be assigned to.
        limit: u64,
    },
}

impl WindowError {
    /// The parameter that has to change to make the assigner valid.
    pub fn parameter(&self) -> Parameter {
        match self {
            WindowError::NotPositive { parameter, .. }
            | WindowError::NotWholeMillis { parameter, .. }
            | WindowError::TooLarge { parameter, .. } => *parameter,
            WindowError::SlideExceedsSize { .. } | WindowError::TooManyWindows { .. } => {
                Parameter::Slide
            }
            WindowError::OffsetOutOfRange { .. } => Parameter::Offset,
        }
    }
}

impl fmt::Display for WindowError {
    /// Says which parameter is wrong, what it was, and what it has to be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::NotPositive { parameter, millis } => write!(
                f,
                "invalid window {parameter} {millis} ms: it must be at least 1 ms"
            ),
            WindowError::NotWholeMillis { parameter, value } => write!(
                f,
                "invalid window {parameter} {value:?}: it must be a whole number of milliseconds"
            ),
            WindowError::TooLarge { parameter, value } => write!(
                f,
                "invalid window {parameter} {value:?}: it must be at most {} ms",
                i64::MAX
            ),
            WindowError::SlideExceedsSize { slide, size } => write!(
                f,
                "invalid window slide {slide} ms: it must not exceed the size ({size} ms)"
            ),
            WindowError::OffsetOutOfRange {
                offset,
                limit,
                limit_parameter,
            } => write!(
                f,
                "invalid window offset {offset} ms: it must be smaller in magnitude than \
                 the {limit_parameter} ({limit} ms)"
            ),
            WindowError::TooManyWindows { size, slide, limit } => write!(
                f,
                "invalid window slide {slide} ms: with size {size} ms each element would be \
                 in more than {limit} windows; use a longer slide"
            ),
        }
    }
}

impl Error for WindowError {}

/// Converts a duration to whole milliseconds for `parameter`, refusing fractions of a
/// millisecond and values beyond `i64`. Positivity is checked by the caller.
pub(super) fn to_millis(parameter: Parameter, value: Duration) -> Result<i64, WindowError> {
    if value.subsec_nanos() != value.subsec_millis() * 1_000_000 {
        return Err(WindowError::NotWholeMillis { parameter, value });
    }
    i64::try_from(value.as_millis()).map_err(|_| WindowError::TooLarge { parameter, value })
}

/// Checks that a length parameter is at least one millisecond.
pub(super) fn positive(parameter: Parameter, millis: i64) -> Result<i64, WindowError> {
    if millis > 0 {
        Ok(millis)
    } else {
        Err(WindowError::NotPositive { parameter, millis })
    }
}

/// Checks that `offset` is smaller in magnitude than `limit` (a positive period).
pub(super) fn offset_within(
    offset: i64,
    limit: i64,
    limit_parameter: Parameter,
) -> Result<i64, WindowError> {
    if offset.unsigned_abs() < limit.unsigned_abs() {
        Ok(offset)
    } else {
        Err(WindowError::OffsetOutOfRange {
            offset,
            limit,
            limit_parameter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_millis_accepts_whole_millis_only() {
        assert_eq!(to_millis(Parameter::Size, Duration::from_secs(5)), Ok(5000));
        assert_eq!(to_millis(Parameter::Size, Duration::ZERO), Ok(0));
        let half = Duration::from_micros(1500);
        assert_eq!(
            to_millis(Parameter::Gap, half),
            Err(WindowError::NotWholeMillis {
                parameter: Parameter::Gap,
                value: half
            })
        );
        assert!(matches!(
            to_millis(Parameter::Slide, Duration::MAX),
            Err(WindowError::NotWholeMillis { .. })
        ));
        let err = to_millis(Parameter::Slide, Duration::from_secs(u64::MAX)).unwrap_err();
        assert_eq!(err.parameter(), Parameter::Slide);
        assert!(matches!(err, WindowError::TooLarge { .. }));
        assert_eq!(
            to_millis(Parameter::Size, Duration::from_millis(i64::MAX as u64)),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn offset_within_is_strict_and_handles_min() {
        assert_eq!(offset_within(4, 5, Parameter::Size), Ok(4));
        assert_eq!(offset_within(-4, 5, Parameter::Size), Ok(-4));
        assert!(offset_within(5, 5, Parameter::Size).is_err());
        assert!(offset_within(-5, 5, Parameter::Size).is_err());
        assert!(offset_within(i64::MIN, i64::MAX, Parameter::Slide).is_err());
    }

    #[test]
    fn messages_name_parameter_and_value() {
        let cases = [
            (
                WindowError::NotPositive {
                    parameter: Parameter::Gap,
                    millis: -7,
                },
                ["gap", "-7"],
            ),
            (
                WindowError::SlideExceedsSize {
                    slide: 9000,
                    size: 5000,
                },
                ["slide", "9000"],
            ),
            (
                WindowError::OffsetOutOfRange {
                    offset: 6000,
                    limit: 5000,
                    limit_parameter: Parameter::Size,
                },
                ["offset", "6000"],
            ),
            (
                WindowError::NotWholeMillis {
                    parameter: Parameter::Size,
                    value: Duration::from_micros(1500),
                },
                ["size", "1.5ms"],
            ),
            (
                WindowError::TooManyWindows {
                    size: 10_000_000,
                    slide: 1,
                    limit: 100_000,
                },
                ["slide", "1 ms"],
            ),
        ];
        for (err, words) in cases {
            let text = err.to_string();
            for word in words {
                assert!(text.contains(word), "{text:?} should mention {word:?}");
            }
            assert!(text.contains(&err.parameter().to_string()));
        }
    }
}
