//! The job graph examples, run at a small size and checked record for record: the
//! examples' own job functions (`examples/fraud_detection.rs`,
//! `examples/dynamic_rules.rs`, compiled into this test as modules) against plain
//! sequential computations of what they should find.

mod common;

#[allow(dead_code)]
#[path = "../examples/fraud_detection.rs"]
mod fraud_detection;

#[allow(dead_code)]
#[path = "../examples/dynamic_rules.rs"]
mod dynamic_rules;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::paced::EpochPaced;
use weir::exchange::ExchangeMode;
use weir::prelude::*;

use dynamic_rules::{Event, Match, RuleChange, RuleEngine};
use fraud_detection::{Alert, Transaction};

/// Transactions of the fraud-detection runs: 20 minutes and a half of event time.
const TRANSACTIONS: u64 = 5_000;
/// Events of the dynamic-rules runs: 200 s of event time.
const EVENTS: u64 = 20_000;

/// The fraud-detection alerts of the first `n` transactions, worked out one account
/// at a time in timestamp order.
fn expected_alerts(n: u64) -> Vec<Alert> {
    use fraud_detection::*;
    let transactions: Vec<Transaction> = (0..n).map(transaction).collect();
    let updates: Vec<AccountUpdate> = (0..updates_for(n)).map(account_update).collect();
    let mut alerts = Vec::new();

    // Small then large: a large transaction at most a minute after the account's
    // latest small one (earlier in timestamp, then id, order).
    let mut per_account: BTreeMap<u32, Vec<&Transaction>> = BTreeMap::new();
    for t in &transactions {
        per_account.entry(t.account).or_default().push(t);
    }
    for list in per_account.values_mut() {
        list.sort_by_key(|t| (t.time_ms, t.id));
        let mut last_small: Option<&Transaction> = None;
        for t in list.iter() {
            if t.cents >= LARGE_MIN_CENTS {
                if let Some(s) = last_small {
                    if s.time_ms < t.time_ms && t.time_ms - s.time_ms <= SMALL_REACH_MS {
                        alerts.push(Alert::SmallThenLarge {
                            account: t.account,
                            small: s.id,
                            large: t.id,
                        });
                    }
                }
            } else if t.cents <= SMALL_MAX_CENTS {
                last_small = Some(t);
            }
        }
    }

    // Large after a change: every update of the account at most ten minutes before.
    for t in transactions.iter().filter(|t| t.cents >= LARGE_MIN_CENTS) {
        for u in &updates {
            if u.account == t.account
                && t.time_ms - CHANGE_REACH_MS <= u.time_ms
                && u.time_ms <= t.time_ms
            {
                alerts.push(Alert::LargeAfterChange {
                    account: t.account,
                    transaction: t.id,
                    update: u.id,
                });
            }
        }
    }
    alerts.sort();
    alerts
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

#[test]
fn fraud_detection_raises_exactly_the_alerts_of_a_sequential_reading() {
    let want = expected_alerts(TRANSACTIONS);
    let kinds = |alerts: &[Alert]| {
        let small = alerts
            .iter()
            .filter(|a| matches!(a, Alert::SmallThenLarge { .. }))
            .count();
        (small, alerts.len() - small)
    };
    let (small_then_large, after_change) = kinds(&want);
    assert!(
        small_then_large >= 10 && after_change >= 10,
        "the input raises both kinds of alerts ({small_then_large}, {after_change})"
    );
    for (parallelism, exchange) in [(2, ExchangeMode::Local), (3, ExchangeMode::Serialized)] {
        let (alerts, late) = (CollectSink::new(), CollectSink::<Transaction>::new());
        let job = fraud_detection::job(TRANSACTIONS, &alerts, &late).unwrap();
        let mut options = EngineOptions::for_tests(parallelism);
        options.exchange = exchange;
        let report = Node::new(options).unwrap().run(job).unwrap();
        assert!(late.items().is_empty(), "no transaction is late");
        let got = sorted(alerts.items());
        assert_eq!(
            kinds(&got),
            (small_then_large, after_change),
            "parallelism {parallelism}, {exchange:?}"
        );
        assert!(
            got == want,
            "parallelism {parallelism}, {exchange:?}: the alerts differ from the sequential reading"
        );
        assert_eq!(report.stages.len(), 6, "{:?}", report.stages);
    }
}

/// The matches of the first `n` events: each checked against the rules in effect at
/// its timestamp, read off the list of changes.
fn expected_matches(n: u64) -> Vec<Match> {
    let changes = dynamic_rules::rule_changes(n);
    let mut matches = Vec::new();
    for e in (0..n).map(dynamic_rules::event) {
        for rule in dynamic_rules::rules_at(&changes, e.time_ms).values() {
            if e.kind == rule.kind && e.amount >= rule.at_least {
                matches.push(Match {
                    event: e.id,
                    user: e.user,
                    amount: e.amount,
                    time_ms: e.time_ms,
                    rule: rule.name.clone(),
                    version: rule.version,
                });
            }
        }
    }
    matches.sort();
    matches
}

#[test]
fn dynamic_rules_match_each_event_against_the_rules_in_effect_at_its_time() {
    let want = expected_matches(EVENTS);
    let matches = CollectSink::new();
    Node::new(EngineOptions::for_tests(3))
        .unwrap()
        .run(dynamic_rules::job(EVENTS, &matches))
        .unwrap();
    let got = sorted(matches.items());

    // Each match names a rule version that exists and that the event satisfies.
    let changes = dynamic_rules::rule_changes(EVENTS);
    let versions: BTreeMap<(String, u32), dynamic_rules::Rule> = changes
        .iter()
        .filter_map(|c| match &c.action {
            dynamic_rules::Action::Put(rule) => {
                Some(((rule.name.clone(), rule.version), rule.clone()))
            }
            dynamic_rules::Action::Remove(_) => None,
        })
        .collect();
    for m in &got {
        let rule = versions
            .get(&(m.rule.clone(), m.version))
            .unwrap_or_else(|| panic!("{m:?} names no rule version"));
        let event = dynamic_rules::event(m.event);
        assert!(
            event.kind == rule.kind && event.amount >= rule.at_least,
            "{m:?}: {event:?} does not satisfy {rule:?}"
        );
    }

    // The changes take effect at their time: big-payment is lowered to $700 at a
    // quarter of the span and raised to $990 at three quarters; big-withdrawal is
    // removed at half, when large-transfer is added (and removed at three quarters).
    let span = EVENTS as i64 * dynamic_rules::EVENT_EVERY_MS;
    let of = |rule: &str, version: u32| -> Vec<&Match> {
        got.iter()
            .filter(|m| m.rule == rule && m.version == version)
            .collect()
    };
    let payments_v2 = of("big-payment", 2);
    assert!(
        payments_v2.iter().any(|m| m.amount < 900),
        "v2 fires below v1's threshold"
    );
    assert!(payments_v2
        .iter()
        .all(|m| (span / 4..3 * span / 4).contains(&m.time_ms)));
    assert!(of("big-payment", 1).iter().all(|m| m.time_ms < span / 4));
    assert!(of("big-payment", 3)
        .iter()
        .all(|m| m.time_ms >= 3 * span / 4 && m.amount >= 990));
    assert!(!of("big-withdrawal", 1).is_empty());
    assert!(of("big-withdrawal", 1).iter().all(|m| m.time_ms < span / 2));
    let transfers = of("large-transfer", 1);
    assert!(!transfers.is_empty(), "the rule added at half fires");
    assert!(transfers
        .iter()
        .all(|m| (span / 2..3 * span / 4).contains(&m.time_ms)));

    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the matches differ from the sequential reading"
    );
}

