//! Savepoints asked of a running job: the request, the one on its way, and the
//! directory savepoints go to.

use std::path::PathBuf;

use crate::job::options::EngineOptions;

/// Asks a running job for a savepoint.
#[derive(Debug)]
pub struct SavepointCommand {
    /// Stop the job once the savepoint is taken (stop-with-savepoint); nothing after
    /// the savepoint's epoch is committed.
    pub stop: bool,
    /// Told the savepoint's directory, or why it could not be taken.
    pub reply: Option<std::sync::mpsc::Sender<Result<PathBuf, String>>>,
}

/// A savepoint on its way: whether the job stops after it, and who hears the result.
pub(super) struct PendingSavepoint {
    pub(super) rx: tokio::sync::oneshot::Receiver<Result<PathBuf, String>>,
    pub(super) stop: bool,
    pub(super) reply: Option<std::sync::mpsc::Sender<Result<PathBuf, String>>>,
}

/// Where savepoints go: the configured directory, or `<state dir>/savepoints`.
pub(super) fn savepoint_dir(opts: &EngineOptions) -> Result<PathBuf, String> {
    match (&opts.savepoint_dir, &opts.state_dir) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(state)) => Ok(state.join("savepoints")),
        (None, None) => Err(
            "no savepoint directory: set savepoint.dir (--savepoint-dir) or state.dir (--state-dir)"
                .into(),
        ),
    }
}
