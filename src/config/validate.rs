//! Range and cross-field rules for a parsed configuration.

use std::fmt::Display;
use std::ops::RangeInclusive;

use super::{
    ConfigError, RestartStrategyName, WeirConfig, BATCH_SIZE_RANGE, CHECKPOINT_INTERVAL_MS_RANGE,
    CHECKPOINT_TIMEOUT_MS_RANGE, KEY_PARTITIONS_RANGE, MAILBOX_CAPACITY_RANGE,
    PROGRESS_INTERVAL_MS_RANGE, RESTART_DELAY_MS_RANGE, RESTART_MULTIPLIER_RANGE,
    RESTART_WINDOW_MS_RANGE, SLED_CACHE_MB_RANGE, STATE_METRICS_INTERVAL_MS_RANGE,
};

/// Checks every rule in file order and reports the first one broken.
pub(super) fn check(config: &WeirConfig, origin: &str) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: String, reason: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        key: key.to_owned(),
        value,
        reason,
    };

    let engine = &config.engine;
    if engine.workers == 0 {
        return Err(invalid(
            "engine.workers",
            engine.workers.to_string(),
            "must be at least 1".to_owned(),
        ));
    }
    if let Some(parallelism) = engine.parallelism {
        if parallelism == 0 {
            return Err(invalid(
                "engine.parallelism",
                parallelism.to_string(),
                "must be at least 1".to_owned(),
            ));
        }
    }
    check_range(
        origin,
        "engine.key_partitions",
        engine.key_partitions,
        &KEY_PARTITIONS_RANGE,
    )?;
    if let Some(parallelism) = engine.parallelism {
        let partitions = usize::try_from(engine.key_partitions).unwrap_or(usize::MAX);
        if parallelism > partitions {
            return Err(invalid(
                "engine.parallelism",
                parallelism.to_string(),
                format!(
                    "must not exceed engine.key_partitions ({partitions}), because every \
                     partition actor needs at least one key partition to own"
                ),
            ));
        }
    }
    check_range(
        origin,
        "engine.mailbox_capacity",
        engine.mailbox_capacity,
        &MAILBOX_CAPACITY_RANGE,
    )?;
    check_range(
        origin,
        "engine.batch_size",
        engine.batch_size,
        &BATCH_SIZE_RANGE,
    )?;

    let state = &config.state;
    if let Some(dir) = &state.dir {
        if dir.as_os_str().is_empty() {
            return Err(invalid(
                "state.dir",
                "\"\"".to_owned(),
                "must not be empty; leave the key out to use a temporary directory".to_owned(),
            ));
        }
    }
    if state.cache_entries == 0 {
        return Err(invalid(
            "state.cache_entries",
            state.cache_entries.to_string(),
            "must be at least 1".to_owned(),
        ));
    }
    check_range(
        origin,
        "state.sled_cache_mb",
        state.sled_cache_mb,
        &SLED_CACHE_MB_RANGE,
    )?;
    validate_snapshot_store(state, &invalid)?;

    check_range(
        origin,
        "progress.interval_ms",
        config.progress.interval_ms,
        &PROGRESS_INTERVAL_MS_RANGE,
    )?;

    if config.log.filter.trim().is_empty() {
        return Err(invalid(
            "log.filter",
            toml_string(&config.log.filter),
            "must not be empty; use e.g. \"info\" or \"weir=debug,warn\"".to_owned(),
        ));
    }

    let state_interval_ms = config.metrics.state_interval_ms;
    if state_interval_ms != 0 && !STATE_METRICS_INTERVAL_MS_RANGE.contains(&state_interval_ms) {
        return Err(invalid(
            "metrics.state_interval_ms",
            state_interval_ms.to_string(),
            format!(
                "must be 0 (state measurement off) or between {} and {}; each measurement \
                 scans all of the job's stored state",
                STATE_METRICS_INTERVAL_MS_RANGE.start(),
                STATE_METRICS_INTERVAL_MS_RANGE.end()
            ),
        ));
    }

    check_checkpoint(config, origin)?;
    check_restart(config, origin)?;

    if config.poison.replays == 0 {
        return Err(invalid(
            "poison.replays",
            "0".to_owned(),
            "must be at least 1; set poison.enabled = false to never set records aside".to_owned(),
        ));
    }

    if let Err((key, value, reason)) = super::kafka::check(&config.kafka) {
        return Err(invalid(&key, value, reason));
    }

    if let Some(dir) = &config.savepoint.dir {
        if dir.as_os_str().is_empty() {
            return Err(invalid(
                "savepoint.dir",
                "\"\"".to_owned(),
                "must not be empty; leave the key out to use \"savepoints\" inside the state \
                 directory"
                    .to_owned(),
            ));
        }
    }
    Ok(())
}

