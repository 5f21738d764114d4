//! Consumer lag without extra requests: librdkafka's statistics (emitted every
//! `statistics.interval.ms`, see [`super::settings::DEFAULTS`]) carry each fetched
//! partition's end offsets. The consumer's context keeps the latest ones; the
//! reader, which knows its own positions, turns them into
//! `weir_kafka_consumer_lag_records` after its next poll.

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::{ClientContext, Statistics};

/// A consumer whose context collects end offsets from the statistics.
pub type SplitConsumer = BaseConsumer<LagContext>;

/// The end offset of one partition: `(topic, partition, offset)`.
pub type EndOffset = (String, i32, i64);

/// The consumer context of a reader: keeps the end offsets of the latest statistics.
#[derive(Default)]
pub struct LagContext {
    latest: Mutex<Option<Vec<EndOffset>>>,
}

impl LagContext {
    /// The end offsets of the statistics that arrived since the last call, if any.
    pub fn take(&self) -> Option<Vec<EndOffset>> {
        match self.latest.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// Each partition's readable end in `statistics`: the last stable offset when the
/// broker reported one (what a read-committed consumer can reach), else the high
/// watermark. Partitions with neither known, and librdkafka's internal partition
/// `-1`, are left out.
pub fn end_offsets(statistics: &Statistics) -> Vec<EndOffset> {
    let mut ends = Vec::new();
    for (topic, stats) in &statistics.topics {
        for (partition, p) in &stats.partitions {
            let end = if p.ls_offset >= 0 {
                p.ls_offset
            } else {
                p.hi_offset
            };
            if *partition >= 0 && end >= 0 {
                ends.push((topic.clone(), *partition, end));
            }
        }
    }
    ends
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let ends = end_offsets(&statistics);
        match self.latest.lock() {
            Ok(mut guard) => *guard = Some(ends),
            Err(poisoned) => *poisoned.into_inner() = Some(ends),
        }
    }
}

impl ConsumerContext for LagContext {}
