//! Commit actions written by builds before the two-phase-commit sink trait, when the
//! engine had one closed set of actions and recorded them untagged (the kernel's
//! [`CommitList::Untagged`](weir_actors::checkpoint::CommitList::Untagged)).
//!
//! Such an action only shows up when a job restores a manifest an older build wrote,
//! and recovery redoes that manifest's actions. Each was self-contained (a file to
//! publish, or a Kafka transaction to commit with everything needed to reach the
//! cluster), so it is redone here without the stage's committer: a file by the
//! transactional file sink's publish, a Kafka transaction by
//! [`KafkaCommit::apply`]. Nothing writes this layout any more.
//!
//! The types below are frozen copies of the old ones, field for field (bincode
//! encodes by position), so that later changes to the current action types cannot
//! change how old bytes are read.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::kafka::KafkaCommit;
use super::sink::SinkError;
use super::txn_file::{self, PublishPart};

/// The closed action set of older builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum LegacyCommitAction {
    /// Rename the staged file `staged` to `visible`.
    PublishFile {
        /// The staged file.
        staged: PathBuf,
        /// Its final name.
        visible: PathBuf,
    },
    /// Commit (or redo) one exactly-once Kafka sink partition's transaction.
    Kafka(Box<LegacyKafkaCommit>),
}

/// The old Kafka action, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LegacyKafkaCommit {
    bootstrap: String,
    settings: Vec<(String, String)>,
    timeout_ms: u64,
    sink: String,
    partition: u32,
    transactional_id: String,
    marker_writers: Vec<String>,
    epoch: u64,
    topic: String,
    marker_topic: String,
    marker_partition: i32,
    staged: PathBuf,
}

impl From<LegacyKafkaCommit> for KafkaCommit {
    fn from(old: LegacyKafkaCommit) -> Self {
        KafkaCommit {
            bootstrap: old.bootstrap,
            settings: old.settings,
            timeout_ms: old.timeout_ms,
            sink: old.sink,
            partition: old.partition,
            transactional_id: old.transactional_id,
            marker_writers: old.marker_writers,
            epoch: old.epoch,
            topic: old.topic,
            marker_topic: old.marker_topic,
            marker_partition: old.marker_partition,
            staged: old.staged,
        }
    }
}

/// Redoes one untagged action of an older build's manifest (idempotent, like every
/// commit). Bytes that are not such an action are an error saying so.
pub fn redo_legacy_action(bytes: &[u8]) -> Result<(), SinkError> {
    let action: LegacyCommitAction = bincode::deserialize(bytes).map_err(|e| {
        SinkError::Failed(format!(
            "an untagged commit action (written by a build before stage-tagged actions) \
             is neither a file publication nor a Kafka commit of that build: {e}"
        ))
    })?;
    match action {
        LegacyCommitAction::PublishFile { staged, visible } => {
            txn_file::publish(&PublishPart { staged, visible })
        }
        LegacyCommitAction::Kafka(commit) => Ok(KafkaCommit::from(*commit).apply()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the old engine wrote for `PublishFile { staged: "s", visible: "v" }`:
    /// variant 0 as a u32, then each path as a u64 length and its bytes.
    const OLD_PUBLISH_S_TO_V: [u8; 22] = [
        0, 0, 0, 0, // variant PublishFile
        1, 0, 0, 0, 0, 0, 0, 0, b's', // staged
        1, 0, 0, 0, 0, 0, 0, 0, b'v', // visible
    ];

    #[test]
    fn the_frozen_layout_is_the_old_one() {
        let action = LegacyCommitAction::PublishFile {
            staged: "s".into(),
            visible: "v".into(),
        };
        assert_eq!(bincode::serialize(&action).unwrap(), OLD_PUBLISH_S_TO_V);
    }

    #[test]
    fn an_old_file_publication_is_redone_and_redoing_it_again_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged.txt");
        let visible = dir.path().join("part.txt");
        std::fs::write(&staged, "1\n2\n").unwrap();
        let bytes = bincode::serialize(&LegacyCommitAction::PublishFile {
            staged: staged.clone(),
            visible: visible.clone(),
        })
        .unwrap();
        redo_legacy_action(&bytes).unwrap();
        redo_legacy_action(&bytes).unwrap();
        assert!(!staged.exists());
        assert_eq!(std::fs::read_to_string(&visible).unwrap(), "1\n2\n");
    }

    #[test]
    fn bytes_of_no_old_action_are_an_error_saying_so() {
        let err = redo_legacy_action(&[7, 0, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("untagged commit action"), "{err}");
    }
}
