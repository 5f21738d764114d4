//! A checkpointed `weir` process killed with SIGKILL at seeded random moments and
//! started again with the same state directory resumes from its last complete epoch:
//! the committed output equals that of a run that was never killed, line for line.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::kill::{assert_same_output_after_kills, kill_until_finished};
use common::sorted_committed;
use weir::connector::generator::w1_word;

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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args([
        "run",
        "wordcount",
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
    let want = sorted_committed(&reference);
    assert_eq!(want.len(), 400_000, "one running count per word");

    let out = root.path().join("out");
    let state = root.path().join("state");
    let kills = kill_until_finished(
        || weir(&input, &out, &state),
        0x5EED,
        Duration::from_millis(150),
        Duration::from_millis(600),
        4,
    );
    let got = sorted_committed(&out);
    assert_same_output_after_kills(&got, &want, kills);
}
