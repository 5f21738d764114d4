//! The engine's run-time options, resolved from the configuration file and flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{CheckpointConfig, WeirConfig};

use super::restart::{PoisonPolicy, RestartStrategy};

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
    /// The shared snapshot store (`state.snapshot_url`), used for checkpoints
    /// instead of `<state_dir>/snapshots` when set.
    pub snapshot_store: Option<crate::snapshot_store::SnapshotStoreSpec>,
    /// Write-back cache entries per partition actor.
    pub state_cache_entries: usize,
    /// sled page cache in bytes.
    pub sled_cache_bytes: u64,
    /// How often to print progress; `None` for never.
    pub progress: Option<Duration>,
    /// Periodic checkpoints (`[checkpoint]`).
    pub checkpoint: CheckpointOptions,
    /// What to do when the job fails (`[restart]`).
    pub restart: RestartStrategy,
    /// When a record that keeps failing the job is set aside (`[poison]`).
    pub poison: PoisonPolicy,
    /// Where savepoints taken on a signal go; `None` for `savepoints` inside the
    /// state directory (see [`EngineOptions::savepoint_dir_in`]).
    pub savepoint_dir: Option<PathBuf>,
    /// A savepoint to start the job from instead of empty state. Set from the
    /// command line (`--from-savepoint`) only; no configuration key sets it.
    pub from_savepoint: Option<PathBuf>,
    /// How often the keyed state's entries and bytes per partition actor are
    /// measured for `weir_state_keys` / `weir_state_bytes`
    /// (`metrics.state_interval_ms`); `None` for never. Only done while the
    /// Prometheus recorder is installed.
    pub state_metrics_interval: Option<Duration>,
    /// How records cross the exchanges between stages on this node: handed over
    /// as Rust values (the default), or encoded and decoded on the way as a
    /// network channel does (`Serialized`), which checks that a job can run on a
    /// cluster.
    pub exchange: crate::exchange::ExchangeMode,
}

/// Periodic checkpoints of operator state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Time between the starts of two checkpoints; `None` turns checkpointing off.
    pub interval: Option<Duration>,
    /// How long a checkpoint may take before it is abandoned.
    pub timeout: Duration,
    /// Complete checkpoints (epochs) kept; older ones are deleted.
    pub retain: usize,
    /// Incremental chunks a chain may grow to before a full, compacted checkpoint.
    pub compact_after: usize,
}

impl CheckpointOptions {
    /// The options a (validated) `[checkpoint]` section describes.
    pub fn from_config(config: &CheckpointConfig) -> Self {
        CheckpointOptions {
            interval: config.interval(),
            timeout: config.timeout(),
            retain: config.retain,
            compact_after: config.compact_after,
        }
    }

    /// Whether checkpoints are taken at all.
    pub fn enabled(&self) -> bool {
        self.interval.is_some()
    }
}

impl Default for CheckpointOptions {
    /// Checkpointing off; the other fields at their configuration defaults.
    fn default() -> Self {
        CheckpointOptions::from_config(&CheckpointConfig::default())
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions::from_config(&WeirConfig::default())
    }
}

impl EngineOptions {
    /// The options a (validated) configuration describes. `from_savepoint` is
    /// `None`: it comes from the command line, not from the configuration.
    pub fn from_config(config: &WeirConfig) -> Self {
        EngineOptions {
            workers: config.engine.workers.max(1),
            parallelism: config.engine.effective_parallelism().max(1) as u32,
            key_partitions: config.engine.key_partitions,
            mailbox_capacity: config.engine.mailbox_capacity,
            batch_size: config.engine.batch_size,
            state_dir: config.state.dir.clone(),
            snapshot_store: config.state.snapshot_store(),
            state_cache_entries: config.state.cache_entries,
            sled_cache_bytes: config.state.sled_cache_mb.saturating_mul(1024 * 1024),
            progress: config.progress.enabled.then(|| config.progress.interval()),
            checkpoint: CheckpointOptions::from_config(&config.checkpoint),
            restart: RestartStrategy::from_config(&config.restart),
            poison: PoisonPolicy::from_config(&config.poison),
            savepoint_dir: config.savepoint.dir.clone(),
            from_savepoint: None,
            state_metrics_interval: config.metrics.state_interval(),
            exchange: crate::exchange::ExchangeMode::Local,
        }
    }

