//! The typed job builder.
//!
//! ```
//! use weir::prelude::*;
//!
//! let counts = CountingSink::<String, u64>::new();
//! let job = Job::new("wordcount")
//!     .source(W1Lines::new(1_000))
//!     .flat_map(|line: String, out: &mut Emitter<'_, (String, u64)>| {
//!         for word in line.split(' ') {
//!             out.emit((word.to_string(), 1));
//!         }
//!     })
//!     .group_by_key()
//!     .reduce(|a, b| a + b)
//!     .sink(counts.clone());
//! let report = Node::new(EngineOptions::for_tests(2)).unwrap().run(job).unwrap();
//! assert_eq!(counts.result().received, 1_000);
//! assert_eq!(report.stages.len(), 2);
//! ```
//!
//! Every step is checked when the job is compiled: a keyed operator must take the key
//! and value types the stream carries, and a sink the records it emits.
//!
//! ```compile_fail
//! use weir::prelude::*;
//! // `reduce` over u64 values cannot feed a sink of (String, String) pairs.
//! let job = Job::new("mismatch")
//!     .source(W1Lines::new(10))
//!     .map(|w: String| (w, 1u64))
//!     .group_by_key()
//!     .reduce(|a, b| a + b)
//!     .sink(CountingSink::<String, String>::new());
//! ```

use std::marker::PhantomData;

use weir_actors::state::StateValue;

use crate::connector::Source;
use crate::graph::{Graph, JobPlan, Partitioning, Port};
use crate::operator::chain::{FilterOp, FlatMapOp, Identity, MapOp, Then};
use crate::operator::{Aggregate, AggregateFn, Chain, Emitter, Key, KeyedProcess, Reduce};
use crate::time::{NoEventTime, TimestampStrategy};

use super::plan::{KeyedStagePlan, SideStagePlan, SourceStagePlan};
use super::sink_stage::IntoSinkSpec;
use super::terminal::{ExchangeSpec, KeyBy, KeySelector, PairKey, TerminalSpec};
use super::JobError;

/// A job: the graph of stages its streams built, from its sources to its sinks,
/// ready to run on a [`Node`](super::Node).
///
/// Every `sink` of a job returns a `Job` handle on the same graph; run any one of
/// them (they are the same job).
#[derive(Clone)]
pub struct Job {
    pub(crate) graph: Graph,
}

impl Job {
    /// Starts building a job called `name`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: impl Into<String>) -> JobBuilder {
        JobBuilder {
            graph: Graph::new(name.into()),
        }
    }

    /// The job's name.
    pub fn name(&self) -> String {
        self.graph.job_name()
    }

    /// The names of its stages, in run order (the stages reading side outputs
    /// last).
    pub fn stage_names(&self) -> Vec<String> {
        self.graph.stage_names()
    }

    /// Freezes the job into the plan a node runs.
    pub(crate) fn freeze(self) -> Result<JobPlan, JobError> {
        self.graph.freeze()
    }
}

/// A job under construction: add sources to it (as many as the job reads).
#[derive(Clone)]
pub struct JobBuilder {
    graph: Graph,
}

impl JobBuilder {
    /// Reads records from `source`, without event time; may be called several times
    /// for a job with several sources.
    pub fn source<S: Source>(&self, source: S) -> Stream<SourceHead<S, NoEventTime>, Identity> {
        self.source_with_time(source, NoEventTime)
    }

    /// Reads records from `source`, stamping them with event time and sending
    /// watermarks as `time` says (see [`WatermarkStrategy`](crate::time::WatermarkStrategy)).
    pub fn source_with_time<S, T>(&self, source: S, time: T) -> Stream<SourceHead<S, T>, Identity>
    where
        S: Source,
        T: TimestampStrategy<S::Item>,
    {
        let slot = self.graph.add_slot(false);
        Stream::start(self.graph.clone(), slot, SourceHead(source, time))
    }

