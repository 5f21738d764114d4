//! The checkpoint coordinator's committer: applies the sink commit actions an epoch
//! staged, once the epoch is complete.

use crate::connector::CommitAction;

/// Decodes and applies one sink commit action.
pub(super) fn apply_commit_action(bytes: &[u8]) -> Result<(), String> {
    let action: CommitAction =
        bincode::deserialize(bytes).map_err(|e| format!("decoding a commit action: {e}"))?;
    action.apply().map_err(|e| e.to_string())
}