    /// Small, quiet options for tests: `parallelism` actors on as many workers, no
    /// progress output, a temporary state store, no checkpoints, no restarts (a
    /// test that wants them sets `checkpoint` and `restart` itself), and the
    /// default poison policy (on, 3 replays).
    pub fn for_tests(parallelism: u32) -> Self {
        EngineOptions {
            workers: parallelism.max(1) as usize,
            parallelism: parallelism.max(1),
            key_partitions: 16,
            mailbox_capacity: 4,
            batch_size: 64,
            state_dir: None,
            snapshot_store: None,
            state_cache_entries: 10_000,
            sled_cache_bytes: 8 * 1024 * 1024,
            progress: None,
            checkpoint: CheckpointOptions {
                interval: None,
                ..CheckpointOptions::default()
            },
            restart: RestartStrategy::None,
            poison: PoisonPolicy {
                enabled: true,
                replays: 3,
            },
            savepoint_dir: None,
            from_savepoint: None,
            state_metrics_interval: None,
            exchange: crate::exchange::ExchangeMode::Local,
        }
    }

    /// The directory savepoints taken on a signal go to, given the directory the
    /// node actually keeps its state in (a temporary one when `state_dir` is
    /// `None`): `savepoint_dir` when set, otherwise `<state root>/savepoints`.
    pub fn savepoint_dir_in(&self, state_root: &Path) -> PathBuf {
        match &self.savepoint_dir {
            Some(dir) => dir.clone(),
            None => state_root.join("savepoints"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RestartStrategyName;

    #[test]
    fn defaults_follow_the_default_configuration() {
        let options = EngineOptions::default();
        assert_eq!(
            options.checkpoint,
            CheckpointOptions {
                interval: None,
                timeout: Duration::from_secs(60),
                retain: 3,
                compact_after: 8,
            }
        );
        assert!(!options.checkpoint.enabled());
        assert_eq!(
            options.restart,
            RestartStrategy::FixedDelay {
                attempts: 10,
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(
            options.poison,
            PoisonPolicy {
                enabled: true,
                replays: 3
            }
        );
        assert_eq!(options.savepoint_dir, None);
        assert_eq!(options.from_savepoint, None);
    }

    #[test]
    fn test_options_have_no_checkpoints_and_no_restarts() {
        let options = EngineOptions::for_tests(2);
        assert_eq!(options.checkpoint.interval, None);
        assert_eq!(options.checkpoint.timeout, Duration::from_secs(60));
        assert_eq!(options.restart, RestartStrategy::None);
        assert_eq!(options.poison, PoisonPolicy::default());
        assert_eq!(options.savepoint_dir, None);
        assert_eq!(options.from_savepoint, None);
    }

    #[test]
    fn every_new_section_reaches_the_options() {
        let mut config = WeirConfig::default();
        config.checkpoint.interval_ms = 500;
        config.checkpoint.timeout_ms = 2000;
        config.checkpoint.retain = 1;
        config.checkpoint.compact_after = 2;
        config.restart.strategy = RestartStrategyName::None;
        config.poison.enabled = false;
        config.poison.replays = 5;
        config.savepoint.dir = Some(PathBuf::from("/sp"));
        let options = EngineOptions::from_config(&config);
        assert_eq!(
            options.checkpoint,
            CheckpointOptions {
                interval: Some(Duration::from_millis(500)),
                timeout: Duration::from_secs(2),
                retain: 1,
                compact_after: 2,
            }
        );
        assert!(options.checkpoint.enabled());
        assert_eq!(options.restart, RestartStrategy::None);
        assert_eq!(
            options.poison,
            PoisonPolicy {
                enabled: false,
                replays: 5
            }
        );
        assert_eq!(
            options.savepoint_dir_in(Path::new("/state")),
            Path::new("/sp")
        );
        let options = EngineOptions::default();
        assert_eq!(
            options.savepoint_dir_in(Path::new("/state")),
            Path::new("/state/savepoints")
        );
    }
}
