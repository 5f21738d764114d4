//! The Kafka source against librdkafka's in-process mock cluster (bound to
//! 127.0.0.1): record-for-record reads at parallelism 2, exactly-once state across
//! injected panics, dead letters for undecodable JSON, partition discovery, and event
//! time: per-partition watermarks inside one split, idle partitions, timestamps from
//! a payload field.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::checkpointed;
use common::paced::EpochPaced;
use common::tansu::committed_offsets;

use common::events::Count;
use common::kafka::{cluster, create_unique_topic, produce, spread};
use rdkafka::ClientConfig;
use weir::connector::kafka::{Json, KafkaRecord, KafkaSource, StartMode, Utf8Text};
use weir::connector::ReadStatus;
use weir::prelude::*;
use weir::window::{Tumbling, WindowResult};

/// What the test expects of a record: (topic, partition, offset, key, value, ts).
type Row = (String, i32, i64, String, String, Option<i64>);

/// The rows `records` become once produced to `topic` (offsets per partition).
fn expected(topic: &str, records: &[(i32, String, String, i64)]) -> Vec<Row> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rows = Vec::new();
    for (p, k, v, ts) in records {
        let offset = next.entry(*p).or_insert(0);
        rows.push((
            topic.to_string(),
            *p,
            *offset,
            k.clone(),
            v.clone(),
            Some(*ts),
        ));
        *offset += 1;
    }
    rows.sort();
    rows
}

fn row(r: KafkaRecord<String>) -> Row {
    let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
    (r.topic, r.partition, r.offset, key, r.value, r.timestamp)
}

#[test]
fn a_multi_partition_topic_is_read_record_for_record_at_parallelism_2() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    assert!(bootstrap.contains("127.0.0.1"), "{bootstrap}");
    mock.create_topic("orders", 5, 1).unwrap();
    let records: Vec<_> = spread(3000, 5, "k", "order", 1_700_000_000_000);
    produce(&bootstrap, "orders", &records);

    let dead = DeadLetters::to_log();
    let sink = CollectSink::<Row>::new();
    let job = Job::new("read")
        .source(
            KafkaSource::new(bootstrap.clone(), ["orders"], Utf8Text, dead.clone())
                .stop_at_end(true),
        )
        .map(row)
        .sink(sink.clone());
    let report = Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();
    assert_eq!(report.restarts, 0);
    let mut got = sink.items();
    got.sort();
    assert_eq!(got.len(), records.len(), "no record lost or duplicated");
    assert!(
        got == expected("orders", &records),
        "every record as produced"
    );
    assert_eq!(dead.count(), 0);
}

#[test]
fn kafka_timestamps_drive_event_time_windows() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("clicks", 2, 1).unwrap();
    // Timestamps T0..T0 + 1000 ms: ten 100 ms windows of 100 records each. (A
    // producer timestamp of 0 means "now" to librdkafka, so T0 is not 0.)
    const T0: i64 = 1_700_000_000_000;
    let records: Vec<_> = (0..1000i64)
        .map(|i| ((i % 2) as i32, "user".to_string(), format!("{i}"), T0 + i))
        .collect();
    produce(&bootstrap, "clicks", &records);
    let rows = CollectSink::new();
    let job = Job::new("windows")
        .source_with_time(
            KafkaSource::new(bootstrap, ["clicks"], Utf8Text, DeadLetters::to_log())
                .stop_at_end(true),
            WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_millis(1000),
                |r: &KafkaRecord<String>| r.event_time(),
            ),
        )
        .map(|r: KafkaRecord<String>| (0u64, r.event_time()))
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .aggregate(Count)
        .sink(rows.clone());
    Node::new(EngineOptions::for_tests(2))
        .unwrap()
        .run(job)
        .unwrap();
    let mut got: Vec<(i64, u64)> = rows
        .items()
        .iter()
        .map(|r: &WindowResult<u64, u64>| (r.window.start, r.value))
        .collect();
    got.sort();
    let want: Vec<(i64, u64)> = (0..10).map(|w| (T0 + w * 100, 100)).collect();
    assert_eq!(got, want);
}

/// Panics the first time it sees each of its target values.
#[derive(Clone, Default)]
struct Faults {
    targets: Arc<HashSet<u64>>,
    fired: Arc<Mutex<HashSet<u64>>>,
}

impl Faults {
    fn seeded(seed: u64, count: usize, n: u64) -> Self {
        let mut targets = HashSet::new();
        let mut x = seed;
        while targets.len() < count {
            x = weir::connector::generator::splitmix64(x);
            targets.insert(x % n);
        }
        Faults {
            targets: Arc::new(targets),
            fired: Arc::default(),
        }
    }
    fn check(&self, x: u64) {
        if self.targets.contains(&x) && self.fired.lock().map(|mut f| f.insert(x)).unwrap_or(false)
        {
            panic!("injected fault at value {x}");
        }
    }
    fn fired(&self) -> usize {
        self.fired.lock().map(|f| f.len()).unwrap_or(0)
    }
}

