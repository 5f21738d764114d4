//! The envelope of every value the coordinator stores (in etcd, or in memory for the
//! embedded backend): the ring, a member's record, the leader's record and a job's
//! snapshot pointer.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! u8 format version | u8 record kind | bincode body | u32 crc32
//! ```
//!
//! The checksum covers every byte before it; the body must be consumed exactly, so a
//! truncated or padded value is refused; the kind byte keeps a ring from ever being
//! read as a snapshot pointer. The encoding is deterministic (bincode 1, fixed-width
//! integers), which lets the etcd backend compare a stored value byte for byte in a
//! transaction.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The only format version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;

/// Bytes around the body: version and kind before it, the crc32 after it.
const OVERHEAD: usize = 2 + 4;

/// What a stored value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The ring: key partitions to nodes, with its generation.
    Ring,
    /// A member of the cluster: its node id and address.
    Member,
    /// The elected leader: its node id and address.
    Leader,
    /// A job's last complete snapshot: its epoch.
    SnapshotPointer,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Ring => 1,
            RecordKind::Member => 2,
            RecordKind::Leader => 3,
            RecordKind::SnapshotPointer => 4,
        }
    }
}

/// A stored value that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the envelope itself.
    #[error("{len} bytes is too short for a record (at least {OVERHEAD})")]
    TooShort {
        /// The value's length.
        len: usize,
    },
    /// The checksum does not match: the value is damaged.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The crc32 in the value.
        stored: u32,
        /// The crc32 of the bytes before it.
        computed: u32,
    },
    /// Written by another format version of weir.
    #[error("format version {found} (this build reads {RECORD_VERSION})")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// A record of another kind.
    #[error("expected a {expected:?} record, found kind code {found}")]
    Kind {
        /// The kind the reader asked for.
        expected: RecordKind,
        /// The kind byte found.
        found: u8,
    },
    /// The body does not decode, or has bytes left over.
    #[error("undecodable body: {0}")]
    Body(String),
    /// The body decodes but breaks an invariant of its type.
    #[error("invalid content: {0}")]
    Invalid(String),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// Encodes `body` as a record of `kind`.
pub fn encode<T: Serialize>(kind: RecordKind, body: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION, kind.code()];
    // Serialising plain data (integers, strings, vectors) into a Vec cannot fail.
    options()
        .serialize_into(&mut out, body)
        .expect("bincode serialises plain data into a Vec");
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a record of `kind`, refusing a damaged, truncated, padded, foreign-kind or
/// foreign-version value.
pub fn decode<T: DeserializeOwned>(kind: RecordKind, bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() < OVERHEAD {
        return Err(RecordError::TooShort { len: bytes.len() });
    }
    let (covered, trailer) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    if covered[0] != RECORD_VERSION {
        return Err(RecordError::Version { found: covered[0] });
    }
    if covered[1] != kind.code() {
        return Err(RecordError::Kind {
            expected: kind,
            found: covered[1],
        });
    }
    options()
        .deserialize(&covered[2..])
        .map_err(|e| RecordError::Body(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_damage_is_refused(
            body in proptest::collection::vec(any::<u64>(), 0..8),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = encode(RecordKind::SnapshotPointer, &body);
            prop_assert_eq!(decode::<Vec<u64>>(RecordKind::SnapshotPointer, &bytes), Ok(body));
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(decode::<Vec<u64>>(RecordKind::SnapshotPointer, &bytes).is_err());
        }

        #[test]
        fn truncation_is_refused(body in proptest::collection::vec(any::<u64>(), 0..8), cut in 1usize..64) {
            let bytes = encode(RecordKind::Ring, &body);
            let keep = bytes.len().saturating_sub(cut);
            prop_assert!(decode::<Vec<u64>>(RecordKind::Ring, &bytes[..keep]).is_err());
        }
    }

    #[test]
    fn a_record_of_another_kind_is_refused() {
        let bytes = encode(RecordKind::Ring, &7u64);
        assert_eq!(
            decode::<u64>(RecordKind::SnapshotPointer, &bytes),
            Err(RecordError::Kind {
                expected: RecordKind::SnapshotPointer,
                found: 1
            })
        );
    }

    #[test]
    fn padding_inside_the_checksum_is_refused() {
        let mut bytes = vec![RECORD_VERSION, RecordKind::Leader.code()];
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.push(0);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode::<u64>(RecordKind::Leader, &bytes),
            Err(RecordError::Body(_))
        ));
    }
}
