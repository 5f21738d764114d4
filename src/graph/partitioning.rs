//! Partitioning between stages besides the key exchange: forward, rebalance (round
//! robin) and broadcast, into a non-keyed operator.
//!
//! ```
//! use weir::prelude::*;
//!
//! let seen = CollectSink::<u64>::new();
//! let job = Job::new("spread")
//!     .source(W1Lines::new(1_000)) // 100 lines of ten words
//!     .map(|line: String| line.len() as u64)
//!     .rebalance()
//!     .gather()
//!     .sink(seen.clone());
//! Node::new(EngineOptions::for_tests(3)).unwrap().run(job).unwrap();
//! assert_eq!(seen.items().len(), 100);
//! ```

use std::marker::PhantomData;

use weir_actors::{Outbox, TaskError};

use crate::connector::SinkError;
use crate::job::builder::{Head, IntoPlan, KeyedHead, Processed, Stream};
use crate::job::terminal::{Terminal, TerminalEnv, TerminalSpec};
use crate::operator::{Chain, NoKey, Operator, PassThrough};
use crate::record::{Keyed, Routed};

use super::Partitioning;

/// How a forward or rebalance partitioning picks the receiver of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Partition `i` sends to partition `i` (modulo the receivers).
    Forward,
    /// Each partition deals its records round robin over every receiver.
    Rebalance,
}

/// The spec of a forward or rebalance partitioning.
pub struct SpreadSpec<T> {
    spread: Spread,
    _type: PhantomData<fn(T)>,
}

/// Sends each record to one receiver, as its [`Spread`] says.
pub struct SpreadExchange<T> {
    spread: Spread,
    partition: usize,
    receivers: usize,
    next: usize,
    _type: PhantomData<fn(T)>,
}

impl<T: crate::exchange::Data> Terminal<T> for SpreadExchange<T> {
    type Wire = Keyed<NoKey, T>;

    #[inline]
    fn accept(&mut self, item: T, ts: i64, out: &mut Outbox<Self::Wire>) {
        let dest = match self.spread {
            Spread::Forward => self.partition % self.receivers,
            Spread::Rebalance => {
                let dest = self.next;
                self.next = (self.next + 1) % self.receivers;
                dest
            }
        };
        out.push_to(
            dest,
            Keyed {
                kp: 0,
                ts,
                key: NoKey,
                value: item,
            },
        );
    }

    fn take_error(&mut self) -> Option<TaskError> {
        None
    }

    fn finish(&mut self, _out: &mut Outbox<Self::Wire>) -> Result<(), TaskError> {
        Ok(())
    }
}

impl<T: crate::exchange::Data> TerminalSpec<T> for SpreadSpec<T> {
    type Terminal = SpreadExchange<T>;
    fn describe(&self) -> String {
        match self.spread {
            Spread::Forward => "forward".into(),
            Spread::Rebalance => "rebalance".into(),
        }
    }
    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError> {
        let partition = env.partition;
        let downstream = env.receivers;
        let receivers = downstream.max(1) as usize;
        Ok(SpreadExchange {
            spread: self.spread,
            partition: partition as usize,
            receivers,
            // Each partition starts its round robin at its own receiver, so that
            // small inputs do not all land on receiver 0.
            next: partition as usize % receivers,
            _type: PhantomData,
        })
    }
}

/// A broadcast record as the receiving stage takes it: a non-keyed stage takes it
/// as any record, a broadcast-state stage as a broadcast record.
pub trait FromBroadcast<T>: crate::exchange::Data {
    /// Wraps `value` with its timestamp.
    fn wrap(ts: i64, value: T) -> Self;
}

impl<T: crate::exchange::Data> FromBroadcast<T> for Keyed<NoKey, T> {
    #[inline]
    fn wrap(ts: i64, value: T) -> Self {
        Keyed {
            kp: 0,
            ts,
            key: NoKey,
            value,
        }
    }
}

impl<K, V, T> FromBroadcast<T> for Routed<K, V, T>
where
    K: crate::exchange::Data,
    V: crate::exchange::Data,
    T: crate::exchange::Data,
{
    #[inline]
    fn wrap(ts: i64, value: T) -> Self {
        Routed::Broadcast { ts, value }
    }
}

/// The spec of a broadcast into a non-keyed stage.
pub type BroadcastToAll<T> = BroadcastSpec<T, Keyed<NoKey, T>>;

/// The spec of a broadcast partitioning: every record to every receiver, as `W`.
pub struct BroadcastSpec<T, W> {
    _types: PhantomData<fn(T) -> W>,
}

