//! Records as they cross a key exchange, and their timestamps.

/// The timestamp of a record that has none (the job does not use event time).
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// A record on its way to a keyed stage: its key partition (computed once, by the
/// sender), its key, and its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Keyed<K, V> {
    /// The key partition of `key`.
    pub kp: u32,
    /// The record's event timestamp in ms ([`NO_TIMESTAMP`] when the job has no event
    /// time).
    pub ts: i64,
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
}

/// A record on its way to a stage that reads a keyed stream and a broadcast stream
/// (broadcast state): a keyed record, or a broadcast record with its timestamp.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Routed<K, V, R> {
    /// A record of the keyed stream.
    Keyed(Keyed<K, V>),
    /// A record of the broadcast stream.
    Broadcast {
        /// Its timestamp.
        ts: i64,
        /// The record.
        value: R,
    },
}
