//! One dead-letter-topic scenario run against any broker (the mock cluster in
//! tests/kafka_source.rs, Tansu in tests/kafka_broker.rs): undecodable JSON records
//! reach the dead-letter topic with their exact bytes and the documented headers,
//! and the `weir_dead_letters_total` metric counts them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir::connector::dead_letter::kafka::headers;
use weir::connector::kafka::{Json, KafkaRecord, KafkaSource};
use weir::prelude::*;

use super::tansu::produce_to;

/// The test binary's global metrics recorder (installed once), so counters from
/// the job's actor threads can be read.
pub fn metrics_snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only global recorder");
        snapshotter
    })
}

/// The value of counter `name` with label `origin`.
pub fn counter(name: &str, origin: &str) -> u64 {
    metrics_snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .filter(|(key, ..)| {
            key.key()
                .labels()
                .any(|l| l.key() == "origin" && l.value() == origin)
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

/// Reads `n` records of `topic` (all partitions, from the start), then every other
/// record the topic holds by its partitions' ends; panics after 30 s with what it
/// found.
pub fn read_records(bootstrap: &str, topic: &str, partitions: i32, n: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} records in {topic}",
            got.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            got.push(m.detach());
        }
    }
    // Then everything else the topic holds (the letters' producer is idempotent and
    // not transactional, so the partitions' ends count its records exactly): a
    // record written twice shows as more than `n`, whatever the timing.
    let total: i64 = (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("the partition's ends");
            high - low
        })
        .sum();
    while (got.len() as i64) < total {
        assert!(
            Instant::now() < deadline,
            "{} of the {total} records in {topic}",
            got.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            got.push(m.detach());
        }
    }
    got
}

#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
}

/// Writes good and bad JSON orders to `input` (2 partitions, created by the
/// caller), runs a checkpointed job at parallelism 2 with its dead letters going to
/// `dlq` (1 partition, created by the caller), and checks the letters there: one per
/// bad record, whose key and value are the record's bytes exactly and whose headers
/// name the format version, the error, the origin, the position and the source
/// topic, partition and offset; and the metric.
pub fn undecodable_json_reaches_the_dead_letter_topic(bootstrap: &str, input: &str, dlq: &str) {
    metrics_snapshotter();
    let bad: [(i32, &[u8], &[u8]); 3] = [
        (0, b"k-bad", b"not json"),
        (1, b"\x00\x01\xff", b"\xff\xfe{ binary"),
        (1, b"", br#"{"id":"two"}"#),
    ];
    let records: Vec<(i32, Vec<u8>, Vec<u8>)> = vec![
        (0, b"k1".to_vec(), br#"{"id":1}"#.to_vec()),
        (0, bad[0].1.to_vec(), bad[0].2.to_vec()),
        (1, bad[1].1.to_vec(), bad[1].2.to_vec()),
        (1, bad[2].1.to_vec(), bad[2].2.to_vec()),
        (0, b"k3".to_vec(), br#"{"id":3}"#.to_vec()),
        (1, b"k5".to_vec(), br#"{"id":5}"#.to_vec()),
    ];
    // Offsets: partition 0: 0 {1}, 1 bad, 2 {3}; partition 1: 0 bad, 1 bad, 2 {5}.
    let bad_offsets = [(0, 1), (1, 0), (1, 1)];
    produce_to(bootstrap, input, &records);

    let dead = DeadLetters::to_kafka_with(bootstrap, dlq, [("linger.ms", "1")])
        .expect("a dead-letter producer");
    let sink = CollectSink::new();
    let job = Job::new("json-dlq")
        .source(
            KafkaSource::new(
                bootstrap.to_string(),
                [input],
                Json::<Order>::new(),
                dead.clone(),
            )
            .stop_at_end(true),
        )
        .map(|r: KafkaRecord<Order>| r.value.id)
        .sink(sink.clone());
    let state = tempfile::tempdir().expect("a state dir");
    let mut options = EngineOptions::for_tests(2);
    options.state_dir = Some(state.path().to_path_buf());
    options.checkpoint.interval = Some(Duration::from_millis(20));
    Node::new(options).unwrap().run(job).expect("the job runs");
    let mut ids = sink.items();
    ids.sort();
    assert_eq!(ids, vec![1, 3, 5], "the good records");
    assert_eq!(dead.count(), 3);
    let origin = format!("kafka({input})");
    assert_eq!(
        counter("weir_dead_letters_total", &origin),
        3,
        "the metric counts the letters of {origin}"
    );
    assert_eq!(counter("weir_dead_letter_errors_total", &origin), 0);

    let letters = read_records(bootstrap, dlq, 1, 3);
    assert_eq!(letters.len(), 3, "one letter per bad record, none twice");
    let mut by_source: BTreeMap<(i32, i64), &OwnedMessage> = BTreeMap::new();
    for letter in &letters {
        let h = header_map(letter);
        let partition: i32 = h[headers::SOURCE_PARTITION].parse().unwrap();
        let offset: i64 = h[headers::SOURCE_OFFSET].parse().unwrap();
        by_source.insert((partition, offset), letter);
    }
    for ((partition, key, value), (p, offset)) in bad.iter().zip(bad_offsets) {
        assert_eq!(*partition, p);
        let letter = by_source
            .get(&(p, offset))
            .unwrap_or_else(|| panic!("no letter for partition {p} offset {offset}"));
        assert_eq!(letter.key(), Some(*key), "the exact key of {p}/{offset}");
        assert_eq!(
            letter.payload(),
            Some(*value),
            "the exact value of {p}/{offset}"
        );
        let h = header_map(letter);
        assert_eq!(h[headers::VERSION], "1");
        assert_eq!(h[headers::ORIGIN], origin);
        assert_eq!(h[headers::SOURCE_TOPIC], input);
        let position = format!("topic {input} partition {p} offset {offset}");
        assert_eq!(h[headers::POSITION], position);
        let error = &h[headers::ERROR];
        assert!(
            error.starts_with(&format!("{position}: json format: ")),
            "{error}"
        );
    }
}

/// A letter's headers as text.
fn header_map(message: &OwnedMessage) -> BTreeMap<String, String> {
    let Some(headers) = message.headers() else {
        panic!("a dead letter without headers")
    };
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8(h.value.unwrap_or_default().to_vec()).expect("UTF-8 header"),
            )
        })
        .collect()
}