const SUMS_N: u64 = 12_000;
const SUMS_PARTITIONS: u64 = 4;

/// Each value x goes to partition x % 4 and key x % 196, so all of a key's values
/// are in one partition, in order, and its running sums are the same in every run.
fn sums_job(bootstrap: &str, out: &Path, source_faults: Faults, keyed_faults: Faults) -> Job {
    Job::new("kafka-sums")
        .source(
            KafkaSource::new(
                bootstrap.to_string(),
                ["numbers"],
                Json::<u64>::new(),
                DeadLetters::to_log(),
            )
            .stop_at_end(true),
        )
        .map(move |r: KafkaRecord<u64>| {
            let x = r.value;
            source_faults.check(x);
            if x.is_multiple_of(40) {
                // Paced, so the run spans many checkpoints.
                std::thread::sleep(Duration::from_millis(1));
            }
            (x % 196, x)
        })
        .group_by_key()
        .reduce(move |sum: u64, x: u64| {
            keyed_faults.check(x);
            sum + x
        })
        .sink(TransactionalFileSink::new(out, tab_separated))
}

#[test]
fn panics_while_reading_kafka_recover_to_the_output_of_a_run_without_faults() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("numbers", SUMS_PARTITIONS as i32, 1)
        .unwrap();
    let records: Vec<_> = (0..SUMS_N)
        .map(|x| {
            (
                (x % SUMS_PARTITIONS) as i32,
                String::new(),
                x.to_string(),
                0,
            )
        })
        .collect();
    produce(&bootstrap, "numbers", &records);
    let root = tempfile::tempdir().unwrap();

    let reference_out = root.path().join("reference");
    let node = Node::new(checkpointed(&root.path().join("reference-state"))).unwrap();
    let report = node
        .run(sums_job(
            &bootstrap,
            &reference_out,
            Faults::default(),
            Faults::default(),
        ))
        .expect("reference run");
    assert_eq!(report.restarts, 0);
    let mut want = read_committed(&reference_out).unwrap();
    want.sort();
    assert_eq!(want.len() as u64, SUMS_N, "one running sum per record");

    let out = root.path().join("faulty");
    let source_faults = Faults::seeded(11, 2, SUMS_N);
    let keyed_faults = Faults::seeded(99, 2, SUMS_N);
    let node = Node::new(checkpointed(&root.path().join("faulty-state"))).unwrap();
    let report = node
        .run(sums_job(
            &bootstrap,
            &out,
            source_faults.clone(),
            keyed_faults.clone(),
        ))
        .expect("the job recovers from every injected panic");
    assert_eq!(
        source_faults.fired() + keyed_faults.fired(),
        4,
        "every fault fired"
    );
    // Faults in different actors (source stage, keyed stage) can fire within one
    // attempt, before the job is torn down: at most one restart per fault.
    assert!(
        (1..=4).contains(&report.restarts),
        "{} restarts for 4 faults",
        report.restarts
    );
    assert!(report.checkpoints.completed > 0, "checkpoints were taken");
    let mut got = read_committed(&out).unwrap();
    got.sort();
    assert_eq!(got.len(), want.len(), "no record lost or duplicated");
    assert!(got == want, "output differs from the run without faults");
}

#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
}

#[test]
fn an_undecodable_json_record_goes_to_the_dead_letters_with_its_offset() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders-json", 1, 1).unwrap();
    let values = [r#"{"id":1}"#, "not json", r#"{"id":"two"}"#, r#"{"id":3}"#];
    let records: Vec<_> = values
        .iter()
        .map(|v| (0, "k".to_string(), v.to_string(), 1_000))
        .collect();
    produce(&bootstrap, "orders-json", &records);
    let dir = tempfile::tempdir().unwrap();
    let letters_path = dir.path().join("dead.jsonl");
    let dead = DeadLetters::to_file(&letters_path).unwrap();
    let sink = CollectSink::new();
    let job = Job::new("json")
        .source(
            KafkaSource::new(
                bootstrap,
                ["orders-json"],
                Json::<Order>::new(),
                dead.clone(),
            )
            .stop_at_end(true),
        )
        .map(|r: KafkaRecord<Order>| r.value.id)
        .sink(sink.clone());
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    let mut ids = sink.items();
    ids.sort();
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(dead.count(), 2);
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&letters_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2);
    for (letter, offset, record) in [
        (&letters[0], 1, "not json"),
        (&letters[1], 2, r#"{"id":"two"}"#),
    ] {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("topic orders-json partition 0 offset {offset}")),
            "{reason}"
        );
        assert!(reason.contains("not valid JSON"), "{reason}");
        assert_eq!(letter["record"], record);
    }
}

