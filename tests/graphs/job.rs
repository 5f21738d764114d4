//! The graph job the fault, savepoint, serialized-exchange and kill tests run, the
//! faults they inject into it, and the output it must give (computed here, apart
//! from the engine).
//!
//! ```text
//!  a (numbers, event time) -map-\
//!                                union -map- key_by ---\
//!  b (numbers, event time) -map-/                       interval join -map- share
//!  c (numbers, event time) ---------------- key_by ---/                       |
//!     +--------------------------------------------------------------------+
//!     |-> key_by -> connect_broadcast(rules) -> RateByRule  -> sink "rated"
//!     |-> rebalance -> BucketCounter (operator state)       -> sink "buckets"
//!     |-> key_by -> tumbling window count                   -> sink "windows"
//! ```
//!
//! Every source number `n` is its own event time. `a` and `b` tag their numbers as
//! `2n` and `2n + 1` (the left side of the join), `c`'s numbers are the right
//! side, and a left `n` meets the right numbers of its key (`n mod 7`) within 7 ms:
//! `n - 7`, `n` and `n + 7`. Each pair is rated by the rule in effect at its time
//! (broadcast state), counted by bucket in a non-keyed operator whose counts are
//! operator state (list redistribution), and counted per key and 100 ms window.
//! All three outputs go to exactly-once file sinks, and none depends on the order
//! in which records of different inputs arrive.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::connector::{ReadStatus, SourceError};
use weir::join::{IntervalJoin, Joined};
use weir::prelude::*;
use weir::window::{Tumbling, WindowResult};

use crate::common::paced::EpochPaced;
use crate::common::Numbers;

/// Keys of the join: a number's key is `n mod KEYS`.
pub const KEYS: u64 = 7;
/// The interval join meets `l` with `r` when `|l.ts - r.ts| <= BOUND`.
pub const BOUND: i64 = 7;
/// The windows of the window count, in ms of event time.
pub const WINDOW_MS: i64 = 100;
/// Buckets of the bucket counter.
pub const BUCKETS: u64 = 8;

/// A pair of the join: the key, the left id (`2n + source`), the right number.
pub type Pair = Joined<u64, u64, u64>;

/// The time at which each rule takes effect, and its multiplier: the rules at `0`,
/// `n / 3` and `2n / 3` for an input of `n` numbers.
pub fn rules(n: u64) -> Vec<(i64, u64)> {
    vec![(0, 1), ((n / 3) as i64, 2), ((2 * n / 3) as i64, 3)]
}

/// Panics the first time it sees each of its targets (a transient fault: after the
/// restart the record goes through).
#[derive(Clone, Default)]
pub struct Faults {
    targets: Arc<HashSet<u64>>,
    fired: Arc<Mutex<HashSet<u64>>>,
}

impl Faults {
    /// `count` targets drawn from `seed` (SplitMix64) in `0..range`.
    pub fn seeded(seed: u64, count: usize, range: u64) -> Self {
        let mut targets = HashSet::new();
        let mut x = seed;
        while targets.len() < count {
            x = weir::connector::generator::splitmix64(x);
            targets.insert(x % range);
        }
        Faults {
            targets: Arc::new(targets),
            fired: Arc::default(),
        }
    }

    /// Panics if `id` is a target seen for the first time.
    pub fn check(&self, id: u64, stage: &str) {
        if self.targets.contains(&id) {
            let first = self.fired.lock().map(|mut f| f.insert(id)).unwrap_or(false);
            if first {
                panic!("injected fault in {stage} at {id}");
            }
        }
    }

    /// Checks the pair of left id `left` with the right number of the same `n`
    /// (each left id has exactly one such pair), by its left id.
    pub fn check_pair(&self, left: u64, right: u64, stage: &str) {
        if right == left / 2 {
            self.check(left, stage);
        }
    }

