//! [`ObjectStoreSnapshots`]: the [`SnapshotStore`] on an `object_store` backend (S3,
//! or a local directory through the same API).
//!
//! Formats are [`LocalDirStore`](weir_actors::snapshot::LocalDirStore)'s: the same
//! envelope and bodies, checked by `weir_actors::snapshot::verify`. Only the layout
//! differs (see [`super::keys`]), because an object store has no rename: every object
//! is written whole by one put, so a crash leaves it absent or complete.
//!
//! The trait is synchronous and runs on the checkpoint writer's thread and in
//! recovery; the store owns a small current-thread tokio runtime and blocks on it
//! (from a scoped thread when the caller is itself inside a runtime, where blocking
//! is not allowed).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use weir_actors::snapshot::format::{self, FileKind};
use weir_actors::snapshot::{
    verify, ChunkRef, Manifest, NewChunk, RetainStats, SnapshotError, SnapshotStore,
};

use super::head::Head;
use super::keys::{self, Keys};

/// How thoroughly an epoch's chunks are checked.
#[derive(Debug, Clone, Copy)]
enum Check<'a> {
    /// Read back, checksum verified (before restoring).
    Contents,
    /// Listed with a plausible size (retention): the listing of the chunk folder,
    /// name to size.
    Presence(&'a HashMap<String, u64>),
}

/// Whether commits are fenced through the head object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// Every commit first moves the job's head object with a conditional put against
    /// the ETag this writer last saw (needs `PutMode::Update`: S3).
    Head,
    /// No head object: per-epoch manifests are still created with `PutMode::Create`,
    /// but a deposed writer is not fenced (the local file system, one node).
    None,
}

/// The head this writer holds for one job: its content and the version to update.
#[derive(Debug, Clone)]
struct HeldHead {
    head: Head,
    version: UpdateVersion,
}

/// A [`SnapshotStore`] on any `object_store` backend; see the module docs.
pub struct ObjectStoreSnapshots {
    store: Arc<dyn ObjectStore>,
    keys: Keys,
    /// How the store's root is shown in errors, e.g. `s3://bucket`.
    root: String,
    fencing: Fencing,
    /// This instance's id: chunk names carry it, the head records it.
    writer: String,
    runtime: tokio::runtime::Runtime,
    /// The heads this writer holds, by job.
    held: Mutex<HashMap<String, HeldHead>>,
    /// Serialises commits and retention within this instance.
    commit_lock: Mutex<()>,
}

impl std::fmt::Debug for ObjectStoreSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreSnapshots")
            .field("root", &self.root)
            .field("keys", &self.keys)
            .field("fencing", &self.fencing)
            .field("writer", &self.writer)
            .finish()
    }
}

