//! The `weir` command line: `weir run <job>`, `weir bench <workload>`, `weir config`.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{
    parse_setting, ConfigError, LogFormat, RestartStrategyName, WeirConfig, COMMAND_LINE_ORIGIN,
};
use crate::job::EngineOptions;

/// weir: a stateful stream processor on the actor model.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a job on this machine (one embedded node, no other service needed): a
    /// built-in one or one the binary registers.
    Run(Box<RunArgs>),
    /// Run a benchmark workload of shared/bench/WORKLOADS.md, check its result, and
    /// print one JSON line last.
    Bench(Box<BenchArgs>),
    /// Print the default configuration file, or check one.
    Config(ConfigArgs),
    /// Run a node that runs the jobs submitted to it (by name, through its HTTP API
    /// or `weir job submit`) until Ctrl-C or SIGTERM, which cancel its jobs.
    Node(Box<NodeArgs>),
    /// Submit, list, cancel or savepoint the jobs of a running node.
    Job(JobArgs),
}

/// `weir node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Serve the API on this IP:port (http.addr; port 0 picks a free port, printed
    /// on stderr). A node is driven through it, so it is always served.
    #[arg(long, value_name = "IP:PORT", env = "WEIR_HTTP_ADDR", help_heading = STATUS_HEADING)]
    pub http_addr: Option<std::net::SocketAddr>,
    /// The coordinator: `embedded` (this node alone, nothing else to start) or
    /// `etcd://HOST:PORT` (a cluster of nodes sharing that etcd).
    #[arg(long, value_name = "embedded|etcd://HOST:PORT", env = "WEIR_COORDINATOR", default_value = "embedded", help_heading = CLUSTER_HEADING)]
    pub coordinator: String,
    /// This node's id in the cluster (default: the host name).
    #[arg(long, value_name = "ID", env = "WEIR_NODE_ID", help_heading = CLUSTER_HEADING)]
    pub node_id: Option<String>,
    /// The cluster's name: its keys in etcd live under it.
    #[arg(long, value_name = "NAME", default_value = "weir", help_heading = CLUSTER_HEADING)]
    pub cluster: String,
    /// The membership lease, in ms: a node silent this long leaves the cluster.
    #[arg(long, value_name = "MS", default_value_t = 3000, help_heading = CLUSTER_HEADING)]
    pub lease_ms: u64,
    /// Engine options.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The help heading of the cluster flags.
const CLUSTER_HEADING: &str = "Cluster";

impl NodeArgs {
    /// The node's configuration: the file and engine flags, then `--http-addr`.
    pub fn resolve(&self) -> Result<WeirConfig, ConfigError> {
        let mut config = self.engine.resolve()?;
        if let Some(addr) = self.http_addr {
            config.http.addr = addr;
        }
        config.http.enabled = true;
        Ok(config)
    }
}

/// `weir job`.
#[derive(Args, Debug)]
pub struct JobArgs {
    /// The node's API (any node of the cluster).
    #[arg(
        long,
        value_name = "URL",
        env = "WEIR_NODE",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub node: String,
    /// A file holding the API token (WEIR_HTTP_TOKEN wins over it).
    #[arg(long, value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: JobCommand,
}

/// The `weir job` subcommands.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Start a job by the name of its definition, with KEY=VALUE parameters.
    Submit {
        /// The definition (`weir job definitions` lists them).
        definition: String,
        /// A parameter, KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// The node's jobs and their states.
    List,
    /// The job definitions the node can run.
    Definitions,
    /// Cancel a running job (its snapshots stay).
    Cancel {
        /// The job.
        job: String,
    },
    /// Take a savepoint of a running job.
    Savepoint {
        /// The job.
        job: String,
        /// Stop the job once the savepoint is taken.
        #[arg(long)]
        stop: bool,
    },
}

/// The built-in jobs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobName {
    /// Endless sensor readings through keyed state (a running summary per sensor),
    /// until Ctrl-C or --duration.
    Demo,
    /// Count the words of a text file (--input) or of standard input.
    Wordcount,
    /// The W1 benchmark workload (word count over generated lines), with its check.
    W1,
    /// The W2 benchmark workload (event-time tumbling windows), with its check.
    W2,
}

