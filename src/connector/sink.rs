//! The sink API.

/// Why a sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error, with what was being written.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure.
    #[error("{0}")]
    Failed(String),
}

/// One partition's sink: receives the records of one partition actor.
pub trait Sink<T>: Send + 'static {
    /// Writes one record.
    fn write(&mut self, item: T) -> Result<(), SinkError>;
    /// The input has ended: make everything written visible.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Makes the sink of each partition of the last stage.
pub trait SinkFactory<T>: Send + 'static {
    /// The per-partition sink.
    type Sink: Sink<T>;
    /// A short name for the stage name.
    fn name(&self) -> String;
    /// The sink of partition `partition` of `parallelism`.
    fn create(&self, partition: u32, parallelism: u32) -> Result<Self::Sink, SinkError>;
}