    /// The job as built so far (the same as what any `sink` call returned).
    pub fn build(&self) -> Job {
        Job {
            graph: self.graph.clone(),
        }
    }
}

/// What starts a stage: a source or an operator. (Implementation detail of the
/// builder's types.)
pub trait Head: Send + 'static {
    /// What the head emits into the stage's chain.
    type Out;
}

/// Closes a stage: its head, its chain and its terminal become the stage's plan.
/// (Implementation detail of the builder's types.)
#[doc(hidden)]
pub trait IntoPlan<C, Ts>: Head {
    /// Records the stage of `slot` in `graph`; returns the output port its terminal
    /// sends through.
    fn close(self, chain: C, term: Ts, graph: &Graph, slot: usize) -> Port;
}

/// A stage that starts at a source, with its event-time strategy.
pub struct SourceHead<S, T>(S, T);

impl<S: Source, T: TimestampStrategy<S::Item>> Head for SourceHead<S, T> {
    type Out = S::Item;
}

impl<S, T, C, Ts> IntoPlan<C, Ts> for SourceHead<S, T>
where
    S: Source,
    T: TimestampStrategy<S::Item>,
    C: Chain<S::Item>,
    Ts: TerminalSpec<C::Out>,
{
    fn close(self, chain: C, term: Ts, graph: &Graph, slot: usize) -> Port {
        graph.set_plan(
            slot,
            Box::new(SourceStagePlan {
                source: self.0,
                time: self.1,
                chain,
                term,
            }),
        );
        Port::Main
    }
}

/// A stage that starts at an operator.
pub struct KeyedHead<P>(pub(crate) P);

impl<P: KeyedProcess> Head for KeyedHead<P> {
    type Out = P::Out;
}

impl<P, C, Ts> IntoPlan<C, Ts> for KeyedHead<P>
where
    P: KeyedProcess,
    C: Chain<P::Out>,
    Ts: TerminalSpec<C::Out>,
{
    fn close(self, chain: C, term: Ts, graph: &Graph, slot: usize) -> Port {
        graph.set_plan(
            slot,
            Box::new(KeyedStagePlan::<
                P,
                C,
                Ts,
                crate::record::Keyed<P::Key, P::In>,
            >::new(self.0, chain, term)),
        );
        Port::Main
    }
}

/// A stage that starts at another stage's side output.
pub struct SideHead<T> {
    what: String,
    _in: PhantomData<fn(T)>,
}

impl<T: crate::exchange::Data> Head for SideHead<T> {
    type Out = T;
}

impl<T, C, Ts> IntoPlan<C, Ts> for SideHead<T>
where
    T: crate::exchange::Data,
    C: Chain<T>,
    Ts: TerminalSpec<C::Out>,
{
    fn close(self, chain: C, term: Ts, graph: &Graph, slot: usize) -> Port {
        graph.set_plan(
            slot,
            Box::new(SideStagePlan {
                chain,
                term,
                what: self.what,
                _in: PhantomData,
            }),
        );
        Port::Main
    }
}

/// The start of a stage reading the side output named `what` of a stage of `graph`
/// (the edge is added by [`Stream::read_side_here`] once that stage exists).
pub(crate) fn side_stream<T: crate::exchange::Data>(
    graph: &Graph,
    what: &str,
) -> Stream<SideHead<T>, Identity> {
    let slot = graph.add_slot(true);
    Stream::start(
        graph.clone(),
        slot,
        SideHead {
            what: what.to_string(),
            _in: PhantomData,
        },
    )
}

/// Where a side output is read: the slot of the stage that reads it, and the side
/// output's name. Kept by a builder step until the stage producing it exists.
pub(crate) struct SideReader {
    pub slot: usize,
    pub what: String,
}

impl<H, C> Stream<H, C> {
    /// The job's graph.
    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The slot of the stage now being built.
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// Lets `reader` read the side output of the stage now being built (the one this
    /// stream's head starts).
    pub(crate) fn read_side_here(&mut self, reader: SideReader) {
        self.graph.add_edge(
            self.slot,
            Port::Side(reader.what),
            reader.slot,
            Partitioning::Side,
        );
    }
}

