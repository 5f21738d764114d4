//! The shared snapshot store (`weir::snapshot_store::ObjectStoreSnapshots`) behaves
//! as a `SnapshotStore` must, on both backends: a local directory through
//! `object_store`'s `LocalFileSystem`, and S3 on a real S3-compatible server (moto,
//! started per test by `common::moto`). Each behaviour is written once and run on
//! both (`local::*`, `s3::*`); fencing of a deposed writer needs conditional updates,
//! so it runs on S3 only.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use common::moto::MotoServer;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use weir::snapshot_store::{self, ObjectStoreSnapshots, SnapshotStoreSpec, SnapshotUrl};
use weir_actors::snapshot::{
    copy_epoch, ChunkId, ChunkRef, LocalDirStore, Manifest, SnapshotError, SnapshotStore,
};

const JOB: &str = "Orders Job";

/// One backend: opens stores on it and reaches its raw objects (to damage them).
struct Backend {
    spec: SnapshotStoreSpec,
    raw: Arc<dyn ObjectStore>,
    /// Where `raw` is rooted relative to the store's keys.
    raw_prefix: String,
    _dir: Option<tempfile::TempDir>,
    _server: Option<MotoServer>,
    runtime: tokio::runtime::Runtime,
}

impl Backend {
    fn local() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("snaps");
        let spec = SnapshotStoreSpec::new(SnapshotUrl::File(root.clone()));
        std::fs::create_dir_all(&root).unwrap();
        let raw = object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap();
        Backend {
            spec,
            raw: Arc::new(raw),
            raw_prefix: String::new(),
            _dir: Some(dir),
            _server: None,
            runtime: runtime(),
        }
    }

    fn s3() -> Backend {
        let server = MotoServer::start();
        let spec = server.spec("weir/test");
        let c = spec.s3_credentials.clone().unwrap();
        let raw = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(common::moto::BUCKET)
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(c.access_key_id)
            .with_secret_access_key(c.secret_access_key)
            .build()
            .unwrap();
        Backend {
            spec,
            raw: Arc::new(raw),
            raw_prefix: String::new(),
            _dir: None,
            _server: Some(server),
            runtime: runtime(),
        }
    }

    /// A new store instance (a new writer) on the backend.
    fn open(&self) -> Arc<ObjectStoreSnapshots> {
        snapshot_store::open(&self.spec).unwrap()
    }

    fn key(&self, key: &str) -> ObjectPath {
        ObjectPath::parse(format!("{}{key}", self.raw_prefix)).unwrap()
    }

    fn read(&self, key: &str) -> Vec<u8> {
        let key = self.key(key);
        self.runtime
            .block_on(async { self.raw.get(&key).await.unwrap().bytes().await.unwrap() })
            .to_vec()
    }

    fn write(&self, key: &str, bytes: Vec<u8>) {
        let key = self.key(key);
        self.runtime
            .block_on(self.raw.put(&key, PutPayload::from(bytes)))
            .unwrap();
    }

    fn delete(&self, key: &str) {
        let key = self.key(key);
        self.runtime.block_on(self.raw.delete(&key)).unwrap();
    }

    fn exists(&self, key: &str) -> bool {
        let key = self.key(key);
        self.runtime.block_on(self.raw.head(&key)).is_ok()
    }

    fn flip_byte(&self, key: &str, at: usize) {
        let mut bytes = self.read(key);
        bytes[at] ^= 0x40;
        self.write(key, bytes);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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
fn commit_full(s: &dyn SnapshotStore, epoch: u64) -> Manifest {
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

fn chunks_written_then_read_back_and_rewritten(b: &Backend) {
    let s = b.open();
    let id = ChunkId::new("window/sum by key", 3);
    let r = s.put_chunk(JOB, 7, &id, None, b"hello state").unwrap();
    assert_eq!((r.epoch, r.base, r.bytes), (7, None, 11));
    assert_eq!(s.read_chunk(JOB, &r).unwrap(), b"hello state");
    assert!(b.exists(&s.chunk_key(JOB, &r).unwrap()));
    let again = s.put_chunk(JOB, 7, &id, None, b"retried").unwrap();
    assert_eq!(s.read_chunk(JOB, &again).unwrap(), b"retried");
    let empty = s.put_chunk(JOB, 8, &id, Some(7), b"").unwrap();
    assert_eq!(s.read_chunk(JOB, &empty).unwrap(), b"");
    // The on-store format is LocalDirStore's envelope.
    assert_eq!(&b.read(&s.chunk_key(JOB, &r).unwrap())[..8], b"WEIRSNAP");
}

fn committed_epochs_are_found_newest_first_by_any_store(b: &Backend) {
    let s = b.open();
    assert_eq!(s.latest_complete(JOB).unwrap(), None);
    commit_full(s.as_ref(), 1);
    let m2 = commit_full(s.as_ref(), 2);
    // Another node opening the same store sees the same epochs.
    let other = b.open();
    assert_eq!(other.manifests(JOB).unwrap(), vec![1, 2]);
    assert_eq!(other.latest_complete(JOB).unwrap(), Some(m2.clone()));
    let data: Vec<Vec<u8>> = m2
        .chunk_refs()
        .map(|c| other.read_chunk(JOB, c).unwrap())
        .collect();
    assert_eq!(data, vec![b"state 2/0".to_vec(), b"state 2/1".to_vec()]);
}

fn chunks_without_a_manifest_are_not_an_epoch(b: &Backend) {
    // The crash point between the chunks and the manifest.
    let s = b.open();
    let m1 = commit_full(s.as_ref(), 1);
    s.put_chunk(JOB, 2, &ChunkId::new("agg", 0), None, b"in flight")
        .unwrap();
    assert_eq!(s.manifests(JOB).unwrap(), vec![1]);
    assert_eq!(s.latest_complete(JOB).unwrap(), Some(m1));
}

fn a_corrupt_newest_manifest_falls_back_to_the_previous_epoch(b: &Backend) {
    let s = b.open();
    let m1 = commit_full(s.as_ref(), 1);
    commit_full(s.as_ref(), 2);
    b.flip_byte(&s.manifest_key(JOB, 2).unwrap(), 20);
    assert_eq!(s.latest_complete(JOB).unwrap(), Some(m1));
}

fn a_missing_or_corrupt_chunk_of_the_newest_epoch_falls_back(b: &Backend) {
    let s = b.open();
    let m1 = commit_full(s.as_ref(), 1);
    let m2 = commit_full(s.as_ref(), 2);
    b.flip_byte(&s.chunk_key(JOB, &m2.chunks[1][0]).unwrap(), 25);
    assert_eq!(s.latest_complete(JOB).unwrap(), Some(m1.clone()));
    let m3 = commit_full(s.as_ref(), 3);
    b.delete(&s.chunk_key(JOB, &m3.chunks[0][0]).unwrap());
    assert_eq!(s.latest_complete(JOB).unwrap(), Some(m1));
}

fn commit_refuses_a_manifest_whose_chunks_are_missing_or_inconsistent(b: &Backend) {
    let s = b.open();
    let full = s
        .put_chunk(JOB, 1, &ChunkId::new("agg", 0), None, b"full")
        .unwrap();
    let delta = s
        .put_chunk(JOB, 2, &ChunkId::new("agg", 0), Some(1), b"delta")
        .unwrap();
    let err = s
        .commit(&manifest(2, vec![vec![delta.clone()]]))
        .unwrap_err();
    assert!(
        matches!(err, SnapshotError::InvalidManifest { .. }),
        "{err}"
    );
    b.delete(&s.chunk_key(JOB, &full).unwrap());
    let err = s
        .commit(&manifest(2, vec![vec![full.clone(), delta.clone()]]))
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Missing { .. }), "{err}");
    assert!(s.manifests(JOB).unwrap().is_empty());
    let forged = ChunkRef {
        file: "../manifests/x".into(),
        ..delta
    };
    assert!(matches!(
        s.read_chunk(JOB, &forged),
        Err(SnapshotError::InvalidChunkRef { .. })
    ));
}

