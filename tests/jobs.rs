//! Whole jobs through the typed builder: W1's check, a multi-stage keyed pipeline, and
//! keyed state that really reaches the sled store.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::Numbers;
use weir::prelude::*;
use weir_actors::state::{StateDescriptor, SystemClock};

#[test]
fn w1_at_small_n_passes_its_check() {
    for parallelism in [1, 2, 3] {
        let result = weir::bench::w1::run(EngineOptions::for_tests(parallelism), 200_000).unwrap();
        assert!(result.passed(), "parallelism {parallelism}: {result:?}");
        assert_eq!(result.n, 200_000);
    }
}

#[test]
fn two_keyed_stages_in_a_row_give_exact_results() {
    // numbers -> key by x % 100 -> running sum -> key by (sum % 7) -> running count.
    let sink = CountingSink::<u64, u64>::new();
    let job = Job::new("two-stages")
        .source(Numbers::upto(50_000))
        .key_by(|x: &u64| x % 100)
        .reduce(|a, b| a + b)
        .map(|(_, sum): (u64, u64)| (sum % 7, 1u64))
        .group_by_key()
        .reduce(|a, b| a + b)
        .sink(sink.clone());
    assert_eq!(job.stage_names().len(), 3);
    Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();

    let mut sums = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for x in 0..50_000u64 {
        let s = sums.entry(x % 100).or_insert(0u64);
        *s += x;
        *counts.entry(*s % 7).or_insert(0u64) += 1;
    }
    let result = sink.result();
    assert_eq!(result.received, 50_000);
    let got: BTreeMap<u64, u64> = result.last.into_iter().collect();
    assert_eq!(got, counts);
}

/// Per user: a count (value state), per-item counts (map state) and the order items
/// were first seen in (list state).
#[derive(Clone, Default)]
struct Basket {
    count: Option<ValueHandle<u64>>,
    items: Option<MapHandle<u64, u64>>,
    order: Option<ListHandle<u64>>,
}

impl KeyedProcess for Basket {
    type Key = u64;
    type In = u64;
    type Out = (u64, (u64, u64, Vec<u64>));

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), OperatorError> {
        self.count = Some(ctx.value_state(StateDescriptor::new("count"))?);
        self.items = Some(ctx.map_state(StateDescriptor::new("items"))?);
        self.order = Some(ctx.list_state(StateDescriptor::new("order"))?);
        Ok(())
    }

    fn process(
        &mut self,
        item: u64,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<(), OperatorError> {
        let (count, items, order) = (
            self.count.unwrap(),
            self.items.unwrap(),
            self.order.unwrap(),
        );
        let n = {
            let mut c = ctx.value(count);
            let n = c.get_or_insert_with(|| 0)?;
            *n += 1;
            *n
        };
        let seen = {
            let mut m = ctx.map(items);
            let seen = m.get(&item)?.unwrap_or(0);
            m.insert(item, seen + 1)?;
            seen + 1
        };
        if seen == 1 {
            ctx.list(order).add(item)?;
        }
        let list = ctx.list(order).get()?;
        let key = *ctx.key();
        ctx.emit((key, (n, seen, list)));
        Ok(())
    }
}

#[test]
fn value_map_and_list_state_through_a_job_and_into_sled() {
    // user = x % 13, item = (x / 13) % 5.
    let records: Vec<u64> = (0..2_000).collect();
    let sink = CountingSink::new();
    let job = Job::new("baskets")
        .source(Numbers::upto(records.len() as u64))
        .map(|x: u64| (x % 13, (x / 13) % 5))
        .group_by_key()
        .process(Basket::default())
        .sink(sink.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::for_tests(2);
    options.state_dir = Some(dir.path().to_path_buf());
    let node = Node::new(options).unwrap();
    node.run(job).unwrap();

    // Independent expectation. Records of one user arrive in source order per split,
    // and both splits feed every user, so compare what does not depend on
    // interleaving: counts, per-item counts and the set of first-seen items.
    let mut expect: BTreeMap<u64, (u64, BTreeMap<u64, u64>)> = BTreeMap::new();
    for &x in &records {
        let e = expect.entry(x % 13).or_default();
        e.0 += 1;
        *e.1.entry((x / 13) % 5).or_insert(0) += 1;
    }
    let result = sink.result();
    assert_eq!(result.received, 2_000);
    for (user, (count, items)) in &expect {
        let (n, _, list) = &result.last[user];
        assert_eq!(n, count, "user {user}");
        let mut l = list.clone();
        l.sort();
        assert_eq!(l, items.keys().copied().collect::<Vec<_>>(), "user {user}");
    }

    // The state reached sled at end of input: read it back through a fresh KeyedState
    // over all key partitions of the stage (state name = "<job>/<stage index>").
    let mut state = node
        .store()
        .keyed::<u64>("baskets/1", 0..16, Arc::new(SystemClock))
        .unwrap();
    let count = state
        .register_value::<u64>(StateDescriptor::new("count"))
        .unwrap();
    let items = state
        .register_map::<u64, u64>(StateDescriptor::new("items"))
        .unwrap();
    for (user, (n, per_item)) in &expect {
        let kp = weir::partition::key_partition(user, 16).unwrap();
        assert_eq!(
            state.value(count, kp, user).value().unwrap(),
            Some(*n),
            "user {user}"
        );
        let stored: BTreeMap<u64, u64> = state
            .map(items, kp, user)
            .entries()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(&stored, per_item, "user {user}");
    }
}

#[test]
fn records_of_a_slow_source_reach_the_sink_while_the_job_runs() {
    // Batches hold 1,024 records: records that reach the sink before the source read
    // 1,024 were sent because the source went idle, not because a batch filled.
    let stop = StopFlag::new();
    let job = Job::new("trickle")
        .source(common::Trickle { stop: stop.clone() })
        .key_by(|x: &u64| x % 3)
        .reduce(|a, b| a + b)
        .sink(CountingSink::<u64, u64>::new());
    // The observer ends the input once 10 records reached the sink stage: they
    // reached it while the input was open. Were records held until a batch filled
    // (or the input ended), none would arrive and the run would end at the limit.
    let reached_while_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reached = reached_while_running.clone();
    let ender = stop.clone();
    let control = RunControl {
        stop: Some(stop),
        duration: Some(std::time::Duration::from_secs(60)),
        observer: Some(Box::new(move |live| {
            if live.records_written() >= 10 && !ender.is_stopped() {
                reached.store(
                    live.records_read() < 1_024,
                    std::sync::atomic::Ordering::SeqCst,
                );
                ender.stop();
            }
        })),
        observe_every: Some(std::time::Duration::from_millis(5)),
        ..Default::default()
    };
    let options = EngineOptions {
        batch_size: 1_024,
        ..EngineOptions::for_tests(2)
    };
    Node::new(options).unwrap().run_with(job, control).unwrap();
    assert!(
        reached_while_running.load(std::sync::atomic::Ordering::SeqCst),
        "10 records reached the sink only after a batch could have filled, or never"
    );
}

#[test]
fn a_second_run_on_the_same_state_dir_gives_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::for_tests(2);
    options.state_dir = Some(dir.path().to_path_buf());
    let node = Node::new(options).unwrap();
    let mut results = Vec::new();
    for _ in 0..2 {
        let (job, sink) = weir::jobs::w1(20_000);
        node.run(job).unwrap();
        let c = sink.result();
        assert!(weir::bench::w1::check(20_000, &c).is_ok());
        let mut last: Vec<(String, u64)> = c.last.into_iter().collect();
        last.sort();
        results.push(last);
    }
    assert_eq!(results[0], results[1]);
}
