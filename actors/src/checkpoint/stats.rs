//! A job's checkpoint figures: the one record both the status API and the
//! Prometheus metrics report from.
//!
//! The coordinator reports each finished epoch here, and nowhere else. The figures
//! change under one lock, and only after the lock is released are the Prometheus
//! metrics recorded ([`super::metrics`]). So a reader of [`CheckpointStats`] (the
//! status API, the job report) is never behind what the metrics exporter serves:
//! once `weir_checkpoints_completed_total` shows `n`, every later read here shows
//! at least `n`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How many finished epochs [`CheckpointStats::history`] keeps (the newest).
pub const CHECKPOINT_HISTORY: usize = 32;

/// How an epoch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochOutcome {
    /// Its manifest was committed.
    Completed,
    /// It did not complete within the timeout (its changes go into the next epoch).
    Abandoned,
    /// Writing it failed (the job fails and recovers).
    Failed,
}

/// One finished epoch, for the checkpoint history an operator looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochRecord {
    /// The epoch number.
    pub epoch: u64,
    /// How it ended.
    pub outcome: EpochOutcome,
    /// From trigger to the outcome.
    pub duration: Duration,
    /// Chunk bytes stored (0 unless completed).
    pub bytes: u64,
    /// The longest barrier alignment seen for it.
    pub alignment: Duration,
    /// Wall-clock time of the outcome, in ms since the Unix epoch.
    pub finished_at_ms: u64,
    /// Whether a savepoint was taken at this epoch.
    pub savepoint: bool,
    /// Whether it was the final epoch at the end of input.
    pub is_final: bool,
}

/// A consistent copy of a job's checkpoint figures (every field as of the same
/// moment: the counts agree with the history).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointFigures {
    /// Epochs completed (manifest committed), the final one included.
    pub completed: u64,
    /// Epochs abandoned (timeout) or failed to write.
    pub failed: u64,
    /// The last completed epoch (0 for none).
    pub last_epoch: u64,
    /// From trigger to durable manifest, for the last completed epoch.
    pub last_duration: Duration,
    /// Chunk bytes stored for the last completed epoch.
    pub last_bytes: u64,
    /// The longest barrier alignment of the last completed epoch.
    pub last_alignment: Duration,
    /// From trigger to durable manifest, for the slowest periodic epoch so far (the
    /// final epoch at the end of input, which waits for the actors to finish, is
    /// not counted).
    pub longest_duration: Duration,
    /// Chunk bytes stored for the largest periodic epoch so far.
    pub largest_bytes: u64,
    /// The newest finished epochs (at most [`CHECKPOINT_HISTORY`]), oldest first.
    pub history: VecDeque<EpochRecord>,
}

/// A job's checkpoint figures, readable while it runs; shared by the coordinators
/// of every attempt of one run of the job, so the figures span its restarts as the
/// Prometheus counters do.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    figures: Mutex<CheckpointFigures>,
}

impl CheckpointStats {
    /// The figures as of now, all read at the same moment.
    pub fn figures(&self) -> CheckpointFigures {
        self.lock().clone()
    }
    /// Epochs completed (manifest committed), the final one included.
    pub fn completed(&self) -> u64 {
        self.lock().completed
    }
    /// Epochs abandoned (timeout) or failed to write.
    pub fn failed(&self) -> u64 {
        self.lock().failed
    }
    /// The last completed epoch (0 for none).
    pub fn last_epoch(&self) -> u64 {
        self.lock().last_epoch
    }
    /// From trigger to durable manifest, for the last completed epoch.
    pub fn last_duration(&self) -> Duration {
        self.lock().last_duration
    }
    /// Chunk bytes stored for the last completed epoch.
    pub fn last_bytes(&self) -> u64 {
        self.lock().last_bytes
    }
    /// The longest barrier alignment of the last completed epoch.
    pub fn last_alignment(&self) -> Duration {
        self.lock().last_alignment
    }
    /// From trigger to durable manifest, for the slowest periodic epoch so far (the
    /// final epoch at the end of input, which waits for the actors to finish, is
    /// not counted).
    pub fn longest_duration(&self) -> Duration {
        self.lock().longest_duration
    }
    /// Chunk bytes stored for the largest periodic epoch so far.
    pub fn largest_bytes(&self) -> u64 {
        self.lock().largest_bytes
    }
    /// The newest finished epochs (at most [`CHECKPOINT_HISTORY`]), oldest first.
    pub fn history(&self) -> Vec<EpochRecord> {
        self.lock().history.iter().cloned().collect()
    }

