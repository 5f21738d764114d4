//! Jobs: the typed builder, the plan of stages it produces, the tasks each partition
//! actor runs, and the node that runs a job to completion.

pub mod builder;
pub mod commits;
pub mod error;
pub mod node;
pub mod operator_terminal;
pub mod options;
#[doc(hidden)]
pub mod plan;
pub(crate) mod poison;
pub mod progress;
pub mod recovery;
pub mod report;
pub mod restart;
pub mod sink_stage;
pub(crate) mod split_snapshot;
pub(crate) mod tasks;
pub mod terminal;

pub use builder::{Job, JobBuilder, KeyedStream, Stream};
pub use error::JobError;
pub use node::{Node, RunControl, SavepointCommand};
pub use options::{CheckpointOptions, EngineOptions};
pub use report::{CheckpointSummary, JobReport, StageSummary};
pub use restart::{PoisonPolicy, PoisonTracker, RestartDecision, RestartStrategy, RestartTracker};
