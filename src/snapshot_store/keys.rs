//! The object keys of a shared snapshot store.
//!
//! Under the store's prefix (names escaped as in `weir_actors::snapshot::names`):
//!
//! ```text
//! <prefix>/<job>/chunks/<epoch>-<stage>-<partition>-<writer>.chunk
//! <prefix>/<job>/manifests/<epoch, 20 digits>.manifest
//! <prefix>/<job>/head
//! ```
//!
//! A chunk's key carries the id of the writer (one store instance) that wrote it, so
//! two writers that both believe they write epoch `e` (a deposed leader's nodes and
//! the new leader's) never replace each other's chunks: a committed manifest refers
//! to exactly the objects its own writer stored.

use object_store::path::Path as ObjectPath;
use weir_actors::snapshot::names::{
    chunk_file_name, encode_name, manifest_file_name, parse_manifest_file_name, CHUNK_SUFFIX,
};
use weir_actors::snapshot::{ChunkId, ChunkRef, SnapshotError};

/// Length of a writer id: 16 lowercase hex digits.
pub const WRITER_ID_LEN: usize = 16;

const CHUNKS: &str = "chunks";
const MANIFESTS: &str = "manifests";
const HEAD: &str = "head";

/// Maps jobs, chunks and manifests to object keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (no leading or trailing `/`; empty for the bucket root).
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// The key of `parts` under the prefix, taken as they are (the escaped names keep
    /// their `%xx`, so keys read like LocalDirStore's file paths).
    fn join(&self, parts: &[&str]) -> Result<ObjectPath, SnapshotError> {
        let mut s = self.prefix.clone();
        for p in parts {
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(p);
        }
        ObjectPath::parse(&s).map_err(|e| {
            SnapshotError::InvalidArgument(format!("{s:?} is not a valid object key: {e}"))
        })
    }

    /// The folder of `job`'s chunks.
    pub fn chunks_dir(&self, job: &str) -> Result<ObjectPath, SnapshotError> {
        self.join(&[&encode_name("job", job)?, CHUNKS])
    }

    /// The folder of `job`'s manifests.
    pub fn manifests_dir(&self, job: &str) -> Result<ObjectPath, SnapshotError> {
        self.join(&[&encode_name("job", job)?, MANIFESTS])
    }

    /// The key of the manifest of `epoch`.
    pub fn manifest(&self, job: &str, epoch: u64) -> Result<ObjectPath, SnapshotError> {
        self.join(&[
            &encode_name("job", job)?,
            MANIFESTS,
            &manifest_file_name(epoch),
        ])
    }

    /// The key of `job`'s head record (who may commit).
    pub fn head(&self, job: &str) -> Result<ObjectPath, SnapshotError> {
        self.join(&[&encode_name("job", job)?, HEAD])
    }

    /// The key of a chunk, after checking that the reference's file name is one this
    /// store would write for its id and epoch (so a manifest cannot point elsewhere).
    pub fn chunk(&self, job: &str, chunk: &ChunkRef) -> Result<ObjectPath, SnapshotError> {
        check_chunk_name(chunk)?;
        self.chunk_named(job, &chunk.file)
    }

    /// The key of the chunk object named `name` (as written or as listed).
    pub fn chunk_named(&self, job: &str, name: &str) -> Result<ObjectPath, SnapshotError> {
        self.join(&[&encode_name("job", job)?, CHUNKS, name])
    }
}

/// The file name of chunk `id` of `epoch` written by `writer`.
pub fn chunk_name(epoch: u64, id: &ChunkId, writer: &str) -> Result<String, SnapshotError> {
    let plain = chunk_file_name(epoch, id)?;
    let stem = plain.strip_suffix(CHUNK_SUFFIX).unwrap_or(&plain);
    Ok(format!("{stem}-{writer}{CHUNK_SUFFIX}"))
}

fn is_writer_id(s: &str) -> bool {
    s.len() == WRITER_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Fails unless `chunk.file` is `chunk_name(chunk.epoch, chunk.id, w)` for some
/// writer id `w`.
fn check_chunk_name(chunk: &ChunkRef) -> Result<(), SnapshotError> {
    let plain = chunk_file_name(chunk.epoch, &chunk.id)?;
    let stem = plain.strip_suffix(CHUNK_SUFFIX).unwrap_or(&plain);
    let writer = chunk
        .file
        .strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(CHUNK_SUFFIX));
    match writer {
        Some(w) if is_writer_id(w) => Ok(()),
        _ => Err(SnapshotError::InvalidChunkRef {
            file: chunk.file.clone(),
            reason: format!(
                "stage {:?} partition {} at epoch {} is stored as {stem}-<writer id>{CHUNK_SUFFIX}",
                chunk.id.stage, chunk.id.key_partition, chunk.epoch
            ),
        }),
    }
}

/// The epoch of a chunk name this store writes, or `None` for any other name.
pub fn parse_chunk_epoch(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(CHUNK_SUFFIX)?;
    let (rest, writer) = stem.rsplit_once('-')?;
    if !is_writer_id(writer) {
        return None;
    }
    let (epoch, rest) = rest.split_once('-')?;
    let (stage, partition) = rest.rsplit_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if stage.is_empty() || !all_digits(epoch) || !all_digits(partition) {
        return None;
    }
    epoch.parse().ok()
}

/// The epoch of a manifest name, or `None` for any other name.
pub fn parse_manifest_epoch(name: &str) -> Option<u64> {
    parse_manifest_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "0123456789abcdef";

    #[test]
    fn keys_sit_under_the_prefix_with_escaped_names() {
        let keys = Keys::new("/snaps/prod/");
        assert_eq!(
            keys.manifest("Orders", 7).unwrap().as_ref(),
            "snaps/prod/%4frders/manifests/00000000000000000007.manifest"
        );
        assert_eq!(keys.head("o").unwrap().as_ref(), "snaps/prod/o/head");
        assert_eq!(Keys::new("").head("o").unwrap().as_ref(), "o/head");
    }

    #[test]
    fn chunk_names_carry_the_writer_and_parse_back() {
        let id = ChunkId::new("my stage/x", 3);
        let name = chunk_name(17, &id, W).unwrap();
        assert_eq!(name, format!("17-my%20stage%2fx-3-{W}.chunk"));
        assert_eq!(parse_chunk_epoch(&name), Some(17));
        assert_eq!(parse_chunk_epoch("17-agg-3.chunk"), None);
        assert_eq!(parse_chunk_epoch("notes.txt"), None);
        let good = ChunkRef {
            id: id.clone(),
            epoch: 17,
            base: None,
            file: name,
            bytes: 0,
        };
        assert!(Keys::new("p").chunk("j", &good).is_ok());
        for bad in [
            "17-my%20stage%2fx-3.chunk".to_owned(),
            format!("18-my%20stage%2fx-3-{W}.chunk"),
            "17-my%20stage%2fx-3-../../x.chunk".to_owned(),
            format!("17-my%20stage%2fx-3-{}.chunk", W.to_uppercase()),
        ] {
            let r = ChunkRef {
                file: bad.clone(),
                ..good.clone()
            };
            assert!(
                matches!(
                    Keys::new("p").chunk("j", &r),
                    Err(SnapshotError::InvalidChunkRef { .. })
                ),
                "{bad}"
            );
        }
    }
}
