//! Rules that change while the job runs: broadcast state.
//!
//!     cargo run --release --example dynamic_rules            # 200,000 events
//!     cargo run --release --example dynamic_rules -- 20000   # fewer
//!
//! A keyed stream of account events (payments, withdrawals, transfers of 1 to 1,000
//! dollars, 100 a second of event time, up to 2 s out of order) is checked against
//! rules such as "a payment of at least $900". The rules come from a second stream,
//! which adds, changes and removes them as the job runs:
//!
//! | when (share of the events' time span) | rule change |
//! | --- | --- |
//! | 0 | add `big-payment` v1: payment >= $900; add `big-withdrawal` v1: withdrawal >= $950 |
//! | 1/4 | change `big-payment` to v2: payment >= $700 |
//! | 1/2 | add `large-transfer` v1: transfer >= $980; remove `big-withdrawal` |
//! | 3/4 | change `big-payment` to v3: payment >= $990; remove `large-transfer` |
//!
//! The job connects the keyed events with the rules stream as a broadcast stream
//! (`events.connect_broadcast(rules).process(RuleEngine::default())`): every
//! partition of [`RuleEngine`] receives every rule change in
//! [`BroadcastProcess::process_broadcast`] and keeps the rules in its own fields
//! (its broadcast state), which it writes at every checkpoint with
//! [`OperatorStateWriter::broadcast`] and reads back on a restore, at any
//! parallelism.
//!
//! Rule changes carry the event time they take effect at, and an event is checked
//! against the rules in effect at its own timestamp. So that the answer does not
//! depend on how the two streams' records interleave on the way, each event waits in
//! keyed state until the watermark (the minimum over both streams) reaches it: by
//! then every rule change up to its timestamp has arrived. An event-time timer per
//! timestamp then checks it.
//!
//! It prints the rule changes, then per rule version how many events it matched and
//! the ranges of their amounts and times, e.g.
//!
//! ```text
//! at    0.000 s  put big-payment v1: payment >= $900
//! ...
//! at 1500.000 s  remove large-transfer
//! big-payment v1        1639 matches, $900 to $1000, at 0.000 s to 499.778 s
//! big-payment v2       10039 matches, $700 to $1000, at 500.026 s to 1499.903 s
//! big-payment v3         202 matches, $990 to $1000, at 1506.127 s to 1996.081 s
//! big-withdrawal v1     1700 matches, $950 to $1000, at 0.000 s to 999.669 s
//! large-transfer v1      364 matches, $980 to $1000, at 1000.711 s to 1499.890 s
//! ```
//!
//! and the job report on stderr. `tests/examples.rs` runs [`job`] on a smaller input,
//! checks every match against a plain sequential evaluation of the rules, and runs
//! it once more through a failure, restored from a checkpoint at another parallelism.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::connector::generator::splitmix64;
use weir::connector::source::{counter_position, decode_counter_position};
use weir::connector::{ReadStatus, SourceError};
use weir::job::sink_stage::IntoSinkSpec;
use weir::prelude::*;

/// Event time between two events, in ms.
pub const EVENT_EVERY_MS: i64 = 10;
/// How far behind its place in the stream an event's timestamp may be, in ms.
pub const MAX_DELAY_MS: i64 = 2_000;
/// Users (the key of the event stream).
pub const USERS: u64 = 1_000;

/// What an account event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A card payment.
    Payment,
    /// A cash withdrawal.
    Withdrawal,
    /// A transfer to another account.
    Transfer,
}

/// One account event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its number in the stream, unique.
    pub id: u64,
    /// The user it belongs to (the key).
    pub user: u32,
    /// What it is.
    pub kind: Kind,
    /// Its amount, in dollars.
    pub amount: u64,
    /// When it happened (event time), in ms.
    pub time_ms: i64,
}

/// A rule: matches the events of `kind` whose amount is at least `at_least`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Its name; a later rule of the same name replaces it.
    pub name: String,
    /// Which version of the rule this is.
    pub version: u32,
    /// The kind of event it looks at.
    pub kind: Kind,
    /// The least amount it matches, in dollars.
    pub at_least: u64,
}

impl Rule {
    fn matches(&self, event: &Event) -> bool {
        event.kind == self.kind && event.amount >= self.at_least
    }
}

/// What a rule change does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Adds the rule, or replaces the rule of its name.
    Put(Rule),
    /// Removes the rule of this name.
    Remove(String),
}

/// A change to the rules, in effect for the events from `time_ms` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleChange {
    /// The event time it takes effect at, in ms.
    pub time_ms: i64,
    /// What it does.
    pub action: Action,
}

