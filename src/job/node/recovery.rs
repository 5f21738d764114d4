//! Recovery that needs no attempt: completing a run that stopped during its final
//! commit. (Restoring state for an attempt is `crate::job::recovery`'s.)

use std::time::Instant;

use weir_actors::snapshot::{Manifest, SnapshotStore};

use crate::connector::SinkRecovery;
use crate::job::commits::StageCommitters;
use crate::job::error::JobError;
use crate::job::plan::StagePlan;
use crate::job::recovery;
use crate::job::report::{CheckpointSummary, JobReport};

use super::Node;

impl Node {
    /// Completes a run of `name` that stopped during its final commit (the final
    /// epoch `last` is complete, its commit actions may not all have run): redoes
    /// them, lets the sinks recover to that epoch (dropping anything staged after
    /// it; `state_dir` is where they keep their files), and records that the run
    /// finished. No input is read: every record's output is in the final epoch or
    /// before it.
    pub(super) fn finish_final_commit(
        &self,
        name: &str,
        last: &Manifest,
        store: &dyn SnapshotStore,
        indexed: &[(u32, &dyn StagePlan)],
        state_dir: Option<&std::path::Path>,
        started: Instant,
    ) -> Result<JobReport, JobError> {
        recovery::redo_commit_actions(name, last, store, &StageCommitters::of(indexed))?;
        for (_, plan) in indexed {
            plan.recover(&SinkRecovery {
                restored: Some(last.epoch),
                state_dir,
            })?;
        }
        recovery::record_finished(last, store)?;
        self.status
            .for_job(name)
            .update(|j| j.restored_from_epoch = Some(last.epoch));
        tracing::info!(
            job = name,
            epoch = last.epoch,
            "the final commit of the job's last run is done; the run finished"
        );
        Ok(JobReport {
            job: name.to_string(),
            elapsed: started.elapsed(),
            stages: Vec::new(),
            sources: Vec::new(),
            restarts: 0,
            checkpoints: CheckpointSummary::default(),
            savepoint: None,
            restored_from: Some(last.epoch),
        })
    }
}