/// The rules of `[checkpoint]`.
fn check_checkpoint(config: &WeirConfig, origin: &str) -> Result<(), ConfigError> {
    let checkpoint = &config.checkpoint;
    if checkpoint.interval_ms != 0
        && !CHECKPOINT_INTERVAL_MS_RANGE.contains(&checkpoint.interval_ms)
    {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: "checkpoint.interval_ms".to_owned(),
            value: checkpoint.interval_ms.to_string(),
            reason: format!(
                "must be 0 (checkpointing off) or between {} and {}",
                CHECKPOINT_INTERVAL_MS_RANGE.start(),
                CHECKPOINT_INTERVAL_MS_RANGE.end()
            ),
        });
    }
    check_range(
        origin,
        "checkpoint.timeout_ms",
        checkpoint.timeout_ms,
        &CHECKPOINT_TIMEOUT_MS_RANGE,
    )?;
    check_at_least_one(origin, "checkpoint.retain", checkpoint.retain)?;
    check_at_least_one(origin, "checkpoint.compact_after", checkpoint.compact_after)?;
    Ok(())
}

/// The rules of `[restart]`.
///
/// Each key must make sense on its own whatever the strategy (like
/// `progress.interval_ms`, which is checked even when reports are off), but
/// rules that relate two keys apply only when the chosen strategy reads both.
fn check_restart(config: &WeirConfig, origin: &str) -> Result<(), ConfigError> {
    let restart = &config.restart;
    if restart.attempts == 0 {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: "restart.attempts".to_owned(),
            value: "0".to_owned(),
            reason: "must be at least 1; set restart.strategy = \"none\" to never restart"
                .to_owned(),
        });
    }
    check_range(
        origin,
        "restart.delay_ms",
        restart.delay_ms,
        &RESTART_DELAY_MS_RANGE,
    )?;
    check_range(
        origin,
        "restart.initial_delay_ms",
        restart.initial_delay_ms,
        &RESTART_DELAY_MS_RANGE,
    )?;
    check_range(
        origin,
        "restart.max_delay_ms",
        restart.max_delay_ms,
        &RESTART_DELAY_MS_RANGE,
    )?;
    if !RESTART_MULTIPLIER_RANGE.contains(&restart.multiplier) {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: "restart.multiplier".to_owned(),
            value: toml::Value::Float(restart.multiplier).to_string(),
            reason: format!(
                "must be between {:?} and {:?}, so that the delay never shrinks",
                RESTART_MULTIPLIER_RANGE.start(),
                RESTART_MULTIPLIER_RANGE.end()
            ),
        });
    }
    check_range(
        origin,
        "restart.reset_after_ms",
        restart.reset_after_ms,
        &RESTART_WINDOW_MS_RANGE,
    )?;
    if restart.max_failures == 0 {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: "restart.max_failures".to_owned(),
            value: "0".to_owned(),
            reason: "must be at least 1; set restart.strategy = \"none\" to never restart"
                .to_owned(),
        });
    }
    check_range(
        origin,
        "restart.failure_interval_ms",
        restart.failure_interval_ms,
        &RESTART_WINDOW_MS_RANGE,
    )?;

    if restart.strategy == RestartStrategyName::ExponentialBackoff
        && restart.max_delay_ms < restart.initial_delay_ms
    {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: "restart.max_delay_ms".to_owned(),
            value: restart.max_delay_ms.to_string(),
            reason: format!(
                "must not be less than restart.initial_delay_ms ({}) with the \
                 exponential-backoff strategy",
                restart.initial_delay_ms
            ),
        });
    }
    if restart.strategy == RestartStrategyName::FailureRate {
        // Restarts are at least `delay_ms` apart, so `max_failures + 1`
        // failures span at least `max_failures * delay_ms`. If that exceeds
        // the window they never all fall within it and the strategy would
        // restart forever, which is surely not what was meant.
        let span = restart
            .delay_ms
            .saturating_mul(u64::from(restart.max_failures));
        if span > restart.failure_interval_ms {
            return Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                key: "restart.delay_ms".to_owned(),
                value: restart.delay_ms.to_string(),
                reason: format!(
                    "is too long for the failure-rate strategy: restarts at least {} ms apart \
                     can never fit {} failures into restart.failure_interval_ms ({} ms), so \
                     the job would restart forever; shorten the delay, lower \
                     restart.max_failures or widen the interval",
                    restart.delay_ms,
                    u64::from(restart.max_failures) + 1,
                    restart.failure_interval_ms
                ),
            });
        }
    }
    Ok(())
}

