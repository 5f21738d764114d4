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
use crate::operator::chain::{FilterOp, FlatMapOp, Identity, MapOp, Then};
use crate::operator::{Aggregate, AggregateFn, Chain, Emitter, Key, KeyedProcess, Reduce};
use crate::time::{NoEventTime, TimestampStrategy};

use super::plan::{KeyedStagePlan, SideStagePlan, SourceStagePlan, StagePlan};
use super::sink_stage::IntoSinkSpec;
use super::terminal::{ExchangeSpec, KeyBy, KeySelector, PairKey, TerminalSpec};

/// A complete job: a chain of stages from a source to a sink, ready to run on a
/// [`Node`](super::Node).
pub struct Job {
    pub(crate) name: String,
    pub(crate) stages: Vec<Box<dyn StagePlan>>,
    pub(crate) branches: Vec<Branch>,
}

/// A pipeline fed by the side output of stage `from` of the job (for instance a
/// window's late records), ending in a sink of its own.
pub(crate) struct Branch {
    pub from: usize,
    pub job: Job,
}

impl Job {
    /// Starts building a job called `name`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: impl Into<String>) -> JobBuilder {
        JobBuilder { name: name.into() }
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of its stages, in order: the main pipeline's, then each branch's.
    pub fn stage_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.stages.iter().map(|s| s.name()).collect();
        for branch in &self.branches {
            names.extend(branch.job.stage_names());
        }
        names
    }
}

/// A job with no source yet.
pub struct JobBuilder {
    name: String,
}

impl JobBuilder {
    /// Reads the job's input from `source`, without event time.
    pub fn source<S: Source>(self, source: S) -> Stream<SourceHead<S, NoEventTime>, Identity> {
        self.source_with_time(source, NoEventTime)
    }

    /// Reads the job's input from `source`, stamping records with event time and
    /// sending watermarks as `time` says (see [`WatermarkStrategy`](crate::time::WatermarkStrategy)).
    pub fn source_with_time<S, T>(self, source: S, time: T) -> Stream<SourceHead<S, T>, Identity>
    where
        S: Source,
        T: TimestampStrategy<S::Item>,
    {
        Stream {
            name: self.name,
            done: Vec::new(),
            head: SourceHead(source, time),
            chain: Identity,
            branches: Vec::new(),
        }
    }
}

/// What starts a stage: a source or a keyed operator. (Implementation detail of the
/// builder's types.)
pub trait Head: Send + 'static {
    /// What the head emits into the stage's chain.
    type Out;
}

/// Turns a head, its chain and its terminal into a stage plan. (Implementation detail
/// of the builder's types.)
#[doc(hidden)]
pub trait IntoPlan<C, Ts>: Head {
    fn into_plan(self, chain: C, term: Ts) -> Box<dyn StagePlan>;
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
    fn into_plan(self, chain: C, term: Ts) -> Box<dyn StagePlan> {
        Box::new(SourceStagePlan {
            source: self.0,
            time: self.1,
            chain,
            term,
        })
    }
}

/// A stage that starts at a keyed operator.
pub struct KeyedHead<P>(P);

impl<P: KeyedProcess> Head for KeyedHead<P> {
    type Out = P::Out;
}

impl<P, C, Ts> IntoPlan<C, Ts> for KeyedHead<P>
where
    P: KeyedProcess,
    C: Chain<P::Out>,
    Ts: TerminalSpec<C::Out>,
{
    fn into_plan(self, chain: C, term: Ts) -> Box<dyn StagePlan> {
        Box::new(KeyedStagePlan {
            process: self.0,
            chain,
            term,
        })
    }
}

/// A stage that starts at another stage's side output.
pub struct SideHead<T> {
    what: String,
    _in: PhantomData<fn(T)>,
}

impl<T: Send + Unpin + 'static> Head for SideHead<T> {
    type Out = T;
}

impl<T, C, Ts> IntoPlan<C, Ts> for SideHead<T>
where
    T: Send + Unpin + 'static,
    C: Chain<T>,
    Ts: TerminalSpec<C::Out>,
{
    fn into_plan(self, chain: C, term: Ts) -> Box<dyn StagePlan> {
        Box::new(SideStagePlan {
            chain,
            term,
            what: self.what,
            _in: PhantomData,
        })
    }
}

/// The start of a branch reading a side output named `what` of job `job`.
pub(crate) fn side_stream<T: Send + Unpin + 'static>(
    job: &str,
    what: &str,
) -> Stream<SideHead<T>, Identity> {
    Stream {
        name: job.to_string(),
        done: Vec::new(),
        head: SideHead {
            what: what.to_string(),
            _in: PhantomData,
        },
        chain: Identity,
        branches: Vec::new(),
    }
}

impl<H, C> Stream<H, C> {
    /// The job's name.
    pub(crate) fn job_name(&self) -> &str {
        &self.name
    }

    /// Feeds `branch` from the side output of the stage now being built (the one this
    /// stream's head starts).
    pub(crate) fn add_branch_here(&mut self, branch: Job) {
        let from = self.done.len();
        self.branches.push(Branch { from, job: branch });
    }
}

impl<H, C, Sel> KeyedStream<H, C, Sel> {
    /// The job's name.
    pub(crate) fn job_name(&self) -> &str {
        self.stream.job_name()
    }
}

/// A stream of records under construction: a head, then a chain of stateless
/// operators. Stateless operators fuse into the current stage; `key_by` ends it.
pub struct Stream<H, C> {
    name: String,
    done: Vec<Box<dyn StagePlan>>,
    head: H,
    chain: C,
    branches: Vec<Branch>,
}

impl<H: Head, C: Chain<H::Out>> Stream<H, C> {
    fn then<N>(self, next: N) -> Stream<H, Then<C, N>> {
        Stream {
            name: self.name,
            done: self.done,
            head: self.head,
            chain: Then {
                first: self.chain,
                second: next,
            },
            branches: self.branches,
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

    /// Ends the job in `sink`: a plain [`SinkFactory`](crate::connector::SinkFactory)
    /// or a transactional
    /// [`TwoPhaseCommitSinkFactory`](crate::connector::TwoPhaseCommitSinkFactory)
    /// (`Kind` is inferred).
    pub fn sink<F, Kind>(self, sink: F) -> Job
    where
        F: IntoSinkSpec<C::Out, Kind>,
        C::Out: 'static,
        H: IntoPlan<C, F::Spec>,
    {
        let mut stages = self.done;
        stages.push(self.head.into_plan(self.chain, sink.into_spec()));
        Job {
            name: self.name,
            stages,
            branches: self.branches,
        }
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
        let Stream {
            name,
            mut done,
            head,
            chain,
            branches,
        } = self.stream;
        done.push(head.into_plan(chain, make_term(self.selector)));
        Stream {
            name,
            done,
            head: KeyedHead(process),
            chain: Identity,
            branches,
        }
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
