//! Why the Kafka sink failed: each error says what it was doing and where.

use std::path::PathBuf;

use super::frame::FrameError;

/// An error of the Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// A call to the Kafka client (or another transactional log) failed.
    #[error("kafka sink: {what}: {error}")]
    Client {
        /// What was being done (e.g. "committing the transaction of epoch 7 of s-p0-s1").
        what: String,
        /// The client's error.
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record was not acknowledged by the broker.
    #[error("kafka sink: delivery to {topic} failed: {reason}")]
    Delivery {
        /// The topic.
        topic: String,
        /// The first delivery error.
        reason: String,
    },
    /// A staged copy could not be written, read or deleted.
    #[error("kafka sink: {what} {}: {source}", path.display())]
    Staging {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A staged copy or a marker is damaged or incomplete.
    #[error("kafka sink: {what}: {error}")]
    Corrupt {
        /// Which frame.
        what: String,
        /// What is wrong with it.
        #[source]
        error: FrameError,
    },
    /// A redo cannot decide yet whether an epoch's transaction committed: the
    /// marker partition holds a transaction that has not ended. The sink never
    /// reads that as "not committed"; the job fails and its restart strategy tries
    /// again.
    #[error(
        "kafka sink: cannot tell yet whether epoch {epoch} of {transactional_id} committed: \
         the last stable offset of {topic}/{partition} stayed at {stable}, short of {high} \
         (one past its marker record), for {waited_ms} ms: its transaction, or an earlier \
         one there, has not ended"
    )]
    Unsettled {
        /// The transactional id whose epoch is being redone.
        transactional_id: String,
        /// The epoch.
        epoch: u64,
        /// The marker topic.
        topic: String,
        /// The marker partition.
        partition: i32,
        /// Its last stable offset when the wait gave up.
        stable: i64,
        /// The offset it had to reach: one past the id's newest marker record.
        high: i64,
        /// How long the redo waited.
        waited_ms: u64,
    },
    /// The sink is configured in a way that cannot work, or its state contradicts
    /// itself (what and why in the message).
    #[error("kafka sink: {0}")]
    Invalid(String),
}

impl KafkaSinkError {
    /// A client error doing `what`.
    pub fn client(
        what: impl Into<String>,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        KafkaSinkError::Client {
            what: what.into(),
            error: error.into(),
        }
    }
}
