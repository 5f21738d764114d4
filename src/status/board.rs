//! The board a running node writes its job's status on and the status server reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use weir_actors::checkpoint::CheckpointStats;
use weir_actors::runtime::Endpoint;
use weir_actors::{QueryAnswer, QueryState, StateQuery};

use crate::job::node::SavepointCommand;
use crate::job::progress::LiveStats;

use super::error::StatusError;
use super::model::{
    unix_ms, CheckpointStatus, Edge, JobState, JobStatus, SavepointRecord, StageKind, StageStatus,
};
use super::sampler::{backpressure_level, checkpoint_status, Sampler};

/// Shared between the node (writer) and the status server (reader); cheap to clone.
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Inner>,
}

/// The jobs on the board.
#[derive(Default)]
struct Jobs {
    /// By name; a job run again replaces its earlier run.
    by_name: std::collections::BTreeMap<String, JobStatus>,
    /// By job name, the checkpoint figures of its latest run: read when the status
    /// is read (never copied ahead of time), the same record the checkpoint metrics
    /// are fed from, so the API is never behind them.
    checkpoints: std::collections::BTreeMap<String, Arc<CheckpointStats>>,
    /// The job the node runs now, or ran last.
    current: Option<String>,
}

impl Jobs {
    /// A copy of `job`'s status with its checkpoint figures as of now.
    fn read(&self, job: &JobStatus) -> JobStatus {
        let mut job = job.clone();
        if let Some(stats) = self.checkpoints.get(&job.name) {
            let interval = job.checkpoints.interval_ms.map(Duration::from_millis);
            job.checkpoints = checkpoint_status(&stats.figures(), interval);
        }
        job
    }
}

#[derive(Default)]
struct Inner {
    /// Every job the node ran, and which one it runs (or ran last).
    jobs: Mutex<Jobs>,
    /// By job name, where its savepoint requests go while it listens for them.
    savepoints: Mutex<BTreeMap<String, mpsc::Sender<SavepointCommand>>>,
    /// By job name, per stage, its actors' state query endpoints, while an attempt
    /// runs.
    queries: Mutex<BTreeMap<String, Arc<QueryRoutes>>>,
}

/// Per stage index, its partition actors' state query endpoints.
pub(crate) type QueryRoutes = Vec<Vec<Endpoint<QueryState>>>;

/// How long a state query waits for the owning actor (it answers between two
/// messages, so a query can wait behind a full mailbox and backpressure).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// One key's value read from a running job.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueriedState {
    /// The key partition the key hashes to.
    pub key_partition: u32,
    /// The partition actor that owns it and answered.
    pub partition: u32,
    /// The value as JSON; `None` when the key has no value.
    pub value: Option<serde_json::Value>,
}

