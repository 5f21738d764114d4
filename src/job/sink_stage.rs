//! How a sink factory becomes the end of a stage: [`IntoSinkSpec`] lets `Job::sink`
//! take a plain [`SinkFactory`] or a [`TwoPhaseCommitSinkFactory`] alike, and the
//! transactional sink's terminal and spec live here (the plain ones are
//! [`SinkTerminal`](super::terminal::SinkTerminal) and [`SinkSpec`]).

use std::collections::HashMap;
use std::sync::Arc;

use weir_actors::{Outbox, TaskError};

use crate::connector::action_frame::encode_action;
use crate::connector::{
    Committer, SinkError, SinkFactory, SinkRecovery, TwoPhaseCommitSink, TwoPhaseCommitSinkFactory,
};

use super::commits::{StageCommitter, TrackedCommitter};
use super::terminal::{SinkSpec, Terminal, TerminalSpec};

/// Marks the [`IntoSinkSpec`] impl of plain sink factories.
pub enum PlainSink {}

/// Marks the [`IntoSinkSpec`] impl of transactional sink factories.
pub enum TwoPhaseSink {}

/// A sink factory of either kind, turned into the spec of a stage's terminal. `Kind`
/// ([`PlainSink`] or [`TwoPhaseSink`]) is inferred: it only keeps the two blanket
/// impls apart, so that `Job::sink` takes both kinds.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sink of `{T}`",
    label = "not a sink of `{T}`",
    note = "implement `SinkFactory<{T}>` (a plain sink) or `TwoPhaseCommitSinkFactory<{T}>` \
            (a transactional one), not both"
)]
pub trait IntoSinkSpec<T, Kind> {
    /// The terminal spec.
    type Spec: TerminalSpec<T>;
    /// Makes the spec (and, for a transactional sink, the stage's committer).
    fn into_spec(self) -> Self::Spec;
}

impl<T: 'static, F: SinkFactory<T>> IntoSinkSpec<T, PlainSink> for F {
    type Spec = SinkSpec<F>;
    fn into_spec(self) -> SinkSpec<F> {
        SinkSpec(self)
    }
}

impl<T: 'static, F: TwoPhaseCommitSinkFactory<T>> IntoSinkSpec<T, TwoPhaseSink> for F {
    type Spec = TwoPhaseSinkSpec<F, F::Committer>;
    fn into_spec(self) -> Self::Spec {
        TwoPhaseSinkSpec {
            committer: Arc::new(TrackedCommitter::new(self.committer())),
            factory: self,
        }
    }
}

/// A transactional sink at the end of a stage: its pre-committed actions are encoded
/// for the snapshot and noted with the stage's committer.
pub struct TwoPhaseSinkTerminal<S, C> {
    sink: S,
    error: Option<SinkError>,
    committer: Arc<TrackedCommitter<C>>,
    /// Encoded actions this partition has noted with the committer, with the epoch at
    /// whose barrier the sink first returned each. The sink returns an action again
    /// at every barrier until it hears its epoch completed; noting it once keeps an
    /// action committed meanwhile from being noted (and later aborted) again.
    noted: HashMap<Vec<u8>, u64>,
}

impl<T, S, C> Terminal<T> for TwoPhaseSinkTerminal<S, C>
where
    S: TwoPhaseCommitSink<T>,
    C: Committer<Action = S::Action>,
{
    type Wire = ();

    #[inline]
    fn accept(&mut self, item: T, _ts: i64, _out: &mut Outbox<()>) {
        if self.error.is_none() {
            if let Err(e) = self.sink.write(item) {
                self.error = Some(e);
            }
        }
    }

    fn take_error(&mut self) -> Option<TaskError> {
        self.error
            .take()
            .map(|e| TaskError::caused("sink write failed", e))
    }

    fn finish(&mut self, _out: &mut Outbox<()>) -> Result<(), TaskError> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        self.sink
            .finish()
            .map_err(|e| TaskError::caused("sink finish failed", e))
    }

    fn pre_commit(&mut self, epoch: u64, _out: &mut Outbox<()>) -> Result<Vec<Vec<u8>>, TaskError> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        let actions = self
            .sink
            .pre_commit(epoch)
            .map_err(|e| TaskError::caused(format!("sink pre-commit of epoch {epoch}"), e))?;
        let mut encoded = Vec::with_capacity(actions.len());
        for action in &actions {
            let bytes = encode_action(action)
                .map_err(|e| TaskError::caused("encoding a commit action", e))?;
            if !self.noted.contains_key(&bytes) {
                self.committer.pre_committed(&bytes);
                self.noted.insert(bytes.clone(), epoch);
            }
            encoded.push(bytes);
        }
        Ok(encoded)
    }

    fn committed(&mut self, epoch: u64) {
        self.sink.committed(epoch);
        self.noted.retain(|_, first| *first > epoch);
    }
}

