//! Fusion: stateless operators run as one loop, and any chain of them is an
//! operator type too.
//!
//! A stateless operator implements [`Chain`]: `push` is its `process`, with the
//! next operator (or the stage's exchange) as its output. The builder fuses every
//! `map`, `filter`, `flat_map` and `apply(op)` between two partitionings into the
//! stage's chain, one monomorphised loop with no queue between the operators; your
//! own types take part through [`apply`](crate::job::Stream::apply). [`Fused`] turns
//! any chain into an [`Operator`] of its own (a non-keyed one), for a stage that
//! starts with it, and [`map`], [`filter`] and [`flat_map`] build the built-in
//! chains outside the builder.
//!
//! ```
//! use weir::operator::fused::{filter, map, Fused};
//! use weir::prelude::*;
//!
//! /// A stateless operator of your own: trims lines, drops empty ones.
//! #[derive(Clone)]
//! struct Trim;
//!
//! impl Chain<String> for Trim {
//!     type Out = String;
//!     fn push<C: Collector<String>>(&mut self, line: String, out: &mut C) {
//!         let trimmed = line.trim();
//!         if !trimmed.is_empty() {
//!             out.collect(trimmed.to_string());
//!         }
//!     }
//!     fn names(&self, into: &mut Vec<String>) {
//!         into.push("trim".into());
//!     }
//! }
//!
//! let lengths = CollectSink::<usize>::new();
//! let job = Job::new("fused")
//!     .source(W1Lines::new(1_000))
//!     .apply(Trim) // fused with the map below
//!     .map(|line: String| line.len())
//!     .rebalance()
//!     // a stage that starts with a chain: map and filter as one operator
//!     .process(Fused::new(map(|n: usize| n * 2).then(filter(|n: &usize| *n > 0))))
//!     .sink(lengths.clone());
//! Node::new(EngineOptions::for_tests(2)).unwrap().run(job).unwrap();
//! assert_eq!(lengths.items().len(), 100);
//! ```

use std::marker::PhantomData;

use super::chain::{Chain, Collector, Emitter, FilterOp, FlatMapOp, MapOp, Then};
use super::error::OperatorError;
use super::keyed::{Key, KeyedContext};
use super::operator_type::{NoKey, Operator};

/// The context of a record is where a fused chain inside an operator emits.
impl<K: Key, O> Collector<O> for KeyedContext<'_, K, O> {
    #[inline(always)]
    fn collect(&mut self, item: O) {
        self.emit(item);
    }

    #[inline(always)]
    fn set_timestamp(&mut self, ts: i64) {
        self.out.set_timestamp(ts);
    }
}

/// A chain of stateless operators as a non-keyed operator type.
pub struct Fused<C, T> {
    chain: C,
    _in: PhantomData<fn(T)>,
}

impl<C: Clone, T> Clone for Fused<C, T> {
    fn clone(&self) -> Self {
        Fused {
            chain: self.chain.clone(),
            _in: PhantomData,
        }
    }
}

impl<C, T> Fused<C, T> {
    /// The operator that runs `chain` on each record.
    pub fn new(chain: C) -> Self {
        Fused {
            chain,
            _in: PhantomData,
        }
    }
}

impl<T, C> Operator for Fused<C, T>
where
    T: Send + Unpin + 'static,
    C: Chain<T>,
    C::Out: 'static,
{
    type Key = NoKey;
    type In = T;
    type Out = C::Out;

    fn name(&self) -> String {
        let mut names = Vec::new();
        self.chain.names(&mut names);
        names.join(" -> ")
    }

    #[inline]
    fn process(
        &mut self,
        value: T,
        ctx: &mut KeyedContext<'_, NoKey, C::Out>,
    ) -> Result<(), OperatorError> {
        self.chain.push(value, ctx);
        Ok(())
    }
}

/// Chains `next` after this chain (both fused into one loop).
pub trait ChainExt<In>: Chain<In> + Sized {
    /// This chain, then `next`.
    fn then<N: Chain<Self::Out>>(self, next: N) -> Then<Self, N> {
        Then {
            first: self,
            second: next,
        }
    }
}

impl<In, C: Chain<In>> ChainExt<In> for C {}

/// The built-in `map` as a chain: one output per input.
pub fn map<T, U, F: FnMut(T) -> U + Clone + Send + 'static>(f: F) -> MapOp<F> {
    MapOp {
        f,
        name: "map".into(),
    }
}

/// The built-in `filter` as a chain: keeps the inputs `f` accepts.
pub fn filter<T, F: FnMut(&T) -> bool + Clone + Send + 'static>(f: F) -> FilterOp<F> {
    FilterOp {
        f,
        name: "filter".into(),
    }
}

/// The built-in `flat_map` as a chain: any number of outputs per input.
pub fn flat_map<T, U: 'static, F>(f: F) -> FlatMapOp<F, U>
where
    F: FnMut(T, &mut Emitter<'_, U>) + Clone + Send + 'static,
{
    FlatMapOp {
        f,
        name: "flat_map".into(),
        _out: PhantomData,
    }
}
