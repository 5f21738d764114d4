//! The Kafka source against a real broker process: the Tansu broker of
//! `tests/common/tansu.rs` (installed by `scripts/test-deps.sh tansu` if absent),
//! on 127.0.0.1. Topics are created with the admin API; faults are real (every
//! client connection dropped mid-read, a `weir` process killed with SIGKILL) and the
//! committed output is compared with a run without faults, record for record.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kill::{assert_same_output_after_kills, kill_until_finished};
use common::tansu::{
    committed_offsets, create_topic, produce_to, TansuBroker, TANSU_GROUP_SETTINGS,
};
use common::{checkpointed, sorted_committed};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use weir::connector::generator::w1_word;
use weir::connector::kafka::{Json, KafkaRecord, KafkaSource, Utf8Text};
use weir::connector::sinks::tab_separated;
use weir::prelude::*;

/// `n` numbers, `x` to partition `x % partitions` with value `x` as JSON text.
fn numbers(n: u64, partitions: u64) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|x| {
            let partition = i32::try_from(x % partitions).unwrap_or(0);
            (partition, Vec::new(), x.to_string().into_bytes())
        })
        .collect()
}

#[test]
fn a_topic_created_with_the_admin_api_is_read_record_for_record() {
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "orders", 3);
    let records: Vec<_> = (0..1500u32)
        .map(|i| {
            let partition = i32::try_from(i % 3).unwrap_or(0);
            (
                partition,
                format!("k{i}").into_bytes(),
                format!("order {i}").into_bytes(),
            )
        })
        .collect();
    produce_to(&bootstrap, "orders", &records);

    let sink = CollectSink::<(i32, i64, String, String)>::new();
    let dead = DeadLetters::to_log();
    let job = Job::new("read")
        .source(KafkaSource::new(bootstrap, ["orders"], Utf8Text, dead.clone()).stop_at_end(true))
        .map(|r: KafkaRecord<String>| {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            (r.partition, r.offset, key, r.value)
        })
        .sink(sink.clone());
    let report = Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();
    assert_eq!(report.restarts, 0);

    let mut want = Vec::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, k, v) in &records {
        let offset = next.entry(*p).or_insert(0);
        want.push((
            *p,
            *offset,
            String::from_utf8(k.clone()).unwrap(),
            String::from_utf8(v.clone()).unwrap(),
        ));
        *offset += 1;
    }
    want.sort();
    let mut got = sink.items();
    got.sort();
    assert_eq!(got.len(), want.len(), "no record lost or duplicated");
    assert!(got == want, "every record as produced");
    assert_eq!(dead.count(), 0);
}

const SUMS_N: u64 = 6_000;
const SUMS_PARTITIONS: u64 = 4;

/// Running sums per key `x % 196` (all of a key's values in one partition, in order) into a transactional file sink; `seen` counts the
/// records the source stage passed on (so a test can act mid-read).
fn sums_job(bootstrap: &str, group: Option<&str>, out: &Path, seen: Arc<AtomicU64>) -> Job {
    let mut source = KafkaSource::new(
        bootstrap.to_string(),
        ["numbers"],
        Json::<u64>::new(),
        DeadLetters::to_log(),
    )
    .stop_at_end(true)
    // Small fetches and a short local queue, so the records are not all prefetched
    // early and the reads span the whole run (a dropped connection hits a read).
    .set("max.partition.fetch.bytes", "1024")
    .set("queued.min.messages", "20")
    .set("queued.max.messages.kbytes", "1");
    if let Some(group) = group {
        source = source.group_id(group);
    }
    Job::new("kafka-sums")
        .source(source)
        .map(move |r: KafkaRecord<u64>| {
            seen.fetch_add(1, Ordering::Relaxed);
            if r.value.is_multiple_of(20) {
                // Paced, so the read spans many checkpoints and the fault lands mid-read.
                std::thread::sleep(Duration::from_millis(1));
            }
            (r.value % 196, r.value)
        })
        .group_by_key()
        .reduce(|sum: u64, x: u64| sum + x)
        .sink(TransactionalFileSink::new(out, tab_separated))
}

