//! Job definitions by name: what a user's own binary registers so that `weir run
//! NAME` (and, with the cluster, a job submitted to any node by name) builds its job.
//!
//! User operators are compiled into the binary every node runs, so a job cannot be
//! shipped to a node as data: the binary carries its definitions, and a submission
//! names one and gives its parameters (`--set key=value`). A definition is a
//! function from those parameters to a [`Job`].
//!
//! ```
//! use weir::app::{JobParams, JobRegistry};
//! use weir::prelude::*;
//!
//! let mut registry = JobRegistry::new();
//! registry
//!     .register("lengths", "line lengths of W1's generated text", |params: &JobParams| {
//!         let n: u64 = params.get_or("n", 1_000)?;
//!         Ok(Job::new("lengths")
//!             .source(W1Lines::new(n))
//!             .map(|line: String| line.len() as u64)
//!             .sink(CollectSink::<u64>::new()))
//!     })
//!     .unwrap();
//! let params = JobParams::parse(["n=500"]).unwrap();
//! let job = registry.build("lengths", &params).unwrap();
//! Node::new(EngineOptions::for_tests(1)).unwrap().run(job).unwrap();
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use crate::job::Job;

/// The names of the jobs the `weir` binary has built in; a registered job may not
/// take one.
pub const BUILT_IN_JOBS: [&str; 4] = ["demo", "wordcount", "w1", "w2"];

/// Why a job could not be registered or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two definitions of one name, or a built-in job's name.
    #[error("a job named '{0}' is already defined")]
    Duplicate(String),
    /// A name that is empty or holds characters a command line or URL would mangle.
    #[error("'{0}' is not a job name: use letters, digits, '-', '_' and '.'")]
    BadName(String),
    /// No definition of this name.
    #[error("no job named '{name}' (defined: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names defined, comma-separated.
        known: String,
    },
    /// A parameter given as something other than `key=value`.
    #[error("job parameter '{0}' is not key=value")]
    BadParam(String),
    /// A parameter's value does not parse as the type the job wants.
    #[error("job parameter '{key}': '{value}' is not {wanted}")]
    BadValue {
        /// The parameter.
        key: String,
        /// Its value.
        value: String,
        /// The type wanted.
        wanted: &'static str,
    },
    /// A parameter the job requires was not given.
    #[error("job '{job}' needs the parameter '{key}' (--set {key}=...)")]
    Missing {
        /// The job.
        job: String,
        /// The parameter.
        key: String,
    },
    /// Parameters the job does not take (a typo would otherwise be ignored).
    #[error("job '{job}' does not take the parameter(s) {keys} (it read: {read})")]
    Unused {
        /// The job.
        job: String,
        /// The parameters not read, comma-separated.
        keys: String,
        /// The parameters it did read, comma-separated.
        read: String,
    },
    /// The job's own definition refused its parameters.
    #[error("job '{job}': {reason}")]
    Build {
        /// The job.
        job: String,
        /// What its definition said.
        reason: String,
    },
}

/// The parameters of one submission of a job: `key=value` pairs, read by the job's
/// definition with typed getters. Every parameter given must be read, so that a
/// misspelt one is an error rather than silently ignored.
#[derive(Debug, Default)]
pub struct JobParams {
    values: BTreeMap<String, String>,
    read: RefCell<BTreeSet<String>>,
}

impl JobParams {
    /// Parameters from `key=value` strings (as `--set` gives them); a key given
    /// twice keeps its last value.
    pub fn parse<S: AsRef<str>>(pairs: impl IntoIterator<Item = S>) -> Result<Self, RegistryError> {
        let mut values = BTreeMap::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let Some((key, value)) = pair.split_once('=') else {
                return Err(RegistryError::BadParam(pair.to_string()));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(RegistryError::BadParam(pair.to_string()));
            }
            values.insert(key.to_string(), value.to_string());
        }
        Ok(JobParams {
            values,
            read: RefCell::default(),
        })
    }

    /// The parameters as given.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Parameter `key` parsed as `T`, if given.
    pub fn get<T: FromStr>(&self, key: &str) -> Result<Option<T>, RegistryError> {
        self.read.borrow_mut().insert(key.to_string());
        match self.values.get(key) {
            None => Ok(None),
            Some(value) => value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RegistryError::BadValue {
                    key: key.to_string(),
                    value: value.clone(),
                    wanted: std::any::type_name::<T>(),
                }),
        }
    }

    /// Parameter `key` parsed as `T`, or `default` when not given.
    pub fn get_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, RegistryError> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// Parameter `key` parsed as `T`; an error naming `job` when not given.
    pub fn require<T: FromStr>(&self, job: &str, key: &str) -> Result<T, RegistryError> {
        self.get(key)?.ok_or_else(|| RegistryError::Missing {
            job: job.to_string(),
            key: key.to_string(),
        })
    }

    /// The parameters given but never read.
    fn unread(&self) -> Vec<String> {
        let read = self.read.borrow();
        self.values
            .keys()
            .filter(|k| !read.contains(*k))
            .cloned()
            .collect()
    }
}