    /// How many targets fired.
    pub fn fired(&self) -> usize {
        self.fired.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// How many targets there are.
    pub fn targets(&self) -> usize {
        self.targets.len()
    }
}

/// The faults of each stage of the job.
#[derive(Clone, Default)]
pub struct StageFaults {
    /// Source `a`'s stage, by number.
    pub source: Faults,
    /// The union's stage, by left id.
    pub union: Faults,
    /// The join's stage, by the left id of a pair.
    pub join: Faults,
    /// The broadcast-state stage, by the left id of a pair.
    pub rated: Faults,
    /// The bucket counter (inside the operator), by the left id of a pair.
    pub buckets: Faults,
    /// The window stage, by `window start * KEYS + key`.
    pub windows: Faults,
}

impl StageFaults {
    /// Faults in every stage but the sources `b` and `c` and the rules, drawn from
    /// `seed`, for an input of `n` numbers.
    pub fn seeded(seed: u64, n: u64) -> Self {
        let windows = (n as i64 / WINDOW_MS).max(1) as u64;
        StageFaults {
            source: Faults::seeded(seed, 2, n),
            union: Faults::seeded(seed ^ 0x1, 2, 2 * n),
            join: Faults::seeded(seed ^ 0x2, 2, 2 * n),
            rated: Faults::seeded(seed ^ 0x3, 1, 2 * n),
            buckets: Faults::seeded(seed ^ 0x4, 1, 2 * n),
            windows: Faults::seeded(seed ^ 0x5, 1, windows)
                .shifted(|w| w * WINDOW_MS as u64 * KEYS + w % KEYS),
        }
    }

    /// Targets over all stages.
    pub fn targets(&self) -> usize {
        self.all().iter().map(|f| f.targets()).sum()
    }

    /// Targets that fired, over all stages.
    pub fn fired(&self) -> usize {
        self.all().iter().map(|f| f.fired()).sum()
    }

    fn all(&self) -> [&Faults; 6] {
        [
            &self.source,
            &self.union,
            &self.join,
            &self.rated,
            &self.buckets,
            &self.windows,
        ]
    }
}

impl Faults {
    /// The same faults with every target mapped by `f`.
    fn shifted(self, f: impl Fn(u64) -> u64) -> Self {
        Faults {
            targets: Arc::new(self.targets.iter().map(|&t| f(t)).collect()),
            fired: Arc::default(),
        }
    }
}

/// A run of the job.
pub struct Setup {
    /// Numbers each of the sources `a`, `b` and `c` reads.
    pub n: u64,
    /// Read only the first `prefix` numbers of each, then stay open and idle (a
    /// first run that stops with a savepoint).
    pub prefix: Option<u64>,
    /// Numbers each split reads between two barriers (`None`: no bound).
    pub per_epoch: Option<usize>,
    /// Where the sinks write (`rated`, `buckets`, `windows` below it).
    pub out: PathBuf,
    /// What to inject.
    pub faults: StageFaults,
}

impl Setup {
    /// A run of `n` numbers per source, without faults, writing below `out`.
    pub fn new(n: u64, out: &Path) -> Self {
        Setup {
            n,
            prefix: None,
            per_epoch: Some(250),
            out: out.to_path_buf(),
            faults: StageFaults::default(),
        }
    }

