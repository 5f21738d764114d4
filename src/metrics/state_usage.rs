//! The state-usage sampler: `weir_state_keys` and `weir_state_bytes` per stage and
//! partition actor, measured by a periodic scan of the job's state trees.
//!
//! sled has no cheap per-tree count or size, so a background thread scans each keyed
//! stage's tree every `metrics.state_interval_ms` ([`StateStore::stage_usage`]:
//! sled's lock-free iterator, beside the partition actors, never on the record path)
//! and sums the key partitions each partition actor owns. The figures are as of the
//! actors' last flush: entries still only in a write-back cache are not counted.
//! When the job's run ends the sampler measures once more, so a finished job's
//! gauges show its final (flushed) state.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics::Gauge;
use weir_actors::state::{PartitionUsage, StateStore};

use super::catalogue as names;

/// One keyed stage to measure.
#[derive(Clone, Debug)]
pub struct MeasuredStage {
    /// The stage's sled tree name (what its actors open their keyed state under).
    pub tree: String,
    /// The stage's `stage` label.
    pub label: String,
    /// Its partition actors.
    pub parallelism: u32,
}

/// A running sampler; dropping it takes one last measurement and stops it.
pub struct StateUsageSampler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StateUsageSampler {
    /// Measures `stages` of job `job` in `store` now and then every `interval`,
    /// until dropped. `key_partitions` is the job's `P`.
    pub fn start(
        job: &str,
        store: StateStore,
        stages: Vec<MeasuredStage>,
        key_partitions: u32,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let gauges = StageGauges::new(job, &stages);
        let job = job.to_string();
        let thread = std::thread::Builder::new()
            .name("weir-state-usage".into())
            .spawn(move || loop {
                measure(&job, &store, &stages, &gauges, key_partitions);
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                        // The job has ended (its actors flushed at the end of input):
                        // one last measurement, so the gauges show its final state.
                        measure(&job, &store, &stages, &gauges, key_partitions);
                        return;
                    }
                }
            })?;
        Ok(StateUsageSampler {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for StateUsageSampler {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Scans every stage in `stages` once and sets its gauges.
fn measure(
    job: &str,
    store: &StateStore,
    stages: &[MeasuredStage],
    gauges: &StageGauges,
    key_partitions: u32,
) {
    for (stage, gauges) in stages.iter().zip(&gauges.0) {
        match store.stage_usage(&stage.tree) {
            Ok(usage) => {
                let per_actor = per_partition_actor(&usage, key_partitions, stage.parallelism);
                for (actor, (keys, bytes)) in per_actor.iter().zip(gauges) {
                    keys.set(actor.entries as f64);
                    bytes.set(actor.bytes as f64);
                }
            }
            Err(e) => tracing::warn!(job = %job, stage = %stage.label, error = %e,
                "measuring the state of a stage failed; its state gauges keep their last values"),
        }
    }
}

/// The (keys, bytes) gauges of every partition actor of every measured stage.
struct StageGauges(Vec<Vec<(Gauge, Gauge)>>);

impl StageGauges {
    fn new(job: &str, stages: &[MeasuredStage]) -> Self {
        StageGauges(
            stages
                .iter()
                .map(|stage| {
                    (0..stage.parallelism)
                        .map(|partition| {
                            let labels = [
                                ("job", job.to_string()),
                                ("stage", stage.label.clone()),
                                ("partition", partition.to_string()),
                            ];
                            (
                                metrics::gauge!(names::STATE_KEYS, &labels),
                                metrics::gauge!(names::STATE_BYTES, &labels),
                            )
                        })
                        .collect()
                })
                .collect(),
        )
    }
}

/// Sums per-key-partition usage into one figure per partition actor (actor `i`
/// owns [`crate::partition::owned_range`]`(i, P, parallelism)`).
fn per_partition_actor(
    usage: &BTreeMap<u32, PartitionUsage>,
    key_partitions: u32,
    parallelism: u32,
) -> Vec<PartitionUsage> {
    (0..parallelism)
        .map(|actor| {
            let mut sum = PartitionUsage::default();
            for (_, kp) in usage.range(crate::partition::owned_range(
                actor,
                key_partitions,
                parallelism,
            )) {
                sum.add(*kp);
            }
            sum
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_partitions_are_summed_into_the_actor_that_owns_them() {
        let usage: BTreeMap<u32, PartitionUsage> =
            [(0, (1, 10)), (3, (2, 20)), (4, (4, 40)), (7, (8, 80))]
                .into_iter()
                .map(|(kp, (entries, bytes))| (kp, PartitionUsage { entries, bytes }))
                .collect();
        let actors = per_partition_actor(&usage, 8, 2);
        assert_eq!(crate::partition::owned_range(0, 8, 2), 0..4);
        assert_eq!(
            actors,
            [
                PartitionUsage {
                    entries: 3,
                    bytes: 30
                },
                PartitionUsage {
                    entries: 12,
                    bytes: 120
                }
            ]
        );
        let three = per_partition_actor(&usage, 8, 3);
        assert_eq!(three.iter().map(|u| u.entries).sum::<u64>(), 15);
        assert_eq!(three.len(), 3);
    }
}