    /// Records how an epoch of `job` ended (the coordinator calls this once per
    /// finished epoch): first in the figures, then (the lock
    /// released) in the Prometheus metrics, so that the metrics never run ahead of
    /// the figures.
    pub fn finished(&self, job: &str, record: EpochRecord) {
        let metric = {
            let mut f = self.lock();
            let metric = match record.outcome {
                EpochOutcome::Completed => {
                    f.completed += 1;
                    f.last_epoch = record.epoch;
                    f.last_duration = record.duration;
                    f.last_bytes = record.bytes;
                    f.last_alignment = record.alignment;
                    if !record.is_final {
                        f.longest_duration = f.longest_duration.max(record.duration);
                        f.largest_bytes = f.largest_bytes.max(record.bytes);
                    }
                    Some((
                        record.epoch,
                        record.duration,
                        record.bytes,
                        record.alignment,
                    ))
                }
                EpochOutcome::Abandoned | EpochOutcome::Failed => {
                    f.failed += 1;
                    None
                }
            };
            if f.history.len() == CHECKPOINT_HISTORY {
                f.history.pop_front();
            }
            f.history.push_back(record);
            metric
        };
        match metric {
            Some((epoch, took, bytes, alignment)) => {
                super::metrics::completed(job, epoch, took, bytes, alignment)
            }
            None => super::metrics::failed(job),
        }
    }

    /// Locks the figures, taking them as they are after a panic elsewhere: they
    /// are a report, and a panic must not hide it.
    fn lock(&self) -> MutexGuard<'_, CheckpointFigures> {
        self.figures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    fn record(epoch: u64, outcome: EpochOutcome) -> EpochRecord {
        EpochRecord {
            epoch,
            outcome,
            duration: Duration::from_millis(epoch),
            bytes: epoch * 10,
            alignment: Duration::ZERO,
            finished_at_ms: epoch,
            savepoint: false,
            is_final: false,
        }
    }

    #[test]
    fn history_keeps_the_newest_epochs_oldest_first() {
        let stats = CheckpointStats::default();
        assert!(stats.history().is_empty());
        for epoch in 1..=(CHECKPOINT_HISTORY as u64 + 5) {
            stats.finished("job", record(epoch, EpochOutcome::Completed));
        }
        let history = stats.history();
        assert_eq!(history.len(), CHECKPOINT_HISTORY);
        assert_eq!(history[0].epoch, 6);
        assert_eq!(
            history.last().map(|r| r.epoch),
            Some(CHECKPOINT_HISTORY as u64 + 5)
        );
        let figures = stats.figures();
        assert_eq!(figures.completed, CHECKPOINT_HISTORY as u64 + 5);
        assert_eq!(figures.last_epoch, CHECKPOINT_HISTORY as u64 + 5);
    }

    /// A checkpoint counter that, at each increment, reads the figures a status
    /// reader would see at that very moment, and fails if they are behind the value
    /// the exporter would serve from then on.
    struct Probe {
        stats: Arc<CheckpointStats>,
        value: AtomicU64,
        read: fn(&CheckpointFigures) -> u64,
    }

    impl CounterFn for Probe {
        fn increment(&self, by: u64) {
            let exported = self.value.fetch_add(by, Ordering::SeqCst) + by;
            let seen = (self.read)(&self.stats.figures());
            assert!(
                seen >= exported,
                "the counter shows {exported} while the figures show {seen}"
            );
        }
        fn absolute(&self, value: u64) {
            self.value.fetch_max(value, Ordering::SeqCst);
        }
    }

    /// Hands out [`Probe`]s for the two checkpoint counters; every other metric is
    /// a no-op.
    struct ProbeRecorder {
        completed: Arc<Probe>,
        failed: Arc<Probe>,
    }

    impl Recorder for ProbeRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            match key.name() {
                super::super::metrics::CHECKPOINTS_COMPLETED => {
                    Counter::from_arc(self.completed.clone())
                }
                super::super::metrics::CHECKPOINTS_FAILED => Counter::from_arc(self.failed.clone()),
                _ => Counter::noop(),
            }
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Regression: `weir_checkpoints_completed_total` was incremented by the
    /// coordinator while the status API showed a copy refreshed on the node's next
    /// tick, so a scrape could run ahead of `/api/jobs/<job>`.
    #[test]
    fn the_checkpoint_counters_are_never_ahead_of_the_figures() {
        let stats = Arc::new(CheckpointStats::default());
        let probe = |read: fn(&CheckpointFigures) -> u64| {
            Arc::new(Probe {
                stats: stats.clone(),
                value: AtomicU64::new(0),
                read,
            })
        };
        let recorder = ProbeRecorder {
            completed: probe(|f| f.completed),
            failed: probe(|f| f.failed),
        };
        metrics::with_local_recorder(&recorder, || {
            for epoch in 1..=5 {
                stats.finished("job", record(epoch, EpochOutcome::Completed));
            }
            stats.finished("job", record(6, EpochOutcome::Abandoned));
            stats.finished("job", record(7, EpochOutcome::Failed));
        });
        assert_eq!(recorder.completed.value.load(Ordering::SeqCst), 5);
        assert_eq!(recorder.failed.value.load(Ordering::SeqCst), 2);
        assert_eq!(stats.completed(), 5);
        assert_eq!(stats.failed(), 2);
    }
}