    fn numbers(&self) -> EpochPaced<Numbers> {
        let numbers = match self.prefix {
            Some(prefix) => Numbers::upto(prefix).then_idle(),
            None => Numbers::upto(self.n),
        };
        EpochPaced::new(numbers, self.per_epoch)
    }
}

/// The event time of a number.
fn number_time() -> WatermarkStrategy<fn(&u64) -> i64> {
    let ts: fn(&u64) -> i64 = |n| *n as i64;
    WatermarkStrategy::ascending(ts)
}

/// Builds the job.
pub fn graph_job(setup: &Setup) -> Job {
    let faults = setup.faults.clone();
    let job = Job::new("graph");
    let source_faults = faults.source.clone();
    let a = job
        .source_with_time(setup.numbers(), number_time())
        .map(move |n: u64| {
            source_faults.check(n, "source a");
            2 * n
        });
    let b = job
        .source_with_time(setup.numbers(), number_time())
        .map(|n: u64| 2 * n + 1);
    let union_faults = faults.union.clone();
    let left = a
        .union(b)
        .map(move |id: u64| {
            union_faults.check(id, "union");
            id
        })
        .key_by(|id: &u64| (id / 2) % KEYS);
    let right = job
        .source_with_time(setup.numbers(), number_time())
        .key_by(|n: &u64| n % KEYS);
    let join_faults = faults.join.clone();
    let pairs = left
        .connect(right)
        .process(IntervalJoin::new(-BOUND, BOUND).expect("valid bounds"))
        .map(move |pair: Pair| {
            join_faults.check_pair(pair.left, pair.right, "join");
            pair
        })
        .share();

    let rules = job.source_with_time(Rules(rules(setup.n)), rule_time());
    let rated_faults = faults.rated.clone();
    pairs
        .stream()
        .key_by(|pair: &Pair| pair.key)
        .connect_broadcast(rules)
        .process(RateByRule::default())
        .map(move |rated: Rated| {
            rated_faults.check_pair(rated.1, rated.2, "rated");
            rated
        })
        .sink(TransactionalFileSink::new(
            setup.out.join("rated"),
            format_rated,
        ));

    pairs
        .stream()
        .map(|pair: Pair| (pair.left, pair.right))
        .rebalance()
        .process(BucketCounter {
            counts: BTreeMap::new(),
            faults: faults.buckets.clone(),
        })
        .sink(TransactionalFileSink::new(
            setup.out.join("buckets"),
            tab_separated,
        ));

    let window_faults = faults.windows.clone();
    pairs
        .stream()
        .key_by(|pair: &Pair| pair.key)
        .window(Tumbling::of(Duration::from_millis(WINDOW_MS as u64)).expect("a window"))
        .aggregate(CountPairs)
        .map(move |r: WindowResult<u64, u64>| {
            window_faults.check(r.window.start as u64 * KEYS + r.key, "windows");
            r
        })
        .sink(TransactionalFileSink::new(
            setup.out.join("windows"),
            format_window,
        ))
}

/// A rated pair: key, left id, right number, `(left + right) * multiplier`.
pub type Rated = (u64, u64, u64, u64);

fn format_rated(r: &Rated, out: &mut String) {
    let _ = write!(out, "{}\t{}\t{}\t{}", r.0, r.1, r.2, r.3);
}

fn format_window(r: &WindowResult<u64, u64>, out: &mut String) {
    let _ = write!(out, "{}\t{}\t{}", r.key, r.window.start, r.value);
}

/// Rates each pair by the rule in effect at its event time: the rules are
/// broadcast state (every partition holds them all, snapshotted as broadcast
/// operator state); the pairs wait in keyed state for an event-time timer at their
/// time, so that every rule taking effect by then has arrived (the rules' source
/// has event time too, and the operator's watermark is the minimum over both
/// inputs).
#[derive(Clone, Default)]
pub struct RateByRule {
    /// `(takes effect at, multiplier)`, sorted.
    rules: Vec<(i64, u64)>,
    pending: Option<MapHandle<i64, Vec<(u64, u64)>>>,
}

impl RateByRule {
    fn multiplier_at(&self, ts: i64) -> Result<u64, OperatorError> {
        self.rules
            .iter()
            .rev()
            .find(|(from, _)| *from <= ts)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                OperatorError::msg(format!(
                    "no rule in effect at {ts} (rules: {:?}): broadcast state lost?",
                    self.rules
                ))
            })
    }
}

impl Operator for RateByRule {
    type Key = u64;
    type In = Pair;
    type Out = Rated;

    fn name(&self) -> String {
        "rate-by-rule".into()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), OperatorError> {
        self.pending = Some(ctx.map_state(StateDescriptor::new("pending"))?);
        Ok(())
    }

    fn process(
        &mut self,
        pair: Pair,
        ctx: &mut KeyedContext<'_, u64, Rated>,
    ) -> Result<(), OperatorError> {
        let handle = self.pending.ok_or_else(|| OperatorError::msg("not open"))?;
        let ts = ctx.timestamp();
        let mut pending = ctx.map(handle);
        let mut rows = pending.get(&ts)?.unwrap_or_default();
        rows.push((pair.left, pair.right));
        pending.insert(ts, rows)?;
        ctx.register_event_timer(ts)
    }

