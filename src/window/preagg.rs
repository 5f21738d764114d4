//! Local pre-aggregation before the key exchange (two-phase aggregation, as Flink
//! SQL's local-global aggregation): each upstream partition folds its records into a
//! partial accumulator per (key, window) and sends the partial when its own watermark
//! passes the window's end (or when its table is full), so the exchange carries one
//! partial per key and window instead of every record. The window operator merges the
//! partials with `AggregateFn::merge`.
//!
//! Correctness does not depend on it: the result is the merge of the same records.
//! Lateness stays the window operator's decision: a record whose window already ended
//! at the upstream watermark is sent on as is, and the operator treats it exactly as
//! without pre-aggregation (it may update its window or go to the late output). A
//! partial is always sent before the watermark that closes its window, and the
//! operator's watermark is the minimum over its inputs, so a partial never arrives
//! after its window fired.

use std::marker::PhantomData;

use rustc_hash::FxHashMap;
use weir_actors::{Outbox, TaskError};

use crate::connector::SinkError;
use crate::job::terminal::{KeySelector, Terminal, TerminalEnv, TerminalSpec};
use crate::operator::{
    AggregateFn, Collector, KeyedContext, KeyedProcess, OpenContext, OperatorError,
};
use crate::partition::{key_partition, owner_of, KeyEncodeError};
use crate::record::{Keyed, NO_TIMESTAMP};

use super::assigner::{TimeDomain, TimeWindow, WindowAssigner};
use super::operator::{Incremental, WindowOperator, WindowResult};

/// Partial accumulators an upstream partition holds before it sends them all.
pub const DEFAULT_PREAGG_ENTRIES: usize = 65_536;

/// What crosses the key exchange into a pre-aggregated window operator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum WindowInput<V, Acc> {
    /// A record the window operator assigns to windows itself.
    Value(V),
    /// A partial aggregate of one window from one upstream partition.
    Partial(TimeWindow, Acc),
}

/// Whether windows of `assigner` are folded before the exchange: event-time windows
/// that never merge. Session windows (whose extent is known only after merging) and
/// processing-time windows (no watermark releases partials) are aggregated after it.
fn pre_aggregates<A: WindowAssigner>(assigner: &A) -> bool {
    !assigner.is_merging() && assigner.domain() == TimeDomain::EventTime
}

/// What a pre-aggregating exchange sends: keyed records or partials.
pub type PreAggWire<K, V, Acc> = Keyed<K, WindowInput<V, Acc>>;

/// Builds each upstream partition's pre-aggregating exchange.
pub struct PreAggSpec<Sel, A, G> {
    pub(crate) selector: Sel,
    pub(crate) assigner: A,
    pub(crate) agg: G,
    pub(crate) max_entries: usize,
}

/// The terminal of the stage before a window aggregate: pre-aggregates, then routes
/// by key partition.
pub struct PreAggExchange<T, Sel: KeySelector<T>, A, G: AggregateFn<Sel::Value>> {
    selector: Sel,
    assigner: A,
    agg: G,
    max_entries: usize,
    key_partitions: u32,
    downstream: u32,
    watermark: i64,
    partials: FxHashMap<(Sel::Key, TimeWindow), (u32, G::Acc)>,
    windows: Vec<TimeWindow>,
    error: Option<KeyEncodeError>,
    _in: PhantomData<fn(T)>,
}

impl<T, Sel, A, G> TerminalSpec<T> for PreAggSpec<Sel, A, G>
where
    T: 'static,
    Sel: KeySelector<T>,
    Sel::Value: Clone,
    A: WindowAssigner,
    G: AggregateFn<Sel::Value>,
    G::Acc: Unpin,
{
    type Terminal = PreAggExchange<T, Sel, A, G>;
    fn describe(&self) -> String {
        if pre_aggregates(&self.assigner) {
            "pre_aggregate -> key_by".into()
        } else {
            "key_by".into()
        }
    }
    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError> {
        let downstream = env.receivers;
        let key_partitions = env.key_partitions;
        Ok(PreAggExchange {
            selector: self.selector.clone(),
            assigner: self.assigner.clone(),
            agg: self.agg.clone(),
            max_entries: self.max_entries.max(1),
            key_partitions,
            downstream: downstream.max(1),
            watermark: NO_TIMESTAMP,
            partials: FxHashMap::default(),
            windows: Vec::new(),
            error: None,
            _in: PhantomData,
        })
    }
}

impl<T, Sel, A, G> PreAggExchange<T, Sel, A, G>
where
    Sel: KeySelector<T>,
    A: WindowAssigner,
    G: AggregateFn<Sel::Value>,
    G::Acc: Unpin,
{
    fn send(
        &self,
        kp: u32,
        ts: i64,
        key: Sel::Key,
        value: WindowInput<Sel::Value, G::Acc>,
        out: &mut Outbox<PreAggWire<Sel::Key, Sel::Value, G::Acc>>,
    ) {
        let dest = owner_of(kp, self.key_partitions, self.downstream) as usize;
        out.push_to(dest, Keyed { kp, ts, key, value });
    }

    /// Sends the partials of the windows `done` selects.
    fn flush(
        &mut self,
        done: impl Fn(&TimeWindow) -> bool,
        out: &mut Outbox<PreAggWire<Sel::Key, Sel::Value, G::Acc>>,
    ) {
        let ready: Vec<_> = self.partials.extract_if(|(_, w), _| done(w)).collect();
        for ((key, w), (kp, acc)) in ready {
            self.send(
                kp,
                w.max_timestamp(),
                key,
                WindowInput::Partial(w, acc),
                out,
            );
        }
    }
}