#[test]
fn dropped_broker_connections_mid_read_still_deliver_every_record_exactly_once() {
    let broker = TansuBroker::behind_proxy();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "numbers", SUMS_PARTITIONS as i32);
    produce_to(&bootstrap, "numbers", &numbers(SUMS_N, SUMS_PARTITIONS));
    let root = tempfile::tempdir().unwrap();

    let reference = root.path().join("reference");
    let report = Node::new(checkpointed(&root.path().join("reference-state")))
        .unwrap()
        .run(sums_job(&bootstrap, None, &reference, Arc::default()))
        .expect("reference run");
    assert_eq!(report.restarts, 0);
    let want = sorted_committed(&reference);
    assert_eq!(want.len() as u64, SUMS_N, "one running sum per record");

    // The same job; when a third of the records has been read, every connection
    // between the clients and the broker is dropped, and new ones are refused for
    // a second.
    let out = root.path().join("faulty");
    let seen = Arc::new(AtomicU64::new(0));
    let cuts = Arc::new(AtomicU64::new(0));
    let read_while_cut = Arc::new(AtomicU64::new(0));
    let proxy_port = broker.proxy().port();
    let job = sums_job(&bootstrap, None, &out, seen.clone());
    let report = std::thread::scope(|scope| {
        let faulter = scope.spawn(|| {
            let started = Instant::now();
            while seen.load(Ordering::Relaxed) < SUMS_N / 3 {
                if started.elapsed() > Duration::from_secs(60) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                broker.proxy().open_connections() > 0,
                "the job's clients were connected through the proxy on {proxy_port}"
            );
            broker.proxy().cut();
            cuts.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1000));
            read_while_cut.store(seen.load(Ordering::Relaxed), Ordering::Relaxed);
            broker.proxy().heal();
        });
        let report = Node::new(checkpointed(&root.path().join("faulty-state")))
            .unwrap()
            .run(job);
        faulter.join().expect("the fault thread");
        report
    })
    .expect("the job rides out the dropped connections");
    assert_eq!(
        cuts.load(Ordering::Relaxed),
        1,
        "the connections were cut mid-read"
    );
    assert!(
        seen.load(Ordering::Relaxed) >= SUMS_N,
        "every record was read"
    );
    let before_heal = read_while_cut.load(Ordering::Relaxed);
    assert!(
        before_heal < SUMS_N,
        "records were still unread when the connections came back ({before_heal} read)"
    );
    assert!(report.checkpoints.completed > 0, "checkpoints were taken");
    let got = sorted_committed(&out);
    assert_eq!(got.len(), want.len(), "no record lost or duplicated");
    assert!(got == want, "output differs from the run without faults");
}

#[test]
fn completed_epochs_offsets_are_committed_to_the_group_and_a_member_resumes_there() {
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "numbers", SUMS_PARTITIONS as i32);
    produce_to(&bootstrap, "numbers", &numbers(SUMS_N, SUMS_PARTITIONS));
    let root = tempfile::tempdir().unwrap();
    let report = Node::new(checkpointed(&root.path().join("state")))
        .unwrap()
        .run(sums_job(
            &bootstrap,
            Some("sums-watchers"),
            &root.path().join("out"),
            Arc::default(),
        ))
        .expect("checkpointed run");
    assert!(
        report.checkpoints.completed >= 3,
        "several epochs completed"
    );

    let end = (SUMS_N / SUMS_PARTITIONS) as i64;
    let offsets = committed_offsets(
        &bootstrap,
        "sums-watchers",
        "numbers",
        SUMS_PARTITIONS as i32,
    );
    // A split fetches its partitions in large chunks, one after another, so a
    // partition may still be at 0 at the last epoch that completed while it ran.
    for (p, offset) in offsets.iter().enumerate() {
        let offset = offset.unwrap_or_else(|| panic!("partition {p}: no committed offset"));
        assert!(
            (0..=end).contains(&offset),
            "partition {p}: committed {offset}, end {end}"
        );
    }
    assert!(
        offsets.iter().flatten().sum::<i64>() > 0,
        "progress was committed: {offsets:?}"
    );

    // A member that joins the group (subscribe) starts each partition at the
    // committed offset.
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "sums-watchers")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest");
    for (key, value) in TANSU_GROUP_SETTINGS {
        config.set(key, value);
    }
    let member: BaseConsumer = config.create().unwrap();
    member.subscribe(&["numbers"]).unwrap();
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let unfinished: Vec<usize> = (0..offsets.len())
        .filter(|p| offsets[*p] < Some(end))
        .collect();
    while unfinished.iter().any(|p| !first.contains_key(&(*p as i32))) {
        assert!(
            Instant::now() < deadline,
            "the member read {first:?} of partitions {unfinished:?}"
        );
        if let Some(Ok(m)) = member.poll(Duration::from_millis(100)) {
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    for p in unfinished {
        assert_eq!(
            first.get(&(p as i32)).copied(),
            offsets[p],
            "partition {p}: the member starts at the committed offset"
        );
    }
}

#[test]
fn the_broker_guard_restarts_on_the_same_port() {
    let mut broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "before", 1);
    broker.stop();
    assert!(
        std::net::TcpStream::connect(bootstrap.as_str()).is_err(),
        "a stopped broker's port is closed"
    );
    broker.restart();
    assert_eq!(broker.bootstrap(), bootstrap, "the same port");
    // The storage is in memory: the restarted broker is empty, and takes new topics.
    create_topic(&bootstrap, "after", 2);
    produce_to(&bootstrap, "after", &numbers(10, 2));
}

