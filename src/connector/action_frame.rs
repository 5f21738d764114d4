//! The envelope of one encoded commit action: what a transactional sink's
//! [`pre_commit`](super::two_phase::TwoPhaseCommitSink::pre_commit) returns travels
//! in it to the checkpoint coordinator, into the epoch's manifest, and back to the
//! stage's [`Committer`](super::two_phase::Committer) after the epoch completes or
//! at recovery.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! u8 format version | u32 body length | bincode body | u32 crc32
//! ```
//!
//! The checksum covers every byte before it, and the frame must be consumed exactly.
//! The version comes first, so a future reader can tell an old frame from a damaged
//! one. The body is the sink's own action type, encoded with bincode; its layout is
//! the sink's to keep (see docs/operator-api.md, "Writing a transactional sink").

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The only action frame version this build writes and reads.
pub const ACTION_FRAME_VERSION: u8 = 1;

/// Bytes before the body: version, body length.
const HEADER_LEN: usize = 1 + 4;
/// Bytes after the body: the crc32.
const TRAILER_LEN: usize = 4;

/// Why an action frame could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ActionFrameError {
    /// Fewer bytes than the frame's header or its stated length, or more.
    #[error("commit action frame of {found} bytes, where its header says {expected}")]
    Length {
        /// Bytes the frame should take.
        expected: usize,
        /// Bytes there are.
        found: usize,
    },
    /// A version this build does not read.
    #[error("commit action frame version {0} (this build reads version {ACTION_FRAME_VERSION})")]
    Version(u8),
    /// The checksum does not match the bytes.
    #[error(
        "commit action frame checksum mismatch: stored crc32 {stored:#010x}, computed \
         {computed:#010x}"
    )]
    Checksum {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The body does not encode, or does not decode as the stage's action type.
    #[error("commit action body ({action_type}): {error}")]
    Body {
        /// The action type being encoded or decoded.
        action_type: &'static str,
        /// What bincode said.
        #[source]
        error: bincode::Error,
    },
    /// A body too large for the u32 length field.
    #[error("commit action body of {0} bytes is too large")]
    TooLarge(usize),
}

fn bincode_options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// The frame of `action`.
pub fn encode_action<A: Serialize>(action: &A) -> Result<Vec<u8>, ActionFrameError> {
    let body = bincode_options()
        .serialize(action)
        .map_err(|error| ActionFrameError::Body {
            action_type: std::any::type_name::<A>(),
            error,
        })?;
    let len = u32::try_from(body.len()).map_err(|_| ActionFrameError::TooLarge(body.len()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.push(ACTION_FRAME_VERSION);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads the action in `frame`, which must be exactly one frame.
pub fn decode_action<A: DeserializeOwned>(frame: &[u8]) -> Result<A, ActionFrameError> {
    let Some(&version) = frame.first() else {
        return Err(ActionFrameError::Length {
            expected: HEADER_LEN + TRAILER_LEN,
            found: 0,
        });
    };
    if version != ACTION_FRAME_VERSION {
        return Err(ActionFrameError::Version(version));
    }
    if frame.len() < HEADER_LEN + TRAILER_LEN {
        return Err(ActionFrameError::Length {
            expected: HEADER_LEN + TRAILER_LEN,
            found: frame.len(),
        });
    }
    let len = u32::from_le_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let expected = HEADER_LEN.saturating_add(len).saturating_add(TRAILER_LEN);
    if frame.len() != expected {
        return Err(ActionFrameError::Length {
            expected,
            found: frame.len(),
        });
    }
    let (covered, trailer) = frame.split_at(frame.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(ActionFrameError::Checksum { stored, computed });
    }
    let body = &covered[HEADER_LEN..];
    bincode_options()
        .with_limit(body.len() as u64)
        .deserialize(body)
        .map_err(|error| ActionFrameError::Body {
            action_type: std::any::type_name::<A>(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Sample = (String, u64, Option<Vec<u8>>);

    proptest! {
        #[test]
        fn an_action_decodes_to_what_was_encoded(action: Sample) {
            let frame = encode_action(&action).unwrap();
            prop_assert_eq!(decode_action::<Sample>(&frame).unwrap(), action);
        }

        #[test]
        fn any_flipped_bit_is_detected(action: Sample, at in any::<usize>(), bit in 0u8..8) {
            let mut frame = encode_action(&action).unwrap();
            let i = at % frame.len();
            frame[i] ^= 1 << bit;
            prop_assert!(decode_action::<Sample>(&frame).is_err());
        }

        #[test]
        fn a_cut_or_extended_frame_is_an_error(action: Sample, cut in any::<usize>(), extra: u8) {
            let frame = encode_action(&action).unwrap();
            let cut = cut % frame.len();
            prop_assert!(decode_action::<Sample>(&frame[..cut]).is_err());
            let mut longer = frame.clone();
            longer.push(extra);
            let is_length = matches!(
                decode_action::<Sample>(&longer),
                Err(ActionFrameError::Length { .. })
            );
            prop_assert!(is_length);
        }
    }

    #[test]
    fn another_version_and_another_action_type_are_named() {
        let mut frame = encode_action(&7u64).unwrap();
        frame[0] = 2;
        let err = decode_action::<u64>(&frame).unwrap_err();
        assert!(matches!(err, ActionFrameError::Version(2)), "{err}");
        // A frame of a `u8` read as a `u64` (a manifest restored into a stage whose
        // sink changed its action type).
        let frame = encode_action(&7u8).unwrap();
        let err = decode_action::<u64>(&frame).unwrap_err().to_string();
        assert!(err.contains("u64"), "{err}");
    }
}
