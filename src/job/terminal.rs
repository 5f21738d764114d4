//! The end of a stage's chain: a terminal operator such as a sink (see
//! [`operator_terminal`](super::operator_terminal)), or a key exchange that sends each
//! record to the partition actor of the next stage that owns its key partition.

use std::marker::PhantomData;
use std::sync::Arc;

use weir_actors::{Outbox, TaskError};

use crate::connector::{SinkError, SinkRecovery};
use crate::operator::Either;
use crate::operator::{Collector, Key};
use crate::partition::{key_partition, owner_of, KeyEncodeError};
use crate::record::Keyed;

use super::commits::StageCommitter;

/// Receives the records that leave a stage's chain.
pub trait Terminal<T>: Send + 'static {
    /// What crosses to the next stage (`()` for a sink): [`Data`](crate::exchange::Data),
    /// so that a channel may carry it to another node.
    type Wire: crate::exchange::Data;
    /// Takes one record with its timestamp.
    fn accept(&mut self, item: T, ts: i64, out: &mut Outbox<Self::Wire>);
    /// A failure noted by `accept` (reported after the batch).
    fn take_error(&mut self) -> Option<TaskError>;
    /// The stage's watermark advanced to `watermark` (called before the watermark is
    /// sent on, so what is emitted here precedes it).
    fn on_watermark(&mut self, _watermark: i64, _out: &mut Outbox<Self::Wire>) {}
    /// The input has ended.
    fn finish(&mut self, out: &mut Outbox<Self::Wire>) -> Result<(), TaskError>;
    /// An epoch barrier: send on what is held back (it must precede the barrier) and
    /// return the sink's encoded commit actions for the epoch.
    fn pre_commit(
        &mut self,
        _epoch: u64,
        _out: &mut Outbox<Self::Wire>,
    ) -> Result<Vec<Vec<u8>>, TaskError> {
        Ok(Vec::new())
    }
    /// Epoch `epoch` is complete.
    fn committed(&mut self, _epoch: u64) {}
    /// The run is being torn down after a failure, before the input ended.
    fn aborted(&mut self) {}
    /// Visits the terminal's own outputs (the routes of a fan-out), which the
    /// kernel sends besides the stage's main output.
    fn extra_outputs(&mut self, _visit: &mut dyn FnMut(&mut dyn weir_actors::SideOutput)) {}
    /// Whether the terminal has outputs of its own.
    fn has_extra_outputs(&self) -> bool {
        false
    }
}

/// Builds one partition's terminal.
pub trait TerminalSpec<T>: Send + 'static {
    /// The terminal.
    type Terminal: Terminal<T>;
    /// A short name for the stage name.
    fn describe(&self) -> String;
    /// Before a run: a transactional sink discards what a run that did not complete
    /// its epoch staged.
    fn recover(&self, _recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        Ok(())
    }
    /// The committer of the stage's transactional sink, if it ends in one: commits
    /// (and, at recovery, redoes) the actions its partitions pre-commit.
    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        None
    }
    /// The terminal for one partition, given everything the stage is wired to
    /// (a fan-out builds one route per consumer from it).
    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError>;
}

/// What a terminal of one partition is built with.
pub struct TerminalEnv<'a> {
    /// The partition's index in its stage.
    pub partition: u32,
    /// The stage's partitions.
    pub parallelism: u32,
    /// The partitions of the stage the main output feeds (0 when none).
    pub receivers: u32,
    /// The job's key partitions `P`.
    pub key_partitions: u32,
    /// Records per batch on the wire.
    pub batch_size: usize,
    /// How records cross the exchanges.
    pub exchange: crate::exchange::ExchangeMode,
    /// Every output of the stage, wired to its receivers.
    pub outputs: &'a [crate::job::plan::OutputWire],
    /// The job's name.
    pub(crate) job: &'a str,
    /// The stage's name.
    pub(crate) stage: &'a std::sync::Arc<str>,
    /// The stage's index in the job (names its state tree).
    pub(crate) stage_index: u32,
    /// The node's state store: a terminal operator's context opens a keyed state
    /// in it that owns no key partition.
    pub(crate) store: &'a weir_actors::state::StateStore,
    /// The node's clock.
    pub(crate) clock: std::sync::Arc<dyn weir_actors::state::Clock>,
}

