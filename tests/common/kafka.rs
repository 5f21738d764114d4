//! A mock Kafka cluster and producing test records to it.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;

/// A one-broker mock cluster.
pub fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(1).expect("mock cluster")
}

pub fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer")
}

/// Produces `(partition, key, value, timestamp)` records to `topic`, in order, and
/// waits until all are acknowledged. Each partition's records get offsets 0, 1, ...
/// in the order given.
/// `n` records spread round robin over `partitions`: record i has key `key` + i,
/// value `value` + " " + i and timestamp `first_ts` + i.
pub fn spread(
    n: i64,
    partitions: i32,
    key: &str,
    value: &str,
    first_ts: i64,
) -> Vec<(i32, String, String, i64)> {
    (0..n)
        .map(|i| {
            let partition = i32::try_from(i % i64::from(partitions)).unwrap_or(0);
            (
                partition,
                format!("{key}{i}"),
                format!("{value} {i}"),
                first_ts + i,
            )
        })
        .collect()
}

pub fn produce(bootstrap: &str, topic: &str, records: &[(i32, String, String, i64)]) {
    let p = producer(bootstrap);
    for (partition, key, value, ts) in records {
        let mut record = BaseRecord::to(topic)
            .partition(*partition)
            .key(key.as_str())
            .payload(value.as_str())
            .timestamp(*ts);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "produce failed: {e}"
                    );
                    p.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}
