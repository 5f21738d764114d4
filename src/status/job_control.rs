//! The HTTP face of a node that runs jobs submitted to it (`weir node`): the status
//! server calls a [`JobControl`] to list the definitions, submit a job by name and
//! cancel one; what implements it (the node's job service) lives above this module.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::board::StatusBoard;

/// Why a job could not be submitted or cancelled, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobControlError {
    /// The definition or its parameters were refused (400).
    BadRequest(String),
    /// A job of that name runs already (409).
    Conflict(String),
    /// No such job runs (404).
    NotFound(String),
    /// The node could not start it (500).
    Internal(String),
}

/// What the API submits jobs to.
pub trait JobControl: Send + Sync + 'static {
    /// The definitions a submission may name, with their descriptions.
    fn definitions(&self) -> Vec<(String, String)>;
    /// Starts job `definition` with `params`; returns the running job's name.
    fn submit(
        &self,
        definition: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<String, JobControlError>;
    /// Cancels running job `job`.
    fn cancel(&self, job: &str) -> Result<(), JobControlError>;
}

/// The body of `POST /api/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    /// The definition's name.
    definition: String,
    /// Its parameters, `key: value` (strings).
    #[serde(default)]
    params: BTreeMap<String, String>,
}

fn answer(e: JobControlError) -> Response {
    let (status, message) = match e {
        JobControlError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        JobControlError::Conflict(m) => (StatusCode::CONFLICT, m),
        JobControlError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        JobControlError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
    };
    (status, Json(json!({ "error": message }))).into_response()
}

/// The mutating routes: submit (`POST /api/jobs`) and cancel (`DELETE
/// /api/jobs/{job}`).
pub(crate) fn mutating_routes(jobs: Arc<dyn JobControl>) -> Router<StatusBoard> {
    let submitter = jobs.clone();
    Router::new()
        .route(
            "/api/jobs",
            post(move |Json(body): Json<Submission>| {
                let jobs = submitter.clone();
                async move {
                    match jobs.submit(&body.definition, &body.params) {
                        Ok(job) => (
                            StatusCode::ACCEPTED,
                            Json(json!({ "job": job, "definition": body.definition })),
                        )
                            .into_response(),
                        Err(e) => answer(e),
                    }
                }
            }),
        )
        .route(
            "/api/jobs/{job}",
            delete(move |Path(job): Path<String>| {
                let jobs = jobs.clone();
                async move {
                    match jobs.cancel(&job) {
                        Ok(()) => (
                            StatusCode::ACCEPTED,
                            Json(json!({ "job": job, "cancelling": true })),
                        )
                            .into_response(),
                        Err(e) => answer(e),
                    }
                }
            }),
        )
}

/// The reading route: `GET /api/definitions`.
pub(crate) fn reading_routes(jobs: Arc<dyn JobControl>) -> Router<StatusBoard> {
    Router::new().route(
        "/api/definitions",
        get(move || {
            let jobs = jobs.clone();
            async move {
                let definitions: Vec<_> = jobs
                    .definitions()
                    .into_iter()
                    .map(|(name, about)| json!({ "name": name, "about": about }))
                    .collect();
                Json(json!({ "definitions": definitions }))
            }
        }),
    )
}
