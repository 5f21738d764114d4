//! The head record: which writer may commit a job's manifests.
//!
//! A shared store keeps one head object per job. Its content says which writer
//! claimed the job last and the newest epoch it committed; what fences is its ETag.
//! Every change to it is a conditional put against the ETag its writer last saw, so a
//! writer whose view is stale (another writer claimed the job since) cannot change
//! it, and a writer must change it before each commit. The record uses the snapshot
//! envelope (`WEIRSNAP`, version, kind `head`, bincode body, crc32).

use std::path::Path;

use serde::{Deserialize, Serialize};
use weir_actors::snapshot::format::{self, FileKind};
use weir_actors::snapshot::SnapshotError;

/// The body of a head object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The job (unencoded).
    pub job: String,
    /// The id of the writer that holds the job.
    pub writer: String,
    /// How many times the job was claimed; goes up by one with every claim.
    pub claims: u64,
    /// The newest epoch the holder committed (or is committing), 0 for none.
    pub epoch: u64,
}

impl Head {
    /// The stored bytes (`key` names the object in errors).
    pub fn encode(&self, key: &str) -> Result<Vec<u8>, SnapshotError> {
        format::encode(Path::new(key), FileKind::Head, self)
    }

    /// Reads a stored head back, checking its envelope and its job.
    pub fn decode(key: &str, bytes: &[u8], job: &str) -> Result<Head, SnapshotError> {
        let head: Head = format::decode(Path::new(key), FileKind::Head, bytes)?;
        if head.job != job {
            return Err(SnapshotError::Corrupt {
                path: key.into(),
                reason: format!("is the head of job {:?}, not of {job:?}", head.job),
            });
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage_and_other_jobs() {
        let head = Head {
            job: "j".into(),
            writer: "0123456789abcdef".into(),
            claims: 3,
            epoch: 9,
        };
        let bytes = head.encode("p/j/head").unwrap();
        assert_eq!(Head::decode("p/j/head", &bytes, "j").unwrap(), head);
        assert!(matches!(
            Head::decode("p/j/head", &bytes, "k"),
            Err(SnapshotError::Corrupt { .. })
        ));
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert!(matches!(
            Head::decode("p/j/head", &bad, "j"),
            Err(SnapshotError::Corrupt { .. })
        ));
    }
}
