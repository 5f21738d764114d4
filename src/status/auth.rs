//! Who may change a node through its HTTP API: the mutating endpoints (a savepoint,
//! a savepoint that stops the job) take a bearer token whenever one is configured,
//! and one must be configured whenever the API listens beyond loopback, where
//! anyone on the network could otherwise stop the job.
//!
//! The token comes from the `WEIR_HTTP_TOKEN` environment variable or from the file
//! `http.token_file` names (a Kubernetes Secret mounted as a file, say); it is
//! never written in the configuration itself. Reading endpoints (the page, the
//! job list, health, state queries) stay open: they are what probes and dashboards
//! read.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The environment variable that holds the API token (it wins over
/// `http.token_file`).
pub const TOKEN_ENV: &str = "WEIR_HTTP_TOKEN";

/// The fewest characters a token may have: a short token is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the API's access rule could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The API would listen beyond loopback with no token.
    #[error(
        "the status API on {addr} listens beyond loopback, so its mutating endpoints \
         (savepoint, stop) need a token: set {TOKEN_ENV} or http.token_file, or bind \
         http.addr to 127.0.0.1"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token file could not be read.
    #[error("cannot read the API token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The token is too short.
    #[error("the API token from {from} has {len} characters; it needs at least {MIN_TOKEN_LEN}")]
    TooShort {
        /// Where it came from.
        from: String,
        /// Its length.
        len: usize,
    },
}

/// The secret a client presents as `Authorization: Bearer <token>`. Its `Debug`
/// form hides it.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    /// A token, refused when shorter than [`MIN_TOKEN_LEN`]; `from` names its
    /// source in that error.
    pub fn new(token: &str, from: &str) -> Result<Self, AuthError> {
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(AuthError::TooShort {
                from: from.to_string(),
                len: token.chars().count(),
            });
        }
        Ok(ApiToken(token.into()))
    }

    /// Whether `presented` is the token, compared in time that does not depend on
    /// where the two first differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// The token the node is configured with: `env_token` (the value of
/// [`TOKEN_ENV`], if set and not empty), else the contents of `token_file`.
pub fn resolve_token(
    env_token: Option<String>,
    token_file: Option<&Path>,
) -> Result<Option<ApiToken>, AuthError> {
    if let Some(token) = env_token.filter(|t| !t.trim().is_empty()) {
        return ApiToken::new(&token, TOKEN_ENV).map(Some);
    }
    match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
                path: path.display().to_string(),
                source,
            })?;
            ApiToken::new(&text, &path.display().to_string()).map(Some)
        }
        None => Ok(None),
    }
}

/// Checks the rule: an API that listens beyond loopback has a token.
pub fn check_exposure(addr: SocketAddr, token: Option<&ApiToken>) -> Result<(), AuthError> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(AuthError::TokenRequired { addr });
    }
    Ok(())
}

/// Lets a request through to a mutating endpoint only with the token (when the
/// node has one); answers 401 otherwise.
pub(crate) async fn require_token(
    token: Option<ApiToken>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if token.matches(p.trim()) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is not this node's API token"),
        None => unauthorized(
            "this endpoint changes the node: send the API token as `Authorization: Bearer <token>`",
        ),
    }
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": reason })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_itself() {
        let t = ApiToken::new("0123456789abcdef", "test").unwrap();
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcdeF"));
        assert!(!t.matches("0123456789abcde"));
        assert!(!t.matches("0123456789abcdef0"));
        assert!(!t.matches(""));
    }

    #[test]
    fn a_short_token_is_refused_naming_its_source() {
        let err = ApiToken::new("short", "WEIR_HTTP_TOKEN").unwrap_err();
        assert!(err.to_string().contains("WEIR_HTTP_TOKEN"), "{err}");
    }

    #[test]
    fn beyond_loopback_a_token_is_required() {
        let open: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let v6: SocketAddr = "[::1]:8081".parse().unwrap();
        let token = ApiToken::new("0123456789abcdef", "test").unwrap();
        assert!(check_exposure(open, None).is_err());
        assert!(check_exposure(open, Some(&token)).is_ok());
        assert!(check_exposure(local, None).is_ok());
        assert!(check_exposure(v6, None).is_ok());
    }

    #[test]
    fn the_environment_wins_over_the_file_and_an_empty_one_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-the-file-0123456789\n").unwrap();
        let from_env = resolve_token(Some("from-the-env-0123456789".into()), Some(&file))
            .unwrap()
            .unwrap();
        assert!(from_env.matches("from-the-env-0123456789"));
        let from_file = resolve_token(Some("  ".into()), Some(&file))
            .unwrap()
            .unwrap();
        assert!(from_file.matches("from-the-file-0123456789"));
        assert!(resolve_token(None, None).unwrap().is_none());
        let missing = resolve_token(None, Some(&dir.path().join("nope"))).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
