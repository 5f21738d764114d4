//! Connectors: where records come from (sources) and where results go (sinks).

pub mod dead_letter;
pub mod generator;
pub mod kafka;
pub mod lines;
pub mod sink;
pub mod sinks;
pub mod source;
pub mod txn_file;

pub use dead_letter::{DeadLetter, DeadLetters};
pub use sink::{CommitAction, Sink, SinkError, SinkFactory, SinkRecovery};
pub use source::{ReadStatus, Source, SourceError, SourceReader, StopFlag};
pub use txn_file::{TransactionalFilePart, TransactionalFileSink};
