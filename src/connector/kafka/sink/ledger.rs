//! The commit ledger: for each exactly-once sink partition, a small local file
//! that records the newest epoch whose Kafka transaction is known to have
//! committed.
//!
//! It is the durable local fact the sink's protocol stands on (docs/exactly-once.md,
//! "Kafka sink"): an epoch's staged copy is deleted only after the ledger says the
//! epoch committed, so a redo that finds the ledger at or past its epoch needs no
//! broker at all, and a redo that finds neither a ledger entry nor a staged copy
//! knows local state was lost instead of guessing.
//!
//! The file `p<partition>.committed` sits beside the staged copies and holds one
//! [`frame`](super::frame) of kind [`FrameKind::Ledger`](super::frame::FrameKind::Ledger)
//! (versioned, checksummed). It is replaced atomically: written to a temporary
//! name, synced, renamed over the old one, and the directory synced.
//!
//! Transactions of one sink partition commit in epoch order (each epoch's commit
//! action runs only after those of earlier epochs succeeded), so "committed
//! through epoch `e`" covers every earlier epoch of the partition too.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::KafkaSinkError;
use super::frame::{self, FrameKind};

/// What the ledger file of one sink partition says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct LedgerEntry {
    /// The sink partition.
    partition: u32,
    /// Every epoch of the partition up to and including this one committed.
    committed_through: u64,
}

/// The file name of `partition`'s ledger.
pub fn ledger_name(partition: u32) -> String {
    format!("p{partition:05}.committed")
}

/// Whether `path` is a ledger file (so that clean-ups of staged copies keep it).
pub fn is_ledger(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "committed")
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KafkaSinkError {
    let path = path.to_path_buf();
    move |source| KafkaSinkError::Staging { what, path, source }
}

/// The newest epoch of `partition` known committed, from the ledger in `dir`
/// (`None` when the partition never committed through this directory). A damaged
/// or foreign ledger is an error naming the file.
pub fn committed_through(dir: &Path, partition: u32) -> Result<Option<u64>, KafkaSinkError> {
    let path = dir.join(ledger_name(partition));
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    let (_, entry, used): (_, LedgerEntry, _) = frame::decode(&[FrameKind::Ledger], &bytes)
        .map_err(|error| KafkaSinkError::Corrupt {
            what: format!("the commit ledger {}", path.display()),
            error,
        })?;
    if entry.partition != partition || used != bytes.len() {
        return Err(KafkaSinkError::Invalid(format!(
            "the commit ledger {} belongs to sink partition {} ({} trailing bytes), not {partition}",
            path.display(),
            entry.partition,
            bytes.len() - used
        )));
    }
    Ok(Some(entry.committed_through))
}

/// Records durably that `partition`'s transaction of `epoch` committed. A ledger
/// already at or past `epoch` is left as it is.
pub fn record_committed(dir: &Path, partition: u32, epoch: u64) -> Result<(), KafkaSinkError> {
    if committed_through(dir, partition)?.is_some_and(|e| e >= epoch) {
        return Ok(());
    }
    write(dir, partition, epoch)
}

/// Replaces `partition`'s ledger in `dir` with one that says `epoch`.
fn write(dir: &Path, partition: u32, epoch: u64) -> Result<(), KafkaSinkError> {
    let entry = LedgerEntry {
        partition,
        committed_through: epoch,
    };
    let bytes =
        frame::encode(FrameKind::Ledger, &entry).map_err(|error| KafkaSinkError::Corrupt {
            what: format!("encoding the commit ledger of partition {partition}"),
            error,
        })?;
    let path = dir.join(ledger_name(partition));
    let temporary: PathBuf = dir.join(format!("{}.tmp", ledger_name(partition)));
    let mut file = File::create(&temporary).map_err(io("creating", &temporary))?;
    file.write_all(&bytes).map_err(io("writing", &temporary))?;
    file.sync_all().map_err(io("syncing", &temporary))?;
    drop(file);
    fs::rename(&temporary, &path).map_err(io("renaming to", &path))?;
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))?;
    Ok(())
}

/// Winds the ledger file `path` back so that it claims no epoch after `restored`
/// (deletes it for `None`, a run from the beginning): a job restored to an
/// earlier epoch, or started afresh, numbers its epochs again, and a claim about
/// an epoch of the abandoned run must not vouch for the new one.
pub fn rewind(path: &Path, restored: Option<u64>) -> Result<(), KafkaSinkError> {
    let (Some(dir), Some(partition)) = (path.parent(), partition_of(path)) else {
        return Err(KafkaSinkError::Invalid(format!(
            "{} is not a commit ledger",
            path.display()
        )));
    };
    match restored {
        None => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("deleting", path)(e)),
        },
        Some(epoch) => {
            if committed_through(dir, partition)?.is_some_and(|e| e > epoch) {
                write(dir, partition, epoch)?;
            }
            Ok(())
        }
    }
}

/// The sink partition a ledger file name stands for.
fn partition_of(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix('p')?
        .strip_suffix(".committed")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_only_moves_forward_and_survives_a_reread() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(committed_through(dir.path(), 3).unwrap(), None);
        record_committed(dir.path(), 3, 7).unwrap();
        assert_eq!(committed_through(dir.path(), 3).unwrap(), Some(7));
        record_committed(dir.path(), 3, 5).unwrap();
        assert_eq!(committed_through(dir.path(), 3).unwrap(), Some(7));
        record_committed(dir.path(), 3, 9).unwrap();
        assert_eq!(committed_through(dir.path(), 3).unwrap(), Some(9));
        assert_eq!(committed_through(dir.path(), 4).unwrap(), None);
        assert!(is_ledger(&dir.path().join(ledger_name(3))));
        assert!(!dir.path().join(format!("{}.tmp", ledger_name(3))).exists());
        let path = dir.path().join(ledger_name(3));
        rewind(&path, Some(12)).unwrap();
        assert_eq!(committed_through(dir.path(), 3).unwrap(), Some(9));
        rewind(&path, Some(6)).unwrap();
        assert_eq!(committed_through(dir.path(), 3).unwrap(), Some(6));
        rewind(&path, None).unwrap();
        assert_eq!(committed_through(dir.path(), 3).unwrap(), None);
    }

    #[test]
    fn a_damaged_or_foreign_ledger_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        record_committed(dir.path(), 1, 4).unwrap();
        let path = dir.path().join(ledger_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = committed_through(dir.path(), 1).unwrap_err().to_string();
        assert!(err.contains("p00001.committed"), "{err}");
        fs::copy(
            dir.path().join(ledger_name(1)),
            dir.path().join(ledger_name(2)),
        )
        .unwrap();
        record_committed(dir.path(), 5, 1).unwrap();
        fs::copy(
            dir.path().join(ledger_name(5)),
            dir.path().join(ledger_name(2)),
        )
        .unwrap();
        let err = committed_through(dir.path(), 2).unwrap_err().to_string();
        assert!(err.contains("sink partition 5"), "{err}");
    }
}