#[test]
fn partitions_found_while_running_are_read_from_their_start() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("first", 2, 1).unwrap();
    let first: Vec<_> = spread(40, 2, "a", "first", 1_000);
    produce(&bootstrap, "first", &first);

    let seen = Arc::new(Mutex::new(0usize));
    let stop = StopFlag::new();
    let sink = CollectSink::<Row>::new();
    let runner = {
        let (bootstrap, seen, stop, sink) =
            (bootstrap.clone(), seen.clone(), stop.clone(), sink.clone());
        std::thread::spawn(move || {
            // "second" does not exist yet: the source starts on "first" alone, and
            // reads "second" from its earliest offset once discovery finds it.
            let source = KafkaSource::new(
                bootstrap,
                ["first", "second"],
                Utf8Text,
                DeadLetters::to_log(),
            )
            .start(StartMode::Earliest)
            .discovery_interval(Duration::from_millis(100))
            .stop_on(stop);
            let job = Job::new("discovery")
                .source(source)
                .map(move |r: KafkaRecord<String>| {
                    if let Ok(mut n) = seen.lock() {
                        *n += 1;
                    }
                    row(r)
                })
                .sink(sink);
            Node::new(EngineOptions::for_tests(2)).unwrap().run(job)
        })
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while *seen.lock().unwrap() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records arrived",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(first.len());
    mock.create_topic("second", 3, 1).unwrap();
    let second: Vec<_> = spread(30, 3, "b", "second", 2_000);
    produce(&bootstrap, "second", &second);
    wait_for(first.len() + second.len());
    stop.stop();
    runner.join().unwrap().expect("the job ends when stopped");
    let mut want = expected("first", &first);
    want.extend(expected("second", &second));
    want.sort();
    let mut got = sink.items();
    got.sort();
    assert_eq!(got, want);
}

/// Reads from `reader` until `want` records arrived (or 30 s passed).
fn read_until<R>(reader: &mut R, want: usize) -> Vec<R::Item>
where
    R: SourceReader,
{
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} records",
            got.len()
        );
        reader.read(want - got.len(), &mut got).expect("read");
    }
    got
}

fn offsets(records: &[KafkaRecord<String>]) -> Vec<(i32, i64)> {
    let mut o: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    o.sort();
    o
}

#[test]
fn a_reader_resumes_from_its_position_and_start_modes_choose_the_first_offset() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("events", 2, 1).unwrap();
    let records: Vec<_> = (0..20i64)
        .map(|i| {
            (
                (i % 2) as i32,
                String::new(),
                format!("e{i}"),
                10_000 + 10 * (i / 2),
            )
        })
        .collect();
    produce(&bootstrap, "events", &records);
    let source = |mode| {
        KafkaSource::new(
            bootstrap.clone(),
            ["events"],
            Utf8Text,
            DeadLetters::to_log(),
        )
        .start(mode)
        .group_id("readers")
    };
    let all: Vec<(i32, i64)> = (0..2).flat_map(|p| (0..10).map(move |o| (p, o))).collect();

    // Earliest, resumed half way from the position: every record once.
    let earliest = source(StartMode::Earliest);
    let mut first = earliest.reader(0, 1).unwrap();
    let before = read_until(&mut first, 7);
    let position = first
        .position()
        .expect("a kafka reader always has a position");
    let mut resumed = earliest.reader(0, 1).unwrap();
    resumed.seek(&position).unwrap();
    let after = read_until(&mut resumed, 13);
    let mut both = offsets(&before);
    both.extend(offsets(&after));
    both.sort();
    assert_eq!(
        both, all,
        "resumed from the position: no record lost or read twice"
    );
    assert_eq!(
        resumed.read(10, &mut Vec::new()).unwrap(),
        ReadStatus::Idle,
        "no message: idle"
    );
    let err = resumed.seek(&[7, 1, 2]).unwrap_err().to_string();
    assert!(err.contains("unknown position version 7"), "{err}");

    // (StartMode::Timestamp is not tested here: the mock cluster's ListOffsets
    // ignores timestamps, a FIXME in librdkafka's mock; see docs/kafka.md.)

    // Latest: nothing already there; what is produced after the start.
    let latest = source(StartMode::Latest);
    let mut late = latest.reader(0, 1).unwrap();
    assert_eq!(late.read(10, &mut Vec::new()).unwrap(), ReadStatus::Idle);
    produce(
        &bootstrap,
        "events",
        &[(1, String::new(), "new".into(), 20_000)],
    );
    let got = read_until(&mut late, 1);
    assert_eq!(offsets(&got), vec![(1, 10)]);

    // Committed: partition 0 committed at 4, partition 1 never: fallback earliest.
    let committer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "readers")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("events", 0, rdkafka::Offset::Offset(4))
        .unwrap();
    rdkafka::consumer::Consumer::commit(&committer, &tpl, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    let fallback = weir::connector::kafka::Fallback::Earliest;
    let mut committed = source(StartMode::Committed { fallback })
        .reader(0, 1)
        .unwrap();
    let got = read_until(&mut committed, 6 + 11);
    let mut want: Vec<(i32, i64)> = (4..10).map(|o| (0, o)).collect();
    want.extend((0..11).map(|o| (1, o)));
    assert_eq!(offsets(&got), want);

    // Two splits own disjoint partitions and together read everything.
    let two = source(StartMode::Earliest);
    let mut s0 = two.reader(0, 2).unwrap();
    let mut s1 = two.reader(1, 2).unwrap();
    let mut got = read_until(&mut s0, 10);
    assert!(got.iter().all(|r| r.partition == 0));
    got.extend(read_until(&mut s1, 11));
    assert_eq!(offsets(&got).len(), 21);
}

