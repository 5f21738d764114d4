//! A checkpointed `weir` process killed with SIGKILL at seeded random moments and
//! started again with the same state directory resumes from its last complete epoch:
//! the committed output equals that of a run that was never killed, line for line.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::connector::generator::{splitmix64, w1_word};
use weir::connector::txn_file::read_committed;

/// Writes `words` W1 words, ten per line.
fn write_input(path: &Path, words: u64) {
    let mut text = String::new();
    for i in 0..words {
        text.push_str(&w1_word(i % 5_000));
        text.push(if i % 10 == 9 { '\n' } else { ' ' });
    }
    std::fs::write(path, text).unwrap();
}

fn weir(input: &Path, out: &Path, state: &Path) -> Command {
    let mut cmd = common::node::weir_command();
    cmd.args([
        "run",
        "wordcount",
        "--metrics-addr",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--checkpoint-interval-ms",
        "40",
    ])
    .arg("--input")
    .arg(input)
    .arg("--output-dir")
    .arg(out)
    .arg("--state-dir")
    .arg(state)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

fn sorted(dir: &Path) -> Vec<String> {
    let mut lines = read_committed(dir).expect("committed output");
    lines.sort();
    lines
}

#[test]
fn sigkill_at_seeded_moments_then_resume_gives_the_output_of_an_unkilled_run() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("input.txt");
    write_input(&input, 400_000);

    let reference = root.path().join("reference");
    let status = weir(&input, &reference, &root.path().join("reference-state"))
        .status()
        .unwrap();
    assert!(status.success(), "reference run: {status}");
    let want = sorted(&reference);
    assert_eq!(want.len(), 400_000, "one running count per word");

    let out = root.path().join("out");
    let state = root.path().join("state");
    let mut seed = 0x5EED_u64;
    let mut kills = 0;
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(240), "no progress");
        let mut child = weir(&input, &out, &state).spawn().unwrap();
        seed = splitmix64(seed);
        let after = Duration::from_millis(150 + seed % 600);
        let deadline = Instant::now() + after;
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
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
            None if kills < 4 => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            None => {
                let status = child.wait().unwrap();
                assert!(status.success(), "final run: {status}");
                break;
            }
        }
    }
    assert!(kills > 0, "the run was killed at least once");
    let got = sorted(&out);
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
