//! The Kafka sink: at-least-once (an idempotent producer flushed at every barrier)
//! or exactly-once (a Kafka transaction per epoch and sink partition, committed
//! once the epoch is complete, with a staged copy and a commit marker so a
//! transaction lost to a crash between the epoch's completion and its commit is
//! produced again exactly once).
//!
//! - [`output`]: the record a formatter makes ([`KafkaOutput`]).
//! - [`config`]: the delivery modes and the shared settings.
//! - [`log`]: the broker interaction as a trait; [`rdkafka_log`] implements it.
//! - [`frame`]: the versioned, checksummed envelope of markers and staged copies.
//! - [`marker`]: commit markers; [`staged`]: staged copies; [`ledger`]: the local
//!   record of the newest committed epoch of each sink partition.
//! - [`registry`]: live producers, installed logs and transaction counters.
//! - [`exactly_once`], [`at_least_once`]: the partition sinks.
//! - [`commit`]: the commit action, its redo and its abort, and the sink's
//!   [`Committer`](crate::connector::two_phase::Committer).
//!
//! See docs/kafka.md for the user's view and docs/exactly-once.md ("Kafka sink")
//! for the argument.

pub mod at_least_once;
pub mod commit;
pub mod config;
pub mod error;
pub mod exactly_once;
pub mod frame;
pub mod ledger;
pub mod log;
pub mod marker;
pub mod output;
pub mod rdkafka_log;
pub mod registry;
pub mod staged;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use at_least_once::AtLeastOncePart;
pub use commit::{KafkaCommit, KafkaCommitter};
pub use config::{Delivery, DEFAULT_POOL, DEFAULT_STAGING, DEFAULT_TIMEOUT};
pub use error::KafkaSinkError;
pub use exactly_once::ExactlyOncePart;
pub use log::{LogProducer, PartitionEnds, TransactionalLog};
pub use output::KafkaOutput;
pub use registry::{transaction_counts, TransactionCounts};

use config::SinkConfig;

use crate::connector::sink::{Sink, SinkError, SinkRecovery};
use crate::connector::two_phase::{TwoPhaseCommitSink, TwoPhaseCommitSinkFactory};

/// A Kafka sink writing the records of a job's last stage to one topic, each made
/// into a [`KafkaOutput`] by `F`.
///
/// ```no_run
/// use weir::connector::kafka::{Delivery, KafkaOutput, KafkaSink};
/// let sink = KafkaSink::new("broker:9092", "counts", |r: &(String, u64)| KafkaOutput {
///     key: Some(r.0.as_bytes().to_vec()),
///     value: Some(r.1.to_string().into_bytes()),
///     ..KafkaOutput::default()
/// })
/// .delivery(Delivery::ExactlyOnce)
/// .id("billing-counts")
/// .staging_dir("/var/lib/weir/kafka-staging")
/// .set("compression.type", "lz4");
/// ```
pub struct KafkaSink<F> {
    config: Arc<SinkConfig>,
    format: F,
    /// The job's state directory, learnt in [`TwoPhaseCommitSinkFactory::recover`]
    /// before each run: the default home of staged copies.
    state_dir: Arc<Mutex<Option<PathBuf>>>,
}

