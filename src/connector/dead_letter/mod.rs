//! The dead-letter output: where a record that cannot be decoded (or that fails an
//! operator on every replay) goes, with the reason, instead of being dropped or
//! crashing the job.
//!
//! - [`DeadLetters`]: the output a job's sources and stages share: the log, a
//!   JSON-lines file, or a Kafka topic ([`kafka`]). Every letter is counted, in
//!   [`DeadLetters::count`] and in the `weir_dead_letters_total` metric.
//! - [`DeadLetter`]: one rejected record, with its raw bytes where the source has
//!   them.

pub mod kafka;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use kafka::{KafkaDeadLetters, DEAD_LETTER_FORMAT_VERSION};

/// The counter of dead letters, labelled `origin` (the source or stage name).
pub const DEAD_LETTERS_METRIC: &str = "weir_dead_letters_total";
/// The counter of dead letters that could not be written to their output, labelled
/// `origin`.
pub const DEAD_LETTER_ERRORS_METRIC: &str = "weir_dead_letter_errors_total";

/// One rejected record.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// What produced or rejected it (a source name, a stage name).
    pub origin: String,
    /// Where it was (a file and line, a partition and offset).
    pub position: String,
    /// Why it was rejected.
    pub reason: String,
    /// The record as far as it can be shown (invalid UTF-8 replaced).
    pub record: String,
    /// The Kafka record it was, when it came from Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaCoordinates>,
    /// The record's key exactly as read, when the source has one (a Kafka key).
    #[serde(skip)]
    pub raw_key: Option<Vec<u8>>,
    /// The record's bytes exactly as read, when the source has them (a Kafka
    /// payload, a line's bytes); `None` for a Kafka tombstone, or when only
    /// [`DeadLetter::record`] exists (an operator's failed record).
    #[serde(skip)]
    pub raw_value: Option<Vec<u8>>,
}

/// Where a record was in Kafka.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KafkaCoordinates {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
}

/// Why dead letters could not be written to their output.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The Kafka producer of the dead-letter topic could not be created.
    #[error("dead-letter topic {topic}: creating the producer: {source}")]
    Producer {
        /// The dead-letter topic.
        topic: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Dead letters were not delivered to the dead-letter topic.
    #[error(
        "dead-letter topic {topic}: {failures} dead letter(s) not delivered; the first: {first}"
    )]
    Delivery {
        /// The dead-letter topic.
        topic: String,
        /// How many were not delivered.
        failures: u64,
        /// The first failure: which letter, and the broker's or client's error.
        first: String,
    },
    /// Waiting for the dead-letter topic to acknowledge every letter timed out.
    #[error(
        "dead-letter topic {topic}: {pending} dead letter(s) not acknowledged within {timeout:?}"
    )]
    FlushTimeout {
        /// The dead-letter topic.
        topic: String,
        /// How many were still unacknowledged.
        pending: i32,
        /// How long it waited.
        timeout: std::time::Duration,
    },
    /// The dead-letter file could not be written or synced.
    #[error("dead-letter file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The job's dead-letter output: the log, a JSON-lines file, or a Kafka topic.
/// Every letter is counted ([`DeadLetters::count`], and the
/// [`DEAD_LETTERS_METRIC`] counter labelled with its origin).
///
/// Letters are written as they come; [`DeadLetters::flush`] makes every letter sent
/// so far durable (acknowledged by the topic's brokers, or synced to the file).
/// Sources call it at every checkpoint barrier, so an epoch completes only after
/// the dead letters of the records it skipped are durable.
#[derive(Clone, Default)]
pub struct DeadLetters {
    inner: Arc<DeadLetterInner>,
}

#[derive(Default)]
struct DeadLetterInner {
    destination: Destination,
    count: AtomicU64,
    /// Letters sent since the last flush (a flush with none does nothing).
    unflushed: AtomicU64,
}

#[derive(Default)]
enum Destination {
    #[default]
    Log,
    File(Mutex<(PathBuf, File)>),
    Kafka(KafkaDeadLetters),
}

impl DeadLetters {
    /// Dead letters go to the log (at WARN level), counted.
    pub fn to_log() -> Self {
        DeadLetters::default()
    }