#[test]
fn a_restored_split_reads_partitions_it_had_not_seen_from_their_start() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("old", 1, 1).unwrap();
    produce(
        &bootstrap,
        "old",
        &[(0, String::new(), "before".into(), 1_000)],
    );
    // Latest: the record already in "old" is not read.
    let source = KafkaSource::new(
        bootstrap.clone(),
        ["new", "old"],
        Utf8Text,
        DeadLetters::to_log(),
    )
    .start(StartMode::Latest)
    .discovery_interval(Duration::ZERO);
    let mut reader = source.reader(0, 1).unwrap();
    assert_eq!(reader.read(10, &mut Vec::new()).unwrap(), ReadStatus::Idle);
    let position = reader.position().unwrap();
    // While the job is down, "new" appears with records, and "old" gets one more.
    mock.create_topic("new", 2, 1).unwrap();
    produce(
        &bootstrap,
        "new",
        &[
            (0, String::new(), "n0".into(), 2_000),
            (1, String::new(), "n1".into(), 2_000),
        ],
    );
    produce(
        &bootstrap,
        "old",
        &[(0, String::new(), "after".into(), 3_000)],
    );
    // Restored: "old" resumes at its snapshotted offset; "new" was not in the
    // snapshot of a started split, so it is read from its first record, not from
    // the latest.
    let mut restored = source.reader(0, 1).unwrap();
    restored.seek(&position).unwrap();
    let mut got: Vec<String> = read_until(&mut restored, 3)
        .into_iter()
        .map(|r| r.value)
        .collect();
    got.sort();
    assert_eq!(got, vec!["after", "n0", "n1"]);
}

/// The timestamp start mode needs a broker that answers ListOffsets by timestamp.
/// Neither broker that runs here does (the mock cluster answers "no offset", the
/// Tansu broker of ../shared/kafka-testing.md offset 0, so this test fails there),
/// so it is ignored unless asked for (`cargo test -- --ignored`) with
/// `WEIR_KAFKA_BOOTSTRAP` naming a real Apache Kafka cluster.
#[test]
#[ignore = "needs a real Apache Kafka named by WEIR_KAFKA_BOOTSTRAP (run with --ignored)"]
fn timestamp_start_mode_needs_a_real_kafka_named_by_weir_kafka_bootstrap() {
    let bootstrap = std::env::var("WEIR_KAFKA_BOOTSTRAP")
        .expect("WEIR_KAFKA_BOOTSTRAP names a real Apache Kafka cluster (host:port)");
    let topic = create_unique_topic(&bootstrap, "weir-timestamps", 2);
    // Offset o of each partition has timestamp 10_000 + 10 * o.
    let records: Vec<_> = (0..20i64)
        .map(|i| {
            (
                (i % 2) as i32,
                String::new(),
                format!("e{i}"),
                10_000 + 10 * (i / 2),
            )
        })
        .collect();
    produce(&bootstrap, &topic, &records);
    let source = KafkaSource::new(bootstrap, [topic.as_str()], Utf8Text, DeadLetters::to_log())
        .start(StartMode::Timestamp(10_055));
    let mut reader = source.reader(0, 1).unwrap();
    let got = read_until(&mut reader, 8);
    let want: Vec<(i32, i64)> = (0..2).flat_map(|p| (6..10).map(move |o| (p, o))).collect();
    assert_eq!(offsets(&got), want);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        reader.read(10, &mut Vec::new()).unwrap(),
        ReadStatus::Idle,
        "nothing earlier"
    );
}

