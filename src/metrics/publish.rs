//! Publishes a running job's per-actor counters to the `metrics` recorder.
//!
//! Partition actors count into plain atomics ([`weir_actors::ActorStats`]); the
//! node's watch loop hands a copy of them ([`LiveStats`]) to [`JobMetrics::publish`]
//! about once a second, which turns the differences since the last copy into counter
//! increments, histogram observations and gauge values. No metrics call is made on
//! the record path.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Label};
use weir_actors::stats::{PROCESSING_BUCKETS, PROCESSING_BUCKET_BOUNDS_US};
use weir_actors::{StatsSnapshot, NO_WATERMARK};

use super::catalogue as names;
use crate::job::progress::LiveStats;

/// The metric handles of one partition actor and what was last published of it.
struct ActorMetrics {
    records_in: Counter,
    records_out: Counter,
    messages_in: Counter,
    processing: Histogram,
    busy_ratio: Gauge,
    backpressure_ratio: Gauge,
    mailbox_depth: Gauge,
    mailbox_capacity: Gauge,
    /// `weir_source_bytes_total`, registered with the first byte read (actors that
    /// read no bytes do not export it).
    bytes_read: Option<Counter>,
    /// The watermark gauges, registered with the first watermark (an actor that never
    /// sends one does not export them).
    watermark: Option<(Gauge, Gauge)>,
    labels: Vec<Label>,
    /// The counters as last published (zero at the start of an attempt).
    last: StatsSnapshot,
}

impl ActorMetrics {
    fn new(labels: &[Label]) -> Self {
        let l = || labels.to_vec();
        ActorMetrics {
            records_in: metrics::counter!(names::RECORDS_IN, l()),
            records_out: metrics::counter!(names::RECORDS_OUT, l()),
            messages_in: metrics::counter!(names::MESSAGES_IN, l()),
            processing: metrics::histogram!(names::PROCESSING, l()),
            busy_ratio: metrics::gauge!(names::BUSY_RATIO, l()),
            backpressure_ratio: metrics::gauge!(names::BACKPRESSURE_RATIO, l()),
            mailbox_depth: metrics::gauge!(names::MAILBOX_DEPTH, l()),
            mailbox_capacity: metrics::gauge!(names::MAILBOX_CAPACITY, l()),
            bytes_read: None,
            watermark: None,
            labels: labels.to_vec(),
            last: StatsSnapshot::default(),
        }
    }

    /// Publishes `now` (the actor's counters) given that `interval` passed since the
    /// last publication; `wall_ms` is the wall clock in ms since the Unix epoch.
    fn publish(&mut self, now: &StatsSnapshot, interval: Duration, wall_ms: i64) {
        let last = self.last;
        self.records_in
            .increment(now.records_in.saturating_sub(last.records_in));
        self.records_out
            .increment(now.records_out.saturating_sub(last.records_out));
        self.messages_in
            .increment(now.messages_in.saturating_sub(last.messages_in));
        if now.bytes_read > 0 {
            let labels = &self.labels;
            self.bytes_read
                .get_or_insert_with(|| metrics::counter!(names::SOURCE_BYTES, labels.clone()))
                .increment(now.bytes_read.saturating_sub(last.bytes_read));
        }
        for bucket in 0..PROCESSING_BUCKETS {
            let new = now.processing[bucket].saturating_sub(last.processing[bucket]);
            if new > 0 {
                self.processing.record_many(
                    bucket_value(bucket),
                    usize::try_from(new).unwrap_or(usize::MAX),
                );
            }
        }
        if !interval.is_zero() {
            let wall = interval.as_secs_f64();
            let busy = now.busy.saturating_sub(last.busy).as_secs_f64();
            let blocked = now.send_wait.saturating_sub(last.send_wait).as_secs_f64();
            self.busy_ratio.set((busy / wall).clamp(0.0, 1.0));
            self.backpressure_ratio
                .set((blocked / wall).clamp(0.0, 1.0));
        }
        self.mailbox_depth.set(now.mailbox_depth as f64);
        self.mailbox_capacity.set(now.mailbox_capacity as f64);
        // Before the first watermark nothing is known (the kernel keeps the last
        // finite watermark, never the +infinity of the end of input).
        if now.watermark != NO_WATERMARK {
            let labels = &self.labels;
            let (watermark, lag) = self.watermark.get_or_insert_with(|| {
                (
                    metrics::gauge!(names::WATERMARK, labels.clone()),
                    metrics::gauge!(names::WATERMARK_LAG, labels.clone()),
                )
            });
            watermark.set(now.watermark as f64 / 1e3);
            lag.set(wall_ms.saturating_sub(now.watermark) as f64 / 1e3);
        }
        self.last = *now;
    }
}

