//! Node configuration: the TOML file that holds every tunable of a weir node.
//!
//! A node reads one file (`weir run <job> --config node.toml`); every section
//! and key in it is optional and falls back to a default. After the file is
//! read, command-line flags may replace individual fields, and the merged
//! result is checked again with [`WeirConfig::validate_with_origin`] so that a
//! bad flag is reported as coming from the command line.
//!
//! Errors always say where the bad input came from and, whenever it concerns
//! a single setting, its dotted key (for example `engine.key_partitions`).

#![warn(missing_docs)]

mod diagnose;
mod error;
mod kafka;
mod render;
#[cfg(test)]
mod tests;
mod validate;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

pub use error::{ConfigError, COMMAND_LINE_ORIGIN};
pub use kafka::{parse_setting, KafkaConfig, KafkaSettings, RESERVED_SETTINGS};

/// The origin used in errors for text that did not come from a file.
pub const STRING_ORIGIN: &str = "<string>";

/// The allowed values of `engine.key_partitions`.
///
/// The upper bound keeps per-partition bookkeeping small while leaving room
/// for far more partitions than any node has actors.
pub const KEY_PARTITIONS_RANGE: RangeInclusive<u32> = 1..=65_536;
/// The allowed values of `engine.mailbox_capacity`, in batches.
pub const MAILBOX_CAPACITY_RANGE: RangeInclusive<usize> = 1..=1_000_000;
/// The allowed values of `engine.batch_size`, in records.
pub const BATCH_SIZE_RANGE: RangeInclusive<usize> = 1..=1_000_000;
/// The allowed values of `state.sled_cache_mb`, in MiB.
pub const SLED_CACHE_MB_RANGE: RangeInclusive<u64> = 1..=65_536;
/// The allowed values of `progress.interval_ms`, in milliseconds.
pub const PROGRESS_INTERVAL_MS_RANGE: RangeInclusive<u64> = 50..=3_600_000;
/// The allowed values of a non-zero `checkpoint.interval_ms`, in milliseconds
/// (`0` turns checkpointing off). Below 10 ms a node would do little but
/// checkpoint; above a day is almost surely a unit mistake.
pub const CHECKPOINT_INTERVAL_MS_RANGE: RangeInclusive<u64> = 10..=86_400_000;
/// The allowed values of a non-zero `metrics.state_interval_ms`, in milliseconds
/// (`0` turns the state measurement off). Each measurement scans every stored
/// state entry of the job, so more often than once a second is refused; above a
/// day is almost surely a unit mistake.
pub const STATE_METRICS_INTERVAL_MS_RANGE: RangeInclusive<u64> = 1_000..=86_400_000;
/// The allowed values of `checkpoint.timeout_ms`, in milliseconds.
pub const CHECKPOINT_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=86_400_000;
/// The allowed values of the restart delays (`restart.delay_ms`,
/// `restart.initial_delay_ms`, `restart.max_delay_ms`), in milliseconds. `0`
/// restarts at once; the upper bound is one day.
pub const RESTART_DELAY_MS_RANGE: RangeInclusive<u64> = 0..=86_400_000;
/// The allowed values of the restart time windows (`restart.reset_after_ms`,
/// `restart.failure_interval_ms`), in milliseconds.
pub const RESTART_WINDOW_MS_RANGE: RangeInclusive<u64> = 1..=86_400_000;
/// The allowed values of `restart.multiplier`.
pub const RESTART_MULTIPLIER_RANGE: RangeInclusive<f64> = 1.0..=1000.0;

/// A node's complete configuration, one field per TOML section.
///
/// Only `PartialEq`, not `Eq`: `restart.multiplier` is a float.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WeirConfig {
    /// How work is spread over threads and actors (`[engine]`).
    pub engine: EngineConfig,
    /// Where and how operator state is kept (`[state]`).
    pub state: StateConfig,
    /// Periodic progress reports (`[progress]`).
    pub progress: ProgressConfig,
    /// Log output (`[log]`).
    pub log: LogConfig,
    /// The Prometheus metrics endpoint (`[metrics]`).
    pub metrics: MetricsConfig,
    /// Periodic checkpoints of operator state (`[checkpoint]`).
    pub checkpoint: CheckpointConfig,
    /// What the node does when a job fails (`[restart]`).
    pub restart: RestartConfig,
    /// Records that fail the job again and again (`[poison]`).
    pub poison: PoisonConfig,
    /// Where savepoints go (`[savepoint]`).
    pub savepoint: SavepointConfig,
    /// The status API and page (`[http]`).
    pub http: HttpConfig,

    /// The Kafka cluster and librdkafka settings jobs use (`[kafka]`).
    pub kafka: KafkaConfig,
}

