//! The reader of one split of a Kafka source: assigns the partitions the split owns
//! (no group rebalancing), resolves where they start, looks for new ones, polls a
//! bounded round at a time, and keeps the next offset of each partition as its
//! snapshot position.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::connector::dead_letter::{DeadLetter, DeadLetters, KafkaCoordinates};
use crate::connector::source::{ReadStatus, SourceError, SourceReader};
use crate::operator::Collector;
use crate::time::LaneId;

use super::error::KafkaSourceError;
use super::format::{KafkaFormat, KafkaRecord};
use super::lag::SplitConsumer;
use super::position::KafkaPosition;
use super::split::{lane_of, split_of};
use super::start::{Resolver, StartMode};
use super::SourceConfig;

/// Where one assigned partition is.
#[derive(Debug, Clone, Copy)]
struct Partition {
    /// The next offset to read.
    next: i64,
    /// For a bounded read: the offset to stop before.
    end: Option<i64>,
    /// The partition's lane in the split (its own watermark).
    lane: LaneId,
}

impl Partition {
    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }
}

/// Reads one split of a [`KafkaSource`](super::KafkaSource).
pub struct KafkaReader<F> {
    config: Arc<SourceConfig>,
    format: F,
    dead_letters: DeadLetters,
    consumer: SplitConsumer,
    split: u32,
    splits: u32,
    /// Whether the first assignment was made.
    started: bool,
    /// A position to start from (set by `seek`, used by the first assignment).
    restored: Option<KafkaPosition>,
    /// The assigned partitions, by topic and partition number.
    assigned: HashMap<String, BTreeMap<i32, Partition>>,
    /// When partitions were last looked for.
    last_discovery: Instant,
    /// Key and value bytes of the records read.
    bytes_read: u64,
    /// Lanes of partitions assigned since the last read, to declare to the source
    /// task (so a partition holds the watermark back before its first record).
    undeclared: Vec<LaneId>,
}

impl<F: KafkaFormat> KafkaReader<F> {
    pub(crate) fn new(
        config: Arc<SourceConfig>,
        format: F,
        dead_letters: DeadLetters,
        consumer: SplitConsumer,
        split: u32,
        splits: u32,
    ) -> Self {
        KafkaReader {
            config,
            format,
            dead_letters,
            consumer,
            split,
            splits,
            started: false,
            restored: None,
            assigned: HashMap::new(),
            last_discovery: Instant::now(),
            undeclared: Vec::new(),
            bytes_read: 0,
        }
    }

    /// Publishes each assigned partition's consumer lag (its readable end minus the
    /// next offset to read) when librdkafka's statistics brought new end offsets.
    fn report_lag(&self) {
        let Some(ends) = self.consumer.context().take() else {
            return;
        };
        for (topic, partition, end) in ends {
            if let Some(state) = self.assigned.get(&topic).and_then(|ps| ps.get(&partition)) {
                crate::metrics::kafka::consumer_lag(
                    &self.config.name,
                    &topic,
                    partition,
                    (end - state.next).max(0),
                );
            }
        }
    }