/// Feeds records into a terminal and its outbox.
pub(crate) struct IntoTerminal<'a, Tm, W: Send + 'static> {
    pub term: &'a mut Tm,
    pub out: &'a mut Outbox<W>,
    /// The timestamp of the record being pushed (outputs inherit their input's).
    pub ts: i64,
}

impl<T, Tm: Terminal<T>> Collector<T> for IntoTerminal<'_, Tm, Tm::Wire> {
    #[inline(always)]
    fn collect(&mut self, item: T) {
        self.term.accept(item, self.ts, self.out);
    }
    #[inline(always)]
    fn set_timestamp(&mut self, ts: i64) {
        self.ts = ts;
    }
}

/// Splits a record into its key and the value that travels with it.
pub trait KeySelector<T>: Clone + Send + 'static {
    /// The key.
    type Key: Key;
    /// The value: [`Data`](crate::exchange::Data), as it crosses the exchange.
    type Value: crate::exchange::Data;
    /// Splits `item`.
    fn split(&self, item: T) -> (Self::Key, Self::Value);
}

/// Keys a record by a function of it; the whole record travels as the value.
pub struct KeyBy<F, K> {
    pub(crate) f: F,
    pub(crate) _key: PhantomData<fn() -> K>,
}

impl<F: Clone, K> Clone for KeyBy<F, K> {
    fn clone(&self) -> Self {
        KeyBy {
            f: self.f.clone(),
            _key: PhantomData,
        }
    }
}

impl<T: crate::exchange::Data, K: Key, F: Fn(&T) -> K + Clone + Send + 'static> KeySelector<T>
    for KeyBy<F, K>
{
    type Key = K;
    type Value = T;
    #[inline(always)]
    fn split(&self, item: T) -> (K, T) {
        ((self.f)(&item), item)
    }
}

/// Keys a `(key, value)` pair by its first element.
pub struct PairKey<K, V>(pub(crate) PhantomData<fn() -> (K, V)>);

impl<K, V> Clone for PairKey<K, V> {
    fn clone(&self) -> Self {
        PairKey(PhantomData)
    }
}

impl<K: Key, V: crate::exchange::Data> KeySelector<(K, V)> for PairKey<K, V> {
    type Key = K;
    type Value = V;
    #[inline(always)]
    fn split(&self, item: (K, V)) -> (K, V) {
        item
    }
}

/// A record keyed by selector `Sel` (of records `T`), as it crosses the exchange.
pub type KeyedBy<Sel, T> = Keyed<<Sel as KeySelector<T>>::Key, <Sel as KeySelector<T>>::Value>;

/// Routes records by key: splits each into its key and value, and finds the
/// receiver that owns its key partition. Shared by every exchange that sends keyed
/// records (the key exchange, the keyed side of a broadcast-state stage).
pub(crate) struct KeyRouter<Sel> {
    selector: Sel,
    key_partitions: u32,
    downstream: u32,
    /// The first key that did not encode: the stage fails with it after the batch.
    error: Option<KeyEncodeError>,
}

impl<Sel> KeyRouter<Sel> {
    /// A router by `selector` over `downstream` receivers and `key_partitions`.
    pub(crate) fn new(selector: Sel, downstream: u32, key_partitions: u32) -> Self {
        KeyRouter {
            selector,
            key_partitions,
            downstream: downstream.max(1),
            error: None,
        }
    }

