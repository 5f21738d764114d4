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
    /// The state store could not be opened or used.
    #[error("state store: {0}")]
    State(#[from] StateError),
    /// The runtime itself failed (a thread could not start, a channel closed).
    #[error("runtime: {0}")]
    Runtime(String),
}
