//! The exactly-once Kafka sink, driven through the real engine against an
//! in-memory model of Kafka's transactions (tests/common/kafka_model.rs), with a
//! crash injected at each step of the protocol. Each faulty run's output, as a
//! `read_committed` consumer sees it, must equal the fault-free output record for
//! record. (librdkafka's mock cluster and the Tansu broker show aborted
//! transactions to read_committed readers, so this comparison cannot run on them.)

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::kafka::{running_sums, sum_record, SumFormat};
use common::kafka_model::{Effect, Fault, KafkaModel, Op};
use common::paced::EpochPaced;
use common::Numbers;
use weir::connector::kafka::{Delivery, KafkaSink};
use weir::prelude::*;

const N: u64 = 4000;
const KEYS: u64 = 50;
const OUT: &str = "out";

fn expected() -> Vec<(String, String)> {
    running_sums(N, KEYS)
}

fn sink(name: &str, model: &KafkaModel, staging: &Path) -> KafkaSink<SumFormat> {
    KafkaSink::new(format!("model://{name}"), OUT, sum_record as SumFormat)
        .delivery(Delivery::ExactlyOnce)
        .id(name)
        .staging_dir(staging)
        .with_log(Arc::new(model.clone()))
}

/// Records a source split emits per epoch at most: a run spans at least
/// `N / 2 / PER_EPOCH` epochs with output however slow the machine, so a fault
/// planned for the n-th commit or marker lands in a periodic epoch.
const PER_EPOCH: usize = 100;

/// The job; `interval` is the checkpoint interval it runs with.
fn job(name: &str, model: &KafkaModel, staging: &Path, interval: Option<Duration>) -> Job {
    Job::new(name)
        .source(EpochPaced::new(
            Numbers::upto(N),
            interval.map(|_| PER_EPOCH),
        ))
        .map(|x: u64| {
            if x.is_multiple_of(5) {
                // Paced, so the run spans many epochs.
                std::thread::sleep(Duration::from_millis(1));
            }
            (x % KEYS, x)
        })
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(sink(name, model, staging))
}

/// Time between periodic epochs in most tests (so a run spans many epochs).
const INTERVAL: Option<Duration> = Some(Duration::from_millis(20));

fn options(state: &Path, interval: Option<Duration>) -> EngineOptions {
    let mut o = EngineOptions::for_tests(2);
    o.state_dir = Some(state.to_path_buf());
    o.checkpoint.interval = interval;
    o.restart = RestartStrategy::FixedDelay {
        attempts: 20,
        delay: Duration::from_millis(5),
    };
    o
}

fn committed_output(model: &KafkaModel) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = model
        .read_committed(OUT)
        .into_iter()
        .map(|r| {
            let text = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap_or_default()).unwrap();
            (text(r.key), text(r.value))
        })
        .collect();
    got.sort();
    got
}

/// Runs the job with `faults` planned in the model, restarting the "process" (a
/// new node on the same state directory) whenever a fault halted it; checks that
/// every fault fired, that the job recovered, and that the committed output equals
/// the fault-free output; returns the model.
fn run_with(name: &str, faults: Vec<Fault>) -> KafkaModel {
    let root = tempfile::tempdir().unwrap();
    run_in(root.path(), name, faults, INTERVAL)
}

/// [`run_with`] in the directory `root` (state and staging), with periodic epochs
/// every `interval` (`None`: only the final epoch).
fn run_in(root: &Path, name: &str, faults: Vec<Fault>, interval: Option<Duration>) -> KafkaModel {
    let planned = faults.len();
    let model = KafkaModel::new().with_faults(faults);
    let staging = root.join("staging");
    let mut recoveries = 0;
    let mut processes = 0;
    loop {
        processes += 1;
        let node = Node::new(options(&root.join("state"), interval)).unwrap();
        match node.run(job(name, &model, &staging, interval)) {
            Ok(report) => {
                recoveries += report.restarts;
                break;
            }
            Err(e) if model.halted() && processes < 5 => {
                // The process died: start it again.
                eprintln!("{name}: process {processes} died: {e}");
                model.resume();
                recoveries += 1;
            }
            Err(e) => panic!("{name}: the job failed: {e}"),
        }
    }
    assert_eq!(model.fired().len(), planned, "fired: {:?}", model.fired());
    if planned == 0 {
        assert_eq!(recoveries, 0);
    }
    let got = committed_output(&model);
    let want = expected();
    assert_eq!(got.len(), want.len(), "no record lost or duplicated");
    assert!(
        got == want,
        "committed output differs from the fault-free output"
    );
    assert_eq!(model.open_transactions(), 0, "no transaction left open");
    // Only commit ledgers are left (one per sink partition that committed).
    let left: Vec<_> = std::fs::read_dir(staging.join(name))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".committed"))
        .collect();
    assert!(left.is_empty(), "staged copies left: {left:?}");
    model
}

#[test]
fn without_faults_every_epoch_commits_once_and_markers_are_committed() {
    let model = run_with("eos-clean", vec![]);
    // Every committed transaction holds one marker; nothing was produced twice.
    let markers = model.read_committed("eos-clean-markers");
    assert_eq!(markers.len() as u64, model.commits());
    assert_eq!(
        weir::connector::kafka::transaction_counts("eos-clean").committed(),
        model.commits()
    );
    assert_eq!(
        model.read_uncommitted(OUT).len() as u64,
        N,
        "nothing aborted or redone"
    );
    assert!(
        model.commits() > 4,
        "the run spans epochs: {}",
        model.commits()
    );
}

