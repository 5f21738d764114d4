//! A source of `(key, timestamp)` events given in advance, a count aggregate and a
//! watermark strategy over them: the event-time tests' material.

use std::time::Duration;

use weir::connector::{ReadStatus, SourceError};
use weir::operator::Collector;
use weir::prelude::*;

/// A source of `(key, timestamp)` events given in advance, split round-robin; a split
/// whose list is exhausted can stay open (idle) until `stop`.
#[derive(Clone)]
pub struct Events {
    pub events: Vec<(u64, i64)>,
    pub stop: Option<StopFlag>,
}

pub struct EventsReader {
    events: Vec<(u64, i64)>,
    at: usize,
    stop: Option<StopFlag>,
}

impl EventsReader {
    /// Reads `events` in order, one per round, then ends.
    pub fn of(events: Vec<(u64, i64)>) -> Self {
        EventsReader {
            events,
            at: 0,
            stop: None,
        }
    }
}

impl Source for Events {
    type Item = (u64, i64);
    type Reader = EventsReader;
    fn name(&self) -> String {
        "events".into()
    }
    fn reader(&self, split: u32, splits: u32) -> Result<EventsReader, SourceError> {
        let events = self
            .events
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % splits == split)
            .map(|(_, e)| *e)
            .collect();
        Ok(EventsReader {
            events,
            at: 0,
            stop: self.stop.clone(),
        })
    }
}

impl SourceReader for EventsReader {
    type Item = (u64, i64);
    /// One event per round, so that a watermark can follow every event: lateness is
    /// then decided by the order of the list, not by how events fall into rounds.
    fn read<C: Collector<(u64, i64)>>(
        &mut self,
        _budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        if let Some(e) = self.events.get(self.at) {
            out.collect(*e);
            self.at += 1;
        }
        if self.at < self.events.len() {
            return Ok(ReadStatus::More);
        }
        match &self.stop {
            Some(stop) if !stop.is_stopped() => Ok(ReadStatus::Idle),
            _ => Ok(ReadStatus::Exhausted),
        }
    }
}

#[derive(Clone, Copy, Default)]
pub struct Count;

impl AggregateFn<(u64, i64)> for Count {
    type Acc = u64;
    type Output = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: (u64, i64)) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// An event's timestamp.
pub fn event_ts(e: &(u64, i64)) -> i64 {
    e.1
}

/// Reads an event's timestamp.
pub type EventTs = fn(&(u64, i64)) -> i64;

pub fn time(bound_ms: u64) -> WatermarkStrategy<EventTs> {
    let ts: EventTs = event_ts;
    WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(bound_ms), ts)
        .with_interval(Duration::ZERO)
}
