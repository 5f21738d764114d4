//! The one error type of the snapshot store.

use std::path::PathBuf;

/// Everything that can go wrong while writing, reading or pruning snapshots.
///
/// Variants that concern a file name it, so an operator can go and look at it.
/// [`SnapshotError::Corrupt`] and [`SnapshotError::Missing`] describe a snapshot that
/// cannot be used (and from which restore falls back to an older epoch); the others
/// are environment or caller problems that are reported as they are.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file system operation failed for a reason other than missing or bad data.
    #[error("snapshot store: {op} failed for {}: {source}", path.display())]
    Io {
        /// The file or directory the operation touched.
        path: PathBuf,
        /// What was being done, e.g. "write" or "fsync directory".
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file exists but does not read back as what was written: bad magic,
    /// unknown format version, wrong kind, too short, checksum mismatch, undecodable
    /// body, or contents that disagree with what refers to it.
    #[error("corrupt snapshot file {}: {reason}", path.display())]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What exactly is wrong with it.
        reason: String,
    },
    /// A snapshot file that should exist (a chunk a manifest refers to, or a manifest
    /// that was just listed) is not there.
    #[error("snapshot file {} is missing", path.display())]
    Missing {
        /// Where the file was expected.
        path: PathBuf,
    },
    /// A snapshot body could not be serialised.
    #[error("could not encode snapshot file {}: {source}", path.display())]
    Encode {
        /// The file that was about to be written.
        path: PathBuf,
        /// The serialisation error.
        #[source]
        source: bincode::Error,
    },
    /// A job or stage name cannot be used (empty, or too long once encoded for the
    /// file system).
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// Which kind of name: "job" or "stage".
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A chunk reference names a file other than the one the store would have written
    /// for that chunk (which also rules out path tricks in a manifest).
    #[error("invalid chunk reference to file {file:?}: {reason}")]
    InvalidChunkRef {
        /// The file name carried by the reference.
        file: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A manifest handed to `commit` is not self-consistent.
    #[error("invalid manifest for job {job:?} epoch {epoch}: {reason}")]
    InvalidManifest {
        /// The manifest's job.
        job: String,
        /// The manifest's epoch.
        epoch: u64,
        /// What is inconsistent.
        reason: String,
    },
    /// A remote (object store) operation failed for a reason other than a missing
    /// object or a refused condition.
    #[error("snapshot store: {op} failed for {key}: {source}")]
    Remote {
        /// The object's key (or the listed prefix).
        key: String,
        /// What was being done, e.g. "put" or "list".
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A manifest commit was refused because another writer owns the job's
    /// manifests: the epoch was already committed by someone else, or another writer
    /// took over the job since this one last committed (this one is deposed).
    #[error("commit of job {job:?} epoch {epoch} refused (fenced): {reason}")]
    Fenced {
        /// The job.
        job: String,
        /// The epoch whose commit was refused.
        epoch: u64,
        /// Which of the two happened.
        reason: String,
    },
    /// A caller-supplied argument makes no sense (e.g. keeping zero epochs, or a base
    /// epoch that is not older than the chunk's own).
    #[error("invalid snapshot store argument: {0}")]
    InvalidArgument(String),
}

impl SnapshotError {
    /// True when the error means "this snapshot is unusable" (corrupt or missing
    /// files) rather than "the store itself is failing"; restore skips such epochs.
    pub fn is_unusable_snapshot(&self) -> bool {
        matches!(
            self,
            SnapshotError::Corrupt { .. } | SnapshotError::Missing { .. }
        )
    }
}
