//! The status server: the HTTP endpoints over a [`StatusBoard`], on an
//! [`HttpServer`] thread of its own so that it answers while the job's workers are
//! busy or blocked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::http_server::{HttpServer, HttpStartError};

use super::auth::{check_exposure, require_token, ApiToken};
use super::board::StatusBoard;
use super::error::StatusError;
use super::job_control::{mutating_routes, reading_routes, JobControl};
use super::model::JobState;
use super::page::PAGE;

/// How long a savepoint request waits for the savepoint before answering 504 (the
/// coordinator itself gives up after the checkpoint timeout and says so).
const SAVEPOINT_WAIT: Duration = Duration::from_secs(600);

/// A running status server; dropping it stops it.
pub struct StatusServer {
    http: HttpServer,
}

impl StatusServer {
    /// Binds `addr` (port 0 picks a free port) and serves `board` from a thread of
    /// its own. Binding happens before this returns, so a taken port is an error
    /// here, not later. With `token`, the mutating endpoints take it as a bearer
    /// token; an `addr` beyond loopback without one is refused before anything is
    /// bound ([`auth`](super::auth)).
    pub fn start(
        addr: SocketAddr,
        board: StatusBoard,
        token: Option<ApiToken>,
    ) -> Result<Self, StatusError> {
        Self::start_with_jobs(addr, board, token, None)
    }

    /// [`StatusServer::start`] for a node that runs jobs submitted to it: with
    /// `jobs`, the API also lists the job definitions (`GET /api/definitions`),
    /// submits a job (`POST /api/jobs`) and cancels one (`DELETE /api/jobs/{job}`);
    /// the last two take the token like the savepoint trigger.
    pub fn start_with_jobs(
        addr: SocketAddr,
        board: StatusBoard,
        token: Option<ApiToken>,
        jobs: Option<Arc<dyn JobControl>>,
    ) -> Result<Self, StatusError> {
        Self::start_node(addr, board, token, jobs, None)
    }

    /// [`StatusServer::start_with_jobs`] that also shows what the node sees of its
    /// cluster (`GET /api/cluster`: members, leader, the ring).
    pub fn start_node(
        addr: SocketAddr,
        board: StatusBoard,
        token: Option<ApiToken>,
        jobs: Option<Arc<dyn JobControl>>,
        cluster: Option<crate::cluster::agent::SharedView>,
    ) -> Result<Self, StatusError> {
        check_exposure(addr, token.as_ref())?;
        let mut routes = router(board, token, jobs);
        if let Some(view) = cluster {
            routes = routes.route(
                "/api/cluster",
                get(move || {
                    let view = view.clone();
                    async move {
                        let v = view
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        Json(v)
                    }
                }),
            );
        }
        let http = HttpServer::start("weir-status", addr, routes).map_err(|e| match e {
            HttpStartError::Bind { addr, source } => StatusError::Bind { addr, source },
            HttpStartError::Start { source, .. } => StatusError::Start(source),
        })?;
        tracing::info!(addr = %http.local_addr(), "status API and page served");
        Ok(StatusServer { http })
    }

    /// The address it listens on (with the port the system picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }
}

/// Every route: the mutating ones behind the token check.
fn router(
    board: StatusBoard,
    token: Option<ApiToken>,
    control: Option<Arc<dyn JobControl>>,
) -> Router {
    let mut mutating = Router::new().route("/api/jobs/{job}/savepoints", post(savepoint));
    let mut reading = Router::new();
    if let Some(control) = control {
        mutating = mutating.merge(mutating_routes(control.clone()));
        reading = reading.merge(reading_routes(control));
    }
    let mutating = mutating.route_layer(axum::middleware::from_fn(move |request, next| {
        require_token(token.clone(), request, next)
    }));
    Router::new()
        .merge(reading)
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{job}", get(job))
        .merge(mutating)
        .route(
            "/api/jobs/{job}/stages/{stage}/state/{state}",
            get(query_state),
        )
        .with_state(board)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Liveness: the process serves requests.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: a job runs with all its actors (not starting, restarting or ended).
async fn readyz(State(board): State<StatusBoard>) -> Response {
    match board.current() {
        Some(j) if j.state == JobState::Running => (
            StatusCode::OK,
            Json(json!({ "ready": true, "job": j.name, "state": j.state })),
        )
            .into_response(),
        Some(j) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ready": false,
                "job": j.name,
                "state": j.state,
                "reason": format!("job '{}' is {}", j.name, j.state.as_str()),
            })),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": "no job started yet" })),
        )
            .into_response(),
    }
}

async fn jobs(State(board): State<StatusBoard>) -> Json<serde_json::Value> {
    let jobs = board.jobs();
    Json(json!({ "jobs": jobs }))
}

async fn job(State(board): State<StatusBoard>, Path(name): Path<String>) -> Response {
    match board.job(&name) {
        Some(j) => Json(j).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &StatusError::NoSuchJob(name).to_string(),
        ),
    }
}

/// Query of the savepoint trigger.
#[derive(Debug, Deserialize)]
struct SavepointQuery {
    /// Stop the job once the savepoint is taken.
    #[serde(default)]
    stop: bool,
}

/// Takes a savepoint and answers its path once it is complete.
async fn savepoint(
    State(board): State<StatusBoard>,
    Path(name): Path<String>,
    Query(query): Query<SavepointQuery>,
) -> Response {
    let reply = match board.request_savepoint(&name, query.stop) {
        Ok(rx) => rx,
        Err(e @ StatusError::NoSuchJob(_)) => return error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => return error(StatusCode::CONFLICT, &e.to_string()),
    };
    let waited = tokio::task::spawn_blocking(move || reply.recv_timeout(SAVEPOINT_WAIT)).await;
    match waited {
        Ok(Ok(Ok(path))) => (
            StatusCode::OK,
            Json(json!({ "job": name, "path": path.display().to_string(), "stopped": query.stop })),
        )
            .into_response(),
        Ok(Ok(Err(reason))) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("savepoint of job '{name}' failed: {reason}"),
        ),
        Ok(Err(std::sync::mpsc::RecvTimeoutError::Timeout)) => error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("savepoint of job '{name}' not complete after {SAVEPOINT_WAIT:?}"),
        ),
        Ok(Err(std::sync::mpsc::RecvTimeoutError::Disconnected)) | Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("savepoint of job '{name}': the job stopped listening"),
        ),
    }
}

/// Query of a state read.
#[derive(Debug, Deserialize)]
struct StateKeyQuery {
    /// The key, as JSON (a string key is `"word"`, with the quotes).
    key: Option<String>,
}

/// Reads one key's value of a queryable state in a running job.
async fn query_state(
    State(board): State<StatusBoard>,
    Path((job, stage, state)): Path<(String, u32, String)>,
    Query(query): Query<StateKeyQuery>,
) -> Response {
    let Some(key) = query.key else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing query parameter 'key' (the key as JSON, e.g. ?key=%22word%22)",
        );
    };
    match board.query_state(&job, stage, &state, &key).await {
        Ok(read) => (
            StatusCode::OK,
            Json(json!({
                "job": job,
                "stage": stage,
                "state": state,
                "key": serde_json::from_str::<serde_json::Value>(&key).unwrap_or(serde_json::Value::Null),
                "found": read.value.is_some(),
                "value": read.value,
                "key_partition": read.key_partition,
                "partition": read.partition,
            })),
        )
            .into_response(),
        Err(e @ (StatusError::NoSuchJob(_) | StatusError::NoSuchStage { .. })) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e @ StatusError::BadQuery(_)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// A JSON error body `{"error": message}` with `status`.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": message })),
    )
        .into_response()
}
