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

/// A node's complete configuration, one field per TOML section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
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
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: None,
            cache_entries: 1_000_000,
            sled_cache_mb: 64,
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
    /// Address and port the node serves `/metrics` on. Port 0 lets the
    /// operating system pick a free port.
    #[serde(deserialize_with = "deserialize_socket_addr")]
    pub addr: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464)),
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
    /// Unset optional keys (`engine.parallelism`, `state.dir`) appear as
    /// comments so that the text parses back to an equal value. A `state.dir`
    /// that is not valid UTF-8 cannot be written in TOML and is written
    /// lossily.
    pub fn to_toml_string(&self) -> String {
        render::render(self)
    }
}
