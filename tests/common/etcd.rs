//! An etcd server as a separate process for the cluster coordination tests.
//!
//! The binary is what `scripts/test-deps.sh etcd` provides (Debian's etcd-server,
//! installed by `scripts/install-etcd.sh` when absent; `WEIR_ETCD_BIN` names another
//! binary). [`EtcdServer`] runs it as a one-member cluster on free 127.0.0.1 ports
//! with its data in a temporary directory, waits until `/health` answers, and kills
//! and reaps it on drop. A test that needs etcd and cannot get it fails with the
//! script's message: it never skips.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tansu::free_port;

/// How long a started etcd may take to report itself healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcd binary: `WEIR_ETCD_BIN`, else what `scripts/test-deps.sh etcd` provides.
pub fn etcd_binary() -> PathBuf {
    match std::env::var_os("WEIR_ETCD_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => super::deps::provision("etcd"),
    }
}

/// A one-member etcd on 127.0.0.1, killed and reaped on drop.
pub struct EtcdServer {
    client_port: u16,
    child: Option<Child>,
    /// The data directory and the server's log.
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd on free ports and waits until it is healthy.
    pub fn start() -> Self {
        let binary = etcd_binary();
        let dir = tempfile::tempdir().expect("a temporary directory for etcd");
        let client_port = free_port();
        let peer_port = free_port();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd's log file");
        let child = Command::new(&binary)
            .arg("--name")
            .arg("weir-test")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("weir-test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd's log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = EtcdServer {
            client_port,
            child: Some(child),
            dir,
        };
        server.wait_healthy();
        server
    }

    /// The client endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// What etcd wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "etcd exited ({status}) before it was healthy:\n{}",
                        self.log()
                    );
                }
            }
            if self.healthy() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `GET /health` answers `"health":"true"`.
    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