/// Locks `m`, taking the data of a poisoned lock as it is: the status is a report,
/// and a panic elsewhere must not hide it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StatusBoard {
    /// An empty board (no job yet).
    pub fn new() -> Self {
        StatusBoard::default()
    }

    /// A copy of the status of the job the node runs now, or ran last.
    pub fn current(&self) -> Option<JobStatus> {
        let jobs = lock(&self.inner.jobs);
        jobs.current
            .as_ref()
            .and_then(|name| jobs.by_name.get(name))
            .map(|job| jobs.read(job))
    }

    /// A copy of job `name`'s status (its latest run), if the node ran it.
    pub fn job(&self, name: &str) -> Option<JobStatus> {
        let jobs = lock(&self.inner.jobs);
        jobs.by_name.get(name).map(|job| jobs.read(job))
    }

    /// Every job the node ran, by name.
    pub fn jobs(&self) -> Vec<JobStatus> {
        let jobs = lock(&self.inner.jobs);
        jobs.by_name.values().map(|job| jobs.read(job)).collect()
    }

    /// The writer's handle for job `job`: what a run of it changes on the board
    /// goes through it, so that jobs running side by side on one node each change
    /// their own status only.
    pub fn for_job(&self, job: &str) -> JobBoard {
        JobBoard {
            board: self.clone(),
            job: job.to_string(),
        }
    }

    /// `Ok` when `job` is the node's job and it runs.
    fn running(&self, job: &str) -> Result<(), StatusError> {
        match self.job(job) {
            Some(j) if j.state == JobState::Running => Ok(()),
            Some(j) => Err(StatusError::NotRunning {
                job: j.name,
                state: j.state.as_str().to_string(),
            }),
            None => Err(StatusError::NoSuchJob(job.to_string())),
        }
    }

    /// Asks the running job `job` for a savepoint (and to stop after it when
    /// `stop`); the returned receiver hears its path, or why it failed.
    pub fn request_savepoint(
        &self,
        job: &str,
        stop: bool,
    ) -> Result<mpsc::Receiver<Result<PathBuf, String>>, StatusError> {
        self.running(job)?;
        let (reply, rx) = mpsc::channel();
        let sent = lock(&self.inner.savepoints).get(job).map(|tx| {
            tx.send(SavepointCommand {
                stop,
                reply: Some(reply),
            })
        });
        match sent {
            Some(Ok(())) => Ok(rx),
            _ => Err(StatusError::NoSavepoints(job.to_string())),
        }
    }

    /// Reads state `state` of `key` (JSON) in stage `stage` of the running job
    /// `job`: asks the stage's first actor, which answers or names the owner of the
    /// key's partition, then asks that one.
    pub async fn query_state(
        &self,
        job: &str,
        stage: u32,
        state: &str,
        key: &str,
    ) -> Result<QueriedState, StatusError> {
        self.running(job)?;
        let routes = lock(&self.inner.queries).get(job).cloned().ok_or_else(|| {
            StatusError::QueryUnavailable(format!("job '{job}' is between attempts"))
        })?;
        let actors = routes
            .get(stage as usize)
            .ok_or_else(|| StatusError::NoSuchStage {
                job: job.to_string(),
                stage,
            })?;
        let query = StateQuery {
            state: state.to_string(),
            key: key.to_string(),
        };
        let mut partition = 0u32;
        // The first actor answers or names the owner; the owner answers.
        for _ in 0..2 {
            let actor = actors.get(partition as usize).ok_or_else(|| {
                StatusError::QueryUnavailable(format!("stage {stage} has no actor {partition}"))
            })?;
            let answer = actor.ask(query.clone());
            let answer = match tokio::time::timeout(QUERY_TIMEOUT, answer).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => {
                    return Err(StatusError::QueryUnavailable(format!(
                        "actor {partition} of stage {stage} stopped before answering"
                    )))
                }
                Err(_) => {
                    return Err(StatusError::QueryUnavailable(format!(
                        "actor {partition} of stage {stage} did not answer within {QUERY_TIMEOUT:?} (busy or back-pressured)"
                    )))
                }
            };
            match answer {
                QueryAnswer::Value {
                    key_partition,
                    value,
                } => {
                    let value = value
                        .map(|text| serde_json::from_str(&text))
                        .transpose()
                        .map_err(|e| {
                            StatusError::QueryUnavailable(format!("the value is not JSON: {e}"))
                        })?;
                    return Ok(QueriedState {
                        key_partition,
                        partition,
                        value,
                    });
                }
                QueryAnswer::Owner(owner) if owner != partition => partition = owner,
                QueryAnswer::Owner(owner) => {
                    return Err(StatusError::QueryUnavailable(format!(
                    "actor {owner} of stage {stage} names itself as the owner but did not answer"
                )))
                }
                QueryAnswer::BadRequest(reason) => return Err(StatusError::BadQuery(reason)),
                QueryAnswer::Unavailable(reason) => {
                    return Err(StatusError::QueryUnavailable(reason))
                }
            }
        }
        Err(StatusError::QueryUnavailable(format!(
            "stage {stage}: the owner of key {key} moved while it was asked"
        )))
    }
}

/// What a run of one job writes on the node's board (made by
/// [`StatusBoard::for_job`]): its status, its checkpoints, where its savepoint
/// requests and state queries go. Cheap to clone.
#[derive(Clone)]
pub struct JobBoard {
    board: StatusBoard,
    job: String,
}

