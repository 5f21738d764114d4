//! Why a job could not run or did not finish.

use weir_actors::state::StateError;
use weir_actors::JobFailure;

use crate::connector::{SinkError, SourceError};

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An operator panicked or failed while running; names stage and partition.
    #[error(transparent)]
    Failed(#[from] JobFailure),
    /// The job could not be planned (a bad graph or option).
    #[error("cannot plan job '{job}': {reason}")]
    Plan {
        /// The job.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// A source could not be opened.
    #[error("cannot open source of stage '{stage}': {source}")]
    Source {
        /// The stage.
        stage: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// A sink could not be opened.
    #[error("cannot open sink of stage '{stage}': {source}")]
    Sink {
        /// The stage.
        stage: String,
        /// Why.
        #[source]
        source: SinkError,
    },
    /// A commit action of a restored epoch could not be redone.
    #[error("redoing the commit actions of epoch {epoch}: {source}")]
    Redo {
        /// The restored epoch.
        epoch: u64,
        /// Why.
        #[source]
        source: Box<super::commits::CommitError>,
    },
    /// The state store could not be opened or used.
    #[error("state store: {0}")]
    State(#[from] StateError),
    /// The job failed and its restart strategy allows no more restarts.
    #[error("{failure}; not restarting: {reason} ({restarts} restart(s) made){}", kept_note(*kept_epoch))]
    RestartsExhausted {
        /// The last failure.
        failure: Box<JobFailure>,
        /// Restarts made.
        restarts: u32,
        /// Which bound of the strategy was hit.
        reason: String,
        /// The newest epoch kept on disk, which the next start resumes from.
        kept_epoch: Option<u64>,
    },
    /// The runtime itself failed (a thread could not start, a channel closed).
    #[error("runtime: {0}")]
    Runtime(String),
    /// The job ran, but its dead letters could not be made durable.
    #[error("dead letters: {0}")]
    DeadLetters(Box<crate::connector::dead_letter::DeadLetterError>),
}

fn kept_note(epoch: Option<u64>) -> String {
    match epoch {
        Some(e) => {
            format!("; the snapshot of epoch {e} is kept and the next start resumes from it")
        }
        None => String::new(),
    }
}
