//! The commit list: the sinks' commit actions of one epoch, each tagged with the stage
//! that produced it, as stored in the epoch's `commits` chunk.
//!
//! The kernel treats an action as opaque bytes; the tag is what lets the engine hand
//! each one back to the stage whose sink knows how to decode and apply it, both when
//! the epoch completes and when recovery redoes the restored epoch's actions.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! b"WEIRCMTS" | u16 format version | bincode Vec<StageAction> | u32 crc32
//! ```
//!
//! The checksum covers every byte before it, and the body must be consumed exactly.
//! (The snapshot store checksums the whole chunk file as well; this layer's own
//! version and checksum keep the list's layout self-describing wherever it travels.)
//!
//! Builds before the stage tags stored a plain bincode `Vec<Vec<u8>>` of untagged
//! actions. Such a list starts with its length as a `u64`, never with the magic (the
//! length would have to exceed 5 * 10^18), so [`decode_commit_list`] tells the two
//! apart and returns the old one as [`CommitList::Untagged`] for the engine to decide
//! what to do with.

use bincode::Options;
use serde::{Deserialize, Serialize};

/// The eight bytes a commit list starts with.
pub const COMMIT_LIST_MAGIC: &[u8; 8] = b"WEIRCMTS";

/// The only commit list version this build writes and reads.
pub const COMMIT_LIST_VERSION: u16 = 1;

/// Bytes before the body: magic and version.
const HEADER_LEN: usize = COMMIT_LIST_MAGIC.len() + 2;
/// Bytes after the body: the crc32.
const TRAILER_LEN: usize = 4;

/// One commit action with the stage that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StageAction {
    /// The index of the stage whose sink returned the action.
    pub stage: u32,
    /// The action as the stage's sink encoded it (opaque to the kernel).
    pub action: Vec<u8>,
}

/// A decoded commits chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitList {
    /// The current format: every action tagged with its stage.
    Tagged(Vec<StageAction>),
    /// The format of builds before stage tags: a list of actions whose stage is
    /// unknown (each was a self-contained action of the engine's closed set).
    Untagged(Vec<Vec<u8>>),
}

/// Why a commits chunk could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CommitListError {
    /// The bytes start with the magic but are shorter than header and checksum.
    #[error("commit list of {len} bytes is shorter than its {min} bytes of header and checksum")]
    Truncated {
        /// Bytes there are.
        len: usize,
        /// Bytes the header and checksum take.
        min: usize,
    },
    /// A version this build does not read.
    #[error("commit list format version {found} (this build reads version {COMMIT_LIST_VERSION})")]
    Version {
        /// The version found.
        found: u16,
    },
    /// The checksum does not match the bytes.
    #[error(
        "commit list checksum mismatch: stored crc32 {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The body does not encode or decode.
    #[error("commit list body: {0}")]
    Body(#[from] bincode::Error),
    /// Neither the current format nor the untagged list of older builds.
    #[error(
        "not a commit list: no {} magic, and not the untagged action list of builds \
         before stage tags either ({reason})",
        String::from_utf8_lossy(COMMIT_LIST_MAGIC)
    )]
    Unrecognized {
        /// Why the older layout did not fit.
        reason: String,
    },
}

fn bincode_options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// The commits chunk of `actions`.
pub fn encode_commit_list(actions: &[StageAction]) -> Result<Vec<u8>, CommitListError> {
    let body = bincode_options().serialize(actions)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.extend_from_slice(COMMIT_LIST_MAGIC);
    out.extend_from_slice(&COMMIT_LIST_VERSION.to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads a commits chunk: the tagged list of this build, or the untagged list older
/// builds wrote. Damage is an error, never a shorter list.
pub fn decode_commit_list(bytes: &[u8]) -> Result<CommitList, CommitListError> {
    if !bytes.starts_with(COMMIT_LIST_MAGIC) {
        return decode_untagged(bytes).map(CommitList::Untagged);
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(CommitListError::Truncated {
            len: bytes.len(),
            min: HEADER_LEN + TRAILER_LEN,
        });
    }
    let at = COMMIT_LIST_MAGIC.len();
    let found = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    if found != COMMIT_LIST_VERSION {
        return Err(CommitListError::Version { found });
    }
    let (covered, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(CommitListError::Checksum { stored, computed });
    }
    let body = &covered[HEADER_LEN..];
    let actions = bincode_options()
        .with_limit(body.len() as u64)
        .deserialize(body)?;
    Ok(CommitList::Tagged(actions))
}

/// The untagged list of builds before stage tags: `bincode::serialize` of a
/// `Vec<Vec<u8>>` (fixed-width little-endian lengths), with no bytes left over.
fn decode_untagged(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CommitListError> {
    bincode_options()
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
        .map_err(|e| CommitListError::Unrecognized {
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn actions() -> impl Strategy<Value = Vec<StageAction>> {
        proptest::collection::vec(
            (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(stage, action)| StageAction { stage, action }),
            0..6,
        )
    }

    proptest! {
        #[test]
        fn a_list_decodes_to_what_was_encoded(list in actions()) {
            let bytes = encode_commit_list(&list).unwrap();
            prop_assert_eq!(decode_commit_list(&bytes).unwrap(), CommitList::Tagged(list));
        }

        #[test]
        fn any_flipped_bit_is_detected(list in actions(), at in any::<usize>(), bit in 0u8..8) {
            let mut bytes = encode_commit_list(&list).unwrap();
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
            // A flip in the magic may leave bytes the old layout cannot read either:
            // it must be an error, never a list.
            prop_assert!(decode_commit_list(&bytes).is_err());
        }

        #[test]
        fn a_cut_list_is_an_error(list in actions(), cut in any::<usize>()) {
            let bytes = encode_commit_list(&list).unwrap();
            let cut = cut % bytes.len();
            prop_assert!(decode_commit_list(&bytes[..cut]).is_err());
        }

        #[test]
        fn the_untagged_list_of_older_builds_is_recognised(
            old in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6)
        ) {
            // What the writer stored before stage tags.
            let bytes = bincode::serialize(&old).unwrap();
            prop_assert_eq!(decode_commit_list(&bytes).unwrap(), CommitList::Untagged(old));
        }
    }

    #[test]
    fn another_version_and_garbage_are_named() {
        let mut bytes = encode_commit_list(&[StageAction {
            stage: 2,
            action: vec![1, 2, 3],
        }])
        .unwrap();
        bytes[COMMIT_LIST_MAGIC.len()] = 9;
        let err = decode_commit_list(&bytes).unwrap_err();
        assert!(
            matches!(err, CommitListError::Version { found: 9 }),
            "{err}"
        );
        let err = decode_commit_list(b"hello, world").unwrap_err().to_string();
        assert!(err.contains("not a commit list"), "{err}");
        assert!(err.contains("WEIRCMTS"), "{err}");
    }
}
