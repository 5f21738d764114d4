//! Exactly-once under failure: panics injected at seeded records, restarts from the
//! last complete epoch, savepoints and restore at another parallelism, snapshot
//! corruption, restart-strategy bounds. Every faulty run's committed output is
//! compared record for record with a run without faults.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::faults::Faults;
use common::Numbers;
use weir::prelude::*;

/// Records per run; two source splits, each paced so a run spans many epochs.
const N: u64 = 40_000;

/// Key of a record: records of one key all come from one source split (x mod 2
/// decides the split), so each key's running sums are the same in every run.
fn key_of(x: u64) -> u64 {
    x % 194
}

/// numbers -> (key, x) [fault in the source stage] -> running sum per key [fault in
/// the keyed stage] -> exactly-once file sink.
fn job(out: &Path, source_faults: Faults, keyed_faults: Faults) -> Job {
    job_reading(
        Numbers::upto(N).paced(Duration::from_millis(2)),
        out,
        source_faults,
        keyed_faults,
    )
}

/// [`job`] reading `source` (which must number its records as `Numbers::upto(N)`
/// does).
fn job_reading(source: Numbers, out: &Path, source_faults: Faults, keyed_faults: Faults) -> Job {
    Job::new("sums")
        .source(source)
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

fn options(state: &Path, parallelism: u32) -> EngineOptions {
    let mut o = EngineOptions::for_tests(parallelism);
    o.state_dir = Some(state.to_path_buf());
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

/// The committed output of a run without faults (computed once per test).
fn reference(root: &Path) -> Vec<String> {
    let out = root.join("reference-out");
    let node = Node::new(options(&root.join("reference-state"), 2)).expect("node");
    let report = node
        .run(job(&out, Faults::default(), Faults::default()))
        .expect("reference run");
    assert_eq!(report.restarts, 0);
    let lines = read_committed(&out).expect("reference output");
    assert_eq!(lines.len() as u64, N, "one running sum per record");
    sorted(lines)
}

#[test]
fn panics_at_seeded_records_recover_to_the_output_of_a_run_without_faults() {
    let root = tempfile::tempdir().unwrap();
    let want = reference(root.path());
    for seed in [7u64, 1234] {
        let out = root.path().join(format!("out-{seed}"));
        let source_faults = Faults::seeded(seed, 3, N);
        let keyed_faults = Faults::seeded(seed ^ 0xABCD, 3, N);
        let node = Node::new(options(&root.path().join(format!("state-{seed}")), 2)).unwrap();
        let report = node
            .run(job(&out, source_faults.clone(), keyed_faults.clone()))
            .expect("the job recovers from every injected panic");
        assert_eq!(
            source_faults.fired() + keyed_faults.fired(),
            6,
            "every fault fired"
        );
        // Two faults may fire in one attempt (in two actors at once, or one while
        // the other's failure is being torn down): they share one restart.
        assert!(
            (1..=6).contains(&report.restarts),
            "seed {seed}: {} restarts for 6 faults",
            report.restarts
        );
        assert!(report.checkpoints.completed > 0);
        let got = sorted(read_committed(&out).unwrap());
        assert_eq!(
            got.len(),
            want.len(),
            "seed {seed}: no record lost or duplicated"
        );
        assert!(
            got == want,
            "seed {seed}: output differs from the run without faults"
        );
    }
}

#[test]
fn the_restart_strategy_bounds_restarts_and_keeps_the_last_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let mut o = options(&root.path().join("state"), 2);
    o.restart = RestartStrategy::FixedDelay {
        attempts: 2,
        delay: Duration::from_millis(1),
    };
    o.poison.enabled = false;
    let node = Node::new(o).unwrap();
    // A fault that fires every time: the strategy gives up after 2 restarts.
    let always = Job::new("always")
        .source(Numbers::upto(N).paced(Duration::from_millis(2)))
        .map(|x: u64| {
            assert!(x != 30_001, "permanent fault at {x}");
            (key_of(x), x)
        })
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(CountingSink::new());
    let err = node.run(always).expect_err("the job must give up");
    let text = err.to_string();
    match &err {
        JobError::RestartsExhausted {
            restarts,
            kept_epoch,
            ..
        } => {
            assert_eq!(*restarts, 2, "{text}");
            assert!(kept_epoch.is_some(), "a snapshot is kept: {text}");
        }
        other => panic!("expected RestartsExhausted, got {other}"),
    }
    assert!(text.contains("permanent fault at 30001"), "{text}");
    assert!(text.contains("stage"), "{text}");
}

#[test]
fn a_savepoint_restores_at_another_parallelism_with_the_same_output() {
    let root = tempfile::tempdir().unwrap();
    let want = reference(root.path());
    for (p1, p2) in [(2u32, 3u32), (2, 1)] {
        let out = root.path().join(format!("out-{p1}-{p2}"));
        let state = root.path().join(format!("state-{p1}-{p2}"));
        let (tx, rx) = std::sync::mpsc::channel();
        let (reply_tx, reply_rx) = std::sync::mpsc::channel();
        // The first run reads the first quarter of the input, then idles (its
        // input never ends), and stops with a savepoint asked for once an eighth was
        // read: the savepoint completes however slow the machine is, and the rest
        // of the input is left to the restored run.
        let mut ask = Some((tx, reply_tx));
        let observer: weir::job::node::Observer = Box::new(move |live| {
            if live.records_read() >= N / 8 {
                if let Some((tx, reply)) = ask.take() {
                    tx.send(SavepointCommand {
                        stop: true,
                        reply: Some(reply),
                    })
                    .unwrap();
                }
            }
        });
        let node = Node::new(options(&state, p1)).unwrap();
        let first_quarter = Numbers::upto(N / 4)
            .then_idle()
            .paced(Duration::from_millis(2));
        let first = node
            .run_with(
                job_reading(first_quarter, &out, Faults::default(), Faults::default()),
                RunControl {
                    savepoints: Some(rx),
                    observer: Some(observer),
                    observe_every: Some(Duration::from_millis(5)),
                    ..Default::default()
                },
            )
            .unwrap();
        let savepoint: PathBuf = reply_rx
            .recv()
            .expect("the savepoint was asked for")
            .expect("savepoint taken");
        assert_eq!(first.savepoint.as_ref(), Some(&savepoint));
        let partial = read_committed(&out).unwrap().len() as u64;
        assert!(
            partial <= N / 4,
            "stopped in the first quarter ({partial} of {N} committed)"
        );
        drop(node);
        let mut o = options(&root.path().join(format!("state2-{p1}-{p2}")), p2);
        o.workers = p2 as usize;
        o.from_savepoint = Some(savepoint);
        let node = Node::new(o).unwrap();
        node.run(job(&out, Faults::default(), Faults::default()))
            .expect("restored run");
        let got = sorted(read_committed(&out).unwrap());
        assert!(
            got == want,
            "{p1} -> {p2}: {} lines, want {}",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn a_flipped_byte_in_the_newest_snapshot_falls_back_to_the_previous_epoch() {
    let root = tempfile::tempdir().unwrap();
    let want = reference(root.path());
    let out = root.path().join("out");
    let state = root.path().join("state");
    // Run 1 fails for good late in the input, leaving complete epochs behind.
    let mut o = options(&state, 2);
    o.restart = RestartStrategy::None;
    let failing = Faults::at(&[30_001]);
    Node::new(o)
        .unwrap()
        .run(job(&out, failing, Faults::default()))
        .expect_err("run 1 fails");
    let manifests = state.join("snapshots").join("sums").join("manifests");
    let mut epochs: Vec<u64> = std::fs::read_dir(&manifests)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".manifest")?.parse().ok())
        .collect();
    epochs.sort();
    assert!(epochs.len() >= 2, "complete epochs kept: {epochs:?}");
    let newest = *epochs.last().unwrap();
    // Flip one byte in a chunk written for the newest epoch only.
    let chunks = state.join("snapshots").join("sums").join("chunks");
    let victim = std::fs::read_dir(&chunks)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{newest}-")) && n.ends_with(".chunk"))
        })
        .expect("a chunk of the newest epoch");
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    // Run 2 resumes from the previous complete epoch and finishes the input.
    let report = Node::new(options(&state, 2))
        .unwrap()
        .run(job(&out, Faults::default(), Faults::default()))
        .expect("run 2");
    let restored = report.restored_from.expect("run 2 restored");
    assert!(restored < newest, "fell back from {newest} to {restored}");
    let got = sorted(read_committed(&out).unwrap());
    assert!(got == want, "{} lines, want {}", got.len(), want.len());
}

