//! The builder's window steps: `.window(assigner)` and `.count_window(n)` on a keyed
//! stream, then the window function.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use weir_actors::state::StateValue;

use crate::connector::{Sink, SinkFactory};
use crate::job::builder::{
    side_stream, Head, IntoPlan, Job, KeyedStream, Processed, SideHead, SideReader, Stream,
};
use crate::job::terminal::{ExchangeSpec, KeySelector};
use crate::operator::chain::Identity;
use crate::operator::{AggregateFn, Chain};

use super::assigner::{TimeWindow, WindowAssigner};
use super::operator::{FullWindow, Incremental, LateOutput, WindowOperator};
use super::preagg::{PreAggSpec, PreAggregatedWindow, DEFAULT_PREAGG_ENTRIES};
use super::trigger::{CountTrigger, GlobalWindowOperator, Trigger};

/// The stream a window operator emits: keys `K`, values `V`, assigner `A`, window
/// function `F`.
pub type Windowed<K, V, A, F> = Processed<WindowOperator<K, V, A, F>>;

/// The stream a pre-aggregated window emits: keys `K`, values `V`, assigner `A`,
/// aggregate `G`.
pub type PreAggregated<K, V, A, G> = Processed<PreAggregatedWindow<K, V, A, G>>;

/// A reduce function as an [`AggregateFn`]: the accumulator is the value reduced so
/// far (none before the first record).
#[derive(Clone)]
pub struct ReduceFn<F>(pub F);

impl<V, F> AggregateFn<V> for ReduceFn<F>
where
    V: StateValue,
    F: Fn(V, V) -> V + Clone + Send + 'static,
{
    type Acc = Option<V>;
    type Output = Option<V>;
    fn create(&self) -> Option<V> {
        None
    }
    fn add(&self, acc: &mut Option<V>, value: V) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(a, value),
            None => value,
        });
    }
    fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }
    fn result(&self, acc: &Option<V>) -> Option<V> {
        acc.clone()
    }
}

/// A keyed stream cut into windows, waiting for its window function.
pub struct WindowedStream<H, C, Sel: KeySelector<O>, O, A> {
    keyed: KeyedStream<H, C, Sel>,
    assigner: A,
    allowed_lateness: i64,
    late: LateOutput<Sel::Key, Sel::Value>,
    late_count: Arc<AtomicU64>,
    late_branch: Option<SideReader>,
    _out: std::marker::PhantomData<fn() -> O>,
}

impl<H, C, Sel> KeyedStream<H, C, Sel>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
{
    /// Cuts each key's records into the windows `assigner` gives them (event time).
    pub fn window<A: WindowAssigner>(self, assigner: A) -> WindowedStream<H, C, Sel, C::Out, A> {
        let late_count = Arc::new(AtomicU64::new(0));
        WindowedStream {
            keyed: self,
            assigner,
            allowed_lateness: 0,
            late: LateOutput::counted(late_count.clone()),
            late_count,
            late_branch: None,
            _out: std::marker::PhantomData,
        }
    }

    /// Windows of `size` records per key, fired and cleared when full (a global
    /// window with a purging count trigger).
    pub fn count_window(self, size: u64) -> GlobalWindowedStream<H, C, Sel, CountTrigger> {
        self.global_window(CountTrigger::of(size))
    }

    /// One window per key that never ends on its own: `trigger` decides when it fires
    /// and when it is purged.
    pub fn global_window<T>(self, trigger: T) -> GlobalWindowedStream<H, C, Sel, T>
    where
        T: Trigger<Sel::Value>,
    {
        GlobalWindowedStream {
            keyed: self,
            trigger,
        }
    }
}

