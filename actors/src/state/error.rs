//! The error type of the state store.

use std::path::PathBuf;

/// Everything that can go wrong in the state store.
///
/// Each variant names what was being touched (stage, state name, key partition or
/// path), so an error that reaches a supervisor or a log line is actionable without a
/// backtrace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The sled database could not be opened at `path`.
    #[error("cannot open the state store at {path}: {source}")]
    Open {
        /// The sled database directory.
        path: PathBuf,
        /// What sled reported.
        #[source]
        source: sled::Error,
    },

    /// A filesystem operation outside sled failed.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// sled failed (I/O error, or sled's own corruption report) during an operation.
    #[error("sled failed while {context}: {source}")]
    Sled {
        /// What the store was doing, naming the stage, state and key partition.
        context: String,
        /// What sled reported.
        #[source]
        source: sled::Error,
    },

    /// Stored bytes fail their integrity check (unknown format version, bad checksum,
    /// truncated record, malformed sled key). Never decoded silently.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was corrupt: stage, key partition and state name.
        what: String,
        /// Why it was judged corrupt.
        reason: String,
    },

    /// Stored bytes passed their checksum but do not decode as the registered type:
    /// usually a state whose type changed without a migration.
    #[error("cannot decode state `{name}` of stage `{stage}` in key partition {kp}: {source}")]
    Decode {
        /// The stage (operator) owning the state.
        stage: String,
        /// The state's descriptor name.
        name: String,
        /// The key partition of the entry.
        kp: u32,
        /// What bincode reported.
        #[source]
        source: bincode::Error,
    },

    /// A key or value could not be encoded with bincode.
    #[error("cannot encode state `{name}` of stage `{stage}` in key partition {kp}: {source}")]
    Encode {
        /// The stage (operator) owning the state.
        stage: String,
        /// The state's descriptor name.
        name: String,
        /// The key partition of the entry.
        kp: u32,
        /// What bincode reported.
        #[source]
        source: bincode::Error,
    },

    /// A descriptor clashes with one already registered on the same [`KeyedState`]:
    /// another name with the same state id (CRC-32 of the name), or the same name with
    /// another kind, type or TTL.
    ///
    /// [`KeyedState`]: super::KeyedState
    #[error("state `{name}` of stage `{stage}` conflicts with a registered state: {reason}")]
    DescriptorConflict {
        /// The stage (operator) owning the state.
        stage: String,
        /// The name being registered.
        name: String,
        /// What it conflicts with.
        reason: String,
    },

    /// A descriptor is unusable on its own (empty name, zero TTL).
    #[error("invalid state descriptor `{name}` for stage `{stage}`: {reason}")]
    InvalidDescriptor {
        /// The stage (operator) owning the state.
        stage: String,
        /// The descriptor's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// [`StateStore::keyed`](super::StateStore::keyed) was called with an empty stage
    /// name or a reversed key partition range.
    #[error("invalid keyed state request for stage `{stage}`: {reason}")]
    InvalidRequest {
        /// The stage name given.
        stage: String,
        /// What is wrong with the request.
        reason: String,
    },
}