/// Threading, partitioning and batching of the dataflow (`[engine]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Worker threads, each running one actix arbiter. Defaults to the number
    /// of CPU cores so a node uses the whole machine unless told otherwise.
    pub workers: usize,
    /// Partition actors per stage. `None` means "follow `workers`" (capped at
    /// `key_partitions`); read the value through
    /// [`EngineConfig::effective_parallelism`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// How many key partitions the key space is cut into. State is stored per
    /// key partition, so this is fixed for a job's whole life.
    pub key_partitions: u32,
    /// Batches a partition actor's mailbox holds before senders must wait;
    /// this bound is what turns a slow stage into backpressure.
    pub mailbox_capacity: usize,
    /// Records carried by one batch message, trading latency for per-message
    /// overhead.
    pub batch_size: usize,
}

impl EngineConfig {
    /// The number of partition actors per stage that the node should run.
    ///
    /// An explicit `parallelism` is used as is (validation keeps it within
    /// `key_partitions`); when unset it follows `workers`, capped at
    /// `key_partitions` so that a default configuration stays valid on a
    /// machine with more cores than key partitions.
    pub fn effective_parallelism(&self) -> usize {
        match self.parallelism {
            Some(parallelism) => parallelism,
            None => {
                let cap = usize::try_from(self.key_partitions).unwrap_or(usize::MAX);
                self.workers.min(cap).max(1)
            }
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: default_workers(),
            parallelism: None,
            key_partitions: 128,
            mailbox_capacity: 16,
            batch_size: 1024,
        }
    }
}

/// The number of CPU cores, or 1 when the platform cannot tell.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Operator state storage (`[state]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the node's sled database. `None` means a temporary
    /// directory that is removed when the node exits, which suits tests and
    /// throwaway runs but keeps nothing across restarts. A relative path is
    /// taken relative to the node's working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Entries each partition actor keeps in its write-back cache before it
    /// flushes them to sled and evicts them; bounds memory per actor.
    pub cache_entries: usize,
    /// Size of sled's own page cache, in MiB.
    pub sled_cache_mb: u64,
    /// The shared snapshot store: `file:///dir` (one node) or
    /// `s3://bucket/prefix` (a cluster). Unset: `<dir>/snapshots` on local disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_url: Option<String>,
    /// Another S3 endpoint than AWS's (an S3-compatible server), e.g.
    /// `http://127.0.0.1:9000`; only with an `s3://` `snapshot_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// Whether `s3_endpoint` may be plain `http://`.
    pub s3_allow_http: bool,
    /// The S3 region; unset: `AWS_REGION`, else `us-east-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
}

impl StateConfig {
    /// The shared snapshot store these keys describe (credentials come from the
    /// environment), or `None` when `snapshot_url` is unset or invalid (validation
    /// reports an invalid one).
    pub fn snapshot_store(&self) -> Option<crate::snapshot_store::SnapshotStoreSpec> {
        let url = crate::snapshot_store::SnapshotUrl::parse(self.snapshot_url.as_deref()?).ok()?;
        let mut spec = crate::snapshot_store::SnapshotStoreSpec::new(url);
        spec.s3_endpoint = self.s3_endpoint.clone();
        spec.s3_allow_http = self.s3_allow_http;
        spec.s3_region = self.s3_region.clone();
        Some(spec)
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: None,
            cache_entries: 1_000_000,
            sled_cache_mb: 64,
            snapshot_url: None,
            s3_endpoint: None,
            s3_allow_http: false,
            s3_region: None,
        }
    }
}

/// Periodic progress reports (`[progress]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressConfig {
    /// Whether the node reports progress at all.
    pub enabled: bool,
    /// Time between two reports, in milliseconds.
    pub interval_ms: u64,
}

impl ProgressConfig {
    /// The report interval as a [`Duration`], ready for a timer.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

impl Default for ProgressConfig {
    fn default() -> Self {
        ProgressConfig {
            enabled: true,
            interval_ms: 1000,
        }
    }
}

/// How log lines are written (`[log]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Human-readable text or one JSON object per line.
    pub format: LogFormat,
    /// A `tracing` `EnvFilter` directive such as `info` or
    /// `weir=debug,sled=warn`. A non-empty `RUST_LOG` environment variable
    /// takes precedence; see [`LogConfig::effective_filter`].
    pub filter: String,
}

