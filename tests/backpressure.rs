//! Backpressure, not buffering: with a sink far slower than the source, the records in
//! flight stay bounded by the mailboxes and the source spends its time blocked.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Numbers;
use weir::connector::SinkError;
use weir::prelude::*;

/// Sleeps 1 ms every 32 records: about 32,000 records/s per partition.
#[derive(Clone, Default)]
struct SlowSink {
    consumed: Arc<AtomicU64>,
}

struct SlowPart {
    seen: u64,
    consumed: Arc<AtomicU64>,
}

impl SinkFactory<(u64, u64)> for SlowSink {
    type Sink = SlowPart;
    fn name(&self) -> String {
        "slow".into()
    }
    fn create(&self, _p: u32, _n: u32) -> Result<SlowPart, SinkError> {
        Ok(SlowPart {
            seen: 0,
            consumed: self.consumed.clone(),
        })
    }
}

impl Sink<(u64, u64)> for SlowPart {
    fn write(&mut self, _item: (u64, u64)) -> Result<(), SinkError> {
        self.seen += 1;
        self.consumed.fetch_add(1, Ordering::Relaxed);
        if self.seen.is_multiple_of(32) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

#[test]
fn a_slow_sink_slows_the_source_and_memory_stays_bounded() {
    let options = EngineOptions::for_tests(2);
    let (capacity, batch) = (options.mailbox_capacity as u64, options.batch_size as u64);
    let stop = StopFlag::new();
    let source = Numbers::endless(stop.clone());
    let emitted = source.emitted.clone();
    let sink = SlowSink::default();
    let consumed = sink.consumed.clone();
    let job = Job::new("backpressure")
        .source(source)
        .key_by(|x: &u64| x % 1_000)
        .reduce(|a, b| a + b)
        .sink(sink);

    // Observed every 10 ms: (records in flight, deepest mailbox, capacity).
    let samples: Arc<Mutex<Vec<(u64, usize, usize)>>> = Arc::default();
    let s = samples.clone();
    let (e, c) = (emitted.clone(), consumed.clone());
    let control = RunControl {
        stop: Some(stop),
        duration: Some(Duration::from_millis(1_500)),
        observer: Some(Box::new(move |live| {
            let in_flight = e
                .load(Ordering::Relaxed)
                .saturating_sub(c.load(Ordering::Relaxed));
            // The fullest mailbox relative to its own capacity (a mailbox holds
            // `capacity` messages per input channel).
            let (deepest, cap) = live
                .stages
                .iter()
                .flat_map(|(_, a)| a.iter())
                .map(|a| (a.mailbox_depth, a.mailbox_capacity))
                .max_by_key(|&(d, c)| d as i64 - c as i64)
                .unwrap_or((0, 1));
            s.lock().unwrap().push((in_flight, deepest, cap));
        })),
        observe_every: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let report = Node::new(options)
        .unwrap()
        .run_with(job, control)
        .expect("job finishes after stop");

    let samples = samples.lock().unwrap();
    assert!(samples.len() > 20, "observed {} times", samples.len());
    // What can be in flight: per source partition, one round of reading (a batch's
    // worth) plus partly filled batches for each destination; per keyed partition a
    // full mailbox (capacity per input channel, two inputs) plus the batch being
    // handled.
    let bound = 2 * (batch + 2 * batch) + 2 * (2 * capacity + 1) * batch;
    let worst = samples.iter().map(|s| s.0).max().unwrap();
    assert!(worst <= bound, "{worst} records in flight, bound {bound}");
    for &(_, deepest, cap) in samples.iter() {
        assert!(
            deepest <= cap,
            "a mailbox held {deepest} messages, capacity {cap}"
        );
    }
    // The source could emit millions per second; the sink takes ~64,000/s, and the
    // source followed it.
    let total = emitted.load(Ordering::Relaxed);
    assert!(
        total < 400_000,
        "the source emitted {total} records in 1.5 s"
    );
    assert_eq!(
        total,
        consumed.load(Ordering::Relaxed),
        "everything emitted reached the sink"
    );
    let source_stage = &report.stages[0];
    assert!(
        source_stage.send_wait > Duration::from_millis(500),
        "the sources were blocked only {:?}",
        source_stage.send_wait
    );
}
