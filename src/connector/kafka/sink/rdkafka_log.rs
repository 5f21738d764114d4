//! The transactional log over librdkafka.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::error::KafkaSinkError;
use super::log::{LogProducer, PartitionEnds, TransactionalLog};
use super::output::KafkaOutput;
use crate::connector::kafka::settings::layered;

/// The settings weir sets on every sink producer, overriding the user's:
/// `enable.idempotence=true`, so a retried send is never written twice (Kafka
/// needs it for transactions, and it keeps at-least-once output free of retry
/// duplicates).
pub const PRODUCER_REQUIRED: &[(&str, &str)] = &[("enable.idempotence", "true")];

/// The settings of the consumer that looks for markers, overriding the user's:
/// it must see committed transactions only, never commit offsets, and never
/// create a topic.
const MARKER_READER_REQUIRED: &[(&str, &str)] = &[
    ("isolation.level", "read_committed"),
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
    ("allow.auto.create.topics", "false"),
    ("group.id", "weir-kafka-sink-markers"),
];

/// How many marker records a lookup reads per window, going backwards from the end.
const MARKER_WINDOW: i64 = 512;

/// A cluster reached through librdkafka, with the user's settings passed through.
pub struct RdKafkaLog {
    bootstrap: String,
    settings: BTreeMap<String, String>,
    timeout: Duration,
    /// Marker readers by isolation level, made at first use and kept, so a redo
    /// that polls the partition's ends does not start a client per poll.
    readers: Mutex<BTreeMap<&'static str, Arc<BaseConsumer>>>,
}

impl RdKafkaLog {
    /// The cluster at `bootstrap`, its clients made with `settings`; calls that wait
    /// on the broker give up after `timeout`.
    pub fn new(bootstrap: &str, settings: BTreeMap<String, String>, timeout: Duration) -> Self {
        RdKafkaLog {
            bootstrap: bootstrap.to_owned(),
            settings,
            timeout,
            readers: Mutex::default(),
        }
    }

    /// The producer configuration: the user's settings, then bootstrap servers and
    /// the transactional id, then [`PRODUCER_REQUIRED`].
    pub fn producer_config(&self, transactional_id: Option<&str>) -> ClientConfig {
        let mut fixed = vec![("bootstrap.servers", self.bootstrap.as_str())];
        fixed.extend(transactional_id.map(|id| ("transactional.id", id)));
        layered(&[], &self.settings, &fixed, PRODUCER_REQUIRED, "kafka sink")
    }

    fn reader(&self) -> Result<Arc<BaseConsumer>, KafkaSinkError> {
        self.reader_with("read_committed")
    }

    /// The marker reader at `isolation` (`read_committed` for lookups;
    /// `read_uncommitted` to see every record written), made once per log.
    fn reader_with(&self, isolation: &'static str) -> Result<Arc<BaseConsumer>, KafkaSinkError> {
        let mut readers = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(reader) = readers.get(isolation) {
            return Ok(reader.clone());
        }
        let reader = Arc::new(self.new_reader(isolation)?);
        readers.insert(isolation, reader.clone());
        Ok(reader)
    }

    fn new_reader(&self, isolation: &str) -> Result<BaseConsumer, KafkaSinkError> {
        let mut config = layered(
            &[],
            &self.settings,
            &[("bootstrap.servers", self.bootstrap.as_str())],
            MARKER_READER_REQUIRED,
            "kafka sink marker reader",
        );
        config.set("isolation.level", isolation);
        config
            .create()
            .map_err(|e| KafkaSinkError::client("creating the marker reader", e))
    }

    fn partition_count(&self, topic: &str) -> Result<Option<i32>, KafkaSinkError> {
        let reader = self.reader()?;
        let metadata = reader
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| KafkaSinkError::client(format!("fetching metadata of {topic}"), e))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    }

    fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaSinkError> {
        let admin: AdminClient<DefaultClientContext> = layered(
            &[],
            &self.settings,
            &[("bootstrap.servers", self.bootstrap.as_str())],
            &[],
            "kafka sink admin",
        )
        .create()
        .map_err(|e| KafkaSinkError::client("creating the admin client", e))?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        // The admin API is asynchronous; its future is driven by librdkafka's own
        // thread, so any executor does, and one on a thread of its own cannot clash
        // with the runtime of the caller.
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .map(|rt| rt.block_on(admin.create_topics([&new], &options)))
                })
                .join()
        });
        let what = || format!("creating marker topic {topic}");
        let results = match outcome {
            Ok(Ok(Ok(results))) => results,
            Ok(Ok(Err(e))) => return Err(KafkaSinkError::client(what(), e)),
            Ok(Err(e)) => return Err(KafkaSinkError::client(what(), e)),
            Err(_) => return Err(KafkaSinkError::Invalid(format!("{}: panicked", what()))),
        };
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(KafkaSinkError::client(what(), KafkaError::AdminOp(code)))
                }
            }
        }
        Ok(())
    }
}

