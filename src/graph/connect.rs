//! `connect`: two keyed streams with one key type into one two-input keyed operator.
//!
//! The operator's input is [`Either`]: `Left` records of the stream `connect` was
//! called on, `Right` records of the other; both arrive with their key's state in
//! scope, and the operator's watermark is the minimum over both inputs (idle ones
//! excluded). Joins are two-input keyed operators built on this.
//!
//! ```
//! use weir::prelude::*;
//!
//! /// Counts, per key, the records of each side.
//! #[derive(Clone, Default)]
//! struct CountSides {
//!     counts: Option<ValueHandle<(u64, u64)>>,
//! }
//!
//! impl KeyedProcess for CountSides {
//!     type Key = String;
//!     type In = Either<u64, u64>;
//!     type Out = (String, u64, u64);
//!
//!     fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<(), OperatorError> {
//!         self.counts = Some(ctx.value_state(StateDescriptor::new("counts"))?);
//!         Ok(())
//!     }
//!
//!     fn process(
//!         &mut self,
//!         value: Either<u64, u64>,
//!         ctx: &mut KeyedContext<'_, String, (String, u64, u64)>,
//!     ) -> Result<(), OperatorError> {
//!         let handle = self.counts.ok_or_else(|| OperatorError::msg("not open"))?;
//!         let mut state = ctx.value(handle);
//!         let (l, r) = state.get()?.copied().unwrap_or((0, 0));
//!         let now = match value {
//!             Either::Left(_) => (l + 1, r),
//!             Either::Right(_) => (l, r + 1),
//!         };
//!         state.set(now)?;
//!         let key = ctx.key().clone();
//!         ctx.emit((key, now.0, now.1));
//!         Ok(())
//!     }
//! }
//!
//! let out = CollectSink::<(String, u64, u64)>::new();
//! let job = Job::new("connect");
//! let words = job
//!     .source(W1Lines::new(200)) // 20 lines
//!     .map(|line: String| (line.split(' ').next().unwrap_or("").to_string(), 1u64))
//!     .group_by_key();
//! let more = job
//!     .source(W1Lines::new(100)) // 10 lines
//!     .map(|line: String| (line.split(' ').next().unwrap_or("").to_string(), 2u64))
//!     .group_by_key();
//! let sunk = words.connect(more).process(CountSides::default()).sink(out.clone());
//! Node::new(EngineOptions::for_tests(2)).unwrap().run(sunk).unwrap();
//! let items = out.items();
//! assert_eq!(items.len(), 30);
//! let lefts: u64 = items.iter().filter(|(_, l, _)| *l > 0).count() as u64;
//! assert!(lefts > 0);
//! ```

use std::marker::PhantomData;

use crate::job::builder::{Head, IntoPlan, KeyedHead, KeyedStream, Processed, Stream};
use crate::job::terminal::{ExchangeSpec, KeySelector, LeftValue, RightValue};
use crate::operator::{Chain, Either, Operator};

use super::Partitioning;

/// Two keyed streams with one key type, waiting for their two-input operator.
pub struct Connected<L, R> {
    left: L,
    right: R,
}

impl<H, C, Sel> KeyedStream<H, C, Sel>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
{
    /// Connects this keyed stream (the left input) with `other` (the right input),
    /// keyed by the same key type, for a two-input keyed operator.
    pub fn connect<H2, C2, Sel2>(
        self,
        other: KeyedStream<H2, C2, Sel2>,
    ) -> Connected<KeyedStream<H, C, Sel>, KeyedStream<H2, C2, Sel2>>
    where
        H2: Head,
        C2: Chain<H2::Out>,
        C2::Out: 'static,
        Sel2: KeySelector<C2::Out, Key = Sel::Key>,
    {
        Connected {
            left: self,
            right: other,
        }
    }
}

/// The type of a left input's exchange into a two-input operator.
pub type LeftExchange<Sel, R> = ExchangeSpec<LeftValue<Sel, R>>;
/// The type of a right input's exchange into a two-input operator.
pub type RightExchange<Sel, L> = ExchangeSpec<RightValue<Sel, L>>;

impl<H, C, Sel, H2, C2, Sel2> Connected<KeyedStream<H, C, Sel>, KeyedStream<H2, C2, Sel2>>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
    H2: Head,
    C2: Chain<H2::Out>,
    C2::Out: 'static,
    Sel2: KeySelector<C2::Out, Key = Sel::Key>,
{
    /// Runs the two-input keyed operator `op` (whose input is `Either<left value,
    /// right value>`) on both streams, each record with its key's state.
    pub fn process<P>(self, op: P) -> Processed<P>
    where
        P: Operator<Key = Sel::Key, In = Either<Sel::Value, Sel2::Value>>,
        H: IntoPlan<C, LeftExchange<Sel, Sel2::Value>>,
        H2: IntoPlan<C2, RightExchange<Sel2, Sel::Value>>,
    {
        let graph = self.left.graph().clone();
        if !graph.same(self.right.graph()) {
            graph.note_error("connect of streams of two different jobs".into());
        }
        let to = graph.add_slot_after(self.left.slot());
        let (left, left_sel) = self.left.into_parts();
        left.close_to(
            ExchangeSpec(LeftValue(left_sel, PhantomData)),
            Partitioning::Key,
            to,
        );
        let (right, right_sel) = self.right.into_parts();
        right.close_to(
            ExchangeSpec(RightValue(right_sel, PhantomData)),
            Partitioning::Key,
            to,
        );
        Stream::start(graph, to, KeyedHead(op))
    }
}
