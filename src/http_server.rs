//! One axum HTTP server on a thread of its own: what the status API and the
//! `/metrics` endpoint both run on.
//!
//! Each server binds its own listener before [`HttpServer::start`] returns (so a
//! taken port is an error at start, naming the address), then serves its router
//! from a current-thread tokio runtime on a named thread, apart from the job's
//! workers, so it answers while they are busy or blocked. Dropping the server stops
//! it and frees the port.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;

/// How long a stopping server waits for requests still in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);

/// Why an HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpStartError {
    /// The address could not be bound (in use, not local, not permitted).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The bound socket, the runtime or the thread could not be set up.
    #[error("cannot start the server on {addr}: {source}")]
    Start {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A running HTTP server; dropping it stops it and frees its port.
pub struct HttpServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves `router` from a thread
    /// named `name` until dropped.
    pub fn start(name: &str, addr: SocketAddr, router: Router) -> Result<Self, HttpStartError> {
        let started = |source| HttpStartError::Start { addr, source };
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| HttpStartError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(started)?;
        listener.set_nonblocking(true).map_err(started)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(started)?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(serve(label, listener, router, stopped));
                runtime.shutdown_timeout(SHUTDOWN_GRACE);
            })
            .map_err(started)?;
        Ok(HttpServer {
            addr: bound,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the system picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Serves `router` on `listener` until `stopped` fires or the server fails.
async fn serve(
    name: String,
    listener: std::net::TcpListener,
    router: Router,
    stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(server = %name, error = %e, "HTTP server: cannot use its socket");
            return;
        }
    };
    tokio::select! {
        result = axum::serve(listener, router) => {
            if let Err(e) = result {
                tracing::error!(server = %name, error = %e, "HTTP server stopped");
            }
        }
        _ = stopped => {}
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[test]
    fn a_taken_port_is_a_bind_error_and_a_dropped_server_frees_its_port() {
        let server = HttpServer::start(
            "test-http",
            "127.0.0.1:0".parse().unwrap(),
            Router::new().route("/", get(|| async { "hi" })),
        )
        .unwrap();
        let addr = server.local_addr();
        let err = HttpServer::start("test-http", addr, Router::new())
            .err()
            .unwrap();
        assert!(matches!(err, HttpStartError::Bind { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        drop(server);
        assert!(std::net::TcpListener::bind(addr).is_ok(), "port freed");
    }
}