impl<F: Clone> Clone for KafkaSink<F> {
    fn clone(&self) -> Self {
        KafkaSink {
            config: self.config.clone(),
            format: self.format.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}

impl<F> KafkaSink<F> {
    /// Writes to `topic` on the cluster at `bootstrap` (`host:port,...`), records
    /// made by `format`. At-least-once unless [`delivery`](Self::delivery) says
    /// otherwise; sink id `weir-<topic>`.
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>, format: F) -> Self {
        let topic = topic.into();
        let id = format!("weir-{topic}");
        KafkaSink {
            config: Arc::new(SinkConfig {
                marker_topic: format!("{id}-markers"),
                id,
                bootstrap: bootstrap.into(),
                topic,
                settings: Default::default(),
                delivery: Delivery::default(),
                pool: DEFAULT_POOL,
                staging: None,
                timeout: DEFAULT_TIMEOUT,
            }),
            format,
            state_dir: Arc::default(),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut SinkConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The delivery guarantee (default [`Delivery::AtLeastOnce`]).
    pub fn delivery(self, delivery: Delivery) -> Self {
        self.edit(|c| c.delivery = delivery)
    }

    /// The sink's id, unique among every sink writing to the cluster (include the
    /// job's name): transactional ids are `<id>-p<partition>-s<slot>`, the marker
    /// topic defaults to `<id>-markers`, and staged copies live in `<staging>/<id>`.
    /// Default `weir-<topic>`. Changing it on a job restored from a snapshot leaves
    /// the old ids' transactions to the broker's timeout.
    pub fn id(self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.edit(|c| {
            if c.marker_topic == format!("{}-markers", c.id) {
                c.marker_topic = format!("{id}-markers");
            }
            c.id = id;
        })
    }

    /// The compacted topic commit markers go to (default `<id>-markers`; created
    /// with one partition per sink partition if missing).
    pub fn marker_topic(self, topic: impl Into<String>) -> Self {
        let topic = topic.into();
        self.edit(|c| c.marker_topic = topic)
    }

    /// The directory staged copies and commit ledgers go under (default
    /// [`DEFAULT_STAGING`] inside the job's state directory). Put it on durable
    /// storage that survives the process, like the state directory, and keep it
    /// with the state directory: a redo refuses to guess when both the staged copy
    /// and the ledger of a completed epoch are gone.
    pub fn staging_dir(self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.edit(|c| c.staging = Some(dir))
    }

    /// Transactional producers per sink partition (default [`DEFAULT_POOL`], at
    /// least 2): one takes the epoch in progress while others hold pre-committed
    /// epochs waiting to complete. See docs/kafka.md for the bound.
    pub fn pool_size(self, producers: u32) -> Self {
        self.edit(|c| c.pool = producers.max(2))
    }

    /// How long one broker call (flush, commit, init, a marker lookup) may take
    /// (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.edit(|c| c.timeout = timeout)
    }

    /// Passes one librdkafka setting (e.g. `compression.type`, `linger.ms`,
    /// `batch.size`, `security.protocol`, `sasl.username`, `transaction.timeout.ms`)
    /// to the producers unchanged; `enable.idempotence`, `bootstrap.servers` and
    /// `transactional.id` are weir's and win.
    pub fn set(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        self.edit(|c| {
            c.settings.insert(key, value);
        })
    }

    /// Passes every entry of `settings` as with [`set`](Self::set).
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

    /// Reaches the cluster through `log` instead of librdkafka: every sink and
    /// commit action of this process with this sink's bootstrap string uses it.
    /// For tests (an in-memory model with Kafka's transaction semantics) and other
    /// clients.
    pub fn with_log(self, log: Arc<dyn TransactionalLog>) -> Self {
        registry::install_log(&self.config.bootstrap, log);
        self
    }

    /// The transactions this sink committed and aborted in this process.
    pub fn transaction_counts(&self) -> Arc<TransactionCounts> {
        registry::transaction_counts(&self.config.id)
    }

    /// The configuration with the staging directory resolved for this run.
    fn resolved(&self) -> Arc<SinkConfig> {
        let state_dir = self
            .state_dir
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut config = (*self.config).clone();
        config.staging = Some(config.staging_base(state_dir.as_deref()));
        Arc::new(config)
    }

    fn log(&self) -> Arc<dyn TransactionalLog> {
        registry::log_for(
            &self.config.bootstrap,
            &self.config.settings,
            self.config.timeout,
        )
    }
}

/// One partition of a [`KafkaSink`], in its delivery mode. Both are one
/// [`TwoPhaseCommitSink`]; an at-least-once partition flushes at each barrier and
/// returns no actions.
pub enum KafkaSinkPart<F> {
    /// At-least-once.
    AtLeastOnce(AtLeastOncePart<F>),
    /// Exactly-once.
    ExactlyOnce(Box<ExactlyOncePart<F>>),
}

impl<T, F> TwoPhaseCommitSink<T> for KafkaSinkPart<F>
where
    F: Fn(&T) -> KafkaOutput + Send + 'static,
{
    type Action = KafkaCommit;

    fn write(&mut self, item: T) -> Result<(), SinkError> {
        match self {
            KafkaSinkPart::AtLeastOnce(p) => Sink::<T>::write(p, item),
            KafkaSinkPart::ExactlyOnce(p) => TwoPhaseCommitSink::<T>::write(p.as_mut(), item),
        }
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        match self {
            KafkaSinkPart::AtLeastOnce(p) => Sink::<T>::finish(p),
            KafkaSinkPart::ExactlyOnce(p) => TwoPhaseCommitSink::<T>::finish(p.as_mut()),
        }
    }
    fn pre_commit(&mut self, epoch: u64) -> Result<Vec<KafkaCommit>, SinkError> {
        match self {
            KafkaSinkPart::AtLeastOnce(p) => Sink::<T>::flush(p, epoch).map(|()| Vec::new()),
            KafkaSinkPart::ExactlyOnce(p) => TwoPhaseCommitSink::<T>::pre_commit(p.as_mut(), epoch),
        }
    }
    fn committed(&mut self, epoch: u64) {
        if let KafkaSinkPart::ExactlyOnce(p) = self {
            TwoPhaseCommitSink::<T>::committed(p.as_mut(), epoch);
        }
    }
}

impl<T, F> TwoPhaseCommitSinkFactory<T> for KafkaSink<F>
where
    F: Fn(&T) -> KafkaOutput + Clone + Send + 'static,
{
    type Sink = KafkaSinkPart<F>;
    type Committer = KafkaCommitter;

    fn name(&self) -> String {
        format!("kafka({})", self.config.topic)
    }

    fn create(&self, partition: u32, parallelism: u32) -> Result<Self::Sink, SinkError> {
        let log = self.log();
        Ok(match self.config.delivery {
            Delivery::AtLeastOnce => KafkaSinkPart::AtLeastOnce(AtLeastOncePart::new(
                log.producer(None)?,
                self.config.topic.clone(),
                self.format.clone(),
            )),
            Delivery::ExactlyOnce => KafkaSinkPart::ExactlyOnce(Box::new(ExactlyOncePart::new(
                self.resolved(),
                log,
                self.format.clone(),
                partition,
                parallelism,
            )?)),
        })
    }

    fn committer(&self) -> KafkaCommitter {
        KafkaCommitter
    }

    /// Exactly-once: deletes every staged copy left, and winds the commit ledgers
    /// back to the restored epoch (deletes them for a run from the beginning). The
    /// engine has redone the restored epoch's actions (which delete their staged
    /// copies) and aborted those of later epochs it knew of, so what is left belongs
    /// to epochs that never completed (a process that died left them), and every
    /// epoch up to the restored one is committed. Open transactions a crashed run
    /// left are aborted when [`create`](TwoPhaseCommitSinkFactory::create) fences
    /// their ids.
    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        *self
            .state_dir
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            recovery.state_dir.map(Path::to_path_buf);
        if self.config.delivery == Delivery::AtLeastOnce {
            return Ok(());
        }
        let restored = recovery.restored;
        let dir = self.resolved().staging_dir();
        let io = |what: &'static str, path: PathBuf| {
            move |source| SinkError::from(KafkaSinkError::Staging { what, path, source })
        };
        std::fs::create_dir_all(&dir).map_err(io("creating", dir.clone()))?;
        for entry in std::fs::read_dir(&dir).map_err(io("listing", dir.clone()))? {
            let path = entry.map_err(io("listing", dir.clone()))?.path();
            if ledger::is_ledger(&path) {
                ledger::rewind(&path, restored)?;
            } else {
                staged::remove_staged(&path)?;
            }
        }
        Ok(())
    }
}
