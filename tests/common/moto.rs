//! moto's S3-compatible server as a separate process, for the shared snapshot store.
//!
//! The binary is what `scripts/test-deps.sh moto` provides (`scripts/install-moto.sh`
//! installs `moto[server]` into a venv when absent; `WEIR_MOTO_SERVER` names another
//! binary). [`MotoServer`] runs it on a free 127.0.0.1 port, waits until it answers,
//! creates a bucket, and kills and reaps it on drop. moto accepts any credentials and
//! honours conditional puts (`If-None-Match: *`, `If-Match`), which the store's
//! commit relies on. A test that needs it and cannot get it fails: it never skips.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::snapshot_store::{S3Credentials, SnapshotStoreSpec, SnapshotUrl};

use super::tansu::free_port;

/// How long a started moto may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The bucket every server is started with.
pub const BUCKET: &str = "weir-test";

/// The moto_server binary: `WEIR_MOTO_SERVER`, else what `scripts/test-deps.sh moto`
/// provides.
pub fn moto_binary() -> PathBuf {
    match std::env::var_os("WEIR_MOTO_SERVER") {
        Some(bin) => PathBuf::from(bin),
        None => super::deps::provision("moto"),
    }
}

/// A moto S3 server on 127.0.0.1 with one bucket, killed and reaped on drop.
pub struct MotoServer {
    port: u16,
    child: Option<Child>,
    /// Holds the server's log.
    dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts moto on a free port, waits until it answers and creates [`BUCKET`].
    pub fn start() -> Self {
        let binary = moto_binary();
        let dir = tempfile::tempdir().expect("a temporary directory for moto");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto's log file");
        let child = Command::new(&binary)
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("moto's log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = MotoServer {
            port,
            child: Some(child),
            dir,
        };
        server.wait_ready();
        let status = server.request("PUT", &format!("/{BUCKET}"));
        assert!(
            status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
            "creating bucket {BUCKET} failed: {status}\n{}",
            server.log()
        );
        server
    }

    /// The endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A store spec for `s3://<BUCKET>/<prefix>` on this server.
    pub fn spec(&self, prefix: &str) -> SnapshotStoreSpec {
        let mut spec = SnapshotStoreSpec::new(
            SnapshotUrl::parse(&format!("s3://{BUCKET}/{prefix}")).expect("a valid URL"),
        );
        spec.s3_endpoint = Some(self.endpoint());
        spec.s3_allow_http = true;
        spec.s3_region = Some("us-east-1".into());
        spec.s3_credentials = Some(S3Credentials {
            access_key_id: "weir-test".into(),
            secret_access_key: "weir-test-secret".into(),
        });
        spec
    }

    /// What moto wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("moto exited ({status}) before it answered:\n{}", self.log());
                }
            }
            if self.request("GET", "/").starts_with("HTTP/") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one bodiless request; returns the status line (empty when unreachable).
    fn request(&self, method: &str, path: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return String::new();
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
