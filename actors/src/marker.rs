//! Control markers: messages that travel in-band, in the same mailbox and the same
//! order as the data, so that "everything before the marker" is well defined on every
//! channel.

/// A control marker sent by one upstream partition actor to one downstream actor, in
/// the same stream of messages as its record batches.
///
/// Markers never overtake data: a marker sent after a batch is handled after it. This
/// is what later lets epoch markers cut consistent snapshots and watermarks bound event
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Marker {
    /// The sender will send nothing more: its input is exhausted. An actor whose every
    /// input has ended finishes its own work, forwards this marker and stops.
    EndOfInput,
    /// Event-time progress: the sender will send no more records with a timestamp at
    /// or below this one (milliseconds), except late ones. An actor's watermark is the
    /// minimum over its active inputs and never goes backwards.
    Watermark(i64),
    /// The sender has had no input for a while: until it sends a watermark again, it
    /// does not hold back its receivers' watermarks.
    Idle,
    /// Epoch barrier `e`: everything the sender sent before it belongs to epochs
    /// below `e`, everything after it to epoch `e` or later. An actor with several
    /// inputs aligns the barrier (holds back the inputs that delivered it until all
    /// have), snapshots its state, forwards it and acknowledges; see
    /// [`crate::checkpoint`].
    Barrier(u64),
}

/// The lowest possible watermark: no event-time progress yet.
pub const NO_WATERMARK: i64 = i64::MIN;

/// Per-input watermarks of one actor, combined into the actor's own watermark: the
/// minimum over inputs that are neither idle nor ended.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    inputs: Vec<InputProgress>,
    current: i64,
}

#[derive(Debug, Clone, Copy)]
struct InputProgress {
    watermark: i64,
    idle: bool,
    ended: bool,
}

/// What a change at one input did to the combined watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing changed downstream.
    Unchanged,
    /// The combined watermark advanced to this value.
    Advanced(i64),
    /// Every input that has not ended is idle: the actor is idle too.
    AllIdle,
}

impl WatermarkTracker {
    /// A tracker for `inputs` inputs, none of which has sent a watermark.
    pub fn new(inputs: usize) -> Self {
        WatermarkTracker {
            inputs: vec![
                InputProgress {
                    watermark: NO_WATERMARK,
                    idle: false,
                    ended: false,
                };
                inputs
            ],
            current: NO_WATERMARK,
        }
    }

    /// The combined watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Whether every input that has not ended is idle (and at least one is open).
    pub fn all_idle(&self) -> bool {
        let mut open = false;
        for input in &self.inputs {
            if !input.ended {
                open = true;
                if !input.idle {
                    return false;
                }
            }
        }
        open
    }

    /// Input `i` sent watermark `w` (and so is active).
    pub fn watermark(&mut self, i: usize, w: i64) -> Progress {
        if let Some(input) = self.inputs.get_mut(i) {
            input.watermark = input.watermark.max(w);
            input.idle = false;
        }
        self.recompute()
    }

    /// Input `i` went idle.
    pub fn idle(&mut self, i: usize) -> Progress {
        if let Some(input) = self.inputs.get_mut(i) {
            input.idle = true;
        }
        self.recompute()
    }

    /// Input `i` ended: it holds nothing back any more.
    pub fn ended(&mut self, i: usize) -> Progress {
        if let Some(input) = self.inputs.get_mut(i) {
            input.ended = true;
        }
        self.recompute()
    }

    fn recompute(&mut self) -> Progress {
        let mut min = i64::MAX;
        let mut active = false;
        let mut open = false;
        for input in &self.inputs {
            if input.ended {
                continue;
            }
            open = true;
            if !input.idle {
                active = true;
                min = min.min(input.watermark);
            }
        }
        if open && !active {
            return Progress::AllIdle;
        }
        // With every input ended the watermark is +infinity (i64::MAX).
        if min > self.current {
            self.current = min;
            Progress::Advanced(min)
        } else {
            Progress::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_the_minimum_of_active_inputs_and_never_goes_back() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.watermark(0, 10), Progress::Unchanged);
        assert_eq!(t.watermark(1, 5), Progress::Advanced(5));
        assert_eq!(t.watermark(1, 20), Progress::Advanced(10));
        assert_eq!(
            t.watermark(0, 8),
            Progress::Unchanged,
            "input 0 cannot go back"
        );
        assert_eq!(t.current(), 10);
        assert_eq!(t.watermark(0, 15), Progress::Advanced(15));
    }

    #[test]
    fn an_idle_input_stops_holding_back_and_all_idle_is_reported() {
        let mut t = WatermarkTracker::new(2);
        t.watermark(0, 100);
        assert_eq!(t.idle(1), Progress::Advanced(100));
        assert_eq!(t.idle(0), Progress::AllIdle);
        assert_eq!(
            t.watermark(1, 50),
            Progress::Unchanged,
            "active again, but behind"
        );
        assert_eq!(
            t.watermark(1, 200),
            Progress::Advanced(200),
            "idle input 0 holds nothing back"
        );
    }

    #[test]
    fn all_idle_is_known_until_an_input_is_active_again() {
        let mut t = WatermarkTracker::new(2);
        t.watermark(0, 10);
        t.idle(0);
        t.idle(1);
        assert!(t.all_idle());
        t.watermark(1, 5);
        assert!(
            !t.all_idle(),
            "an input that sends a watermark is active, even behind"
        );
    }

    #[test]
    fn ended_inputs_release_the_watermark_to_infinity() {
        let mut t = WatermarkTracker::new(2);
        t.watermark(0, 3);
        t.watermark(1, 4);
        assert_eq!(t.ended(0), Progress::Advanced(4));
        assert_eq!(t.ended(1), Progress::Advanced(i64::MAX));
    }
}
