//! A terminal operator fused into the end of a stage: a non-keyed operator type
//! whose output is nothing (`Out = Infallible`), such as a sink, runs inside the
//! stage that feeds it, behind its chain, with no mailbox between them.
//!
//! This is fusion applied to the operator trait itself: the operator's handlers are
//! called exactly as in a stage of its own (open, process, on_watermark, close,
//! snapshot_state with its commit actions, epoch_complete, abort), but records reach
//! it by a function call. Every sink, built-in or a user's, runs this way
//! ([`SinkOperator`](crate::connector::SinkOperator),
//! [`TwoPhaseSinkOperator`](crate::connector::TwoPhaseSinkOperator), or any
//! terminal operator type given to `Stream::sink`).
//!
//! What a fused terminal cannot do is keep operator state of its own: the stage's
//! operator state belongs to the stage's first operator. A terminal operator that
//! writes some fails the snapshot with an error saying so; a sink keeps what it
//! needs across epochs in its commit actions.

use std::convert::Infallible;
use std::sync::Arc;

use weir_actors::state::KeyedState;
use weir_actors::{Outbox, TaskError};

use crate::connector::{SinkError, SinkRecovery};
use crate::operator::{
    Collector, KeyedContext, NoKey, OpenContext, Operator, OperatorStateWriter, SideOutputs,
};

use super::commits::StageCommitter;
use super::terminal::{Terminal, TerminalEnv, TerminalSpec};

/// Where a terminal operator "emits": it has no output, so nothing can arrive.
struct NoOutput;

impl Collector<Infallible> for NoOutput {
    #[inline(always)]
    fn collect(&mut self, item: Infallible) {
        match item {}
    }
}

/// One partition's terminal operator, opened, with the context it runs in.
pub struct OperatorTerminal<Op> {
    op: Op,
    /// A keyed state that owns no key partition: a non-keyed operator's context
    /// refuses keyed state and timers, but reads the node's clock through it.
    state: KeyedState<NoKey>,
    /// A terminal has no side outputs.
    sides: SideOutputs,
    /// The stage's name, which is what feeds the operator (its input's name).
    stage: Arc<str>,
    watermark: i64,
    /// The first failure of a handler called per record (reported after the batch).
    error: Option<TaskError>,
}

impl<Op> OperatorTerminal<Op>
where
    Op: Operator<Key = NoKey, Out = Infallible>,
{
    fn failed(&self, what: &str, e: crate::operator::OperatorError) -> TaskError {
        TaskError::caused(format!("{} {what}", self.op.name()), e)
    }
}

impl<Op> Terminal<Op::In> for OperatorTerminal<Op>
where
    Op: Operator<Key = NoKey, Out = Infallible>,
{
    type Wire = ();

    #[inline]
    fn accept(&mut self, item: Op::In, ts: i64, _out: &mut Outbox<()>) {
        if self.error.is_some() {
            return;
        }
        let mut ctx = KeyedContext {
            state: &mut self.state,
            kp: 0,
            key: &NoKey,
            out: &mut NoOutput,
            ts,
            watermark: self.watermark,
            timer_domain: None,
            sides: &mut self.sides,
            input: 0,
            input_name: &self.stage,
        };
        if let Err(e) = self.op.process(item, &mut ctx) {
            self.error = Some(self.failed("process", e));
        }
    }

    fn take_error(&mut self) -> Option<TaskError> {
        self.error.take()
    }

    fn on_watermark(&mut self, watermark: i64, _out: &mut Outbox<()>) {
        self.watermark = watermark;
        if self.error.is_none() {
            if let Err(e) = self.op.on_watermark(watermark, &mut NoOutput) {
                self.error = Some(self.failed("on_watermark", e));
            }
        }
    }

    fn finish(&mut self, _out: &mut Outbox<()>) -> Result<(), TaskError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.op
            .close(&mut NoOutput)
            .map_err(|e| self.failed("close", e))
    }

    fn pre_commit(&mut self, epoch: u64, _out: &mut Outbox<()>) -> Result<Vec<Vec<u8>>, TaskError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut writer = OperatorStateWriter::new();
        self.op
            .snapshot_state(epoch, &mut writer)
            .map_err(|e| self.failed(&format!("snapshot_state of epoch {epoch}"), e))?;
        if !writer.is_empty() {
            return Err(TaskError::msg(format!(
                "{}: an operator at the end of a stage (a sink) cannot keep operator state; \
                 give it a stage of its own, or keep that state in its commit actions",
                self.op.name()
            )));
        }
        Ok(writer.take_commit_actions())
    }

    fn committed(&mut self, epoch: u64) {
        if let Err(error) = self.op.epoch_complete(epoch) {
            tracing::warn!(operator = %self.op.name(), epoch, %error,
                "the operator's epoch_complete failed; the job goes on");
        }
    }

    fn aborted(&mut self) {
        self.op.abort();
    }
}

/// A terminal operator type in the role of a terminal spec: the value given to the
/// job builder, cloned and opened once per partition.
pub struct OperatorTerminalSpec<Op> {
    op: Op,
}

impl<Op> OperatorTerminalSpec<Op> {
    /// The spec of terminal operator `op`.
    pub fn new(op: Op) -> Self {
        OperatorTerminalSpec { op }
    }
}

/// A terminal operator's failure in a hook that reports a [`SinkError`].
fn as_sink_error(e: crate::operator::OperatorError) -> SinkError {
    match e {
        crate::operator::OperatorError::Sink(e) => e,
        other => SinkError::Failed(other.to_string()),
    }
}

impl<Op> TerminalSpec<Op::In> for OperatorTerminalSpec<Op>
where
    Op: Operator<Key = NoKey, Out = Infallible>,
{
    type Terminal = OperatorTerminal<Op>;

    fn describe(&self) -> String {
        self.op.name()
    }

    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        self.op.recover(recovery).map_err(as_sink_error)
    }

    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        self.op.committer()
    }

    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError> {
        let stage = env.stage.clone();
        let mut state = env
            .store
            .keyed::<NoKey>(
                &super::plan::state_tree_name(env.job, env.stage_index),
                0..0,
                env.clock.clone(),
            )
            .map_err(|e| SinkError::Failed(format!("stage '{stage}': {e}")))?;
        let mut op = self.op.clone();
        let mut queryables = crate::operator::queryable::QueryableStates::default();
        let mut ctx = OpenContext {
            state: &mut state,
            queryables: &mut queryables,
            job: env.job,
            stage: &stage,
            partition: env.partition,
            parallelism: env.parallelism,
        };
        op.open(&mut ctx).map_err(as_sink_error)?;
        Ok(OperatorTerminal {
            op,
            state,
            sides: SideOutputs::default(),
            stage,
            watermark: weir_actors::NO_WATERMARK,
            error: None,
        })
    }
}