#[test]
fn a_record_failing_on_consecutive_replays_goes_to_the_dead_letters() {
    const POISON: u64 = 25_001;
    let root = tempfile::tempdir().unwrap();
    let sums = |out: &Path, skip_poison: bool| {
        Job::new("sums")
            .source(Numbers::upto(N).paced(Duration::from_millis(2)))
            .filter(move |x: &u64| !(skip_poison && *x == POISON))
            .map(|x: u64| (key_of(x), x))
            .group_by_key()
            .reduce(|sum: u64, x: u64| {
                assert!(x != POISON, "cannot add {x}");
                sum + x
            })
            .sink(TransactionalFileSink::new(out, tab_separated))
    };
    // The reference never sees the poison record.
    let reference = root.path().join("reference");
    Node::new(options(&root.path().join("reference-state"), 2))
        .unwrap()
        .run(sums(&reference, true))
        .unwrap();
    let want = sorted(read_committed(&reference).unwrap());

    let letters_path = root.path().join("dead-letters.jsonl");
    let letters = DeadLetters::to_file(&letters_path).unwrap();
    let mut o = options(&root.path().join("state"), 2);
    o.poison.replays = 2;
    let out = root.path().join("out");
    let report = Node::new(o)
        .unwrap()
        .with_dead_letters(letters.clone())
        .run(sums(&out, false))
        .expect("the poison record is diverted, the job finishes");
    assert_eq!(report.restarts, 3, "the first play, then 2 replays fail");
    assert_eq!(letters.count(), 1);
    let text = std::fs::read_to_string(&letters_path).unwrap();
    assert!(text.contains(&format!("key {}", key_of(POISON))), "{text}");
    assert!(text.contains("cannot add 25001"), "{text}");
    let got = sorted(read_committed(&out).unwrap());
    assert!(got == want, "{} lines, want {}", got.len(), want.len());
}

