//! What a source split's snapshot holds, and its versioned encoding (inside a
//! checksummed snapshot chunk).

use crate::time::LaneId;

/// A source split's state at a barrier.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SplitSnapshot {
    /// The reader's position (`None` once exhausted).
    pub position: Option<Vec<u8>>,
    /// Whether the split was read to its end.
    pub exhausted: bool,
    /// The split's highest timestamp for watermark purposes, so the watermark
    /// resumes where it was (for a split with lanes: the minimum over its non-idle
    /// lanes, as it was last computed).
    pub max_ts: i64,
    /// Each lane's highest timestamp (empty for a reader without lanes), so each
    /// lane holds the split back from where it was, as in a run without the restart.
    pub lanes: Vec<(LaneId, i64)>,
}

/// The current encoding: version 2 (version 1 had no lanes and is still read).
pub(crate) const SPLIT_SNAPSHOT_VERSION: u8 = 2;

/// Version 1 of the encoding (before lanes).
#[derive(serde::Serialize, serde::Deserialize)]
struct V1 {
    version: u8,
    position: Option<Vec<u8>>,
    exhausted: bool,
    max_ts: i64,
}

/// Version 2 of the encoding.
#[derive(serde::Serialize, serde::Deserialize)]
struct V2 {
    version: u8,
    position: Option<Vec<u8>>,
    exhausted: bool,
    max_ts: i64,
    lanes: Vec<(LaneId, i64)>,
}

/// Why a split snapshot could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SplitSnapshotError {
    /// The bytes are not a split snapshot of a known version.
    #[error("unknown split snapshot version {0}")]
    Version(u8),
    /// The chunk is empty.
    #[error("empty split snapshot")]
    Empty,
    /// The bytes do not decode.
    #[error("undecodable split snapshot (version {version}): {source}")]
    Decode {
        /// The version the first byte named.
        version: u8,
        /// The decoder's error.
        #[source]
        source: bincode::Error,
    },
}

impl SplitSnapshot {
    /// Encodes in the current version.
    pub fn encode(&self) -> Result<Vec<u8>, bincode::Error> {
        bincode::serialize(&V2 {
            version: SPLIT_SNAPSHOT_VERSION,
            position: self.position.clone(),
            exhausted: self.exhausted,
            max_ts: self.max_ts,
            lanes: self.lanes.clone(),
        })
    }

    /// Decodes any known version (its first byte says which).
    pub fn decode(bytes: &[u8]) -> Result<Self, SplitSnapshotError> {
        let version = *bytes.first().ok_or(SplitSnapshotError::Empty)?;
        let fail = |source| SplitSnapshotError::Decode { version, source };
        match version {
            1 => {
                let v: V1 = bincode::deserialize(bytes).map_err(fail)?;
                Ok(SplitSnapshot {
                    position: v.position,
                    exhausted: v.exhausted,
                    max_ts: v.max_ts,
                    lanes: Vec::new(),
                })
            }
            SPLIT_SNAPSHOT_VERSION => {
                let v: V2 = bincode::deserialize(bytes).map_err(fail)?;
                Ok(SplitSnapshot {
                    position: v.position,
                    exhausted: v.exhausted,
                    max_ts: v.max_ts,
                    lanes: v.lanes,
                })
            }
            other => Err(SplitSnapshotError::Version(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn version_1_snapshots_are_still_read() {
        let old = bincode::serialize(&V1 {
            version: 1,
            position: Some(vec![1, 2]),
            exhausted: false,
            max_ts: 77,
        })
        .unwrap();
        let got = SplitSnapshot::decode(&old).unwrap();
        assert_eq!(got.position, Some(vec![1, 2]));
        assert_eq!(got.max_ts, 77);
        assert!(got.lanes.is_empty());
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors() {
        assert!(matches!(
            SplitSnapshot::decode(&[9, 0, 0]),
            Err(SplitSnapshotError::Version(9))
        ));
        assert!(matches!(
            SplitSnapshot::decode(&[]),
            Err(SplitSnapshotError::Empty)
        ));
        assert!(matches!(
            SplitSnapshot::decode(&[2, 1]),
            Err(SplitSnapshotError::Decode { version: 2, .. })
        ));
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(
            position in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            exhausted in any::<bool>(),
            max_ts in any::<i64>(),
            lanes in proptest::collection::vec((any::<u64>(), any::<i64>()), 0..8),
        ) {
            let s = SplitSnapshot { position, exhausted, max_ts, lanes };
            prop_assert_eq!(SplitSnapshot::decode(&s.encode().unwrap()).unwrap(), s);
        }
    }
}
