//! A transactional sink written by a user, on the two-phase-commit sink trait alone:
//! under injected operator panics and restarts its committed output equals that of a
//! run without faults, record for record; the actions of an epoch that can never
//! complete are aborted, never committed; and what a failed attempt staged without
//! returning an action is swept before the restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::faults::Faults;
use common::Numbers;
use serde::{Deserialize, Serialize};
use weir::connector::{
    Committer, SinkError, SinkRecovery, TwoPhaseCommitSink, TwoPhaseCommitSinkFactory,
};
use weir::prelude::*;

/// Records per run; two source splits, paced so that a run spans many epochs.
const N: u64 = 20_000;

/// The sink's published output, standing in for an external store that takes an
/// idempotent write keyed by (partition, epoch): what committed, and what aborted.
/// One committed (partition, epoch): the staged file it came from, and its lines.
type CommittedEpoch = (PathBuf, Vec<String>);

#[derive(Default)]
struct Published {
    /// The lines of each committed (partition, epoch), with the staged file they
    /// came from.
    committed: Mutex<BTreeMap<(u32, u64), CommittedEpoch>>,
    /// The staged files of aborted actions.
    aborted: Mutex<Vec<StagedEpoch>>,
}

impl Published {
    /// Every committed line, sorted (each running sum is a distinct line, so equal
    /// sorted lists mean each record's output committed exactly once).
    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .committed
            .lock()
            .unwrap()
            .values()
            .flat_map(|(_, lines)| lines.iter().cloned())
            .collect();
        lines.sort();
        lines
    }

    /// The staged files whose lines were committed.
    fn committed_files(&self) -> BTreeSet<PathBuf> {
        self.committed
            .lock()
            .unwrap()
            .values()
            .map(|(file, _)| file.clone())
            .collect()
    }

    /// Checks that no aborted action was committed.
    fn assert_aborted_never_committed(&self) {
        let committed = self.committed_files();
        for aborted in self.aborted.lock().unwrap().iter() {
            assert!(
                !committed.contains(&aborted.file),
                "{aborted:?} was aborted and committed"
            );
        }
    }
}

/// Numbers the sink partitions this process creates, so that each names its staged
/// files apart (a restart may number its epochs as the failed attempt did, from
/// after the restored epoch).
static PARTS: AtomicU64 = AtomicU64::new(0);

/// The commit action: the staged file of one partition's epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StagedEpoch {
    partition: u32,
    epoch: u64,
    file: PathBuf,
}

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        what: what.display().to_string(),
        source,
    }
}

/// Makes partition 1 fail in its pre-commit of an epoch that partition 0 has
/// already pre-committed (after staging its own file for it, without returning the
/// action), once: that epoch can never complete, partition 0's action of it must be
/// aborted, and partition 1's staged file swept.
#[derive(Default)]
struct Trap {
    staged_by_0: Mutex<BTreeSet<u64>>,
    fired_at: Mutex<Option<u64>>,
}

impl Trap {
    fn at_barrier(&self, partition: u32, epoch: u64, staged: bool) {
        if partition == 0 {
            if staged {
                self.staged_by_0.lock().unwrap().insert(epoch);
            }
            return;
        }
        if !staged || epoch < 3 || self.fired_at.lock().unwrap().is_some() {
            return;
        }
        // Give partition 0 a moment to reach the same barrier (it needs no more
        // input for it: both sources have sent it).
        std::thread::sleep(Duration::from_millis(20));
        if self.staged_by_0.lock().unwrap().contains(&epoch) {
            *self.fired_at.lock().unwrap() = Some(epoch);
            panic!("injected fault in partition 1's pre-commit of epoch {epoch}");
        }
    }

    fn fired_at(&self) -> Option<u64> {
        *self.fired_at.lock().unwrap()
    }
}

/// The factory: stages under `root/staging`, publishes into `published`.
#[derive(Clone)]
struct EpochLog {
    root: PathBuf,
    published: Arc<Published>,
    trap: Option<Arc<Trap>>,
}

impl EpochLog {
    fn new(root: &Path) -> Self {
        EpochLog {
            root: root.to_path_buf(),
            published: Arc::default(),
            trap: None,
        }
    }

    fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
}

/// One partition: buffers the epoch's lines in memory, stages them in a file at the
/// barrier.
struct EpochLogPart {
    partition: u32,
    /// This partition's number among those the process created.
    instance: u64,
    staging: PathBuf,
    lines: Vec<String>,
    pending: Vec<StagedEpoch>,
    trap: Option<Arc<Trap>>,
}