/// An event a rule matched: the output, naming the rule and its version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Match {
    /// The event's id.
    pub event: u64,
    /// The event's user.
    pub user: u32,
    /// The event's amount, in dollars.
    pub amount: u64,
    /// The event's time, in ms.
    pub time_ms: i64,
    /// The rule that fired.
    pub rule: String,
    /// Its version.
    pub version: u32,
}

/// The `i`th event.
pub fn event(i: u64) -> Event {
    let r = splitmix64(i ^ 0xD1CE);
    Event {
        id: i,
        user: (r % USERS) as u32,
        kind: match (r >> 20) % 3 {
            0 => Kind::Payment,
            1 => Kind::Withdrawal,
            _ => Kind::Transfer,
        },
        amount: 1 + (r >> 24) % 1_000,
        time_ms: (i as i64 * EVENT_EVERY_MS - ((r >> 40) % MAX_DELAY_MS as u64) as i64).max(0),
    }
}

/// The rule changes over the event time of `events` events (the table in the
/// module docs), in time order.
pub fn rule_changes(events: u64) -> Vec<RuleChange> {
    let span = events as i64 * EVENT_EVERY_MS;
    let put = |time_ms: i64, name: &str, version: u32, kind: Kind, at_least: u64| RuleChange {
        time_ms,
        action: Action::Put(Rule {
            name: name.to_string(),
            version,
            kind,
            at_least,
        }),
    };
    let remove = |time_ms: i64, name: &str| RuleChange {
        time_ms,
        action: Action::Remove(name.to_string()),
    };
    vec![
        put(0, "big-payment", 1, Kind::Payment, 900),
        put(0, "big-withdrawal", 1, Kind::Withdrawal, 950),
        put(span / 4, "big-payment", 2, Kind::Payment, 700),
        put(span / 2, "large-transfer", 1, Kind::Transfer, 980),
        remove(span / 2, "big-withdrawal"),
        put(3 * span / 4, "big-payment", 3, Kind::Payment, 990),
        remove(3 * span / 4, "large-transfer"),
    ]
}

/// The rules in effect at `at` after `changes` (in time order): each change up to
/// `at` applied in turn.
pub fn rules_at(changes: &[RuleChange], at: i64) -> BTreeMap<&str, &Rule> {
    let mut rules = BTreeMap::new();
    for change in changes.iter().take_while(|c| c.time_ms <= at) {
        match &change.action {
            Action::Put(rule) => {
                rules.insert(rule.name.as_str(), rule);
            }
            Action::Remove(name) => {
                rules.remove(name.as_str());
            }
        }
    }
    rules
}

/// The events `0..n`, split round robin (split `s` of `k` reads `s, s + k, ...`, so
/// each split is in stream order).
pub struct Events {
    n: u64,
}

impl Events {
    /// The first `n` events.
    pub fn new(n: u64) -> Self {
        Events { n }
    }
}

/// Reads one split of [`Events`].
pub struct EventsReader {
    next: u64,
    step: u64,
    n: u64,
}

impl Source for Events {
    type Item = Event;
    type Reader = EventsReader;

    fn name(&self) -> String {
        "events".into()
    }

    fn reader(&self, split: u32, splits: u32) -> Result<EventsReader, SourceError> {
        Ok(EventsReader {
            next: u64::from(split),
            step: u64::from(splits.max(1)),
            n: self.n,
        })
    }
}

impl SourceReader for EventsReader {
    type Item = Event;

    fn read<C: Collector<Event>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        for _ in 0..budget {
            if self.next >= self.n {
                return Ok(ReadStatus::Exhausted);
            }
            out.collect(event(self.next));
            self.next += self.step;
        }
        Ok(ReadStatus::More)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(counter_position(self.next))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = decode_counter_position("events", position)?;
        Ok(())
    }
}

/// A stream of rule changes, read as one split so that every partition of the
/// operator sees them in the same order (as a rules topic of one partition would).
pub struct Rules {
    changes: Vec<RuleChange>,
}

impl Rules {
    /// The stream of `changes`, in their order.
    pub fn new(changes: Vec<RuleChange>) -> Self {
        Rules { changes }
    }
}

/// Reads [`Rules`].
pub struct RulesReader {
    changes: Vec<RuleChange>,
    next: usize,
}

impl Source for Rules {
    type Item = RuleChange;
    type Reader = RulesReader;

    fn name(&self) -> String {
        "rules".into()
    }

    fn max_parallelism(&self) -> Option<u32> {
        Some(1)
    }