/// What builds a job from its parameters.
pub type BuildJob = dyn Fn(&JobParams) -> Result<Job, RegistryError> + Send + Sync;

/// One job definition: a one-line description and the function that builds it.
#[derive(Clone)]
pub struct JobDefinition {
    /// What the job does, for `weir run --help` and the API's list.
    pub about: String,
    build: Arc<BuildJob>,
}

/// The jobs a binary defines, by name.
#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: BTreeMap<String, JobDefinition>,
}

impl JobRegistry {
    /// A registry with no jobs (the built-in jobs are the binary's own).
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines job `name`: `build` makes it from the parameters of a submission.
    pub fn register<F>(
        &mut self,
        name: &str,
        about: &str,
        build: F,
    ) -> Result<&mut Self, RegistryError>
    where
        F: Fn(&JobParams) -> Result<Job, RegistryError> + Send + Sync + 'static,
    {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(RegistryError::BadName(name.to_string()));
        }
        if BUILT_IN_JOBS.contains(&name) || self.jobs.contains_key(name) {
            return Err(RegistryError::Duplicate(name.to_string()));
        }
        self.jobs.insert(
            name.to_string(),
            JobDefinition {
                about: about.to_string(),
                build: Arc::new(build),
            },
        );
        Ok(self)
    }

    /// Defines built-in job `name` (one of [`BUILT_IN_JOBS`], which
    /// [`JobRegistry::register`] refuses), replacing an earlier definition.
    pub(crate) fn insert_built_in<F>(&mut self, name: &str, about: &str, build: F)
    where
        F: Fn(&JobParams) -> Result<Job, RegistryError> + Send + Sync + 'static,
    {
        self.jobs.insert(
            name.to_string(),
            JobDefinition {
                about: about.to_string(),
                build: Arc::new(build),
            },
        );
    }

    /// The defined names with their descriptions, in name order.
    pub fn definitions(&self) -> impl Iterator<Item = (&str, &JobDefinition)> {
        self.jobs.iter().map(|(n, d)| (n.as_str(), d))
    }

    /// Whether `name` is defined.
    pub fn contains(&self, name: &str) -> bool {
        self.jobs.contains_key(name)
    }

    /// Builds job `name` from `params`; fails if the name is unknown, a parameter
    /// does not parse, or a parameter was given that the job never read.
    pub fn build(&self, name: &str, params: &JobParams) -> Result<Job, RegistryError> {
        let Some(definition) = self.jobs.get(name) else {
            let known: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            return Err(RegistryError::Unknown {
                name: name.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        };
        let job = (definition.build)(params)?;
        let unread = params.unread();
        if !unread.is_empty() {
            let read = params.read.borrow();
            return Err(RegistryError::Unused {
                job: name.to_string(),
                keys: unread.join(", "),
                read: if read.is_empty() {
                    "none".into()
                } else {
                    read.iter().cloned().collect::<Vec<_>>().join(", ")
                },
            });
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn registry() -> JobRegistry {
        let mut r = JobRegistry::new();
        r.register("count", "counts numbers", |p: &JobParams| {
            let n: u64 = p.require("count", "n")?;
            let _scale: f64 = p.get_or("scale", 1.0)?;
            Ok(Job::new("count")
                .source(W1Lines::new(n))
                .sink(CollectSink::<String>::new()))
        })
        .unwrap();
        r
    }

    #[test]
    fn names_are_checked_and_unique() {
        let mut r = registry();
        let build = |_: &JobParams| -> Result<Job, RegistryError> {
            Err(RegistryError::BadParam("unused".into()))
        };
        assert_eq!(
            r.register("count", "again", build).err(),
            Some(RegistryError::Duplicate("count".into()))
        );
        assert_eq!(
            r.register("w1", "shadows a built-in", build).err(),
            Some(RegistryError::Duplicate("w1".into()))
        );
        assert!(matches!(
            r.register("two words", "", build),
            Err(RegistryError::BadName(_))
        ));
        assert!(matches!(
            r.register("", "", build),
            Err(RegistryError::BadName(_))
        ));
    }

    #[test]
    fn parameters_are_typed_required_and_all_read() {
        let r = registry();
        assert!(r
            .build("count", &JobParams::parse(["n=10"]).unwrap())
            .is_ok());
        let missing = r.build("count", &JobParams::default()).err().unwrap();
        assert!(missing.to_string().contains("--set n="), "{missing}");
        let bad = r
            .build("count", &JobParams::parse(["n=ten"]).unwrap())
            .err()
            .unwrap();
        assert!(bad.to_string().contains("'ten'"), "{bad}");
        let typo = r
            .build("count", &JobParams::parse(["n=10", "sacle=2"]).unwrap())
            .err()
            .unwrap();
        assert!(
            typo.to_string().contains("sacle") && typo.to_string().contains("scale"),
            "{typo}"
        );
        let unknown = r.build("nope", &JobParams::default()).err().unwrap();
        assert!(unknown.to_string().contains("count"), "{unknown}");
        assert!(JobParams::parse(["novalue"]).is_err());
        assert!(JobParams::parse(["=1"]).is_err());
    }
}
