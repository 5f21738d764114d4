//! The `weir` command line: `weir run <job>`, `weir bench <workload>`, `weir config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, LogFormat, WeirConfig, COMMAND_LINE_ORIGIN};

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
    /// Run a built-in job on this machine (one embedded node, no other service needed).
    Run(RunArgs),
    /// Run a benchmark workload of shared/bench/WORKLOADS.md, check its result, and
    /// print one JSON line last.
    Bench(BenchArgs),
    /// Print the default configuration file, or check one.
    Config(ConfigArgs),
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
    /// Which job.
    #[arg(value_enum)]
    pub job: JobName,
    /// wordcount: the text file to read (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// wordcount: where to write `word<TAB>count` lines (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
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
    /// Engine options.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The benchmark workloads.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Word count: running count per word in keyed state.
    W1,
    /// Tumbling event-time windows over out-of-order events: count and sum per key.
    W2,
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
        config.validate_with_origin(COMMAND_LINE_ORIGIN)?;
        Ok(config)
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
}
