//! The job's side of transactional sinks' commit actions: each stage's committer seen
//! through encoded actions, the table that dispatches an action to the stage that
//! produced it (after an epoch completes, and at recovery), and the record of which
//! actions this process pre-committed and has not committed (a rollback aborts them).
//!
//! An action travels as bytes: the stage's sink partition encodes it in an
//! [`action_frame`](crate::connector::action_frame), the checkpoint coordinator tags
//! it with the stage index and stores it in the epoch's commit list, and the writer
//! thread (or recovery) hands it back here as `(stage, bytes)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use weir_actors::checkpoint::{decode_commit_list, CommitList, CommitListError};

use crate::connector::action_frame::decode_action;
use crate::connector::legacy_action::redo_legacy_action;
use crate::connector::{Committer, SinkError};

use super::plan::StagePlan;

/// A transactional sink stage's committer as the engine sees it: encoded actions in,
/// typed calls to the sink's [`Committer`] out.
pub trait StageCommitter: Send + Sync {
    /// Decodes `encoded` and commits it: after its epoch's manifest is durable, or as
    /// the redo of a restored epoch. Idempotent, like the sink's commit.
    fn commit(&self, encoded: &[u8]) -> Result<(), SinkError>;
}

/// Why a commit action could not be committed or redone.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The action names a stage that ends in no transactional sink.
    #[error(
        "a commit action names stage {stage}, which ends in no transactional sink \
         (was the snapshot taken from another job graph?)"
    )]
    NoCommitter {
        /// The stage index the action was tagged with.
        stage: u32,
    },
    /// The stage's committer failed.
    #[error("stage {stage} '{name}': {source}")]
    Failed {
        /// The stage index.
        stage: u32,
        /// The stage's name.
        name: String,
        /// What the sink said.
        #[source]
        source: SinkError,
    },
    /// The epoch's commit list is damaged or of an unknown format.
    #[error(transparent)]
    List(#[from] CommitListError),
    /// An untagged action of an older build could not be redone.
    #[error("an action written before stage-tagged actions: {0}")]
    Legacy(#[source] SinkError),
}

/// Actions pre-committed in this process and not committed yet, in the order they
/// were first returned.
#[derive(Default)]
struct Outstanding {
    next: u64,
    actions: HashMap<Vec<u8>, u64>,
}

/// The committer of a transactional sink stage, with the actions its partitions
/// pre-committed in this process and that were not committed since: a rollback
/// aborts those (see [`abort_outstanding`](Self::abort_outstanding)).
///
/// It lives as long as the job runs in this process, across restarts. A process that
/// died takes this record with it; the sink's own sweep
/// ([`recover`](crate::connector::TwoPhaseCommitSinkFactory::recover)) covers that case.
pub struct TrackedCommitter<C> {
    committer: C,
    outstanding: Mutex<Outstanding>,
}

impl<C: Committer> TrackedCommitter<C> {
    /// Tracks the actions `committer` commits and aborts.
    pub fn new(committer: C) -> Self {
        TrackedCommitter {
            committer,
            outstanding: Mutex::default(),
        }
    }

    fn outstanding(&self) -> std::sync::MutexGuard<'_, Outstanding> {
        // Every update below is one statement: a panic elsewhere leaves it whole.
        self.outstanding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A sink partition returned `encoded` at a barrier for the first time: until it
    /// is committed, a rollback aborts it.
    pub fn pre_committed(&self, encoded: &[u8]) {
        let mut outstanding = self.outstanding();
        let order = outstanding.next;
        outstanding.next += 1;
        outstanding.actions.entry(encoded.to_vec()).or_insert(order);
    }

    /// How many actions are pre-committed and not committed.
    pub fn outstanding_count(&self) -> usize {
        self.outstanding().actions.len()
    }

    /// The rollback: aborts, oldest first, every action pre-committed in this process
    /// and not committed. Called before a restart's sinks are created, after
    /// recovery redid (committed) the actions of the epoch it restores, so what is
    /// left belongs to epochs after it, which never complete. Returns how many were
    /// aborted; an action whose abort fails stays outstanding.
    pub fn abort_outstanding(&self) -> Result<usize, SinkError> {
        let mut pending: Vec<(u64, Vec<u8>)> = self
            .outstanding()
            .actions
            .iter()
            .map(|(bytes, order)| (*order, bytes.clone()))
            .collect();
        pending.sort();
        for (_, encoded) in &pending {
            let action = decode_action::<C::Action>(encoded)?;
            self.committer.abort(&action)?;
            self.outstanding().actions.remove(encoded);
        }
        Ok(pending.len())
    }
}

impl<C: Committer> StageCommitter for TrackedCommitter<C> {
    fn commit(&self, encoded: &[u8]) -> Result<(), SinkError> {
        let action = decode_action::<C::Action>(encoded)?;
        self.committer.commit(&action)?;
        self.outstanding().actions.remove(encoded);
        Ok(())
    }
}

/// Every transactional sink stage's committer, by stage index: where an epoch's
/// actions go after its manifest is durable, and where recovery redoes them.
#[derive(Clone, Default)]
pub struct StageCommitters {
    stages: BTreeMap<u32, (String, Arc<dyn StageCommitter>)>,
}

impl StageCommitters {
    /// The committers of `stages` (a stage index with its plan) that end in a
    /// transactional sink.
    pub fn of(stages: &[(u32, &dyn StagePlan)]) -> Self {
        let stages = stages
            .iter()
            .filter_map(|(index, plan)| Some((*index, (plan.name(), plan.committer()?))))
            .collect();
        StageCommitters { stages }
    }

    /// Commits one action of stage `stage` (encoded as its sink encoded it).
    pub fn commit(&self, stage: u32, encoded: &[u8]) -> Result<(), CommitError> {
        let (name, committer) = self
            .stages
            .get(&stage)
            .ok_or(CommitError::NoCommitter { stage })?;
        committer
            .commit(encoded)
            .map_err(|source| CommitError::Failed {
                stage,
                name: name.clone(),
                source,
            })
    }

    /// The committer the checkpoint coordinator calls once an epoch is complete.
    pub fn for_coordinator(&self) -> weir_actors::checkpoint::Committer {
        let committers = self.clone();
        Arc::new(move |stage: u32, encoded: &[u8]| {
            committers
                .commit(stage, encoded)
                .map_err(|e| format!("committing: {e}"))
        })
    }

    /// Redoes every action of a stored commit list (a manifest's `commits` chunk),
    /// in order: tagged ones through their stage's committer, the untagged ones of
    /// an older build on their own.
    pub fn redo(&self, commit_list: &[u8]) -> Result<(), CommitError> {
        match decode_commit_list(commit_list)? {
            CommitList::Tagged(actions) => {
                for action in actions {
                    self.commit(action.stage, &action.action)?;
                }
            }
            CommitList::Untagged(actions) => {
                tracing::info!(
                    actions = actions.len(),
                    "redoing commit actions written by an older build (untagged)"
                );
                for action in actions {
                    redo_legacy_action(&action).map_err(CommitError::Legacy)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use weir_actors::checkpoint::{encode_commit_list, StageAction};

    use super::*;
    use crate::connector::action_frame::encode_action;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Publish(u64);

    /// Notes what it committed and aborted; fails commits of `Publish(13)`.
    #[derive(Default)]
    struct Notes {
        committed: Mutex<Vec<u64>>,
        aborted: Mutex<Vec<u64>>,
    }

    impl Committer for Arc<Notes> {
        type Action = Publish;
        fn commit(&self, action: &Publish) -> Result<(), SinkError> {
            if action.0 == 13 {
                return Err(SinkError::Failed("13 never commits".into()));
            }
            self.committed.lock().unwrap().push(action.0);
            Ok(())
        }
        fn abort(&self, action: &Publish) -> Result<(), SinkError> {
            self.aborted.lock().unwrap().push(action.0);
            Ok(())
        }
    }

    fn frame(n: u64) -> Vec<u8> {
        encode_action(&Publish(n)).unwrap()
    }

    #[test]
    fn a_rollback_aborts_only_what_was_pre_committed_and_not_committed_oldest_first() {
        let notes = Arc::new(Notes::default());
        let tracked = TrackedCommitter::new(notes.clone());
        for n in [1, 2, 3, 13, 4] {
            tracked.pre_committed(&frame(n));
        }
        // Returned again at a later barrier: still one entry, in its first place.
        tracked.pre_committed(&frame(2));
        tracked.commit(&frame(1)).unwrap();
        tracked.commit(&frame(3)).unwrap();
        // A failed commit leaves its action outstanding.
        assert!(tracked.commit(&frame(13)).is_err());
        assert_eq!(tracked.outstanding_count(), 3);
        assert_eq!(tracked.abort_outstanding().unwrap(), 3);
        assert_eq!(*notes.aborted.lock().unwrap(), [2, 13, 4]);
        assert_eq!(*notes.committed.lock().unwrap(), [1, 3]);
        assert_eq!(tracked.abort_outstanding().unwrap(), 0, "aborted once");
    }

    #[test]
    fn a_damaged_action_is_refused_not_committed() {
        let notes = Arc::new(Notes::default());
        let tracked = TrackedCommitter::new(notes.clone());
        let mut bytes = frame(5);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let err = tracked.commit(&bytes).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        assert!(notes.committed.lock().unwrap().is_empty());
    }

    fn table(notes: &Arc<Notes>) -> StageCommitters {
        let mut stages: BTreeMap<u32, (String, Arc<dyn StageCommitter>)> = BTreeMap::new();
        stages.insert(
            2,
            (
                "sink:notes".into(),
                Arc::new(TrackedCommitter::new(notes.clone())),
            ),
        );
        StageCommitters { stages }
    }

    #[test]
    fn actions_go_to_the_stage_they_are_tagged_with() {
        let notes = Arc::new(Notes::default());
        let committers = table(&notes);
        let list = encode_commit_list(&[
            StageAction {
                stage: 2,
                action: frame(7),
            },
            StageAction {
                stage: 2,
                action: frame(8),
            },
        ])
        .unwrap();
        committers.redo(&list).unwrap();
        (committers.for_coordinator())(2, &frame(9)).unwrap();
        assert_eq!(*notes.committed.lock().unwrap(), [7, 8, 9]);

        let err = committers.commit(1, &frame(1)).unwrap_err().to_string();
        assert!(err.contains("stage 1"), "{err}");
        let err = (committers.for_coordinator())(2, &frame(13)).unwrap_err();
        assert!(err.contains("stage 2 'sink:notes'"), "{err}");
        assert!(err.contains("13 never commits"), "{err}");
    }

    #[test]
    fn a_commit_list_of_an_older_build_is_redone_and_garbage_is_named() {
        let notes = Arc::new(Notes::default());
        let committers = table(&notes);
        // An older build's list: untagged, each action the old closed enum (here a
        // file publication, variant 0).
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        let visible = dir.path().join("visible");
        std::fs::write(&staged, "old\n").unwrap();
        let mut old_action = vec![0u8, 0, 0, 0];
        old_action.extend(bincode::serialize(&staged).unwrap());
        old_action.extend(bincode::serialize(&visible).unwrap());
        let old_list = bincode::serialize(&vec![old_action]).unwrap();
        committers.redo(&old_list).unwrap();
        assert_eq!(std::fs::read_to_string(&visible).unwrap(), "old\n");
        assert!(notes.committed.lock().unwrap().is_empty());

        let err = committers.redo(b"not a list").unwrap_err().to_string();
        assert!(err.contains("not a commit list"), "{err}");
    }
}