#[test]
fn completed_epochs_commit_their_offsets_to_the_configured_group() {
    const PARTITIONS: i32 = 4;
    const N: i64 = 8000;
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("lag", PARTITIONS, 1).unwrap();
    let records: Vec<_> = (0..N)
        .map(|i| {
            (
                (i % PARTITIONS as i64) as i32,
                String::new(),
                i.to_string(),
                0,
            )
        })
        .collect();
    produce(&bootstrap, "lag", &records);
    let end = N / PARTITIONS as i64;
    let root = tempfile::tempdir().unwrap();
    let run = |group: &str, commit: bool, state: &str| {
        let sink = CollectSink::<i64>::new();
        let job = Job::new("lag")
            // At most 100 records per split per epoch: several periodic epochs
            // complete while every split reads, however loaded the machine.
            .source(EpochPaced::new(
                KafkaSource::new(
                    bootstrap.clone(),
                    ["lag"],
                    Json::<i64>::new(),
                    DeadLetters::to_log(),
                )
                .group_id(group)
                .commit_offsets(commit)
                .stop_at_end(true),
                Some(100),
            ))
            .map(|r: KafkaRecord<i64>| r.value)
            .sink(sink.clone());
        let report = Node::new(checkpointed(&root.path().join(state)))
            .unwrap()
            .run(job)
            .expect("checkpointed run");
        assert_eq!(report.restarts, 0);
        assert_eq!(sink.items().len() as i64, N, "every record once");
        report
    };

    let report = run("lag-watchers", true, "committing");
    assert!(
        report.checkpoints.completed >= 3,
        "several epochs completed: {}",
        report.checkpoints.completed
    );
    // The final epoch completes after the actors finished (its EpochComplete
    // reaches no source task), so a partition's commit is its offset at the last
    // periodic epoch that completed while its split's actor ran: the end only if
    // the split was exhausted by then.
    let offsets = committed_offsets(&bootstrap, "lag-watchers", "lag", PARTITIONS);
    for (p, offset) in offsets.iter().enumerate() {
        let offset = offset.unwrap_or_else(|| panic!("partition {p}: no committed offset"));
        assert!(
            offset > 0 && offset <= end,
            "partition {p}: committed {offset}, end {end}"
        );
    }

    run("lag-quiet", false, "quiet");
    assert_eq!(
        committed_offsets(&bootstrap, "lag-quiet", "lag", PARTITIONS),
        vec![None; PARTITIONS as usize],
        "commit_offsets(false): nothing committed"
    );
}

/// What one run of the skewed-partitions job saw.
struct SkewRun {
    /// (window start, count) of every window fired while the job ran, sorted.
    windows: Vec<(i64, u64)>,
    /// Records late for all their windows.
    late: u64,
    /// Windows fired before the slow partition had any record.
    fired_before_slow: usize,
}

const SKEW_T0: i64 = 1_700_000_000_000;

/// Partition 0 of a two-partition topic read by ONE split holds 500 records at
/// T0 + 10 s.., partition 1 gets 500 records at T0.. only once partition 0's were
/// read. Counts 100 ms windows (key: the partition).
fn skewed_partitions_run(per_partition: bool, idleness: Option<Duration>) -> SkewRun {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("skew", 2, 1).unwrap();
    let ahead: Vec<_> = (0..500i64)
        .map(|i| (0, "p0".to_string(), format!("{i}"), SKEW_T0 + 10_000 + i))
        .collect();
    let behind: Vec<_> = (0..500i64)
        .map(|i| (1, "p1".to_string(), format!("{i}"), SKEW_T0 + i))
        .collect();
    produce(&bootstrap, "skew", &ahead);

    let seen = Arc::new(Mutex::new(0usize));
    let stop = StopFlag::new();
    let rows = CollectSink::<WindowResult<u64, u64>>::new();
    let mut time = WatermarkStrategy::ascending(|r: &KafkaRecord<String>| r.event_time());
    if let Some(idle) = idleness {
        time = time.with_idleness(idle);
    }
    let windowed = Job::new("skew")
        .source_with_time(
            KafkaSource::new(bootstrap.clone(), ["skew"], Utf8Text, DeadLetters::to_log())
                .partition_watermarks(per_partition)
                .stop_on(stop.clone()),
            time,
        )
        .map({
            let seen = seen.clone();
            move |r: KafkaRecord<String>| {
                *seen.lock().unwrap() += 1;
                (u64::try_from(r.partition).unwrap(), r.event_time())
            }
        })
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap());
    let late = windowed.late_records();
    // CollectSink hands its records over at the end: count firings as they happen.
    let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let job = windowed
        .aggregate(Count)
        .map({
            let fired = fired.clone();
            move |r: WindowResult<u64, u64>| {
                fired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                r
            }
        })
        .sink(rows.clone());
    let fired_now = || fired.load(std::sync::atomic::Ordering::Relaxed);
    let runner = std::thread::spawn(|| Node::new(EngineOptions::for_tests(1)).unwrap().run(job));
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("partition 0's records", &|| {
        *seen.lock().unwrap() >= ahead.len()
    });
    if idleness.is_some() || !per_partition {
        // Partition 1 idle, or one watermark per split: partition 0's windows fire
        // while the job runs.
        wait("partition 0's windows", &|| fired_now() >= 4);
    } else {
        // Several watermark intervals: whatever the watermark allows fires now.
        std::thread::sleep(Duration::from_millis(400));
    }
    let fired_before_slow = fired_now();
    produce(&bootstrap, "skew", &behind);
    wait("partition 1's records", &|| {
        *seen.lock().unwrap() >= ahead.len() + behind.len()
    });
    stop.stop();
    runner.join().unwrap().expect("the job ends when stopped");
    let mut windows: Vec<(i64, u64)> = rows
        .items()
        .iter()
        .map(|r| (r.window.start - SKEW_T0, r.value))
        .collect();
    windows.sort();
    SkewRun {
        windows,
        late: late.load(std::sync::atomic::Ordering::Relaxed),
        fired_before_slow,
    }
}