impl JobBoard {
    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The job's status as it is now.
    pub fn status(&self) -> Option<JobStatus> {
        self.board.job(&self.job)
    }

    /// A channel for the savepoint requests made through the board for this job;
    /// the node reads the receiver ([`crate::job::RunControl::savepoints`]). A
    /// later call replaces the earlier channel.
    pub fn savepoint_requests(&self) -> mpsc::Receiver<SavepointCommand> {
        let (tx, rx) = mpsc::channel();
        lock(&self.board.inner.savepoints).insert(self.job.clone(), tx);
        rx
    }

    /// Queries go to these actors (per stage) from now on.
    pub(crate) fn serve_queries(&self, stages: QueryRoutes) {
        lock(&self.board.inner.queries).insert(self.job.clone(), Arc::new(stages));
    }

    /// No attempt runs: queries are refused until the next one serves them.
    pub(crate) fn stop_queries(&self) {
        lock(&self.board.inner.queries).remove(&self.job);
    }

    /// A new run of the job: its graph, before anything runs. It becomes the
    /// node's current job.
    pub(crate) fn created(&self, job: JobStatus) {
        let mut jobs = lock(&self.board.inner.jobs);
        jobs.current = Some(self.job.clone());
        jobs.checkpoints.remove(&self.job);
        jobs.by_name.insert(self.job.clone(), job);
    }

    /// The job's checkpoints are counted in `stats` (for its whole run, across
    /// restarts): its status shows them as they are when it is read.
    pub(crate) fn count_checkpoints(&self, stats: Arc<CheckpointStats>) {
        lock(&self.board.inner.jobs)
            .checkpoints
            .insert(self.job.clone(), stats);
    }

    /// Changes the job's status in place.
    pub(crate) fn update(&self, change: impl FnOnce(&mut JobStatus)) {
        if let Some(job) = lock(&self.board.inner.jobs).by_name.get_mut(&self.job) {
            change(job);
        }
    }

    /// A savepoint completed at `path`.
    pub(crate) fn savepoint_taken(&self, path: &std::path::Path) {
        self.update(|j| {
            j.savepoints.push(SavepointRecord {
                path: path.display().to_string(),
                taken_at_ms: unix_ms(),
            })
        });
    }

    /// The run ended: it takes no more savepoint requests.
    pub(crate) fn ended(&self) {
        lock(&self.board.inner.savepoints).remove(&self.job);
        self.stop_queries();
    }
}

impl JobStatus {
    /// A job about to start: its stages (`name`, kind, parallelism) and edges, with
    /// no counters yet.
    pub(crate) fn created(
        name: &str,
        key_partitions: u32,
        stages: Vec<(String, StageKind, u32)>,
        edges: Vec<Edge>,
        checkpoint_interval: Option<Duration>,
    ) -> Self {
        JobStatus {
            name: name.to_string(),
            state: JobState::Created,
            started_at_ms: unix_ms(),
            elapsed_ms: 0,
            key_partitions,
            attempt: 1,
            restarts: 0,
            last_failure: None,
            restored_from_epoch: None,
            stages: stages
                .into_iter()
                .enumerate()
                .map(|(i, (name, kind, parallelism))| StageStatus {
                    index: i as u32,
                    name,
                    kind,
                    parallelism,
                    records_in: 0,
                    records_out: 0,
                    records_in_per_second: 0.0,
                    records_out_per_second: 0.0,
                    backpressure: 0.0,
                    backpressure_level: backpressure_level(0.0),
                    busy: 0.0,
                    watermark_ms: None,
                    partitions: Vec::new(),
                })
                .collect(),
            edges,
            checkpoints: CheckpointStatus {
                enabled: checkpoint_interval.is_some(),
                interval_ms: checkpoint_interval.map(|i| i.as_millis() as u64),
                ..CheckpointStatus::default()
            },
            savepoints: Vec::new(),
        }
    }
}

/// What one attempt of a job publishes on the board: the live counters through a
/// [`Sampler`]. (Its checkpoints are read from the job's [`CheckpointStats`] when
/// the board is read: [`StatusBoard::count_checkpoints`].)
pub(crate) struct AttemptFeed {
    board: JobBoard,
    sampler: Sampler,
    started_at_ms: u64,
}

