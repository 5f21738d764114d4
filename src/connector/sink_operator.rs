//! Sinks as operator types: a sink factory of either kind becomes a non-keyed
//! [`Operator`] whose output is nothing, written on the same trait as every other
//! operator. `Stream::sink` wraps the factory it is given in one of these; the
//! engine fuses it into the end of the stage that feeds it
//! ([`operator_terminal`](crate::job::operator_terminal)).
//!
//! How the handlers map onto a sink's life:
//!
//! | handler            | plain sink ([`SinkOperator`]) | transactional sink ([`TwoPhaseSinkOperator`]) |
//! |--------------------|-------------------------------|-----------------------------------------------|
//! | `open`             | `SinkFactory::create`         | `TwoPhaseCommitSinkFactory::create`           |
//! | `process`          | `Sink::write`                 | `TwoPhaseCommitSink::write`                   |
//! | `snapshot_state`   | `Sink::flush`                 | `pre_commit`, its actions handed to the engine |
//! | `epoch_complete`   | nothing                       | `TwoPhaseCommitSink::committed`               |
//! | `close`            | `Sink::finish`                | `TwoPhaseCommitSink::finish`                  |
//! | `committer`        | none                          | the factory's `Committer`, with the abort registry |
//! | `recover`          | `SinkFactory::recover`        | abort what never completed, then the factory's `recover` |
//!
//! A terminal operator of your own (any `Operator<Key = NoKey, Out = Infallible>`)
//! takes the same path: `Stream::sink` accepts it directly.

use std::collections::HashMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::job::commits::{StageCommitter, TrackedCommitter};
use crate::operator::{
    KeyedContext, NoKey, OpenContext, Operator, OperatorError, OperatorStateWriter,
};

use super::action_frame::encode_action;
use super::sink::{Sink, SinkError, SinkFactory, SinkRecovery};
use super::two_phase::{TwoPhaseCommitSink, TwoPhaseCommitSinkFactory};

/// A factory shared by the clones of its operator (one per partition): it is only
/// asked to create a partition's sink and to recover, never in the record path.
struct SharedFactory<F>(Arc<Mutex<F>>);

impl<F> Clone for SharedFactory<F> {
    fn clone(&self) -> Self {
        SharedFactory(self.0.clone())
    }
}

impl<F> SharedFactory<F> {
    fn new(factory: F) -> Self {
        SharedFactory(Arc::new(Mutex::new(factory)))
    }

    /// The factory (a panic while it was held does not make it unusable: it holds
    /// no invariant a panic could break half way).
    fn get(&self) -> MutexGuard<'_, F> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What both sink operators hold: the factory, the sink's name, and the
/// partition's sink once `open` created it.
struct PartitionSink<F, S> {
    factory: SharedFactory<F>,
    name: String,
    sink: Option<S>,
}

impl<F, S> PartitionSink<F, S> {
    fn new(factory: F, name: String) -> Self {
        PartitionSink {
            factory: SharedFactory::new(factory),
            name: format!("sink:{name}"),
            sink: None,
        }
    }

    /// A copy as the builder left it: the same factory, no partition sink yet.
    fn unopened(&self) -> Self {
        PartitionSink {
            factory: self.factory.clone(),
            name: self.name.clone(),
            sink: None,
        }
    }

    /// Creates the partition's sink with `create(factory, partition, parallelism)`.
    fn open(
        &mut self,
        ctx: &OpenContext<'_, NoKey>,
        create: impl FnOnce(&F, u32, u32) -> Result<S, SinkError>,
    ) -> Result<(), OperatorError> {
        let sink = create(&self.factory.get(), ctx.partition(), ctx.parallelism())?;
        self.sink = Some(sink);
        Ok(())
    }

    /// The partition's sink; an error if `open` has not created it.
    fn sink(&mut self) -> Result<&mut S, OperatorError> {
        match self.sink.as_mut() {
            Some(sink) => Ok(sink),
            None => Err(OperatorError::msg(format!(
                "{}: used before open created the partition's sink",
                self.name
            ))),
        }
    }
}

/// A plain sink as an operator: one partition's [`Sink`], created in `open` by the
/// [`SinkFactory`] (at-least-once under recovery; see [`Sink`]).
pub struct SinkOperator<F: SinkFactory<T>, T> {
    part: PartitionSink<F, F::Sink>,
    _in: PhantomData<fn(T)>,
}

impl<F: SinkFactory<T>, T> SinkOperator<F, T> {
    /// The operator that writes through the sinks `factory` creates.
    pub fn new(factory: F) -> Self {
        let name = factory.name();
        SinkOperator {
            part: PartitionSink::new(factory, name),
            _in: PhantomData,
        }
    }
}

/// Clones the operator as the builder left it: a clone has no partition sink until
/// its own `open`.
impl<F: SinkFactory<T>, T> Clone for SinkOperator<F, T> {
    fn clone(&self) -> Self {
        SinkOperator {
            part: self.part.unopened(),
            _in: PhantomData,
        }
    }
}

impl<F, T> Operator for SinkOperator<F, T>
where
    F: SinkFactory<T>,
    T: Send + Unpin + 'static,
{
    type Key = NoKey;
    type In = T;
    type Out = Infallible;

    fn name(&self) -> String {
        self.part.name.clone()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, NoKey>) -> Result<(), OperatorError> {
        self.part.open(ctx, |f, partition, parallelism| {
            f.create(partition, parallelism)
        })
    }

    #[inline]
    fn process(
        &mut self,
        value: T,
        _ctx: &mut KeyedContext<'_, NoKey, Infallible>,
    ) -> Result<(), OperatorError> {
        Ok(self.part.sink()?.write(value)?)
    }

    fn close(
        &mut self,
        _out: &mut dyn crate::operator::Collector<Infallible>,
    ) -> Result<(), OperatorError> {
        Ok(self.part.sink()?.finish()?)
    }

    /// The barrier: what was written before it is made durable where it goes.
    fn snapshot_state(
        &mut self,
        epoch: u64,
        _state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        self.part
            .sink()?
            .flush(epoch)
            .map_err(|e| OperatorError::msg(format!("flush at the barrier of epoch {epoch}: {e}")))
    }

    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), OperatorError> {
        Ok(self.part.factory.get().recover(recovery)?)
    }
}

