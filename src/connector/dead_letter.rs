//! The dead-letter output: where a record that cannot be decoded goes, with the
//! reason, instead of being dropped or crashing the job.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One rejected record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// What produced or rejected it (a source name, a stage name).
    pub origin: String,
    /// Where it was (a file and line, a partition and offset).
    pub position: String,
    /// Why it was rejected.
    pub reason: String,
    /// The record as far as it can be shown (invalid UTF-8 replaced).
    pub record: String,
}

/// The job's dead-letter output: a JSON-lines file, or the log when no file is set.
/// Every letter is counted.
#[derive(Clone, Default)]
pub struct DeadLetters {
    inner: Arc<DeadLetterInner>,
}

#[derive(Default)]
struct DeadLetterInner {
    file: Mutex<Option<(PathBuf, File)>>,
    count: AtomicU64,
}

impl DeadLetters {
    /// Dead letters go to the log (at WARN level), counted.
    pub fn to_log() -> Self {
        DeadLetters::default()
    }

    /// Dead letters are appended to `path` as JSON lines, counted.
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetters {
            inner: Arc::new(DeadLetterInner {
                file: Mutex::new(Some((path.to_path_buf(), file))),
                count: AtomicU64::new(0),
            }),
        })
    }

    /// Records one rejected record.
    pub fn send(&self, letter: DeadLetter) {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        crate::metrics::dead_letter(&letter.origin);
        let mut guard = match self.inner.file.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match guard.as_mut() {
            Some((path, file)) => {
                let written = serde_json::to_string(&letter)
                    .map_err(std::io::Error::other)
                    .and_then(|line| writeln!(file, "{line}"));
                if let Err(e) = written {
                    tracing::error!(path = %path.display(), error = %e, ?letter,
                        "could not write a dead letter to its file; logging it instead");
                }
            }
            None => tracing::warn!(
                origin = %letter.origin, position = %letter.position,
                reason = %letter.reason, record = %letter.record, "dead letter"
            ),
        }
    }

    /// How many records were rejected so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}