    /// The keyed record for `item` and its receiver; `None` (and the error noted)
    /// when its key does not encode.
    #[inline]
    pub(crate) fn route<T>(&mut self, item: T, ts: i64) -> Option<(usize, KeyedBy<Sel, T>)>
    where
        Sel: KeySelector<T>,
    {
        let (key, value) = self.selector.split(item);
        match key_partition(&key, self.key_partitions) {
            Ok(kp) => {
                let dest = owner_of(kp, self.key_partitions, self.downstream) as usize;
                Some((dest, Keyed { kp, ts, key, value }))
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
                None
            }
        }
    }

    /// The error of a key that did not encode, if any.
    pub(crate) fn take_error(&mut self) -> Option<TaskError> {
        self.error
            .take()
            .map(|e| TaskError::caused("key exchange", e))
    }

    /// The end of input: fails if a key did not encode.
    pub(crate) fn finish(&mut self) -> Result<(), TaskError> {
        self.take_error().map_or(Ok(()), Err)
    }
}

/// Sends each record to the owner of its key partition in the next stage.
pub struct KeyExchange<Sel> {
    router: KeyRouter<Sel>,
}

/// The spec of a key exchange.
pub struct ExchangeSpec<Sel>(pub Sel);

impl<T, Sel: KeySelector<T>> Terminal<T> for KeyExchange<Sel> {
    type Wire = Keyed<Sel::Key, Sel::Value>;

    #[inline]
    fn accept(&mut self, item: T, ts: i64, out: &mut Outbox<Self::Wire>) {
        if let Some((dest, record)) = self.router.route(item, ts) {
            out.push_to(dest, record);
        }
    }

    fn take_error(&mut self) -> Option<TaskError> {
        self.router.take_error()
    }

    fn finish(&mut self, _out: &mut Outbox<Self::Wire>) -> Result<(), TaskError> {
        self.router.finish()
    }
}

impl<T: 'static, Sel: KeySelector<T>> TerminalSpec<T> for ExchangeSpec<Sel> {
    type Terminal = KeyExchange<Sel>;
    fn describe(&self) -> String {
        "key_by".into()
    }
    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError> {
        let downstream = env.receivers;
        let key_partitions = env.key_partitions;
        Ok(KeyExchange {
            router: KeyRouter::new(self.0.clone(), downstream, key_partitions),
        })
    }
}

/// Keys a record with selector `Sel` and sends its value as the left input of a
/// two-input operator.
pub struct LeftValue<Sel, R>(pub(crate) Sel, pub(crate) PhantomData<fn() -> R>);

impl<Sel: Clone, R> Clone for LeftValue<Sel, R> {
    fn clone(&self) -> Self {
        LeftValue(self.0.clone(), PhantomData)
    }
}

impl<T, Sel, R> KeySelector<T> for LeftValue<Sel, R>
where
    Sel: KeySelector<T>,
    R: crate::exchange::Data,
{
    type Key = Sel::Key;
    type Value = Either<Sel::Value, R>;
    #[inline(always)]
    fn split(&self, item: T) -> (Self::Key, Self::Value) {
        let (k, v) = self.0.split(item);
        (k, Either::Left(v))
    }
}

/// Keys a record with selector `Sel` and sends its value as the right input of a
/// two-input operator.
pub struct RightValue<Sel, L>(pub(crate) Sel, pub(crate) PhantomData<fn() -> L>);

impl<Sel: Clone, L> Clone for RightValue<Sel, L> {
    fn clone(&self) -> Self {
        RightValue(self.0.clone(), PhantomData)
    }
}

impl<T, Sel, L> KeySelector<T> for RightValue<Sel, L>
where
    Sel: KeySelector<T>,
    L: crate::exchange::Data,
{
    type Key = Sel::Key;
    type Value = Either<L, Sel::Value>;
    #[inline(always)]
    fn split(&self, item: T) -> (Self::Key, Self::Value) {
        let (k, v) = self.0.split(item);
        (k, Either::Right(v))
    }
}