    fn resolver(&self) -> Resolver<'_> {
        Resolver {
            consumer: &self.consumer,
            timeout: self.config.request_timeout,
            source_name: &self.config.name,
        }
    }

    fn client_error(&self, what: String, error: rdkafka::error::KafkaError) -> KafkaSourceError {
        KafkaSourceError::Client {
            source_name: self.config.name.clone(),
            what,
            error: Box::new(error),
        }
    }

    /// The partitions of the source's topics this split owns, as the cluster knows
    /// them now.
    fn owned(&self) -> Result<Vec<(String, i32)>, KafkaSourceError> {
        let several = self.config.topics.len() > 1;
        let resolver = self.resolver();
        let mut out = Vec::new();
        for topic in &self.config.topics {
            for p in resolver.partitions(topic)? {
                if split_of(topic, p, self.splits, several) == self.split {
                    out.push((topic.clone(), p));
                }
            }
        }
        Ok(out)
    }

    fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.assigned
            .get(topic)
            .is_some_and(|ps| ps.contains_key(&partition))
    }

    /// `partitions` at `offsets`, with their ends for a bounded read (looked up
    /// now), ready for [`KafkaReader::insert`].
    fn prepare(
        &self,
        partitions: &[(String, i32)],
        offsets: &[i64],
    ) -> Result<Vec<(String, i32, Partition)>, KafkaSourceError> {
        let resolver = self.resolver();
        partitions
            .iter()
            .zip(offsets)
            .map(|((topic, p), &next)| {
                let end = if self.config.stop_at_end {
                    Some(resolver.watermarks(topic, *p)?.1)
                } else {
                    None
                };
                let lane = lane_of(topic, *p);
                Ok((topic.clone(), *p, Partition { next, end, lane }))
            })
            .collect()
    }

    /// Adds prepared partitions to the assignment (the client's is set by `assign`).
    fn insert(&mut self, prepared: Vec<(String, i32, Partition)>) {
        for (topic, p, state) in prepared {
            self.undeclared.push(state.lane);
            self.assigned.entry(topic).or_default().insert(p, state);
        }
    }

    /// Hands the client the whole assignment, each partition at its next offset.
    fn assign(&self) -> Result<(), KafkaSourceError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, ps) in &self.assigned {
            for (p, state) in ps {
                tpl.add_partition_offset(topic, *p, Offset::Offset(state.next))
                    .map_err(|e| {
                        self.client_error(format!("listing topic {topic} partition {p}"), e)
                    })?;
            }
        }
        self.consumer.assign(&tpl).map_err(|e| {
            self.client_error(
                format!("assigning the partitions of split {}", self.split),
                e,
            )
        })
    }

    /// The first assignment: restored offsets where a snapshot has them; otherwise
    /// the start mode, or the earliest offset for a partition that appeared after
    /// the snapshotted split had started (discovery would have read it from there).
    ///
    /// A restored partition of one of the source's topics that this split owns is
    /// assigned even when the metadata does not list it (a transient metadata
    /// error must not send it back to discovery, which would re-read it from the
    /// start).
    fn start(&mut self) -> Result<(), KafkaSourceError> {
        let owned = self.owned()?;
        let restored = self.restored.clone().unwrap_or_default();
        let several = self.config.topics.len() > 1;
        let mut known: Vec<((String, i32), i64)> = restored
            .offsets
            .iter()
            .filter(|((t, p), _)| {
                self.config.topics.contains(t)
                    && split_of(t, *p, self.splits, several) == self.split
            })
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        known.sort();
        let fresh: Vec<(String, i32)> = owned
            .into_iter()
            .filter(|tp| !restored.offsets.contains_key(tp))
            .collect();
        let mode = if restored.started {
            StartMode::Earliest
        } else {
            self.config.start
        };
        let fresh_offsets = self.resolver().resolve(mode, &fresh)?;
        let (known_tps, known_offsets): (Vec<_>, Vec<_>) = known.into_iter().unzip();
        let known = self.prepare(&known_tps, &known_offsets)?;
        let fresh = self.prepare(&fresh, &fresh_offsets)?;
        self.assigned.clear();
        self.insert(known);
        self.insert(fresh);
        self.assign()?;
        self.started = true;
        self.restored = None;
        self.last_discovery = Instant::now();
        tracing::debug!(source = %self.config.name, split = self.split,
            partitions = self.assigned.values().map(BTreeMap::len).sum::<usize>(), "kafka split assigned");
        Ok(())
    }

    /// Looks for partitions this split owns that are not assigned yet, and starts
    /// them at their earliest offset (records written before they were found must
    /// not be skipped). A failed lookup is logged and tried at the next interval; a
    /// failed assignment fails the read (and so the job, under its restart strategy).
    fn discover(&mut self) -> Result<(), KafkaSourceError> {
        let interval = self.config.discovery_interval;
        if interval.is_zero() || self.last_discovery.elapsed() < interval {
            return Ok(());
        }
        self.last_discovery = Instant::now();
        let owned = match self.owned() {
            Ok(owned) => owned,
            Err(e) => {
                tracing::warn!(source = %self.config.name, split = self.split, error = %e,
                    "kafka partition discovery failed; trying again at the next interval");
                return Ok(());
            }
        };
        let new: Vec<(String, i32)> = owned
            .into_iter()
            .filter(|(t, p)| !self.is_assigned(t, *p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let prepared = self
            .resolver()
            .resolve(StartMode::Earliest, &new)
            .and_then(|offsets| self.prepare(&new, &offsets));
        match prepared {
            Ok(prepared) => self.insert(prepared),
            Err(e) => {
                tracing::warn!(source = %self.config.name, split = self.split, error = %e,
                    "kafka partition discovery could not look up new partitions; trying again at the next interval");
                return Ok(());
            }
        }
        self.assign()?;
        tracing::info!(source = %self.config.name, split = self.split, ?new, "kafka partitions discovered");
        Ok(())
    }

    /// Whether a bounded read has read every assigned partition to its end.
    fn all_done(&self) -> bool {
        self.config.stop_at_end
            && self
                .assigned
                .values()
                .flat_map(BTreeMap::values)
                .all(Partition::done)
    }

    /// This split's position now.
    fn current(&self) -> KafkaPosition {
        if !self.started {
            return self.restored.clone().unwrap_or_default();
        }
        let mut offsets = BTreeMap::new();
        for (topic, ps) in &self.assigned {
            for (p, state) in ps {
                offsets.insert((topic.clone(), *p), state.next);
            }
        }
        KafkaPosition {
            started: true,
            offsets,
        }
    }
}

impl<F: KafkaFormat> KafkaReader<F> {
    /// One read round (see [`SourceReader::read`]).
    fn read_round<C: Collector<KafkaRecord<F::Value>>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        if self.config.stop.as_ref().is_some_and(|s| s.is_stopped()) {
            return Ok(ReadStatus::Exhausted);
        }
        if !self.started {
            self.start()?;
        } else {
            self.discover()?;
        }
        self.report_lag();
        let lanes = self.config.partition_watermarks;
        for lane in self.undeclared.drain(..) {
            if lanes {
                out.declare_lane(lane);
            }
        }
        if self.all_done() {
            return Ok(ReadStatus::Exhausted);
        }
        let mut read = 0usize;
        for round in 0..budget.max(1) {
            let timeout = if round == 0 {
                self.config.poll_timeout
            } else {
                Duration::ZERO
            };
            let message = match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(error)) => {
                    if let Some((code, reason)) = self.consumer.client().fatal_error() {
                        return Err(KafkaSourceError::Client {
                            source_name: self.config.name.clone(),
                            what: format!(
                                "polling split {}: fatal error {code:?}: {reason}",
                                self.split
                            ),
                            error: Box::new(error),
                        }
                        .into());
                    }
                    // Transient (a broker away, a timeout): the client retries.
                    tracing::warn!(source = %self.config.name, split = self.split, %error,
                        "kafka poll error; the client retries");
                    break;
                }
            };
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            let Some(state) = self
                .assigned
                .get_mut(topic)
                .and_then(|ps| ps.get_mut(&partition))
            else {
                continue; // From an assignment since replaced.
            };
            if offset < state.next || state.done() || state.end.is_some_and(|end| offset >= end) {
                continue; // Already read, or past the end of a bounded read.
            }
            self.bytes_read +=
                (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
            match self.format.decode(message.payload()) {
                Ok(value) => {
                    if lanes {
                        out.set_lane(state.lane);
                    }
                    out.collect(KafkaRecord {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        timestamp: message.timestamp().to_millis(),
                        key: message.key().map(<[u8]>::to_vec),
                        value,
                    });
                }
                Err(reason) => self.dead_letters.send(DeadLetter {
                    origin: self.config.name.clone(),
                    position: format!("topic {topic} partition {partition} offset {offset}"),
                    reason: format!(
                        "topic {topic} partition {partition} offset {offset}: {} format: {reason}",
                        self.format.name()
                    ),
                    record: String::from_utf8_lossy(message.payload().unwrap_or_default())
                        .into_owned(),
                    kafka: Some(KafkaCoordinates {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                    }),
                    raw_key: message.key().map(<[u8]>::to_vec),
                    raw_value: message.payload().map(<[u8]>::to_vec),
                }),
            }
            state.next = offset + 1;
            read += 1;
        }
        if self.all_done() {
            return Ok(ReadStatus::Exhausted);
        }
        Ok(if read == 0 {
            ReadStatus::Idle
        } else {
            ReadStatus::More
        })
    }
}