/// The rule engine, failing once on a record after an epoch completed (so that the
/// restarted job resumes from a snapshot holding rules the rules source will not
/// send again).
#[derive(Clone)]
struct FailOnceAfterAnEpoch {
    engine: RuleEngine,
    epoch_completed: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
}

impl Operator for FailOnceAfterAnEpoch {
    type Key = u32;
    type In = Event;
    type Out = Match;

    fn name(&self) -> String {
        self.engine.name()
    }
    fn open(&mut self, ctx: &mut OpenContext<'_, u32>) -> Result<(), OperatorError> {
        self.engine.open(ctx)
    }
    fn process(
        &mut self,
        event: Event,
        ctx: &mut KeyedContext<'_, u32, Match>,
    ) -> Result<(), OperatorError> {
        if self.epoch_completed.load(Ordering::SeqCst) && !self.failed.swap(true, Ordering::SeqCst)
        {
            return Err(OperatorError::msg("injected fault"));
        }
        self.engine.process(event, ctx)
    }
    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut KeyedContext<'_, u32, Match>,
    ) -> Result<(), OperatorError> {
        self.engine.on_timer(at, ctx)
    }
    fn on_watermark(
        &mut self,
        watermark: i64,
        out: &mut dyn Collector<Match>,
    ) -> Result<(), OperatorError> {
        self.engine.on_watermark(watermark, out)
    }
    fn snapshot_state(
        &mut self,
        epoch: u64,
        state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        self.engine.snapshot_state(epoch, state)
    }
    fn restore_state(&mut self, state: &OperatorStateReader) -> Result<(), OperatorError> {
        self.engine.restore_state(state)
    }
    fn epoch_complete(&mut self, epoch: u64) -> Result<(), OperatorError> {
        self.epoch_completed.store(true, Ordering::SeqCst);
        self.engine.epoch_complete(epoch)
    }
}

