//! What a partition actor runs: a [`Task`].
//!
//! The kernel owns mailboxes, markers, supervision and flow control; a task owns the
//! user-visible work of one partition of one stage: turning input batches into output
//! records (or, for a source, producing records from nothing).

use crate::outbox::Outbox;

/// An error a task reports instead of panicking; it fails the job like a panic does.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task's own code reported a failure.
    #[error("{0}")]
    Failed(String),
    /// A failure with an underlying cause, described by `context`.
    #[error("{context}: {source}")]
    Caused {
        /// What the task was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TaskError {
    /// A failure described by a message.
    pub fn msg(message: impl Into<String>) -> Self {
        TaskError::Failed(message.into())
    }

    /// A failure caused by `source` while doing `context`.
    pub fn caused(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        TaskError::Caused {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// What a source's [`Task::pump`] reports after producing a round of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Call `pump` again once the output has been sent.
    More,
    /// No more input is available right now: the actor sends its partly filled
    /// batches (so records do not wait for a batch to fill) and pumps again shortly.
    Idle,
    /// The source is exhausted: the actor ends its outputs and finishes.
    Exhausted,
}

/// The work of one partition of one stage.
///
/// A task with no inputs is a source: the actor calls [`Task::pump`] in a loop, sending
/// what each round produced (and waiting on backpressure) before the next round. A
/// task with inputs handles batches as they arrive and learns through
/// [`Task::end_of_input`] that every input has ended.
///
/// Every method runs on the actor's worker thread; a panic inside any of them is
/// caught and fails the job with the stage, partition and panic message.
pub trait Task: Send + 'static {
    /// Records this task receives.
    type In: Send + Unpin + 'static;
    /// Records this task emits.
    type Out: Send + Unpin + 'static;

    /// Called once when the actor starts, before any input.
    fn start(&mut self, _out: &mut Outbox<Self::Out>) -> Result<(), TaskError> {
        Ok(())
    }

    /// Handles one batch of records from upstream partition `from`.
    fn on_batch(
        &mut self,
        from: u32,
        batch: Vec<Self::In>,
        out: &mut Outbox<Self::Out>,
    ) -> Result<(), TaskError>;

    /// For sources: produce one round of records (a bounded amount of work, so that
    /// control messages are handled between rounds).
    fn pump(&mut self, _out: &mut Outbox<Self::Out>) -> Result<Pumped, TaskError> {
        Ok(Pumped::Exhausted)
    }

    /// The actor's watermark (the minimum over its active inputs) advanced to
    /// `watermark`: fire what it completes. The kernel forwards the watermark
    /// downstream after this returns, so what is emitted here precedes it.
    fn on_watermark(
        &mut self,
        _watermark: i64,
        _out: &mut Outbox<Self::Out>,
    ) -> Result<(), TaskError> {
        Ok(())
    }

    /// Visits the task's outputs besides the main one (side outputs, the routes of a
    /// stage whose output several stages read): the kernel sends them like the
    /// main output (same backpressure, markers broadcast to them too).
    fn extra_outputs(&mut self, _visit: &mut dyn FnMut(&mut dyn crate::side::SideOutput)) {}

    /// Whether the task has outputs besides the main one (asked once, at start).
    fn has_extra_outputs(&self) -> bool {
        false
    }

    /// For sources: how many records the task has read so far (reported as the
    /// actor's records in; what it emits may differ, e.g. after pre-aggregation).
    fn records_read(&self) -> u64 {
        0
    }

    /// For sources: how many bytes of input the task has consumed so far (0 when
    /// its input is not bytes).
    fn bytes_read(&self) -> u64 {
        0
    }

    /// The processing time (ms since the Unix epoch) at which the task next wants
    /// [`Task::on_processing_time`] called, if any. Asked after every message.
    fn next_deadline(&self) -> Option<i64> {
        None
    }

    /// The wall clock reached `now_ms` (at or after the deadline the task gave).
    fn on_processing_time(
        &mut self,
        _now_ms: i64,
        _out: &mut Outbox<Self::Out>,
    ) -> Result<(), TaskError> {
        Ok(())
    }

    /// Every input has ended (or the source is exhausted): emit what is still held
    /// back and make state durable. The kernel then forwards `EndOfInput`.
    fn end_of_input(&mut self, _out: &mut Outbox<Self::Out>) -> Result<(), TaskError> {
        Ok(())
    }

    /// An epoch barrier: everything before it on every input has been handled. Return
    /// the snapshot of this partition (cheaply: the bytes are written by another
    /// thread while the actor goes on). Output emitted here precedes the barrier. Also
    /// called once after [`Task::end_of_input`] for the final snapshot.
    fn snapshot(
        &mut self,
        _epoch: u64,
        _out: &mut Outbox<Self::Out>,
    ) -> Result<crate::checkpoint::TaskSnapshot, TaskError> {
        Ok(crate::checkpoint::TaskSnapshot::default())
    }

    /// Epoch `epoch` is complete (its manifest is durable and the commit actions up
    /// to it ran).
    fn epoch_complete(&mut self, _epoch: u64) {}

    /// The actor is stopping, after finishing or because its job failed.
    fn stopped(&mut self) {}

    /// The actor is stopping before its input ended (its job failed or is being
    /// cancelled): called before [`Task::stopped`], so the task can discard what it
    /// started since the last complete epoch.
    fn aborted(&mut self) {}

    /// Reads one key's state for a query from outside the job (read-only). The
    /// default: this task holds no queryable state.
    fn query(&mut self, _query: &crate::query::StateQuery) -> crate::query::QueryAnswer {
        crate::query::QueryAnswer::BadRequest("this stage holds no queryable state".into())
    }
}
