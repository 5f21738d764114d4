//! The `/metrics` HTTP endpoint: an axum router on an [`HttpServer`] of its own (the
//! status API's server code, on its own listener and thread) that renders the
//! Prometheus recorder on each scrape.
//!
//! It answers `GET /metrics` (text exposition format 0.0.4), `GET /` (a pointer to
//! `/metrics`), 404 for other paths and 405 for other methods. Connections are
//! served concurrently, so a client that connects and sends nothing holds up no
//! scrape.

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::http_server::{HttpServer, HttpStartError};

/// The content type of the Prometheus text exposition format.
const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of the plain-text answers that are not metrics.
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

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
    /// The listener, its runtime or its thread could not be set up after binding.
    #[error("setting up the metrics listener on {addr}: {source}")]
    Listener {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The recorder could not be installed (another one is installed).
    #[error("installing the Prometheus recorder: {0}")]
    Recorder(String),
}

impl From<HttpStartError> for MetricsError {
    fn from(e: HttpStartError) -> Self {
        match e {
            HttpStartError::Bind { addr, source } => MetricsError::Bind { addr, source },
            HttpStartError::Start { addr, source } => MetricsError::Listener { addr, source },
        }
    }
}

/// A running `/metrics` endpoint; stopped when dropped.
pub struct MetricsServer {
    http: HttpServer,
}

impl MetricsServer {
    /// Binds `addr` and serves `handle`'s metrics there until dropped.
    pub fn start(addr: SocketAddr, handle: PrometheusHandle) -> Result<Self, MetricsError> {
        let http = HttpServer::start("weir-metrics", addr, router(handle))?;
        Ok(MetricsServer { http })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.http.local_addr()
    }
}

/// `/metrics`, `/`, and 404 for the rest (405 for other methods comes from axum).
fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    handle.run_upkeep();
                    (
                        [(header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)],
                        handle.render(),
                    )
                }
            }),
        )
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
                    "weir node: Prometheus metrics at /metrics\n",
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
                "not found\n",
            )
                .into_response()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

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
        let close = "Host: x\r\nConnection: close\r\n\r\n";
        let ok = get(server.addr(), &format!("GET /metrics HTTP/1.1\r\n{close}"));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        let root = get(server.addr(), &format!("GET / HTTP/1.1\r\n{close}"));
        assert!(root.contains("/metrics"), "{root}");
        let missing = get(server.addr(), &format!("GET /nothing HTTP/1.1\r\n{close}"));
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(server.addr(), &format!("POST /metrics HTTP/1.1\r\n{close}"));
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    }

    #[test]
    fn an_idle_connection_does_not_hold_up_a_scrape() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), local_handle()).unwrap();
        let _idle = TcpStream::connect(server.addr()).unwrap();
        let mut scrape = TcpStream::connect(server.addr()).unwrap();
        scrape
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        scrape.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
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
