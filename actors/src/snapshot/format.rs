//! The on-disk envelope shared by every snapshot file.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! b"WEIRSNAP" | u16 format version | u8 file kind | bincode body | u32 crc32
//! ```
//!
//! The checksum covers every byte before it, so any damage to the header or body is
//! caught, and the body must be consumed exactly, so trailing garbage is caught too.
//! The version comes right after the magic so that a future reader can tell an old
//! file from a damaged one before interpreting anything else.

use std::borrow::Cow;
use std::path::Path;

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::SnapshotError;

/// The eight bytes every snapshot file starts with.
pub const MAGIC: &[u8; 8] = b"WEIRSNAP";

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes before the body: magic, version, kind.
pub const HEADER_LEN: usize = MAGIC.len() + 2 + 1;

/// Bytes after the body: the crc32.
pub const TRAILER_LEN: usize = 4;

/// What a snapshot file holds, recorded in its header so that a manifest can never be
/// mistaken for a chunk or the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The state of one (stage, key partition) at one epoch.
    Chunk,
    /// The list of chunks making up one complete epoch.
    Manifest,
    /// A shared store's record of which writer may commit a job's manifests (see
    /// the object store in `weir`).
    Head,
}

impl FileKind {
    fn code(self) -> u8 {
        match self {
            FileKind::Chunk => 1,
            FileKind::Manifest => 2,
            FileKind::Head => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(FileKind::Chunk),
            2 => Some(FileKind::Manifest),
            3 => Some(FileKind::Head),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileKind::Chunk => "chunk",
            FileKind::Manifest => "manifest",
            FileKind::Head => "head",
        }
    }
}

/// The body of a chunk file.
///
/// Besides the engine's opaque bytes it repeats who the chunk belongs to, so a reader
/// can check that the file it opened is really the chunk a manifest asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkBody<'a> {
    /// The job the chunk belongs to (unencoded).
    pub job: Cow<'a, str>,
    /// The epoch the chunk was written for.
    pub epoch: u64,
    /// The stage (or source) name (unencoded).
    pub stage: Cow<'a, str>,
    /// The key partition (or source split) number.
    pub key_partition: u32,
    /// The epoch of the chunk this one extends, or `None` for a full chunk.
    pub base: Option<u64>,
    /// The engine's snapshot bytes.
    pub data: Cow<'a, [u8]>,
}

