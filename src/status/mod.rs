//! The node's status API and status page.
//!
//! A running node publishes what its job is doing into a [`StatusBoard`]: the stage
//! graph, per-stage and per-partition counters, throughput and backpressure,
//! watermarks, the checkpoint history, restarts and savepoints. The
//! [`StatusServer`] serves that board over HTTP (`/healthz`, `/readyz`,
//! `/api/jobs`, a savepoint trigger) together with one HTML page that renders it
//! live. `docs/operations.md` is the reference of the endpoints.
//!
//! The board is written by the node's watch loop (every tick, at most every
//! 100 ms) and read by the server; neither waits on the other for longer than a
//! copy of the job's status. Checkpoint figures are not copied onto it: it reads
//! the job's `CheckpointStats` when asked, the record the checkpoint metrics are
//! recorded from, so the API is never behind Prometheus.

pub mod auth;
mod board;
mod error;
pub mod job_control;
mod model;
mod page;
mod sampler;
mod server;

pub(crate) use board::AttemptFeed;
pub use board::{JobBoard, QueriedState, StatusBoard};
pub use error::StatusError;
pub use model::{
    CheckpointRecord, CheckpointStatus, Edge, EdgeKind, JobState, JobStatus, PartitionStatus,
    SavepointRecord, StageKind, StageStatus,
};
pub use sampler::{Sampler, BACKPRESSURE_HIGH, BACKPRESSURE_LOW};
pub use server::StatusServer;