/// A transactional sink factory in the role of a terminal spec, with the stage's
/// committer.
pub struct TwoPhaseSinkSpec<F, C> {
    factory: F,
    committer: Arc<TrackedCommitter<C>>,
}

impl<T, F, C> TerminalSpec<T> for TwoPhaseSinkSpec<F, C>
where
    T: 'static,
    F: TwoPhaseCommitSinkFactory<T, Committer = C>,
    C: Committer<Action = <F::Sink as TwoPhaseCommitSink<T>>::Action>,
{
    type Terminal = TwoPhaseSinkTerminal<F::Sink, C>;

    fn describe(&self) -> String {
        format!("sink:{}", self.factory.name())
    }

    /// The rollback first: aborts what this process pre-committed for epochs after
    /// the restored one (recovery has already redone the restored epoch's actions,
    /// which took them off the list). Then the sink's own sweep.
    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        let aborted = self.committer.abort_outstanding()?;
        if aborted > 0 {
            tracing::info!(sink = %self.factory.name(), aborted, restored = ?recovery.restored,
                "rollback: aborted the commit actions of epochs that never completed");
        }
        self.factory.recover(recovery)
    }

    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        Some(self.committer.clone())
    }

    fn build(
        &self,
        partition: u32,
        parallelism: u32,
        _downstream: u32,
        _key_partitions: u32,
    ) -> Result<Self::Terminal, SinkError> {
        Ok(TwoPhaseSinkTerminal {
            sink: self.factory.create(partition, parallelism)?,
            error: None,
            committer: self.committer.clone(),
            noted: HashMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

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

    #[test]
    fn an_action_committed_before_its_partition_heard_so_is_not_aborted_by_a_rollback() {
        let log = Arc::new(Log::default());
        let committer = Arc::new(TrackedCommitter::new(Notes(log.clone())));
        let mut terminal = TwoPhaseSinkTerminal {
            sink: Part {
                buffered: Vec::new(),
                pending: Vec::new(),
            },
            error: None,
            committer: committer.clone(),
            noted: HashMap::new(),
        };
        let mut out: Outbox<()> = Outbox::new(0, Vec::new(), 16);
        Terminal::<u64>::accept(&mut terminal, 1, 0, &mut out);
        let first = Terminal::<u64>::pre_commit(&mut terminal, 1, &mut out).unwrap();
        assert_eq!(first.len(), 1);
        // Epoch 1 completes and its action is committed, but the partition reaches
        // barrier 2 before it hears so: the sink returns epoch 1's action again.
        committer.commit(&first[0]).unwrap();
        Terminal::<u64>::accept(&mut terminal, 2, 0, &mut out);
        let second = Terminal::<u64>::pre_commit(&mut terminal, 2, &mut out).unwrap();
        assert_eq!(second.len(), 2);
        assert_eq!(second[0], first[0]);
        Terminal::<u64>::committed(&mut terminal, 1);
        // Epoch 2 never completes: the rollback aborts its action only.
        assert_eq!(committer.abort_outstanding().unwrap(), 1);
        assert_eq!(*log.aborted.lock().unwrap(), [2]);
        assert_eq!(*log.committed.lock().unwrap(), [1]);
    }
}
