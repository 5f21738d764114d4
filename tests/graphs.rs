//! Checkpoints, watermarks and the serializable exchange over job graphs (union,
//! join, fan-out, broadcast state, operator state): fault injection compared record
//! for record with a run without faults, savepoints restored at another
//! parallelism, watermarks over several inputs, barrier alignment under
//! backpressure, and the serialized exchange compared with the local one.

mod common;
mod graphs {
    pub mod alignment;
    pub mod crossings;
    pub mod job;
    pub mod watermarks;
}

use graphs::watermarks::{
    a_quiet_input_that_is_not_idle_holds_the_watermark_back,
    an_idle_input_is_left_out_of_the_minimum, Shape,
};

#[test]
fn an_idle_input_of_a_union_is_left_out_of_its_watermark() {
    an_idle_input_is_left_out_of_the_minimum(Shape::Union);
}

#[test]
fn an_idle_input_of_a_connect_is_left_out_of_its_watermark() {
    an_idle_input_is_left_out_of_the_minimum(Shape::Connect);
}

#[test]
fn an_idle_input_of_a_union_with_a_shared_source_is_left_out_of_its_watermark() {
    an_idle_input_is_left_out_of_the_minimum(Shape::SharedUnion);
}

#[test]
fn a_quiet_input_of_a_union_holds_its_watermark_at_the_minimum() {
    a_quiet_input_that_is_not_idle_holds_the_watermark_back(Shape::Union);
}

#[test]
fn a_quiet_input_of_a_connect_holds_its_watermark_at_the_minimum() {
    a_quiet_input_that_is_not_idle_holds_the_watermark_back(Shape::Connect);
}