impl BroadcastProcess for FailOnceAfterAnEpoch {
    type Rule = RuleChange;
    fn process_broadcast(
        &mut self,
        change: RuleChange,
        ctx: &mut BroadcastContext<'_, Match>,
    ) -> Result<(), OperatorError> {
        self.engine.process_broadcast(change, ctx)
    }
}

fn line(m: &Match, out: &mut String) {
    out.push_str(&format!("{m:?}"));
}

#[test]
fn the_rules_survive_a_failure_in_broadcast_state_and_restore_at_another_parallelism() {
    let root = tempfile::tempdir().unwrap();
    let (state, out) = (root.path().join("state"), root.path().join("out"));
    let options = |parallelism: u32| {
        let mut o = EngineOptions::for_tests(parallelism);
        o.state_dir = Some(state.clone());
        o.checkpoint.interval = Some(Duration::from_millis(20));
        o
    };
    // Each event split sends at most 300 events an epoch, so the run spans many
    // epochs; the rules source sends its seven changes at once and is done.
    let paced_job = |engine: FailOnceAfterAnEpoch| {
        dynamic_rules::job_reading(
            EpochPaced::new(dynamic_rules::Events::new(EVENTS), Some(300)),
            dynamic_rules::Rules::new(dynamic_rules::rule_changes(EVENTS)),
            engine,
            TransactionalFileSink::new(&out, line),
        )
    };
    let engine = FailOnceAfterAnEpoch {
        engine: RuleEngine::default(),
        epoch_completed: Arc::default(),
        failed: Arc::default(),
    };

    // At parallelism 2, the fault stops the job (no restarts): the newest complete
    // epoch is kept.
    let err = Node::new(options(2))
        .unwrap()
        .run(paced_job(engine.clone()))
        .expect_err("the injected fault stops the job");
    let JobError::RestartsExhausted { kept_epoch, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(kept_epoch.is_some(), "an epoch was complete: {err}");
    assert!(engine.failed.load(Ordering::SeqCst));
    let before = read_committed(&out).unwrap().len();
    assert!(
        before < expected_matches(EVENTS).len(),
        "the first run stopped part way ({before} matches committed)"
    );

    // At parallelism 3, the job resumes from that epoch: the rules come back from
    // the broadcast state (the rules source is past them), on every partition.
    let report = Node::new(options(3))
        .unwrap()
        .run(paced_job(engine))
        .expect("the resumed run");
    assert_eq!(report.restored_from, *kept_epoch);
    let mut got = read_committed(&out).unwrap();
    got.sort();
    let mut want: Vec<String> = expected_matches(EVENTS)
        .iter()
        .map(|m| {
            let mut s = String::new();
            line(m, &mut s);
            s
        })
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len(), "each match committed exactly once");
    assert!(
        got == want,
        "the matches differ from the sequential reading"
    );
}
