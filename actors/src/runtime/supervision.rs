//! Handles on the supervision tree: a job's supervisor and its stages' supervisors.

use actix::{Actor, Addr};
use tokio::sync::oneshot;

use crate::mailbox::MailboxGate;
use crate::supervisor::{AdoptStages, CancelJob, JobOutcome, JobSupervisor, StageSupervisor};

/// A running job supervisor: the root of one attempt's supervision tree. Cheap to
/// clone.
#[derive(Clone)]
pub struct JobHandle {
    addr: Addr<JobSupervisor>,
}

impl JobHandle {
    /// Starts the supervisor of an attempt of `job` with `stages` stages; the job's
    /// outcome arrives on the returned receiver once every stage finished, one
    /// failed, or the job was cancelled. Must be called inside a running
    /// [`super::Runtime`].
    pub fn start(job: impl Into<String>, stages: usize) -> (Self, oneshot::Receiver<JobOutcome>) {
        let (supervisor, outcome) = JobSupervisor::new(job, stages);
        (
            JobHandle {
                addr: supervisor.start(),
            },
            outcome,
        )
    }

    /// Hands the job its stage supervisors and every actor's mailbox gate, so that a
    /// failure or a cancellation stops them all.
    pub fn adopt_stages(&self, stages: Vec<StageHandle>, gates: Vec<MailboxGate>) {
        self.addr.do_send(AdoptStages {
            stages: stages.into_iter().map(|s| s.addr).collect(),
            gates,
        });
    }

    /// Cancels the job: its actors stop and its outcome is `Cancelled`.
    pub fn cancel(&self) {
        self.addr.do_send(CancelJob);
    }

    /// The supervisor's address, for the kernel's own actors.
    pub(crate) fn addr(&self) -> &Addr<JobSupervisor> {
        &self.addr
    }
}

/// A running stage supervisor (made by [`super::spawn_stage`]), to be adopted by its
/// job with [`JobHandle::adopt_stages`].
pub struct StageHandle {
    addr: Addr<StageSupervisor>,
}

impl StageHandle {
    /// Wraps a started stage supervisor.
    pub(crate) fn new(addr: Addr<StageSupervisor>) -> Self {
        StageHandle { addr }
    }
}
