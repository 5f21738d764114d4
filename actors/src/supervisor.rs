//! The supervision tree: a job supervisor over stage supervisors over partition
//! actors.
//!
//! Partition actors report to their stage's supervisor when they finish or fail; the
//! stage supervisor tells the job's. A failure anywhere fails the job: every mailbox
//! is closed (so no sender stays blocked), every actor is stopped, and the job's
//! outcome names the stage, the partition and the cause. Restarting from a snapshot
//! instead of failing is added on this same path by the snapshot work.

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::mailbox::MailboxGate;
use crate::panic::Failure;
use crate::partition_actor::{ActorId, Stop};

/// What happened to a partition actor.
#[derive(Debug, Clone)]
pub enum ActorEvent {
    /// Its input ended and its output is sent.
    Finished,
    /// It panicked or its task returned an error.
    Failed(Failure),
}

/// A partition actor's report to its stage supervisor.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ActorReport {
    /// Who reports.
    pub id: ActorId,
    /// What happened.
    pub event: ActorEvent,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    /// An operator failed; names the stage, partition and cause.
    #[error("job '{job}' failed: stage '{stage}', partition {partition} {failure}")]
    Operator {
        /// The job.
        job: String,
        /// The failing stage.
        stage: String,
        /// The failing partition of that stage.
        partition: u32,
        /// The panic or error.
        failure: Failure,
    },
    /// A checkpoint could not be made durable.
    #[error("job '{job}' failed: {reason}")]
    Checkpoint {
        /// The job.
        job: String,
        /// What went wrong.
        reason: String,
    },
    /// The job was cancelled before it finished.
    #[error("job '{job}' was cancelled")]
    Cancelled {
        /// The job.
        job: String,
    },
}

/// How a job ended.
pub type JobOutcome = Result<(), JobFailure>;

/// Registers the partition actors a stage supervisor may have to stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdoptPartitions(pub Vec<Recipient<Stop>>);

/// Supervises the partition actors of one stage.
pub struct StageSupervisor {
    stage: String,
    expected: usize,
    finished: usize,
    failed: bool,
    partitions: Vec<Recipient<Stop>>,
    job: Addr<JobSupervisor>,
}

impl StageSupervisor {
    /// A supervisor for `expected` partition actors of `stage`, reporting to `job`.
    pub fn new(stage: impl Into<String>, expected: usize, job: Addr<JobSupervisor>) -> Self {
        StageSupervisor {
            stage: stage.into(),
            expected,
            finished: 0,
            failed: false,
            partitions: Vec::new(),
            job,
        }
    }
}

impl Actor for StageSupervisor {
    type Context = Context<Self>;
}

impl Handler<AdoptPartitions> for StageSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AdoptPartitions, _ctx: &mut Context<Self>) {
        self.partitions.extend(msg.0);
    }
}

impl Handler<ActorReport> for StageSupervisor {
    type Result = ();
    fn handle(&mut self, report: ActorReport, _ctx: &mut Context<Self>) {
        match report.event {
            ActorEvent::Finished => {
                self.finished += 1;
                if self.finished == self.expected && !self.failed {
                    tracing::debug!(stage = %self.stage, "stage finished");
                    self.job.do_send(StageReport::Finished);
                }
            }
            ActorEvent::Failed(failure) => {
                if !self.failed {
                    self.failed = true;
                    self.job.do_send(StageReport::Failed {
                        stage: self.stage.clone(),
                        partition: report.id.partition,
                        failure,
                    });
                }
            }
        }
    }
}

/// Stops every partition of a stage.
#[derive(Message)]
#[rtype(result = "()")]
struct StopStage;

impl Handler<StopStage> for StageSupervisor {
    type Result = ();
    fn handle(&mut self, _msg: StopStage, ctx: &mut Context<Self>) {
        for partition in &self.partitions {
            partition.do_send(Stop);
        }
        ctx.stop();
    }
}

