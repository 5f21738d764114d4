//! A `weir run` process for tests of what a running node serves: started with its
//! HTTP servers on free 127.0.0.1 ports, its standard error collected, and killed
//! and reaped on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `weir` command whose status API and metrics bind free 127.0.0.1 ports (the defaults,
/// 127.0.0.1:8081 and 127.0.0.1:9464, would collide between tests running at once).
pub fn weir_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.env("WEIR_HTTP_ADDR", "127.0.0.1:0");
    cmd.env("WEIR_METRICS_ADDR", "127.0.0.1:0");
    cmd
}

/// A running `weir` process.
pub struct WeirProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl WeirProcess {
    /// Starts `weir <args>` with the status API on a free port.
    pub fn start(args: &[&str]) -> WeirProcess {
        WeirProcess::start_with_env(args, &[])
    }

    /// [`WeirProcess::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> WeirProcess {
        let mut cmd = weir_command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weir");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        WeirProcess { child, stderr }
    }

    /// `weir run demo` for a minute (the test stops it sooner), two workers,
    /// checkpoints every 200 ms into `state`, no progress lines, then `extra`.
    pub fn checkpointed_demo(state: &std::path::Path, extra: &[&str]) -> WeirProcess {
        let state = state.to_str().expect("a UTF-8 state path");
        let mut args = vec![
            "run",
            "demo",
            "--duration",
            "60",
            "--no-progress",
            "--workers",
            "2",
            "--checkpoint-interval-ms",
            "200",
            "--state-dir",
            state,
        ];
        args.extend_from_slice(extra);
        WeirProcess::start(&args)
    }

    /// What it wrote on standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The address of the server whose start line on stderr begins with `prefix`
    /// and ends in `http://ADDR/` (waits up to 30 s).
    pub fn served_at(&mut self, prefix: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.stderr();
            let found = text.lines().find_map(|l| {
                let rest = l.strip_prefix(prefix)?;
                let url = rest.split("http://").nth(1)?;
                url.trim_end_matches('/').parse().ok()
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weir exited ({status}) before serving '{prefix}':\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no '{prefix}' line within 30 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The status API's address.
    pub fn status_addr(&mut self) -> SocketAddr {
        self.served_at("[weir] status API and page on ")
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit (`within` at most).
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weir still running {within:?} after SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for it to exit (30 s at most) and returns whether it succeeded.
    pub fn wait(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "weir still running:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
