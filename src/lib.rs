//! weir: a distributed, stateful stream processor built on the actor model.
//!
//! A job is a graph of stages from sources through operators to sinks, built with the
//! typed [`Job`] builder and run by a [`Node`]. Each stage runs as partition actors on
//! the kernel of [`weir_actors`]: bounded mailboxes carry record batches and in-band
//! markers, keyed state lives in sled behind a write-back cache, and a supervision
//! tree turns any operator panic into a clear job failure.
//!
//! The vocabulary (job, stage, key partition, partition actor, ring, epoch, snapshot,
//! savepoint) is that of `DESIGN.md`; `docs/architecture.md` maps it to modules.

pub mod app;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connector;
pub mod console;
pub mod exchange;
pub mod graph;
pub mod http_server;
pub mod job;
pub mod jobs;
pub mod join;
pub mod metrics;
pub mod net;
pub mod operator;
pub mod partition;
pub mod record;
pub mod snapshot_store;
pub mod status;
pub mod time;
pub mod window;

pub use job::{EngineOptions, Job, JobError, JobReport, Node};
pub use operator::Operator;

/// The Rust samples of the user guides under `docs/`, compiled and run by
/// `cargo test --doc` so that a sample cannot drift from the API it shows.
#[cfg(doctest)]
pub mod doc_samples {
    #[doc = include_str!("../docs/operator-api.md")]
    pub struct OperatorApi;

    #[doc = include_str!("../docs/event-time.md")]
    pub struct EventTime;

    #[doc = include_str!("../docs/kafka.md")]
    pub struct Kafka;

    #[doc = include_str!("../docs/cluster.md")]
    pub struct Cluster;
}

/// Everything a job author needs, in one import.
pub mod prelude {
    pub use crate::connector::generator::{SensorReadings, W1Lines, W2Event, W2Events};
    pub use crate::connector::lines::LineSource;
    pub use crate::connector::sinks::{
        tab_separated, CollectSink, CountingSink, FileSink, StdoutSink,
    };
    pub use crate::connector::txn_file::{read_committed, TransactionalFileSink};
    pub use crate::connector::{DeadLetters, Sink, SinkFactory, Source, SourceReader, StopFlag};
    pub use crate::graph::fanout::Shared;
    pub use crate::job::node::RunControl;
    pub use crate::job::node::SavepointCommand;
    pub use crate::job::restart::RestartStrategy;
    pub use crate::job::{EngineOptions, Job, JobError, JobReport, Node};
    pub use crate::operator::{
        AggregateFn, BroadcastContext, BroadcastProcess, Chain, ChainExt, Collector, Either,
        Emitter, Fused, Key, KeyedContext, KeyedProcess, NoKey, OpenContext, Operator,
        OperatorError, OperatorStateReader, OperatorStateWriter, OutputTag,
    };
    pub use crate::record::NO_TIMESTAMP;
    pub use crate::time::WatermarkStrategy;
    pub use weir_actors::state::{ListHandle, MapHandle, StateDescriptor, ValueHandle};
}