#[test]
fn a_quiet_input_of_a_union_with_a_shared_source_holds_its_watermark_at_the_minimum() {
    a_quiet_input_that_is_not_idle_holds_the_watermark_back(Shape::SharedUnion);
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use graphs::job::{graph_job, Output, Setup, StageFaults};
use weir::exchange::ExchangeMode;
use weir::prelude::*;

/// Numbers each source of the graph job reads.
const N: u64 = 6_000;

/// Checkpointed options at `parallelism` (as many workers), state in `state`:
/// checkpoints every 30 ms, up to 30 restarts 5 ms apart.
fn options(state: &Path, parallelism: u32) -> EngineOptions {
    let mut o = EngineOptions::for_tests(parallelism);
    o.state_dir = Some(state.to_path_buf());
    o.checkpoint.interval = Some(Duration::from_millis(30));
    o.restart = RestartStrategy::FixedDelay {
        attempts: 30,
        delay: Duration::from_millis(5),
    };
    o
}

fn run_graph(setup: &Setup, options: EngineOptions) -> JobReport {
    Node::new(options)
        .unwrap()
        .run(graph_job(setup))
        .expect("the graph job runs")
}

#[test]
fn panics_in_a_graph_with_a_join_and_a_union_recover_to_the_output_of_a_run_without_faults() {
    let root = tempfile::tempdir().unwrap();
    let reference_out = root.path().join("reference");
    let report = run_graph(
        &Setup::new(N, &reference_out),
        options(&root.path().join("reference-state"), 3),
    );
    assert_eq!(report.restarts, 0);
    assert_eq!(
        report.records_read(),
        3 * N + 3,
        "every source's numbers, and the rules"
    );
    let reference = Output::committed(&reference_out);
    reference.assert_same(&Output::expected(N), "the run without faults");
    for (seed, parallelism) in [(0x5EED_u64, 3u32), (0xFA17, 2)] {
        let out = root.path().join(format!("out-{seed}"));
        let mut setup = Setup::new(N, &out);
        setup.faults = StageFaults::seeded(seed, N);
        let state = root.path().join(format!("state-{seed}"));
        let report = run_graph(&setup, options(&state, parallelism));
        assert_eq!(
            setup.faults.fired(),
            setup.faults.targets(),
            "seed {seed}: every fault fired"
        );
        // Two faults may fire in one attempt (in two actors at once).
        assert!(
            report.restarts >= 1 && report.restarts as usize <= setup.faults.targets(),
            "seed {seed}: {} restarts for {} faults",
            report.restarts,
            setup.faults.targets()
        );
        assert!(
            report.restored_from.is_some(),
            "seed {seed}: restored from a checkpoint"
        );
        Output::committed(&out).assert_same(
            &reference,
            &format!(
                "seed {seed} at parallelism {parallelism}, after {} restarts",
                report.restarts
            ),
        );
    }
}

/// Runs the graph job at `p1` over the first quarter of its input, stops it with a
/// savepoint once an eighth was read, and restores the savepoint at `p2` to finish
/// the input; returns the committed output of both runs together.
fn savepoint_then_restore(root: &Path, p1: u32, p2: u32) -> Output {
    let out = root.join(format!("out-{p1}-{p2}"));
    let (tx, rx) = std::sync::mpsc::channel();
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    let mut ask = Some((tx, reply_tx));
    // Three sources read numbers (the rules' three records aside).
    let observer: weir::job::node::Observer = Box::new(move |live| {
        if live.records_read() >= 3 * (N / 8) {
            if let Some((tx, reply)) = ask.take() {
                tx.send(SavepointCommand {
                    stop: true,
                    reply: Some(reply),
                })
                .unwrap();
            }
        }
    });
    let mut first = Setup::new(N, &out);
    first.prefix = Some(N / 4);
    let node = Node::new(options(&root.join(format!("state-{p1}-{p2}")), p1)).unwrap();
    let report = node
        .run_with(
            graph_job(&first),
            RunControl {
                savepoints: Some(rx),
                observer: Some(observer),
                observe_every: Some(Duration::from_millis(5)),
                ..Default::default()
            },
        )
        .expect("the first run stops with a savepoint");
    let savepoint: PathBuf = reply_rx
        .recv()
        .expect("the savepoint was asked for")
        .expect("savepoint taken");
    assert_eq!(report.savepoint.as_ref(), Some(&savepoint));
    let partial = Output::committed(&out);
    let want = Output::expected(N);
    assert!(
        partial.rated.len() < want.rated.len() && partial.bucket_lines == 0,
        "{p1} -> {p2}: the first run stopped part way ({} of {} pairs committed, {} bucket lines)",
        partial.rated.len(),
        want.rated.len(),
        partial.bucket_lines
    );
    drop(node);
    let mut o = options(&root.join(format!("state2-{p1}-{p2}")), p2);
    o.from_savepoint = Some(savepoint);
    let report = run_graph(&Setup::new(N, &out), o);
    assert!(report.restored_from.is_some(), "{p1} -> {p2}: restored");
    assert_eq!(report.restarts, 0);
    Output::committed(&out)
}

#[test]
fn a_savepoint_of_a_graph_job_restores_at_another_parallelism_with_the_same_output() {
    let root = tempfile::tempdir().unwrap();
    let uninterrupted_out = root.path().join("uninterrupted");
    run_graph(
        &Setup::new(N, &uninterrupted_out),
        options(&root.path().join("uninterrupted-state"), 2),
    );
    let uninterrupted = Output::committed(&uninterrupted_out);
    uninterrupted.assert_same(&Output::expected(N), "the uninterrupted run");
    for (p1, p2) in [(2u32, 3u32), (3, 1)] {
        savepoint_then_restore(root.path(), p1, p2).assert_same(
            &uninterrupted,
            &format!("savepoint at {p1}, restored at {p2}"),
        );
    }
}

#[test]
fn the_serialized_exchange_gives_the_output_of_the_local_one() {
    let root = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for mode in [ExchangeMode::Local, ExchangeMode::Serialized] {
        let out = root.path().join(format!("{mode:?}"));
        let mut o = options(&root.path().join(format!("{mode:?}-state")), 2);
        o.exchange = mode;
        let mut setup = Setup::new(N, &out);
        setup.per_epoch = None;
        run_graph(&setup, o);
        outputs.push(Output::committed(&out));
    }
    outputs[0].assert_same(&Output::expected(N), "the local exchange");
    outputs[1].assert_same(&outputs[0], "the serialized exchange");
}

#[test]
fn the_serialized_exchange_encodes_every_kind_of_edge_and_the_local_one_none() {
    let expected: Vec<(&str, u64)> = vec![
        ("broadcast", 600),
        ("connect (left)", 300),
        ("connect (right)", 50),
        ("connect_broadcast (keyed)", 300),
        // Ten rules to each of the two partitions.
        ("connect_broadcast (rules)", 20),
        ("key_by", 300),
        ("rebalance (fan-out route)", 300),
        ("union (forward)", 300),
    ];
    let local: Vec<(&str, (u64, u64))> = graphs::crossings::crossings(ExchangeMode::Local)
        .into_iter()
        .collect();
    let want: Vec<(&str, (u64, u64))> = expected.iter().map(|&(e, n)| (e, (n, 0))).collect();
    assert_eq!(local, want, "local: (as values, encoded) per edge");
    let serialized: Vec<(&str, (u64, u64))> =
        graphs::crossings::crossings(ExchangeMode::Serialized)
            .into_iter()
            .collect();
    let want: Vec<(&str, (u64, u64))> = expected.iter().map(|&(e, n)| (e, (0, n))).collect();
    assert_eq!(
        serialized, want,
        "serialized: (as values, encoded) per edge"
    );
}

/// The checks of [`graphs::alignment::fast_and_slow`] for one meeting.
fn aligns_under_backpressure(meeting: graphs::alignment::Meeting) {
    let root = tempfile::tempdir().unwrap();
    let seen = graphs::alignment::fast_and_slow(meeting, root.path());
    assert!(
        seen.epochs_mid_run >= 2 * graphs::alignment::SLOW_EPOCHS_PER_SPLIT,
        "{meeting:?}: epochs completed while the slow input ran, told to its two splits: {}",
        seen.epochs_mid_run
    );
    assert_eq!(seen.restarts, 1, "{meeting:?}: the injected fault");
    assert!(
        seen.fast_blocked > Duration::ZERO,
        "{meeting:?}: the fast input was back-pressured"
    );
}

#[test]
fn a_union_of_a_fast_and_a_slow_input_aligns_its_barriers_under_backpressure() {
    aligns_under_backpressure(graphs::alignment::Meeting::Union);
}

#[test]
fn a_connect_of_a_fast_and_a_slow_input_aligns_its_barriers_under_backpressure() {
    aligns_under_backpressure(graphs::alignment::Meeting::Connect);
}

/// Where [`graph_job_in_a_child_process`] writes, when a test runs it as a child.
const CHILD_DIR: &str = "WEIR_GRAPH_TEST_CHILD_DIR";
/// Numbers each split of the child's sources reads between two barriers (a run
/// spans about 50 epochs).
const CHILD_PER_EPOCH: usize = 60;

/// Runs the graph job with its state and output below `dir`, resuming from the
/// newest complete epoch there, if any.
fn run_child_job(dir: &Path) -> JobReport {
    let mut setup = Setup::new(N, &dir.join("out"));
    setup.per_epoch = Some(CHILD_PER_EPOCH);
    let mut o = options(&dir.join("state"), 2);
    o.checkpoint.interval = Some(Duration::from_millis(40));
    o.restart = RestartStrategy::None;
    run_graph(&setup, o)
}

#[test]
#[ignore = "the body of a child process: graph_jobs_killed_with_sigkill_resume_with_exact_output runs it"]
fn graph_job_in_a_child_process() {
    match std::env::var_os(CHILD_DIR) {
        Some(dir) => {
            run_child_job(Path::new(&dir));
        }
        None => {
            let root = tempfile::tempdir().unwrap();
            run_child_job(root.path());
            Output::committed(&root.path().join("out"))
                .assert_same(&Output::expected(N), "a run in one go");
        }
    }
}

#[test]
fn graph_jobs_killed_with_sigkill_resume_with_exact_output() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_path_buf();
    let child = || {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "graph_job_in_a_child_process",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        cmd
    };
    let kills = common::kill::kill_until_finished(
        child,
        0x6A9F,
        Duration::from_millis(150),
        Duration::from_millis(500),
        4,
    );
    Output::committed(&root.path().join("out"))
        .assert_same(&Output::expected(N), &format!("after {kills} kills"));
}
