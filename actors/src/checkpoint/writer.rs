//! The coordinator's writer thread: stores an epoch's chunks, folds deltas into the
//! per-chunk chains (compacting long ones), commits the manifest, runs the commit
//! actions, applies retention and exports savepoints — all off the actor threads, in
//! epoch order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::snapshot::{
    copy_epoch, ChunkId, ChunkRef, LocalDirStore, Manifest, NewChunk, SnapshotStore,
};

use super::commit_list::encode_commit_list;
use super::coordinator::{Committer, Merger};
use super::{
    finished_manifest, ChunkData, StageAction, COMMITS_CHUNK_STAGE, FINAL_COMMITTING, META_FINAL,
};

/// One epoch handed to the writer.
pub(crate) struct EpochWrite {
    pub epoch: u64,
    pub chunks: Vec<ChunkData>,
    pub commits: Vec<StageAction>,
    /// Abandoned epochs store their chunks (later epochs build on them) but commit no
    /// manifest and run no commit actions.
    pub abandoned: bool,
    pub is_final: bool,
    /// Export the epoch as a savepoint into this directory.
    pub savepoint: Option<PathBuf>,
    pub reply: oneshot::Sender<Result<Written, String>>,
}

/// What the writer did with an epoch.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    /// Bytes of chunk data stored for this epoch.
    pub bytes: u64,
    /// Time spent writing.
    pub took: Duration,
    /// Where the savepoint went, if one was asked for.
    pub savepoint: Option<PathBuf>,
}

/// The writer's fixed settings.
pub(crate) struct WriterSetup {
    pub job: String,
    pub store: Option<Arc<dyn SnapshotStore>>,
    pub retain: usize,
    pub compact_after: usize,
    pub committer: Committer,
    pub merge: Merger,
    pub meta: BTreeMap<String, String>,
    /// The chains of the restored epoch, if any.
    pub chains: BTreeMap<ChunkId, Vec<ChunkRef>>,
}

/// Starts the writer thread; it ends when the sender is dropped.
pub(crate) fn start(
    setup: WriterSetup,
) -> (
    std::sync::mpsc::Sender<EpochWrite>,
    Option<std::thread::JoinHandle<()>>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<EpochWrite>();
    let spawned = std::thread::Builder::new()
        .name(format!("weir-checkpoint-{}", setup.job))
        .spawn(move || {
            let mut writer = Writer {
                setup,
                failed: None,
            };
            while let Ok(job) = rx.recv() {
                let reply = job.reply;
                let result = match &writer.failed {
                    // After a failure nothing more is made durable: this attempt is
                    // over, and the next one restores the last complete epoch.
                    Some((epoch, reason)) => Err(format!(
                        "not written, because epoch {epoch} failed before it: {reason}"
                    )),
                    None => writer.write(
                        job.epoch,
                        job.chunks,
                        job.commits,
                        job.abandoned,
                        job.is_final,
                        job.savepoint,
                    ),
                };
                if let (Err(reason), None) = (&result, &writer.failed) {
                    writer.failed = Some((job.epoch, reason.clone()));
                }
                let _ = reply.send(result);
            }
        });
    match spawned {
        Ok(handle) => (tx, Some(handle)),
        Err(e) => {
            tracing::error!(error = %e, "could not start the checkpoint writer thread");
            (tx, None)
        }
    }
}

struct Writer {
    setup: WriterSetup,
    /// The first epoch whose write failed, and why. Every later epoch is refused:
    /// a lost chunk would leave later deltas without their base, and epochs the
    /// job completes after a failure (its final epoch, say, while the failure is
    /// still on its way to the supervisor) must not overtake the recovery that
    /// failure calls for.
    failed: Option<(u64, String)>,
}