#[test]
fn a_partition_ahead_in_event_time_does_not_make_a_slower_partition_of_its_split_late() {
    let per_partition = skewed_partitions_run(true, None);
    let all: Vec<(i64, u64)> = (0..5)
        .map(|w| (w * 100, 100))
        .chain((0..5).map(|w| (10_000 + w * 100, 100)))
        .collect();
    assert_eq!(
        per_partition.fired_before_slow, 0,
        "partition 1 (no record yet) holds the split's watermark back"
    );
    assert_eq!(per_partition.late, 0);
    assert_eq!(
        per_partition.windows, all,
        "every window of both partitions, complete"
    );

    // One watermark per split: partition 0 moves it 10 s ahead, and all of
    // partition 1's records are late.
    let per_split = skewed_partitions_run(false, None);
    assert!(
        per_split.fired_before_slow >= 4,
        "{}",
        per_split.fired_before_slow
    );
    assert_eq!(per_split.late, 500);
    let ahead_only: Vec<(i64, u64)> = (0..5).map(|w| (10_000 + w * 100, 100)).collect();
    assert_eq!(per_split.windows, ahead_only);
}

#[test]
fn an_idle_partition_does_not_stall_the_windows_of_its_split() {
    let run = skewed_partitions_run(true, Some(Duration::from_millis(300)));
    // Partition 0's windows fired while partition 1 was idle (the run waited for
    // them); partition 1's records, arriving after, are behind the watermark, as in
    // Flink once a partition was idle.
    assert!(run.fired_before_slow >= 4, "{}", run.fired_before_slow);
    assert_eq!(run.late, 500);
    let ahead_only: Vec<(i64, u64)> = (0..5).map(|w| (10_000 + w * 100, 100)).collect();
    assert_eq!(run.windows, ahead_only);
}

/// A click whose event time is a field of its JSON payload.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
struct Click {
    user: u64,
    ts: i64,
}

#[test]
fn event_time_can_come_from_a_payload_field() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("payload-ts", 2, 1).unwrap();
    // The Kafka timestamps say nothing useful (all the same instant, far from the
    // payload's), and the payload times are out of order within 50 ms.
    let records: Vec<_> = (0..400i64)
        .map(|i| {
            let ts = SKEW_T0 + i + if i % 2 == 0 { 40 } else { 0 };
            let value = format!(r#"{{"user":{},"ts":{ts}}}"#, i % 3);
            ((i % 2) as i32, "c".to_string(), value, 1_600_000_000_000)
        })
        .collect();
    produce(&bootstrap, "payload-ts", &records);
    let windowed = Job::new("payload-time")
        .source_with_time(
            KafkaSource::new(
                bootstrap,
                ["payload-ts"],
                Json::<Click>::new(),
                DeadLetters::to_log(),
            )
            .stop_at_end(true),
            WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_millis(50),
                |r: &KafkaRecord<Click>| r.value.ts,
            ),
        )
        .map(|r: KafkaRecord<Click>| (r.value.user, r.value.ts))
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap());
    let late = windowed.late_records();
    let rows = CollectSink::new();
    let job = windowed.aggregate(Count).sink(rows.clone());
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    let mut got: Vec<(u64, i64, u64)> = rows
        .items()
        .iter()
        .map(|r: &WindowResult<u64, u64>| (r.key, r.window.start - SKEW_T0, r.value))
        .collect();
    got.sort();
    let mut want: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for i in 0..400i64 {
        let ts = i + if i % 2 == 0 { 40 } else { 0 };
        *want.entry(((i % 3) as u64, ts / 100 * 100)).or_default() += 1;
    }
    let want: Vec<(u64, i64, u64)> = want.into_iter().map(|((k, w), n)| (k, w, n)).collect();
    assert_eq!(got, want, "windows by the payload's time");
    assert_eq!(late.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn undecodable_json_reaches_the_dead_letter_topic_with_its_bytes_and_headers() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders-in", 2, 1).unwrap();
    mock.create_topic("orders-dlq", 1, 1).unwrap();
    common::dead_letters::undecodable_json_reaches_the_dead_letter_topic(
        &bootstrap,
        "orders-in",
        "orders-dlq",
    );
}

