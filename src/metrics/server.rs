//! The `/metrics` HTTP endpoint: a small HTTP/1.1 responder on its own thread that
//! renders the Prometheus recorder on each scrape.
//!
//! The exporter crate's own listener would pull in hyper and an async runtime of its
//! own for what is one GET every few seconds; this thread answers `GET /metrics`
//! (text exposition format 0.0.4), `GET /` (a pointer to `/metrics`), 404 for other
//! paths and 405 for other methods, one connection at a time, closing each after the
//! response.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound (in use, not local, not permitted).
    #[error("cannot serve metrics on {addr}: {source} (is another weir node or exporter using it? set metrics.addr / --metrics-addr)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The listening socket could not be set up after binding.
    #[error("setting up the metrics listener on {addr}: {source}")]
    Listener {
        /// The bound address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The recorder could not be installed (another one is installed).
    #[error("installing the Prometheus recorder: {0}")]
    Recorder(String),
}

/// How long the accept loop sleeps when no connection is waiting (also how long a
/// stop takes at most).
const ACCEPT_POLL: Duration = Duration::from_millis(25);
/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A running `/metrics` endpoint; stopped when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `handle`'s metrics there until dropped.
    pub fn start(addr: SocketAddr, handle: PrometheusHandle) -> Result<Self, MetricsError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsError::Listener { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| MetricsError::Listener {
                addr: bound,
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-metrics".into())
            .spawn(move || serve(listener, handle, flag))
            .map_err(|source| MetricsError::Listener {
                addr: bound,
                source,
            })?;
        Ok(MetricsServer {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, handle: PrometheusHandle, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, &handle) {
                    tracing::debug!(%peer, error = %e, "metrics scrape failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                tracing::warn!(error = %e, "accepting a metrics connection failed");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Reads one request head and answers it.
fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            handle.run_upkeep();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "weir node: Prometheus metrics at /metrics\n".to_string(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    fn local_handle() -> PrometheusHandle {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle()
    }

    #[test]
    fn answers_metrics_root_unknown_paths_and_other_methods() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), local_handle()).unwrap();
        let ok = get(server.addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        let root = get(server.addr(), "GET / HTTP/1.1\r\n\r\n");
        assert!(root.contains("/metrics"), "{root}");
        let missing = get(server.addr(), "GET /nothing HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(server.addr(), "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    }

    #[test]
    fn a_port_in_use_is_an_error_naming_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = MetricsServer::start(addr, local_handle()).err().unwrap();
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(matches!(err, MetricsError::Bind { .. }));
    }

    #[test]
    fn stops_listening_when_dropped() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), local_handle()).unwrap();
        let addr = server.addr();
        drop(server);
        assert!(TcpListener::bind(addr).is_ok(), "the port is free again");
    }
}