    fn reader(&self, _split: u32, _splits: u32) -> Result<RulesReader, SourceError> {
        Ok(RulesReader {
            changes: self.changes.clone(),
            next: 0,
        })
    }
}

impl SourceReader for RulesReader {
    type Item = RuleChange;

    fn read<C: Collector<RuleChange>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        for change in self.changes.iter().skip(self.next).take(budget) {
            out.collect(change.clone());
            self.next += 1;
        }
        Ok(if self.next >= self.changes.len() {
            ReadStatus::Exhausted
        } else {
            ReadStatus::More
        })
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(counter_position(self.next as u64))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let next = decode_counter_position("rules", position)?;
        self.next = usize::try_from(next)
            .map_err(|_| SourceError::Invalid(format!("rules position {next} is too large")))?;
        Ok(())
    }
}

/// Checks each event against the rules in effect at its timestamp, and emits a
/// [`Match`] per rule that fires.
///
/// Its field `changes` is its broadcast state: the rule changes received so far,
/// in time order, those before the watermark folded into the rules they left in
/// effect. Every partition receives every change, so the field is the same on all
/// of them; it is snapshotted as broadcast operator state and restored on every
/// partition of the restoring run. Events wait in keyed state (`waiting`) until the
/// watermark reaches them.
#[derive(Clone, Default)]
pub struct RuleEngine {
    /// Broadcast state: the rule changes, in time order.
    changes: Vec<RuleChange>,
    /// Per user: the events waiting for the watermark, by timestamp.
    waiting: Option<MapHandle<i64, Vec<Event>>>,
}

/// The name of the broadcast state entry.
const RULES_STATE: &str = "rules";

impl RuleEngine {
    /// The rule changes it holds, in time order.
    pub fn changes(&self) -> &[RuleChange] {
        &self.changes
    }

    /// Emits a match for each rule in effect at `at` that `event` satisfies.
    fn check(&self, event: &Event, at: i64, ctx: &mut KeyedContext<'_, u32, Match>) {
        for rule in rules_at(&self.changes, at).values() {
            if rule.matches(event) {
                ctx.emit(Match {
                    event: event.id,
                    user: event.user,
                    amount: event.amount,
                    time_ms: event.time_ms,
                    rule: rule.name.clone(),
                    version: rule.version,
                });
            }
        }
    }

    /// Folds the changes up to `upto` into the rules they leave in effect: no event
    /// after `upto` can tell the difference, and the list stays as long as the rules
    /// are many, however often they change.
    fn compact(&mut self, upto: i64) {
        let split = self.changes.partition_point(|c| c.time_ms <= upto);
        if split == 0 {
            return;
        }
        let mut in_effect: BTreeMap<String, RuleChange> = BTreeMap::new();
        for change in self.changes.drain(..split) {
            match &change.action {
                Action::Put(rule) => {
                    in_effect.insert(rule.name.clone(), change);
                }
                Action::Remove(name) => {
                    in_effect.remove(name);
                }
            }
        }
        let mut folded: Vec<RuleChange> = in_effect.into_values().collect();
        folded.sort_by_key(|c| c.time_ms);
        folded.append(&mut self.changes);
        self.changes = folded;
    }
}

impl Operator for RuleEngine {
    type Key = u32;
    type In = Event;
    type Out = Match;

    fn name(&self) -> String {
        "rule-engine".into()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, u32>) -> Result<(), OperatorError> {
        self.waiting = Some(ctx.map_state(StateDescriptor::new("waiting"))?);
        Ok(())
    }

