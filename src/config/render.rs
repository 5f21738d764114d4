//! Writes a configuration back out as a commented TOML file.
//!
//! The text is assembled by hand rather than with `toml::to_string` so that
//! each key carries a short explanation and unset optional keys can appear as
//! comments; every value still goes through toml's own formatting so quoting
//! and escaping are right.

use std::fmt::Write as _;

use super::validate::toml_string;
use super::WeirConfig;

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
        "# its default. Command-line flags of the same name (with dashes, e.g."
    )?;
    writeln!(out, "# --key-partitions) override these values.")?;
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
    writeln!(
        out,
        "# Address (IP:port) the Prometheus metrics endpoint listens on."
    )?;
    writeln!(
        out,
        "addr = {}",
        toml_string(&config.metrics.addr.to_string())
    )?;
    Ok(())
}