impl<T, W> BroadcastSpec<T, W> {
    pub(crate) fn new() -> Self {
        BroadcastSpec {
            _types: PhantomData,
        }
    }
}

/// Sends every record to every receiver.
pub struct BroadcastExchange<T, W> {
    receivers: usize,
    _types: PhantomData<fn(T) -> W>,
}

impl<T, W> Terminal<T> for BroadcastExchange<T, W>
where
    T: Clone + crate::exchange::Data,
    W: FromBroadcast<T>,
{
    type Wire = W;

    #[inline]
    fn accept(&mut self, item: T, ts: i64, out: &mut Outbox<W>) {
        for dest in 1..self.receivers {
            out.push_to(dest, W::wrap(ts, item.clone()));
        }
        if self.receivers > 0 {
            out.push_to(0, W::wrap(ts, item));
        }
    }

    fn take_error(&mut self) -> Option<TaskError> {
        None
    }

    fn finish(&mut self, _out: &mut Outbox<W>) -> Result<(), TaskError> {
        Ok(())
    }
}

impl<T, W> TerminalSpec<T> for BroadcastSpec<T, W>
where
    T: Clone + crate::exchange::Data,
    W: FromBroadcast<T>,
{
    type Terminal = BroadcastExchange<T, W>;
    fn describe(&self) -> String {
        "broadcast".into()
    }
    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError> {
        let downstream = env.receivers;
        Ok(BroadcastExchange {
            receivers: downstream as usize,
            _types: PhantomData,
        })
    }
}

/// A stream whose records are about to be spread over the partitions of the next
/// stage (forward, rebalance or broadcast): run a non-keyed operator there with
/// [`Partitioned::process`], or just gather the records there with
/// [`Partitioned::gather`].
pub struct Partitioned<H, C, Ts> {
    stream: Stream<H, C>,
    term: Ts,
    partitioning: Partitioning,
}

impl<H, C, Ts> Partitioned<H, C, Ts>
where
    H: Head + IntoPlan<C, Ts>,
    C: Chain<H::Out>,
    C::Out: crate::exchange::Data,
{
    /// Runs the non-keyed operator `op` on the records, in a new stage.
    pub fn process<P>(self, op: P) -> Processed<P>
    where
        P: Operator<Key = NoKey, In = C::Out>,
    {
        self.stream
            .close_into(self.term, self.partitioning, KeyedHead(op))
    }

    /// Sends the records to the stage of slot `to`, which another builder step
    /// started.
    pub(crate) fn close_to(self, to: usize) -> super::Graph {
        self.stream.close_to(self.term, self.partitioning, to)
    }

    /// Gathers the records in a new stage, where the operators that follow run.
    pub fn gather(self) -> Processed<PassThrough<C::Out>> {
        self.process(PassThrough::default())
    }
}

impl<H: Head, C: Chain<H::Out>> Stream<H, C>
where
    C::Out: crate::exchange::Data,
{
    /// Partition `i` of the next stage gets what partition `i` of this one sends.
    pub fn forward(self) -> Partitioned<H, C, SpreadSpec<C::Out>> {
        self.spread(Spread::Forward, Partitioning::Forward)
    }

    /// Every partition deals its records round robin over the next stage's
    /// partitions (to even out skew).
    pub fn rebalance(self) -> Partitioned<H, C, SpreadSpec<C::Out>> {
        self.spread(Spread::Rebalance, Partitioning::Rebalance)
    }

    fn spread(
        self,
        spread: Spread,
        partitioning: Partitioning,
    ) -> Partitioned<H, C, SpreadSpec<C::Out>> {
        Partitioned {
            stream: self,
            term: SpreadSpec {
                spread,
                _type: PhantomData,
            },
            partitioning,
        }
    }

    /// Every partition of the next stage gets every record.
    pub fn broadcast(self) -> Partitioned<H, C, BroadcastToAll<C::Out>>
    where
        C::Out: Clone,
    {
        Partitioned {
            stream: self,
            term: BroadcastSpec::new(),
            partitioning: Partitioning::Broadcast,
        }
    }

    /// Runs the non-keyed operator `op` on the records, in a new stage fed
    /// partition to partition (forward).
    pub fn process<P>(self, op: P) -> Processed<P>
    where
        P: Operator<Key = NoKey, In = C::Out>,
        H: IntoPlan<C, SpreadSpec<C::Out>>,
    {
        self.forward().process(op)
    }
}