/// `weir run wordcount` reading `topic` from Kafka into `out`, checkpointing into
/// `state` (as tests/kill.rs drives the CLI).
fn weir_wordcount(bootstrap: &str, topic: &str, out: &Path, state: &Path) -> Command {
    let mut cmd = common::node::weir_command();
    cmd.args([
        "run",
        "wordcount",
        "--workers",
        "2",
        "--checkpoint-interval-ms",
        "40",
        "--kafka-brokers",
        bootstrap,
        "--kafka-topic",
        topic,
    ])
    .arg("--output-dir")
    .arg(out)
    .arg("--state-dir")
    .arg(state)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

#[test]
fn a_weir_process_killed_mid_read_resumes_from_its_state_dir_with_the_unkilled_output() {
    const LINES: u64 = 60_000;
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "text", 3);
    let lines: Vec<_> = (0..LINES)
        .map(|l| {
            let words: Vec<String> = (0..10).map(|w| w1_word((l * 10 + w) % 3_000)).collect();
            let partition = i32::try_from(l % 3).unwrap_or(0);
            (partition, Vec::new(), words.join(" ").into_bytes())
        })
        .collect();
    produce_to(&bootstrap, "text", &lines);
    let root = tempfile::tempdir().unwrap();

    let reference = root.path().join("reference");
    let status = weir_wordcount(
        &bootstrap,
        "text",
        &reference,
        &root.path().join("reference-state"),
    )
    .status()
    .unwrap();
    assert!(status.success(), "reference run: {status}");
    let want = sorted_committed(&reference);
    assert_eq!(want.len() as u64, LINES * 10, "one running count per word");

    let out = root.path().join("out");
    let state = root.path().join("state");
    let kills = kill_until_finished(
        || weir_wordcount(&bootstrap, "text", &out, &state),
        0x4B41_464B,
        Duration::from_millis(300),
        Duration::from_millis(900),
        4,
    );
    let got = sorted_committed(&out);
    assert_same_output_after_kills(&got, &want, kills);
}

#[test]
fn undecodable_json_reaches_a_dead_letter_topic_on_the_broker() {
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "orders-in", 2);
    create_topic(&bootstrap, "orders-dlq", 1);
    common::dead_letters::undecodable_json_reaches_the_dead_letter_topic(
        &bootstrap,
        "orders-in",
        "orders-dlq",
    );
}

/// Runs `weir bench kafka-w1` against a fresh broker with `extra` flags and
/// returns its JSON lines, after checking it succeeded.
fn weir_bench_kafka_w1(extra: &[&str]) -> Vec<serde_json::Value> {
    let broker = TansuBroker::start();
    let output = common::node::weir_command()
        .args(["bench", "kafka-w1", "--n", "20005", "--workers", "2"])
        .args(["--kafka-brokers", &broker.bootstrap()])
        .args(["--kafka-partitions", "3"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output.status);
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let workloads: Vec<&str> = lines
        .iter()
        .map(|l| l["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        workloads,
        ["kafka-raw-produce", "kafka-raw-consume", "kafka-w1"]
    );
    for line in &lines {
        assert_eq!(line["check"], "passed", "{line}");
        assert_eq!(line["n"], 20005);
        assert!(line["records_per_sec"].as_f64().unwrap() > 0.0);
    }
    lines
}

/// The job's counts go to an output topic through the Kafka sink and are read
/// back and checked (`check: passed` means every update is in the topic and every
/// word's last count is exact).
#[test]
fn weir_bench_kafka_w1_writes_checked_counts_through_the_at_least_once_sink() {
    weir_bench_kafka_w1(&["--kafka-delivery", "at-least-once"]);
}

/// Exactly-once with checkpoints: the read-back is `read_committed`, so the check
/// passes only if every epoch's transactions were committed.
#[test]
fn weir_bench_kafka_w1_writes_checked_counts_through_the_exactly_once_sink() {
    let lines = weir_bench_kafka_w1(&[
        "--kafka-delivery",
        "exactly-once",
        "--checkpoint-interval-ms",
        "200",
    ]);
    assert_eq!(lines[2]["checkpointing"], true);
}

#[test]
fn weir_run_wordcount_sends_undecodable_kafka_values_to_its_dead_letter_topic() {
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "words", 1);
    create_topic(&bootstrap, "words-dlq", 1);
    let lines: Vec<(i32, Vec<u8>, Vec<u8>)> = vec![
        (0, b"a".to_vec(), b"to be".to_vec()),
        (0, b"b".to_vec(), b"or \xff not".to_vec()),
        (0, b"c".to_vec(), b"to be".to_vec()),
    ];
    produce_to(&bootstrap, "words", &lines);
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let status = weir_wordcount(&bootstrap, "words", &out, &root.path().join("state"))
        .args(["--kafka-dead-letter-topic", "words-dlq"])
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        sorted_committed(&out),
        ["be\t1", "be\t2", "to\t1", "to\t2"],
        "the decodable lines, counted"
    );
    let letters = common::dead_letters::read_records(&bootstrap, "words-dlq", 1, 1);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key(), Some(&b"b"[..]));
    assert_eq!(letters[0].payload(), Some(&b"or \xff not"[..]));
}