impl<H> Stream<H, Identity> {
    /// A stream starting a stage at `slot` with `head`.
    pub(crate) fn start(graph: Graph, slot: usize, head: H) -> Self {
        Stream {
            graph,
            slot,
            head,
            chain: Identity,
        }
    }
}

impl<H, C, Sel> KeyedStream<H, C, Sel> {
    /// The job's graph.
    pub(crate) fn graph(&self) -> &Graph {
        &self.stream.graph
    }

    /// The slot of the stage now being built.
    pub(crate) fn slot(&self) -> usize {
        self.stream.slot
    }
}

/// A stream of records under construction: a head, then a chain of stateless
/// operators. Stateless operators fuse into the current stage; a partitioning
/// (`key_by`, `rebalance`, ...) or a sink closes it.
pub struct Stream<H, C> {
    graph: Graph,
    slot: usize,
    head: H,
    chain: C,
}

impl<H: Head, C: Chain<H::Out>> Stream<H, C> {
    fn then<N>(self, next: N) -> Stream<H, Then<C, N>> {
        Stream {
            graph: self.graph,
            slot: self.slot,
            head: self.head,
            chain: Then {
                first: self.chain,
                second: next,
            },
        }
    }

    /// Transforms each record.
    pub fn map<U, F>(self, f: F) -> Stream<H, Then<C, MapOp<F>>>
    where
        F: FnMut(C::Out) -> U + Clone + Send + 'static,
    {
        self.then(MapOp {
            f,
            name: "map".into(),
        })
    }

    /// Keeps the records `f` accepts.
    pub fn filter<F>(self, f: F) -> Stream<H, Then<C, FilterOp<F>>>
    where
        F: FnMut(&C::Out) -> bool + Clone + Send + 'static,
    {
        self.then(FilterOp {
            f,
            name: "filter".into(),
        })
    }