impl<F: KafkaFormat> SourceReader for KafkaReader<F> {
    type Item = KafkaRecord<F::Value>;

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads a round; a failed dead-letter delivery fails the read, and a split
    /// that ends makes its dead letters durable first.
    fn read<C: Collector<Self::Item>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        self.dead_letters.check()?;
        let status = self.read_round(budget, out)?;
        if status == ReadStatus::Exhausted {
            self.dead_letters.flush()?;
        }
        Ok(status)
    }

    /// Makes the dead letters of the records read so far durable, so the epoch of
    /// this barrier completes only after they are.
    fn before_barrier(&mut self) -> Result<(), SourceError> {
        Ok(self.dead_letters.flush()?)
    }

    /// The next offset of every assigned partition, and whether the split had
    /// started (see [`KafkaPosition`]). Always known, so a Kafka job can checkpoint.
    fn position(&self) -> Option<Vec<u8>> {
        Some(self.current().encode())
    }

    /// Commits the offsets of `position` (a completed epoch's) to the configured
    /// consumer group, for the partitions this split holds; asynchronously, so the
    /// actor does not wait for the broker. Kafka's committed offset is the next
    /// offset to read, which is what a position stores. Does nothing without a
    /// configured group or with [`commit_offsets(false)`](super::KafkaSource::commit_offsets).
    fn position_committed(&mut self, position: &[u8]) -> Result<(), SourceError> {
        if !self.config.commit_offsets || self.config.configured_group().is_none() {
            return Ok(());
        }
        let position = KafkaPosition::decode(position)?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), offset) in &position.offsets {
            if self.is_assigned(topic, *p) {
                tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))
                    .map_err(|e| {
                        self.client_error(format!("listing topic {topic} partition {p}"), e)
                    })?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.commit(&tpl, CommitMode::Async).map_err(|e| {
            self.client_error(format!("committing the offsets of split {}", self.split), e)
                .into()
        })
    }

    /// Restores a position: the next read assigns the owned partitions at its
    /// offsets; owned partitions it lacks start per the start mode (or at their
    /// earliest offset when the snapshotted split had already started).
    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let position = KafkaPosition::decode(position)?;
        self.restored = Some(position);
        self.started = false;
        self.assigned.clear();
        self.undeclared.clear();
        Ok(())
    }
}
