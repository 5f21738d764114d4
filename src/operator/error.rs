//! The error an operator returns.

use weir_actors::state::StateError;

/// Why an operator failed on a record. Returning it fails the job (as a panic does),
/// naming the stage and partition.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Reading or writing keyed state failed.
    #[error("state access failed: {0}")]
    State(#[from] StateError),
    /// The operator's own code reported a failure.
    #[error("{0}")]
    Failed(String),
    /// A sink the operator writes to failed.
    #[error(transparent)]
    Sink(#[from] crate::connector::SinkError),
}

impl OperatorError {
    /// An operator failure described by `message`.
    pub fn msg(message: impl Into<String>) -> Self {
        OperatorError::Failed(message.into())
    }
}
