//! The Kafka sink through librdkafka against its in-process mock cluster
//! (127.0.0.1): the real producer path (`rdkafka_log.rs`) in both delivery modes.
//!
//! The mock shows open and aborted transactions to `read_committed` readers
//! (`../shared/kafka-testing.md`), so these tests only run what involves no abort:
//! exactly-once without faults (every transaction committed, one marker per
//! committed transaction), and at-least-once with an injected panic (nothing lost).
//! The crash at each step of the exactly-once protocol is tested against a model of
//! Kafka's transactions in `kafka_sink_model.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::{cluster, create_unique_topic, running_sums, sum_record, SumFormat};
use common::Numbers;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir::connector::kafka::{Delivery, KafkaSink};
use weir::prelude::*;

const N: u64 = 3000;
const KEYS: u64 = 40;
const OUT: &str = "sums";

fn expected() -> Vec<(String, String)> {
    running_sums(N, KEYS)
}

/// Numbers -> (key, x) -> running sum per key -> the sink; `panic_at` makes the map
/// panic once at that number.
fn job(name: &str, sink: KafkaSink<SumFormat>, panic_at: Option<Arc<AtomicBool>>) -> Job {
    Job::new(name)
        .source(Numbers::upto(N))
        .map(move |x: u64| {
            if x.is_multiple_of(10) {
                // Paced, so the run spans several epochs.
                std::thread::sleep(Duration::from_millis(1));
            }
            if x == N / 2 {
                if let Some(armed) = &panic_at {
                    if armed.swap(false, Ordering::SeqCst) {
                        panic!("injected fault at record {x}");
                    }
                }
            }
            (x % KEYS, x)
        })
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(sink)
}

fn options(state: &Path) -> EngineOptions {
    let mut o = common::checkpointed(state);
    o.checkpoint.interval = Some(Duration::from_millis(30));
    o
}

/// Every record of `topic` (all its partitions) as (key, value) text (binary
/// markers shown lossily), read from the
/// start until `want` records arrived and no more came for half a second.
fn read_all(bootstrap: &str, topic: &str, partitions: i32, want: usize) -> Vec<(String, String)> {
    read(bootstrap, topic, partitions, want, "read_uncommitted")
}

/// Like [`read_all`], with the consumer's `isolation.level`.
fn read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    isolation: &str,
) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-sink-test")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
                got.push((text(m.key()), text(m.payload())));
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if got.len() >= want && quiet_since.elapsed() > Duration::from_millis(500) => {
                break
            }
            None => {}
        }
    }
    got
}

#[test]
fn exactly_once_without_faults_commits_every_epoch_once_with_its_marker() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic(OUT, 2, 1).unwrap();
    // The mock cannot create topics through the admin API; the sink's default marker
    // topic, one partition per sink partition, is made here.
    mock.create_topic("eo-test-markers", 2, 1).unwrap();
    // The only test of this binary that installs a recorder: the exported
    // transaction counters must agree with the sink's own.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let root = tempfile::tempdir().unwrap();
    let sink = KafkaSink::new(bootstrap.clone(), OUT, sum_record as SumFormat)
        .delivery(Delivery::ExactlyOnce)
        .id("eo-test")
        .staging_dir(root.path().join("staging"));
    let counts = sink.transaction_counts();
    let node = Node::new(options(&root.path().join("state"))).unwrap();
    let report = node.run(job("kafka-sink-eo", sink, None)).unwrap();
    assert_eq!(report.restarts, 0);

    let mut got = read_all(&bootstrap, OUT, 2, N as usize);
    got.sort();
    assert_eq!(got, expected(), "every sum once, none missing");
    assert!(
        counts.committed() >= 2,
        "{} transactions",
        counts.committed()
    );
    assert_eq!(counts.aborted(), 0);
    let exported = |name: &str| -> u64 {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "sink" && l.value() == "eo-test")
            })
            .map(|(.., value)| match value {
                metrics_util::debugging::DebugValue::Counter(n) => n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    };
    assert_eq!(
        exported("weir_kafka_transactions_committed_total"),
        counts.committed()
    );
    assert_eq!(exported("weir_kafka_transactions_aborted_total"), 0);
    // One marker per committed transaction, in the same transactions.
    let markers = read_all(
        &bootstrap,
        "eo-test-markers",
        2,
        counts.committed() as usize,
    );
    assert_eq!(markers.len() as u64, counts.committed(), "{markers:?}");
    // Every staged copy is deleted once its epoch committed (the sink stages under
    // a directory named by its id).
    let staged = root.path().join("staging").join("eo-test");
    assert!(
        staged.is_dir(),
        "the sink staged under {}",
        staged.display()
    );
    // What is left is one commit ledger per sink partition.
    let mut left: Vec<_> = std::fs::read_dir(&staged)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    left.sort();
    assert_eq!(
        left,
        ["p00000.committed", "p00001.committed"],
        "staged copies left"
    );
    for partition in 0..2 {
        let through = weir::connector::kafka::sink::ledger::committed_through(&staged, partition)
            .unwrap()
            .expect("a ledger entry");
        assert!(
            through >= 1,
            "partition {partition} committed through {through}"
        );
    }
}