fn manifests_are_listed_in_epoch_order_ignoring_foreign_objects(b: &Backend) {
    let s = b.open();
    for e in [10, 2, 33, 9] {
        s.commit(&manifest(e, Vec::new())).unwrap();
    }
    let key = s.manifest_key(JOB, 0).unwrap();
    let dir = key.rsplit_once('/').unwrap().0;
    b.write(&format!("{dir}/README"), b"not a manifest".to_vec());
    assert_eq!(s.manifests(JOB).unwrap(), vec![2, 9, 10, 33]);
}

fn retention_keeps_the_newest_epochs_and_the_bases_they_use(b: &Backend) {
    let s = b.open();
    let a = ChunkId::new("agg", 0);
    let j = ChunkId::new("join", 0);
    let mut a_chain = vec![s.put_chunk(JOB, 1, &a, None, b"a1").unwrap()];
    let mut joins = Vec::new();
    for e in 1..=4u64 {
        if e > 1 {
            a_chain.push(s.put_chunk(JOB, e, &a, Some(e - 1), b"ad").unwrap());
        }
        let jr = s.put_chunk(JOB, e, &j, None, b"j").unwrap();
        joins.push(jr.clone());
        s.commit(&manifest(e, vec![a_chain.clone(), vec![jr]]))
            .unwrap();
    }
    let orphan = s
        .put_chunk(JOB, 2, &ChunkId::new("dead", 0), None, b"o")
        .unwrap();
    let pending = s.put_chunk(JOB, 5, &j, None, b"p").unwrap();
    let stats = s.retain(JOB, 2).unwrap();
    assert_eq!(stats.kept, vec![3, 4]);
    assert_eq!(stats.removed_manifests, vec![1, 2]);
    assert_eq!(stats.removed_chunks, 3, "join@1, join@2 and the orphan");
    assert_eq!(s.manifests(JOB).unwrap(), vec![3, 4]);
    for c in &a_chain {
        assert!(s.read_chunk(JOB, c).is_ok(), "base {} was removed", c.file);
    }
    for gone in [&joins[0], &joins[1], &orphan] {
        assert!(matches!(
            s.read_chunk(JOB, gone),
            Err(SnapshotError::Missing { .. })
        ));
    }
    assert_eq!(s.read_chunk(JOB, &pending).unwrap(), b"p");
    assert_eq!(s.latest_complete(JOB).unwrap().unwrap().epoch, 4);
    let again = s.retain(JOB, 2).unwrap();
    assert_eq!(
        (again.removed_manifests.len(), again.removed_chunks),
        (0, 0)
    );
}

