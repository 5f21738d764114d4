//! weir's actor kernel.
//!
//! Everything a stream processor needs from its runtime and nothing about streams
//! themselves: partition actors on a fixed pool of actix worker threads, bounded
//! mailboxes whose waits are the backpressure, in-band control markers, the
//! supervision tree (job -> stage -> partition actors) that turns a panic into a clear
//! job failure, and the sled-backed keyed state store.
//!
//! The kernel knows nothing of Kafka, windows or the network; the `weir` crate builds
//! the stream processor on top of it.

pub mod channel;
pub mod checkpoint;
pub mod mailbox;
pub mod marker;
pub mod message;
pub mod outbox;
pub mod panic;
pub mod partition_actor;
pub mod query;
pub mod runtime;
pub mod side;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod supervisor;
pub mod task;
pub mod workers;

pub use channel::{Channel, Sender};
pub use mailbox::{Mailbox, MailboxClosed, MailboxGate, TrySendError};
pub use marker::{Marker, Progress, WatermarkTracker, NO_WATERMARK};
pub use message::{Deliver, Payload};
pub use outbox::{Outbox, PendingSends};
pub use partition_actor::{ActorId, PartitionActor, Stop};
pub use query::{QueryAnswer, QueryState, StateQuery};
pub use side::{ForwardSide, SideOutput};
pub use stats::{ActorStats, StatsSnapshot};
pub use supervisor::{
    ActorEvent, ActorReport, JobFailure, JobOutcome, JobSupervisor, StageSupervisor,
};
pub use task::{Pumped, Task, TaskError};
pub use workers::WorkerPool;