    /// Dead letters are appended to `path` as JSON lines, counted.
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::with(Destination::File(Mutex::new((
            path.to_path_buf(),
            file,
        )))))
    }

    /// Dead letters are produced to the Kafka `topic` through `bootstrap` (see
    /// [`KafkaDeadLetters`] for the record's key, value and headers), counted.
    pub fn to_kafka(bootstrap: &str, topic: &str) -> Result<Self, DeadLetterError> {
        Self::to_kafka_with(bootstrap, topic, std::iter::empty::<(String, String)>())
    }

    /// [`DeadLetters::to_kafka`] with librdkafka producer settings passed through
    /// (`security.protocol`, `sasl.*`, `message.timeout.ms`, ...).
    pub fn to_kafka_with<K, V>(
        bootstrap: &str,
        topic: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, DeadLetterError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let writer = KafkaDeadLetters::new(bootstrap, topic, settings)?;
        Ok(Self::with(Destination::Kafka(writer)))
    }

    fn with(destination: Destination) -> Self {
        DeadLetters {
            inner: Arc::new(DeadLetterInner {
                destination,
                count: AtomicU64::new(0),
                unflushed: AtomicU64::new(0),
            }),
        }
    }

    /// Records one rejected record: counts it and writes it to the output. A letter
    /// the output cannot take is logged with the error and counted in
    /// [`DEAD_LETTER_ERRORS_METRIC`]; for a Kafka topic the error is also kept and
    /// returned by the next [`DeadLetters::check`] or [`DeadLetters::flush`], which
    /// fails the job rather than lose the letter silently.
    pub fn send(&self, letter: DeadLetter) {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        self.inner.unflushed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(DEAD_LETTERS_METRIC, "origin" => letter.origin.clone()).increment(1);
        match &self.inner.destination {
            Destination::Log => tracing::warn!(
                origin = %letter.origin, position = %letter.position,
                reason = %letter.reason, record = %letter.record, "dead letter"
            ),
            Destination::File(file) => {
                let mut guard = file.lock().unwrap_or_else(|p| p.into_inner());
                let (path, file) = &mut *guard;
                let written = serde_json::to_string(&letter)
                    .map_err(std::io::Error::other)
                    .and_then(|line| writeln!(file, "{line}"));
                if let Err(e) = written {
                    count_error(&letter.origin);
                    tracing::error!(path = %path.display(), error = %e, ?letter,
                        "could not write a dead letter to its file; logging it instead");
                }
            }
            Destination::Kafka(writer) => writer.send(&letter),
        }
    }

    /// The first error of the output so far, without waiting (a Kafka delivery that
    /// failed). Sources call it as they read, so a failing dead-letter topic fails
    /// the job promptly.
    pub fn check(&self) -> Result<(), DeadLetterError> {
        match &self.inner.destination {
            Destination::Kafka(writer) => writer.check(),
            Destination::Log | Destination::File(_) => Ok(()),
        }
    }

    /// Makes every letter sent so far durable: waits until the dead-letter topic
    /// has acknowledged them (or fails), or syncs the file. Does nothing when no
    /// letter was sent since the last flush.
    pub fn flush(&self) -> Result<(), DeadLetterError> {
        let sent = self.inner.unflushed.swap(0, Ordering::AcqRel);
        let flushed = match &self.inner.destination {
            Destination::Log => Ok(()),
            Destination::File(_) if sent == 0 => Ok(()),
            Destination::File(file) => {
                let guard = file.lock().unwrap_or_else(|p| p.into_inner());
                let (path, file) = &*guard;
                file.sync_data().map_err(|source| DeadLetterError::File {
                    path: path.clone(),
                    source,
                })
            }
            // Always asked: an earlier failure must be reported again.
            Destination::Kafka(writer) => writer.flush(),
        };
        if flushed.is_err() {
            self.inner.unflushed.fetch_add(sent, Ordering::AcqRel);
        }
        flushed
    }

    /// How many records were rejected so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}

/// Counts a letter its output could not take.
fn count_error(origin: &str) {
    metrics::counter!(DEAD_LETTER_ERRORS_METRIC, "origin" => origin.to_owned()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn letter(origin: &str) -> DeadLetter {
        DeadLetter {
            origin: origin.into(),
            position: "line 3".into(),
            reason: "not valid UTF-8".into(),
            record: "a\u{fffd}b".into(),
            raw_value: Some(b"a\xffb".to_vec()),
            ..Default::default()
        }
    }

    /// The counter values of `name`, by origin label.
    fn counters(recorder: &DebuggingRecorder, name: &str) -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == name)
            .filter_map(|(key, _, _, value)| {
                let origin = key
                    .key()
                    .labels()
                    .find(|l| l.key() == "origin")
                    .map(|l| l.value().to_owned())?;
                match value {
                    DebugValue::Counter(n) => Some((origin, n)),
                    _ => None,
                }
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn every_letter_is_counted_by_origin_in_the_metric_and_the_accessor() {
        let recorder = DebuggingRecorder::new();
        let letters = DeadLetters::to_log();
        metrics::with_local_recorder(&recorder, || {
            letters.send(letter("lines(a.txt)"));
            letters.send(letter("lines(a.txt)"));
            letters.send(letter("kafka(orders)"));
        });
        assert_eq!(letters.count(), 3);
        assert_eq!(
            counters(&recorder, DEAD_LETTERS_METRIC),
            vec![("kafka(orders)".into(), 1), ("lines(a.txt)".into(), 2)]
        );
        assert!(counters(&recorder, DEAD_LETTER_ERRORS_METRIC).is_empty());
    }

    #[test]
    fn a_file_keeps_one_json_line_per_letter_without_the_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let letters = DeadLetters::to_file(&path).unwrap();
        letters.send(letter("lines(a.txt)"));
        let mut kafka = letter("kafka(t)");
        kafka.kafka = Some(KafkaCoordinates {
            topic: "t".into(),
            partition: 2,
            offset: 7,
        });
        letters.send(kafka);
        letters.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["origin"], "lines(a.txt)");
        assert_eq!(lines[0]["reason"], "not valid UTF-8");
        assert!(lines[0].get("kafka").is_none());
        assert!(lines[0].get("raw_value").is_none());
        assert_eq!(lines[1]["kafka"]["partition"], 2);
        assert_eq!(lines[1]["kafka"]["offset"], 7);
    }
}
