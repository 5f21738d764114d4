//! Writes a configuration back out as a commented TOML file.
//!
//! The text is assembled by hand rather than with `toml::to_string` so that
//! each key carries a short explanation and unset optional keys can appear as
//! comments; every value still goes through toml's own formatting so quoting
//! and escaping are right.

use std::fmt::Write as _;

use super::validate::toml_string;
use super::{KafkaConfig, WeirConfig};

/// Renders `config` as a complete TOML document that parses back to an equal
/// value.
pub(super) fn render(config: &WeirConfig) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored for brevity.
    let _ = write_all(&mut out, config);
    out
}

/// Does the work of [`render`], propagating `fmt::Error` for `?`.
fn write_all(out: &mut String, config: &WeirConfig) -> std::fmt::Result {
    let engine = &config.engine;
    writeln!(
        out,
        "# weir node configuration. Every key is optional; a missing key takes"
    )?;
    writeln!(
        out,
        "# its default. Command-line flags (listed in docs/configuration.md,"
    )?;
    writeln!(
        out,
        "# e.g. --key-partitions or --restart-attempts) override these values."
    )?;
    writeln!(out)?;

    writeln!(out, "[engine]")?;
    writeln!(
        out,
        "# Worker threads, one actix arbiter each. Default: CPU cores."
    )?;
    writeln!(out, "workers = {}", engine.workers)?;
    writeln!(
        out,
        "# Partition actors per stage. Unset: same as workers (at most key_partitions)."
    )?;
    match engine.parallelism {
        Some(parallelism) => writeln!(out, "parallelism = {parallelism}")?,
        None => writeln!(out, "# parallelism = {}", engine.effective_parallelism())?,
    }
    writeln!(
        out,
        "# Key partitions the key space is cut into; fixed for a job's life. 1..=65536."
    )?;
    writeln!(out, "key_partitions = {}", engine.key_partitions)?;
    writeln!(
        out,
        "# Batches a partition actor's mailbox holds before senders wait. 1..=1000000."
    )?;
    writeln!(out, "mailbox_capacity = {}", engine.mailbox_capacity)?;
    writeln!(out, "# Records per batch message. 1..=1000000.")?;
    writeln!(out, "batch_size = {}", engine.batch_size)?;
    writeln!(out)?;

    let state = &config.state;
    writeln!(out, "[state]")?;
    writeln!(
        out,
        "# Directory of the sled state database. Unset: a temporary directory"
    )?;
    writeln!(out, "# removed when the node exits.")?;
    match &state.dir {
        Some(dir) => writeln!(out, "dir = {}", toml_string(&dir.to_string_lossy()))?,
        None => writeln!(out, "# dir = \"weir-state\"")?,
    }
    writeln!(
        out,
        "# Write-back cache entries per partition actor before flushing to sled. >= 1."
    )?;
    writeln!(out, "cache_entries = {}", state.cache_entries)?;
    writeln!(out, "# sled's page cache in MiB. 1..=65536.")?;
    writeln!(out, "sled_cache_mb = {}", state.sled_cache_mb)?;
    writeln!(
        out,
        "# Shared snapshot store: file:///dir (one node) or s3://bucket/prefix (a"
    )?;
    writeln!(
        out,
        "# cluster; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."
    )?;
    writeln!(out, "# Unset: <dir>/snapshots on local disk.")?;
    match &state.snapshot_url {
        Some(url) => writeln!(out, "snapshot_url = {}", toml_string(url))?,
        None => writeln!(out, "# snapshot_url = \"s3://weir-snapshots/prod\"")?,
    }
    writeln!(
        out,
        "# An S3-compatible endpoint instead of AWS's (s3:// only). Unset: AWS."
    )?;
    match &state.s3_endpoint {
        Some(e) => writeln!(out, "s3_endpoint = {}", toml_string(e))?,
        None => writeln!(out, "# s3_endpoint = \"http://127.0.0.1:9000\"")?,
    }
    writeln!(out, "# Whether s3_endpoint may be plain http://.")?;
    writeln!(out, "s3_allow_http = {}", state.s3_allow_http)?;
    writeln!(
        out,
        "# The S3 region (s3:// only). Unset: AWS_REGION, else us-east-1."
    )?;
    match &state.s3_region {
        Some(r) => writeln!(out, "s3_region = {}", toml_string(r))?,
        None => writeln!(out, "# s3_region = \"eu-west-1\"")?,
    }
    writeln!(out)?;

    let progress = &config.progress;
    writeln!(out, "[progress]")?;
    writeln!(out, "# Whether the node reports progress periodically.")?;
    writeln!(out, "enabled = {}", progress.enabled)?;
    writeln!(
        out,
        "# Milliseconds between progress reports. 50..=3600000."
    )?;
    writeln!(out, "interval_ms = {}", progress.interval_ms)?;
    writeln!(out)?;

    let log = &config.log;
    writeln!(out, "[log]")?;
    writeln!(out, "# \"text\" or \"json\".")?;
    writeln!(out, "format = {}", toml_string(log.format.as_str()))?;
    writeln!(
        out,
        "# tracing EnvFilter directive. A non-empty RUST_LOG overrides it."
    )?;
    writeln!(out, "filter = {}", toml_string(&log.filter))?;
    writeln!(out)?;

    writeln!(out, "[metrics]")?;
    writeln!(out, "# Whether the node serves Prometheus metrics.")?;
    writeln!(out, "enabled = {}", config.metrics.enabled)?;
    writeln!(
        out,
        "# Address (IP:port) the Prometheus metrics endpoint listens on."
    )?;
    writeln!(
        out,
        "addr = {}",
        toml_string(&config.metrics.addr.to_string())
    )?;
    writeln!(
        out,
        "# Milliseconds between two measurements of the keyed state's entries and bytes"
    )?;
    writeln!(
        out,
        "# per partition actor (a scan of the stored state). 0: off; otherwise 1000..=86400000."
    )?;
    writeln!(
        out,
        "state_interval_ms = {}",
        config.metrics.state_interval_ms
    )?;
    writeln!(out)?;

    let checkpoint = &config.checkpoint;
    writeln!(out, "[checkpoint]")?;
    writeln!(
        out,
        "# Milliseconds between checkpoints. 0: off; otherwise 10..=86400000."
    )?;
    writeln!(out, "interval_ms = {}", checkpoint.interval_ms)?;
    writeln!(
        out,
        "# Milliseconds a checkpoint may take before it is abandoned. 1..=86400000."
    )?;
    writeln!(out, "timeout_ms = {}", checkpoint.timeout_ms)?;
    writeln!(out, "# Complete checkpoints kept on disk. >= 1.")?;
    writeln!(out, "retain = {}", checkpoint.retain)?;
    writeln!(
        out,
        "# Incremental chunks in a chain before a full, compacted checkpoint. >= 1."
    )?;
    writeln!(out, "compact_after = {}", checkpoint.compact_after)?;
    writeln!(out)?;

    let restart = &config.restart;
    writeln!(out, "[restart]")?;
    writeln!(
        out,
        "# \"none\", \"fixed-delay\", \"exponential-backoff\" or \"failure-rate\"."
    )?;
    writeln!(
        out,
        "# Each strategy reads only the keys marked with its name."
    )?;
    writeln!(out, "strategy = {}", toml_string(restart.strategy.as_str()))?;
    writeln!(out, "# fixed-delay: restarts allowed in total. >= 1.")?;
    writeln!(out, "attempts = {}", restart.attempts)?;
    writeln!(
        out,
        "# fixed-delay, failure-rate: milliseconds before a restart. 0..=86400000."
    )?;
    writeln!(out, "delay_ms = {}", restart.delay_ms)?;
    writeln!(
        out,
        "# exponential-backoff: milliseconds before the first restart. 0..=86400000."
    )?;
    writeln!(out, "initial_delay_ms = {}", restart.initial_delay_ms)?;
    writeln!(
        out,
        "# exponential-backoff: longest delay in milliseconds, >= initial_delay_ms."
    )?;
    writeln!(out, "max_delay_ms = {}", restart.max_delay_ms)?;
    writeln!(
        out,
        "# exponential-backoff: factor on the delay after each failure. 1.0..=1000.0."
    )?;
    writeln!(
        out,
        "multiplier = {}",
        toml::Value::Float(restart.multiplier)
    )?;
    writeln!(
        out,
        "# exponential-backoff: a run this long (ms) before failing resets the delay."
    )?;
    writeln!(out, "reset_after_ms = {}", restart.reset_after_ms)?;
    writeln!(
        out,
        "# failure-rate: failures tolerated within failure_interval_ms. >= 1."
    )?;
    writeln!(out, "max_failures = {}", restart.max_failures)?;
    writeln!(
        out,
        "# failure-rate: the sliding window in milliseconds. 1..=86400000."
    )?;
    writeln!(out, "failure_interval_ms = {}", restart.failure_interval_ms)?;
    writeln!(out)?;

    let poison = &config.poison;
    writeln!(out, "[poison]")?;
    writeln!(
        out,
        "# Whether a record that keeps failing the job goes to the dead letters."
    )?;
    writeln!(out, "enabled = {}", poison.enabled)?;
    writeln!(
        out,
        "# Consecutive failed replays, after its first failure, before it does. >= 1."
    )?;
    writeln!(out, "replays = {}", poison.replays)?;
    writeln!(out)?;

    writeln!(out, "[savepoint]")?;
    writeln!(
        out,
        "# Directory for savepoints taken on a signal. Unset: \"savepoints\" inside"
    )?;
    writeln!(out, "# the state directory.")?;
    match &config.savepoint.dir {
        Some(dir) => writeln!(out, "dir = {}", toml_string(&dir.to_string_lossy()))?,
        None => writeln!(out, "# dir = \"weir-savepoints\"")?,
    }
    writeln!(out)?;

    writeln!(out, "[http]")?;
    writeln!(
        out,
        "# Whether the status API and page (/healthz, /readyz, /api/jobs, /) are served."
    )?;
    writeln!(out, "enabled = {}", config.http.enabled)?;
    writeln!(
        out,
        "# Address (IP:port) they listen on; port 0 picks a free port."
    )?;
    writeln!(out, "addr = {}", toml_string(&config.http.addr.to_string()))?;
    writeln!(
        out,
        "# File holding the token of the mutating endpoints (savepoint, stop), sent as"
    )?;
    writeln!(
        out,
        "# `Authorization: Bearer <token>`; WEIR_HTTP_TOKEN wins over it. Required when"
    )?;
    writeln!(out, "# addr is not a loopback address.")?;
    match &config.http.token_file {
        Some(path) => writeln!(out, "token_file = {}", toml_string(&path.to_string_lossy()))?,
        None => writeln!(out, "# token_file = \"/run/secrets/weir-http-token\"")?,
    }
    writeln!(out)?;
    write_kafka(out, &config.kafka)
}

