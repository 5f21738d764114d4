//! The envelope of everything the Kafka sink writes in its own format: the frames
//! of a staged copy on disk and the value of a commit marker on the wire.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! u8 format version | u8 kind | u32 body length | bincode body | u32 crc32
//! ```
//!
//! The checksum covers every byte before it. The version comes first so that a
//! future reader can tell an old frame from a damaged one; the kind keeps a marker
//! from being read as a staged record and the other way round.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The only frame version this build writes and reads.
pub const FRAME_VERSION: u8 = 1;

/// Bytes before the body: version, kind, body length.
const HEADER_LEN: usize = 1 + 1 + 4;
/// Bytes after the body: the crc32.
const TRAILER_LEN: usize = 4;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// One output record of a staged copy.
    StagedRecord = 1,
    /// The last frame of a complete staged copy: its epoch and record count.
    StagedEnd = 2,
    /// A commit marker (the value of a marker-topic record).
    Marker = 3,
    /// A sink partition's commit ledger: the newest epoch whose transaction is
    /// known committed (see [`ledger`](super::ledger)).
    Ledger = 4,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the frame's header or its stated length.
    #[error("truncated frame: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// A version this build does not read.
    #[error("unknown frame version {0} (this build reads version {FRAME_VERSION})")]
    Version(u8),
    /// A frame of another kind than expected.
    #[error("frame kind {found} where kind {expected} was expected")]
    Kind {
        /// The kind wanted.
        expected: u8,
        /// The kind found.
        found: u8,
    },
    /// The checksum does not match the bytes.
    #[error("checksum mismatch: stored crc32 {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The body does not encode or decode.
    #[error("frame body: {0}")]
    Body(#[from] bincode::Error),
    /// A body too large for the u32 length field.
    #[error("frame body of {0} bytes is too large")]
    TooLarge(usize),
}

/// Appends the frame of `body` to `out`.
pub fn encode_into<T: Serialize>(
    kind: FrameKind,
    body: &T,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let encoded = bincode::serialize(body)?;
    let len = u32::try_from(encoded.len()).map_err(|_| FrameError::TooLarge(encoded.len()))?;
    let start = out.len();
    out.push(FRAME_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&encoded);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The frame of `body`.
pub fn encode<T: Serialize>(kind: FrameKind, body: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_into(kind, body, &mut out)?;
    Ok(out)
}

/// Reads the frame at the start of `bytes`: its kind, checked against `expected`,
/// its body, and how many bytes it took.
pub fn decode<T: DeserializeOwned>(
    expected: &[FrameKind],
    bytes: &[u8],
) -> Result<(FrameKind, T, usize), FrameError> {
    let truncated = |needed| FrameError::Truncated {
        needed,
        available: bytes.len(),
    };
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN));
    }
    if bytes[0] != FRAME_VERSION {
        return Err(FrameError::Version(bytes[0]));
    }
    let len = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
    let total = HEADER_LEN + len + TRAILER_LEN;
    if bytes.len() < total {
        return Err(truncated(total));
    }
    let covered = &bytes[..HEADER_LEN + len];
    let tail = &bytes[HEADER_LEN + len..total];
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    let kind = expected
        .iter()
        .copied()
        .find(|k| *k as u8 == bytes[1])
        .ok_or(FrameError::Kind {
            expected: expected.first().map_or(0, |k| *k as u8),
            found: bytes[1],
        })?;
    let body = bincode::deserialize(&covered[HEADER_LEN..])?;
    Ok((kind, body, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_frame_decodes_to_what_was_encoded(body: (Option<Vec<u8>>, String, u64)) {
            let bytes = encode(FrameKind::StagedRecord, &body).unwrap();
            let (kind, back, used): (_, (Option<Vec<u8>>, String, u64), _) =
                decode(&[FrameKind::StagedRecord], &bytes).unwrap();
            prop_assert_eq!(kind, FrameKind::StagedRecord);
            prop_assert_eq!(back, body);
            prop_assert_eq!(used, bytes.len());
        }

        #[test]
        fn any_flipped_bit_is_detected(body: (String, u64), at in any::<usize>(), bit in 0u8..8) {
            let mut bytes = encode(FrameKind::Marker, &body).unwrap();
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(decode::<(String, u64)>(&[FrameKind::Marker], &bytes).is_err());
        }

        #[test]
        fn a_cut_frame_is_truncated_never_a_panic(body: Vec<u8>, cut in any::<usize>()) {
            let bytes = encode(FrameKind::StagedRecord, &body).unwrap();
            let cut = cut % bytes.len();
            let is_truncated = matches!(
                decode::<Vec<u8>>(&[FrameKind::StagedRecord], &bytes[..cut]),
                Err(FrameError::Truncated { .. })
            );
            prop_assert!(is_truncated);
        }
    }

    #[test]
    fn a_frame_of_another_kind_is_refused() {
        let bytes = encode(FrameKind::Marker, &1u64).unwrap();
        let err = decode::<u64>(&[FrameKind::StagedRecord], &bytes).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Kind {
                    expected: 1,
                    found: 3
                }
            ),
            "{err}"
        );
    }
}