#[test]
fn a_dead_letter_topic_that_cannot_be_reached_fails_the_job_instead_of_dropping_letters() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders-unreachable", 1, 1).unwrap();
    let records: Vec<_> = ["{\"id\":1}", "not json", "{\"id\":3}"]
        .iter()
        .map(|v| (0, "k".to_string(), v.to_string(), 1_000))
        .collect();
    produce(&bootstrap, "orders-unreachable", &records);
    // Nothing listens on this port: the letter times out after 300 ms.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let dead = DeadLetters::to_kafka_with(
        &nowhere.to_string(),
        "dlq",
        [("message.timeout.ms", "300"), ("log_level", "0")],
    )
    .unwrap();
    let job = Job::new("json-unreachable-dlq")
        .source(
            KafkaSource::new(
                bootstrap,
                ["orders-unreachable"],
                Json::<Order>::new(),
                dead.clone(),
            )
            .stop_at_end(true),
        )
        .map(|r: KafkaRecord<Order>| r.value.id)
        .sink(CollectSink::new());
    let error = Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .expect_err("an undeliverable dead letter fails the job");
    let text = format!("{error}");
    assert!(
        text.contains("dead-letter topic dlq") && text.contains("not delivered"),
        "{text}"
    );
    assert_eq!(dead.count(), 1);
}

/// Values 0..400 as JSON in one partition, except offset 250, which is not JSON.
fn numbers_with_one_bad_record() -> Vec<(i32, String, String, i64)> {
    (0..400)
        .map(|i| {
            let value = if i == 250 {
                "not json".to_string()
            } else {
                i.to_string()
            };
            (0, format!("k{i}"), value, 1_000)
        })
        .collect()
}

/// Running sums of the topic's good values (key `x % 7`) into `out`, the dead
/// letters to `dead`.
fn checked_sums_job(bootstrap: &str, topic: &str, out: &Path, dead: DeadLetters) -> Job {
    Job::new("dlq-sums")
        .source(
            KafkaSource::new(bootstrap.to_string(), [topic], Json::<u64>::new(), dead)
                .stop_at_end(true),
        )
        .map(|r: KafkaRecord<u64>| {
            // Paced, so epochs complete before and after the bad record.
            std::thread::sleep(Duration::from_micros(300));
            (r.value % 7, r.value)
        })
        .group_by_key()
        .reduce(|sum: u64, x: u64| sum + x)
        .sink(TransactionalFileSink::new(out, tab_separated))
}

#[test]
fn a_dead_letter_that_was_not_delivered_is_sent_again_when_the_job_resumes() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("sums-in", 1, 1).unwrap();
    mock.create_topic("sums-dlq", 1, 1).unwrap();
    produce(&bootstrap, "sums-in", &numbers_with_one_bad_record());
    let root = tempfile::tempdir().unwrap();
    let options = |state: &str| {
        let mut o = EngineOptions::for_tests(1);
        o.state_dir = Some(root.path().join(state));
        o.checkpoint.interval = Some(Duration::from_millis(20));
        o
    };

    let reference = root.path().join("reference");
    Node::new(options("reference-state"))
        .unwrap()
        .run(checked_sums_job(
            &bootstrap,
            "sums-in",
            &reference,
            DeadLetters::to_log(),
        ))
        .unwrap();
    let mut want = read_committed(&reference).unwrap();
    want.sort();
    assert_eq!(want.len(), 399, "one running sum per good record");

    // First run: the dead-letter topic cannot be reached. The job fails, and no
    // epoch after the bad record completes.
    let out = root.path().join("out");
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let unreachable = DeadLetters::to_kafka_with(
        &nowhere.to_string(),
        "sums-dlq",
        [("message.timeout.ms", "300"), ("log_level", "0")],
    )
    .unwrap();
    let failed = Node::new(options("state"))
        .unwrap()
        .run(checked_sums_job(
            &bootstrap,
            "sums-in",
            &out,
            unreachable.clone(),
        ))
        .expect_err("the letter cannot be delivered");
    assert!(format!("{failed}").contains("not delivered"), "{failed}");
    assert_eq!(unreachable.count(), 1);
    let committed_before = read_committed(&out).unwrap().len();
    assert!(
        committed_before < 250,
        "no epoch past the bad record completed ({committed_before} sums committed)"
    );

    // Resumed on the same state dir with a reachable dead-letter topic: the bad
    // record is read again and its letter delivered; the output is exact.
    let dead = DeadLetters::to_kafka(&bootstrap, "sums-dlq").unwrap();
    Node::new(options("state"))
        .unwrap()
        .run(checked_sums_job(&bootstrap, "sums-in", &out, dead.clone()))
        .expect("the resumed run");
    assert_eq!(dead.count(), 1, "the bad record's letter, once");
    let letters = common::dead_letters::read_records(&bootstrap, "sums-dlq", 1, 1);
    assert_eq!(letters.len(), 1);
    assert_eq!(
        rdkafka::Message::payload(&letters[0]),
        Some(&b"not json"[..])
    );
    let mut got = read_committed(&out).unwrap();
    got.sort();
    assert_eq!(got.len(), want.len(), "no sum lost or duplicated");
    assert!(got == want, "output differs from the run without faults");
}

