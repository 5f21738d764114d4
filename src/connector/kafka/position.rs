//! A split's position in Kafka, as the bytes stored in a snapshot.
//!
//! The position is the map {(topic, partition) -> next offset to read} of the
//! partitions the split has assigned, plus whether the split had started (made its
//! first assignment). The engine stores these bytes in the split's snapshot record,
//! which it versions and checksums; the bytes carry their own version too, so a
//! later release can change the encoding and still read old snapshots, and an
//! unknown or corrupt encoding is an error rather than a silent misread.
//!
//! Layout: one version byte ([`POSITION_VERSION`]), then bincode 1 (fixed-width
//! little-endian integers) of `(started: bool, entries: Vec<(String, i32, i64)>)`,
//! entries sorted by (topic, partition). Nothing may follow.

use std::collections::BTreeMap;

use super::error::KafkaSourceError;

/// The version of the position encoding written by this release.
pub const POSITION_VERSION: u8 = 1;

/// Where one split of a Kafka source is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaPosition {
    /// Whether the split had made its first assignment. A partition absent from
    /// `offsets` of a started split appeared after the start (found by discovery),
    /// so it is read from its earliest offset; one of a split that had not started
    /// starts per the source's start mode.
    pub started: bool,
    /// The next offset to read, per (topic, partition).
    pub offsets: BTreeMap<(String, i32), i64>,
}

impl KafkaPosition {
    /// The bytes of this position (see the module docs for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let entries: Vec<(&str, i32, i64)> = self
            .offsets
            .iter()
            .map(|((t, p), o)| (t.as_str(), *p, *o))
            .collect();
        let mut out = vec![POSITION_VERSION];
        // Serialising strings and integers into a Vec cannot fail.
        match bincode::serialize(&(self.started, entries)) {
            Ok(body) => out.extend_from_slice(&body),
            Err(e) => unreachable!("bincode of plain data into memory failed: {e}"),
        }
        out
    }

    /// Reads a position made by [`KafkaPosition::encode`]; empty, unknown-version,
    /// truncated, over-long or otherwise corrupt input is an error naming the cause.
    pub fn decode(bytes: &[u8]) -> Result<Self, KafkaSourceError> {
        let bad = |why: String| KafkaSourceError::Position(why);
        let (&version, body) = bytes
            .split_first()
            .ok_or_else(|| bad("empty position (expected a version byte)".into()))?;
        if version != POSITION_VERSION {
            return Err(bad(format!(
                "unknown position version {version} (this release reads version {POSITION_VERSION})"
            )));
        }
        let (started, entries): (bool, Vec<(String, i32, i64)>) = bincode::deserialize(body)
            .map_err(|e| bad(format!("corrupt position of {} bytes: {e}", bytes.len())))?;
        let used = bincode::serialized_size(&(started, &entries))
            .map_err(|e| bad(format!("corrupt position: {e}")))?;
        if used != body.len() as u64 {
            return Err(bad(format!(
                "corrupt position: {} bytes follow its end",
                body.len() as u64 - used.min(body.len() as u64)
            )));
        }
        let mut offsets = BTreeMap::new();
        for (topic, partition, offset) in entries {
            if partition < 0 || offset < 0 {
                return Err(bad(format!(
                    "corrupt position: topic {topic} partition {partition} offset {offset}"
                )));
            }
            if offsets.insert((topic.clone(), partition), offset).is_some() {
                return Err(bad(format!(
                    "corrupt position: topic {topic} partition {partition} appears twice"
                )));
            }
        }
        Ok(KafkaPosition { started, offsets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> KafkaPosition {
        let mut offsets = BTreeMap::new();
        offsets.insert(("orders".to_string(), 0), 17);
        offsets.insert(("orders".to_string(), 3), 0);
        offsets.insert(("payments".to_string(), 1), 9_000_000_000);
        KafkaPosition {
            started: true,
            offsets,
        }
    }

    #[test]
    fn the_encoding_starts_with_its_version() {
        assert_eq!(sample().encode()[0], POSITION_VERSION);
    }

    #[test]
    fn empty_and_unknown_versions_are_clear_errors() {
        let err = KafkaPosition::decode(&[]).unwrap_err().to_string();
        assert!(err.contains("empty position"), "{err}");
        let mut bytes = sample().encode();
        bytes[0] = 9;
        let err = KafkaPosition::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("unknown position version 9"), "{err}");
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let bytes = sample().encode();
        for cut in 1..bytes.len() {
            let err = KafkaPosition::decode(&bytes[..cut])
                .unwrap_err()
                .to_string();
            assert!(err.contains("corrupt position"), "cut {cut}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = KafkaPosition::decode(&longer).unwrap_err().to_string();
        assert!(err.contains("1 bytes follow"), "{err}");
    }

    #[test]
    fn negative_offsets_and_duplicates_are_errors() {
        let mut body = vec![POSITION_VERSION];
        body.extend(bincode::serialize(&(true, vec![("t".to_string(), 0i32, -5i64)])).unwrap());
        assert!(KafkaPosition::decode(&body).is_err());
        let mut body = vec![POSITION_VERSION];
        let twice = vec![("t".to_string(), 0i32, 1i64), ("t".to_string(), 0, 2)];
        body.extend(bincode::serialize(&(true, twice)).unwrap());
        let err = KafkaPosition::decode(&body).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    proptest! {
        #[test]
        fn positions_round_trip(
            started in any::<bool>(),
            entries in proptest::collection::btree_map(
                ("[a-zA-Z0-9._-]{1,20}", 0i32..10_000), 0i64..i64::MAX, 0..50),
        ) {
            let position = KafkaPosition { started, offsets: entries };
            prop_assert_eq!(KafkaPosition::decode(&position.encode()).unwrap(), position);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = KafkaPosition::decode(&bytes);
        }
    }
}
