//! Killing a `weir` child process with SIGKILL at seeded moments and starting it
//! again until it finishes (tests/kill.rs, tests/kafka_broker.rs).
#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use weir::connector::generator::splitmix64;

/// Kills a child process on drop unless it was reaped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command()` again and again: each run is killed with SIGKILL after a
/// seeded delay of `min` plus up to `spread` unless it finished first; after
/// `max_kills` kills the last run is left to finish. Returns the number of kills
/// (at least one, or it panics). Every run must end successfully when not killed.
pub fn kill_until_finished(
    mut command: impl FnMut() -> Command,
    seed: u64,
    min: Duration,
    spread: Duration,
    max_kills: u32,
) -> u32 {
    let mut seed = seed;
    let mut kills = 0;
    let started = Instant::now();
    let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX).max(1);
    loop {
        assert!(started.elapsed() < Duration::from_secs(240), "no progress");
        let mut child = Reaped(command().spawn().unwrap());
        seed = splitmix64(seed);
        let deadline = Instant::now() + min + Duration::from_millis(seed % spread_ms);
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.0.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match finished {
            Some(status) => {
                assert!(status.success(), "resumed run: {status}");
                break;
            }
            None if kills < max_kills => {
                child.0.kill().unwrap(); // SIGKILL
                child.0.wait().unwrap();
                kills += 1;
            }
            None => {
                let status = child.0.wait().unwrap();
                assert!(status.success(), "final run: {status}");
                break;
            }
        }
    }
    assert!(kills > 0, "the run was killed at least once");
    kills
}

/// Asserts that the committed lines after `kills` kills (`got`, sorted) are those of
/// the unkilled run (`want`, sorted), line for line.
pub fn assert_same_output_after_kills(got: &[String], want: &[String], kills: u32) {
    assert_eq!(
        got.len(),
        want.len(),
        "after {kills} kills: no line lost or duplicated"
    );
    assert!(
        got == want,
        "after {kills} kills: output differs from the unkilled run"
    );
}
