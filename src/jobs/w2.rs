//! The W2 job: events with event time, up to 500 ms out of order -> key by key ->
//! tumbling event-time windows of 1 s -> count and sum per key and window.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::connector::generator::{W2Event, W2Events};
use crate::connector::sinks::CountingSink;
use crate::job::Job;
use crate::operator::AggregateFn;
use crate::time::WatermarkStrategy;
use crate::window::{Tumbling, WindowResult};

/// Count and sum of the values of a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountSum;

impl AggregateFn<W2Event> for CountSum {
    type Acc = (u64, u64);
    type Output = (u64, u64);
    fn create(&self) -> (u64, u64) {
        (0, 0)
    }
    #[inline]
    fn add(&self, acc: &mut (u64, u64), e: W2Event) {
        acc.0 += 1;
        acc.1 += e.value;
    }
    fn merge(&self, acc: &mut (u64, u64), other: (u64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn result(&self, acc: &(u64, u64)) -> (u64, u64) {
        *acc
    }
}

/// The W2 sink: rows keyed by (key, window start), valued (count, sum).
pub type W2Rows = CountingSink<(u64, i64), (u64, u64)>;

/// W2 over `n` events: the job, its sink, and the counter of late records.
pub fn w2(n: u64) -> (Job, W2Rows, Arc<AtomicU64>) {
    w2_aligned(n, None)
}

/// W2 with its sources' watermarks aligned to within `max_drift` of each other (see
/// [`WatermarkStrategy::with_alignment`]); `None` is plain [`w2`]. The rows are the
/// same either way.
pub fn w2_aligned(n: u64, max_drift: Option<Duration>) -> (Job, W2Rows, Arc<AtomicU64>) {
    let sink = W2Rows::new();
    let mut time =
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(500), |e: &W2Event| {
            e.time_ms
        });
    if let Some(drift) = max_drift {
        time = time.with_alignment(drift);
    }
    let windowed = Job::new("w2")
        .source_with_time(W2Events::new(n), time)
        .key_by(|e: &W2Event| e.key)
        .window(Tumbling::of(Duration::from_secs(1)).expect("1 s is a valid window size"));
    let late = windowed.late_records();
    let job = windowed
        .aggregate(CountSum)
        .map(|r: WindowResult<u64, (u64, u64)>| ((r.key, r.window.start), r.value))
        .sink(sink.clone());
    (job, sink, late)
}
