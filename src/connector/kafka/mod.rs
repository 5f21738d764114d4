//! The Kafka source: reads topics through rdkafka as a fixed number of splits, with
//! each split's offsets in the job's snapshots, so a recovered job re-reads exactly
//! what its restored state has not seen.
//!
//! - [`split`]: which split owns which topic partition (no group rebalancing: each
//!   reader assigns its own partitions).
//! - [`position`]: a split's offsets as snapshot bytes (versioned).
//! - [`start`]: start modes (earliest, latest, timestamp, committed).
//! - [`format`](mod@format): the record type and the value formats (bytes, text, JSON).
//! - [`settings`]: librdkafka settings passed through, and the ones weir sets.
//! - [`reader`]: the split reader (assignment, discovery, polling, dead letters).
//!
//! See docs/kafka.md for the user's view.

pub mod error;
pub mod format;
pub mod lag;
pub mod position;
pub mod reader;
pub mod settings;
pub mod sink;
pub mod split;
pub mod start;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::dead_letter::DeadLetters;
use super::source::{Source, SourceError, StopFlag};

pub use error::KafkaSourceError;
pub use format::{Json, KafkaFormat, KafkaRecord, RawBytes, Utf8Text};
pub use position::KafkaPosition;
pub use reader::KafkaReader;
pub use sink::{
    transaction_counts, Delivery, KafkaCommit, KafkaCommitter, KafkaOutput, KafkaSink,
    KafkaSinkError, KafkaSinkPart, LogProducer, PartitionEnds, TransactionCounts, TransactionalLog,
};
pub use start::{Fallback, StartMode};

/// How often a reader looks for new partitions by default.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);
/// How long one poll waits for a message by default. Short, because the reader runs
/// on a worker thread shared with other actors; an empty poll makes the split idle.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_millis(5);
/// How long a metadata, watermark or offset lookup may take by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kafka source of [`KafkaRecord`]s whose values are decoded by `F`.
///
/// Built with [`KafkaSource::new`] and the setters below; read by a job with
/// `Job::new(..).source(kafka_source)`.
pub struct KafkaSource<F> {
    config: Arc<SourceConfig>,
    format: F,
    dead_letters: DeadLetters,
}

/// What every reader of a source shares.
#[derive(Debug, Clone)]
pub(crate) struct SourceConfig {
    pub name: String,
    pub bootstrap: String,
    pub topics: Vec<String>,
    pub group_id: Option<String>,
    pub start: StartMode,
    pub discovery_interval: Duration,
    pub poll_timeout: Duration,
    pub request_timeout: Duration,
    pub settings: BTreeMap<String, String>,
    pub stop_at_end: bool,
    pub stop: Option<StopFlag>,
    pub commit_offsets: bool,
    pub partition_watermarks: bool,
}

impl SourceConfig {
    /// The consumer group the user configured ([`KafkaSource::group_id`], else a
    /// `group.id` setting); `None` when the consumer runs under
    /// [`settings::DEFAULT_GROUP_ID`].
    pub fn configured_group(&self) -> Option<&str> {
        self.group_id
            .as_deref()
            .or_else(|| self.settings.get("group.id").map(String::as_str))
    }
}

