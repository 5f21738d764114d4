//! Recovery: finding the epoch a run starts from (the newest complete checkpoint, or
//! a savepoint), redoing its commit actions, and rebuilding state and source
//! positions from it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_actors::checkpoint::{
    finished_manifest, operator_chunk_stage, source_chunk_stage, state_chunk_stage,
    COMMITS_CHUNK_STAGE, FINAL_COMMITTING, FINAL_DONE, META_FINAL,
};
use weir_actors::snapshot::{copy_epoch, LocalDirStore, Manifest, SnapshotStore};
use weir_actors::state::StateStore;

use super::commits::StageCommitters;
use super::error::JobError;
use super::plan::{state_tree_name, StagePlan};
use super::split_snapshot::SplitSnapshot;

/// Manifest metadata key: the job's key partitions `P` (state is filed by it).
pub const META_KEY_PARTITIONS: &str = "key_partitions";
/// Manifest metadata key prefix: `splits/<stage index>` = a source stage's splits.
pub const META_SPLITS: &str = "splits/";
/// Manifest metadata key: the stage names, joined by newlines (a savepoint must be
/// restored into the same job graph).
pub const META_STAGES: &str = "stages";

/// What a run restores: the epoch, and each source split's saved position.
#[derive(Debug, Default)]
pub struct RestorePoint {
    /// The restored epoch; new epochs are numbered after every epoch on disk.
    pub epoch: u64,
    splits: HashMap<u32, u32>,
    positions: HashMap<(u32, u32), SplitSnapshot>,
    /// Per stage: each partition's operator state frame, by partition.
    operator_state: HashMap<u32, Vec<(u32, Vec<u8>)>>,
}

impl RestorePoint {
    /// How many splits source stage `stage` has.
    pub(crate) fn splits_of(&self, stage: u32) -> Option<u32> {
        self.splits.get(&stage).copied()
    }

    /// The operator state frames of stage `stage`'s partitions (none if its
    /// operators keep none).
    pub(crate) fn operator_state(&self, stage: u32) -> &[(u32, Vec<u8>)] {
        self.operator_state.get(&stage).map_or(&[], Vec::as_slice)
    }

    /// The saved state of split `split` of source stage `stage`.
    pub(crate) fn split(&self, stage: u32, split: u32) -> Option<&SplitSnapshot> {
        self.positions.get(&(stage, split))
    }
}

/// The job's snapshot store: `<state dir>/snapshots`.
pub fn snapshot_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshots")
}

/// Opens a snapshot store, naming the directory in the error.
pub fn open_store(dir: &Path) -> Result<Arc<LocalDirStore>, JobError> {
    LocalDirStore::new(dir).map(Arc::new).map_err(|e| {
        JobError::Runtime(format!(
            "cannot open the snapshot store in {}: {e}",
            dir.display()
        ))
    })
}

/// Opens the shared snapshot store `spec` names, naming it in the error.
pub fn open_shared_store(
    spec: &crate::snapshot_store::SnapshotStoreSpec,
) -> Result<Arc<dyn SnapshotStore>, JobError> {
    let store = crate::snapshot_store::open(spec).map_err(|e| {
        JobError::Runtime(format!(
            "cannot open the snapshot store at {}: {e}",
            spec.url
        ))
    })?;
    Ok(store)
}

fn snapshot_error(e: impl std::fmt::Display) -> JobError {
    JobError::Runtime(format!("snapshot store: {e}"))
}

/// Where a run of a job starts, given what its snapshot store holds.
#[derive(Debug)]
pub enum ResumePoint {
    /// From the beginning: nothing is stored, or the last run finished.
    Beginning,
    /// From this complete epoch (state, source positions, commit actions redone).
    Epoch(Manifest),
    /// The last run's input ended and its final epoch is complete, but the run
    /// stopped before that epoch's commit actions had all run. Every record was
    /// read and its output staged; what is left is to redo those actions
    /// ([`redo_commit_actions`], then [`record_finished`]). Reading the input again would commit its output
    /// a second time.
    FinalCommit(Manifest),
}

/// Where to resume `job`: the newest complete epoch in `store`; the final commit,
/// if the last run stopped during it; or the beginning, if that run finished.
pub fn resume_point(store: &dyn SnapshotStore, job: &str) -> Result<ResumePoint, JobError> {
    let Some(m) = store.latest_complete(job).map_err(snapshot_error)? else {
        return Ok(ResumePoint::Beginning);
    };
    match m.meta.get(META_FINAL).map(String::as_str) {
        Some(FINAL_DONE) => {
            tracing::info!(
                job,
                epoch = m.epoch,
                "the job's last run finished; starting from the beginning"
            );
            Ok(ResumePoint::Beginning)
        }
        Some(FINAL_COMMITTING) => {
            tracing::info!(
                job,
                epoch = m.epoch,
                "the job's last run stopped during its final commit; finishing that commit"
            );
            Ok(ResumePoint::FinalCommit(m))
        }
        _ => Ok(ResumePoint::Epoch(m)),
    }
}

