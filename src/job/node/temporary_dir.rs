//! A directory removed when dropped.

use std::path::PathBuf;

use crate::job::error::JobError;

/// A directory removed when dropped: the snapshot store of a checkpointed job run
/// without a state directory, or a benchmark's Kafka staging directory.
pub(crate) struct TemporaryDir(PathBuf);

impl TemporaryDir {
    /// Creates `weir-<kind>-<job>-<pid>-<nanos>` under the system's temporary directory.
    pub(crate) fn new(kind: &str, job: &str) -> Result<Self, JobError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let safe: String = job
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir =
            std::env::temp_dir().join(format!("weir-{kind}-{safe}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            JobError::Runtime(format!(
                "creating a temporary {kind} directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(TemporaryDir(dir))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
