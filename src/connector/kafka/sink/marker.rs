//! Commit markers: the record each exactly-once transaction writes into the marker
//! topic, so a redo can tell whether the transaction of an epoch committed.
//!
//! A marker's key is its transactional id (so a compacted marker topic keeps the
//! newest marker of each id) and its value a [`frame`](super::frame) holding a
//! [`CommitMarker`].

use serde::{Deserialize, Serialize};

use super::error::KafkaSinkError;
use super::frame::{self, FrameKind};
use super::output::KafkaOutput;

/// What a marker says: this transactional id's transaction for `epoch` of sink
/// partition `partition` of sink `sink` holds the partition's output of that epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMarker {
    /// The sink's id.
    pub sink: String,
    /// The sink partition.
    pub partition: u32,
    /// The epoch whose output the transaction holds.
    pub epoch: u64,
    /// The transactional id of the producer.
    pub transactional_id: String,
}

impl CommitMarker {
    /// The marker-topic record: keyed by the transactional id, the marker framed as
    /// the value, written to `marker_partition`.
    pub fn record(&self, marker_partition: i32) -> Result<KafkaOutput, KafkaSinkError> {
        let value =
            frame::encode(FrameKind::Marker, self).map_err(|error| KafkaSinkError::Corrupt {
                what: format!("encoding the commit marker of epoch {}", self.epoch),
                error,
            })?;
        Ok(KafkaOutput {
            key: Some(self.transactional_id.as_bytes().to_vec()),
            value: Some(value),
            partition: Some(marker_partition),
            ..KafkaOutput::default()
        })
    }

    /// Decodes a marker-topic record's value; `topic` and `offset` name it in an
    /// error.
    pub fn decode(value: &[u8], where_: &str) -> Result<Self, KafkaSinkError> {
        frame::decode(&[FrameKind::Marker], value)
            .map(|(_, marker, _)| marker)
            .map_err(|error| KafkaSinkError::Corrupt {
                what: format!("the commit marker at {where_}"),
                error,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_record_round_trips_and_is_keyed_by_its_transactional_id() {
        let marker = CommitMarker {
            sink: "s".into(),
            partition: 3,
            epoch: 42,
            transactional_id: "s-p3-s1".into(),
        };
        let record = marker.record(3).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"s-p3-s1"[..]));
        assert_eq!(record.partition, Some(3));
        let value = record.value.unwrap();
        assert_eq!(CommitMarker::decode(&value, "here").unwrap(), marker);
        let mut bad = value.clone();
        bad[8] ^= 1;
        let err = CommitMarker::decode(&bad, "markers/3@17")
            .unwrap_err()
            .to_string();
        assert!(err.contains("markers/3@17"), "{err}");
    }
}