/// Records in `store` that the run whose final epoch is `manifest` finished (every
/// commit action of it ran), under a number above every manifest on disk.
pub fn record_finished(manifest: &Manifest, store: &dyn SnapshotStore) -> Result<(), JobError> {
    let next = store
        .manifests(&manifest.job)
        .map_err(snapshot_error)?
        .into_iter()
        .max()
        .map_or(manifest.epoch, |newest| newest.max(manifest.epoch))
        + 1;
    store
        .commit(&finished_manifest(manifest, next))
        .map_err(snapshot_error)
}

/// Copies the savepoint at `path` into `store` so that later epochs can build on its
/// chunks, and returns its manifest.
pub fn import_savepoint(
    path: &Path,
    store: &dyn SnapshotStore,
    job: &str,
) -> Result<Manifest, JobError> {
    let bad = |reason: String| JobError::Plan {
        job: job.to_string(),
        reason: format!("savepoint {}: {reason}", path.display()),
    };
    if !path.is_dir() {
        return Err(bad("no such directory".into()));
    }
    let source = LocalDirStore::new(path).map_err(|e| bad(e.to_string()))?;
    let Some(manifest) = source
        .latest_complete(job)
        .map_err(|e| bad(e.to_string()))?
    else {
        return Err(bad(format!(
            "it holds no complete snapshot of job '{job}' (a savepoint is restored into the job it was taken from)"
        )));
    };
    let mut copied = copy_epoch(&source, store, &manifest).map_err(|e| bad(e.to_string()))?;
    copied.meta.remove("savepoint");
    store.commit(&copied).map_err(snapshot_error)?;
    tracing::info!(job, epoch = manifest.epoch, path = %path.display(), "restoring from savepoint");
    Ok(copied)
}

/// The metadata every manifest of this job carries.
pub fn manifest_meta(key_partitions: u32, stages: &[String]) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert(META_KEY_PARTITIONS.into(), key_partitions.to_string());
    meta.insert(META_STAGES.into(), stages.join("\n"));
    meta
}

/// Restores the job to `manifest`: redoes its commit actions (each through the
/// committer of the stage that produced it), rebuilds every keyed stage's state in
/// the node's store, and reads the source positions.
///
/// `stages` are the job's stages with their stage indices.
pub fn restore(
    job: &str,
    manifest: &Manifest,
    store: &dyn SnapshotStore,
    state: &StateStore,
    stages: &[(u32, &dyn StagePlan)],
    key_partitions: u32,
    stage_names: &[String],
) -> Result<RestorePoint, JobError> {
    let plan_error = |reason: String| JobError::Plan {
        job: job.to_string(),
        reason,
    };
    if let Some(p) = manifest.meta.get(META_KEY_PARTITIONS) {
        if p != &key_partitions.to_string() {
            return Err(plan_error(format!(
                "its snapshot of epoch {} files state under {p} key partitions, but the node is \
                 configured with {key_partitions}; key_partitions is fixed for a job's life",
                manifest.epoch
            )));
        }
    }
    if let Some(saved) = manifest.meta.get(META_STAGES) {
        let now = stage_names.join("\n");
        if saved != &now {
            return Err(plan_error(format!(
                "its snapshot of epoch {} was taken from another job graph (stages {:?}, now {:?})",
                manifest.epoch,
                saved.split('\n').collect::<Vec<_>>(),
                stage_names
            )));
        }
    }
    let read = |link: &weir_actors::snapshot::ChunkRef| {
        store.read_chunk(job, link).map_err(snapshot_error)
    };
    // 1. Commit actions of the restored epoch: a crash may have come between the
    //    manifest and the actions.
    redo_commit_actions(job, manifest, store, &StageCommitters::of(stages))?;
    // 2. Keyed state and source positions.
    let mut point = RestorePoint {
        epoch: manifest.epoch,
        ..RestorePoint::default()
    };
    for &(index, plan) in stages {
        if plan.has_keyed_state() {
            let prefix = state_chunk_stage(index);
            let mut chains = Vec::new();
            for chain in chains_of(manifest, &prefix) {
                let Some(first) = chain.first() else { continue };
                let mut parts = Vec::with_capacity(chain.len());
                for link in chain {
                    parts.push(read(link)?);
                }
                chains.push((first.id.key_partition, parts));
            }
            state.restore_stage(&state_tree_name(job, index), chains)?;
        }
        let mut frames = Vec::new();
        for chain in chains_of(manifest, &operator_chunk_stage(index)) {
            let Some(last) = chain.last() else { continue };
            frames.push((last.id.key_partition, read(last)?));
        }
        if !frames.is_empty() {
            point.operator_state.insert(index, frames);
        }
        if plan.is_source() {
            let prefix = source_chunk_stage(index);
            let mut count = 0;
            for chain in chains_of(manifest, &prefix) {
                let Some(last) = chain.last() else { continue };
                let saved = SplitSnapshot::decode(&read(last)?).map_err(|e| {
                    JobError::Runtime(format!(
                        "decoding split {} of stage {index}: {e}",
                        last.id.key_partition
                    ))
                })?;
                count += 1;
                point
                    .positions
                    .insert((index, last.id.key_partition), saved);
            }
            point.splits.insert(index, count);
        }
    }
    Ok(point)
}

