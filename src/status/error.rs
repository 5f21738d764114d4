//! Errors of the status server and of requests made through it.

use std::net::SocketAddr;

/// What can go wrong starting the status server or serving a request.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The server's address could not be bound.
    #[error("cannot serve the status API on {addr}: {source} (set http.addr / --http-addr, or http.enabled = false / --no-http)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The API's access rule could not be set up (no token beyond loopback, an
    /// unreadable or too short token).
    #[error(transparent)]
    Auth(#[from] super::auth::AuthError),
    /// The server's thread or runtime could not be started.
    #[error("cannot start the status server: {0}")]
    Start(std::io::Error),
    /// No job with this name runs on the node.
    #[error("no job named '{0}' on this node")]
    NoSuchJob(String),
    /// The job is not running (finished, failed, restarting, or not started yet).
    #[error("job '{job}' is {state}, not running")]
    NotRunning {
        /// The job.
        job: String,
        /// Its state.
        state: String,
    },
    /// The job has no stage with this index.
    #[error("job '{job}' has no stage {stage}")]
    NoSuchStage {
        /// The job.
        job: String,
        /// The stage index asked for.
        stage: u32,
    },
    /// A state query that cannot be answered as asked (unknown state, a key that
    /// does not decode).
    #[error("{0}")]
    BadQuery(String),
    /// A state query that cannot be answered now (recovery, a busy actor).
    #[error("state not available: {0}")]
    QueryUnavailable(String),
    /// The job takes no savepoint requests (nothing listens for them).
    #[error("job '{0}' takes no savepoint requests")]
    NoSavepoints(String),
}