impl TwoPhaseCommitSink<(u64, u64)> for EpochLogPart {
    type Action = StagedEpoch;

    fn write(&mut self, (key, sum): (u64, u64)) -> Result<(), SinkError> {
        self.lines.push(format!("{key}\t{sum}"));
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<Vec<StagedEpoch>, SinkError> {
        let staged = !self.lines.is_empty();
        if staged {
            let file = self.staging.join(format!(
                "p{}-e{epoch:020}-i{}",
                self.partition, self.instance
            ));
            std::fs::write(&file, self.lines.join("\n")).map_err(io(&file))?;
            self.lines.clear();
            self.pending.push(StagedEpoch {
                partition: self.partition,
                epoch,
                file,
            });
        }
        if let Some(trap) = &self.trap {
            trap.at_barrier(self.partition, epoch, staged);
        }
        Ok(self.pending.clone())
    }

    fn committed(&mut self, epoch: u64) {
        self.pending.retain(|s| s.epoch > epoch);
    }
}

/// Publishes a staged epoch into the shared store (once), or discards it.
struct Publisher {
    published: Arc<Published>,
}

impl Committer for Publisher {
    type Action = StagedEpoch;

    fn commit(&self, action: &StagedEpoch) -> Result<(), SinkError> {
        let mut committed = self.published.committed.lock().unwrap();
        let key = (action.partition, action.epoch);
        if committed.contains_key(&key) {
            return Ok(());
        }
        let text = std::fs::read_to_string(&action.file).map_err(io(&action.file))?;
        let lines = text.split('\n').map(str::to_owned).collect();
        committed.insert(key, (action.file.clone(), lines));
        std::fs::remove_file(&action.file).map_err(io(&action.file))
    }

    fn abort(&self, action: &StagedEpoch) -> Result<(), SinkError> {
        match std::fs::remove_file(&action.file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(&action.file)(e));
            }
            _ => {}
        }
        self.published.aborted.lock().unwrap().push(action.clone());
        Ok(())
    }
}

impl TwoPhaseCommitSinkFactory<(u64, u64)> for EpochLog {
    type Sink = EpochLogPart;
    type Committer = Publisher;

    fn name(&self) -> String {
        "epoch-log".into()
    }

    fn create(&self, partition: u32, _parallelism: u32) -> Result<EpochLogPart, SinkError> {
        Ok(EpochLogPart {
            partition,
            instance: PARTS.fetch_add(1, Ordering::Relaxed),
            staging: self.staging(),
            lines: Vec::new(),
            pending: Vec::new(),
            trap: self.trap.clone(),
        })
    }

    fn committer(&self) -> Publisher {
        Publisher {
            published: self.published.clone(),
        }
    }

    /// Sweeps the staging directory and retracts what was published after the
    /// restored epoch (everything, for a run from the beginning).
    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        let staging = self.staging();
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        for entry in std::fs::read_dir(&staging).map_err(io(&staging))? {
            let path = entry.map_err(io(&staging))?.path();
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        self.published
            .committed
            .lock()
            .unwrap()
            .retain(|(_, epoch), _| recovery.restored.is_some_and(|r| *epoch <= r));
        Ok(())
    }
}

/// Key of a record: records of one key all come from one source split (x mod 2
/// decides the split), so each key's running sums are the same in every run.
fn key_of(x: u64) -> u64 {
    x % 194
}

/// numbers -> (key, x) [faults] -> running sum per key [faults] -> the epoch log.
fn job(sink: EpochLog, source_faults: Faults, keyed_faults: Faults) -> Job {
    Job::new("epoch-log")
        .source(Numbers::upto(N).paced(Duration::from_millis(2)))
        .map(move |x: u64| {
            source_faults.check(x);
            (key_of(x), x)
        })
        .group_by_key()
        .reduce(move |sum: u64, x: u64| {
            keyed_faults.check(x);
            sum + x
        })
        .sink(sink)
}

fn options(state: &Path) -> EngineOptions {
    let mut o = EngineOptions::for_tests(2);
    o.state_dir = Some(state.to_path_buf());
    o.checkpoint.interval = Some(Duration::from_millis(40));
    o.restart = RestartStrategy::FixedDelay {
        attempts: 20,
        delay: Duration::from_millis(5),
    };
    o
}

