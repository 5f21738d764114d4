//! `weir bench kafka-w1`: W1 through a Kafka broker, next to that broker's raw
//! rates on the same machine.
//!
//! Three measurements, each one JSON line ([`BenchResult`]), in this order:
//!
//! 1. `kafka-raw-produce`: a plain idempotent rdkafka producer writes W1's lines
//!    (line `j` to partition `j % partitions`) into a new topic; words per second.
//!    This also fills the input of the next two.
//! 2. `kafka-raw-consume`: a plain rdkafka consumer reads the topic from its start
//!    to its end; words per second.
//! 3. `kafka-w1`: the weir job Kafka source -> split into words -> key by word ->
//!    running count in keyed state -> [`KafkaSink`] into an output topic (key: the
//!    word, value: its running count in decimal), at-least-once or exactly-once;
//!    words per second. After the timed run, a `read_committed` consumer reads the
//!    output topic back and checks it like W1 (every update there, every word's
//!    last count exact).
//!
//! `scripts/kafka-bench.sh` starts a Tansu broker and runs this; results are in
//! docs/benchmarks.md.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::connector::generator::w1_line;
use crate::connector::kafka::{
    Delivery, KafkaOutput, KafkaRecord, KafkaSink, KafkaSource, Utf8Text,
};
use crate::connector::sinks::Counted;
use crate::connector::DeadLetters;
use crate::job::node::TemporaryDir;
use crate::job::{EngineOptions, Job, JobError};
use crate::operator::Emitter;

use super::{w1, BenchResult};

/// How long a raw read may go without a record before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client request (metadata, watermarks, topic creation, flush) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the output read-back waits for a record after it has all it expects,
/// so that a duplicate (which would fail the check) is seen.
const EXTRA_RECORD_WAIT: Duration = Duration::from_millis(500);

/// What `weir bench kafka-w1` runs against.
#[derive(Debug, Clone)]
pub struct KafkaBench {
    /// `bootstrap.servers` of the broker.
    pub bootstrap: String,
    /// The input topic to create (it must not exist).
    pub topic: String,
    /// Its number of partitions.
    pub partitions: i32,
    /// The output topic the job's counts go to (created; it must not exist).
    pub output_topic: String,
    /// The Kafka sink's delivery guarantee. Exactly-once commits a transaction per
    /// sink partition at each completed checkpoint; without checkpoints, all the
    /// output is one transaction per sink partition committed at the end of input.
    pub delivery: Delivery,
    /// W1 words (in lines of ten).
    pub n: u64,
}

/// Why the Kafka benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum KafkaBenchError {
    /// A client call failed.
    #[error("kafka bench: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A raw read stopped short of the topic's end.
    #[error("kafka bench: {0}")]
    Incomplete(String),
    /// The weir job failed.
    #[error(transparent)]
    Job(#[from] JobError),
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> KafkaBenchError {
    let what = what.into();
    move |source| KafkaBenchError::Kafka { what, source }
}

/// Runs the three measurements; the job on a node with `options`.
pub fn run(
    options: EngineOptions,
    bench: &KafkaBench,
) -> Result<Vec<BenchResult>, KafkaBenchError> {
    create_topic(&bench.bootstrap, &bench.topic, bench.partitions)?;
    let produced = raw_produce(bench)?;
    let consumed = raw_consume(bench)?;
    let job = weir_job(options, bench)?;
    Ok(vec![produced, consumed, job])
}

/// Creates `topic` through the admin API.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), KafkaBenchError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(kafka("creating an admin client"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| KafkaBenchError::Incomplete(format!("a runtime for the admin client: {e}")))?;
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)),
        ))
        .map_err(kafka(format!("creating topic {topic}")))?;
    for result in results {
        result.map_err(|(t, code)| KafkaBenchError::Kafka {
            what: format!("creating topic {t}"),
            source: KafkaError::AdminOp(code),
        })?;
    }
    Ok(())
}

