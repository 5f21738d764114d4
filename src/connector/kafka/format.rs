//! What a Kafka record becomes: the record type the source emits, and the formats
//! that decode a message's value (raw bytes, UTF-8 text, JSON).
//!
//! A value a format cannot decode is not dropped and does not fail the job: the
//! reader sends it to the dead-letter output with the topic, partition, offset and
//! the format's reason.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::record::NO_TIMESTAMP;

/// One Kafka record, its value decoded by the source's format.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRecord<V> {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its Kafka timestamp in milliseconds since the Unix epoch (create time or
    /// log-append time, as the topic is configured), when it has one.
    pub timestamp: Option<i64>,
    /// Its key, as bytes, when it has one.
    pub key: Option<Vec<u8>>,
    /// Its value, decoded.
    pub value: V,
}

impl<V> KafkaRecord<V> {
    /// The Kafka timestamp in milliseconds for event time, or
    /// [`NO_TIMESTAMP`] when the record has none: made to be the timestamp function
    /// of a [`WatermarkStrategy`](crate::time::WatermarkStrategy), e.g.
    /// `WatermarkStrategy::bounded_out_of_orderness(bound, |r: &KafkaRecord<String>| r.event_time())`.
    pub fn event_time(&self) -> i64 {
        self.timestamp.unwrap_or(NO_TIMESTAMP)
    }
}

/// Decodes a message's value into what a [`KafkaRecord`] carries.
pub trait KafkaFormat: Clone + Send + 'static {
    /// The decoded value.
    type Value: Send + 'static;
    /// A short name for the source's name and dead letters ("bytes", "text", "json").
    fn name(&self) -> &'static str;
    /// Decodes `payload` (`None` for a message without a value, a tombstone), or
    /// says why it cannot.
    fn decode(&self, payload: Option<&[u8]>) -> Result<Self::Value, String>;
}

/// The value as raw bytes (`None` for a tombstone): every message decodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl KafkaFormat for RawBytes {
    type Value = Option<Vec<u8>>;
    fn name(&self) -> &'static str {
        "bytes"
    }
    fn decode(&self, payload: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
        Ok(payload.map(<[u8]>::to_vec))
    }
}

/// The value as UTF-8 text. Invalid UTF-8 and tombstones are dead letters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Text;

impl KafkaFormat for Utf8Text {
    type Value = String;
    fn name(&self) -> &'static str {
        "text"
    }
    fn decode(&self, payload: Option<&[u8]>) -> Result<String, String> {
        let bytes = payload.ok_or_else(|| "the message has no value (a tombstone)".to_string())?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("not valid UTF-8: {e}"))
    }
}

/// The value as JSON, deserialised into `T`. A value that is not JSON, or not a
/// `T`, and tombstones are dead letters.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// JSON into `T`.
    pub fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Json::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Json::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned + Send + 'static> KafkaFormat for Json<T> {
    type Value = T;
    fn name(&self) -> &'static str {
        "json"
    }
    fn decode(&self, payload: Option<&[u8]>) -> Result<T, String> {
        let bytes = payload.ok_or_else(|| "the message has no value (a tombstone)".to_string())?;
        serde_json::from_slice(bytes)
            .map_err(|e| format!("not valid JSON for {}: {e}", short_type_name::<T>()))
    }
}

/// The type's name without its module path, for readable reasons.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u64,
    }

    #[test]
    fn formats_decode_or_say_why_not() {
        assert_eq!(RawBytes.decode(Some(b"\xff")).unwrap(), Some(vec![0xff]));
        assert_eq!(RawBytes.decode(None).unwrap(), None);
        assert_eq!(Utf8Text.decode(Some(b"hi")).unwrap(), "hi");
        assert!(Utf8Text
            .decode(Some(b"\xff"))
            .unwrap_err()
            .contains("UTF-8"));
        assert!(Utf8Text.decode(None).unwrap_err().contains("tombstone"));
        let json = Json::<Order>::new();
        assert_eq!(json.decode(Some(br#"{"id":4}"#)).unwrap(), Order { id: 4 });
        let err = json.decode(Some(b"{\"id\":\"x\"}")).unwrap_err();
        assert!(err.contains("not valid JSON for Order"), "{err}");
    }

    #[test]
    fn event_time_is_the_kafka_timestamp_or_none() {
        let mut r = KafkaRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp: Some(5),
            key: None,
            value: (),
        };
        assert_eq!(r.event_time(), 5);
        r.timestamp = None;
        assert_eq!(r.event_time(), NO_TIMESTAMP);
    }
}