/// The committed output of a run without faults.
fn reference(root: &Path) -> Vec<String> {
    let sink = EpochLog::new(&root.join("reference-sink"));
    let report = Node::new(options(&root.join("reference-state")))
        .unwrap()
        .run(job(sink.clone(), Faults::default(), Faults::default()))
        .expect("reference run");
    assert_eq!(report.restarts, 0);
    let lines = sink.published.lines();
    assert_eq!(lines.len() as u64, N, "one running sum per record");
    assert!(sink.published.aborted.lock().unwrap().is_empty());
    lines
}

/// What `got` misses and has too many of, compared with `want` (both sorted).
fn difference(got: &[String], want: &[String]) -> String {
    let count = |lines: &[String]| {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for line in lines {
            *counts.entry(line.clone()).or_default() += 1;
        }
        counts
    };
    let (got, want) = (count(got), count(want));
    let missing: Vec<&String> = want
        .iter()
        .filter(|(l, n)| got.get(*l).copied().unwrap_or(0) < **n)
        .map(|(l, _)| l)
        .take(5)
        .collect();
    let extra: Vec<&String> = got
        .iter()
        .filter(|(l, n)| want.get(*l).copied().unwrap_or(0) < **n)
        .map(|(l, _)| l)
        .take(5)
        .collect();
    format!("missing {missing:?}, extra {extra:?}")
}

fn staged_files(sink: &EpochLog) -> Vec<PathBuf> {
    std::fs::read_dir(sink.staging())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn a_user_transactional_sink_is_exactly_once_under_operator_panics_and_restarts() {
    let root = tempfile::tempdir().unwrap();
    let want = reference(root.path());
    for seed in [11u64, 4242] {
        let sink = EpochLog::new(&root.path().join(format!("sink-{seed}")));
        let source_faults = Faults::seeded(seed, 3, N);
        let keyed_faults = Faults::seeded(seed ^ 0x5EED, 3, N);
        let report = Node::new(options(&root.path().join(format!("state-{seed}"))))
            .unwrap()
            .run(job(
                sink.clone(),
                source_faults.clone(),
                keyed_faults.clone(),
            ))
            .expect("the job recovers from every injected panic");
        assert_eq!(source_faults.fired() + keyed_faults.fired(), 6);
        // Two faults may fire in one attempt (in two actors at once, or one while
        // the other's failure is being torn down): they share one restart.
        assert!(
            (1..=6).contains(&report.restarts),
            "seed {seed}: {} restarts for 6 faults",
            report.restarts
        );
        let got = sink.published.lines();
        assert_eq!(
            got.len(),
            want.len(),
            "seed {seed}: no record lost or repeated"
        );
        assert!(
            got == want,
            "seed {seed}: output differs from the run without faults: {}",
            difference(&got, &want)
        );
        sink.published.assert_aborted_never_committed();
        assert!(staged_files(&sink).is_empty(), "nothing left staged");
    }
}

#[test]
fn the_actions_of_an_epoch_that_can_never_complete_are_aborted_not_committed() {
    let root = tempfile::tempdir().unwrap();
    let want = reference(root.path());
    let trap = Arc::new(Trap::default());
    let sink = EpochLog {
        trap: Some(trap.clone()),
        ..EpochLog::new(&root.path().join("sink"))
    };
    let report = Node::new(options(&root.path().join("state")))
        .unwrap()
        .run(job(sink.clone(), Faults::default(), Faults::default()))
        .expect("the job recovers from the failed pre-commit");
    let epoch = trap
        .fired_at()
        .expect("partition 1 failed once while partition 0 had pre-committed the epoch");
    assert_eq!(report.restarts, 1);
    let aborted = sink.published.aborted.lock().unwrap().clone();
    assert!(
        aborted.iter().any(|a| (a.partition, a.epoch) == (0, epoch)),
        "partition 0's action of epoch {epoch} was aborted: {aborted:?}"
    );
    assert!(
        !aborted.iter().any(|a| (a.partition, a.epoch) == (1, epoch)),
        "partition 1 returned no action for epoch {epoch}, so none was aborted: {aborted:?}"
    );
    sink.published.assert_aborted_never_committed();
    assert!(
        staged_files(&sink).is_empty(),
        "partition 1's staged file of epoch {epoch} was swept"
    );
    assert!(
        sink.published.lines() == want,
        "output equals the fault-free run's"
    );
}
