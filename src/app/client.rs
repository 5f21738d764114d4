//! The client side of `weir job ...`: one HTTP/1.1 request to a node's API per
//! command, over a plain TCP connection, with the API token when one is given.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a command waits for the node (a savepoint may take a while).
const TIMEOUT: Duration = Duration::from_secs(600);

/// Why a request to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node's address is not `http://HOST:PORT` (or `HOST:PORT`).
    #[error("'{0}' is not a node address: expected http://HOST:PORT")]
    Address(String),
    /// The node could not be reached or the exchange broke off.
    #[error("node {node}: {source}")]
    Io {
        /// The node.
        node: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node's answer is not an HTTP response with a JSON body.
    #[error("node {node}: unreadable answer: {reason}")]
    Answer {
        /// The node.
        node: String,
        /// What was wrong.
        reason: String,
    },
}

/// A node's HTTP API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    host: String,
    token: Option<String>,
}

impl NodeClient {
    /// The API at `url` (`http://HOST:PORT`, or `HOST:PORT`), sending `token` as a
    /// bearer token when given.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let host = url
            .strip_prefix("http://")
            .unwrap_or(url)
            .trim_end_matches('/');
        if host.is_empty() || host.contains('/') || !host.contains(':') {
            return Err(ClientError::Address(url.to_string()));
        }
        Ok(NodeClient {
            host: host.to_string(),
            token: token.filter(|t| !t.trim().is_empty()),
        })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> ClientError + '_ {
        move |source| ClientError::Io {
            node: self.host.clone(),
            source,
        }
    }

    /// Sends `method path` with `body` (JSON) and returns the status code and the
    /// JSON body of the answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let addr = self
            .host
            .to_socket_addrs()
            .map_err(self.io())?
            .next()
            .ok_or_else(|| ClientError::Address(self.host.clone()))?;
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(self.io())?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(self.io())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(self.io())?;
        stream.write_all(body.as_bytes()).map_err(self.io())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(self.io())?;
        self.parse(&raw)
    }

    fn parse(&self, raw: &[u8]) -> Result<(u16, serde_json::Value), ClientError> {
        let bad = |reason: &str| ClientError::Answer {
            node: self.host.clone(),
            reason: reason.to_string(),
        };
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no end of headers"))?;
        let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let chunked = lines.any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let mut body = raw[split + 4..].to_vec();
        if chunked {
            body = dechunk(&body).ok_or_else(|| bad("malformed chunked body"))?;
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, serde_json::Value::Null));
        }
        let json =
            serde_json::from_slice(&body).map_err(|e| bad(&format!("body is not JSON: {e}")))?;
        Ok((status, json))
    }
}

/// The data of a chunked body.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert!(NodeClient::new("http://127.0.0.1:8081", None).is_ok());
        assert!(NodeClient::new("127.0.0.1:8081/", None).is_ok());
        assert!(NodeClient::new("http://localhost", None).is_err());
        assert!(NodeClient::new("http://h:1/api", None).is_err());
    }

    #[test]
    fn plain_and_chunked_answers_parse() {
        let c = NodeClient::new("h:1", None).unwrap();
        let plain = b"HTTP/1.1 202 Accepted\r\ncontent-length: 11\r\n\r\n{\"job\":\"a\"}";
        assert_eq!(
            c.parse(plain).unwrap(),
            (202, serde_json::json!({"job": "a"}))
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(
            c.parse(chunked).unwrap(),
            (200, serde_json::json!({"a": 1}))
        );
        assert!(c.parse(b"garbage").is_err());
    }
}
