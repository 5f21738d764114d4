//! The jobs a long-running node (`weir node`) runs: submitted by name with their
//! parameters (through the HTTP API or `weir job submit`), each run on a thread of
//! its own on the node, side by side, until its input ends, it fails, or it is
//! cancelled.
//!
//! The definitions are the binary's registered jobs ([`JobRegistry`]) and the
//! built-in ones (`demo`, `w1`, `w2`, `wordcount`, with their parameters as
//! `key=value`). A job's status, savepoints and state queries are the status API's,
//! as for `weir run`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::connector::lines::LineSource;
use crate::connector::{DeadLetters, StopFlag};
use crate::job::node::RunControl;
use crate::job::Node;
use crate::status::JobState;

use super::registry::{JobParams, JobRegistry, RegistryError};

/// Why a submission or a cancellation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The definition or its parameters were refused.
    #[error(transparent)]
    Definition(#[from] RegistryError),
    /// A job of this name runs already.
    #[error("job '{0}' is running already (cancel it first, or give it another name)")]
    Running(String),
    /// No job of this name runs.
    #[error("no job named '{0}' is running on this node")]
    NotRunning(String),
    /// The job's thread could not be started.
    #[error("cannot start a thread for job '{job}': {source}")]
    Thread {
        /// The job.
        job: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A job running on the node: how to cancel it, and its thread.
struct Running {
    cancel: StopFlag,
    thread: JoinHandle<()>,
}

struct Inner {
    node: Node,
    definitions: JobRegistry,
    running: Mutex<BTreeMap<String, Running>>,
}

/// The node's job service; cheap to clone.
#[derive(Clone)]
pub struct JobService {
    inner: Arc<Inner>,
}

impl JobService {
    /// A service running its jobs on `node`, from `registry`'s definitions and the
    /// built-in ones.
    pub fn new(node: Node, registry: JobRegistry) -> Self {
        let mut definitions = registry;
        register_built_ins(&mut definitions, node.dead_letters());
        JobService {
            inner: Arc::new(Inner {
                node,
                definitions,
                running: Mutex::default(),
            }),
        }
    }

    /// The node the jobs run on.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Every definition a submission may name, with its description.
    pub fn definitions(&self) -> Vec<(String, String)> {
        self.inner
            .definitions
            .definitions()
            .map(|(name, d)| (name.to_string(), d.about.clone()))
            .collect()
    }

    fn running(&self) -> MutexGuard<'_, BTreeMap<String, Running>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds job `definition` from `params` and starts it; returns the job's name
    /// (the name its definition gives it, which the status API shows it under).
    pub fn submit(
        &self,
        definition: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<String, ServiceError> {
        let params = JobParams::parse(params.iter().map(|(k, v)| format!("{k}={v}")))?;
        let job = self.inner.definitions.build(definition, &params)?;
        let name = job.name();
        let mut running = self.running();
        if let Some(previous) = running.get(&name) {
            // A run whose status shows it ended is at most finishing its thread.
            let ended = self.inner.node.status().job(&name).is_some_and(|j| {
                matches!(
                    j.state,
                    JobState::Finished | JobState::Failed | JobState::Cancelled
                )
            });
            if !previous.thread.is_finished() && !ended {
                return Err(ServiceError::Running(name));
            }
            if let Some(previous) = running.remove(&name) {
                if previous.thread.join().is_err() {
                    tracing::warn!(job = %name, "the previous run's thread panicked");
                }
            }
        }
        let cancel = StopFlag::new();
        let control = RunControl {
            cancel: Some(cancel.clone()),
            ..Default::default()
        };
        let inner = self.inner.clone();
        let job_name = name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("job-{name}"))
            .spawn(move || match inner.node.run_with(job, control) {
                Ok(report) => tracing::info!(job = %job_name, summary = %report, "job finished"),
                Err(error) => tracing::warn!(job = %job_name, %error, "job ended with an error"),
            })
            .map_err(|source| ServiceError::Thread {
                job: name.clone(),
                source,
            })?;
        running.insert(name.clone(), Running { cancel, thread });
        Ok(name)
    }

    /// Cancels running job `job`: its actors stop without draining; its snapshots
    /// stay.
    pub fn cancel(&self, job: &str) -> Result<(), ServiceError> {
        match self.running().get(job) {
            Some(r) if !r.thread.is_finished() => {
                r.cancel.stop();
                Ok(())
            }
            _ => Err(ServiceError::NotRunning(job.to_string())),
        }
    }

    /// Cancels every running job and waits for each to end (the node is stopping).
    pub fn shutdown(&self) {
        let jobs: Vec<(String, Running)> =
            std::mem::take(&mut *self.running()).into_iter().collect();
        for (_, r) in &jobs {
            r.cancel.stop();
        }
        for (name, r) in jobs {
            if r.thread.join().is_err() {
                tracing::warn!(job = %name, "the job's thread panicked");
            }
        }
    }
}

/// The built-in jobs as definitions a node runs by name.
fn register_built_ins(registry: &mut JobRegistry, dead_letters: DeadLetters) {
    registry.insert_built_in(
        "demo",
        "endless sensor readings through keyed state; limit=N ends it after N readings",
        |p| {
            let (job, _) = crate::jobs::demo(StopFlag::new(), p.get("limit")?);
            Ok(job)
        },
    );
    registry.insert_built_in(
        "w1",
        "the W1 benchmark workload; n=WORDS (default 1,000,000)",
        |p| Ok(crate::jobs::w1(p.get_or("n", 1_000_000)?).0),
    );
    registry.insert_built_in(
        "w2",
        "the W2 benchmark workload; n=EVENTS (default 1,000,000)",
        |p| Ok(crate::jobs::w2(p.get_or("n", 1_000_000)?).0),
    );
    registry.insert_built_in(
        "wordcount",
        "counts the words of a text file into an exactly-once directory; input=FILE out=DIR",
        move |p| {
            let input: String = p.require("wordcount", "input")?;
            let out: String = p.require("wordcount", "out")?;
            let source = LineSource::file(&input, dead_letters.clone());
            Ok(crate::jobs::wordcount_to_dir(
                source,
                std::path::Path::new(&out),
            ))
        },
    );
}

impl crate::status::job_control::JobControl for JobService {
    fn definitions(&self) -> Vec<(String, String)> {
        JobService::definitions(self)
    }

    fn submit(
        &self,
        definition: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<String, crate::status::job_control::JobControlError> {
        use crate::status::job_control::JobControlError as E;
        JobService::submit(self, definition, params).map_err(|e| match e {
            ServiceError::Definition(e) => E::BadRequest(e.to_string()),
            e @ ServiceError::Running(_) => E::Conflict(e.to_string()),
            e @ ServiceError::NotRunning(_) => E::NotFound(e.to_string()),
            e @ ServiceError::Thread { .. } => E::Internal(e.to_string()),
        })
    }

    fn cancel(&self, job: &str) -> Result<(), crate::status::job_control::JobControlError> {
        use crate::status::job_control::JobControlError as E;
        JobService::cancel(self, job).map_err(|e| match e {
            e @ ServiceError::NotRunning(_) => E::NotFound(e.to_string()),
            other => E::Internal(other.to_string()),
        })
    }
}
