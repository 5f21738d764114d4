//! Checkpoints in the shared snapshot store on S3 (a moto server, `common::moto`):
//! a keyed job with panics injected at seeded records restores from S3 to exactly
//! the output of a run without faults, and a run that stops is resumed by another
//! node, with a state directory of its own, from the snapshot in S3 alone.

mod common;

use std::path::Path;
use std::time::Duration;

use common::faults::Faults;
use common::moto::MotoServer;
use common::Numbers;
use weir::prelude::*;
use weir::snapshot_store::{self, SnapshotStoreSpec};
use weir_actors::snapshot::SnapshotStore;

/// Records per run; two source splits, each paced so a run spans many epochs.
const N: u64 = 10_000;

/// Records of one key all come from one split (x mod 2 decides the split, and 194
/// is even), so each key's running sums are the same in every run.
fn key_of(x: u64) -> u64 {
    x % 194
}

/// numbers -> (key, x) [faults] -> running sum per key [faults] -> exactly-once
/// file sink.
fn job(out: &Path, source_faults: Faults, keyed_faults: Faults) -> Job {
    Job::new("sums")
        .source(Numbers::upto(N).paced(Duration::from_millis(1)))
        .map(move |x: u64| {
            source_faults.check(x);
            (key_of(x), x)
        })
        .group_by_key()
        .reduce(move |sum: u64, x: u64| {
            keyed_faults.check(x);
            sum + x
        })
        .sink(TransactionalFileSink::new(out, tab_separated))
}

fn options(state: &Path, snapshots: Option<SnapshotStoreSpec>) -> EngineOptions {
    let mut o = EngineOptions::for_tests(2);
    o.state_dir = Some(state.to_path_buf());
    o.snapshot_store = snapshots;
    o.checkpoint.interval = Some(Duration::from_millis(50));
    o.restart = RestartStrategy::FixedDelay {
        attempts: 20,
        delay: Duration::from_millis(5),
    };
    o
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// The committed output of a run without faults, with local snapshots.
fn reference(root: &Path) -> Vec<String> {
    let out = root.join("reference-out");
    let node = Node::new(options(&root.join("reference-state"), None)).unwrap();
    node.run(job(&out, Faults::default(), Faults::default()))
        .expect("reference run");
    let lines = sorted(read_committed(&out).unwrap());
    assert_eq!(lines.len() as u64, N, "one running sum per record");
    lines
}

#[test]
fn panics_at_seeded_records_restore_from_s3_to_the_output_of_a_run_without_faults() {
    let moto = MotoServer::start();
    let root = tempfile::tempdir().unwrap();
    let want = reference(root.path());
    let spec = moto.spec("faulty");
    let out = root.path().join("out");
    let source_faults = Faults::seeded(11, 2, N);
    let keyed_faults = Faults::seeded(0xBEEF, 2, N);
    let node = Node::new(options(&root.path().join("state"), Some(spec.clone()))).unwrap();
    let report = node
        .run(job(&out, source_faults.clone(), keyed_faults.clone()))
        .expect("the job recovers from every injected panic");
    assert_eq!(
        source_faults.fired() + keyed_faults.fired(),
        4,
        "every fault fired"
    );
    assert!(report.restarts >= 1, "{} restarts", report.restarts);
    assert!(report.checkpoints.completed > 0);
    let got = sorted(read_committed(&out).unwrap());
    assert_eq!(got.len(), want.len(), "no record lost or duplicated");
    assert!(got == want, "output differs from the run without faults");
    // The epochs are in S3, not on local disk.
    let store = snapshot_store::open(&spec).unwrap();
    assert!(!store.manifests("sums").unwrap().is_empty());
    assert!(!root.path().join("state/snapshots").exists());
}

#[test]
fn a_stopped_run_is_resumed_by_another_node_from_the_snapshot_in_s3() {
    let moto = MotoServer::start();
    let root = tempfile::tempdir().unwrap();
    let want = reference(root.path());
    let spec = moto.spec("resumed");
    let out = root.path().join("out");

    // The first node fails for good past the middle of the input (no restarts).
    let mut first = options(&root.path().join("state-a"), Some(spec.clone()));
    first.restart = RestartStrategy::None;
    first.poison.enabled = false;
    let stop_at = Faults::at(&[N * 3 / 4]);
    let err = Node::new(first)
        .unwrap()
        .run(job(&out, Faults::default(), stop_at.clone()))
        .expect_err("the first run stops at its fault");
    assert_eq!(stop_at.fired(), 1, "{err}");
    let store = snapshot_store::open(&spec).unwrap();
    let saved = store
        .latest_complete("sums")
        .unwrap()
        .expect("the stopped run left a complete epoch in S3");

    // Another node, with a state directory of its own, resumes from S3.
    let second = options(&root.path().join("state-b"), Some(spec));
    let report = Node::new(second)
        .unwrap()
        .run(job(&out, Faults::default(), Faults::default()))
        .expect("the second run finishes");
    assert_eq!(
        report.restored_from,
        Some(saved.epoch),
        "resumed from the epoch the first run left"
    );
    let got = sorted(read_committed(&out).unwrap());
    assert_eq!(got.len(), want.len(), "no record lost or duplicated");
    assert!(got == want, "output differs from the run without faults");
}