impl LogConfig {
    /// The filter directive to install: `rust_log` (the value of the
    /// `RUST_LOG` environment variable, passed in by the caller) when it is
    /// set and not blank, otherwise the configured `filter`.
    ///
    /// Letting `RUST_LOG` win keeps the usual Rust habit of turning up logging
    /// for one run without editing the node's file.
    pub fn effective_filter<'a>(&'a self, rust_log: Option<&'a str>) -> &'a str {
        match rust_log {
            Some(directive) if !directive.trim().is_empty() => directive,
            _ => &self.filter,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// The shape of log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The name used in the config file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The Prometheus metrics endpoint (`[metrics]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether the node serves `/metrics` at all.
    pub enabled: bool,
    /// Address and port the node serves `/metrics` on. Port 0 lets the
    /// operating system pick a free port.
    #[serde(deserialize_with = "deserialize_socket_addr")]
    pub addr: SocketAddr,
    /// Milliseconds between two measurements of the keyed state's entries and
    /// bytes per partition actor (`weir_state_keys`, `weir_state_bytes`); `0`
    /// turns them off. Read it through [`MetricsConfig::state_interval`].
    pub state_interval_ms: u64,
}

impl MetricsConfig {
    /// The state measurement interval, or `None` when it is off or metrics are.
    pub fn state_interval(&self) -> Option<Duration> {
        (self.enabled && self.state_interval_ms > 0)
            .then(|| Duration::from_millis(self.state_interval_ms))
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464)),
            state_interval_ms: 30_000,
        }
    }
}

/// Periodic checkpoints of operator state (`[checkpoint]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Milliseconds between the starts of two checkpoints; `0` turns
    /// checkpointing off. Read it through [`CheckpointConfig::interval`].
    pub interval_ms: u64,
    /// Milliseconds a checkpoint may take before it is abandoned.
    pub timeout_ms: u64,
    /// Complete checkpoints (epochs) kept on disk; older ones are deleted.
    pub retain: usize,
    /// Incremental chunks a chain may grow to before the next checkpoint
    /// writes a full, compacted copy instead.
    pub compact_after: usize,
}

impl CheckpointConfig {
    /// The checkpoint interval, or `None` when checkpointing is off.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval_ms > 0).then(|| Duration::from_millis(self.interval_ms))
    }

    /// The checkpoint timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval_ms: 0,
            timeout_ms: 60_000,
            retain: 3,
            compact_after: 8,
        }
    }
}

/// What the node does when a job fails (`[restart]`).
///
/// Every key may be set whatever the strategy; each strategy reads only its
/// own keys (listed on [`RestartStrategyName`]) and ignores the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// Which strategy decides whether, and after how long, to restart.
    pub strategy: RestartStrategyName,
    /// fixed-delay: restarts allowed over the job's whole life.
    pub attempts: u32,
    /// fixed-delay and failure-rate: milliseconds to wait before a restart.
    pub delay_ms: u64,
    /// exponential-backoff: milliseconds to wait before the first restart.
    pub initial_delay_ms: u64,
    /// exponential-backoff: the longest wait, in milliseconds.
    pub max_delay_ms: u64,
    /// exponential-backoff: factor applied to the wait after each failure.
    pub multiplier: f64,
    /// exponential-backoff: a run that lasted at least this many milliseconds
    /// before failing resets the wait to `initial_delay_ms`.
    pub reset_after_ms: u64,
    /// failure-rate: failures tolerated within `failure_interval_ms`; one
    /// more and the job fails for good.
    pub max_failures: u32,
    /// failure-rate: length of the sliding window, in milliseconds.
    pub failure_interval_ms: u64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            strategy: RestartStrategyName::FixedDelay,
            attempts: 10,
            delay_ms: 1000,
            initial_delay_ms: 100,
            max_delay_ms: 30_000,
            multiplier: 2.0,
            reset_after_ms: 60_000,
            max_failures: 3,
            failure_interval_ms: 60_000,
        }
    }
}

/// The restart strategies, as named in `restart.strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategyName {
    /// Never restart: the first failure fails the job.
    None,
    /// Restart after `delay_ms`, at most `attempts` times in total.
    #[default]
    FixedDelay,
    /// Restart without limit, waiting `initial_delay_ms` at first and
    /// `multiplier` times longer after each further failure, up to
    /// `max_delay_ms`; `reset_after_ms` of trouble-free running resets the wait.
    ExponentialBackoff,
    /// Restart after `delay_ms` unless more than `max_failures` failures fall
    /// within `failure_interval_ms`.
    FailureRate,
}

impl RestartStrategyName {
    /// Every strategy, in the order the documentation lists them.
    pub const ALL: [RestartStrategyName; 4] = [
        RestartStrategyName::None,
        RestartStrategyName::FixedDelay,
        RestartStrategyName::ExponentialBackoff,
        RestartStrategyName::FailureRate,
    ];

