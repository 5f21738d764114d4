//! Why the Kafka source failed: each error says what it was doing, for which topic
//! or partition, so a failed job's message points at the cause.

/// An error of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// A call to the Kafka client failed.
    #[error("kafka source {source_name}: {what}: {error}")]
    Client {
        /// The source (its name, with the topics it reads).
        source_name: String,
        /// What was being done (e.g. "fetching metadata of topic orders").
        what: String,
        /// The client's error (boxed: it is large).
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// A snapshot position could not be decoded.
    #[error("kafka source position: {0}")]
    Position(String),
    /// The source was configured in a way that cannot work.
    #[error("kafka source configuration: {0}")]
    Config(String),
}