    fn on_timer(
        &mut self,
        ts: i64,
        ctx: &mut KeyedContext<'_, u64, Rated>,
    ) -> Result<(), OperatorError> {
        let handle = self.pending.ok_or_else(|| OperatorError::msg("not open"))?;
        let rows = ctx
            .map(handle)
            .remove(&ts)?
            .ok_or_else(|| OperatorError::msg(format!("a timer at {ts} found no pending pair")))?;
        let multiplier = self.multiplier_at(ts)?;
        let key = *ctx.key();
        for (left, right) in rows {
            ctx.emit((key, left, right, (left + right) * multiplier));
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        _epoch: u64,
        state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        state.broadcast("rules", self.rules.iter().copied())?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorStateReader) -> Result<(), OperatorError> {
        self.rules = state.get("rules")?;
        Ok(())
    }
}

impl BroadcastProcess for RateByRule {
    type Rule = (i64, u64);

    fn process_broadcast(
        &mut self,
        rule: (i64, u64),
        _ctx: &mut BroadcastContext<'_, Rated>,
    ) -> Result<(), OperatorError> {
        self.rules.push(rule);
        self.rules.sort_unstable();
        Ok(())
    }
}

/// Counts pairs by bucket (`(left + right) mod BUCKETS`) in its own fields, a
/// non-keyed operator: the counts are list operator state, dealt over the
/// partitions of a restore. Emits `(bucket, count)` per bucket it holds at the end
/// of input.
#[derive(Clone)]
pub struct BucketCounter {
    counts: BTreeMap<u64, u64>,
    faults: Faults,
}

impl Operator for BucketCounter {
    type Key = NoKey;
    type In = (u64, u64);
    type Out = (u64, u64);

    fn name(&self) -> String {
        "bucket-counter".into()
    }

    fn process(
        &mut self,
        (left, right): (u64, u64),
        _ctx: &mut KeyedContext<'_, NoKey, (u64, u64)>,
    ) -> Result<(), OperatorError> {
        *self.counts.entry((left + right) % BUCKETS).or_insert(0) += 1;
        // After the count: the restore must undo it.
        self.faults.check_pair(left, right, "bucket counter");
        Ok(())
    }