#[test]
fn a_crash_mid_epoch_before_the_flush() {
    run_with(
        "eos-mid-epoch",
        vec![Fault::new(Op::Send, 2000, Effect::HaltBefore).on_topic(OUT)],
    );
}

#[test]
fn a_send_error_and_a_panic_inside_the_sink_mid_epoch() {
    run_with(
        "eos-panic",
        vec![
            Fault::new(Op::Send, 1500, Effect::Error).on_topic(OUT),
            Fault::new(Op::Send, 1500, Effect::Panic).on_topic(OUT),
        ],
    );
}

#[test]
fn a_crash_after_the_flush_before_the_marker() {
    run_with(
        "eos-before-marker",
        vec![Fault::new(Op::Send, 6, Effect::HaltBefore).on_topic("-markers")],
    );
}

#[test]
fn a_failure_after_one_partition_acknowledged_the_barrier_before_the_epoch_completes() {
    // Partition 0 pre-commits the epoch (flush, marker, staged copy, ack); partition
    // 1 fails at its marker, so the epoch never completes and partition 0's
    // pre-committed transaction must never become visible.
    run_with(
        "eos-after-ack",
        vec![Fault::new(Op::Send, 4, Effect::Error)
            .on_topic("-markers")
            .on_id("-p1-")],
    );
}

#[test]
fn the_hard_case_a_crash_after_the_manifest_before_the_commit() {
    // The epoch is complete (its manifest durable), its transaction still open when
    // the process dies: the restarted process's fencing aborts it, and the redo
    // produces the epoch again from its staged copy.
    let model = run_with(
        "eos-hard-case",
        vec![Fault::new(Op::Commit, 6, Effect::HaltBefore)],
    );
    assert!(
        model.read_uncommitted(OUT).len() as u64 > N,
        "the epoch was produced again"
    );
}

#[test]
fn a_crash_during_the_commit_after_it_reached_the_broker() {
    // The commit took effect; the process died before hearing back, so also before
    // deleting the staged copy: the redo finds the marker and produces nothing.
    let model = run_with(
        "eos-during-commit",
        vec![Fault::new(Op::Commit, 6, Effect::HaltAfter)],
    );
    let produced = model.read_uncommitted(OUT).len() as u64;
    assert!(produced >= N);
}

#[test]
fn a_crash_during_a_redos_re_produce() {
    run_with(
        "eos-redo-crash",
        vec![
            Fault::new(Op::Commit, 6, Effect::HaltBefore),
            // The next sends are the redo's (recovery redoes before any sink runs).
            Fault::new(Op::Send, 2, Effect::HaltBefore).on_topic(OUT),
        ],
    );
}

#[test]
fn a_crash_after_a_redos_commit_reached_the_broker() {
    run_with(
        "eos-redo-commit",
        vec![
            Fault::new(Op::Commit, 6, Effect::HaltBefore),
            Fault::new(Op::Commit, 1, Effect::HaltAfter),
        ],
    );
}

#[test]
fn a_commit_that_fails_in_a_live_process_is_redone_at_once() {
    // The broker connection drops during the commit (the producer is lost, the
    // transaction stays open): the action fences it and produces the epoch again.
    run_with(
        "eos-commit-error",
        vec![Fault::new(Op::Commit, 6, Effect::DieBefore)],
    );
}

#[test]
fn the_broker_aborts_a_pending_transaction_on_its_timeout() {
    run_with(
        "eos-txn-timeout",
        vec![Fault::new(Op::Commit, 6, Effect::ExpireBefore)],
    );
}

/// Runs the job with no periodic epoch, so that every commit is the final
/// epoch's, with `faults` planned; then checks that a run after the finished one
/// starts from the beginning (its output is committed a second time).
fn crash_in_the_final_commit(name: &str, faults: Vec<Fault>) {
    let root = tempfile::tempdir().unwrap();
    let model = run_in(root.path(), name, faults, None);
    let node = Node::new(options(&root.path().join("state"), None)).unwrap();
    let report = node.run(job(name, &model, &root.path().join("staging"), None));
    assert!(report.is_ok(), "the run after the finished one: {report:?}");
    assert_eq!(
        model.read_committed(OUT).len() as u64,
        2 * N,
        "a run after a finished one starts from the beginning"
    );
}

#[test]
fn a_crash_in_the_final_commit_between_two_partitions_commits() {
    // The input ended and the final epoch's manifest is durable; one sink
    // partition's transaction committed, the other's is open when the process
    // dies. The restarted process must finish that commit, not read the input
    // again (the first partition's output would be committed twice).
    crash_in_the_final_commit(
        "eos-final-between",
        vec![Fault::new(Op::Commit, 2, Effect::HaltBefore)],
    );
}

#[test]
fn a_crash_in_the_final_commit_after_the_last_commit_reached_the_broker() {
    // Every transaction of the final epoch committed; the process died before it
    // could record that the run finished.
    crash_in_the_final_commit(
        "eos-final-after",
        vec![Fault::new(Op::Commit, 2, Effect::HaltAfter)],
    );
}

#[test]
fn a_failed_final_commit_in_a_live_process_is_finished_by_a_restart() {
    // The commit fails, and so does its redo's init_transactions, while the
    // process lives on: the final commit fails, the job restarts, and the restart
    // finishes the final commit.
    crash_in_the_final_commit(
        "eos-final-live",
        vec![
            Fault::new(Op::Commit, 1, Effect::Error),
            Fault::new(Op::Init, 1, Effect::Error),
        ],
    );
}
