//! The wire codec of the exchange: one frame per batch or marker.
//!
//! A frame is `WXF` and a format version byte, the CRC-32 of the body, the body's
//! length (u32, little endian), and the body: the bincode encoding of the payload (a
//! batch of records, or a marker). A frame whose magic, version, length or checksum
//! does not match is refused with an error naming what is wrong; nothing is decoded
//! from it.

use serde::{Deserialize, Serialize};
use weir_actors::{Marker, Payload};

use super::Data;

/// The frame's leading bytes.
const MAGIC: &[u8; 3] = b"WXF";
/// The frame format's version.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the body: magic, version, CRC-32, length.
const HEADER: usize = 3 + 1 + 4 + 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not an exchange frame.
    #[error("not an exchange frame (bad magic)")]
    Magic,
    /// A frame of a format this build does not read.
    #[error("exchange frame version {0} is not the supported {FRAME_VERSION}")]
    Version(u8),
    /// Fewer or more bytes than the header says.
    #[error("exchange frame of {got} bytes, but its header says {want}")]
    Length {
        /// What the header says.
        want: usize,
        /// What arrived.
        got: usize,
    },
    /// The body does not match its checksum.
    #[error("exchange frame checksum mismatch (the frame is damaged)")]
    Checksum,
    /// The body does not encode or decode as the receiver's record type.
    #[error("exchange frame body: {0}")]
    Body(#[from] bincode::Error),
}

/// A payload as it is encoded.
#[derive(Serialize, Deserialize)]
enum Wire<T> {
    Batch(Vec<T>),
    Marker(Marker),
}

/// Encodes one payload into a frame.
pub fn encode<T: Data>(payload: &Payload<T>) -> Result<Vec<u8>, FrameError> {
    #[derive(Serialize)]
    enum WireRef<'a, T> {
        Batch(&'a [T]),
        Marker(Marker),
    }
    let body = match payload {
        Payload::Batch(batch) => bincode::serialize(&WireRef::Batch(batch))?,
        Payload::Marker(m) => bincode::serialize(&WireRef::<T>::Marker(*m))?,
    };
    let len = u32::try_from(body.len()).map_err(|_| FrameError::Length {
        want: u32::MAX as usize,
        got: body.len(),
    })?;
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.extend_from_slice(MAGIC);
    frame.push(FRAME_VERSION);
    frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes one frame into a payload.
pub fn decode<T: Data>(frame: &[u8]) -> Result<Payload<T>, FrameError> {
    if frame.len() < HEADER || &frame[..3] != MAGIC {
        return Err(FrameError::Magic);
    }
    if frame[3] != FRAME_VERSION {
        return Err(FrameError::Version(frame[3]));
    }
    let word =
        |at: usize| u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    let (crc, len) = (word(4), word(8) as usize);
    let body = &frame[HEADER..];
    if body.len() != len {
        return Err(FrameError::Length {
            want: len,
            got: body.len(),
        });
    }
    if crc32fast::hash(body) != crc {
        return Err(FrameError::Checksum);
    }
    let wire: Wire<T> = bincode::Options::deserialize(
        bincode::Options::with_fixint_encoding(bincode::options()),
        body,
    )?;
    Ok(match wire {
        Wire::Batch(batch) => Payload::Batch(batch),
        Wire::Marker(m) => Payload::Marker(m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Keyed;
    use proptest::prelude::*;

    fn batch_of(p: Payload<Keyed<String, (u64, i64)>>) -> Vec<Keyed<String, (u64, i64)>> {
        match p {
            Payload::Batch(b) => b,
            Payload::Marker(m) => panic!("a marker {m:?}"),
        }
    }

    proptest! {
        #[test]
        fn batches_round_trip(records in proptest::collection::vec((any::<u32>(), any::<i64>(), ".{0,12}", any::<u64>(), any::<i64>()), 0..50)) {
            let batch: Vec<_> = records
                .into_iter()
                .map(|(kp, ts, key, a, b)| Keyed { kp, ts, key, value: (a, b) })
                .collect();
            let frame = encode(&Payload::Batch(batch.clone())).unwrap();
            prop_assert_eq!(batch_of(decode(&frame).unwrap()), batch);
        }

        #[test]
        fn any_flipped_bit_is_detected(records in proptest::collection::vec(any::<u64>(), 1..20), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut frame = encode(&Payload::Batch(records)).unwrap();
            let i = at.index(frame.len());
            frame[i] ^= 1 << bit;
            prop_assert!(decode::<u64>(&frame).is_err());
        }
    }

    #[test]
    fn markers_round_trip() {
        for m in [
            Marker::Barrier(7),
            Marker::Watermark(-3),
            Marker::Idle,
            Marker::EndOfInput,
        ] {
            let frame = encode::<u64>(&Payload::Marker(m)).unwrap();
            match decode::<u64>(&frame).unwrap() {
                Payload::Marker(back) => assert_eq!(back, m),
                Payload::Batch(_) => panic!("a batch"),
            }
        }
    }

    #[test]
    fn a_frame_of_another_version_or_type_is_refused() {
        let mut frame = encode(&Payload::Batch(vec![1u64, 2])).unwrap();
        frame[3] = 9;
        assert!(matches!(decode::<u64>(&frame), Err(FrameError::Version(9))));
        let frame = encode(&Payload::Batch(vec![1u64, 2])).unwrap();
        assert!(matches!(decode::<String>(&frame), Err(FrameError::Body(_))));
        assert!(matches!(decode::<u64>(b"nope"), Err(FrameError::Magic)));
    }
}
