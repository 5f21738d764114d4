//! Connectors: where records come from (sources) and where results go (sinks).

pub mod action_frame;
pub mod dead_letter;
pub mod generator;
pub mod kafka;
pub(crate) mod legacy_action;
pub mod lines;
pub mod sink;
pub mod sink_operator;
pub mod sinks;
pub mod source;
pub mod two_phase;
pub mod txn_file;

pub use dead_letter::{DeadLetter, DeadLetters};
pub use sink::{Sink, SinkError, SinkFactory, SinkRecovery};
pub use sink_operator::{SinkOperator, TwoPhaseSinkOperator};
pub use source::{ReadStatus, Source, SourceError, SourceReader, StopFlag};
pub use two_phase::{Committer, TwoPhaseCommitSink, TwoPhaseCommitSinkFactory};
pub use txn_file::{PartPublisher, PublishPart, TransactionalFilePart, TransactionalFileSink};