    fn process(
        &mut self,
        event: Event,
        ctx: &mut KeyedContext<'_, u32, Match>,
    ) -> Result<(), OperatorError> {
        let waiting = self
            .waiting
            .ok_or_else(|| OperatorError::msg("rule engine used before open()"))?;
        let at = ctx.timestamp();
        let watermark = ctx.current_watermark();
        if at <= watermark {
            // Late (never, in this input): the changes before the watermark may be
            // folded already, so the event meets the rules in effect at the
            // watermark, which have all arrived.
            self.check(&event, watermark, ctx);
            return Ok(());
        }
        let mut map = ctx.map(waiting);
        let mut same_instant = map.get(&at)?.unwrap_or_default();
        same_instant.push(event);
        map.insert(at, same_instant)?;
        ctx.register_event_timer(at)
    }

    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut KeyedContext<'_, u32, Match>,
    ) -> Result<(), OperatorError> {
        let waiting = self
            .waiting
            .ok_or_else(|| OperatorError::msg("rule engine used before open()"))?;
        if let Some(mut events) = ctx.map(waiting).remove(&at)? {
            events.sort_by_key(|e| e.id);
            for event in &events {
                self.check(event, at, ctx);
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        _out: &mut dyn Collector<Match>,
    ) -> Result<(), OperatorError> {
        // The timers up to the watermark have fired: only later events are left.
        self.compact(watermark);
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        _epoch: u64,
        state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        state.broadcast(RULES_STATE, &self.changes)?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorStateReader) -> Result<(), OperatorError> {
        self.changes = state.get(RULES_STATE)?;
        Ok(())
    }
}

impl BroadcastProcess for RuleEngine {
    type Rule = RuleChange;

    fn process_broadcast(
        &mut self,
        change: RuleChange,
        _ctx: &mut BroadcastContext<'_, Match>,
    ) -> Result<(), OperatorError> {
        // After every change of the same time or earlier: changes of one instant
        // apply in the order they were sent.
        let at = self
            .changes
            .partition_point(|c| c.time_ms <= change.time_ms);
        self.changes.insert(at, change);
        Ok(())
    }
}

/// The job over `events` and `rules`, checked by `engine`, into `sink` (a plain
/// or a transactional sink: `Kind` says which): the events keyed by user, connected
/// with the rules as a broadcast stream.
pub fn job_reading<E, R, O, S, Kind>(events: E, rules: R, engine: O, sink: S) -> Job
where
    E: Source<Item = Event>,
    R: Source<Item = RuleChange>,
    O: BroadcastProcess<Key = u32, In = Event, Out = Match, Rule = RuleChange>,
    S: IntoSinkSpec<Match, Kind>,
{
    let job = Job::new("dynamic-rules");
    let events = job
        .source_with_time(
            events,
            WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_millis(MAX_DELAY_MS as u64),
                |e: &Event| e.time_ms,
            ),
        )
        .key_by(|e: &Event| e.user);
    // Rule changes come in time order: a bound of 1 ms never holds one back.
    let rules = job.source_with_time(
        rules,
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(1), |c: &RuleChange| {
            c.time_ms
        }),
    );
    events.connect_broadcast(rules).process(engine).sink(sink)
}

/// The job over the first `events` events and their rule changes, into `matches`.
pub fn job(events: u64, matches: &CollectSink<Match>) -> Job {
    job_reading(
        Events::new(events),
        Rules::new(rule_changes(events)),
        RuleEngine::default(),
        matches.clone(),
    )
}

/// The rule change as one line.
fn describe(change: &RuleChange) -> String {
    let what = match &change.action {
        Action::Put(rule) => format!(
            "put {} v{}: {} >= ${}",
            rule.name,
            rule.version,
            format!("{:?}", rule.kind).to_lowercase(),
            rule.at_least
        ),
        Action::Remove(name) => format!("remove {name}"),
    };
    format!("at {:>8.3} s  {what}", change.time_ms as f64 / 1e3)
}

/// What the matches of one rule version add up to.
struct Tally {
    matches: u64,
    low: u64,
    high: u64,
    first: i64,
    last: i64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            matches: 0,
            low: u64::MAX,
            high: 0,
            first: i64::MAX,
            last: i64::MIN,
        }
    }

    fn add(&mut self, m: &Match) {
        self.matches += 1;
        self.low = self.low.min(m.amount);
        self.high = self.high.max(m.amount);
        self.first = self.first.min(m.time_ms);
        self.last = self.last.max(m.time_ms);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events = match std::env::args().nth(1) {
        Some(n) => n.parse::<u64>()?,
        None => 200_000,
    };
    let matches = CollectSink::new();
    let options = EngineOptions {
        progress: None,
        ..EngineOptions::default()
    };
    let report = Node::new(options)?.run(job(events, &matches))?;

    for change in rule_changes(events) {
        println!("{}", describe(&change));
    }
    // Per rule version: matches, the range of amounts and of times.
    let mut per_rule: BTreeMap<(String, u32), Tally> = BTreeMap::new();
    for m in matches.items() {
        per_rule
            .entry((m.rule.clone(), m.version))
            .or_insert_with(Tally::new)
            .add(&m);
    }
    for ((rule, version), t) in per_rule {
        println!(
            "{:<20}{:>6} matches, ${} to ${}, at {:.3} s to {:.3} s",
            format!("{rule} v{version}"),
            t.matches,
            t.low,
            t.high,
            t.first as f64 / 1e3,
            t.last as f64 / 1e3
        );
    }
    eprint!("{report}");
    Ok(())
}