impl<F: KafkaFormat> KafkaSource<F> {
    /// Reads `topics` from the cluster at `bootstrap` (`host:port,...`), decoding
    /// values with `format`; records it cannot decode go to `dead_letters`.
    /// Starts at the earliest offsets, looks for new partitions every 30 s, and
    /// reads until the job is stopped.
    pub fn new<I, T>(
        bootstrap: impl Into<String>,
        topics: I,
        format: F,
        dead_letters: DeadLetters,
    ) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        KafkaSource {
            config: Arc::new(SourceConfig {
                name: format!("kafka({})", topics.join(",")),
                bootstrap: bootstrap.into(),
                topics,
                group_id: None,
                start: StartMode::Earliest,
                discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
                poll_timeout: DEFAULT_POLL_TIMEOUT,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                settings: BTreeMap::new(),
                stop_at_end: false,
                stop: None,
                commit_offsets: true,
                partition_watermarks: true,
            }),
            format,
            dead_letters,
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut SourceConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Where partitions start that no snapshot positions (default: earliest).
    pub fn start(self, mode: StartMode) -> Self {
        self.edit(|c| c.start = mode)
    }

    /// The consumer group (`group.id`): needed by [`StartMode::Committed`]. The
    /// source never joins the group's rebalancing (each split assigns its own
    /// partitions), but commits its offsets to the group whenever a checkpoint epoch
    /// completes, so lag tools see its progress (see
    /// [`KafkaSource::commit_offsets`]).
    pub fn group_id(self, group: impl Into<String>) -> Self {
        let group = group.into();
        self.edit(|c| c.group_id = Some(group))
    }

    /// How often each reader refreshes the topics' metadata and starts reading the
    /// partitions it owns that appeared since (from their earliest offset).
    /// `Duration::ZERO` turns discovery off. Default 30 s.
    pub fn discovery_interval(self, interval: Duration) -> Self {
        self.edit(|c| c.discovery_interval = interval)
    }

    /// How long a read round waits for a first message before it reports the split
    /// idle (default 5 ms).
    pub fn poll_timeout(self, timeout: Duration) -> Self {
        self.edit(|c| c.poll_timeout = timeout)
    }

    /// How long a metadata, watermark or offset lookup may take (default 10 s).
    pub fn request_timeout(self, timeout: Duration) -> Self {
        self.edit(|c| c.request_timeout = timeout)
    }

    /// Passes one librdkafka setting (e.g. `security.protocol`, `sasl.username`,
    /// `ssl.ca.location`, `fetch.max.bytes`) to the consumer unchanged. The
    /// settings in [`settings::REQUIRED`] are weir's and win.
    pub fn set(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        self.edit(|c| {
            c.settings.insert(key, value);
        })
    }

    /// Passes every entry of `settings` as with [`KafkaSource::set`].
    pub fn settings<I, K, V>(self, settings: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let settings: Vec<(String, String)> = settings
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.edit(|c| c.settings.extend(settings))
    }

    /// A bounded read: each split stops at the end each of its partitions had when
    /// the split assigned it (the high watermark then; for a partition found by
    /// discovery, when it was found), so the job finishes. For tests, backfills and
    /// batch jobs over a topic. A restarted split fetches the ends again.
    pub fn stop_at_end(self, bounded: bool) -> Self {
        self.edit(|c| c.stop_at_end = bounded)
    }

    /// Whether each split commits its offsets to the consumer group when a
    /// checkpoint epoch completes (default `true`): the offsets of that epoch's
    /// snapshot, i.e. the next offset to read of each partition it holds, committed
    /// asynchronously. Only with a group configured by [`KafkaSource::group_id`] or
    /// a `group.id` setting (never to the placeholder
    /// [`settings::DEFAULT_GROUP_ID`]), and only in a job with checkpoints. The
    /// commits are informational, for lag tools such as `kafka-consumer-groups`:
    /// recovery always starts from the snapshot's offsets, never the group's, and a
    /// failed commit is logged, never fatal. `false` turns them off.
    pub fn commit_offsets(self, commit: bool) -> Self {
        self.edit(|c| c.commit_offsets = commit)
    }

    /// Whether each partition has its own watermark inside its split (default
    /// `true`, as in Flink's Kafka source): a split's watermark is then the minimum
    /// over its partitions that are not idle, so a partition far ahead in event time
    /// does not make a slower partition's records late. `false` gives each split one
    /// watermark from the highest timestamp over all its partitions, which is cheaper
    /// but makes records late whenever partitions are read at different event-time
    /// paces; only for sources whose partitions move in lockstep. See
    /// docs/event-time.md.
    pub fn partition_watermarks(self, per_partition: bool) -> Self {
        self.edit(|c| c.partition_watermarks = per_partition)
    }

    /// Ends the read (every split reports itself exhausted, and the job drains and
    /// finishes) once `stop` is raised.
    pub fn stop_on(self, stop: StopFlag) -> Self {
        self.edit(|c| c.stop = Some(stop))
    }
}

impl<F: KafkaFormat> Source for KafkaSource<F> {
    type Item = KafkaRecord<F::Value>;
    type Reader = KafkaReader<F>;

    fn name(&self) -> String {
        self.config.name.clone()
    }

    fn reader(&self, split: u32, splits: u32) -> Result<KafkaReader<F>, SourceError> {
        let c = &self.config;
        if c.topics.is_empty() {
            return Err(KafkaSourceError::Config(format!("{}: no topic to read", c.name)).into());
        }
        if matches!(c.start, StartMode::Committed { .. }) && c.configured_group().is_none() {
            return Err(KafkaSourceError::Config(format!(
                "{}: the committed start mode needs a consumer group (group_id)",
                c.name
            ))
            .into());
        }
        let consumer: lag::SplitConsumer =
            settings::client_config(&c.bootstrap, c.group_id.as_deref(), &c.settings)
                .create_with_context(lag::LagContext::default())
                .map_err(|error| KafkaSourceError::Client {
                    source_name: c.name.clone(),
                    what: format!("creating the consumer of split {split}"),
                    error: Box::new(error),
                })?;
        Ok(KafkaReader::new(
            self.config.clone(),
            self.format.clone(),
            self.dead_letters.clone(),
            consumer,
            split,
            splits,
        ))
    }
}