/// A producer wrapper that writes each partition's last record in a record batch
/// of its own. Some Kafka-compatible brokers (Tansu 0.6) report a partition's high
/// watermark as the base offset of its last batch plus one; with a one-record last
/// batch that is exact, so a reader that stops at the high watermark (a bounded
/// read) reads everything. Against Apache Kafka it costs one extra round trip.
pub struct ExactEndProducer<'a> {
    producer: &'a BaseProducer,
    topic: String,
    /// The newest record of each partition, not sent yet.
    held: BTreeMap<i32, (Option<Vec<u8>>, Vec<u8>)>,
}

impl<'a> ExactEndProducer<'a> {
    /// Writes to `topic` through `producer`.
    pub fn new(producer: &'a BaseProducer, topic: &str) -> Self {
        ExactEndProducer {
            producer,
            topic: topic.to_owned(),
            held: BTreeMap::new(),
        }
    }

    /// Queues a record for `partition` (sending the one it held back before).
    pub fn send(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(), KafkaError> {
        let new = (key.map(<[u8]>::to_vec), value.to_vec());
        if let Some((key, value)) = self.held.insert(partition, new) {
            send_waiting(
                self.producer,
                &self.topic,
                partition,
                key.as_deref(),
                &value,
            )?;
        }
        Ok(())
    }

    /// Waits until every record is acknowledged, then writes each partition's last
    /// record alone and waits for those.
    pub fn finish(self) -> Result<(), KafkaError> {
        self.producer.flush(REQUEST_TIMEOUT)?;
        for (partition, (key, value)) in &self.held {
            send_waiting(
                self.producer,
                &self.topic,
                *partition,
                key.as_deref(),
                value,
            )?;
        }
        self.producer.flush(REQUEST_TIMEOUT)
    }
}

/// Queues one record, polling while the producer's queue is full.
fn send_waiting(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<(), KafkaError> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(5));
                record = r;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// The measured line of a raw client run.
fn raw_result(workload: &str, n: u64, seconds: f64) -> BenchResult {
    BenchResult {
        workload: workload.into(),
        n,
        parallelism: 1,
        checkpointing: false,
        checkpoints_completed: 0,
        checkpoint_longest_ms: 0.0,
        checkpoint_largest_bytes: 0,
        seconds,
        records_per_sec: n as f64 / seconds.max(1e-9),
        peak_rss_bytes: None,
        check: "passed".into(),
    }
}

fn lines_of(n: u64) -> u64 {
    n.div_ceil(crate::connector::generator::W1_WORDS_PER_LINE)
}

/// Writes W1's lines into the topic with a plain producer, timed.
fn raw_produce(bench: &KafkaBench) -> Result<BenchResult, KafkaBenchError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bench.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(kafka("creating a producer"))?;
    let partitions = u64::try_from(bench.partitions.max(1)).unwrap_or(1);
    let started = Instant::now();
    let mut writer = ExactEndProducer::new(&producer, &bench.topic);
    for j in 0..lines_of(bench.n) {
        let partition = i32::try_from(j % partitions).unwrap_or(0);
        writer
            .send(partition, None, w1_line(j, bench.n).as_bytes())
            .map_err(kafka(format!("producing line {j} to {}", bench.topic)))?;
    }
    writer
        .finish()
        .map_err(kafka(format!("flushing the producer of {}", bench.topic)))?;
    Ok(raw_result(
        "kafka-raw-produce",
        bench.n,
        started.elapsed().as_secs_f64(),
    ))
}

/// Reads the topic from its start to its end with a plain consumer, timed, and
/// checks that every line arrived.
fn raw_consume(bench: &KafkaBench) -> Result<BenchResult, KafkaBenchError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bench.bootstrap)
        .set("group.id", "weir-bench-raw")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka("creating a consumer"))?;
    let started = Instant::now();
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..bench.partitions {
        let (low, high) = consumer
            .fetch_watermarks(&bench.topic, p, REQUEST_TIMEOUT)
            .map_err(kafka(format!(
                "watermarks of {} partition {p}",
                bench.topic
            )))?;
        tpl.add_partition_offset(&bench.topic, p, Offset::Offset(low))
            .map_err(kafka("listing a partition"))?;
        if high > low {
            ends.insert(p, high);
        }
    }
    consumer
        .assign(&tpl)
        .map_err(kafka("assigning partitions"))?;
    let mut lines = 0u64;
    let mut last_record = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_record = Instant::now();
                lines += 1;
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "raw consume: poll error"),
            None if last_record.elapsed() > STALL_TIMEOUT => {
                return Err(KafkaBenchError::Incomplete(format!(
                    "raw consume stalled after {lines} lines; partitions not at their end: {ends:?}"
                )));
            }
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut result = raw_result("kafka-raw-consume", bench.n, seconds);
    if lines != lines_of(bench.n) {
        eprintln!(
            "kafka-raw-consume check failed: read {lines} lines, expected {}",
            lines_of(bench.n)
        );
        result.check = "failed".into();
    }
    Ok(result)
}