#[test]
fn at_least_once_loses_nothing_when_an_operator_panics() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic(OUT, 2, 1).unwrap();
    let root = tempfile::tempdir().unwrap();
    let sink = KafkaSink::new(bootstrap.clone(), OUT, sum_record as SumFormat)
        .delivery(Delivery::AtLeastOnce);
    let armed = Arc::new(AtomicBool::new(true));
    let node = Node::new(options(&root.path().join("state"))).unwrap();
    let report = node
        .run(job("kafka-sink-alo", sink, Some(armed.clone())))
        .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the fault fired");
    assert!(report.restarts >= 1);

    let got = read_all(&bootstrap, OUT, 2, N as usize);
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for record in got {
        *seen.entry(record).or_default() += 1;
    }
    for record in expected() {
        assert!(seen.contains_key(&record), "lost {record:?}");
    }
    // At-least-once: records after the restored epoch may repeat, never vanish, and
    // nothing appears that a run without faults would not write.
    assert_eq!(seen.len(), expected().len());
    let repeated: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("at-least-once: {repeated} records written again after the restart");
}

/// What a `read_committed` consumer sees after aborts: a panic mid-epoch rolls the
/// job back, which aborts the epoch's open transaction (and fences the
/// pre-committed ones of epochs that never completed); the committed output must
/// still equal a run without faults, record for record. Neither test broker hides
/// aborted records from `read_committed` readers, so it is ignored unless
/// asked for (`cargo test -- --ignored`) with `WEIR_KAFKA_BOOTSTRAP=host:port` naming a
/// real Apache Kafka cluster.
#[test]
#[ignore = "needs a real Apache Kafka named by WEIR_KAFKA_BOOTSTRAP (run with --ignored)"]
fn read_committed_output_after_aborts_needs_a_real_kafka_named_by_weir_kafka_bootstrap() {
    let bootstrap = std::env::var("WEIR_KAFKA_BOOTSTRAP")
        .expect("WEIR_KAFKA_BOOTSTRAP names a real Apache Kafka cluster (host:port)");
    let topic = create_unique_topic(&bootstrap, "weir-sink-aborts", 2);
    let root = tempfile::tempdir().unwrap();
    let sink = KafkaSink::new(bootstrap.clone(), topic.clone(), sum_record as SumFormat)
        .delivery(Delivery::ExactlyOnce)
        .id(format!("{topic}-sink"))
        .staging_dir(root.path().join("staging"));
    let armed = Arc::new(AtomicBool::new(true));
    let node = Node::new(options(&root.path().join("state"))).unwrap();
    let report = node
        .run(job("kafka-sink-aborts", sink, Some(armed.clone())))
        .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the fault fired");
    assert!(report.restarts >= 1);
    let mut got = read(&bootstrap, &topic, 2, N as usize, "read_committed");
    got.sort();
    assert_eq!(got, expected(), "each sum exactly once after the aborts");
}
