//! Dead letters produced to a Kafka topic (a dead-letter queue).
//!
//! Each letter becomes one record of the topic:
//!
//! - key: the rejected record's key exactly as read (none when it had none);
//! - value: the rejected record's bytes exactly as read (a Kafka payload, a line's
//!   bytes); for a letter with no raw bytes (a record that failed an operator), the
//!   text of [`DeadLetter::record`]; none for a rejected Kafka tombstone;
//! - headers (UTF-8 text), named in [`headers`]: the format version, the error, the
//!   origin (source or stage), the position, and for a record read from Kafka its
//!   topic, partition and offset.
//!
//! Delivery is at least once: the producer is idempotent, [`KafkaDeadLetters::flush`]
//! waits until every letter sent so far is acknowledged, and sources flush at every
//! checkpoint barrier, so an epoch completes only after the letters of the records
//! it skipped are durable. A replay after a failure can write a letter again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::{count_error, DeadLetter, DeadLetterError};
use crate::connector::kafka::settings::layered;

/// The value of the [`headers::VERSION`] header: the layout of a dead-letter
/// record described in this module. A change of header names or meaning bumps it.
pub const DEAD_LETTER_FORMAT_VERSION: &str = "1";

/// How long a letter may wait for its acknowledgement by default
/// (`message.timeout.ms` of the dead-letter producer; a setting overrides it).
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 30_000;

/// The header names of a dead-letter record.
pub mod headers {
    /// The dead-letter format version ([`super::DEAD_LETTER_FORMAT_VERSION`]).
    pub const VERSION: &str = "weir.dead-letter.version";
    /// Why the record was rejected ([`crate::connector::DeadLetter::reason`]).
    pub const ERROR: &str = "weir.error";
    /// What rejected it: a source (`kafka(orders)`) or a stage name.
    pub const ORIGIN: &str = "weir.origin";
    /// Where it was, as text (`topic T partition P offset O`, a file and line).
    pub const POSITION: &str = "weir.position";
    /// The Kafka topic the record was read from (Kafka records only).
    pub const SOURCE_TOPIC: &str = "weir.source.topic";
    /// Its partition, in decimal (Kafka records only).
    pub const SOURCE_PARTITION: &str = "weir.source.partition";
    /// Its offset, in decimal (Kafka records only).
    pub const SOURCE_OFFSET: &str = "weir.source.offset";
}

/// A producer of dead letters to one topic. Cheap to share through
/// [`super::DeadLetters`]; sends do not wait for the broker.
pub struct KafkaDeadLetters {
    topic: String,
    producer: ThreadedProducer<DeliveryWatch>,
    /// How long a flush (and a send into a full queue) may wait.
    flush_timeout: Duration,
}

impl KafkaDeadLetters {
    /// A producer to `topic` through `bootstrap`, with librdkafka `settings` passed
    /// through (`bootstrap.servers` is the argument's). Idempotent by default.
    pub fn new<K, V>(
        bootstrap: &str,
        topic: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, DeadLetterError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let settings: BTreeMap<String, String> = settings
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let default_timeout = DEFAULT_MESSAGE_TIMEOUT_MS.to_string();
        let config = layered(
            &[
                ("enable.idempotence", "true"),
                ("message.timeout.ms", &default_timeout),
            ],
            &settings,
            &[("bootstrap.servers", bootstrap)],
            &[],
            "kafka dead letters",
        );
        let message_timeout = ["message.timeout.ms", "delivery.timeout.ms"]
            .iter()
            .find_map(|k| config.get(k).and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(DEFAULT_MESSAGE_TIMEOUT_MS);
        let producer = config
            .create_with_context(DeliveryWatch::new(topic))
            .map_err(|source| DeadLetterError::Producer {
                topic: topic.to_owned(),
                source,
            })?;
        Ok(KafkaDeadLetters {
            topic: topic.to_owned(),
            producer,
            // librdkafka fails a letter after its message timeout; wait a little
            // longer so the failure, not a timeout, is what a flush reports.
            flush_timeout: Duration::from_millis(message_timeout) + Duration::from_secs(5),
        })
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues `letter` for the topic. A letter that cannot be queued is counted as
    /// a failure (reported by [`KafkaDeadLetters::check`]), never dropped silently.
    pub fn send(&self, letter: &DeadLetter) {
        let label = Box::new(LetterLabel {
            origin: letter.origin.clone(),
            position: letter.position.clone(),
        });
        let value: Option<&[u8]> = match (&letter.raw_value, &letter.kafka) {
            (Some(raw), _) => Some(raw),
            // A Kafka record without a payload was a tombstone: keep it one.
            (None, Some(_)) => None,
            (None, None) => Some(letter.record.as_bytes()),
        };
        let mut record =
            BaseRecord::with_opaque_to(&self.topic, label).headers(letter_headers(letter));
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(key) = &letter.raw_key {
            record = record.key(key.as_slice());
        }
        let deadline = Instant::now() + self.flush_timeout;
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    // The background thread delivers and frees the queue.
                    std::thread::sleep(Duration::from_millis(1));
                    record = r;
                }
                Err((error, r)) => {
                    self.producer.context().failed(&r.delivery_opaque, &error);
                    return;
                }
            }
        }
    }

    /// The first failure so far, without waiting.
    pub fn check(&self) -> Result<(), DeadLetterError> {
        self.producer.context().check()
    }

    /// Waits until every letter sent so far is acknowledged; then reports any
    /// failure so far.
    pub fn flush(&self) -> Result<(), DeadLetterError> {
        if let Err(error) = self.producer.flush(self.flush_timeout) {
            tracing::error!(topic = %self.topic, %error, "flushing the dead-letter topic");
            return Err(DeadLetterError::FlushTimeout {
                topic: self.topic.clone(),
                pending: self.producer.in_flight_count(),
                timeout: self.flush_timeout,
            });
        }
        self.check()
    }
}

