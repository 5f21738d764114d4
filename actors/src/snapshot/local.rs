//! [`SnapshotStore`] on a local directory.
//!
//! Layout under the root (names escaped as described in [`super::names`]):
//!
//! ```text
//! <root>/<job>/chunks/<epoch>-<stage>-<partition>.chunk
//! <root>/<job>/manifests/<epoch, 20 digits>.manifest
//! ```
//!
//! Every file is written to a `.tmp` sibling, fsynced, renamed into place and the
//! directory fsynced, so a crash leaves either the old state or the new one plus at
//! most a stray temp file, which later commits (manifests) or retention (chunks) clear.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::error::SnapshotError;
use super::format::{self, FileKind};
use super::names::{
    chunk_file_name, encode_name, manifest_file_name, parse_chunk_file_epoch,
    parse_manifest_file_name, TEMP_SUFFIX,
};
use super::store::{ChunkRef, Manifest, NewChunk, RetainStats, SnapshotStore};
use super::verify;

const CHUNKS_DIR: &str = "chunks";

/// How thoroughly an epoch's chunks are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Read back, checksum verified (before restoring).
    Contents,
    /// Present with a plausible size (retention).
    Presence,
}
const MANIFESTS_DIR: &str = "manifests";

/// A snapshot store keeping everything in one local directory tree.
///
/// Suitable for single-node deployments and tests; the directory may be a network
/// mount as long as it honours fsync and atomic rename.
#[derive(Debug)]
pub struct LocalDirStore {
    root: PathBuf,
    /// Serialises manifest writes and retention within this process, so that temp-file
    /// cleanup never races a commit in flight.
    manifest_lock: Mutex<()>,
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { path, op, source }
}

/// Reads a whole file, reporting a missing one as [`SnapshotError::Missing`].
fn read_file(path: &Path) -> Result<Vec<u8>, SnapshotError> {
    fs::read(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            SnapshotError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            io_err(path, "read")(e)
        }
    })
}

/// Makes a directory's entries (creations, renames, deletions) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Directories cannot be fsynced portably outside Unix; rename is relied on alone.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), SnapshotError> {
    Ok(())
}

/// Creates `dir` (whose parent exists) if needed, making the creation durable.
fn ensure_dir(dir: &Path) -> Result<(), SnapshotError> {
    if dir.is_dir() {
        return Ok(());
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_err(dir, "create directory")(e)),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Writes `bytes` to `dir/name` atomically and durably: temp file, fsync, rename,
/// fsync directory. On failure the temp file is removed on a best-effort basis.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SnapshotError> {
    write_all_atomic(dir, &[(name.to_owned(), bytes)])
}

/// Fsyncs each open temp file.
fn sync_files(files: &[(PathBuf, File)]) -> Result<(), SnapshotError> {
    for (tmp, f) in files {
        f.sync_all().map_err(io_err(tmp, "fsync"))?;
    }
    Ok(())
}

/// How many files [`write_all_atomic`] fsyncs at once.
const PARALLEL_SYNCS: usize = 8;

/// Writes each `(name, bytes)` into `dir` atomically and durably (temp file,
/// fsync, rename), with one directory fsync for all of them and the file fsyncs
/// issued from several threads at once when there are several files. On failure the
/// temp files are removed on a best-effort basis.
fn write_all_atomic<B: AsRef<[u8]>>(
    dir: &Path,
    files: &[(String, B)],
) -> Result<(), SnapshotError> {
    let temp = |name: &str| dir.join(format!("{name}{TEMP_SUFFIX}"));
    let written = (|| {
        let mut handles = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            let tmp = temp(name);
            let mut f = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
            f.write_all(bytes.as_ref()).map_err(io_err(&tmp, "write"))?;
            handles.push((tmp, f));
        }
        if handles.len() <= 1 {
            sync_files(&handles)?;
        } else {
            let per_thread = handles.len().div_ceil(PARALLEL_SYNCS).max(1);
            std::thread::scope(|scope| {
                let syncing: Vec<_> = handles
                    .chunks(per_thread)
                    .map(|group| scope.spawn(move || sync_files(group)))
                    .collect();
                for thread in syncing {
                    thread.join().map_err(|_| {
                        SnapshotError::InvalidArgument("a chunk fsync thread panicked".into())
                    })??;
                }
                Ok::<_, SnapshotError>(())
            })?;
        }
        for (name, _) in files {
            let dest = dir.join(name);
            fs::rename(temp(name), &dest).map_err(io_err(&dest, "rename into place"))?;
        }
        Ok(())
    })();
    if written.is_err() {
        for (name, _) in files {
            let _ = fs::remove_file(temp(name));
        }
    }
    written?;
    sync_dir(dir)
}