impl<T, Sel, A, G> Terminal<T> for PreAggExchange<T, Sel, A, G>
where
    T: 'static,
    Sel: KeySelector<T>,
    Sel::Value: Clone,
    A: WindowAssigner,
    G: AggregateFn<Sel::Value>,
    G::Acc: Unpin,
{
    type Wire = Keyed<Sel::Key, WindowInput<Sel::Value, G::Acc>>;

    #[inline]
    fn accept(&mut self, item: T, ts: i64, out: &mut Outbox<Self::Wire>) {
        let (key, value) = self.selector.split(item);
        let kp = match key_partition(&key, self.key_partitions) {
            Ok(kp) => kp,
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        self.windows.clear();
        if ts != NO_TIMESTAMP && pre_aggregates(&self.assigner) {
            self.assigner.assign(ts, &mut self.windows);
        }
        // Records without windows to fold into, or whose windows already ended here,
        // go on as they are: the window operator decides what happens to them.
        let watermark = self.watermark;
        if self.windows.is_empty() || self.windows.iter().any(|w| w.max_timestamp() <= watermark) {
            self.send(kp, ts, key, WindowInput::Value(value), out);
            return;
        }
        let n = self.windows.len();
        let mut key = Some(key);
        let mut value = Some(value);
        for i in 0..n {
            let w = self.windows[i];
            let last = i + 1 == n;
            let (k, v) = if last {
                (key.take(), value.take())
            } else {
                (key.clone(), value.clone())
            };
            let (Some(k), Some(v)) = (k, v) else { break };
            let slot = (k, w);
            match self.partials.get_mut(&slot) {
                Some((_, acc)) => self.agg.add(acc, v),
                None => {
                    let mut acc = self.agg.create();
                    self.agg.add(&mut acc, v);
                    self.partials.insert(slot, (kp, acc));
                }
            }
        }
        if self.partials.len() > self.max_entries {
            self.flush(|_| true, out);
        }
    }

    fn take_error(&mut self) -> Option<TaskError> {
        self.error
            .take()
            .map(|e| TaskError::caused("key exchange", e))
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Outbox<Self::Wire>) {
        self.watermark = watermark;
        self.flush(|w| w.max_timestamp() <= watermark, out);
    }

    /// Partial aggregates are not snapshotted: they are sent on before the barrier,
    /// where the window operator merges them into its (snapshotted) state.
    fn pre_commit(
        &mut self,
        _epoch: u64,
        out: &mut Outbox<Self::Wire>,
    ) -> Result<Vec<Vec<u8>>, TaskError> {
        self.flush(|_| true, out);
        Ok(Vec::new())
    }

    fn finish(&mut self, out: &mut Outbox<Self::Wire>) -> Result<(), TaskError> {
        self.flush(|_| true, out);
        match self.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The window operator behind a pre-aggregating exchange: merges partials, and
/// handles records sent on as they are like any window operator.
pub struct PreAggregatedWindow<K, V, A, G: AggregateFn<V>> {
    inner: WindowOperator<K, V, A, Incremental<G>>,
}

impl<K, V, A: Clone, G: AggregateFn<V>> Clone for PreAggregatedWindow<K, V, A, G> {
    fn clone(&self) -> Self {
        PreAggregatedWindow {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, A, G: AggregateFn<V>> PreAggregatedWindow<K, V, A, G> {
    /// Wraps the window operator.
    pub fn new(inner: WindowOperator<K, V, A, Incremental<G>>) -> Self {
        PreAggregatedWindow { inner }
    }
}

impl<K, V, A, G> KeyedProcess for PreAggregatedWindow<K, V, A, G>
where
    K: crate::operator::Key,
    V: Clone + Send + Unpin + 'static,
    A: WindowAssigner,
    G: AggregateFn<V>,
    G::Acc: Unpin,
{
    type Key = K;
    type In = WindowInput<V, G::Acc>;
    type Out = WindowResult<K, G::Output>;

    fn name(&self) -> String {
        self.inner.name()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        self.inner.open(ctx)
    }

    #[inline]
    fn process(
        &mut self,
        input: Self::In,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        match input {
            WindowInput::Value(v) => self.inner.process(v, ctx),
            WindowInput::Partial(w, acc) => self.inner.merge_into_window(w, acc, ctx),
        }
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        self.inner.on_timer(timestamp, ctx)
    }

    fn close(&mut self, out: &mut dyn Collector<Self::Out>) -> Result<(), OperatorError> {
        self.inner.close(out)
    }
}