    /// The name used in the config file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartStrategyName::None => "none",
            RestartStrategyName::FixedDelay => "fixed-delay",
            RestartStrategyName::ExponentialBackoff => "exponential-backoff",
            RestartStrategyName::FailureRate => "failure-rate",
        }
    }

    /// The strategy called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<RestartStrategyName> {
        RestartStrategyName::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == name)
    }
}

/// Records that fail the job again and again (`[poison]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoisonConfig {
    /// Whether a record that keeps failing is set aside as a dead letter.
    /// When off, such a record fails the job until the restart strategy gives
    /// up.
    pub enabled: bool,
    /// How many consecutive replays a record may fail, after the failure that
    /// first hit it, before it goes to the dead letters.
    pub replays: u32,
}

impl Default for PoisonConfig {
    fn default() -> Self {
        PoisonConfig {
            enabled: true,
            replays: 3,
        }
    }
}

/// Where savepoints go (`[savepoint]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SavepointConfig {
    /// Directory for savepoints the node takes when signalled. `None` means
    /// `savepoints` inside the state directory (see
    /// [`SavepointConfig::effective_dir`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

impl SavepointConfig {
    /// The directory savepoints go to, given the directory the node actually
    /// keeps its state in (which may be a temporary one when `state.dir` is
    /// unset).
    pub fn effective_dir(&self, state_dir: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) => dir.clone(),
            None => state_dir.join("savepoints"),
        }
    }
}

/// The node's status API and status page (`[http]`): `/healthz`, `/readyz`,
/// `/api/jobs`, the savepoint trigger and the HTML page (docs/operations.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether `weir run` serves the status API at all.
    pub enabled: bool,
    /// Address and port the status API listens on (Flink's REST port by
    /// default). Port 0 lets the operating system pick a free port.
    #[serde(deserialize_with = "deserialize_socket_addr")]
    pub addr: SocketAddr,
    /// A file holding the token the mutating endpoints (savepoint, stop) require
    /// as `Authorization: Bearer <token>`; the `WEIR_HTTP_TOKEN` environment
    /// variable wins over it. A token is required when `addr` is not a loopback
    /// address.
    pub token_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8081)),
            token_file: None,
        }
    }
}

/// Reads a socket address from a string, with a message that shows the
/// rejected text and the expected form (serde's own says only "invalid socket
/// address syntax").
fn deserialize_socket_addr<'de, D: Deserializer<'de>>(de: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(de)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not a socket address; expected an IP address and port \
             such as \"127.0.0.1:9464\" or \"[::1]:9464\" (host names are not accepted)"
        ))
    })
}

impl WeirConfig {
    /// Parses and validates a configuration from TOML text.
    ///
    /// `origin` names where the text came from (a file path, or
    /// [`STRING_ORIGIN`]) and is repeated in every error. Missing sections and
    /// keys take their defaults; unknown ones are errors, so that a typo is
    /// not silently ignored.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<WeirConfig, ConfigError> {
        let config: WeirConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            origin: origin.to_owned(),
            message: diagnose::describe(text, &err),
        })?;
        config.validate_with_origin(origin)?;
        Ok(config)
    }

    /// Reads, parses and validates the config file at `path`.
    ///
    /// Errors from reading name the path and the operating system's reason;
    /// later errors use the path as their origin.
    pub fn load(path: &Path) -> Result<WeirConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        WeirConfig::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks every range and cross-field rule, reporting the first
    /// violation with origin [`STRING_ORIGIN`].
    ///
    /// Prefer [`WeirConfig::validate_with_origin`] when the origin is known.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with_origin(STRING_ORIGIN)
    }

    /// Checks every range and cross-field rule, naming `origin` in the error.
    ///
    /// The CLI calls this with [`COMMAND_LINE_ORIGIN`] after flags have
    /// replaced fields of a loaded file: the file itself was already checked
    /// by [`WeirConfig::load`], so a new failure comes from a flag.
    pub fn validate_with_origin(&self, origin: &str) -> Result<(), ConfigError> {
        validate::check(self, origin)
    }

    /// Writes the configuration as a complete, commented TOML file with every
    /// key, as printed by `weir config --print-default`.
    ///
    /// Unset optional keys (`engine.parallelism`, `state.dir`,
    /// `savepoint.dir`) appear as
    /// comments so that the text parses back to an equal value. A directory
    /// that is not valid UTF-8 cannot be written in TOML and is written
    /// lossily.
    pub fn to_toml_string(&self) -> String {
        render::render(self)
    }
}