impl AttemptFeed {
    /// The feed of an attempt of `board`'s job.
    pub fn new(board: JobBoard) -> Self {
        let started_at_ms = board.status().map_or_else(unix_ms, |j| j.started_at_ms);
        AttemptFeed {
            board,
            sampler: Sampler::new(),
            started_at_ms,
        }
    }

    /// The board it publishes on.
    pub fn board(&self) -> &JobBoard {
        &self.board
    }

    /// Serves state queries through these actors (per stage) while the attempt runs.
    pub fn serve_queries(&self, stages: QueryRoutes) {
        self.board.serve_queries(stages);
    }

    /// The attempt's actors are stopping: no more queries.
    pub fn stop_queries(&self) {
        self.board.stop_queries();
    }

    /// Publishes `live`, and sets the state to `state` when given.
    pub fn publish(&mut self, live: &LiveStats, state: Option<JobState>) {
        let elapsed_ms = unix_ms().saturating_sub(self.started_at_ms);
        let sampler = &mut self.sampler;
        self.board.update(|j| {
            let kinds: Vec<StageKind> = j.stages.iter().map(|s| s.kind).collect();
            j.stages = sampler.stages(live, &kinds);
            if let Some(state) = state {
                j.state = state;
            }
            j.elapsed_ms = elapsed_ms;
        });
    }
}

impl Drop for AttemptFeed {
    /// An attempt that ends (or is abandoned) serves no more queries.
    fn drop(&mut self) {
        self.board.stop_queries();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str) -> JobStatus {
        JobStatus::created(
            name,
            16,
            vec![("source:s".into(), StageKind::Source, 2)],
            Vec::new(),
            None,
        )
    }

    #[test]
    fn the_board_keeps_every_job_and_each_run_changes_its_own() {
        let board = StatusBoard::new();
        assert!(board.current().is_none() && board.jobs().is_empty());
        let (a, b) = (board.for_job("a"), board.for_job("b"));
        a.created(created("a"));
        b.created(created("b"));
        // Two jobs side by side: each run changes its own status only.
        a.update(|j| j.state = JobState::Finished);
        b.update(|j| j.state = JobState::Running);
        assert_eq!(board.current().map(|j| j.name), Some("b".to_string()));
        assert_eq!(board.job("a").map(|j| j.state), Some(JobState::Finished));
        assert_eq!(board.job("b").map(|j| j.state), Some(JobState::Running));
        assert_eq!(board.jobs().len(), 2);
        // A job run again replaces its earlier run and becomes current.
        a.created(created("a"));
        assert_eq!(board.job("a").map(|j| j.state), Some(JobState::Created));
        assert_eq!(board.current().map(|j| j.name), Some("a".to_string()));
        assert_eq!(board.jobs().len(), 2);
    }

    #[test]
    fn savepoint_requests_and_queries_go_to_their_own_job() {
        let board = StatusBoard::new();
        let (a, b) = (board.for_job("a"), board.for_job("b"));
        for (handle, name) in [(&a, "a"), (&b, "b")] {
            handle.created(created(name));
            handle.update(|j| j.state = JobState::Running);
        }
        let to_a = a.savepoint_requests();
        let to_b = b.savepoint_requests();
        let _reply = board.request_savepoint("b", false).expect("sent");
        assert!(to_a.try_recv().is_err(), "a heard b's request");
        assert!(to_b.try_recv().is_ok());
        // A run that ended takes no more requests; the other still does.
        a.ended();
        assert!(matches!(
            board.request_savepoint("a", false),
            Err(StatusError::NoSavepoints(_))
        ));
        assert!(board.request_savepoint("b", false).is_ok());
    }

    /// The completed-checkpoints counter of a test recorder: at each increment it
    /// reads the job's status from the board, as the status API would at that
    /// moment, and fails if the API is behind the value the exporter would serve.
    struct ApiNeverBehind {
        board: StatusBoard,
        exported: std::sync::atomic::AtomicU64,
        checked: std::sync::atomic::AtomicU64,
    }