/// The value recorded for a message that fell in `bucket`: the bucket's upper bound,
/// so the exporter files it in the same bucket (twice the last bound for the
/// unbounded bucket).
fn bucket_value(bucket: usize) -> f64 {
    let bounds = &PROCESSING_BUCKET_BOUNDS_US;
    let micros = match bounds.get(bucket) {
        Some(bound) => *bound,
        None => bounds[bounds.len() - 1] * 2,
    };
    micros as f64 / 1e6
}

/// The metrics of one job on this node, across its restarts.
pub struct JobMetrics {
    job: String,
    /// Per (stage index, partition).
    actors: HashMap<(usize, usize), ActorMetrics>,
    restarts: Counter,
    state_store_bytes: Gauge,
    last_publish: Option<Instant>,
}

impl JobMetrics {
    /// The metrics of job `job` (its restart counter is registered at zero).
    pub fn new(job: &str) -> Self {
        let restarts = metrics::counter!(names::RESTARTS, "job" => job.to_string());
        restarts.increment(0);
        JobMetrics {
            job: job.to_string(),
            actors: HashMap::new(),
            restarts,
            state_store_bytes: metrics::gauge!(names::STATE_STORE_BYTES),
            last_publish: None,
        }
    }

    /// A new attempt starts: its actors count from zero again.
    pub fn start_attempt(&mut self) {
        for actor in self.actors.values_mut() {
            actor.last = StatsSnapshot::default();
        }
        self.last_publish = None;
    }

    /// Partition `partition` of stage `stage` failed (a panic or an error in its
    /// operator), failing the job.
    pub fn operator_failed(&self, stage: &str, partition: u32) {
        metrics::counter!(names::OPERATOR_FAILURES,
            "job" => self.job.clone(),
            "stage" => stage.to_string(),
            "partition" => partition.to_string())
        .increment(1);
    }

    /// The job restarted after a failure.
    pub fn restarted(&mut self) {
        self.restarts.increment(1);
    }

    /// Publishes `live`, and the state store's size on disk when known.
    pub fn publish(&mut self, live: &LiveStats, state_store_bytes: Option<u64>) {
        let now = Instant::now();
        let interval = self
            .last_publish
            .map_or(live.elapsed, |at| now.duration_since(at));
        self.last_publish = Some(now);
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let stage_labels = unique_stage_labels(live.stages.iter().map(|(n, _)| n.as_str()));
        for (index, ((_, snaps), stage)) in live.stages.iter().zip(stage_labels).enumerate() {
            for (partition, snap) in snaps.iter().enumerate() {
                let actor = self.actors.entry((index, partition)).or_insert_with(|| {
                    ActorMetrics::new(&[
                        Label::new("job", self.job.clone()),
                        Label::new("stage", stage.clone()),
                        Label::new("partition", partition.to_string()),
                    ])
                });
                actor.publish(snap, interval, wall_ms);
            }
        }
        if let Some(bytes) = state_store_bytes {
            self.state_store_bytes.set(bytes as f64);
        }
    }
}

/// The `stage` label of each stage: its name, or for a name an earlier stage already
/// has, the name with `#<stage index>` appended, so that no two stages share labels.
pub(crate) fn unique_stage_labels<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .enumerate()
        .map(|(i, name)| {
            if seen.insert(name) {
                name.to_string()
            } else {
                format!("{name}#{i}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_actors::stats::processing_bucket;

    #[test]
    fn a_bucket_value_falls_in_its_own_bucket() {
        for bucket in 0..PROCESSING_BUCKETS {
            let micros = (bucket_value(bucket) * 1e6).round() as u64;
            assert_eq!(processing_bucket(micros), bucket);
        }
    }

    #[test]
    fn repeated_stage_names_get_their_index() {
        let labels = unique_stage_labels(["source", "map", "map", "sink"].into_iter());
        assert_eq!(labels, ["source", "map", "map#2", "sink"]);
    }
}
