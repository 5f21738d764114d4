//! `union`: one stream of the records of several streams of one type.
//!
//! ```
//! use weir::prelude::*;
//!
//! let all = CollectSink::<String>::new();
//! let job = Job::new("union");
//! // W1Lines::new(n) makes n words, ten to a line.
//! let a = job.source(W1Lines::new(100));
//! let b = job.source(W1Lines::new(50)).map(|l: String| l.to_uppercase());
//! let sunk = a.union(b).sink(all.clone());
//! Node::new(EngineOptions::for_tests(2)).unwrap().run(sunk).unwrap();
//! assert_eq!(all.items().len(), 15);
//! ```

use crate::job::builder::{Head, IntoPlan, KeyedHead, Processed, Stream};
use crate::operator::{Chain, NoKey, Operator, PassThrough};

use super::partitioning::SpreadSpec;

impl<H: Head, C: Chain<H::Out>> Stream<H, C>
where
    C::Out: crate::exchange::Data,
{
    /// The records of this stream and of `other`, as one stream (in a new stage
    /// that both feed, partition to partition).
    pub fn union<H2, C2>(self, other: Stream<H2, C2>) -> Processed<PassThrough<C::Out>>
    where
        H: IntoPlan<C, SpreadSpec<C::Out>>,
        H2: Head + IntoPlan<C2, SpreadSpec<C::Out>>,
        C2: Chain<H2::Out, Out = C::Out>,
    {
        self.union_into(other, PassThrough::default())
    }

    /// Runs the non-keyed operator `op` on the records of this stream and of
    /// `other`; [`KeyedContext::input`](crate::operator::KeyedContext::input) tells
    /// them apart (0 for this stream, 1 for `other`), and
    /// [`KeyedContext::input_name`](crate::operator::KeyedContext::input_name) names
    /// the stage each came from.
    pub fn union_into<H2, C2, P>(self, other: Stream<H2, C2>, op: P) -> Processed<P>
    where
        H: IntoPlan<C, SpreadSpec<C::Out>>,
        H2: Head + IntoPlan<C2, SpreadSpec<C::Out>>,
        C2: Chain<H2::Out, Out = C::Out>,
        P: Operator<Key = NoKey, In = C::Out>,
    {
        let graph = self.graph().clone();
        if !graph.same(other.graph()) {
            graph.note_error("union of streams of two different jobs".into());
        }
        let to = graph.add_slot_after(self.slot());
        self.forward().close_to(to);
        other.forward().close_to(to);
        Stream::start(graph, to, KeyedHead(op))
    }
}