const SKEWED_N: u64 = 8_000;

/// Record x goes to partition x % 4; partitions 0 and 1 run 10 s ahead in event time
/// of 2 and 3, so at parallelism 2 each split holds a fast and a slow partition.
/// Counts 100 ms windows per key (x % 5) into `out`, and returns the late counter.
fn skewed_windows_job(
    bootstrap: &str,
    out: &Path,
    faults: Faults,
) -> (Job, Arc<std::sync::atomic::AtomicU64>) {
    let windowed = Job::new("skewed-windows")
        .source_with_time(
            KafkaSource::new(
                bootstrap.to_string(),
                ["skewed"],
                Json::<u64>::new(),
                DeadLetters::to_log(),
            )
            .stop_at_end(true),
            WatermarkStrategy::ascending(|r: &KafkaRecord<u64>| r.event_time()),
        )
        .map(move |r: KafkaRecord<u64>| {
            let x = r.value;
            faults.check(x);
            if x.is_multiple_of(40) {
                // Paced, so the run spans many checkpoints.
                std::thread::sleep(Duration::from_millis(1));
            }
            (x % 5, r.event_time())
        })
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap());
    let late = windowed.late_records();
    let job = windowed
        .aggregate(Count)
        .map(|r: WindowResult<u64, u64>| (format!("{}@{}", r.key, r.window.start), r.value))
        .sink(TransactionalFileSink::new(out, tab_separated));
    (job, late)
}

#[test]
fn per_partition_watermarks_survive_panics_and_restores_with_the_output_of_a_run_without_faults() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("skewed", 4, 1).unwrap();
    let records: Vec<_> = (0..SKEWED_N)
        .map(|x| {
            let partition = (x % 4) as i32;
            let ahead = if partition < 2 { 10_000 } else { 0 };
            let ts = SKEW_T0 + ahead + (x / 4) as i64;
            (partition, String::new(), x.to_string(), ts)
        })
        .collect();
    produce(&bootstrap, "skewed", &records);
    let root = tempfile::tempdir().unwrap();
    let read = |out: &Path| {
        let mut lines = read_committed(out).unwrap();
        lines.sort();
        lines
    };

    let reference = root.path().join("reference");
    let (job, late) = skewed_windows_job(&bootstrap, &reference, Faults::default());
    let report = Node::new(checkpointed(&root.path().join("reference-state")))
        .unwrap()
        .run(job)
        .expect("reference run");
    assert_eq!(report.restarts, 0);
    assert_eq!(late.load(std::sync::atomic::Ordering::Relaxed), 0);
    let want = read(&reference);
    // 2 000 records per partition = 20 windows of 100 ms, 2 partitions per time
    // range, 5 keys: 40 windows per key, each counted once.
    assert_eq!(want.len(), 5 * 40, "{want:?}");

    let out = root.path().join("faulty");
    let faults = Faults::seeded(7, 3, SKEWED_N);
    let (job, late) = skewed_windows_job(&bootstrap, &out, faults.clone());
    let report = Node::new(checkpointed(&root.path().join("faulty-state")))
        .unwrap()
        .run(job)
        .expect("the job recovers from every injected panic");
    assert_eq!(faults.fired(), 3, "every fault fired");
    assert!(report.restarts >= 1);
    assert!(report.checkpoints.completed > 0, "checkpoints were taken");
    assert_eq!(
        late.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing late after restores"
    );
    assert_eq!(
        read(&out),
        want,
        "windows differ from the run without faults"
    );
}
