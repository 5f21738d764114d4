//! Records as they cross a key exchange.

/// A record on its way to a keyed stage: its key partition (computed once, by the
/// sender), its key, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed<K, V> {
    /// The key partition of `key`.
    pub kp: u32,
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
}
