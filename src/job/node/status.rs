//! What a run tells the outside while it runs: the job's graph on the status board,
//! the keyed stages' state usage, and the attempt's counters to the metrics
//! recorder.

use std::time::{Duration, Instant};

use weir_actors::state::StateStore;

use crate::graph::{JobPlan, Port};
use crate::job::error::JobError;
use crate::job::plan::{state_tree_name, StagePlan};
use crate::job::progress::LiveStats;
use crate::metrics::{unique_stage_labels, JobMetrics, MeasuredStage, StateUsageSampler};
use crate::status::{Edge, EdgeKind, JobBoard, JobStatus, StageKind};

use super::Node;

impl Node {
    /// Publishes the job's graph on `board`: every stage with its kind and
    /// parallelism, and every edge with its partitioning.
    pub(super) fn publish_graph(&self, board: &JobBoard, name: &str, plan: &JobPlan) {
        let edges = plan
            .edges
            .iter()
            .map(|e| Edge {
                from: e.from,
                to: e.to,
                kind: if matches!(e.port, Port::Side(_)) {
                    EdgeKind::Side
                } else {
                    EdgeKind::Data
                },
                partitioning: e.partitioning.name(),
            })
            .collect();
        let stages = plan
            .stages
            .iter()
            .map(|stage| {
                let kind = if stage.is_source() {
                    StageKind::Source
                } else {
                    StageKind::Keyed
                };
                (stage.name(), kind, self.parallelism_of(stage.as_ref()))
            })
            .collect();
        board.created(JobStatus::created(
            name,
            self.options.key_partitions,
            stages,
            edges,
            self.options.checkpoint.interval,
        ));
    }

    /// Starts measuring the keyed stages' stored state for `weir_state_keys` and
    /// `weir_state_bytes`, when the options ask for it and the Prometheus recorder
    /// is installed; the measurement stops when the returned sampler is dropped.
    pub(super) fn start_state_usage(
        &self,
        job: &str,
        indexed: &[(u32, &dyn StagePlan)],
        stage_names: &[String],
    ) -> Result<Option<StateUsageSampler>, JobError> {
        let Some(interval) = self.options.state_metrics_interval else {
            return Ok(None);
        };
        if !crate::metrics::recorder_installed() {
            return Ok(None);
        }
        let labels = unique_stage_labels(stage_names.iter().map(String::as_str));
        let stages: Vec<MeasuredStage> = indexed
            .iter()
            .zip(labels)
            .filter(|((_, plan), _)| plan.has_keyed_state())
            .map(|(&(index, plan), label)| MeasuredStage {
                tree: state_tree_name(job, index),
                label,
                parallelism: self.parallelism_of(plan),
            })
            .collect();
        if stages.is_empty() {
            return Ok(None);
        }
        StateUsageSampler::start(
            job,
            self.store.clone(),
            stages,
            self.options.key_partitions,
            interval,
        )
        .map(Some)
        .map_err(|e| {
            JobError::Runtime(format!(
                "starting the state-usage sampler of job '{job}': {e}"
            ))
        })
    }
}

/// How often the watch loop publishes a running job's counters to the metrics
/// recorder.
const METRICS_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes a running attempt's counters at most once per
/// [`METRICS_PUBLISH_INTERVAL`].
pub(super) struct Publisher<'a> {
    pub(super) metrics: &'a mut JobMetrics,
    pub(super) store: &'a StateStore,
    pub(super) last: Option<Instant>,
}

impl Publisher<'_> {
    pub(super) fn maybe_publish(&mut self, live: &LiveStats) {
        if self
            .last
            .is_some_and(|at| at.elapsed() < METRICS_PUBLISH_INTERVAL)
        {
            return;
        }
        self.last = Some(Instant::now());
        self.metrics
            .publish(live, self.store.db().size_on_disk().ok());
    }
}
