//! Where a partition starts when no snapshot says where it was: the start modes,
//! and turning a mode into concrete offsets.
//!
//! Offsets are resolved to numbers when a partition is assigned (rather than left to
//! the client as "beginning"/"end"), so a split's position is known, and can be
//! snapshotted, before its first record arrives.

use std::time::Duration;

use rdkafka::consumer::Consumer;

use super::lag::SplitConsumer;
use rdkafka::{Offset, TopicPartitionList};

use super::error::KafkaSourceError;

/// Where the partitions of a job's first start (and partitions of a topic new to a
/// restored job) begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// The oldest record each partition still holds.
    Earliest,
    /// After the newest record each partition holds when it is assigned.
    Latest,
    /// The first record whose timestamp is at or after this many milliseconds since
    /// the Unix epoch (Kafka's `offsets_for_times`); after the newest record when no
    /// record is that recent.
    Timestamp(i64),
    /// The offsets the consumer group (`group.id`) committed; `fallback` for a
    /// partition without a committed offset.
    Committed {
        /// Where a partition with no committed offset starts.
        fallback: Fallback,
    },
}

/// Where a partition without a committed offset starts in [`StartMode::Committed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The oldest record held.
    Earliest,
    /// After the newest record held.
    Latest,
}

/// What the resolution calls need: the consumer, how long each call may take, and
/// the source name for errors.
pub(crate) struct Resolver<'a> {
    /// The consumer asked.
    pub consumer: &'a SplitConsumer,
    /// How long one metadata, watermark or offset call may take.
    pub timeout: Duration,
    /// The source's name, for errors.
    pub source_name: &'a str,
}

impl Resolver<'_> {
    fn client_error(&self, what: String, error: rdkafka::error::KafkaError) -> KafkaSourceError {
        KafkaSourceError::Client {
            source_name: self.source_name.to_string(),
            what,
            error: Box::new(error),
        }
    }

    /// The (low, high) watermarks of a partition: its oldest held offset and the
    /// offset the next produced record will get.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaSourceError> {
        self.consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|e| {
                self.client_error(
                    format!("fetching the watermarks of topic {topic} partition {partition}"),
                    e,
                )
            })
    }

    /// The partitions of `topic` the cluster knows (none while the topic does not
    /// exist).
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaSourceError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| self.client_error(format!("fetching the metadata of topic {topic}"), e))?;
        let mut out = Vec::new();
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            // A topic that does not exist (yet) comes back with an error and no
            // partitions: discovery will see it once it is created.
            if t.error().is_none() {
                out.extend(t.partitions().iter().map(|p| p.id()));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The next offset to read for each of `partitions` under `mode`.
    pub fn resolve(
        &self,
        mode: StartMode,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i64>, KafkaSourceError> {
        match mode {
            StartMode::Earliest => self.each_watermark(partitions, Fallback::Earliest),
            StartMode::Latest => self.each_watermark(partitions, Fallback::Latest),
            StartMode::Timestamp(ms) => {
                let mut tpl = TopicPartitionList::new();
                for (t, p) in partitions {
                    tpl.add_partition_offset(t, *p, Offset::Offset(ms))
                        .map_err(|e| {
                            self.client_error(format!("listing topic {t} partition {p}"), e)
                        })?;
                }
                let found = self
                    .consumer
                    .offsets_for_times(tpl, self.timeout)
                    .map_err(|e| {
                        self.client_error(format!("looking up offsets for time {ms}"), e)
                    })?;
                self.offsets_in(&found, partitions, Fallback::Latest)
            }
            StartMode::Committed { fallback } => {
                let mut tpl = TopicPartitionList::new();
                for (t, p) in partitions {
                    tpl.add_partition(t, *p);
                }
                let found = self
                    .consumer
                    .committed_offsets(tpl, self.timeout)
                    .map_err(|e| {
                        self.client_error(
                            "reading the consumer group's committed offsets".into(),
                            e,
                        )
                    })?;
                self.offsets_in(&found, partitions, fallback)
            }
        }
    }

    /// The low (earliest) or high (latest) watermark of one partition.
    fn watermark(
        &self,
        topic: &str,
        partition: i32,
        side: Fallback,
    ) -> Result<i64, KafkaSourceError> {
        let (low, high) = self.watermarks(topic, partition)?;
        Ok(match side {
            Fallback::Earliest => low,
            Fallback::Latest => high,
        })
    }

    fn each_watermark(
        &self,
        partitions: &[(String, i32)],
        side: Fallback,
    ) -> Result<Vec<i64>, KafkaSourceError> {
        partitions
            .iter()
            .map(|(t, p)| self.watermark(t, *p, side))
            .collect()
    }

    /// The concrete offsets in `found` for `partitions`; `fallback` where it has none.
    fn offsets_in(
        &self,
        found: &TopicPartitionList,
        partitions: &[(String, i32)],
        fallback: Fallback,
    ) -> Result<Vec<i64>, KafkaSourceError> {
        partitions
            .iter()
            .map(|(t, p)| {
                let offset = found.find_partition(t, *p).map(|e| (e.offset(), e.error()));
                match offset {
                    Some((Offset::Offset(o), Ok(()))) if o >= 0 => Ok(o),
                    Some((_, Err(e))) => Err(self.client_error(
                        format!("resolving the start offset of topic {t} partition {p}"),
                        e,
                    )),
                    _ => self.watermark(t, *p, fallback),
                }
            })
            .collect()
    }
}