fn a_second_commit_of_an_epoch_is_refused_unless_identical(b: &Backend) {
    let s = b.open();
    let m = commit_full(s.as_ref(), 1);
    // A retried commit of the very same manifest is fine.
    s.commit(&m).unwrap();
    let other = b.open();
    let mut different = commit_full_uncommitted(other.as_ref(), 1);
    different.created_ms += 1;
    let err = other.commit(&different).unwrap_err();
    assert!(
        matches!(err, SnapshotError::Fenced { epoch: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("already committed"), "{err}");
    assert_eq!(s.latest_complete(JOB).unwrap(), Some(m));
}

fn commit_full_uncommitted(s: &dyn SnapshotStore, epoch: u64) -> Manifest {
    let chains = (0..2)
        .map(|kp| {
            vec![s
                .put_chunk(JOB, epoch, &ChunkId::new("agg", kp), None, b"theirs")
                .unwrap()]
        })
        .collect();
    manifest(epoch, chains)
}

fn two_writers_racing_to_commit_an_epoch_leave_exactly_one_winner(b: &Backend) {
    for round in 1..=3u64 {
        let writers = [b.open(), b.open()];
        let manifests: Vec<Manifest> = writers
            .iter()
            .map(|w| commit_full_uncommitted(w.as_ref(), round))
            .collect();
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<Result<(), SnapshotError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = writers
                .iter()
                .zip(&manifests)
                .map(|(w, m)| {
                    let barrier = barrier.clone();
                    scope.spawn(move || {
                        barrier.wait();
                        w.commit(m)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = 1 - winners[0];
        assert!(
            matches!(results[loser], Err(SnapshotError::Fenced { .. })),
            "round {round}: {results:?}"
        );
        let stored = b.open().latest_complete(JOB).unwrap().unwrap();
        assert_eq!(stored, manifests[winners[0]], "round {round}");
    }
}

fn an_epoch_copies_between_a_local_directory_and_the_shared_store(b: &Backend) {
    // Savepoint export (shared store -> directory) and import (directory -> store).
    let s = b.open();
    let a = ChunkId::new("state/1", 0);
    let a1 = s.put_chunk(JOB, 1, &a, None, b"a full").unwrap();
    let a2 = s.put_chunk(JOB, 2, &a, Some(1), b"a delta").unwrap();
    let m = manifest(2, vec![vec![a1, a2]]);
    s.commit(&m).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = LocalDirStore::new(dir.path()).unwrap();
    let exported = copy_epoch(s.as_ref(), &local, &m).unwrap();
    local.commit(&exported).unwrap();
    let fresh = Backend::local();
    let into = fresh.open();
    let imported = copy_epoch(&local, into.as_ref(), &exported).unwrap();
    into.commit(&imported).unwrap();
    let back = into.latest_complete(JOB).unwrap().unwrap();
    let read: Vec<Vec<u8>> = back
        .chunk_refs()
        .map(|r| into.read_chunk(JOB, r).unwrap())
        .collect();
    assert_eq!(read, vec![b"a full".to_vec(), b"a delta".to_vec()]);
}

macro_rules! behaviours {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            behaviours!(@each $backend,
                chunks_written_then_read_back_and_rewritten,
                committed_epochs_are_found_newest_first_by_any_store,
                chunks_without_a_manifest_are_not_an_epoch,
                a_corrupt_newest_manifest_falls_back_to_the_previous_epoch,
                a_missing_or_corrupt_chunk_of_the_newest_epoch_falls_back,
                commit_refuses_a_manifest_whose_chunks_are_missing_or_inconsistent,
                manifests_are_listed_in_epoch_order_ignoring_foreign_objects,
                retention_keeps_the_newest_epochs_and_the_bases_they_use,
                a_second_commit_of_an_epoch_is_refused_unless_identical,
                two_writers_racing_to_commit_an_epoch_leave_exactly_one_winner,
                an_epoch_copies_between_a_local_directory_and_the_shared_store
            );
        }
    };
    (@each $backend:ident, $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                super::$name(&Backend::$backend());
            }
        )*
    };
}

behaviours!(local);
behaviours!(s3);

/// A writer that another writer has claimed the job from cannot commit any epoch,
/// whether or not the new writer has committed yet; the new writer can.
#[test]
fn s3_a_deposed_writer_cannot_commit_after_another_claims_the_job() {
    let b = Backend::s3();
    let old = b.open();
    old.claim(JOB).unwrap();
    commit_full(old.as_ref(), 1);
    let new = b.open();
    new.claim(JOB).unwrap();
    // Before the new writer commits anything:
    let m2 = commit_full_uncommitted(old.as_ref(), 2);
    let err = old.commit(&m2).unwrap_err();
    assert!(
        matches!(err, SnapshotError::Fenced { epoch: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("deposed"), "{err}");
    assert_eq!(new.manifests(JOB).unwrap(), vec![1]);
    // The new writer commits, and the old one still cannot.
    let n2 = commit_full(new.as_ref(), 2);
    let m3 = commit_full_uncommitted(old.as_ref(), 3);
    assert!(matches!(
        old.commit(&m3),
        Err(SnapshotError::Fenced { epoch: 3, .. })
    ));
    assert_eq!(new.latest_complete(JOB).unwrap(), Some(n2));
    // The head names the new writer.
    let head_key = format!("{}head", s_job_dir(&new));
    let head =
        weir::snapshot_store::head::Head::decode(&head_key, &b.read(&head_key), JOB).unwrap();
    assert_eq!(
        (head.writer.as_str(), head.claims, head.epoch),
        (new.writer_id(), 2, 2)
    );
}

/// `<prefix>/<job>/` as the raw store sees it (relative to the backend's prefix).
fn s_job_dir(s: &ObjectStoreSnapshots) -> String {
    let key = s.manifest_key(JOB, 0).unwrap();
    let manifests = key.rsplit_once('/').unwrap().0;
    format!("{}/", manifests.rsplit_once('/').unwrap().0)
}