fn bincode_options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// Serialises `body` into a complete snapshot file of the given kind.
///
/// `path` is only used to name the file in an error.
pub fn encode<T: Serialize>(
    path: &Path,
    kind: FileKind,
    body: &T,
) -> Result<Vec<u8>, SnapshotError> {
    let encoded = bincode_options()
        .serialize(body)
        .map_err(|source| SnapshotError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + encoded.len() + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind.code());
    out.extend_from_slice(&encoded);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks the envelope of `bytes` (read from `path`) and decodes its body.
///
/// Any problem — short file, wrong magic, unknown version, unexpected kind, checksum
/// mismatch, undecodable or over-long body — is a [`SnapshotError::Corrupt`] naming
/// `path` and the problem.
pub fn decode<T: DeserializeOwned>(
    path: &Path,
    expected: FileKind,
    bytes: &[u8],
) -> Result<T, SnapshotError> {
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(corrupt(format!(
            "file is {} bytes long, shorter than the {} bytes of header and checksum",
            bytes.len(),
            HEADER_LEN + TRAILER_LEN
        )));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            "does not start with the WEIRSNAP magic; not a snapshot file".to_owned(),
        ));
    }
    let version = u16::from_le_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
        )));
    }
    let kind_code = bytes[MAGIC.len() + 2];
    match FileKind::from_code(kind_code) {
        Some(kind) if kind == expected => {}
        Some(kind) => {
            return Err(corrupt(format!(
                "is a {} file, expected a {} file",
                kind.name(),
                expected.name()
            )))
        }
        None => {
            return Err(corrupt(format!(
                "unknown file kind code {kind_code}, expected a {} file",
                expected.name()
            )))
        }
    }
    let (covered, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let actual = crc32fast::hash(covered);
    if stored != actual {
        return Err(corrupt(format!(
            "checksum mismatch: stored crc32 {stored:#010x}, computed {actual:#010x} \
             (file damaged or truncated)"
        )));
    }
    let body = &covered[HEADER_LEN..];
    bincode_options()
        .with_limit(body.len() as u64)
        .deserialize(body)
        .map_err(|e| corrupt(format!("undecodable {} body: {e}", expected.name())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        numbers: Vec<u64>,
        maybe: Option<u32>,
        blob: Vec<u8>,
        map: BTreeMap<String, String>,
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            ".{0,20}",
            prop::collection::vec(any::<u64>(), 0..8),
            any::<Option<u32>>(),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::btree_map(".{0,6}", ".{0,6}", 0..4),
        )
            .prop_map(|(name, numbers, maybe, blob, map)| Sample {
                name,
                numbers,
                maybe,
                blob,
                map,
            })
    }

    fn p() -> &'static Path {
        Path::new("test.snap")
    }

    fn reason(err: SnapshotError) -> String {
        match err {
            SnapshotError::Corrupt { reason, .. } => reason,
            other => panic!("expected Corrupt, got {other}"),
        }
    }

    proptest! {
        #[test]
        fn round_trip(body in sample()) {
            let bytes = encode(p(), FileKind::Manifest, &body)?;
            let back: Sample = decode(p(), FileKind::Manifest, &bytes)?;
            prop_assert_eq!(back, body);
        }

        #[test]
        fn chunk_body_round_trip(data in prop::collection::vec(any::<u8>(), 0..256),
                                 base in any::<Option<u64>>(), epoch in any::<u64>()) {
            let body = ChunkBody {
                job: Cow::Borrowed("job"),
                epoch,
                stage: Cow::Borrowed("stage/1"),
                key_partition: 7,
                base,
                data: Cow::Borrowed(&data),
            };
            let bytes = encode(p(), FileKind::Chunk, &body)?;
            let back: ChunkBody<'static> = decode(p(), FileKind::Chunk, &bytes)?;
            prop_assert_eq!(back, body);
        }

        #[test]
        fn any_flipped_byte_is_detected(body in sample(), at in any::<prop::sample::Index>(),
                                        mask in 1u8..=255) {
            let mut bytes = encode(p(), FileKind::Chunk, &body)?;
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
            let res = decode::<Sample>(p(), FileKind::Chunk, &bytes);
            prop_assert!(matches!(res, Err(SnapshotError::Corrupt { .. })), "flip at {} not detected", i);
        }

        #[test]
        fn any_truncation_is_detected(body in sample(), at in any::<prop::sample::Index>()) {
            let bytes = encode(p(), FileKind::Chunk, &body)?;
            let len = at.index(bytes.len()); // 0..len-1: always strictly shorter
            let res = decode::<Sample>(p(), FileKind::Chunk, &bytes[..len]);
            prop_assert!(matches!(res, Err(SnapshotError::Corrupt { .. })), "truncation to {} not detected", len);
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let mut bytes = encode(p(), FileKind::Chunk, &5u32).unwrap();
        bytes[8..10].copy_from_slice(&7u16.to_le_bytes());
        let r = reason(decode::<u32>(p(), FileKind::Chunk, &bytes).unwrap_err());
        assert!(r.contains("unsupported format version 7"), "{r}");
    }

    #[test]
    fn wrong_kind_is_rejected() {
        let bytes = encode(p(), FileKind::Chunk, &5u32).unwrap();
        let r = reason(decode::<u32>(p(), FileKind::Manifest, &bytes).unwrap_err());
        assert!(
            r.contains("is a chunk file, expected a manifest file"),
            "{r}"
        );
    }

    #[test]
    fn trailing_bytes_with_valid_crc_are_rejected() {
        // Re-seal a file whose body has an extra byte: the checksum is fine but the
        // body does not decode exactly.
        let mut bytes = encode(p(), FileKind::Chunk, &5u32).unwrap();
        bytes.truncate(bytes.len() - TRAILER_LEN);
        bytes.push(0xAB);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let r = reason(decode::<u32>(p(), FileKind::Chunk, &bytes).unwrap_err());
        assert!(r.contains("undecodable"), "{r}");
    }

    #[test]
    fn error_names_the_file() {
        let err = decode::<u32>(Path::new("/x/y/z.chunk"), FileKind::Chunk, b"nope").unwrap_err();
        assert!(err.to_string().contains("/x/y/z.chunk"), "{err}");
    }
}