/// The weir job over the topic into the output topic through [`KafkaSink`], then
/// the output read back and checked like W1.
fn weir_job(options: EngineOptions, bench: &KafkaBench) -> Result<BenchResult, KafkaBenchError> {
    let n = bench.n;
    create_topic(&bench.bootstrap, &bench.output_topic, bench.partitions)?;
    let staging = TemporaryDir::new("kafka-staging", "kafka-w1")?;
    let source = KafkaSource::new(
        bench.bootstrap.clone(),
        [bench.topic.as_str()],
        Utf8Text,
        DeadLetters::to_log(),
    )
    .stop_at_end(true);
    let sink = KafkaSink::new(
        bench.bootstrap.clone(),
        bench.output_topic.clone(),
        |(word, count): &(String, u64)| KafkaOutput {
            key: Some(word.as_bytes().to_vec()),
            value: Some(count.to_string().into_bytes()),
            ..KafkaOutput::default()
        },
    )
    .delivery(bench.delivery)
    .id(format!("weir-bench-{}", bench.output_topic))
    .staging_dir(staging.path());
    Ok(BenchResult::measure(
        "kafka-w1",
        options,
        n,
        |node| {
            let job = Job::new("kafka-w1")
                .source(source)
                .flat_map(
                    |record: KafkaRecord<String>, out: &mut Emitter<'_, (String, u64)>| {
                        for word in record.value.split(' ') {
                            out.emit((word.to_owned(), 1));
                        }
                    },
                )
                .group_by_key()
                .reduce(|count, one| count + one)
                .sink(sink);
            let report = node.run(job)?;
            Ok(((), report))
        },
        |()| {
            let counted = read_output(bench).map_err(|e| e.to_string())?;
            w1::check(n, &counted)
        },
    )?)
}

/// Reads the output topic from its start with a `read_committed` consumer until it
/// has `n` records and no more arrive: how many, and the last count of each word
/// (a word's updates all go to one partition, in order).
fn read_output(bench: &KafkaBench) -> Result<Counted<String, u64>, KafkaBenchError> {
    let topic = &bench.output_topic;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bench.bootstrap)
        .set("group.id", "weir-bench-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(kafka("creating the output reader"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..bench.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(kafka("listing an output partition"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(kafka("assigning the output partitions"))?;
    let mut counted = Counted::default();
    let mut last_record = Instant::now();
    loop {
        let wait = if counted.received >= bench.n {
            EXTRA_RECORD_WAIT
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                last_record = Instant::now();
                let (word, count) = output_record(&m)?;
                counted.received += 1;
                counted.last.insert(word, count);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "output read-back: poll error"),
            None if counted.received >= bench.n => return Ok(counted),
            None if last_record.elapsed() > STALL_TIMEOUT => return Ok(counted),
            None => {}
        }
    }
}

/// The word and count of one output record.
fn output_record(
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> Result<(String, u64), KafkaBenchError> {
    let at = || {
        format!(
            "{} partition {} offset {}",
            m.topic(),
            m.partition(),
            m.offset()
        )
    };
    let word = m
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or_else(|| {
            KafkaBenchError::Incomplete(format!("output record without a UTF-8 key at {}", at()))
        })?;
    let count = m
        .payload()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            KafkaBenchError::Incomplete(format!(
                "output record whose value is not a count at {}",
                at()
            ))
        })?;
    Ok((word.to_owned(), count))
}