impl Writer {
    fn write(
        &mut self,
        epoch: u64,
        chunks: Vec<ChunkData>,
        commits: Vec<StageAction>,
        abandoned: bool,
        is_final: bool,
        savepoint: Option<PathBuf>,
    ) -> Result<Written, String> {
        let started = Instant::now();
        let Some(store) = self.setup.store.clone() else {
            // Checkpointing is off: only the final epoch runs its commit actions.
            if !abandoned {
                self.apply(&commits)?;
            }
            return Ok(Written {
                bytes: 0,
                took: started.elapsed(),
                savepoint: None,
            });
        };
        let job = self.setup.job.clone();
        let mut bytes = 0u64;
        // The final epoch's state is never restored: a job whose last manifest is
        // final starts over. Its manifest only carries the commit actions (and the
        // mark), so its chunks are not written; that keeps the end of a job fast.
        let chunks = if is_final { Vec::new() } else { chunks };
        let mut batch = Vec::with_capacity(chunks.len() + 1);
        for chunk in chunks {
            bytes += chunk.data.len() as u64;
            batch.push(self.prepare_chunk(store.as_ref(), chunk)?);
        }
        let commits_id = ChunkId::new(COMMITS_CHUNK_STAGE, 0);
        if !abandoned {
            if commits.is_empty() {
                self.setup.chains.remove(&commits_id);
            } else {
                let data = encode_commit_list(&commits)
                    .map_err(|e| format!("encoding the commit actions of epoch {epoch}: {e}"))?;
                batch.push((commits_id, None, data));
            }
        }
        let new: Vec<NewChunk<'_>> = batch
            .iter()
            .map(|(id, base, data)| NewChunk {
                id,
                base: *base,
                data,
            })
            .collect();
        let stored = store
            .put_chunks(&job, epoch, &new)
            .map_err(|e| e.to_string())?;
        for ((id, base, _), stored) in batch.iter().zip(stored) {
            let chain = self.setup.chains.entry(id.clone()).or_default();
            if base.is_none() {
                chain.clear();
            }
            chain.push(stored);
        }
        if abandoned {
            return Ok(Written {
                bytes,
                took: started.elapsed(),
                savepoint: None,
            });
        }
        let mut meta = self.setup.meta.clone();
        if is_final {
            meta.insert(META_FINAL.into(), FINAL_COMMITTING.into());
        }
        let manifest = Manifest {
            job: job.clone(),
            epoch,
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            chunks: self.setup.chains.values().cloned().collect(),
            meta,
        };
        store.commit(&manifest).map_err(|e| e.to_string())?;
        self.apply(&commits)?;
        if is_final {
            // Every commit action of the final epoch ran: the run is finished, and
            // only now may the next run start from the beginning. (A run that finds
            // the final epoch's manifest newest redoes its actions instead.) The
            // coordinator keeps `epoch + 1` free for this manifest.
            store
                .commit(&finished_manifest(&manifest, epoch + 1))
                .map_err(|e| format!("recording that the run finished: {e}"))?;
        }
        if let Err(e) = store.retain(&job, self.setup.retain.max(1)) {
            tracing::warn!(job = %job, error = %e, "checkpoint retention failed; old epochs stay on disk");
        }
        let savepoint = match savepoint {
            Some(dir) => Some(export_savepoint(store.as_ref(), &manifest, &dir)?),
            None => None,
        };
        Ok(Written {
            bytes,
            took: started.elapsed(),
            savepoint,
        })
    }

    fn apply(&self, commits: &[StageAction]) -> Result<(), String> {
        for commit in commits {
            (self.setup.committer)(commit.stage, &commit.action)?;
        }
        Ok(())
    }

    /// What to store for one chunk, given its chain: a full chunk starts a new chain,
    /// a delta extends the chain (or starts one when there is none: a delta on empty
    /// state is a full image), and a chain reaching `compact_after` deltas is folded
    /// into one full chunk. Returns the id, the base epoch (`None` for a full image)
    /// and the bytes.
    fn prepare_chunk(
        &self,
        store: &dyn SnapshotStore,
        chunk: ChunkData,
    ) -> Result<(ChunkId, Option<u64>, Vec<u8>), String> {
        let job = &self.setup.job;
        let chain = self
            .setup
            .chains
            .get(&chunk.id)
            .map_or(&[][..], Vec::as_slice);
        // A chain may hold a chunk of this same epoch number from an abandoned
        // attempt only if epochs were reused, which the coordinator never does.
        if chunk.full || chain.is_empty() {
            return Ok((chunk.id, None, chunk.data));
        }
        if chain.len() <= self.setup.compact_after {
            let base = chain.last().map(|c| c.epoch);
            return Ok((chunk.id, base, chunk.data));
        }
        let mut parts = Vec::with_capacity(chain.len() + 1);
        for link in chain {
            parts.push(store.read_chunk(job, link).map_err(|e| e.to_string())?);
        }
        parts.push(chunk.data);
        let full = (self.setup.merge)(&parts).map_err(|e| {
            format!(
                "compacting stage {:?} partition {}: {e}",
                chunk.id.stage, chunk.id.key_partition
            )
        })?;
        Ok((chunk.id, None, full))
    }
}

/// Copies a committed epoch into its own store under `dir` (a directory of its own),
/// so the savepoint outlives retention and can be moved.
fn export_savepoint(
    store: &dyn SnapshotStore,
    manifest: &Manifest,
    dir: &std::path::Path,
) -> Result<PathBuf, String> {
    let target = dir.join(format!("savepoint-{:06}", manifest.epoch));
    std::fs::create_dir_all(&target)
        .map_err(|e| format!("creating savepoint directory {}: {e}", target.display()))?;
    let out = LocalDirStore::new(&target).map_err(|e| e.to_string())?;
    let mut copied = copy_epoch(store, &out, manifest).map_err(|e| e.to_string())?;
    copied.meta.insert("savepoint".into(), "true".into());
    out.commit(&copied).map_err(|e| e.to_string())?;
    Ok(target)
}
