//! A small client of etcd v3's JSON gateway: one `POST /v3/...` with a JSON body per
//! call, over HTTP/1.1 with pooled connections (hyper's client), each call bounded
//! by a timeout.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::ErrorBody;
use crate::cluster::coordinator::CoordinationError;

/// One etcd endpoint's gateway.
#[derive(Clone)]
pub struct Gateway {
    endpoint: String,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Gateway {
    /// A client of the gateway at `endpoint` (`http://host:port`; TLS is not
    /// supported). Fails if the endpoint is not such a URL.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, CoordinationError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let uri: Uri = endpoint.parse().map_err(|e| {
            CoordinationError::Invalid(format!("etcd endpoint {endpoint:?} is not a URL: {e}"))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(CoordinationError::Invalid(format!(
                "etcd endpoint {endpoint:?} must be http://host:port (TLS is not supported)"
            )));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Gateway {
            endpoint,
            client,
            timeout,
        })
    }

    /// The endpoint, as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `path` (`/v3/kv/range`, ...) with `request`, and decodes the answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &'static str,
        request: &Q,
    ) -> Result<A, CoordinationError> {
        let body = serde_json::to_vec(request).map_err(|e| CoordinationError::Protocol {
            path,
            detail: format!("cannot encode the request: {e}"),
        })?;
        let (status, answer) = tokio::time::timeout(self.timeout, self.post(path, body))
            .await
            .map_err(|_| {
                self.unreachable(path, format!("no answer within {:?}", self.timeout))
            })??;
        if !(200..300).contains(&status) {
            let error: ErrorBody = serde_json::from_slice(&answer).unwrap_or_default();
            let message = if error.message.is_empty() {
                String::from_utf8_lossy(&answer).into_owned()
            } else {
                error.message
            };
            return Err(CoordinationError::Refused {
                endpoint: self.endpoint.clone(),
                path,
                status,
                message,
            });
        }
        serde_json::from_slice(&answer).map_err(|e| CoordinationError::Protocol {
            path,
            detail: format!("{e} in {}", String::from_utf8_lossy(&answer)),
        })
    }

    async fn post(
        &self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), CoordinationError> {
        let uri = format!("{}{path}", self.endpoint);
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.unreachable(path, format!("cannot build the request: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| self.unreachable(path, error_chain(&e)))?;
        let status = response.status().as_u16();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(path, format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, answer))
    }

    fn unreachable(&self, path: &'static str, reason: String) -> CoordinationError {
        CoordinationError::Unreachable {
            endpoint: self.endpoint.clone(),
            path,
            reason,
        }
    }
}

/// An error with its causes, `outer: inner: ...` (hyper's client error alone says
/// only "client error (Connect)").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
