//! The node-wide state store: one sled database, one tree per stage.

use super::delta;
use super::error::StateError;
use super::keyed::{KeyedState, FLUSH_CHUNK};
use super::{Clock, StateKey};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizing of the state store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Cached entries per [`KeyedState`] above which [`KeyedState::maintain`] flushes and
    /// evicts. A value or list counts one entry; a map counts one per cached key plus
    /// one per cached user entry.
    pub cache_entries: usize,
    /// Size of sled's own page cache for the whole node, in bytes.
    pub sled_cache_bytes: u64,
}

impl Default for StoreConfig {
    /// One million cached entries per keyed state and a 64 MiB sled cache.
    fn default() -> Self {
        Self {
            cache_entries: 1_000_000,
            sled_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The sled tree holding the state of `stage`: `weir/state/v1/<stage>`.
///
/// The version in the name is the key layout's version; a new layout gets a new tree.
pub fn tree_name(stage: &str) -> String {
    format!("weir/state/v1/{stage}")
}

/// What one [`StateStore::restore_stage`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Key partitions restored (chains given, including empty ones).
    pub partitions: u64,
    /// Deltas (images included) read and applied.
    pub deltas: u64,
    /// Entries written to sled: what the folded chains hold.
    pub entries: u64,
    /// Bytes of keys and values written.
    pub bytes: u64,
}

/// What the clones of a [`StateStore`] share.
struct StoreInner {
    /// The node's sled database.
    db: sled::Db,
    /// The configuration it was opened with.
    config: StoreConfig,
    /// Its directory; `None` for a temporary store.
    path: Option<PathBuf>,
}

/// The keyed-state store of one node: a single sled database shared by every stage and
/// partition actor on the node.
///
/// Cheap to clone (an `Arc`) and `Send + Sync`, so each actor can hold its own clone
/// and open its [`KeyedState`] with [`keyed`](Self::keyed).
#[derive(Clone)]
pub struct StateStore {
    /// The shared database and configuration.
    inner: Arc<StoreInner>,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.inner.path)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How long [`StateStore::open`] waits for the directory's lock to be released.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the sled database in `dir`. sled locks the directory while a database is
/// open, and releases the lock only once its background threads let go of the
/// database, a moment after the last handle was dropped (later on a loaded
/// machine): a store reopened in the same process (a node run again on the same
/// state directory) waits for that, polling up to [`LOCK_WAIT`]. A lock another
/// process holds is reported after the wait.
fn open_sled(dir: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl StateStore {
    /// Opens (creating if missing) the sled database in directory `dir`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            context: format!("creating the state store directory {}", dir.display()),
            source,
        })?;
        let db = open_sled(dir, config.sled_cache_bytes).map_err(|source| StateError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        tracing::debug!(path = %dir.display(), ?config, "opened state store");
        Ok(Self {
            inner: Arc::new(StoreInner {
                db,
                config,
                path: Some(dir.to_path_buf()),
            }),
        })
    }

    /// Removes every stored entry of `stage` (all its key partitions and states).
    pub fn clear_stage(&self, stage: &str) -> Result<(), StateError> {
        self.inner
            .db
            .drop_tree(tree_name(stage))
            .map(|_| ())
            .map_err(|source| StateError::Sled {
                context: format!("dropping the state of stage `{stage}`"),
                source,
            })
    }

    /// Replaces the whole stored state of `stage` with what snapshot chains describe:
    /// for each key partition, its chain (a full image, then the deltas of
    /// [`KeyedState::take_delta`] captured after it, oldest first), folded into one
    /// image ([`super::delta`]).
    ///
    /// Every chain is decoded, checked and folded before anything is touched, so a
    /// damaged snapshot (bad checksum, unknown version, malformed record, a delta of
    /// another key partition, a key outside the partition the chain is filed under,
    /// two chains for one partition) is reported as an error and leaves the stored
    /// state as it was. Then the stage's tree is dropped (every key partition,
    /// including those without a chain here), the images are written in key order in
    /// batches of [`FLUSH_CHUNK`], and sled is flushed to disk.
    ///
    /// No [`KeyedState`] of the stage may be open meanwhile: its tree handle would
    /// point at the dropped tree. A `KeyedState` opened afterwards on restored key
    /// partitions sees exactly the restored state (timers included), and its first
    /// [`take_delta`](KeyedState::take_delta) reports only changes made after it
    /// opened.
    ///
    /// All chains are held in memory at once, plus an index of their surviving
    /// entries.
    pub fn restore_stage(
        &self,
        stage: &str,
        chains: impl IntoIterator<Item = (u32, Vec<Vec<u8>>)>,
    ) -> Result<RestoreStats, StateError> {
        if stage.is_empty() {
            return Err(StateError::InvalidRequest {
                stage: String::new(),
                reason: "the stage name is empty".into(),
            });
        }
        let mut chains: Vec<(u32, Vec<Vec<u8>>)> = chains.into_iter().collect();
        chains.sort_unstable_by_key(|(kp, _)| *kp);
        if let Some(w) = chains.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(StateError::InvalidRequest {
                stage: stage.to_owned(),
                reason: format!("key partition {} has more than one chain", w[0].0),
            });
        }
        let mut stats = RestoreStats::default();
        let mut images = Vec::with_capacity(chains.len());
        for (kp, chain) in &chains {
            let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
            let (_, image) = delta::fold_chain(&refs, Some(*kp), |i, n| {
                format!(
                    "delta {} of {n} in the chain of key partition {kp} of stage `{stage}`",
                    i + 1
                )
            })?;
            stats.partitions += 1;
            stats.deltas += chain.len() as u64;
            images.push(image);
        }
        self.clear_stage(stage)?;
        let name = tree_name(stage);
        let tree = self
            .inner
            .db
            .open_tree(&name)
            .map_err(|source| StateError::Sled {
                context: format!("opening tree `{name}` of stage `{stage}` to restore it"),
                source,
            })?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        // Chains are sorted by key partition and keys start with it, so this writes in
        // key order throughout.
        for (key, value) in images.iter().flat_map(|image| image.iter()) {
            batch.insert(*key, *value);
            in_batch += 1;
            stats.entries += 1;
            stats.bytes += (key.len() + value.len()) as u64;
            if in_batch == FLUSH_CHUNK {
                apply_restore_batch(&tree, stage, std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            apply_restore_batch(&tree, stage, batch)?;
        }
        self.flush()?;
        tracing::info!(
            stage,
            partitions = stats.partitions,
            deltas = stats.deltas,
            entries = stats.entries,
            bytes = stats.bytes,
            "restored keyed state from snapshot chains"
        );
        Ok(stats)
    }

    /// Opens a temporary sled database, removed when the last clone is dropped. For
    /// tests and for jobs that need no recovery.
    pub fn temporary(config: StoreConfig) -> Result<Self, StateError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(config.sled_cache_bytes)
            .open()
            .map_err(|source| StateError::Open {
                path: PathBuf::from("<temporary>"),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(StoreInner {
                db,
                config,
                path: None,
            }),
        })
    }

    /// Opens the keyed state of `stage` for the key partitions `owned`.
    ///
    /// Checks once which owned key partitions hold anything on disk, so cache misses
    /// in empty partitions never touch sled, and loads the stored timers of the
    /// partitions that do (timers are kept in memory in firing order). The caller must
    /// not open two `KeyedState`s for overlapping partitions of one stage at the same
    /// time: each caches independently and they would overwrite each other's writes.
    ///
    /// `clock` supplies processing time for TTL.
    pub fn keyed<K: StateKey>(
        &self,
        stage: &str,
        owned: Range<u32>,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyedState<K>, StateError> {
        if stage.is_empty() {
            return Err(StateError::InvalidRequest {
                stage: String::new(),
                reason: "the stage name is empty".into(),
            });
        }
        if owned.start > owned.end {
            return Err(StateError::InvalidRequest {
                stage: stage.to_owned(),
                reason: format!(
                    "key partition range {}..{} is reversed",
                    owned.start, owned.end
                ),
            });
        }
        let name = tree_name(stage);
        let tree = self
            .inner
            .db
            .open_tree(&name)
            .map_err(|source| StateError::Sled {
                context: format!("opening tree `{name}` of stage `{stage}`"),
                source,
            })?;
        KeyedState::new(
            stage.to_owned(),
            owned,
            tree,
            clock,
            self.inner.config.cache_entries,
        )
    }

    /// Makes everything applied so far durable (sled flush, fsync). Call after
    /// [`KeyedState::flush`] when a snapshot must survive a crash.
    pub fn flush(&self) -> Result<(), StateError> {
        self.inner
            .db
            .flush()
            .map(|_| ())
            .map_err(|source| StateError::Sled {
                context: "flushing the state store to disk".into(),
                source,
            })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The underlying sled database, for snapshot and migration code.
    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }
}

/// Applies one batch of a restore.
fn apply_restore_batch(
    tree: &sled::Tree,
    stage: &str,
    batch: sled::Batch,
) -> Result<(), StateError> {
    tree.apply_batch(batch).map_err(|source| StateError::Sled {
        context: format!("writing restored state of stage `{stage}`"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::small_config;
    use super::super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Regression: reopening a store right after dropping it failed now and then
    /// under load ("could not acquire lock", timers.rs's reopen test), because
    /// sled's threads release the directory's lock a moment after the last handle.
    #[test]
    fn a_store_reopened_while_the_last_one_is_being_released_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let first = StateStore::open(&path, small_config()).unwrap();
        // Still held while the second open starts: released from another thread.
        let (opening, started) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            started.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
        });
        opening.send(()).unwrap();
        let second = StateStore::open(&path, small_config());
        holder.join().unwrap();
        assert!(second.is_ok(), "{:?}", second.err());
    }

    #[test]
    fn reopen_reads_back_flushed_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let clock = ManualClock::new(1_000);
        {
            let store = StateStore::open(&path, small_config()).unwrap();
            let mut ks = store
                .keyed::<String>("wc", 0..4, Arc::new(clock.clone()))
                .unwrap();
            let v = ks
                .register_value::<u64>(StateDescriptor::new("count"))
                .unwrap();
            let m = ks
                .register_map::<u32, String>(StateDescriptor::new("m"))
                .unwrap();
            let l = ks
                .register_list::<i8>(StateDescriptor::new("l").with_ttl(Duration::from_secs(60)))
                .unwrap();
            let k = "word".to_string();
            ks.value(v, 3, &k).set(42).unwrap();
            ks.map(m, 1, &k).insert(7, "seven".into()).unwrap();
            ks.list(l, 0, &k).add(-1).unwrap();
            ks.value(v, 2, &k).set(99).unwrap(); // never flushed: lost on purpose
            ks.flush().unwrap();
            ks.value(v, 2, &"late".to_string()).set(1).unwrap();
            store.flush().unwrap();
        }
        let store = StateStore::open(&path, small_config()).unwrap();
        assert_eq!(store.config(), &small_config());
        let mut ks = store
            .keyed::<String>("wc", 0..4, Arc::new(clock.clone()))
            .unwrap();
        let v = ks
            .register_value::<u64>(StateDescriptor::new("count"))
            .unwrap();
        let m = ks
            .register_map::<u32, String>(StateDescriptor::new("m"))
            .unwrap();
        let l = ks
            .register_list::<i8>(StateDescriptor::new("l").with_ttl(Duration::from_secs(60)))
            .unwrap();
        let k = "word".to_string();
        assert_eq!(ks.value(v, 3, &k).value().unwrap(), Some(42));
        assert_eq!(ks.value(v, 2, &k).value().unwrap(), Some(99));
        assert_eq!(ks.value(v, 2, &"late".to_string()).value().unwrap(), None);
        assert_eq!(
            ks.map(m, 1, &k).entries().unwrap(),
            vec![(7, "seven".to_string())]
        );
        assert_eq!(ks.list(l, 0, &k).get().unwrap(), vec![-1]);
        // The stored expiry came back with the list.
        clock.advance(60_000);
        assert!(ks.list(l, 0, &k).get().unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_requests() {
        let store = StateStore::temporary(small_config()).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        assert!(matches!(
            store.keyed::<u8>("", 0..1, clock.clone()).unwrap_err(),
            StateError::InvalidRequest { .. }
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 3..1;
        assert!(matches!(
            store.keyed::<u8>("s", reversed, clock.clone()).unwrap_err(),
            StateError::InvalidRequest { .. }
        ));
        let ks = store.keyed::<u8>("s", 5..5, clock).unwrap();
        assert_eq!(ks.owned(), 5..5);
        assert_eq!(ks.stage(), "s");
        assert_eq!(tree_name("s"), "weir/state/v1/s");
        assert_eq!(&*ks.tree().name(), b"weir/state/v1/s");
    }

    #[test]
    fn open_reports_an_unusable_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = StateStore::open(&file, small_config()).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