/// The `[kafka]` section and its settings tables.
fn write_kafka(out: &mut String, kafka: &KafkaConfig) -> std::fmt::Result {
    writeln!(out, "[kafka]")?;
    writeln!(
        out,
        "# Bootstrap servers, host:port[,host:port...]. Unset: jobs that use Kafka"
    )?;
    writeln!(out, "# are told on their command line (--kafka-brokers).")?;
    match &kafka.brokers {
        Some(brokers) => writeln!(out, "brokers = {}", toml_string(brokers))?,
        None => writeln!(out, "# brokers = \"127.0.0.1:9092\"")?,
    }
    let tables = [
        (
            "settings",
            "librdkafka settings for every client, passed through unchanged (SASL, SSL,\n\
             # compression, batching, ...). Unquoted dotted names work: linger.ms = 5.",
            &kafka.settings,
            "# security.protocol = \"SASL_SSL\"\n# sasl.mechanism = \"SCRAM-SHA-512\"\n\
             # sasl.username = \"weir\"\n# sasl.password = \"...\"\n\
             # ssl.ca.location = \"/etc/ssl/certs/kafka-ca.pem\"",
        ),
        (
            "consumer",
            "librdkafka settings for consumers only; they win over [kafka.settings].",
            &kafka.consumer,
            "# fetch.min.bytes = 65536\n# fetch.wait.max.ms = 100",
        ),
        (
            "producer",
            "librdkafka settings for producers only; they win over [kafka.settings].",
            &kafka.producer,
            "# compression.type = \"lz4\"\n# linger.ms = 5\n# batch.size = 1000000",
        ),
    ];
    for (table, about, settings, example) in tables {
        writeln!(out)?;
        writeln!(out, "# {about}")?;
        writeln!(out, "[kafka.{table}]")?;
        if settings.is_empty() {
            writeln!(out, "{example}")?;
        }
        for (key, value) in settings.iter() {
            writeln!(out, "{} = {}", toml_string(key), toml_string(value))?;
        }
    }
    Ok(())
}