/// `weir run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Which job: a built-in one (demo, wordcount, w1, w2) or one the binary
    /// registers (`weir::app::JobRegistry`).
    pub job: String,
    /// A parameter of a registered job, KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// wordcount: the text file to read (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// wordcount: read the lines from this Kafka topic (the values of its records, as
    /// UTF-8 text) on the --kafka-brokers cluster (or kafka.brokers of the config
    /// file) instead of a file, with the `[kafka]` consumer settings; the topic
    /// is read to the end it had when the job started. Needs --output-dir.
    #[arg(
        long,
        value_name = "TOPIC",
        conflicts_with = "input",
        requires = "output_dir"
    )]
    pub kafka_topic: Option<String>,
    /// wordcount: the consumer group to which completed epochs' offsets are committed
    /// (with --kafka-topic; default: none, nothing committed).
    #[arg(long, value_name = "GROUP", requires = "kafka_topic")]
    pub kafka_group: Option<String>,
    /// wordcount: produce undecodable records to this Kafka topic (on the
    /// --kafka-brokers cluster, or kafka.brokers; docs/kafka.md "Dead-letter topic")
    /// instead of the log or --dead-letters.
    #[arg(long, value_name = "TOPIC", conflicts_with = "dead_letters")]
    pub kafka_dead_letter_topic: Option<String>,
    /// wordcount: where to write `word<TAB>count` lines (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// wordcount: write each word's running count exactly once into part files in
    /// this directory (committed per epoch; resumes after a crash with --state-dir).
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub output_dir: Option<PathBuf>,
    /// demo: stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// demo: stop after this many readings.
    #[arg(long)]
    pub limit: Option<u64>,
    /// w1, w2: number of records.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: u64,
    /// Append undecodable records (JSON lines, with the reason) to this file instead of
    /// the log.
    #[arg(long)]
    pub dead_letters: Option<PathBuf>,
    /// Start from the state in this savepoint instead of empty state. There is no
    /// configuration key for it: it names one run's starting point.
    #[arg(long, value_name = "PATH", help_heading = CHECKPOINT_HEADING)]
    pub from_savepoint: Option<PathBuf>,
    /// Serve the status API and page on this IP:port (http.addr; port 0 picks a
    /// free port, printed on stderr).
    #[arg(long, value_name = "IP:PORT", env = "WEIR_HTTP_ADDR", help_heading = STATUS_HEADING)]
    pub http_addr: Option<std::net::SocketAddr>,
    /// Serve no status API or page (http.enabled = false).
    #[arg(long, help_heading = STATUS_HEADING)]
    pub no_http: bool,
    /// Engine options.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The help heading of the status API flags.
const STATUS_HEADING: &str = "Status API";

impl RunArgs {
    /// The configuration of this run: the file and engine flags
    /// ([`EngineArgs::resolve`]), then the status API flags.
    pub fn resolve(&self) -> Result<WeirConfig, ConfigError> {
        let mut config = self.engine.resolve()?;
        if let Some(addr) = self.http_addr {
            config.http.addr = addr;
        }
        if self.no_http {
            config.http.enabled = false;
        }
        Ok(config)
    }

    /// The engine options for this run: `config` (from [`EngineArgs::resolve`])
    /// plus the settings that exist only on the command line (`--from-savepoint`).
    pub fn engine_options(&self, config: &WeirConfig) -> EngineOptions {
        EngineOptions {
            from_savepoint: self.from_savepoint.clone(),
            ..EngineOptions::from_config(config)
        }
    }
}

/// The benchmark workloads.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Word count: running count per word in keyed state.
    W1,
    /// Tumbling event-time windows over out-of-order events: count and sum per key.
    W2,
    /// W1 read from a Kafka topic (on --kafka-brokers), after the broker's raw
    /// produce and consume rates of the same data (three JSON lines).
    #[value(name = "kafka-w1")]
    KafkaW1,
}