/// A fresh random writer id (16 hex digits).
fn new_writer_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(now.as_nanos());
    }
    format!("{:016x}", h.finish())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic (plain values replaced whole).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ObjectStoreSnapshots {
    /// A store on `store`, under `prefix`; `root` names the backend in errors (e.g.
    /// `s3://bucket`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: impl Into<String>,
        prefix: &str,
        fencing: Fencing,
    ) -> Result<Self, SnapshotError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("weir-snapshot-store")
            .build()
            .map_err(|e| SnapshotError::Remote {
                key: String::new(),
                op: "start the store's runtime",
                source: Box::new(e),
            })?;
        Ok(ObjectStoreSnapshots {
            store,
            keys: Keys::new(prefix),
            root: root.into(),
            fencing,
            writer: new_writer_id(),
            runtime,
            held: Mutex::new(HashMap::new()),
            commit_lock: Mutex::new(()),
        })
    }

    /// This instance's writer id (chunk names carry it).
    pub fn writer_id(&self) -> &str {
        &self.writer
    }

    /// The key of the manifest of `epoch` of `job` (for operators and tests).
    pub fn manifest_key(&self, job: &str, epoch: u64) -> Result<String, SnapshotError> {
        Ok(self.keys.manifest(job, epoch)?.to_string())
    }

    /// The key of `chunk` of `job` (for operators and tests).
    pub fn chunk_key(&self, job: &str, chunk: &ChunkRef) -> Result<String, SnapshotError> {
        Ok(self.keys.chunk(job, chunk)?.to_string())
    }

    /// Runs `fut` to completion on the store's runtime.
    fn block<M, F>(&self, make: M) -> F::Output
    where
        M: FnOnce() -> F + Send,
        F: Future,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking a runtime's thread is not allowed: wait from another one.
            std::thread::scope(|s| match s.spawn(|| self.runtime.block_on(make())).join() {
                Ok(out) => out,
                Err(panic) => std::panic::resume_unwind(panic),
            })
        } else {
            self.runtime.block_on(make())
        }
    }

    /// How `key` is shown in errors.
    fn shown(&self, key: &ObjectPath) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.root.trim_end_matches('/')))
    }

    fn remote(&self, key: &ObjectPath, op: &'static str, e: object_store::Error) -> SnapshotError {
        match e {
            object_store::Error::NotFound { .. } => SnapshotError::Missing {
                path: self.shown(key),
            },
            other => SnapshotError::Remote {
                key: self.shown(key).display().to_string(),
                op,
                source: Box::new(other),
            },
        }
    }

    /// The whole object at `key`, with its version.
    fn get(&self, key: &ObjectPath) -> Result<(Vec<u8>, UpdateVersion), SnapshotError> {
        self.block(|| async {
            let got = self.store.get(key).await?;
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok((got.bytes().await?.to_vec(), version))
        })
        .map_err(|e| self.remote(key, "read", e))
    }

    /// The names and sizes of the objects directly under `dir`.
    fn list(&self, dir: &ObjectPath) -> Result<HashMap<String, u64>, SnapshotError> {
        let listed = self
            .block(|| self.store.list_with_delimiter(Some(dir)))
            .map_err(|e| self.remote(dir, "list", e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?.to_owned();
                Some((name, o.size))
            })
            .collect())
    }

    fn verify_epoch(
        &self,
        job: &str,
        epoch: u64,
        check: Check<'_>,
    ) -> Result<Manifest, SnapshotError> {
        let key = self.keys.manifest(job, epoch)?;
        let path = self.shown(&key);
        let (bytes, _) = self.get(&key)?;
        let manifest = verify::decode_manifest(&path, &bytes, job, epoch)?;
        for chunk in manifest.chunk_refs() {
            let checked = match check {
                Check::Contents => self.read_chunk(job, chunk).map(drop),
                Check::Presence(listing) => self.chunk_listed(job, chunk, listing),
            };
            checked.map_err(|e| verify::chunk_error_in_manifest(&path, e))?;
        }
        Ok(manifest)
    }

    fn chunk_listed(
        &self,
        job: &str,
        chunk: &ChunkRef,
        listing: &HashMap<String, u64>,
    ) -> Result<(), SnapshotError> {
        let key = self.keys.chunk(job, chunk)?;
        match listing.get(&chunk.file) {
            Some(&size) if size > chunk.bytes => Ok(()),
            Some(&size) => Err(SnapshotError::Corrupt {
                path: self.shown(&key),
                reason: format!(
                    "is {size} bytes long, too short for the {} bytes of data it should hold",
                    chunk.bytes
                ),
            }),
            None => Err(SnapshotError::Missing {
                path: self.shown(&key),
            }),
        }
    }

    fn newest_complete(
        &self,
        job: &str,
        want: usize,
        check: Check<'_>,
    ) -> Result<Vec<Manifest>, SnapshotError> {
        let mut found = Vec::new();
        for epoch in self.manifests(job)?.into_iter().rev() {
            if found.len() >= want {
                break;
            }
            match self.verify_epoch(job, epoch, check) {
                Ok(manifest) => found.push(manifest),
                Err(e) if e.is_unusable_snapshot() => {
                    tracing::warn!(
                        job,
                        epoch,
                        error = %e,
                        "snapshot epoch is unusable, falling back to an older epoch"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Puts `head` at `key` conditionally (`mode`), returning the new version, or
    /// `None` when the condition failed.
    fn put_head(
        &self,
        key: &ObjectPath,
        head: &Head,
        mode: PutMode,
    ) -> Result<Option<UpdateVersion>, SnapshotError> {
        let bytes = head.encode(key.as_ref())?;
        let put = self.block(|| {
            self.store.put_opts(
                key,
                PutPayload::from(bytes),
                PutOptions {
                    mode,
                    ..PutOptions::default()
                },
            )
        });
        match put {
            Ok(r) => Ok(Some(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(self.remote(key, "conditional put", e)),
        }
    }

    /// Claims `job` (see [`SnapshotStore::claim`]) and returns the head now held.
    fn claim_head(&self, job: &str) -> Result<HeldHead, SnapshotError> {
        const ATTEMPTS: usize = 20;
        let key = self.keys.head(job)?;
        for _ in 0..ATTEMPTS {
            let (previous, mode) = match self.get(&key) {
                Ok((bytes, version)) => {
                    let previous = Head::decode(key.as_ref(), &bytes, job).unwrap_or_else(|e| {
                        tracing::warn!(job, error = %e, "replacing an unreadable snapshot head");
                        Head {
                            job: job.to_owned(),
                            writer: String::new(),
                            claims: 0,
                            epoch: 0,
                        }
                    });
                    (Some(previous), PutMode::Update(version))
                }
                Err(SnapshotError::Missing { .. }) => (None, PutMode::Create),
                Err(e) => return Err(e),
            };
            let head = Head {
                job: job.to_owned(),
                writer: self.writer.clone(),
                claims: previous.as_ref().map_or(0, |p| p.claims) + 1,
                epoch: previous.as_ref().map_or(0, |p| p.epoch),
            };
            // Lost a race with another claimer: read again and claim after it.
            if let Some(version) = self.put_head(&key, &head, mode)? {
                tracing::info!(job, writer = %self.writer, claims = head.claims, "claimed the job's snapshot head");
                return Ok(HeldHead { head, version });
            }
        }
        Err(SnapshotError::Fenced {
            job: job.to_owned(),
            epoch: 0,
            reason: format!("could not claim the job's head in {ATTEMPTS} attempts: other writers keep claiming it"),
        })
    }

    /// Moves `job`'s head to `epoch`, conditionally on it being the one this writer
    /// last wrote (claiming it first if this writer holds none).
    fn advance_head(&self, job: &str, epoch: u64) -> Result<(), SnapshotError> {
        let held = lock(&self.held).get(job).cloned();
        let held = match held {
            Some(h) => h,
            None => self.claim_head(job)?,
        };
        let key = self.keys.head(job)?;
        let head = Head {
            epoch: held.head.epoch.max(epoch),
            ..held.head.clone()
        };
        match self.put_head(&key, &head, PutMode::Update(held.version.clone()))? {
            Some(version) => {
                lock(&self.held).insert(job.to_owned(), HeldHead { head, version });
                Ok(())
            }
            None => {
                // Keep the stale head: every later commit of this writer fails too.
                lock(&self.held).insert(job.to_owned(), held);
                Err(SnapshotError::Fenced {
                    job: job.to_owned(),
                    epoch,
                    reason: format!(
                        "another writer claimed the job after this one (writer {}) last \
                         committed; this writer is deposed",
                        self.writer
                    ),
                })
            }
        }
    }
}

impl SnapshotStore for ObjectStoreSnapshots {
    /// Encodes every chunk, then puts them all at once (each put is durable when it
    /// returns).
    fn put_chunks(
        &self,
        job: &str,
        epoch: u64,
        chunks: &[NewChunk<'_>],
    ) -> Result<Vec<ChunkRef>, SnapshotError> {
        let dir = self.keys.chunks_dir(job)?;
        let mut objects = Vec::with_capacity(chunks.len());
        let mut refs = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let file = keys::chunk_name(epoch, chunk.id, &self.writer)?;
            let key = self.keys.chunk_named(job, &file)?;
            let bytes = verify::encode_chunk(
                &self.shown(&key),
                job,
                epoch,
                chunk.id,
                chunk.base,
                chunk.data,
            )?;
            objects.push((key, bytes));
            refs.push(ChunkRef {
                id: chunk.id.clone(),
                epoch,
                base: chunk.base,
                file,
                bytes: chunk.data.len() as u64,
            });
        }
        let store = &self.store;
        let results = self.block(|| async move {
            let mut puts = tokio::task::JoinSet::new();
            for (n, (key, bytes)) in objects.into_iter().enumerate() {
                let store = Arc::clone(store);
                puts.spawn(async move {
                    let put = store
                        .put_opts(&key, PutPayload::from(bytes), PutOptions::default())
                        .await;
                    (n, key, put.map(drop))
                });
            }
            let mut results = Vec::new();
            while let Some(done) = puts.join_next().await {
                results.push(done);
            }
            results
        });
        for done in results {
            let (_, key, put) = done.map_err(|e| SnapshotError::Remote {
                key: self.shown(&dir).display().to_string(),
                op: "put chunk",
                source: Box::new(e),
            })?;
            put.map_err(|e| self.remote(&key, "put", e))?;
        }
        tracing::debug!(job, epoch, chunks = refs.len(), "stored snapshot chunks");
        Ok(refs)
    }

    fn read_chunk(&self, job: &str, chunk: &ChunkRef) -> Result<Vec<u8>, SnapshotError> {
        let key = self.keys.chunk(job, chunk)?;
        let (bytes, _) = self.get(&key)?;
        verify::decode_chunk(&self.shown(&key), &bytes, job, chunk)
    }

    /// Checks that every chunk exists, moves the job's head (fencing, see
    /// [`Fencing::Head`]), then creates the manifest object with `PutMode::Create`:
    /// a second commit of the same epoch fails with [`SnapshotError::Fenced`] unless
    /// it is byte for byte the manifest already there (a retried commit).
    fn commit(&self, manifest: &Manifest) -> Result<(), SnapshotError> {
        manifest.validate()?;
        let job = manifest.job.as_str();
        let mut chunk_keys = Vec::new();
        for chunk in manifest.chunk_refs() {
            chunk_keys.push(self.keys.chunk(job, chunk)?);
        }
        let store = &self.store;
        let missing = self.block(|| async {
            for key in &chunk_keys {
                if let Err(e) = store.head(key).await {
                    return Some((key.clone(), e));
                }
            }
            None
        });
        if let Some((key, e)) = missing {
            return Err(self.remote(&key, "inspect", e));
        }
        let key = self.keys.manifest(job, manifest.epoch)?;
        let bytes = format::encode(&self.shown(&key), FileKind::Manifest, manifest)?;
        let _guard = lock(&self.commit_lock);
        if self.fencing == Fencing::Head {
            self.advance_head(job, manifest.epoch)?;
        }
        let put = self.block(|| {
            self.store.put_opts(
                &key,
                PutPayload::from(bytes.clone()),
                PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                },
            )
        });
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                let (existing, _) = self.get(&key)?;
                if existing != bytes {
                    return Err(SnapshotError::Fenced {
                        job: job.to_owned(),
                        epoch: manifest.epoch,
                        reason: format!(
                            "epoch {} is already committed (by another writer) with another \
                             manifest",
                            manifest.epoch
                        ),
                    });
                }
                tracing::info!(
                    job,
                    epoch = manifest.epoch,
                    "snapshot epoch was already committed with this manifest"
                );
                return Ok(());
            }
            Err(e) => return Err(self.remote(&key, "create", e)),
        }
        tracing::info!(job, epoch = manifest.epoch, "committed snapshot epoch");
        Ok(())
    }

    fn latest_complete(&self, job: &str) -> Result<Option<Manifest>, SnapshotError> {
        Ok(self
            .newest_complete(job, 1, Check::Contents)?
            .into_iter()
            .next())
    }

    fn manifests(&self, job: &str) -> Result<Vec<u64>, SnapshotError> {
        let dir = self.keys.manifests_dir(job)?;
        let mut epochs: Vec<u64> = self
            .list(&dir)?
            .keys()
            .filter_map(|name| keys::parse_manifest_epoch(name))
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    fn claim(&self, job: &str) -> Result<(), SnapshotError> {
        if self.fencing == Fencing::None {
            return Ok(());
        }
        let _guard = lock(&self.commit_lock);
        let held = self.claim_head(job)?;
        lock(&self.held).insert(job.to_owned(), held);
        Ok(())
    }

    fn retain(&self, job: &str, keep: usize) -> Result<RetainStats, SnapshotError> {
        if keep == 0 {
            return Err(SnapshotError::InvalidArgument(format!(
                "retention for job {job:?} must keep at least one complete epoch"
            )));
        }
        let _guard = lock(&self.commit_lock);
        let chunk_dir = self.keys.chunks_dir(job)?;
        let listing = self.list(&chunk_dir)?;
        let kept = self.newest_complete(job, keep, Check::Presence(&listing))?;
        let (Some(newest), Some(oldest)) = (kept.first(), kept.last()) else {
            return Ok(RetainStats::default());
        };
        let (newest, oldest) = (newest.epoch, oldest.epoch);
        let mut stats = RetainStats {
            kept: kept.iter().rev().map(|m| m.epoch).collect(),
            ..RetainStats::default()
        };
        // Manifests first: a crash after this leaves only unreferenced chunks behind.
        let mut doomed = Vec::new();
        for epoch in self.manifests(job)? {
            if epoch < oldest {
                doomed.push(self.keys.manifest(job, epoch)?);
                stats.removed_manifests.push(epoch);
            }
        }
        self.delete_all(&doomed)?;
        let referenced: HashSet<&str> = kept
            .iter()
            .flat_map(|m| m.chunk_refs())
            .map(|c| c.file.as_str())
            .collect();
        let mut doomed = Vec::new();
        for (name, size) in &listing {
            // Objects the store did not write, and anything newer than the newest
            // complete epoch (possibly in progress), are left alone.
            let Some(epoch) = keys::parse_chunk_epoch(name) else {
                continue;
            };
            if epoch > newest || referenced.contains(name.as_str()) {
                continue;
            }
            doomed.push(self.keys.chunk_named(job, name)?);
            stats.removed_chunks += 1;
            stats.removed_bytes += size;
        }
        self.delete_all(&doomed)?;
        tracing::info!(
            job,
            kept = ?stats.kept,
            removed_manifests = stats.removed_manifests.len(),
            removed_chunks = stats.removed_chunks,
            "applied snapshot retention"
        );
        Ok(stats)
    }
}

impl ObjectStoreSnapshots {
    /// Deletes every object in `keys`; one already gone counts as deleted.
    fn delete_all(&self, keys: &[ObjectPath]) -> Result<(), SnapshotError> {
        let store = &self.store;
        let failed = self.block(|| async {
            for key in keys {
                match store.delete(key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Some((key.clone(), e)),
                }
            }
            None
        });
        match failed {
            Some((key, e)) => Err(self.remote(&key, "delete", e)),
            None => Ok(()),
        }
    }
}
