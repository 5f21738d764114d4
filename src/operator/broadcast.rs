//! Broadcast state: a keyed operator that also reads a broadcast stream (rules,
//! configuration), as in Flink's broadcast state pattern.
//!
//! Every partition of the keyed operator receives every record of the broadcast
//! stream, through [`BroadcastProcess::process_broadcast`], and keeps what it
//! learns in its own fields: that is its broadcast state. It snapshots that state
//! with [`OperatorStateWriter::broadcast`](super::OperatorStateWriter::broadcast),
//! and a restore at any parallelism gives every partition one copy. Every partition
//! sees the broadcast records in the order the broadcast stream's partition sent
//! them; with a broadcast stream of one partition (a rules file, a rules topic of
//! one partition), every partition's broadcast state is the same.

use super::chain::Collector;
use super::error::OperatorError;
use super::operator_type::Operator;

/// Given to [`BroadcastProcess::process_broadcast`]: the record's timestamp, the
/// operator's watermark, and the output. There is no current key.
pub struct BroadcastContext<'a, O> {
    pub(crate) out: &'a mut dyn Collector<O>,
    pub(crate) ts: i64,
    pub(crate) watermark: i64,
    pub(crate) partition: u32,
}

impl<O> BroadcastContext<'_, O> {
    /// The broadcast record's timestamp.
    pub fn timestamp(&self) -> i64 {
        self.ts
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// This partition actor's index within its stage.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Emits one record downstream (with the broadcast record's timestamp).
    pub fn emit(&mut self, item: O) {
        self.out.collect(item);
    }
}

/// A keyed operator that also reads a broadcast stream (Flink's
/// `KeyedBroadcastProcessFunction`): records of the keyed stream go to
/// [`Operator::process`] with their key's state, records of the broadcast stream to
/// [`BroadcastProcess::process_broadcast`] on every partition.
pub trait BroadcastProcess: Operator {
    /// The records of the broadcast stream.
    type Rule: Send + Unpin + 'static;

    /// Handles one broadcast record; update the operator's broadcast state (its
    /// fields) here.
    fn process_broadcast(
        &mut self,
        rule: Self::Rule,
        ctx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<(), OperatorError>;
}