/// The Kafka sink's delivery guarantee, as a flag.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchDelivery {
    /// An idempotent producer flushed at every epoch barrier.
    AtLeastOnce,
    /// A Kafka transaction per epoch and sink partition.
    ExactlyOnce,
}

impl From<BenchDelivery> for crate::connector::kafka::Delivery {
    fn from(delivery: BenchDelivery) -> Self {
        match delivery {
            BenchDelivery::AtLeastOnce => Self::AtLeastOnce,
            BenchDelivery::ExactlyOnce => Self::ExactlyOnce,
        }
    }
}

/// `weir bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Number of records (W1: words).
    #[arg(long, default_value_t = 20_000_000)]
    pub n: u64,
    /// kafka-w1: the input topic to create and fill (it must not exist).
    #[arg(long, value_name = "TOPIC", default_value = "weir-bench-w1")]
    pub kafka_topic: String,
    /// kafka-w1: the input topic's number of partitions (and the output topic's).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub kafka_partitions: i32,
    /// kafka-w1: the output topic the counts go to (created; it must not exist).
    #[arg(long, value_name = "TOPIC", default_value = "weir-bench-w1-counts")]
    pub kafka_output_topic: String,
    /// kafka-w1: the Kafka sink's delivery guarantee. Exactly-once commits a
    /// transaction per sink partition at each completed checkpoint
    /// (--checkpoint-interval-ms); without checkpoints, the whole output is one
    /// transaction per sink partition, committed at the end of input.
    #[arg(long, value_enum, default_value_t = BenchDelivery::AtLeastOnce)]
    pub kafka_delivery: BenchDelivery,
    /// W2: align the sources' watermarks, letting none run more than this many
    /// milliseconds of event time ahead of the slowest (default: no alignment).
    #[arg(long, value_name = "MS")]
    pub watermark_alignment_ms: Option<u64>,
    /// Engine options.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `weir config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Print a complete configuration file with every key at its default.
    #[arg(long, conflicts_with = "check")]
    pub print_default: bool,
    /// Check a configuration file and report the first problem.
    #[arg(long)]
    pub check: Option<PathBuf>,
}

/// The help heading of the checkpoint, restart, poison and savepoint flags.
const CHECKPOINT_HEADING: &str = "Checkpoints and recovery";
/// The help heading of the Kafka flags.
const KAFKA_HEADING: &str = "Kafka";