/// Fails when `value` is zero.
fn check_at_least_one(origin: &str, key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            value: value.to_string(),
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(())
}

/// Fails unless `value` lies within `range`.
fn check_range<T: PartialOrd + Display>(
    origin: &str,
    key: &str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if !range.contains(&value) {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            value: value.to_string(),
            reason: format!("must be between {} and {}", range.start(), range.end()),
        });
    }
    Ok(())
}

/// A string as it would be written in a TOML file, quotes and escapes
/// included.
pub(super) fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A key as it would be written in a TOML file: bare when it can be, quoted
/// otherwise (e.g. a librdkafka property name with dots).
pub(super) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        toml_string(key)
    }
}

/// `state.snapshot_url` and the S3 keys that go with it.
fn validate_snapshot_store(
    state: &super::StateConfig,
    invalid: &dyn Fn(&'static str, String, String) -> ConfigError,
) -> Result<(), ConfigError> {
    use crate::snapshot_store::SnapshotUrl;
    let url = match &state.snapshot_url {
        Some(url) => Some(
            SnapshotUrl::parse(url)
                .map_err(|reason| invalid("state.snapshot_url", format!("{url:?}"), reason))?,
        ),
        None => None,
    };
    let on_s3 = matches!(url, Some(SnapshotUrl::S3 { .. }));
    if let Some(endpoint) = &state.s3_endpoint {
        if !on_s3 {
            return Err(invalid(
                "state.s3_endpoint",
                format!("{endpoint:?}"),
                "only applies to an s3:// state.snapshot_url".to_owned(),
            ));
        }
        let plain = endpoint.starts_with("http://");
        if !plain && !endpoint.starts_with("https://") {
            return Err(invalid(
                "state.s3_endpoint",
                format!("{endpoint:?}"),
                "must be an http:// or https:// URL".to_owned(),
            ));
        }
        if plain && !state.s3_allow_http {
            return Err(invalid(
                "state.s3_endpoint",
                format!("{endpoint:?}"),
                "is plain http; set state.s3_allow_http = true to allow it".to_owned(),
            ));
        }
    }
    if let Some(region) = &state.s3_region {
        if !on_s3 || region.is_empty() {
            return Err(invalid(
                "state.s3_region",
                format!("{region:?}"),
                "must be non-empty and only applies to an s3:// state.snapshot_url".to_owned(),
            ));
        }
    }
    Ok(())
}