/// A transactional sink as an operator: one partition's [`TwoPhaseCommitSink`],
/// whose actions it hands to the engine at each barrier, and the stage's
/// [`Committer`](super::Committer) (with the record of what this process
/// pre-committed, which a rollback aborts).
pub struct TwoPhaseSinkOperator<F: TwoPhaseCommitSinkFactory<T>, T> {
    part: PartitionSink<F, F::Sink>,
    committer: Arc<TrackedCommitter<F::Committer>>,
    /// Encoded actions this partition has noted with the committer, with the epoch
    /// at whose barrier the sink first returned each. The sink returns an action
    /// again at every barrier until it hears its epoch completed; noting it once
    /// keeps an action committed meanwhile from being noted (and later aborted)
    /// again.
    noted: HashMap<Vec<u8>, u64>,
    _in: PhantomData<fn(T)>,
}

impl<F: TwoPhaseCommitSinkFactory<T>, T> TwoPhaseSinkOperator<F, T> {
    /// The operator that stages through the sinks `factory` creates and commits
    /// through its committer (made once, here, for the life of the job).
    pub fn new(factory: F) -> Self {
        let name = factory.name();
        TwoPhaseSinkOperator {
            committer: Arc::new(TrackedCommitter::new(factory.committer())),
            part: PartitionSink::new(factory, name),
            noted: HashMap::new(),
            _in: PhantomData,
        }
    }
}

/// Clones the operator as the builder left it: the clone shares the committer, and
/// has no partition sink until its own `open`.
impl<F: TwoPhaseCommitSinkFactory<T>, T> Clone for TwoPhaseSinkOperator<F, T> {
    fn clone(&self) -> Self {
        TwoPhaseSinkOperator {
            part: self.part.unopened(),
            committer: self.committer.clone(),
            noted: HashMap::new(),
            _in: PhantomData,
        }
    }
}

impl<F, T> Operator for TwoPhaseSinkOperator<F, T>
where
    F: TwoPhaseCommitSinkFactory<T>,
    T: Send + Unpin + 'static,
{
    type Key = NoKey;
    type In = T;
    type Out = Infallible;

    fn name(&self) -> String {
        self.part.name.clone()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, NoKey>) -> Result<(), OperatorError> {
        self.part.open(ctx, |f, partition, parallelism| {
            f.create(partition, parallelism)
        })
    }

    #[inline]
    fn process(
        &mut self,
        value: T,
        _ctx: &mut KeyedContext<'_, NoKey, Infallible>,
    ) -> Result<(), OperatorError> {
        Ok(self.part.sink()?.write(value)?)
    }

    /// The input ended; the final barrier that follows stages the last output.
    fn close(
        &mut self,
        _out: &mut dyn crate::operator::Collector<Infallible>,
    ) -> Result<(), OperatorError> {
        Ok(self.part.sink()?.finish()?)
    }

    /// The pre-commit: the sink stages what it received since the last barrier and
    /// returns the actions that will make it visible; each is encoded, noted with
    /// the committer (once), and handed to the engine with the epoch's snapshot.
    fn snapshot_state(
        &mut self,
        epoch: u64,
        state: &mut OperatorStateWriter,
    ) -> Result<(), OperatorError> {
        let actions =
            self.part.sink()?.pre_commit(epoch).map_err(|e| {
                OperatorError::msg(format!("sink pre-commit of epoch {epoch}: {e}"))
            })?;
        for action in &actions {
            let encoded = encode_action(action).map_err(SinkError::from)?;
            if !self.noted.contains_key(&encoded) {
                self.committer.pre_committed(&encoded);
                self.noted.insert(encoded.clone(), epoch);
            }
            state.commit_action(encoded);
        }
        Ok(())
    }

    fn epoch_complete(&mut self, epoch: u64) -> Result<(), OperatorError> {
        self.part.sink()?.committed(epoch);
        self.noted.retain(|_, first| *first > epoch);
        Ok(())
    }

    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        Some(self.committer.clone())
    }

    /// The rollback first: aborts what this process pre-committed for epochs after
    /// the restored one (recovery has already redone the restored epoch's actions,
    /// which took them off the list). Then the sink's own sweep.
    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), OperatorError> {
        let aborted = self.committer.abort_outstanding()?;
        if aborted > 0 {
            tracing::info!(sink = %self.part.name, aborted, restored = ?recovery.restored,
                "rollback: aborted the commit actions of epochs that never completed");
        }
        Ok(self.part.factory.get().recover(recovery)?)
    }
}