/// Engine options: each overrides the same key of the configuration file.
#[derive(Args, Debug, Default, Clone)]
pub struct EngineArgs {
    /// A TOML configuration file (see docs/configuration.md); flags override it.
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Worker threads (engine.workers; default: number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Partition actors per stage (engine.parallelism; default: workers).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Key partitions P, fixed for a job's life (engine.key_partitions).
    #[arg(long)]
    pub key_partitions: Option<u32>,
    /// Batches a mailbox holds before senders wait (engine.mailbox_capacity).
    #[arg(long)]
    pub mailbox_capacity: Option<usize>,
    /// Records per batch (engine.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Where the node keeps its state (state.dir; default: a temporary directory).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Write-back cache entries per partition actor (state.cache_entries).
    #[arg(long)]
    pub state_cache_entries: Option<usize>,
    /// sled's page cache in MiB (state.sled_cache_mb).
    #[arg(long)]
    pub sled_cache_mb: Option<u64>,
    /// Progress line interval in ms (progress.interval_ms).
    #[arg(long)]
    pub progress_interval_ms: Option<u64>,
    /// No progress lines (progress.enabled = false).
    #[arg(long)]
    pub no_progress: bool,
    /// Log format (log.format).
    #[arg(long, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Log filter, an EnvFilter directive (log.filter; RUST_LOG wins).
    #[arg(long)]
    pub log_filter: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (metrics.addr; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", env = "WEIR_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve no metrics (metrics.enabled = false); wins over --metrics-addr and
    /// WEIR_METRICS_ADDR.
    #[arg(long)]
    pub no_metrics: bool,
    /// Milliseconds between checkpoints, 0 for none (checkpoint.interval_ms).
    #[arg(long, value_name = "MS", help_heading = CHECKPOINT_HEADING)]
    pub checkpoint_interval_ms: Option<u64>,
    /// Milliseconds a checkpoint may take before it is abandoned (checkpoint.timeout_ms).
    #[arg(long, value_name = "MS", help_heading = CHECKPOINT_HEADING)]
    pub checkpoint_timeout_ms: Option<u64>,
    /// Complete checkpoints kept on disk (checkpoint.retain).
    #[arg(long, value_name = "N", help_heading = CHECKPOINT_HEADING)]
    pub checkpoint_retain: Option<usize>,
    /// Incremental chunks before a full, compacted checkpoint (checkpoint.compact_after).
    #[arg(long, value_name = "N", help_heading = CHECKPOINT_HEADING)]
    pub checkpoint_compact_after: Option<usize>,
    /// What to do when the job fails (restart.strategy).
    #[arg(
        long,
        value_name = "STRATEGY",
        help_heading = CHECKPOINT_HEADING,
        value_parser = PossibleValuesParser::new(RestartStrategyName::ALL.map(RestartStrategyName::as_str))
            .map(|name| RestartStrategyName::from_name(&name).unwrap_or_default()),
    )]
    pub restart_strategy: Option<RestartStrategyName>,
    /// fixed-delay: restarts allowed in total (restart.attempts).
    #[arg(long, value_name = "N", help_heading = CHECKPOINT_HEADING)]
    pub restart_attempts: Option<u32>,
    /// fixed-delay, failure-rate: milliseconds before a restart (restart.delay_ms).
    #[arg(long, value_name = "MS", help_heading = CHECKPOINT_HEADING)]
    pub restart_delay_ms: Option<u64>,
    /// exponential-backoff: milliseconds before the first restart (restart.initial_delay_ms).
    #[arg(long, value_name = "MS", help_heading = CHECKPOINT_HEADING)]
    pub restart_initial_delay_ms: Option<u64>,
    /// exponential-backoff: the longest delay in milliseconds (restart.max_delay_ms).
    #[arg(long, value_name = "MS", help_heading = CHECKPOINT_HEADING)]
    pub restart_max_delay_ms: Option<u64>,
    /// exponential-backoff: factor on the delay after each failure (restart.multiplier).
    #[arg(long, value_name = "FACTOR", help_heading = CHECKPOINT_HEADING)]
    pub restart_multiplier: Option<f64>,
    /// exponential-backoff: a run this long resets the delay (restart.reset_after_ms).
    #[arg(long, value_name = "MS", help_heading = CHECKPOINT_HEADING)]
    pub restart_reset_after_ms: Option<u64>,
    /// failure-rate: failures tolerated within the interval (restart.max_failures).
    #[arg(long, value_name = "N", help_heading = CHECKPOINT_HEADING)]
    pub restart_max_failures: Option<u32>,
    /// failure-rate: the window failures are counted in, in ms (restart.failure_interval_ms).
    #[arg(long, value_name = "MS", help_heading = CHECKPOINT_HEADING)]
    pub restart_failure_interval_ms: Option<u64>,
    /// Never set records that keep failing aside (poison.enabled = false).
    #[arg(long, help_heading = CHECKPOINT_HEADING)]
    pub no_poison: bool,
    /// Failed replays, after its first failure, before a record is set aside (poison.replays).
    #[arg(long, value_name = "N", help_heading = CHECKPOINT_HEADING)]
    pub poison_replays: Option<u32>,
    /// Where savepoints taken on a signal go (savepoint.dir; default: `<state dir>/savepoints`).
    #[arg(long, value_name = "PATH", help_heading = CHECKPOINT_HEADING)]
    pub savepoint_dir: Option<PathBuf>,
    /// Kafka bootstrap servers, host:port[,host:port...] (kafka.brokers): the
    /// cluster of `run wordcount --kafka-topic`, its dead-letter topic and
    /// `bench kafka-w1`.
    // `--kafka-bootstrap`, the flag's older name, is still accepted (hidden).
    #[arg(long, alias = "kafka-bootstrap", value_name = "HOST:PORT", help_heading = KAFKA_HEADING)]
    pub kafka_brokers: Option<String>,
    /// A librdkafka setting for every Kafka client, e.g. `--kafka-set
    /// compression.type=lz4`; repeatable. Wins over the same key in any
    /// `[kafka.*]` table of the file.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_setting, help_heading = KAFKA_HEADING)]
    pub kafka_set: Vec<(String, String)>,
    /// A librdkafka setting for Kafka consumers only (kafka.consumer); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_setting, help_heading = KAFKA_HEADING)]
    pub kafka_consumer_set: Vec<(String, String)>,
    /// A librdkafka setting for Kafka producers only (kafka.producer); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_setting, help_heading = KAFKA_HEADING)]
    pub kafka_producer_set: Vec<(String, String)>,
}