/// Removes a file, treating "already gone" as success. Returns whether it removed it.
fn remove_if_present(path: &Path) -> Result<bool, SnapshotError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path, "remove")(e)),
    }
}

/// The names of the files in `dir`; an absent directory has none.
fn file_names(dir: &Path) -> Result<Vec<String>, SnapshotError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, "list directory")(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir, "list directory"))?;
        // Names that are not UTF-8 were not written by the store; leave them alone.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

impl LocalDirStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, SnapshotError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(&root, "create directory"))?;
        Ok(LocalDirStore {
            root,
            manifest_lock: Mutex::new(()),
        })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn job_dir(&self, job: &str) -> Result<PathBuf, SnapshotError> {
        Ok(self.root.join(encode_name("job", job)?))
    }

    /// Where the manifest of `epoch` of `job` lives (whether or not it exists); useful
    /// to operators and tests.
    pub fn manifest_path(&self, job: &str, epoch: u64) -> Result<PathBuf, SnapshotError> {
        Ok(self
            .job_dir(job)?
            .join(MANIFESTS_DIR)
            .join(manifest_file_name(epoch)))
    }

    /// Where `chunk` of `job` lives, after checking that its file name is the one the
    /// store derives from its id and epoch (so a manifest cannot point elsewhere).
    pub fn chunk_path(&self, job: &str, chunk: &ChunkRef) -> Result<PathBuf, SnapshotError> {
        let expected = chunk_file_name(chunk.epoch, &chunk.id)?;
        if chunk.file != expected {
            return Err(SnapshotError::InvalidChunkRef {
                file: chunk.file.clone(),
                reason: format!(
                    "stage {:?} partition {} at epoch {} is stored as {expected:?}",
                    chunk.id.stage, chunk.id.key_partition, chunk.epoch
                ),
            });
        }
        Ok(self.job_dir(job)?.join(CHUNKS_DIR).join(expected))
    }

    fn lock_manifests(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`, so a poisoned lock holds nothing inconsistent.
        self.manifest_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads and checks the manifest of `epoch`, then checks every chunk it lists:
    /// with [`Check::Contents`] each is read back and its checksum verified, with
    /// [`Check::Presence`] its file must exist with the size the manifest records
    /// (enough for retention, which runs after every epoch and must stay cheap). Any
    /// unusable file makes the whole epoch unusable.
    fn verify_epoch(&self, job: &str, epoch: u64, check: Check) -> Result<Manifest, SnapshotError> {
        let path = self.manifest_path(job, epoch)?;
        let manifest = verify::decode_manifest(&path, &read_file(&path)?, job, epoch)?;
        for chunk in manifest.chunk_refs() {
            let checked = match check {
                Check::Contents => self.read_chunk(job, chunk).map(drop),
                Check::Presence => self.chunk_present(job, chunk),
            };
            checked.map_err(|e| verify::chunk_error_in_manifest(&path, e))?;
        }
        Ok(manifest)
    }

    /// Fails unless `chunk`'s file exists and is larger than its data (the file
    /// adds a header and a checksum), without reading it.
    fn chunk_present(&self, job: &str, chunk: &ChunkRef) -> Result<(), SnapshotError> {
        let path = self.chunk_path(job, chunk)?;
        match fs::metadata(&path) {
            Ok(meta) if meta.len() > chunk.bytes => Ok(()),
            Ok(meta) => Err(SnapshotError::Corrupt {
                path,
                reason: format!(
                    "is {} bytes long, too short for the {} bytes of data it should hold",
                    meta.len(),
                    chunk.bytes
                ),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SnapshotError::Missing { path }),
            Err(e) => Err(io_err(&path, "inspect")(e)),
        }
    }

    /// Up to `want` complete epochs, newest first, skipping (with a warning) epochs
    /// whose files are corrupt or missing.
    fn newest_complete(
        &self,
        job: &str,
        want: usize,
        check: Check,
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
}

impl SnapshotStore for LocalDirStore {
    /// Writes every chunk to a temp file, fsyncs them all (several at once, so the
    /// file system can share journal commits between them), renames them into place
    /// and fsyncs the directory once.
    fn put_chunks(
        &self,
        job: &str,
        epoch: u64,
        chunks: &[NewChunk<'_>],
    ) -> Result<Vec<ChunkRef>, SnapshotError> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let job_dir = self.job_dir(job)?;
        let dir = job_dir.join(CHUNKS_DIR);
        ensure_dir(&job_dir)?;
        ensure_dir(&dir)?;
        let mut files = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let file = chunk_file_name(epoch, chunk.id)?;
            let bytes = verify::encode_chunk(
                &dir.join(&file),
                job,
                epoch,
                chunk.id,
                chunk.base,
                chunk.data,
            )?;
            files.push((file, bytes));
        }
        write_all_atomic(&dir, &files)?;
        Ok(chunks
            .iter()
            .zip(files)
            .map(|(chunk, (file, _))| {
                tracing::debug!(job, epoch, file = %file, bytes = chunk.data.len(), "stored snapshot chunk");
                ChunkRef {
                    id: chunk.id.clone(),
                    epoch,
                    base: chunk.base,
                    file,
                    bytes: chunk.data.len() as u64,
                }
            })
            .collect())
    }

    fn read_chunk(&self, job: &str, chunk: &ChunkRef) -> Result<Vec<u8>, SnapshotError> {
        let path = self.chunk_path(job, chunk)?;
        verify::decode_chunk(&path, &read_file(&path)?, job, chunk)
    }

    fn commit(&self, manifest: &Manifest) -> Result<(), SnapshotError> {
        manifest.validate()?;
        let job = manifest.job.as_str();
        for chunk in manifest.chunk_refs() {
            let path = self.chunk_path(job, chunk)?;
            match fs::metadata(&path) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(SnapshotError::Missing { path })
                }
                Err(e) => return Err(io_err(&path, "inspect")(e)),
            }
        }
        let job_dir = self.job_dir(job)?;
        let dir = job_dir.join(MANIFESTS_DIR);
        let _guard = self.lock_manifests();
        ensure_dir(&job_dir)?;
        ensure_dir(&dir)?;
        // Anything still named .tmp here was left by a commit that crashed before its
        // rename; it never became visible, so it can go.
        for name in file_names(&dir)? {
            if name.ends_with(TEMP_SUFFIX) && remove_if_present(&dir.join(&name))? {
                tracing::info!(job, file = %name, "removed leftover temporary manifest");
            }
        }
        let name = manifest_file_name(manifest.epoch);
        let bytes = format::encode(&dir.join(&name), FileKind::Manifest, manifest)?;
        write_atomic(&dir, &name, &bytes)?;
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
        let dir = self.job_dir(job)?.join(MANIFESTS_DIR);
        let mut epochs: Vec<u64> = file_names(&dir)?
            .iter()
            .filter_map(|name| parse_manifest_file_name(name))
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    fn retain(&self, job: &str, keep: usize) -> Result<RetainStats, SnapshotError> {
        if keep == 0 {
            return Err(SnapshotError::InvalidArgument(format!(
                "retention for job {job:?} must keep at least one complete epoch"
            )));
        }
        let job_dir = self.job_dir(job)?;
        let _guard = self.lock_manifests();
        let kept = self.newest_complete(job, keep, Check::Presence)?;
        let (Some(newest), Some(oldest)) = (kept.first(), kept.last()) else {
            // Nothing is complete: everything may still be needed or in progress.
            return Ok(RetainStats::default());
        };
        let (newest, oldest) = (newest.epoch, oldest.epoch);
        let mut stats = RetainStats {
            kept: kept.iter().rev().map(|m| m.epoch).collect(),
            ..RetainStats::default()
        };

        // Manifests first: a crash after this leaves only unreferenced chunks behind,
        // never a manifest whose chunks are gone.
        let manifest_dir = job_dir.join(MANIFESTS_DIR);
        for epoch in self.manifests(job)? {
            if epoch < oldest && remove_if_present(&manifest_dir.join(manifest_file_name(epoch)))? {
                stats.removed_manifests.push(epoch);
            }
        }
        if !stats.removed_manifests.is_empty() {
            sync_dir(&manifest_dir)?;
        }

        let referenced: HashSet<&str> = kept
            .iter()
            .flat_map(|m| m.chunk_refs())
            .map(|c| c.file.as_str())
            .collect();
        let chunk_dir = job_dir.join(CHUNKS_DIR);
        for name in file_names(&chunk_dir)? {
            // Files the store did not write, and anything newer than the newest
            // complete epoch (possibly in progress), are left alone.
            let Some(epoch) = parse_chunk_file_epoch(&name) else {
                continue;
            };
            if epoch > newest || referenced.contains(name.as_str()) {
                continue;
            }
            let path = chunk_dir.join(&name);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if remove_if_present(&path)? {
                stats.removed_chunks += 1;
                stats.removed_bytes += len;
            }
        }
        if stats.removed_chunks > 0 {
            sync_dir(&chunk_dir)?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::store::ChunkId;
    use crate::snapshot::testutil::Captured;
    use std::collections::BTreeMap;
    use tracing::Level;

    const JOB: &str = "Orders Job";

    fn store() -> (tempfile::TempDir, LocalDirStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().join("snaps")).unwrap();
        (dir, store)
    }

    fn manifest(epoch: u64, chunks: Vec<Vec<ChunkRef>>) -> Manifest {
        Manifest {
            job: JOB.to_owned(),
            epoch,
            created_ms: 1_000 + epoch,
            chunks,
            meta: BTreeMap::from([("graph".to_owned(), "v1".to_owned())]),
        }
    }

    /// Writes full chunks for partitions 0 and 1 of stage "agg" and commits `epoch`.
    fn commit_full(s: &LocalDirStore, epoch: u64) -> Manifest {
        let chains = (0..2)
            .map(|kp| {
                let data = format!("state {epoch}/{kp}");
                vec![s
                    .put_chunk(JOB, epoch, &ChunkId::new("agg", kp), None, data.as_bytes())
                    .unwrap()]
            })
            .collect();
        let m = manifest(epoch, chains);
        s.commit(&m).unwrap();
        m
    }

    fn flip_byte(path: &Path, at: usize) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at] ^= 0x40;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn put_then_read_round_trips() {
        let (_d, s) = store();
        let id = ChunkId::new("agg", 3);
        let r = s.put_chunk(JOB, 7, &id, None, b"hello state").unwrap();
        assert_eq!((r.epoch, r.base, r.bytes), (7, None, 11));
        assert_eq!(s.read_chunk(JOB, &r).unwrap(), b"hello state");
        let path = s.chunk_path(JOB, &r).unwrap();
        assert!(
            path.ends_with("%4frders%20%4aob/chunks/7-agg-3.chunk"),
            "{path:?}"
        );

        let empty = s.put_chunk(JOB, 8, &id, Some(7), b"").unwrap();
        assert_eq!(s.read_chunk(JOB, &empty).unwrap(), b"");
        // Rewriting a chunk replaces it.
        let again = s.put_chunk(JOB, 7, &id, None, b"retried").unwrap();
        assert_eq!(s.read_chunk(JOB, &again).unwrap(), b"retried");
    }

    #[test]
    fn commit_then_latest_complete_returns_it() {
        let (_d, s) = store();
        assert_eq!(s.latest_complete(JOB).unwrap(), None);
        commit_full(&s, 1);
        let m2 = commit_full(&s, 2);
        assert_eq!(s.latest_complete(JOB).unwrap(), Some(m2.clone()));
        for chunk in m2.chunk_refs() {
            let data = s.read_chunk(JOB, chunk).unwrap();
            assert_eq!(
                data,
                format!("state 2/{}", chunk.id.key_partition).as_bytes()
            );
        }
    }

    #[test]
    fn corrupt_newest_manifest_falls_back_with_warning() {
        let (_d, s) = store();
        let m1 = commit_full(&s, 1);
        commit_full(&s, 2);
        let path = s.manifest_path(JOB, 2).unwrap();
        flip_byte(&path, 20);
        let log = Captured::default();
        let latest = log.run(|| s.latest_complete(JOB)).unwrap();
        assert_eq!(latest, Some(m1));
        let warns = log.at(Level::WARN);
        assert_eq!(warns.len(), 1, "{warns:?}");
        assert!(
            warns[0].contains("00000000000000000002.manifest"),
            "{warns:?}"
        );
        assert!(warns[0].contains("checksum mismatch"), "{warns:?}");
        assert!(warns[0].contains("falling back"), "{warns:?}");
    }

    #[test]
    fn corrupt_chunk_of_newest_epoch_falls_back_with_warning() {
        let (_d, s) = store();
        let m1 = commit_full(&s, 1);
        let m2 = commit_full(&s, 2);
        let victim = &m2.chunks[1][0];
        flip_byte(&s.chunk_path(JOB, victim).unwrap(), 25);
        let log = Captured::default();
        assert_eq!(log.run(|| s.latest_complete(JOB)).unwrap(), Some(m1));
        let warns = log.at(Level::WARN);
        assert_eq!(warns.len(), 1, "{warns:?}");
        assert!(warns[0].contains(&victim.file), "{warns:?}");
        assert!(warns[0].contains("epoch=2"), "{warns:?}");
    }

    #[test]
    fn missing_chunk_of_newest_epoch_falls_back() {
        let (_d, s) = store();
        let m1 = commit_full(&s, 1);
        let m2 = commit_full(&s, 2);
        fs::remove_file(s.chunk_path(JOB, &m2.chunks[0][0]).unwrap()).unwrap();
        assert_eq!(s.latest_complete(JOB).unwrap(), Some(m1));
    }

    #[test]
    fn nothing_usable_gives_none() {
        let (_d, s) = store();
        commit_full(&s, 1);
        flip_byte(&s.manifest_path(JOB, 1).unwrap(), 0);
        assert_eq!(s.latest_complete(JOB).unwrap(), None);
    }

    #[test]
    fn truncated_chunk_is_corrupt() {
        let (_d, s) = store();
        let r = s
            .put_chunk(JOB, 1, &ChunkId::new("agg", 0), None, &[9u8; 100])
            .unwrap();
        let path = s.chunk_path(JOB, &r).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        match s.read_chunk(JOB, &r) {
            Err(SnapshotError::Corrupt { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn chunk_not_matching_its_reference_is_corrupt() {
        let (_d, s) = store();
        let r = s
            .put_chunk(JOB, 5, &ChunkId::new("agg", 0), Some(4), b"delta")
            .unwrap();
        let wrong_base = ChunkRef {
            base: Some(3),
            ..r.clone()
        };
        let err = s.read_chunk(JOB, &wrong_base).unwrap_err();
        assert!(err.to_string().contains("base"), "{err}");
        assert!(matches!(err, SnapshotError::Corrupt { .. }));
        // Chunk files are job-specific.
        assert!(matches!(
            s.read_chunk("other", &r),
            Err(SnapshotError::Missing { .. })
        ));
        let escaped = ChunkRef {
            file: "../manifests/x".to_owned(),
            ..r
        };
        assert!(matches!(
            s.read_chunk(JOB, &escaped),
            Err(SnapshotError::InvalidChunkRef { .. })
        ));
    }

    #[test]
    fn uncommitted_epoch_is_not_returned() {
        let (_d, s) = store();
        let m1 = commit_full(&s, 1);
        s.put_chunk(JOB, 2, &ChunkId::new("agg", 0), None, b"in flight")
            .unwrap();
        assert_eq!(s.manifests(JOB).unwrap(), vec![1]);
        assert_eq!(s.latest_complete(JOB).unwrap(), Some(m1));
    }

    #[test]
    fn manifests_are_listed_in_epoch_order() {
        let (_d, s) = store();
        assert!(s.manifests(JOB).unwrap().is_empty());
        for e in [10, 2, 33, 9] {
            s.commit(&manifest(e, Vec::new())).unwrap();
        }
        let dir = s.manifest_path(JOB, 0).unwrap();
        let dir = dir.parent().unwrap();
        fs::write(dir.join("README"), b"not a manifest").unwrap();
        assert_eq!(s.manifests(JOB).unwrap(), vec![2, 9, 10, 33]);
    }

    #[test]
    fn stage_names_with_slashes_and_spaces_work() {
        let (_d, s) = store();
        let ids = [
            ChunkId::new("window/sum by key", 0),
            ChunkId::new("window%2fsum by key", 0),
            ChunkId::new("../../etc", 0),
        ];
        let refs: Vec<ChunkRef> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| s.put_chunk(JOB, 1, id, None, &[i as u8; 3]).unwrap())
            .collect();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(s.read_chunk(JOB, r).unwrap(), vec![i as u8; 3]);
            assert!(s.chunk_path(JOB, r).unwrap().starts_with(s.root()));
        }
        let m = manifest(1, refs.into_iter().map(|r| vec![r]).collect());
        s.commit(&m).unwrap();
        assert_eq!(s.latest_complete(JOB).unwrap(), Some(m));
    }

    #[test]
    fn empty_names_are_rejected() {
        let (_d, s) = store();
        let err = s
            .put_chunk(JOB, 1, &ChunkId::new("", 0), None, b"x")
            .unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidName { what: "stage", .. }),
            "{err}"
        );
        let err = s.manifests("").unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidName { what: "job", .. }),
            "{err}"
        );
    }

    #[test]
    fn commit_rejects_bad_manifests() {
        let (_d, s) = store();
        let full = s
            .put_chunk(JOB, 1, &ChunkId::new("agg", 0), None, b"full")
            .unwrap();
        let delta = s
            .put_chunk(JOB, 2, &ChunkId::new("agg", 0), Some(1), b"delta")
            .unwrap();
        // A chain must start with a full chunk.
        let err = s
            .commit(&manifest(2, vec![vec![delta.clone()]]))
            .unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidManifest { .. }),
            "{err}"
        );
        // A chain cannot use chunks newer than the epoch.
        let err = s
            .commit(&manifest(1, vec![vec![full.clone(), delta.clone()]]))
            .unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidManifest { .. }),
            "{err}"
        );
        // Every chunk must exist.
        let ghost = ChunkRef {
            epoch: 3,
            base: Some(2),
            file: chunk_file_name(3, &delta.id).unwrap(),
            ..delta.clone()
        };
        let err = s
            .commit(&manifest(3, vec![vec![full.clone(), delta.clone(), ghost]]))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::Missing { .. }), "{err}");
        assert!(s.manifests(JOB).unwrap().is_empty());
        // A base must be older than the chunk.
        assert!(matches!(
            s.put_chunk(JOB, 4, &ChunkId::new("agg", 0), Some(4), b"x"),
            Err(SnapshotError::InvalidArgument(_))
        ));
        // The good one goes through and reads back as a chain.
        let good = manifest(2, vec![vec![full, delta]]);
        s.commit(&good).unwrap();
        let latest = s.latest_complete(JOB).unwrap().unwrap();
        let chain: Vec<Vec<u8>> = latest.chunks[0]
            .iter()
            .map(|c| s.read_chunk(JOB, c).unwrap())
            .collect();
        assert_eq!(chain, vec![b"full".to_vec(), b"delta".to_vec()]);
    }

    #[test]
    fn leftover_temp_manifest_is_ignored_then_cleaned() {
        let (_d, s) = store();
        let m1 = commit_full(&s, 1);
        // Simulate a crash half way through committing epoch 2.
        let tmp = s
            .manifest_path(JOB, 2)
            .unwrap()
            .with_file_name(format!("{}{TEMP_SUFFIX}", manifest_file_name(2)));
        fs::write(&tmp, b"WEIRSNAP half written").unwrap();
        let stray = tmp.with_file_name("00000000000000000099.manifest.tmp");
        fs::write(&stray, b"").unwrap();
        assert_eq!(s.manifests(JOB).unwrap(), vec![1]);
        assert_eq!(s.latest_complete(JOB).unwrap(), Some(m1));

        let m2 = commit_full(&s, 2);
        assert!(!tmp.exists() && !stray.exists());
        assert_eq!(s.manifests(JOB).unwrap(), vec![1, 2]);
        assert_eq!(s.latest_complete(JOB).unwrap(), Some(m2));
    }

    #[test]
    fn retention_keeps_newest_and_referenced_bases() {
        let (_d, s) = store();
        let a = ChunkId::new("agg", 0);
        let b = ChunkId::new("join", 0);
        // Stage "agg" writes a full chunk at 1 and deltas after; "join" writes full
        // chunks every epoch.
        let a1 = s.put_chunk(JOB, 1, &a, None, b"a1").unwrap();
        let mut a_chain = vec![a1];
        let mut all_join = Vec::new();
        for e in 1..=4u64 {
            if e > 1 {
                let d = s.put_chunk(JOB, e, &a, Some(e - 1), b"ad").unwrap();
                a_chain.push(d);
            }
            let j = s.put_chunk(JOB, e, &b, None, b"j").unwrap();
            all_join.push(j.clone());
            s.commit(&manifest(e, vec![a_chain.clone(), vec![j]]))
                .unwrap();
        }
        // An orphan chunk from an aborted attempt, and epoch 5 still in progress.
        let orphan = s
            .put_chunk(JOB, 2, &ChunkId::new("dead", 0), None, b"o")
            .unwrap();
        let pending = s.put_chunk(JOB, 5, &b, None, b"p").unwrap();
        let foreign = s.root().join("%4frders%20%4aob/chunks/keep-me.txt");
        fs::write(&foreign, b"not ours").unwrap();

        let stats = s.retain(JOB, 2).unwrap();
        assert_eq!(stats.kept, vec![3, 4]);
        assert_eq!(stats.removed_manifests, vec![1, 2]);
        // join@1, join@2 and the orphan go; agg@1 and agg@2 are bases of kept epochs.
        assert_eq!(stats.removed_chunks, 3);
        assert_eq!(s.manifests(JOB).unwrap(), vec![3, 4]);
        for c in &a_chain {
            assert!(s.read_chunk(JOB, c).is_ok(), "base {} was removed", c.file);
        }
        for j in &all_join[..2] {
            assert!(matches!(
                s.read_chunk(JOB, j),
                Err(SnapshotError::Missing { .. })
            ));
        }
        for j in &all_join[2..] {
            assert!(s.read_chunk(JOB, j).is_ok());
        }
        assert!(matches!(
            s.read_chunk(JOB, &orphan),
            Err(SnapshotError::Missing { .. })
        ));
        assert_eq!(s.read_chunk(JOB, &pending).unwrap(), b"p");
        assert!(foreign.exists());
        let latest = s.latest_complete(JOB).unwrap().unwrap();
        assert_eq!(latest.epoch, 4);

        // Running it again changes nothing.
        let again = s.retain(JOB, 2).unwrap();
        assert_eq!(
            (again.removed_manifests.len(), again.removed_chunks),
            (0, 0)
        );
    }

    #[test]
    fn retention_skips_corrupt_epochs_and_spares_newer_ones() {
        let (_d, s) = store();
        for e in 1..=4 {
            commit_full(&s, e);
        }
        // Epoch 4 is damaged: the newest complete epoch is 3, and 4 must survive.
        flip_byte(&s.manifest_path(JOB, 4).unwrap(), 30);
        let stats = Captured::default().run(|| s.retain(JOB, 1)).unwrap();
        assert_eq!(stats.kept, vec![3]);
        assert_eq!(stats.removed_manifests, vec![1, 2]);
        assert_eq!(stats.removed_chunks, 4);
        assert_eq!(s.manifests(JOB).unwrap(), vec![3, 4]);
        assert_eq!(s.latest_complete(JOB).unwrap().map(|m| m.epoch), Some(3));
        let m4_chunk = chunk_file_name(4, &ChunkId::new("agg", 0)).unwrap();
        assert!(s
            .root()
            .join("%4frders%20%4aob/chunks")
            .join(m4_chunk)
            .exists());
    }

    #[test]
    fn a_batch_of_chunks_is_stored_and_read_back_in_order() {
        let (_d, s) = store();
        let ids: Vec<ChunkId> = (0..20).map(|kp| ChunkId::new("agg", kp)).collect();
        let data: Vec<Vec<u8>> = (0..20).map(|kp| vec![kp as u8; 100 * kp]).collect();
        let batch: Vec<NewChunk<'_>> = ids
            .iter()
            .zip(&data)
            .map(|(id, data)| NewChunk {
                id,
                base: Some(4),
                data,
            })
            .collect();
        let refs = s.put_chunks(JOB, 5, &batch).unwrap();
        assert_eq!(refs.len(), 20);
        for ((r, id), data) in refs.iter().zip(&ids).zip(&data) {
            assert_eq!((&r.id, r.epoch, r.base), (id, 5, Some(4)));
            assert_eq!(&s.read_chunk(JOB, r).unwrap(), data);
        }
        let chunks = s.root().join("%4frders%20%4aob/chunks");
        let temps = file_names(&chunks)
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(TEMP_SUFFIX))
            .count();
        assert_eq!(temps, 0, "no temp file is left behind");
        // One bad chunk (a base not older than the epoch) refuses the whole batch.
        let bad = [
            NewChunk {
                id: &ids[0],
                base: None,
                data: b"fine",
            },
            NewChunk {
                id: &ids[1],
                base: Some(6),
                data: b"bad",
            },
        ];
        assert!(matches!(
            s.put_chunks(JOB, 6, &bad),
            Err(SnapshotError::InvalidArgument(_))
        ));
        assert!(!chunks.join(chunk_file_name(6, &ids[0]).unwrap()).exists());
    }

    #[test]
    fn retention_counts_an_epoch_with_a_missing_chunk_as_incomplete() {
        let (_d, s) = store();
        for e in 1..=3 {
            commit_full(&s, e);
        }
        // A chunk of epoch 3 vanished: retention keeping one epoch keeps 2 (and
        // leaves 3 alone, as it is newer), so recovery can still fall back to 2.
        let m3 = s.latest_complete(JOB).unwrap().unwrap();
        fs::remove_file(s.chunk_path(JOB, &m3.chunks[0][0]).unwrap()).unwrap();
        let stats = Captured::default().run(|| s.retain(JOB, 1)).unwrap();
        assert_eq!(stats.kept, vec![2]);
        assert_eq!(stats.removed_manifests, vec![1]);
        assert_eq!(s.latest_complete(JOB).unwrap().map(|m| m.epoch), Some(2));
    }

    #[test]
    fn retention_without_complete_epochs_deletes_nothing() {
        let (_d, s) = store();
        let c = s
            .put_chunk(JOB, 1, &ChunkId::new("agg", 0), None, b"x")
            .unwrap();
        assert_eq!(s.retain(JOB, 3).unwrap(), RetainStats::default());
        assert!(s.read_chunk(JOB, &c).is_ok());
        assert!(matches!(
            s.retain(JOB, 0),
            Err(SnapshotError::InvalidArgument(_))
        ));
    }
}