impl TransactionalLog for RdKafkaLog {
    fn producer(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<Box<dyn LogProducer>, KafkaSinkError> {
        let id = transactional_id.unwrap_or("(plain)").to_owned();
        let producer: BaseProducer<DeliveryTracker> = self
            .producer_config(transactional_id)
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| KafkaSinkError::client(format!("creating producer {id}"), e))?;
        Ok(Box::new(RdKafkaProducer {
            producer,
            id,
            timeout: self.timeout,
            unpolled: 0,
        }))
    }

    fn ensure_marker_topic(&self, topic: &str, partitions: i32) -> Result<i32, KafkaSinkError> {
        if let Some(count) = self.partition_count(topic)? {
            return Ok(count);
        }
        self.create_topic(topic, partitions.max(1))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(count) = self.partition_count(topic)? {
                return Ok(count);
            }
            if Instant::now() > deadline {
                return Err(KafkaSinkError::Invalid(format!(
                    "marker topic {topic} was created but has no partitions after {:?}",
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ends(&self, topic: &str, partition: i32) -> Result<PartitionEnds, KafkaSinkError> {
        let end = |isolation: &'static str| -> Result<i64, KafkaSinkError> {
            self.reader_with(isolation)?
                .fetch_watermarks(topic, partition, self.timeout)
                .map(|(_, high)| high)
                .map_err(|e| {
                    KafkaSinkError::client(
                        format!("fetching the {isolation} end of {topic}/{partition}"),
                        e,
                    )
                })
        };
        // The stable end first: read the other way round, a transaction ending in
        // between could make the stable end pass the high one read before it.
        let stable = end("read_committed")?;
        let high = end("read_uncommitted")?;
        Ok(PartitionEnds { high, stable })
    }

    fn newest_committed(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, KafkaSinkError> {
        Ok(self
            .newest_with_key(topic, partition, key, "read_committed")?
            .map(|(_, value)| value))
    }

    fn newest_written(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<(i64, Vec<u8>)>, KafkaSinkError> {
        self.newest_with_key(topic, partition, key, "read_uncommitted")
    }
}

impl RdKafkaLog {
    /// The offset and value of the newest record keyed `key` that a reader at
    /// `isolation` sees in `topic`/`partition`, reading backwards from its end in
    /// windows.
    fn newest_with_key(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        isolation: &'static str,
    ) -> Result<Option<(i64, Vec<u8>)>, KafkaSinkError> {
        let reader = self.reader_with(isolation)?;
        let at = || format!("{topic}/{partition}");
        let (low, high) = reader
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|e| KafkaSinkError::client(format!("fetching the ends of {}", at()), e))?;
        let mut end = high;
        while end > low {
            let start = (end - MARKER_WINDOW).max(low);
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|e| KafkaSinkError::client(format!("assigning {}", at()), e))?;
            reader
                .assign(&list)
                .map_err(|e| KafkaSinkError::client(format!("assigning {}", at()), e))?;
            let mut newest = None;
            let deadline = Instant::now() + self.timeout;
            loop {
                match reader.poll(Duration::from_millis(50)) {
                    Some(Ok(message)) => {
                        if message.offset() >= end {
                            break;
                        }
                        if message.key() == Some(key) {
                            newest = Some((
                                message.offset(),
                                message.payload().unwrap_or_default().to_vec(),
                            ));
                        }
                        if message.offset() + 1 >= end {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        return Err(KafkaSinkError::client(format!("reading {}", at()), e))
                    }
                    None => {
                        let position = reader.position().ok().and_then(|list| {
                            list.find_partition(topic, partition)
                                .and_then(|p| p.offset().to_raw())
                        });
                        if position.is_some_and(|p| p >= end) {
                            break;
                        }
                    }
                }
                if Instant::now() > deadline {
                    return Err(KafkaSinkError::Invalid(format!(
                        "reading the markers of {} up to offset {end} took over {:?}: an \
                         open transaction may hold the partition's last stable offset",
                        at(),
                        self.timeout
                    )));
                }
            }
            if newest.is_some() {
                return Ok(newest);
            }
            end = start;
        }
        Ok(None)
    }
}

/// Counts the records the broker did not take, and keeps the first error.
#[derive(Default)]
pub struct DeliveryTracker {
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            let mut first = self
                .first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if first.is_none() {
                *first = Some(format!(
                    "{error} (partition {}, offset {})",
                    message.partition(),
                    message.offset()
                ));
            }
        }
    }
}

/// How many records a producer sends between two polls for delivery reports. A
/// poll reads the clock, which at one poll per record was the largest single cost
/// of the Kafka benchmark; delivery errors are still all seen by the flush at every
/// barrier, and a full local queue is served at once.
const SENDS_PER_POLL: u32 = 256;

/// A librdkafka producer as a [`LogProducer`].
struct RdKafkaProducer {
    producer: BaseProducer<DeliveryTracker>,
    id: String,
    timeout: Duration,
    /// Records sent since the last poll (see [`SENDS_PER_POLL`]).
    unpolled: u32,
}

impl RdKafkaProducer {
    fn failed(&self, what: &str, error: KafkaError) -> KafkaSinkError {
        KafkaSinkError::client(format!("{what} ({})", self.id), error)
    }

    fn delivery_error(&self, topic: &str) -> Result<(), KafkaSinkError> {
        let first = self
            .producer
            .context()
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match first {
            Some(reason) => Err(KafkaSinkError::Delivery {
                topic: topic.to_owned(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

impl LogProducer for RdKafkaProducer {
    fn init_transactions(&mut self) -> Result<(), KafkaSinkError> {
        self.producer
            .init_transactions(self.timeout)
            .map_err(|e| self.failed("initialising transactions", e))
    }

    fn begin(&mut self) -> Result<(), KafkaSinkError> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.failed("beginning a transaction", e))
    }

    fn send(&mut self, topic: &str, record: &KafkaOutput) -> Result<(), KafkaSinkError> {
        let mut base: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(ts) = record.timestamp {
            base = base.timestamp(ts);
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_slice()),
                });
            }
            base = base.headers(headers);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: serve delivery reports, then retry.
                    self.producer.poll(Duration::from_millis(10));
                    base = back;
                }
                Err((error, _)) => return Err(self.failed(&format!("producing to {topic}"), error)),
            }
        }
        self.unpolled += 1;
        if self.unpolled < SENDS_PER_POLL {
            return Ok(());
        }
        self.unpolled = 0;
        self.producer.poll(Duration::ZERO);
        self.delivery_error(topic)
    }

    fn flush(&mut self) -> Result<(), KafkaSinkError> {
        self.producer
            .flush(self.timeout)
            .map_err(|e| self.failed("flushing", e))?;
        self.delivery_error("the sink's topics")
    }

    fn commit(&mut self) -> Result<(), KafkaSinkError> {
        self.producer
            .commit_transaction(self.timeout)
            .map_err(|e| self.failed("committing a transaction", e))?;
        self.delivery_error("the sink's topics")
    }

    fn abort(&mut self) -> Result<(), KafkaSinkError> {
        self.producer
            .abort_transaction(self.timeout)
            .map_err(|e| self.failed("aborting a transaction", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_settings_pass_through_and_idempotence_is_weirs() {
        let mut user = BTreeMap::new();
        user.insert("compression.type".to_string(), "lz4".to_string());
        user.insert("enable.idempotence".to_string(), "false".to_string());
        user.insert("linger.ms".to_string(), "20".to_string());
        let log = RdKafkaLog::new("127.0.0.1:1", user, Duration::from_secs(1));
        let c = log.producer_config(Some("t-p0-s0"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("linger.ms"), Some("20"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("transactional.id"), Some("t-p0-s0"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:1"));
        // librdkafka checks every setting when the producer is made.
        assert!(log.producer(None).is_ok());
        let mut bad = BTreeMap::new();
        bad.insert("linger.mz".to_string(), "1".to_string());
        let err = RdKafkaLog::new("127.0.0.1:1", bad, Duration::from_secs(1))
            .producer(None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("linger.mz"), "{err}");
    }
}
