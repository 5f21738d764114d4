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

/// Creates a topic of `partitions` partitions with a name unique to this run
/// (`<prefix>-<pid>-<nanos>`) on the cluster at `bootstrap`, through the admin API
/// (`weir::bench::kafka::create_topic`; for a real cluster: the mock creates
/// topics with `MockCluster::create_topic`).
pub fn create_unique_topic(bootstrap: &str, prefix: &str, partitions: i32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let topic = format!("{prefix}-{}-{nanos}", std::process::id());
    weir::bench::kafka::create_topic(bootstrap, &topic, partitions)
        .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    topic
}

/// The formatter of the sink tests' `(key, running sum)` records: both as decimal
/// text.
pub type SumFormat = fn(&(u64, u64)) -> weir::connector::kafka::KafkaOutput;

/// See [`SumFormat`].
pub fn sum_record(r: &(u64, u64)) -> weir::connector::kafka::KafkaOutput {
    weir::connector::kafka::KafkaOutput {
        key: Some(r.0.to_string().into_bytes()),
        value: Some(r.1.to_string().into_bytes()),
        ..Default::default()
    }
}

/// The running sums per key `x % keys` of the numbers `0..n`, as the sink tests'
/// jobs emit them, sorted, as (key, sum) text: key `x % keys` (for an even `keys`)
/// keeps the parity of `x`, so its values come from one source split, in order, and
/// its sums are the same in every run.
pub fn running_sums(n: u64, keys: u64) -> Vec<(String, String)> {
    let mut sums = vec![0u64; keys as usize];
    let mut out: Vec<(String, String)> = (0..n)
        .map(|x| {
            let k = (x % keys) as usize;
            sums[k] += x;
            (k.to_string(), sums[k].to_string())
        })
        .collect();
    out.sort();
    out
}
