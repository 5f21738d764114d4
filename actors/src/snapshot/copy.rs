//! Copying an epoch from one store to another: a savepoint is exported from the
//! job's store into a directory of its own, and imported back before a restore.

use std::collections::BTreeMap;

use super::error::SnapshotError;
use super::store::{Manifest, NewChunk, SnapshotStore};

/// Copies every chunk `manifest` references from `from` into `to` and returns the
/// manifest with its references pointing into `to`; committing it is the caller's
/// choice. Chunks are read back (checksums verified) and stored one epoch at a time,
/// each epoch's chunks as one batch.
pub fn copy_epoch(
    from: &dyn SnapshotStore,
    to: &dyn SnapshotStore,
    manifest: &Manifest,
) -> Result<Manifest, SnapshotError> {
    let job = manifest.job.as_str();
    // (chain, link) positions of every chunk, by the epoch it was written in.
    let mut by_epoch: BTreeMap<u64, Vec<(usize, usize)>> = BTreeMap::new();
    for (c, chain) in manifest.chunks.iter().enumerate() {
        for (l, link) in chain.iter().enumerate() {
            by_epoch.entry(link.epoch).or_default().push((c, l));
        }
    }
    let mut copied = manifest.clone();
    for (epoch, places) in by_epoch {
        let mut data = Vec::with_capacity(places.len());
        for &(c, l) in &places {
            data.push(from.read_chunk(job, &manifest.chunks[c][l])?);
        }
        let batch: Vec<NewChunk<'_>> = places
            .iter()
            .zip(&data)
            .map(|(&(c, l), data)| {
                let link = &manifest.chunks[c][l];
                NewChunk {
                    id: &link.id,
                    base: link.base,
                    data,
                }
            })
            .collect();
        let stored = to.put_chunks(job, epoch, &batch)?;
        for (&(c, l), stored) in places.iter().zip(stored) {
            copied.chunks[c][l] = stored;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{ChunkId, LocalDirStore};

    #[test]
    fn an_epoch_with_chains_over_several_epochs_is_copied_whole() {
        let dir = tempfile::tempdir().unwrap();
        let from = LocalDirStore::new(dir.path().join("from")).unwrap();
        let to = LocalDirStore::new(dir.path().join("to")).unwrap();
        let a = ChunkId::new("state/1", 0);
        let b = ChunkId::new("state/1", 1);
        let a1 = from.put_chunk("job", 1, &a, None, b"a full").unwrap();
        let a2 = from.put_chunk("job", 2, &a, Some(1), b"a delta").unwrap();
        let b2 = from.put_chunk("job", 2, &b, None, b"b full").unwrap();
        let manifest = Manifest {
            job: "job".into(),
            epoch: 2,
            created_ms: 7,
            chunks: vec![vec![a1, a2], vec![b2]],
            meta: BTreeMap::from([("k".to_string(), "v".to_string())]),
        };
        from.commit(&manifest).unwrap();
        let copied = copy_epoch(&from, &to, &manifest).unwrap();
        to.commit(&copied).unwrap();
        let restored = to.latest_complete("job").unwrap().unwrap();
        assert_eq!(restored, copied);
        let read: Vec<Vec<u8>> = restored
            .chunk_refs()
            .map(|r| to.read_chunk("job", r).unwrap())
            .collect();
        assert_eq!(
            read,
            vec![b"a full".to_vec(), b"a delta".to_vec(), b"b full".to_vec()]
        );
        assert_eq!(restored.meta, manifest.meta);
    }
}
