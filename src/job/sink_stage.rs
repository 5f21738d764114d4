//! How a sink becomes the end of a stage: [`IntoSinkSpec`] lets `Stream::sink` take
//! a plain [`SinkFactory`], a [`TwoPhaseCommitSinkFactory`], or a terminal operator
//! type of your own alike. Each becomes an operator type
//! ([`SinkOperator`], [`TwoPhaseSinkOperator`], or yours) run fused at the end of
//! the stage ([`OperatorTerminalSpec`]).

use std::convert::Infallible;

use crate::connector::{
    SinkFactory, SinkOperator, TwoPhaseCommitSinkFactory, TwoPhaseSinkOperator,
};
use crate::operator::{NoKey, Operator};

use super::operator_terminal::OperatorTerminalSpec;
use super::terminal::TerminalSpec;

/// Marks the [`IntoSinkSpec`] impl of plain sink factories.
pub enum PlainSink {}

/// Marks the [`IntoSinkSpec`] impl of transactional sink factories.
pub enum TwoPhaseSink {}

/// Marks the [`IntoSinkSpec`] impl of terminal operator types (non-keyed operators
/// whose output is nothing).
pub enum TerminalOperator {}

/// A sink of any kind, turned into the spec of a stage's terminal. `Kind`
/// ([`PlainSink`], [`TwoPhaseSink`] or [`TerminalOperator`]) is inferred: it only
/// keeps the blanket impls apart, so that `Stream::sink` takes every kind.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sink of `{T}`",
    label = "not a sink of `{T}`",
    note = "implement `SinkFactory<{T}>` (a plain sink), `TwoPhaseCommitSinkFactory<{T}>` \
            (a transactional one), or `Operator<Key = NoKey, In = {T}, Out = Infallible>` \
            (a terminal operator), only one of them"
)]
pub trait IntoSinkSpec<T, Kind> {
    /// The terminal spec.
    type Spec: TerminalSpec<T>;
    /// Makes the spec.
    fn into_spec(self) -> Self::Spec;
}

impl<T, F> IntoSinkSpec<T, PlainSink> for F
where
    T: Send + Unpin + 'static,
    F: SinkFactory<T>,
{
    type Spec = OperatorTerminalSpec<SinkOperator<F, T>>;
    fn into_spec(self) -> Self::Spec {
        OperatorTerminalSpec::new(SinkOperator::new(self))
    }
}

impl<T, F> IntoSinkSpec<T, TwoPhaseSink> for F
where
    T: Send + Unpin + 'static,
    F: TwoPhaseCommitSinkFactory<T>,
{
    type Spec = OperatorTerminalSpec<TwoPhaseSinkOperator<F, T>>;
    fn into_spec(self) -> Self::Spec {
        OperatorTerminalSpec::new(TwoPhaseSinkOperator::new(self))
    }
}

impl<T, Op> IntoSinkSpec<T, TerminalOperator> for Op
where
    Op: Operator<Key = NoKey, In = T, Out = Infallible>,
{
    type Spec = OperatorTerminalSpec<Op>;
    fn into_spec(self) -> Self::Spec {
        OperatorTerminalSpec::new(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::connector::{Committer, SinkError, SinkRecovery, TwoPhaseCommitSink};
    use crate::operator::harness::OperatorHarness;

    /// Stages each epoch's records as one action, and returns every action again
    /// until it hears its epoch completed (like the built-in sinks).
    struct Part {
        buffered: Vec<u64>,
        pending: Vec<(u64, Vec<u64>)>,
    }

    impl TwoPhaseCommitSink<u64> for Part {
        type Action = (u64, Vec<u64>);
        fn write(&mut self, item: u64) -> Result<(), SinkError> {
            self.buffered.push(item);
            Ok(())
        }
        fn pre_commit(&mut self, epoch: u64) -> Result<Vec<(u64, Vec<u64>)>, SinkError> {
            if !self.buffered.is_empty() {
                self.pending
                    .push((epoch, std::mem::take(&mut self.buffered)));
            }
            Ok(self.pending.clone())
        }
        fn committed(&mut self, epoch: u64) {
            self.pending.retain(|(e, _)| *e > epoch);
        }
    }

    #[derive(Default)]
    struct Log {
        committed: Mutex<Vec<u64>>,
        aborted: Mutex<Vec<u64>>,
    }

    struct Notes(Arc<Log>);

    impl Committer for Notes {
        type Action = (u64, Vec<u64>);
        fn commit(&self, action: &(u64, Vec<u64>)) -> Result<(), SinkError> {
            self.0.committed.lock().unwrap().push(action.0);
            Ok(())
        }
        fn abort(&self, action: &(u64, Vec<u64>)) -> Result<(), SinkError> {
            self.0.aborted.lock().unwrap().push(action.0);
            Ok(())
        }
    }

    /// A factory of [`Part`] sinks committing into a [`Log`].
    struct Parts(Arc<Log>);

    impl TwoPhaseCommitSinkFactory<u64> for Parts {
        type Sink = Part;
        type Committer = Notes;
        fn name(&self) -> String {
            "parts".into()
        }
        fn create(&self, _partition: u32, _parallelism: u32) -> Result<Part, SinkError> {
            Ok(Part {
                buffered: Vec::new(),
                pending: Vec::new(),
            })
        }
        fn committer(&self) -> Notes {
            Notes(self.0.clone())
        }
    }

    #[test]
    fn an_action_committed_before_its_partition_heard_so_is_not_aborted_by_a_rollback() {
        let log = Arc::new(Log::default());
        let op = TwoPhaseSinkOperator::new(Parts(log.clone()));
        let committer = op
            .committer()
            .expect("a transactional sink has a committer");
        let mut harness = OperatorHarness::new(op.clone()).unwrap();
        harness.process_element(NoKey, 1, 0).unwrap();
        let first = harness.snapshot().unwrap().commit_actions().to_vec();
        assert_eq!(first.len(), 1);
        // Epoch 1 completes and its action is committed, but the partition reaches
        // barrier 2 before it hears so: the sink returns epoch 1's action again.
        committer.commit(&first[0]).unwrap();
        harness.process_element(NoKey, 2, 0).unwrap();
        let second = harness.snapshot().unwrap().commit_actions().to_vec();
        assert_eq!(second.len(), 2);
        assert_eq!(second[0], first[0]);
        harness.complete_epoch(1);
        // Epoch 2 never completes: the rollback (before the next run) aborts its
        // action only.
        let recovery = SinkRecovery {
            restored: Some(1),
            state_dir: None,
        };
        op.recover(&recovery).unwrap();
        assert_eq!(*log.aborted.lock().unwrap(), [2]);
        assert_eq!(*log.committed.lock().unwrap(), [1]);
    }
}
