//! The engine's run-time options, resolved from the configuration file and flags.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::WeirConfig;

/// Everything the node needs to know to run a job.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Worker threads (actix arbiters).
    pub workers: usize,
    /// Partition actors per stage.
    pub parallelism: u32,
    /// Key partitions `P`.
    pub key_partitions: u32,
    /// Mailbox capacity in messages (batches).
    pub mailbox_capacity: usize,
    /// Records per batch.
    pub batch_size: usize,
    /// Where the sled state database lives; `None` for a temporary one.
    pub state_dir: Option<PathBuf>,
    /// Write-back cache entries per partition actor.
    pub state_cache_entries: usize,
    /// sled page cache in bytes.
    pub sled_cache_bytes: u64,
    /// How often to print progress; `None` for never.
    pub progress: Option<Duration>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions::from_config(&WeirConfig::default())
    }
}

impl EngineOptions {
    /// The options a (validated) configuration describes.
    pub fn from_config(config: &WeirConfig) -> Self {
        EngineOptions {
            workers: config.engine.workers.max(1),
            parallelism: config.engine.effective_parallelism().max(1) as u32,
            key_partitions: config.engine.key_partitions,
            mailbox_capacity: config.engine.mailbox_capacity,
            batch_size: config.engine.batch_size,
            state_dir: config.state.dir.clone(),
            state_cache_entries: config.state.cache_entries,
            sled_cache_bytes: config.state.sled_cache_mb.saturating_mul(1024 * 1024),
            progress: config.progress.enabled.then(|| config.progress.interval()),
        }
    }

    /// Small, quiet options for tests: `parallelism` actors on as many workers, no
    /// progress output, a temporary state store.
    pub fn for_tests(parallelism: u32) -> Self {
        EngineOptions {
            workers: parallelism.max(1) as usize,
            parallelism: parallelism.max(1),
            key_partitions: 16,
            mailbox_capacity: 4,
            batch_size: 64,
            state_dir: None,
            state_cache_entries: 10_000,
            sled_cache_bytes: 8 * 1024 * 1024,
            progress: None,
        }
    }
}