impl<H, C, Sel, A> WindowedStream<H, C, Sel, C::Out, A>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
    Sel::Value: Clone,
    A: WindowAssigner,
    H: IntoPlan<C, ExchangeSpec<Sel>>,
{
    /// Keeps windows for `lateness` after the watermark passes their end: a late
    /// record within it updates its window, which fires again.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Sends records later than the allowed lateness to `sink` (they are counted
    /// either way; without a sink they are logged).
    pub fn late_data<F>(mut self, sink: F) -> Self
    where
        F: SinkFactory<(Sel::Key, Sel::Value)> + Sync,
    {
        let factory = Arc::new(sink);
        self.late = LateOutput::to_sink(
            Arc::new(move |p, n| {
                factory
                    .create(p, n)
                    .map(|s| Box::new(s) as Box<dyn Sink<(Sel::Key, Sel::Value)>>)
            }),
            self.late_count.clone(),
        );
        self
    }

    /// Reads the records later than the allowed lateness as a stream of `(key, value)`
    /// of its own (Flink's late-data side output): `branch` continues it like any
    /// stream and ends it in a sink. The late records are counted too.
    pub fn late_stream(
        mut self,
        branch: impl FnOnce(Stream<SideHead<(Sel::Key, Sel::Value)>, Identity>) -> Job,
    ) -> Self {
        let reader = side_stream(self.keyed.graph(), "late-data");
        let slot = reader.slot();
        // The branch ends in a sink of the same job; its handle is not needed.
        let _ = branch(reader);
        self.late = LateOutput::to_side_output(self.late_count.clone());
        self.late_branch = Some(SideReader {
            slot,
            what: "late-data".into(),
        });
        self
    }

    /// How many records arrived too late for all their windows (live; final once the
    /// job has finished).
    pub fn late_records(&self) -> Arc<AtomicU64> {
        self.late_count.clone()
    }

    /// Aggregates each window incrementally; emits a `WindowResult` per key and window.
    ///
    /// The stage before the key exchange pre-aggregates each (key, window) locally and
    /// sends partial aggregates (see [`preagg`](super::preagg)); session windows are
    /// aggregated after the exchange only.
    pub fn aggregate<G>(self, agg: G) -> PreAggregated<Sel::Key, Sel::Value, A, G>
    where
        G: AggregateFn<Sel::Value>,
        G::Acc: Unpin,
        H: IntoPlan<C, PreAggSpec<Sel, A, G>>,
    {
        let op = WindowOperator::new(
            self.assigner.clone(),
            Incremental(agg.clone()),
            self.allowed_lateness,
            self.late,
        );
        let (assigner, max_entries) = (self.assigner, DEFAULT_PREAGG_ENTRIES);
        let mut stream = self.keyed.process_through(
            move |selector| PreAggSpec {
                selector,
                assigner,
                agg,
                max_entries,
            },
            PreAggregatedWindow::new(op),
        );
        if let Some(branch) = self.late_branch {
            stream.read_side_here(branch);
        }
        stream
    }

    /// Reduces each window's values with `f` (incrementally, pre-aggregated like
    /// `aggregate`); a firing emits the reduced value.
    pub fn reduce<F>(self, f: F) -> PreAggregated<Sel::Key, Sel::Value, A, ReduceFn<F>>
    where
        Sel::Value: StateValue + Unpin,
        F: Fn(Sel::Value, Sel::Value) -> Sel::Value + Clone + Send + 'static,
        H: IntoPlan<C, PreAggSpec<Sel, A, ReduceFn<F>>>,
    {
        self.aggregate(ReduceFn(f))
    }

    /// Gives each window's records, all at once, to `f` when it fires.
    pub fn process<O, F>(self, f: F) -> Windowed<Sel::Key, Sel::Value, A, FullWindow<F, O>>
    where
        Sel::Value: StateValue,
        O: 'static,
        F: Fn(&Sel::Key, &TimeWindow, &[Sel::Value], &mut dyn FnMut(O)) + Clone + Send + 'static,
    {
        let op = WindowOperator::new(
            self.assigner,
            FullWindow(f, std::marker::PhantomData),
            self.allowed_lateness,
            self.late,
        );
        let mut stream = self.keyed.process(op);
        if let Some(branch) = self.late_branch {
            stream.read_side_here(branch);
        }
        stream
    }
}

/// The stream a triggered global window emits: keys `K`, values `V`, trigger `T`,
/// window function `F`.
pub type Triggered<K, V, T, F> = Processed<GlobalWindowOperator<K, V, T, F>>;

/// A keyed stream with one global window per key, fired by a trigger.
pub struct GlobalWindowedStream<H, C, Sel, T> {
    keyed: KeyedStream<H, C, Sel>,
    trigger: T,
}

impl<H, C, Sel, T> GlobalWindowedStream<H, C, Sel, T>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
    T: Trigger<Sel::Value>,
    H: IntoPlan<C, ExchangeSpec<Sel>>,
{
    /// Aggregates each key's window incrementally; a firing emits the aggregate.
    pub fn aggregate<G>(self, agg: G) -> Triggered<Sel::Key, Sel::Value, T, Incremental<G>>
    where
        G: AggregateFn<Sel::Value>,
    {
        self.keyed
            .process(GlobalWindowOperator::new(self.trigger, Incremental(agg)))
    }

    /// Gives the window's records, all at once, to `f` on every firing.
    pub fn process<O, F>(self, f: F) -> Triggered<Sel::Key, Sel::Value, T, FullWindow<F, O>>
    where
        Sel::Value: StateValue,
        O: 'static,
        F: Fn(&Sel::Key, &TimeWindow, &[Sel::Value], &mut dyn FnMut(O)) + Clone + Send + 'static,
    {
        self.keyed.process(GlobalWindowOperator::new(
            self.trigger,
            FullWindow(f, std::marker::PhantomData),
        ))
    }
}
