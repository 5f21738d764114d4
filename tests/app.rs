//! A user's own binary: the jobs `examples/custom_jobs.rs` registers (compiled into
//! this test as a module) run through the library's command line
//! (`weir::app::main_from`), in this process, as `my-binary run NAME --set ...`.

#[allow(dead_code)]
#[path = "../examples/custom_jobs.rs"]
mod custom_jobs;

use std::process::ExitCode;

/// `weir run ARGS...` of the example's binary, with no HTTP or metrics server.
fn run(args: &[&str]) -> ExitCode {
    let mut argv = vec!["custom-jobs", "run"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--no-http", "--no-metrics"]);
    weir::app::main_from(custom_jobs::jobs().expect("the example's jobs"), argv)
}

#[test]
fn a_registered_job_runs_by_name_with_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lengths.tsv");
    let code = run(&[
        "word-lengths",
        "--set",
        "n=2000",
        "--set",
        &format!("out={}", out.display()),
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    // One line per update of a length's count: 2000 words in all.
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 2000);
    let mut last = std::collections::BTreeMap::new();
    for line in text.lines() {
        let (len, count) = line.split_once('\t').unwrap();
        let count: u64 = count.parse().unwrap();
        let entry = last.entry(len.to_string()).or_insert(0);
        *entry = count.max(*entry);
    }
    assert_eq!(last.values().sum::<u64>(), 2000);
}

#[test]
fn a_registered_job_can_end_in_a_terminal_operator_of_the_binary() {
    assert_eq!(
        run(&["lengths-counted", "--set", "n=500"]),
        ExitCode::SUCCESS
    );
}

#[test]
fn bad_names_and_parameters_fail_without_running() {
    assert_eq!(run(&["no-such-job"]), ExitCode::FAILURE);
    // A parameter the job does not read (a typo) is an error, not ignored.
    assert_eq!(
        run(&["lengths-counted", "--set", "n=10", "--set", "nn=5"]),
        ExitCode::FAILURE
    );
    // A required one missing, and one that does not parse.
    assert_eq!(run(&["word-lengths"]), ExitCode::FAILURE);
    assert_eq!(
        run(&["lengths-counted", "--set", "n=ten"]),
        ExitCode::FAILURE
    );
    // --set belongs to registered jobs.
    assert_eq!(run(&["w1", "--set", "n=10"]), ExitCode::FAILURE);
}