/// Commits again every commit action recorded in `manifest`, each through the
/// committer of the stage it is tagged with (each is idempotent): a crash may have
/// come between the manifest and the actions. Untagged actions of a manifest an older
/// build wrote are redone as that build would have. Part of [`restore`]; on its own
/// for a [`ResumePoint::FinalCommit`].
pub fn redo_commit_actions(
    job: &str,
    manifest: &Manifest,
    store: &dyn SnapshotStore,
    committers: &StageCommitters,
) -> Result<(), JobError> {
    for chain in chains_of(manifest, COMMITS_CHUNK_STAGE) {
        for link in chain {
            let bytes = store.read_chunk(job, link).map_err(snapshot_error)?;
            committers.redo(&bytes).map_err(|source| JobError::Redo {
                epoch: manifest.epoch,
                source: Box::new(source),
            })?;
        }
    }
    Ok(())
}

/// The chains of `manifest` whose chunks belong to chunk stage `stage` (a chain is
/// about one chunk id, so its first link says whose it is).
fn chains_of<'a>(
    manifest: &'a Manifest,
    stage: &'a str,
) -> impl Iterator<Item = &'a Vec<weir_actors::snapshot::ChunkRef>> + 'a {
    manifest
        .chunks
        .iter()
        .filter(move |chain| chain.first().is_some_and(|c| c.id.stage == stage))
}

/// Starts every keyed stage of the job from empty state (a fresh run).
pub fn clear_state(
    job: &str,
    state: &StateStore,
    stages: &[(u32, &dyn StagePlan)],
) -> Result<(), JobError> {
    for &(index, plan) in stages {
        if plan.has_keyed_state() {
            state.clear_stage(&state_tree_name(job, index))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use weir_actors::checkpoint::{encode_commit_list, StageAction};
    use weir_actors::snapshot::{ChunkId, NewChunk};

    use super::*;

    /// Stores `commits` as the commits chunk of a manifest of `epoch` of job "j".
    fn manifest_with_commits(store: &LocalDirStore, epoch: u64, commits: &[u8]) -> Manifest {
        let id = ChunkId::new(COMMITS_CHUNK_STAGE, 0);
        let stored = store
            .put_chunks(
                "j",
                epoch,
                &[NewChunk {
                    id: &id,
                    base: None,
                    data: commits,
                }],
            )
            .unwrap();
        let manifest = Manifest {
            job: "j".into(),
            epoch,
            created_ms: 0,
            chunks: vec![stored],
            meta: BTreeMap::new(),
        };
        store.commit(&manifest).unwrap();
        manifest
    }

    #[test]
    fn a_manifest_an_older_build_wrote_has_its_untagged_actions_redone() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().join("snapshots")).unwrap();
        let staged = dir.path().join("staged.txt");
        let visible = dir.path().join("part.txt");
        std::fs::write(&staged, "a\nb\n").unwrap();
        // What the engine stored before stage tags: a bincode list of bincode
        // `CommitAction`s, here `PublishFile { staged, visible }` (variant 0).
        let mut action = vec![0u8, 0, 0, 0];
        action.extend(bincode::serialize(&staged).unwrap());
        action.extend(bincode::serialize(&visible).unwrap());
        let manifest =
            manifest_with_commits(&store, 4, &bincode::serialize(&vec![action]).unwrap());
        let ResumePoint::Epoch(found) = resume_point(&store, "j").unwrap() else {
            panic!("the old manifest is the resume point");
        };
        assert_eq!(found.epoch, manifest.epoch);
        redo_commit_actions("j", &found, &store, &StageCommitters::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&visible).unwrap(), "a\nb\n");
        // Redone again after another crash: harmless.
        redo_commit_actions("j", &found, &store, &StageCommitters::default()).unwrap();
    }

    #[test]
    fn an_action_tagged_with_a_stage_without_a_committer_fails_the_restore_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path()).unwrap();
        let list = encode_commit_list(&[StageAction {
            stage: 3,
            action: vec![1, 2, 3],
        }])
        .unwrap();
        let manifest = manifest_with_commits(&store, 2, &list);
        let err = redo_commit_actions("j", &manifest, &store, &StageCommitters::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("epoch 2"), "{err}");
        assert!(err.contains("stage 3"), "{err}");
    }
}
