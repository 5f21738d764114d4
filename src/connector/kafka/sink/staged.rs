//! Staged copies: each exactly-once sink partition also writes the records of the
//! epoch in progress to a local file, so that the epoch's output can be produced
//! again if its Kafka transaction is lost (aborted by a crash or a broker timeout
//! after the epoch completed).
//!
//! A staged copy is a sequence of [`frame`](super::frame)s: one
//! [`FrameKind::StagedRecord`] per record, then one [`FrameKind::StagedEnd`] with the
//! epoch and the record count, so a copy cut short is detected. It is written as
//! records come (buffered) to `p<partition>.open`, and at the barrier fsynced and
//! renamed to `p<partition>-e<epoch>.staged` (directory synced) before the barrier is
//! acknowledged.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::KafkaSinkError;
use super::frame::{self, FrameKind};
use super::output::KafkaOutput;

/// The end frame of a staged copy.
#[derive(Debug, Serialize, Deserialize)]
struct StagedEnd {
    epoch: u64,
    records: u64,
}

/// The staged copy of the epoch in progress of one sink partition.
pub struct StagedWriter {
    open_path: PathBuf,
    file: BufWriter<File>,
    frame: Vec<u8>,
    records: u64,
}

/// The file name of the open copy of `partition`.
fn open_name(partition: u32) -> String {
    format!("p{partition:05}.open")
}

/// The file name of `partition`'s staged copy of `epoch`.
pub fn staged_name(partition: u32, epoch: u64) -> String {
    format!("p{partition:05}-e{epoch:020}.staged")
}

impl StagedWriter {
    /// Starts the copy of `partition` in `dir`. Truncating a leftover is right: an
    /// open copy is never referenced by a commit action.
    pub fn create(dir: &Path, partition: u32) -> Result<Self, KafkaSinkError> {
        let open_path = dir.join(open_name(partition));
        let file = File::create(&open_path).map_err(|source| KafkaSinkError::Staging {
            what: "creating",
            path: open_path.clone(),
            source,
        })?;
        Ok(StagedWriter {
            open_path,
            file: BufWriter::with_capacity(64 * 1024, file),
            frame: Vec::new(),
            records: 0,
        })
    }

    /// Appends one record.
    pub fn append(&mut self, record: &KafkaOutput) -> Result<(), KafkaSinkError> {
        self.frame.clear();
        frame::encode_into(FrameKind::StagedRecord, record, &mut self.frame).map_err(|error| {
            KafkaSinkError::Corrupt {
                what: format!("encoding a record for {}", self.open_path.display()),
                error,
            }
        })?;
        self.records += 1;
        self.file
            .write_all(&self.frame)
            .map_err(|source| KafkaSinkError::Staging {
                what: "writing",
                path: self.open_path.clone(),
                source,
            })
    }

    /// Ends the copy as the output of `epoch`: writes the end frame, syncs, and
    /// renames it to `staged` (directory synced). Returns the number of records.
    pub fn seal(mut self, epoch: u64, staged: &Path) -> Result<u64, KafkaSinkError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| KafkaSinkError::Staging { what, path, source }
        };
        self.frame.clear();
        let end = StagedEnd {
            epoch,
            records: self.records,
        };
        frame::encode_into(FrameKind::StagedEnd, &end, &mut self.frame).map_err(|error| {
            KafkaSinkError::Corrupt {
                what: format!("encoding the end of {}", self.open_path.display()),
                error,
            }
        })?;
        self.file
            .write_all(&self.frame)
            .map_err(io("writing", &self.open_path))?;
        let file = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io("writing", &self.open_path))?;
        file.sync_all().map_err(io("syncing", &self.open_path))?;
        drop(file);
        fs::rename(&self.open_path, staged).map_err(io("renaming to", staged))?;
        sync_parent(staged)?;
        Ok(self.records)
    }
}

/// Reads a complete staged copy of `epoch`: every record, in order. A damaged,
/// cut-short or foreign file is an error naming it.
pub fn read_staged(path: &Path, epoch: u64) -> Result<Vec<KafkaOutput>, KafkaSinkError> {
    let bytes = fs::read(path).map_err(|source| KafkaSinkError::Staging {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |at: usize, error| KafkaSinkError::Corrupt {
        what: format!("staged copy {} at byte {at}", path.display()),
        error,
    };
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        // The kind byte follows the version byte; decode checks both.
        if bytes.get(at + 1) == Some(&(FrameKind::StagedEnd as u8)) {
            let (_, end, used): (_, StagedEnd, _) =
                frame::decode(&[FrameKind::StagedEnd], &bytes[at..]).map_err(|e| corrupt(at, e))?;
            if end.epoch != epoch || end.records != records.len() as u64 || at + used != bytes.len()
            {
                return Err(KafkaSinkError::Invalid(format!(
                    "staged copy {} is not epoch {epoch}'s: it ends as epoch {} with {} \
                     records after {} records read, {} trailing bytes",
                    path.display(),
                    end.epoch,
                    end.records,
                    records.len(),
                    bytes.len() - at - used
                )));
            }
            return Ok(records);
        }
        let (_, record, used): (_, KafkaOutput, _) =
            frame::decode(&[FrameKind::StagedRecord], &bytes[at..]).map_err(|e| corrupt(at, e))?;
        records.push(record);
        at += used;
    }
}

/// Deletes a staged copy (already gone is fine) and syncs its directory.
pub fn remove_staged(path: &Path) -> Result<(), KafkaSinkError> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(KafkaSinkError::Staging {
            what: "deleting",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Syncs the directory holding `path`, so a rename or deletion in it is durable.
fn sync_parent(path: &Path) -> Result<(), KafkaSinkError> {
    if let Some(dir) = path.parent() {
        #[cfg(unix)]
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KafkaSinkError::Staging {
                what: "syncing directory",
                path: dir.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> KafkaOutput {
        KafkaOutput {
            key: Some(vec![i]),
            value: Some(vec![i, i]),
            headers: vec![("h".into(), vec![i])],
            ..KafkaOutput::default()
        }
    }

    #[test]
    fn a_sealed_copy_reads_back_and_a_cut_or_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = StagedWriter::create(dir.path(), 2).unwrap();
        let want: Vec<_> = (0..100).map(record).collect();
        for r in &want {
            w.append(r).unwrap();
        }
        let staged = dir.path().join(staged_name(2, 7));
        assert_eq!(w.seal(7, &staged).unwrap(), 100);
        assert!(!dir.path().join(open_name(2)).exists());
        assert_eq!(read_staged(&staged, 7).unwrap(), want);
        let err = read_staged(&staged, 8).unwrap_err().to_string();
        assert!(err.contains("not epoch 8"), "{err}");
        let bytes = fs::read(&staged).unwrap();
        fs::write(&staged, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_staged(&staged, 7).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        remove_staged(&staged).unwrap();
        remove_staged(&staged).unwrap();
    }
}
