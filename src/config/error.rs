//! The error type for loading and checking a node configuration.

use std::path::PathBuf;

/// The origin to pass to [`super::WeirConfig::validate_with_origin`] when the
/// values being checked were set by command-line flags rather than a file.
pub const COMMAND_LINE_ORIGIN: &str = "command line";

/// Why a configuration could not be loaded or was rejected.
///
/// Every variant names where the bad input came from (a file path, the
/// command line, or `<string>`), so a message printed by the CLI tells the
/// operator which file or flag to fix without further context.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read at all (missing, unreadable, not
    /// UTF-8).
    #[error("cannot read config file {}: {source}", .path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid TOML, or does not fit the expected shape: an
    /// unknown section or key, or a value of the wrong type.
    #[error("{}: {message}", describe_origin(.origin))]
    Parse {
        /// Where the text came from: a file path or `<string>`.
        origin: String,
        /// The parser's explanation, including line, column and the dotted
        /// key when it could be determined.
        message: String,
    },

    /// A value has the right type but is out of range or conflicts with
    /// another setting.
    #[error("{}: {key} = {value} is invalid: {reason}", describe_origin(.origin))]
    Invalid {
        /// Where the value came from: a file path, `<string>` or
        /// [`COMMAND_LINE_ORIGIN`].
        origin: String,
        /// The dotted key of the offending setting, such as
        /// `engine.key_partitions`.
        key: String,
        /// The rejected value, written as it would appear in TOML.
        value: String,
        /// What the value must satisfy instead.
        reason: String,
    },
}

impl ConfigError {
    /// The dotted key this error is about, when it concerns one setting.
    ///
    /// Lets callers (and tests) react to a specific key without parsing the
    /// rendered message.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Io { .. } | ConfigError::Parse { .. } => None,
        }
    }
}

/// Turns an origin into the phrase that opens an error message: values from
/// flags read "command line", anything else is a config file.
fn describe_origin(origin: &str) -> String {
    if origin == COMMAND_LINE_ORIGIN {
        origin.to_owned()
    } else {
        format!("config file {origin}")
    }
}
