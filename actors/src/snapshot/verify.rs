//! Checks shared by every store: a chunk file is the chunk its reference names, and
//! a manifest file is the manifest of the epoch its location names.
//!
//! A store reads the bytes its own way (a file, an object) and hands them here, so
//! what counts as corrupt is the same on every backend.

use std::borrow::Cow;
use std::path::Path;

use super::error::SnapshotError;
use super::format::{self, ChunkBody, FileKind};
use super::store::{ChunkId, ChunkRef, Manifest};

/// Encodes one chunk file of `job` at `epoch` (`path` only names it in errors).
pub fn encode_chunk(
    path: &Path,
    job: &str,
    epoch: u64,
    id: &ChunkId,
    base: Option<u64>,
    data: &[u8],
) -> Result<Vec<u8>, SnapshotError> {
    if let Some(base) = base {
        if base >= epoch {
            return Err(SnapshotError::InvalidArgument(format!(
                "chunk for stage {:?} partition {} at epoch {epoch} cannot extend \
                 epoch {base}: a base must be an older epoch",
                id.stage, id.key_partition
            )));
        }
    }
    let body = ChunkBody {
        job: Cow::Borrowed(job),
        epoch,
        stage: Cow::Borrowed(&id.stage),
        key_partition: id.key_partition,
        base,
        data: Cow::Borrowed(data),
    };
    format::encode(path, FileKind::Chunk, &body)
}

/// Decodes the chunk file `bytes` (read from `path`) and returns its data, after
/// checking that it is the chunk `chunk` of `job` describes: job, epoch, stage,
/// partition, base and data length must all match.
pub fn decode_chunk(
    path: &Path,
    bytes: &[u8],
    job: &str,
    chunk: &ChunkRef,
) -> Result<Vec<u8>, SnapshotError> {
    let body: ChunkBody<'static> = format::decode(path, FileKind::Chunk, bytes)?;
    let mismatch = |what: &str, found: String, wanted: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("holds {what} {found} but the reference expects {wanted}"),
    };
    if body.job != job {
        return Err(mismatch(
            "job",
            format!("{:?}", body.job),
            format!("{job:?}"),
        ));
    }
    if body.epoch != chunk.epoch {
        return Err(mismatch(
            "epoch",
            body.epoch.to_string(),
            chunk.epoch.to_string(),
        ));
    }
    if body.stage != chunk.id.stage || body.key_partition != chunk.id.key_partition {
        return Err(mismatch(
            "chunk",
            format!("{:?}/{}", body.stage, body.key_partition),
            format!("{:?}/{}", chunk.id.stage, chunk.id.key_partition),
        ));
    }
    if body.base != chunk.base {
        return Err(mismatch(
            "base",
            format!("{:?}", body.base),
            format!("{:?}", chunk.base),
        ));
    }
    if body.data.len() as u64 != chunk.bytes {
        return Err(mismatch(
            "data length",
            body.data.len().to_string(),
            chunk.bytes.to_string(),
        ));
    }
    Ok(body.data.into_owned())
}

/// Decodes the manifest file `bytes` (read from `path`, where the manifest of `job`
/// at `epoch` lives) and checks that it is that manifest and self-consistent.
pub fn decode_manifest(
    path: &Path,
    bytes: &[u8],
    job: &str,
    epoch: u64,
) -> Result<Manifest, SnapshotError> {
    let manifest: Manifest = format::decode(path, FileKind::Manifest, bytes)?;
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if manifest.job != job || manifest.epoch != epoch {
        return Err(corrupt(format!(
            "holds job {:?} epoch {}, but its location says job {job:?} epoch {epoch}",
            manifest.job, manifest.epoch
        )));
    }
    manifest
        .validate()
        .map_err(|e| corrupt(format!("inconsistent contents: {e}")))?;
    Ok(manifest)
}

/// Maps an error about one chunk of the manifest at `path` to the manifest's: a
/// manifest pointing at an impossible chunk name is a corrupt manifest.
pub fn chunk_error_in_manifest(path: &Path, e: SnapshotError) -> SnapshotError {
    match e {
        SnapshotError::InvalidChunkRef { file, reason } => SnapshotError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("refers to invalid chunk file {file:?}: {reason}"),
        },
        other => other,
    }
}