    fn close(&mut self, out: &mut dyn Collector<(u64, u64)>) -> Result<(), OperatorError> {
        for (bucket, count) in &self.counts {
            out.collect((*bucket, *count));
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        _epoch: u64,
        state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        state.list("counts", self.counts.iter().map(|(b, c)| (*b, *c)))?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorStateReader) -> Result<(), OperatorError> {
        for (bucket, count) in state.get::<(u64, u64)>("counts")? {
            *self.counts.entry(bucket).or_insert(0) += count;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct CountPairs;

impl AggregateFn<Pair> for CountPairs {
    type Acc = u64;
    type Output = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: Pair) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// The rules, one split read one rule per round, with their times as event time.
pub struct Rules(Vec<(i64, u64)>);

/// Reads [`Rules`].
pub struct RulesReader {
    rules: Vec<(i64, u64)>,
    next: usize,
}

/// Reads a rule's time.
type RuleTime = fn(&(i64, u64)) -> i64;

fn rule_time() -> WatermarkStrategy<RuleTime> {
    let ts: RuleTime = |r| r.0;
    WatermarkStrategy::ascending(ts)
}

impl Source for Rules {
    type Item = (i64, u64);
    type Reader = RulesReader;
    fn name(&self) -> String {
        "rules".into()
    }
    fn max_parallelism(&self) -> Option<u32> {
        Some(1)
    }
    fn reader(&self, _split: u32, _splits: u32) -> Result<RulesReader, SourceError> {
        Ok(RulesReader {
            rules: self.0.clone(),
            next: 0,
        })
    }
}

impl SourceReader for RulesReader {
    type Item = (i64, u64);
    fn read<C: Collector<(i64, u64)>>(
        &mut self,
        _budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        match self.rules.get(self.next) {
            Some(rule) => {
                out.collect(*rule);
                self.next += 1;
                Ok(ReadStatus::More)
            }
            None => Ok(ReadStatus::Exhausted),
        }
    }
    fn position(&self) -> Option<Vec<u8>> {
        Some(weir::connector::source::counter_position(self.next as u64))
    }
    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let next = weir::connector::source::decode_counter_position("rules", position)?;
        self.next = usize::try_from(next)
            .map_err(|_| SourceError::Invalid(format!("rules: position {next}")))?;
        Ok(())
    }
}

/// The job's committed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The rated pairs' lines, sorted.
    pub rated: Vec<String>,
    /// Pairs per bucket, summed over the partitions' lines.
    pub buckets: BTreeMap<u64, u64>,
    /// The bucket counter's lines (one per partition and bucket), for their count.
    pub bucket_lines: usize,
    /// The windows' lines, sorted.
    pub windows: Vec<String>,
}

impl Output {
    /// What the sinks below `out` committed.
    pub fn committed(out: &Path) -> Output {
        let sorted = |name: &str| {
            let mut lines = read_committed(out.join(name)).expect("committed output");
            lines.sort();
            lines
        };
        let bucket_lines = sorted("buckets");
        let mut buckets = BTreeMap::new();
        for line in &bucket_lines {
            let (bucket, count) = line.split_once('\t').expect("bucket<TAB>count");
            *buckets.entry(bucket.parse().unwrap()).or_insert(0) += count.parse::<u64>().unwrap();
        }
        Output {
            rated: sorted("rated"),
            buckets,
            bucket_lines: bucket_lines.len(),
            windows: sorted("windows"),
        }
    }

    /// The output every run over `n` numbers per source must commit, computed
    /// directly.
    pub fn expected(n: u64) -> Output {
        let rules = rules(n);
        let mut rated = Vec::new();
        let mut buckets = BTreeMap::new();
        let mut windows: BTreeMap<(u64, i64), u64> = BTreeMap::new();
        for m in 0..n {
            for source in 0..2 {
                let left = 2 * m + source;
                let near = [m.checked_sub(KEYS), Some(m), Some(m + KEYS)];
                for right in near.into_iter().flatten().filter(|&r| r < n) {
                    let key = m % KEYS;
                    let ts = m.max(right) as i64;
                    let multiplier = rules.iter().rev().find(|r| r.0 <= ts).unwrap().1;
                    rated.push(format!(
                        "{key}\t{left}\t{right}\t{}",
                        (left + right) * multiplier
                    ));
                    *buckets.entry((left + right) % BUCKETS).or_insert(0) += 1;
                    *windows.entry((key, ts - ts % WINDOW_MS)).or_insert(0) += 1;
                }
            }
        }
        rated.sort();
        let mut windows: Vec<String> = windows
            .into_iter()
            .map(|((key, start), count)| format!("{key}\t{start}\t{count}"))
            .collect();
        windows.sort();
        Output {
            rated,
            bucket_lines: 0,
            buckets,
            windows,
        }
    }

    /// Asserts that this output equals `want` (`what` names the run), pair for
    /// pair, window for window and bucket total for bucket total; says where they
    /// first differ rather than printing both.
    pub fn assert_same(&self, want: &Output, what: &str) {
        same_lines(&self.rated, &want.rated, &format!("{what}: rated pairs"));
        same_lines(&self.windows, &want.windows, &format!("{what}: windows"));
        assert_eq!(self.buckets, want.buckets, "{what}: pairs per bucket");
    }
}

fn same_lines(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let got_set: BTreeSet<&String> = got.iter().collect();
    let want_set: BTreeSet<&String> = want.iter().collect();
    let missing: Vec<&&String> = want_set.difference(&got_set).take(5).collect();
    let extra: Vec<&&String> = got_set.difference(&want_set).take(5).collect();
    panic!(
        "{what}: {} lines, want {}; missing (first 5) {missing:?}, unexpected (first 5) {extra:?} \
         (same sets but different counts means duplicates)",
        got.len(),
        want.len()
    );
}
