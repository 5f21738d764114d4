//! Several jobs on one node at once, as `weir node` will run them: each runs to its
//! own exact result, checkpoints and restores on its own, and the status board keeps
//! each job's status, savepoint requests and state queries apart.

mod common;

use std::time::Duration;

use common::faults::Faults;
use common::Numbers;
use weir::prelude::*;
use weir::status::JobState;

const N: u64 = 6_000;

/// numbers -> (x mod 31, x) [faults] -> running sum per key -> exactly-once files.
fn job(name: &str, out: &std::path::Path, faults: Faults) -> Job {
    Job::new(name)
        .source(Numbers::upto(N).paced(Duration::from_millis(1)))
        .map(move |x: u64| {
            faults.check(x);
            (x % 31, x)
        })
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(TransactionalFileSink::new(out, tab_separated))
}

/// The final sum of every key, from a run's committed running sums.
fn finals(out: &std::path::Path) -> std::collections::BTreeMap<u64, u64> {
    let mut last = std::collections::BTreeMap::new();
    for line in read_committed(out).unwrap() {
        let (k, v) = line.split_once('\t').unwrap();
        let (k, v): (u64, u64) = (k.parse().unwrap(), v.parse().unwrap());
        let e = last.entry(k).or_insert(0);
        *e = v.max(*e);
    }
    last
}

#[test]
fn two_jobs_on_one_node_run_side_by_side_each_to_its_own_exact_result() {
    let root = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::for_tests(2);
    options.state_dir = Some(root.path().join("state"));
    options.checkpoint.interval = Some(Duration::from_millis(30));
    options.restart = RestartStrategy::FixedDelay {
        attempts: 5,
        delay: Duration::from_millis(5),
    };
    let node = Node::new(options).unwrap();
    let (out_a, out_b) = (root.path().join("a"), root.path().join("b"));
    // Job a fails twice (and restores from its own snapshots); job b runs clean.
    let faults_a = Faults::at(&[1_000, 4_000]);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| node.run(job("job-a", &out_a, faults_a.clone())));
        let b = s.spawn(|| node.run(job("job-b", &out_b, Faults::default())));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (a.expect("job a recovers"), b.expect("job b runs"));
    assert_eq!(faults_a.fired(), 2);
    assert!(a.restarts >= 1);
    assert_eq!(b.restarts, 0, "job a's failures did not touch job b");
    let mut want = std::collections::BTreeMap::new();
    for x in 0..N {
        *want.entry(x % 31).or_insert(0) += x;
    }
    assert_eq!(finals(&out_a), want);
    assert_eq!(finals(&out_b), want);
    assert_eq!(read_committed(&out_a).unwrap().len() as u64, N);
    assert_eq!(read_committed(&out_b).unwrap().len() as u64, N);
    let board = node.status();
    let (sa, sb) = (board.job("job-a").unwrap(), board.job("job-b").unwrap());
    assert_eq!(
        (sa.state, sb.state),
        (JobState::Finished, JobState::Finished)
    );
    assert!(sa.restarts >= 1 && sb.restarts == 0);
    assert!(sa.checkpoints.completed > 0 && sb.checkpoints.completed > 0);
}