impl Drop for KafkaDeadLetters {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::error!(topic = %self.topic, %error,
                "dead letters left unacknowledged when their output was dropped");
        }
    }
}

/// The headers of `letter`'s record.
fn letter_headers(letter: &DeadLetter) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(7)
        .insert(text_header(headers::VERSION, DEAD_LETTER_FORMAT_VERSION))
        .insert(text_header(headers::ERROR, &letter.reason))
        .insert(text_header(headers::ORIGIN, &letter.origin))
        .insert(text_header(headers::POSITION, &letter.position));
    if let Some(k) = &letter.kafka {
        headers = headers
            .insert(text_header(headers::SOURCE_TOPIC, &k.topic))
            .insert(text_header(
                headers::SOURCE_PARTITION,
                &k.partition.to_string(),
            ))
            .insert(text_header(headers::SOURCE_OFFSET, &k.offset.to_string()));
    }
    headers
}

fn text_header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value.as_bytes()),
    }
}

/// Which letter a delivery report is about.
struct LetterLabel {
    origin: String,
    position: String,
}

/// The producer's context: counts failed deliveries and keeps the first.
struct DeliveryWatch {
    topic: String,
    failures: AtomicU64,
    first: Mutex<Option<String>>,
}

impl DeliveryWatch {
    fn new(topic: &str) -> Self {
        DeliveryWatch {
            topic: topic.to_owned(),
            failures: AtomicU64::new(0),
            first: Mutex::new(None),
        }
    }

    fn failed(&self, label: &LetterLabel, error: &KafkaError) {
        self.failures.fetch_add(1, Ordering::AcqRel);
        count_error(&label.origin);
        let what = format!(
            "the letter of {} at {}: {error}",
            label.origin, label.position
        );
        tracing::error!(topic = %self.topic, failure = %what, "dead letter not delivered");
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }

    fn check(&self) -> Result<(), DeadLetterError> {
        let failures = self.failures.load(Ordering::Acquire);
        if failures == 0 {
            return Ok(());
        }
        let first = self
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        Err(DeadLetterError::Delivery {
            topic: self.topic.clone(),
            failures,
            first,
        })
    }
}

impl ClientContext for DeliveryWatch {}

impl ProducerContext for DeliveryWatch {
    type DeliveryOpaque = Box<LetterLabel>;

    fn delivery(&self, result: &DeliveryResult<'_>, label: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            self.failed(&label, error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::dead_letter::KafkaCoordinates;
    use rdkafka::message::Headers;

    #[test]
    fn a_kafka_letter_names_its_error_origin_and_coordinates_in_headers() {
        let letter = DeadLetter {
            origin: "kafka(orders)".into(),
            position: "topic orders partition 3 offset 41".into(),
            reason: "topic orders partition 3 offset 41: json format: expected value".into(),
            record: "nope".into(),
            kafka: Some(KafkaCoordinates {
                topic: "orders".into(),
                partition: 3,
                offset: 41,
            }),
            raw_key: Some(b"k".to_vec()),
            raw_value: Some(b"nope".to_vec()),
        };
        let h = letter_headers(&letter);
        let got: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            (headers::VERSION, "1"),
            (headers::ERROR, letter.reason.as_str()),
            (headers::ORIGIN, "kafka(orders)"),
            (headers::POSITION, "topic orders partition 3 offset 41"),
            (headers::SOURCE_TOPIC, "orders"),
            (headers::SOURCE_PARTITION, "3"),
            (headers::SOURCE_OFFSET, "41"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_letter_from_elsewhere_has_no_kafka_coordinates() {
        let letter = DeadLetter {
            origin: "reduce".into(),
            position: "partition 2".into(),
            reason: "poison record".into(),
            record: "key 7".into(),
            ..Default::default()
        };
        let keys: Vec<String> = letter_headers(&letter)
            .iter()
            .map(|h| h.key.to_owned())
            .collect();
        assert_eq!(
            keys,
            [
                headers::VERSION,
                headers::ERROR,
                headers::ORIGIN,
                headers::POSITION
            ]
        );
    }

    #[test]
    fn an_unreachable_topic_fails_the_flush_and_counts_the_failure() {
        // Nothing listens on this port: the letter times out after 200 ms.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let writer = KafkaDeadLetters::new(
            &format!("127.0.0.1:{port}"),
            "dlq",
            [("message.timeout.ms", "200"), ("log_level", "0")],
        )
        .unwrap();
        assert_eq!(writer.flush_timeout, Duration::from_millis(5200));
        writer.send(&DeadLetter {
            origin: "lines(x)".into(),
            position: "line 9".into(),
            ..Default::default()
        });
        let error = writer.flush().unwrap_err().to_string();
        assert!(
            error.contains("dlq") && error.contains("1 dead letter(s) not delivered"),
            "{error}"
        );
        assert!(error.contains("lines(x) at line 9"), "{error}");
        assert!(writer.check().is_err(), "the failure stays reported");
    }
}