impl EngineArgs {
    /// The configuration file (or the defaults) with these flags applied, validated.
    pub fn resolve(&self) -> Result<WeirConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => WeirConfig::load(path)?,
            None => WeirConfig::default(),
        };
        let e = &mut config.engine;
        if let Some(v) = self.workers {
            e.workers = v;
        }
        if let Some(v) = self.parallelism {
            e.parallelism = Some(v);
        }
        if let Some(v) = self.key_partitions {
            e.key_partitions = v;
        }
        if let Some(v) = self.mailbox_capacity {
            e.mailbox_capacity = v;
        }
        if let Some(v) = self.batch_size {
            e.batch_size = v;
        }
        if let Some(v) = &self.state_dir {
            config.state.dir = Some(v.clone());
        }
        if let Some(v) = self.state_cache_entries {
            config.state.cache_entries = v;
        }
        if let Some(v) = self.sled_cache_mb {
            config.state.sled_cache_mb = v;
        }
        if let Some(v) = self.progress_interval_ms {
            config.progress.interval_ms = v;
        }
        if self.no_progress {
            config.progress.enabled = false;
        }
        if let Some(v) = &self.log_format {
            config.log.format = if v == "json" {
                LogFormat::Json
            } else {
                LogFormat::Text
            };
        }
        if let Some(v) = &self.log_filter {
            config.log.filter = v.clone();
        }
        if let Some(v) = self.metrics_addr {
            config.metrics.addr = v;
            config.metrics.enabled = true;
        }
        if self.no_metrics {
            config.metrics.enabled = false;
        }
        self.apply_recovery(&mut config);
        self.apply_kafka(&mut config);
        config.validate_with_origin(COMMAND_LINE_ORIGIN)?;
        Ok(config)
    }

    /// Applies the Kafka flags: `--kafka-set` wins over the file's tables, and the
    /// consumer- and producer-only flags over `--kafka-set`.
    fn apply_kafka(&self, config: &mut WeirConfig) {
        let k = &mut config.kafka;
        if let Some(v) = &self.kafka_brokers {
            k.brokers = Some(v.clone());
        }
        for (key, value) in &self.kafka_set {
            k.set_everywhere(key, value);
        }
        for (key, value) in &self.kafka_consumer_set {
            k.consumer.0.insert(key.clone(), value.clone());
        }
        for (key, value) in &self.kafka_producer_set {
            k.producer.0.insert(key.clone(), value.clone());
        }
    }

    /// Applies the checkpoint, restart, poison and savepoint flags.
    fn apply_recovery(&self, config: &mut WeirConfig) {
        let c = &mut config.checkpoint;
        if let Some(v) = self.checkpoint_interval_ms {
            c.interval_ms = v;
        }
        if let Some(v) = self.checkpoint_timeout_ms {
            c.timeout_ms = v;
        }
        if let Some(v) = self.checkpoint_retain {
            c.retain = v;
        }
        if let Some(v) = self.checkpoint_compact_after {
            c.compact_after = v;
        }
        let r = &mut config.restart;
        if let Some(v) = self.restart_strategy {
            r.strategy = v;
        }
        if let Some(v) = self.restart_attempts {
            r.attempts = v;
        }
        if let Some(v) = self.restart_delay_ms {
            r.delay_ms = v;
        }
        if let Some(v) = self.restart_initial_delay_ms {
            r.initial_delay_ms = v;
        }
        if let Some(v) = self.restart_max_delay_ms {
            r.max_delay_ms = v;
        }
        if let Some(v) = self.restart_multiplier {
            r.multiplier = v;
        }
        if let Some(v) = self.restart_reset_after_ms {
            r.reset_after_ms = v;
        }
        if let Some(v) = self.restart_max_failures {
            r.max_failures = v;
        }
        if let Some(v) = self.restart_failure_interval_ms {
            r.failure_interval_ms = v;
        }
        if self.no_poison {
            config.poison.enabled = false;
        }
        if let Some(v) = self.poison_replays {
            config.poison.replays = v;
        }
        if let Some(v) = &self.savepoint_dir {
            config.savepoint.dir = Some(v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[engine]\nworkers = 3\nbatch_size = 10\n").unwrap();
        let args = EngineArgs {
            config: Some(path),
            batch_size: Some(99),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!((c.engine.workers, c.engine.batch_size), (3, 99));

        let bad = EngineArgs {
            key_partitions: Some(0),
            ..Default::default()
        };
        let err = bad.resolve().unwrap_err().to_string();
        assert!(
            err.contains("engine.key_partitions") && err.contains("command line"),
            "{err}"
        );
    }

    #[test]
    fn kafka_flags_override_the_file_in_order_and_bad_ones_name_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[kafka]\nbrokers = \"file:9092\"\n\
             [kafka.settings]\nclient.id = \"file\"\nsocket.timeout.ms = 2000\n\
             [kafka.consumer]\nclient.id = \"file-consumer\"\n\
             [kafka.producer]\nlinger.ms = 7\n",
        )
        .unwrap();
        let path = path.to_string_lossy().into_owned();
        let run = run_args(&[
            "weir",
            "run",
            "demo",
            "--config",
            &path,
            "--kafka-brokers",
            "flag:9093",
            "--kafka-set",
            "client.id=flag",
            "--kafka-set",
            "compression.type=lz4",
            "--kafka-producer-set",
            "linger.ms=1",
            "--kafka-consumer-set",
            "fetch.min.bytes=10",
        ]);
        let c = run.engine.resolve().unwrap();
        assert_eq!(c.kafka.brokers.as_deref(), Some("flag:9093"));
        let consumer = c.kafka.consumer_settings();
        assert_eq!(
            consumer["client.id"], "flag",
            "--kafka-set wins over [kafka.consumer]"
        );
        assert_eq!(consumer["socket.timeout.ms"], "2000", "kept from the file");
        assert_eq!(consumer["fetch.min.bytes"], "10");
        assert_eq!(consumer["compression.type"], "lz4");
        let producer = c.kafka.producer_settings();
        assert_eq!(producer["linger.ms"], "1");
        assert_eq!(producer["client.id"], "flag");
        assert!(!producer.contains_key("fetch.min.bytes"));

        let err = run_args(&["weir", "run", "demo", "--kafka-set", "linger.mss=1"])
            .engine
            .resolve()
            .unwrap_err();
        assert_eq!(err.key(), Some("kafka.settings.\"linger.mss\""));
        assert!(err.to_string().contains("command line"), "{err}");
        let err = run_args(&["weir", "run", "demo", "--kafka-brokers", "nohost"])
            .engine
            .resolve()
            .unwrap_err();
        assert_eq!(err.key(), Some("kafka.brokers"));
        assert!(
            Cli::try_parse_from(["weir", "run", "demo", "--kafka-set", "no-equals"]).is_err(),
            "a setting without = is refused by the parser"
        );
    }

    #[test]
    fn kafka_bootstrap_is_a_hidden_older_name_of_kafka_brokers() {
        for flag in ["--kafka-brokers", "--kafka-bootstrap"] {
            let run = run_args(&[
                "weir",
                "run",
                "wordcount",
                flag,
                "b:9092",
                "--kafka-topic",
                "t",
                "--output-dir",
                "out",
            ]);
            let config = run.engine.resolve().unwrap();
            assert_eq!(config.kafka.require_brokers(), Ok("b:9092"), "{flag}");
            let bench = match parse(&["weir", "bench", "kafka-w1", flag, "c:9092"]).command {
                Command::Bench(bench) => *bench,
                other => panic!("expected bench, got {other:?}"),
            };
            let config = bench.engine.resolve().unwrap();
            assert_eq!(config.kafka.brokers.as_deref(), Some("c:9092"), "{flag}");
        }
        assert!(
            Cli::try_parse_from([
                "weir",
                "run",
                "wordcount",
                "--kafka-brokers",
                "a:1",
                "--kafka-bootstrap",
                "b:2"
            ])
            .is_err(),
            "one flag, given once"
        );
        let mut command = <Cli as clap::CommandFactory>::command();
        let run = command.find_subcommand_mut("run").unwrap();
        let help = run.render_long_help().to_string();
        assert!(help.contains("--kafka-brokers"), "{help}");
        assert!(
            !help.contains("--kafka-bootstrap"),
            "the old name is hidden"
        );
    }

    /// Parses a full command line, panicking with clap's message on failure.
    fn parse(args: &[&str]) -> Cli {
        match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(err) => panic!("{args:?} should parse: {err}"),
        }
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).command {
            Command::Run(run) => *run,
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn run_takes_every_checkpoint_and_recovery_flag() {
        let run = run_args(&[
            "weir",
            "run",
            "demo",
            "--checkpoint-interval-ms",
            "250",
            "--checkpoint-timeout-ms",
            "5000",
            "--checkpoint-retain",
            "2",
            "--checkpoint-compact-after",
            "4",
            "--restart-strategy",
            "exponential-backoff",
            "--restart-attempts",
            "5",
            "--restart-delay-ms",
            "20",
            "--restart-initial-delay-ms",
            "10",
            "--restart-max-delay-ms",
            "900",
            "--restart-multiplier",
            "1.5",
            "--restart-reset-after-ms",
            "7000",
            "--restart-max-failures",
            "4",
            "--restart-failure-interval-ms",
            "8000",
            "--no-poison",
            "--poison-replays",
            "6",
            "--savepoint-dir",
            "/sp",
            "--from-savepoint",
            "/sp/savepoint-1",
        ]);
        let c = run.engine.resolve().unwrap();
        assert_eq!(
            (
                c.checkpoint.interval_ms,
                c.checkpoint.timeout_ms,
                c.checkpoint.retain,
                c.checkpoint.compact_after
            ),
            (250, 5000, 2, 4)
        );
        let r = &c.restart;
        assert_eq!(r.strategy, RestartStrategyName::ExponentialBackoff);
        assert_eq!((r.attempts, r.delay_ms), (5, 20));
        assert_eq!((r.initial_delay_ms, r.max_delay_ms), (10, 900));
        assert_eq!((r.multiplier, r.reset_after_ms), (1.5, 7000));
        assert_eq!((r.max_failures, r.failure_interval_ms), (4, 8000));
        assert!(!c.poison.enabled);
        assert_eq!(c.poison.replays, 6);
        assert_eq!(c.savepoint.dir, Some(PathBuf::from("/sp")));

        let options = run.engine_options(&c);
        assert_eq!(
            options.from_savepoint,
            Some(PathBuf::from("/sp/savepoint-1"))
        );
        assert_eq!(options.savepoint_dir, Some(PathBuf::from("/sp")));
        assert_eq!(
            options.checkpoint.interval,
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            options.restart,
            crate::job::RestartStrategy::ExponentialBackoff {
                initial: std::time::Duration::from_millis(10),
                max: std::time::Duration::from_millis(900),
                multiplier: 1.5,
                reset_after: std::time::Duration::from_secs(7),
            }
        );
    }

    #[test]
    fn without_flags_the_new_sections_keep_their_defaults() {
        let run = run_args(&["weir", "run", "wordcount"]);
        assert_eq!(run.from_savepoint, None);
        let c = run.engine.resolve().unwrap();
        let defaults = WeirConfig::default();
        assert_eq!(c.checkpoint, defaults.checkpoint);
        assert_eq!(c.restart, defaults.restart);
        assert_eq!(c.poison, defaults.poison);
        assert_eq!(c.savepoint, defaults.savepoint);
        assert_eq!(run.engine_options(&c).from_savepoint, None);
    }

    #[test]
    fn every_restart_strategy_name_parses_and_others_do_not() {
        for strategy in RestartStrategyName::ALL {
            let run = run_args(&[
                "weir",
                "run",
                "demo",
                "--restart-strategy",
                strategy.as_str(),
            ]);
            assert_eq!(run.engine.restart_strategy, Some(strategy));
        }
        let err = Cli::try_parse_from(["weir", "run", "demo", "--restart-strategy", "always"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fixed-delay") && err.contains("failure-rate"),
            "{err}"
        );
    }

    #[test]
    fn bench_takes_checkpoint_interval_and_state_dir_but_not_a_savepoint_to_start_from() {
        let cli = parse(&[
            "weir",
            "bench",
            "w2",
            "--checkpoint-interval-ms",
            "100",
            "--state-dir",
            "/tmp/weir-bench",
        ]);
        let Command::Bench(bench) = cli.command else {
            panic!("expected bench");
        };
        assert_eq!(bench.workload, Workload::W2);
        let c = bench.engine.resolve().unwrap();
        assert_eq!(c.checkpoint.interval_ms, 100);
        assert_eq!(c.state.dir, Some(PathBuf::from("/tmp/weir-bench")));
        let options = EngineOptions::from_config(&c);
        assert_eq!(
            options.checkpoint.interval,
            Some(std::time::Duration::from_millis(100))
        );
        assert_eq!(options.state_dir, Some(PathBuf::from("/tmp/weir-bench")));

        assert!(Cli::try_parse_from(["weir", "bench", "w1", "--from-savepoint", "x"]).is_err());
    }

    #[test]
    fn recovery_flags_override_the_file_and_bad_ones_name_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[checkpoint]\ninterval_ms = 1000\nretain = 5\n\
             [restart]\nstrategy = \"failure-rate\"\nmax_failures = 2\n",
        )
        .unwrap();
        let config = Some(path);
        let args = EngineArgs {
            config: config.clone(),
            checkpoint_interval_ms: Some(0),
            restart_strategy: Some(RestartStrategyName::None),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.checkpoint.interval_ms, 0);
        assert_eq!(c.checkpoint.retain, 5, "kept from the file");
        assert_eq!(c.restart.strategy, RestartStrategyName::None);
        assert_eq!(c.restart.max_failures, 2, "kept from the file");

        let cases: Vec<(EngineArgs, &str)> = vec![
            (
                EngineArgs {
                    checkpoint_interval_ms: Some(5),
                    ..Default::default()
                },
                "checkpoint.interval_ms",
            ),
            (
                EngineArgs {
                    checkpoint_timeout_ms: Some(0),
                    ..Default::default()
                },
                "checkpoint.timeout_ms",
            ),
            (
                EngineArgs {
                    checkpoint_retain: Some(0),
                    ..Default::default()
                },
                "checkpoint.retain",
            ),
            (
                EngineArgs {
                    restart_attempts: Some(0),
                    ..Default::default()
                },
                "restart.attempts",
            ),
            (
                EngineArgs {
                    restart_multiplier: Some(f64::NAN),
                    ..Default::default()
                },
                "restart.multiplier",
            ),
            (
                EngineArgs {
                    poison_replays: Some(0),
                    ..Default::default()
                },
                "poison.replays",
            ),
            (
                // The file's failure-rate window cannot hold restarts this far apart.
                EngineArgs {
                    config: config.clone(),
                    restart_delay_ms: Some(60_000),
                    ..Default::default()
                },
                "restart.delay_ms",
            ),
            (
                EngineArgs {
                    restart_strategy: Some(RestartStrategyName::ExponentialBackoff),
                    restart_initial_delay_ms: Some(500),
                    restart_max_delay_ms: Some(400),
                    ..Default::default()
                },
                "restart.max_delay_ms",
            ),
        ];
        for (args, key) in cases {
            let err = args.resolve().unwrap_err();
            assert_eq!(err.key(), Some(key), "{err}");
            let message = err.to_string();
            assert!(message.starts_with("command line: "), "{message}");
        }
    }
}