/// A stage supervisor's report to the job supervisor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum StageReport {
    /// Every partition of the stage finished.
    Finished,
    /// A partition failed.
    Failed {
        /// The stage.
        stage: String,
        /// Its failing partition.
        partition: u32,
        /// Why.
        failure: Failure,
    },
}

/// Registers a job's stage supervisors and every mailbox gate of the job.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdoptStages {
    /// The stage supervisors.
    pub stages: Vec<Addr<StageSupervisor>>,
    /// Every partition actor's mailbox gate, closed on failure.
    pub gates: Vec<MailboxGate>,
}

/// The checkpoint coordinator could not make an epoch durable: the job fails (and
/// recovers from the last complete epoch if its restart strategy allows).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CheckpointFailed(pub String);

impl Handler<CheckpointFailed> for JobSupervisor {
    type Result = ();
    fn handle(&mut self, msg: CheckpointFailed, ctx: &mut Context<Self>) {
        if self.outcome.is_some() {
            let failure = JobFailure::Checkpoint {
                job: self.job.clone(),
                reason: msg.0,
            };
            tracing::error!(%failure, "job failed; stopping every actor");
            self.stop_everything();
            self.settle(Err(failure), ctx);
        }
    }
}

/// Cancels a running job: its actors stop and its outcome is `Cancelled`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelJob;

/// Supervises one job: collects stage reports and settles the job's outcome.
pub struct JobSupervisor {
    job: String,
    expected_stages: usize,
    finished_stages: usize,
    stages: Vec<Addr<StageSupervisor>>,
    gates: Vec<MailboxGate>,
    outcome: Option<oneshot::Sender<JobOutcome>>,
}

impl JobSupervisor {
    /// A supervisor for a job of `expected_stages` stages; its outcome is sent on the
    /// returned receiver.
    pub fn new(
        job: impl Into<String>,
        expected_stages: usize,
    ) -> (Self, oneshot::Receiver<JobOutcome>) {
        let (tx, rx) = oneshot::channel();
        (
            JobSupervisor {
                job: job.into(),
                expected_stages,
                finished_stages: 0,
                stages: Vec::new(),
                gates: Vec::new(),
                outcome: Some(tx),
            },
            rx,
        )
    }

    fn stop_everything(&mut self) {
        for gate in &self.gates {
            gate.close();
        }
        for stage in &self.stages {
            stage.do_send(StopStage);
        }
    }

    fn settle(&mut self, outcome: JobOutcome, ctx: &mut Context<Self>) {
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(outcome);
        }
        ctx.stop();
    }
}

impl Actor for JobSupervisor {
    type Context = Context<Self>;
}

impl Handler<AdoptStages> for JobSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AdoptStages, _ctx: &mut Context<Self>) {
        self.stages.extend(msg.stages);
        self.gates.extend(msg.gates);
    }
}

impl Handler<StageReport> for JobSupervisor {
    type Result = ();
    fn handle(&mut self, report: StageReport, ctx: &mut Context<Self>) {
        if self.outcome.is_none() {
            return;
        }
        match report {
            StageReport::Finished => {
                self.finished_stages += 1;
                if self.finished_stages == self.expected_stages {
                    tracing::info!(job = %self.job, "job finished");
                    self.settle(Ok(()), ctx);
                }
            }
            StageReport::Failed {
                stage,
                partition,
                failure,
            } => {
                let failure = JobFailure::Operator {
                    job: self.job.clone(),
                    stage,
                    partition,
                    failure,
                };
                tracing::error!(%failure, "job failed; stopping every actor");
                self.stop_everything();
                self.settle(Err(failure), ctx);
            }
        }
    }
}

impl Handler<CancelJob> for JobSupervisor {
    type Result = ();
    fn handle(&mut self, _msg: CancelJob, ctx: &mut Context<Self>) {
        if self.outcome.is_some() {
            self.stop_everything();
            let job = self.job.clone();
            self.settle(Err(JobFailure::Cancelled { job }), ctx);
        }
    }
}