/// What a [`Told`] source's single split saw: every position it gave, and every
/// position it was told had completed.
#[derive(Clone, Default)]
struct ToldLog {
    given: Arc<Mutex<Vec<u64>>>,
    told: Arc<Mutex<Vec<u64>>>,
}

/// The numbers `0..n`, one split, a few per read with a pause, recording positions;
/// reporting a completed position fails every third time (which must not matter).
#[derive(Clone)]
struct Told {
    n: u64,
    log: ToldLog,
}

struct ToldReader {
    next: u64,
    n: u64,
    log: ToldLog,
}

impl weir::connector::Source for Told {
    type Item = u64;
    type Reader = ToldReader;
    fn name(&self) -> String {
        "told".into()
    }
    fn max_parallelism(&self) -> Option<u32> {
        Some(1)
    }
    fn reader(
        &self,
        _split: u32,
        _splits: u32,
    ) -> Result<ToldReader, weir::connector::SourceError> {
        Ok(ToldReader {
            next: 0,
            n: self.n,
            log: self.log.clone(),
        })
    }
}

impl weir::connector::SourceReader for ToldReader {
    type Item = u64;
    fn read<C: weir::operator::Collector<u64>>(
        &mut self,
        _budget: usize,
        out: &mut C,
    ) -> Result<weir::connector::ReadStatus, weir::connector::SourceError> {
        for _ in 0..10 {
            if self.next >= self.n {
                return Ok(weir::connector::ReadStatus::Exhausted);
            }
            out.collect(self.next);
            self.next += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
        Ok(weir::connector::ReadStatus::More)
    }

    fn position(&self) -> Option<Vec<u8>> {
        self.log.given.lock().unwrap().push(self.next);
        Some(weir::connector::source::counter_position(self.next))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), weir::connector::SourceError> {
        self.next = weir::connector::source::decode_counter_position("told", position)?;
        Ok(())
    }

    fn position_committed(&mut self, position: &[u8]) -> Result<(), weir::connector::SourceError> {
        let at = weir::connector::source::decode_counter_position("told", position)?;
        let mut told = self.log.told.lock().unwrap();
        told.push(at);
        if told.len().is_multiple_of(3) {
            return Err(weir::connector::SourceError::Invalid(
                "a report that fails".into(),
            ));
        }
        Ok(())
    }
}

#[test]
fn a_source_is_told_the_positions_of_completed_epochs_in_order() {
    let root = tempfile::tempdir().unwrap();
    let log = ToldLog::default();
    let n = 3000;
    let sink = CollectSink::<u64>::new();
    let job = Job::new("told")
        .source(Told {
            n,
            log: log.clone(),
        })
        .sink(sink.clone());
    let report = Node::new(options(root.path(), 1))
        .unwrap()
        .run(job)
        .expect("a failed report does not fail the job");
    assert_eq!(report.restarts, 0);
    assert_eq!(sink.items().len() as u64, n);
    let given = log.given.lock().unwrap().clone();
    let told = log.told.lock().unwrap().clone();
    assert!(
        told.len() >= 2,
        "several epochs completed while the source ran: told {told:?}"
    );
    assert!(
        told.len() as u64 <= report.checkpoints.completed,
        "at most one report per completed epoch: told {told:?}, {:?}",
        report.checkpoints
    );
    assert!(
        told.windows(2).all(|w| w[0] <= w[1]),
        "in epoch order: {told:?}"
    );
    for at in &told {
        assert!(
            given.contains(at),
            "{at} is a position the reader gave at a barrier: {given:?}"
        );
    }
}
