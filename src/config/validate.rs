//! Range and cross-field rules for a parsed configuration.

use std::fmt::Display;
use std::ops::RangeInclusive;

use super::{
    ConfigError, WeirConfig, BATCH_SIZE_RANGE, KEY_PARTITIONS_RANGE, MAILBOX_CAPACITY_RANGE,
    PROGRESS_INTERVAL_MS_RANGE, SLED_CACHE_MB_RANGE,
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