    impl metrics::CounterFn for ApiNeverBehind {
        fn increment(&self, by: u64) {
            use std::sync::atomic::Ordering::SeqCst;
            let exported = self.exported.fetch_add(by, SeqCst) + by;
            let api = self.board.job("a").map_or(0, |j| j.checkpoints.completed);
            assert!(
                api >= exported,
                "Prometheus would show {exported} checkpoints, the status API {api}"
            );
            self.checked.fetch_add(1, SeqCst);
        }
        fn absolute(&self, value: u64) {
            self.exported
                .fetch_max(value, std::sync::atomic::Ordering::SeqCst);
        }
    }

    struct Recorder(Arc<ApiNeverBehind>);

    impl metrics::Recorder for Recorder {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            if key.name() == weir_actors::checkpoint::metrics::CHECKPOINTS_COMPLETED {
                metrics::Counter::from_arc(self.0.clone())
            } else {
                metrics::Counter::noop()
            }
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    /// Regression (tests/prometheus_e2e.rs once saw `weir_checkpoints_completed_total`
    /// ahead of `/api/jobs/demo`): the board copied the checkpoint figures on the
    /// node's next tick, after the coordinator had already counted the epoch in
    /// Prometheus. The board now reads the figures the metrics are recorded from.
    #[test]
    fn the_status_api_is_never_behind_the_checkpoint_counter() {
        use weir_actors::checkpoint::{CheckpointStats, EpochOutcome, EpochRecord};
        let board = StatusBoard::new();
        let a = board.for_job("a");
        a.created(created("a"));
        let stats = Arc::new(CheckpointStats::default());
        a.count_checkpoints(stats.clone());
        let probe = Arc::new(ApiNeverBehind {
            board: board.clone(),
            exported: Default::default(),
            checked: Default::default(),
        });
        let recorder = Recorder(probe.clone());
        metrics::with_local_recorder(&recorder, || {
            for epoch in 1..=3 {
                stats.finished(
                    "a",
                    EpochRecord {
                        epoch,
                        outcome: EpochOutcome::Completed,
                        duration: Duration::from_millis(5),
                        bytes: 100,
                        alignment: Duration::ZERO,
                        finished_at_ms: 0,
                        savepoint: false,
                        is_final: false,
                    },
                );
            }
        });
        assert_eq!(probe.checked.load(std::sync::atomic::Ordering::SeqCst), 3);
        let status = board.job("a").expect("on the board");
        assert_eq!(status.checkpoints.completed, 3);
        assert_eq!(status.checkpoints.last_epoch, Some(3));
        assert_eq!(status.checkpoints.history.len(), 3);
        // A job run again starts its figures afresh.
        a.created(created("a"));
        assert_eq!(board.job("a").map(|j| j.checkpoints.completed), Some(0));
    }

    #[test]
    fn savepoint_requests_reach_only_a_running_job_that_listens() {
        let board = StatusBoard::new();
        assert!(matches!(
            board.request_savepoint("a", false),
            Err(StatusError::NoSuchJob(_))
        ));
        let a = board.for_job("a");
        a.created(created("a"));
        assert!(matches!(
            board.request_savepoint("a", false),
            Err(StatusError::NotRunning { .. })
        ));
        a.update(|j| j.state = JobState::Running);
        assert!(matches!(
            board.request_savepoint("a", false),
            Err(StatusError::NoSavepoints(_))
        ));
        let requests = a.savepoint_requests();
        let reply = board.request_savepoint("a", true).expect("sent");
        let command = requests.try_recv().expect("the job hears it");
        assert!(command.stop);
        let path = PathBuf::from("/sp/savepoint-000001");
        command
            .reply
            .expect("a reply channel")
            .send(Ok(path.clone()))
            .unwrap();
        assert_eq!(reply.recv().unwrap(), Ok(path.clone()));
        a.savepoint_taken(&path);
        assert_eq!(
            board.job("a").unwrap().savepoints[0].path,
            "/sp/savepoint-000001"
        );
    }
}