    /// Emits any number of records for each record.
    pub fn flat_map<U: 'static, F>(self, f: F) -> Stream<H, Then<C, FlatMapOp<F, U>>>
    where
        F: FnMut(C::Out, &mut Emitter<'_, U>) + Clone + Send + 'static,
    {
        self.then(FlatMapOp {
            f,
            name: "flat_map".into(),
            _out: PhantomData,
        })
    }

    /// Fuses the stateless operator `op` (any type implementing [`Chain`], yours
    /// included) into the current stage: it runs in the same loop as the
    /// operators before and after it.
    pub fn apply<N: Chain<C::Out>>(self, op: N) -> Stream<H, Then<C, N>> {
        self.then(op)
    }

    /// Groups records by the key `f` picks; the whole record travels as the value.
    pub fn key_by<K: Key, F>(self, f: F) -> KeyedStream<H, C, KeyBy<F, K>>
    where
        F: Fn(&C::Out) -> K + Clone + Send + 'static,
        C::Out: Send + Unpin + 'static,
    {
        KeyedStream {
            stream: self,
            selector: KeyBy {
                f,
                _key: PhantomData,
            },
        }
    }

    /// Ends this stream in `sink`: a plain
    /// [`SinkFactory`](crate::connector::SinkFactory) or a transactional
    /// [`TwoPhaseCommitSinkFactory`](crate::connector::TwoPhaseCommitSinkFactory)
    /// (`Kind` is inferred); returns the job (a handle on its whole graph).
    pub fn sink<F, Kind>(self, sink: F) -> Job
    where
        F: IntoSinkSpec<C::Out, Kind>,
        C::Out: 'static,
        H: IntoPlan<C, F::Spec>,
    {
        self.head
            .close(self.chain, sink.into_spec(), &self.graph, self.slot);
        Job { graph: self.graph }
    }

    /// Closes the current stage with terminal `term`, whose output goes to a new
    /// stage started by `head` through `partitioning`.
    pub(crate) fn close_into<Ts, H2>(
        self,
        term: Ts,
        partitioning: Partitioning,
        head: H2,
    ) -> Stream<H2, Identity>
    where
        H: IntoPlan<C, Ts>,
    {
        let next = self.graph.add_slot_after(self.slot);
        let graph = self.close_to(term, partitioning, next);
        Stream::start(graph, next, head)
    }

    /// Closes the current stage with terminal `term`, whose output feeds no other
    /// stage through the graph (a fan-out's routes wire themselves).
    pub(crate) fn close_with<Ts>(self, term: Ts) -> Graph
    where
        H: IntoPlan<C, Ts>,
    {
        self.head.close(self.chain, term, &self.graph, self.slot);
        self.graph
    }

    /// Closes the current stage with terminal `term`, whose output goes to the
    /// stage of slot `to` through `partitioning`; returns the graph.
    pub(crate) fn close_to<Ts>(self, term: Ts, partitioning: Partitioning, to: usize) -> Graph
    where
        H: IntoPlan<C, Ts>,
    {
        let port = self.head.close(self.chain, term, &self.graph, self.slot);
        self.graph.add_edge(self.slot, port, to, partitioning);
        self.graph
    }
}

impl<H, C, K, V> Stream<H, C>
where
    H: Head,
    C: Chain<H::Out, Out = (K, V)>,
    K: Key,
    V: Send + Unpin + 'static,
{
    /// Groups `(key, value)` records by their key.
    pub fn group_by_key(self) -> KeyedStream<H, C, PairKey<K, V>> {
        KeyedStream {
            stream: self,
            selector: PairKey(PhantomData),
        }
    }
}

/// The stream a keyed operator `P` emits: a new stage that starts at `P`.
pub type Processed<P> = Stream<KeyedHead<P>, Identity>;

/// A stream grouped by key: what comes next runs per key, with keyed state.
pub struct KeyedStream<H, C, Sel> {
    stream: Stream<H, C>,
    selector: Sel,
}

impl<H, C, Sel> KeyedStream<H, C, Sel>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
{
    /// Runs the keyed operator `process` on each record, with its key's state.
    pub fn process<P>(self, process: P) -> Processed<P>
    where
        P: KeyedProcess<Key = Sel::Key, In = Sel::Value>,
        H: IntoPlan<C, ExchangeSpec<Sel>>,
    {
        self.process_through(ExchangeSpec, process)
    }

    /// Closes the current stage with the terminal `make_term` builds from the key
    /// selector, and starts a keyed stage at `process` (whose input must be what the
    /// terminal sends).
    pub(crate) fn process_through<Ts, P>(
        self,
        make_term: impl FnOnce(Sel) -> Ts,
        process: P,
    ) -> Processed<P>
    where
        P: KeyedProcess,
        H: IntoPlan<C, Ts>,
    {
        let term = make_term(self.selector);
        self.stream
            .close_into(term, Partitioning::Key, KeyedHead(process))
    }

    /// Splits the keyed stream into its parts: the stream and the key selector.
    pub(crate) fn into_parts(self) -> (Stream<H, C>, Sel) {
        (self.stream, self.selector)
    }

    /// A running reduce per key: emits `(key, reduced)` on every record.
    pub fn reduce<F>(self, f: F) -> Processed<Reduce<Sel::Key, Sel::Value, F>>
    where
        F: Fn(Sel::Value, Sel::Value) -> Sel::Value + Clone + Send + 'static,
        Sel::Value: StateValue,
        H: IntoPlan<C, ExchangeSpec<Sel>>,
    {
        self.process(Reduce::new(f))
    }

    /// A running aggregate per key: emits `(key, result)` on every record.
    pub fn aggregate<A>(self, agg: A) -> Processed<Aggregate<Sel::Key, Sel::Value, A>>
    where
        A: AggregateFn<Sel::Value>,
        H: IntoPlan<C, ExchangeSpec<Sel>>,
    {
        self.process(Aggregate::new(agg))
    }
}
