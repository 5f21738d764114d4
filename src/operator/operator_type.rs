//! The operator trait: what a user's operator type implements.
//!
//! An operator type is a user's own Rust type. Its fields are the operator's own
//! state (one copy per partition actor: the value given to the job builder is cloned
//! into each), its handlers have defaults, and the engine runs one partition actor
//! per partition of it. The built-in operators (reduce, aggregate, windows, joins)
//! implement this same trait; the stateless ones (map, filter, flat_map) implement
//! [`Chain`](super::Chain), which the engine fuses into one loop, and are operators
//! too (see [`super::fused`]).
//!
//! Keyed operators (`Key` is a real key type) see each record with its key's state
//! in scope and may set timers. Non-keyed operators (`Key = NoKey`) keep operator
//! state in their fields and hand it to the engine in
//! [`Operator::snapshot_state`]; on a restore at another parallelism the engine
//! redistributes it (list, union or broadcast, as Flink's operator state).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::connector::SinkRecovery;
use crate::job::commits::StageCommitter;

use super::chain::Collector;
use super::error::OperatorError;
use super::keyed::{Key, KeyedContext, OpenContext};
use super::operator_state::{OperatorStateReader, OperatorStateWriter};

/// The key of a non-keyed operator: its records are not grouped by key, it has no
/// keyed state and no timers; its own fields, snapshotted as operator state, are its
/// state.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct NoKey;

/// An operator type: the user's own type whose handlers the engine calls, one copy
/// per partition actor (the equivalent of Flink's `KeyedProcessFunction`,
/// `ProcessFunction` and `CoProcessFunction` in one trait).
///
/// Every handler but [`Operator::process`] has a default that does nothing. A
/// two-input operator (`connect`, joins) takes `In = Either<L, R>`
/// ([`Either`](super::Either)); a broadcast-state operator also implements
/// [`BroadcastProcess`](super::BroadcastProcess).
pub trait Operator: Clone + Send + 'static {
    /// The key type; records arrive grouped by it. [`NoKey`] for a non-keyed operator.
    type Key: Key;
    /// The value of each incoming record.
    type In: Send + Unpin + 'static;
    /// What the operator emits.
    type Out: 'static;

    /// A short name for stage names, metrics and errors.
    fn name(&self) -> String {
        "process".to_string()
    }

    /// Called once per partition actor before any record (after
    /// [`Operator::restore_state`] on a restore): register keyed state here.
    fn open(&mut self, _ctx: &mut OpenContext<'_, Self::Key>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Handles one record. [`KeyedContext::input`] says which input of the stage it
    /// came from (for a `union`), [`KeyedContext::key`] its key.
    fn process(
        &mut self,
        value: Self::In,
        ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), OperatorError>;

    /// Called when a timer of the current key fires: an event-time timer when the
    /// watermark reaches `timestamp`, a processing-time timer when the wall clock does
    /// ([`KeyedContext::timer_domain`] says which). The key's state is in scope and
    /// emitted records carry `timestamp`. Timers fire in timestamp order, each once.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The operator's watermark (the minimum over its inputs, idle ones excluded)
    /// advanced to `watermark`, after the event-time timers it makes due fired.
    /// What is emitted here precedes the watermark downstream.
    fn on_watermark(
        &mut self,
        _watermark: i64,
        _out: &mut dyn Collector<Self::Out>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Called once when every input has ended; may emit final results.
    fn close(&mut self, _out: &mut dyn Collector<Self::Out>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// An epoch barrier passed this partition: write the operator's own non-keyed
    /// state (its fields) into `state`. Keyed state is snapshotted by the engine.
    fn snapshot_state(
        &mut self,
        _epoch: u64,
        _state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The job restores a snapshot: read back what [`Operator::snapshot_state`]
    /// wrote, redistributed over this run's partitions. Called before
    /// [`Operator::open`], and only on a restore.
    fn restore_state(&mut self, _state: &OperatorStateReader) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Epoch `epoch` is complete: its snapshot is durable and the sinks committed
    /// it (e.g. to acknowledge input to an outside system). Not called for the
    /// final epoch of a bounded job, which completes after the partition actors
    /// stopped.
    fn epoch_complete(&mut self, _epoch: u64) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The run is being torn down after a failure, before its input ended: the job
    /// will restart from its last complete epoch, so anything this partition did
    /// outside the engine since then is to be discarded.
    fn abort(&mut self) {}

    /// For a transactional operator (a two-phase-commit sink, or any operator whose
    /// effects outside the engine must become visible only with a complete epoch):
    /// the stage's committer, which commits the actions the partitions hand over in
    /// [`Operator::snapshot_state`]
    /// ([`OperatorStateWriter::commit_action`]) once their epoch is complete, and
    /// redoes them on recovery. Asked of the value given to the job builder; one
    /// committer serves every partition and every run. `None` by default.
    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        None
    }

    /// Called on the value given to the job builder before each run and each
    /// restart, after recovery redid the restored epoch's commit actions and before
    /// any partition opens: an operator with effects outside the engine discards
    /// what a run that never completed its epoch left behind (e.g. staged output of
    /// later epochs). Does nothing by default.
    fn recover(&self, _recovery: &SinkRecovery<'_>) -> Result<(), OperatorError> {
        Ok(())
    }
}
