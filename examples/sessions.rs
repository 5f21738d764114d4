//! Event-time session windows over a generated click stream.
//!
//!     cargo run --release --example sessions
//!
//! Each user clicks in bursts; a session ends after 30 s without a click. Clicks arrive
//! up to 5 s out of order. Prints the ten longest sessions (user, start, end, clicks).

use std::time::Duration;

use weir::connector::generator::splitmix64;
use weir::connector::{ReadStatus, SourceError};
use weir::prelude::*;
use weir::window::{Session, WindowResult};

/// A click: user id and event time in ms.
type Click = (u32, i64);

/// 200,000 clicks of 500 users over about an hour of event time, out of order by up
/// to 5 s.
#[derive(Clone)]
struct Clicks;

struct ClickReader {
    next: u64,
    step: u64,
}

const CLICKS: u64 = 200_000;

fn click(i: u64) -> Click {
    let r = splitmix64(i);
    let user = (r % 500) as u32;
    // Bursts: users are active in 2-minute stretches of each 10 minutes.
    let base = (i as i64) * 18; // ~18 ms per click overall
    let phase = (splitmix64(u64::from(user)) % 600_000) as i64;
    let active = (base + phase) % 600_000 < 120_000;
    let jitter = (r >> 40) as i64 % 5_000;
    let t = if active {
        base - jitter
    } else {
        base + 200_000 - jitter
    };
    (user, t.max(0))
}

impl Source for Clicks {
    type Item = Click;
    type Reader = ClickReader;
    fn name(&self) -> String {
        "clicks".into()
    }
    fn reader(&self, split: u32, splits: u32) -> Result<ClickReader, SourceError> {
        Ok(ClickReader {
            next: u64::from(split),
            step: u64::from(splits.max(1)),
        })
    }
}

impl SourceReader for ClickReader {
    type Item = Click;
    fn read<C: Collector<Click>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        for _ in 0..budget {
            if self.next >= CLICKS {
                return Ok(ReadStatus::Exhausted);
            }
            out.collect(click(self.next));
            self.next += self.step;
        }
        Ok(ReadStatus::More)
    }
}

/// Counts clicks.
#[derive(Clone, Copy)]
struct CountClicks;

impl AggregateFn<Click> for CountClicks {
    type Acc = u64;
    type Output = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _click: Click) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = CollectSink::<WindowResult<u32, u64>>::new();
    let time = WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(5), |c: &Click| c.1);
    let windowed = Job::new("sessions")
        .source_with_time(Clicks, time)
        .key_by(|c: &Click| c.0)
        .window(Session::with_gap(Duration::from_secs(30))?);
    let late = windowed.late_records();
    let job = windowed.aggregate(CountClicks).sink(sessions.clone());

    let options = EngineOptions {
        progress: None,
        ..Default::default()
    };
    let report = Node::new(options)?.run(job)?;

    let mut all = sessions.items();
    all.sort_by_key(|s| std::cmp::Reverse(s.window.end - s.window.start));
    println!("user\tstart_s\tend_s\tclicks");
    for s in all.iter().take(10) {
        println!(
            "{}\t{:.1}\t{:.1}\t{}",
            s.key,
            s.window.start as f64 / 1e3,
            s.window.end as f64 / 1e3,
            s.value
        );
    }
    let clicks: u64 = all.iter().map(|s| s.value).sum();
    eprintln!(
        "{} sessions, {clicks} clicks in sessions, {} late clicks",
        all.len(),
        late.load(std::sync::atomic::Ordering::Relaxed)
    );
    eprint!("{report}");
    Ok(())
}
