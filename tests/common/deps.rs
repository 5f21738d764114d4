//! Test dependencies beyond the Rust toolchain (a browser, Prometheus, a broker),
//! provisioned through `scripts/test-deps.sh <name>`: it installs what is missing
//! and prints the path of what to run. A test that needs one and cannot get it
//! fails with the script's reason; it never skips.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The path `scripts/test-deps.sh <name>` prints (run once per test binary and
/// name). Panics with the script's reason when the dependency cannot be provisioned.
pub fn provision(name: &str) -> PathBuf {
    static FOUND: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let mut found = FOUND
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = found
        .entry(name.to_string())
        .or_insert_with(|| run_script(name))
        .clone();
    drop(found);
    match result {
        Ok(path) => path,
        Err(why) => {
            panic!("test dependency '{name}' is needed and could not be provisioned: {why}")
        }
    }
}

fn run_script(name: &str) -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-deps.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(name)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {name} failed ({}); see its message above",
            script.display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} {name} printed {stdout:?}, not a file's path",
            script.display()
        ))
    }
}
