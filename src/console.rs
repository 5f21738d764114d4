//! Messages for the person at the terminal (progress lines, the job summary,
//! savepoint and Ctrl-C notices), written to stderr as `[weir] ...` lines, or, when
//! the logs are JSON, as log events, so that with `--log-format json` every stderr
//! line is one JSON object a log collector can read.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Sends console messages through the (JSON) log from now on (`true`), or back to
/// plain stderr lines (`false`).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Whether console messages go through the log.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Writes `message` for the user: `[weir] message` on stderr, or an INFO event of
/// target `weir::console` when the logs are JSON.
pub fn notice(message: &str) {
    if is_json() {
        tracing::info!(target: "weir::console", "{message}");
    } else {
        eprintln!("[weir] {message}");
    }
}
