//! Operator chains: stateless operators fused into one loop.
//!
//! A [`Chain`] takes one input item and pushes zero or more output items into a
//! [`Collector`]. Chains compose with generics ([`Then`]), so a source followed by
//! `flat_map`, `filter` and `map` compiles to one monomorphised loop with no
//! queueing between operators; the only indirect call per record is the
//! `Emitter` handed to a `flat_map` function.

/// Where an operator pushes its output.
pub trait Collector<T> {
    /// Takes one item.
    fn collect(&mut self, item: T);

    /// Sets the timestamp of the items collected next (where timestamps are carried;
    /// ignored elsewhere).
    #[inline(always)]
    fn set_timestamp(&mut self, _ts: i64) {}

    /// Says that the items collected next come from lane `lane` of the source split
    /// being read (e.g. one Kafka partition of the split), so that the split's
    /// watermark can be the minimum over its lanes (see [`crate::time::lanes`]). A
    /// reader with lanes calls it before every item it collects; ignored by
    /// everything but the source task.
    #[inline(always)]
    fn set_lane(&mut self, _lane: crate::time::LaneId) {}

    /// Says that the split being read has lane `lane`, before any item of it is
    /// collected (e.g. when a Kafka partition is assigned), so that a lane that has
    /// not delivered yet holds the split's watermark back. Ignored by everything but
    /// the source task.
    #[inline(always)]
    fn declare_lane(&mut self, _lane: crate::time::LaneId) {}
}

/// A stateless transformation from `In` items to `Self::Out` items.
///
/// `Clone` because every partition actor of a stage runs its own copy.
pub trait Chain<In>: Clone + Send + 'static {
    /// What the chain emits.
    type Out;
    /// Pushes the outputs for `item` into `out`.
    fn push<C: Collector<Self::Out>>(&mut self, item: In, out: &mut C);
    /// Names of the operators in the chain, in order, for stage names.
    fn names(&self, into: &mut Vec<String>);
}

/// The empty chain: items pass through unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<T> Chain<T> for Identity {
    type Out = T;
    #[inline(always)]
    fn push<C: Collector<T>>(&mut self, item: T, out: &mut C) {
        out.collect(item);
    }
    fn names(&self, _into: &mut Vec<String>) {}
}

/// Chain `A` followed by chain `B`.
#[derive(Clone)]
pub struct Then<A, B> {
    pub(crate) first: A,
    pub(crate) second: B,
}

struct Feed<'a, B, C> {
    next: &'a mut B,
    out: &'a mut C,
}

impl<T, B: Chain<T>, C: Collector<B::Out>> Collector<T> for Feed<'_, B, C> {
    #[inline(always)]
    fn collect(&mut self, item: T) {
        self.next.push(item, self.out);
    }
    #[inline(always)]
    fn set_timestamp(&mut self, ts: i64) {
        self.out.set_timestamp(ts);
    }
}

impl<In, A: Chain<In>, B: Chain<A::Out>> Chain<In> for Then<A, B> {
    type Out = B::Out;
    #[inline(always)]
    fn push<C: Collector<Self::Out>>(&mut self, item: In, out: &mut C) {
        let mut feed = Feed {
            next: &mut self.second,
            out,
        };
        self.first.push(item, &mut feed);
    }
    fn names(&self, into: &mut Vec<String>) {
        self.first.names(into);
        self.second.names(into);
    }
}

/// `map`: one output per input.
#[derive(Clone)]
pub struct MapOp<F> {
    pub(crate) f: F,
    pub(crate) name: String,
}

impl<T, U, F: FnMut(T) -> U + Clone + Send + 'static> Chain<T> for MapOp<F> {
    type Out = U;
    #[inline(always)]
    fn push<C: Collector<U>>(&mut self, item: T, out: &mut C) {
        out.collect((self.f)(item));
    }
    fn names(&self, into: &mut Vec<String>) {
        into.push(self.name.clone());
    }
}

/// `filter`: keeps the inputs the predicate accepts.
#[derive(Clone)]
pub struct FilterOp<F> {
    pub(crate) f: F,
    pub(crate) name: String,
}

impl<T, F: FnMut(&T) -> bool + Clone + Send + 'static> Chain<T> for FilterOp<F> {
    type Out = T;
    #[inline(always)]
    fn push<C: Collector<T>>(&mut self, item: T, out: &mut C) {
        if (self.f)(&item) {
            out.collect(item);
        }
    }
    fn names(&self, into: &mut Vec<String>) {
        into.push(self.name.clone());
    }
}

/// Handed to a `flat_map` function to emit any number of outputs for one input.
pub struct Emitter<'a, U> {
    out: &'a mut dyn Collector<U>,
}

impl<U> Emitter<'_, U> {
    /// Emits one output (with its input's timestamp).
    #[inline(always)]
    pub fn emit(&mut self, item: U) {
        self.out.collect(item);
    }

    /// Emits one output with timestamp `ts`; later outputs of this input keep it.
    pub fn emit_at(&mut self, item: U, ts: i64) {
        self.out.set_timestamp(ts);
        self.out.collect(item);
    }
}

/// `flat_map`: any number of outputs per input.
pub struct FlatMapOp<F, U> {
    pub(crate) f: F,
    pub(crate) name: String,
    pub(crate) _out: std::marker::PhantomData<fn() -> U>,
}

impl<F: Clone, U> Clone for FlatMapOp<F, U> {
    fn clone(&self) -> Self {
        FlatMapOp {
            f: self.f.clone(),
            name: self.name.clone(),
            _out: std::marker::PhantomData,
        }
    }
}

impl<T, U, F> Chain<T> for FlatMapOp<F, U>
where
    F: FnMut(T, &mut Emitter<'_, U>) + Clone + Send + 'static,
    U: 'static,
{
    type Out = U;
    #[inline(always)]
    fn push<C: Collector<U>>(&mut self, item: T, out: &mut C) {
        let mut emitter = Emitter { out };
        (self.f)(item, &mut emitter);
    }
    fn names(&self, into: &mut Vec<String>) {
        into.push(self.name.clone());
    }
}

/// Collects into a `Vec`; handy in tests and for small in-memory jobs.
impl<T> Collector<T> for Vec<T> {
    fn collect(&mut self, item: T) {
        self.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_operators_run_in_order() {
        let mut chain = Then {
            first: FlatMapOp {
                f: |line: String, out: &mut Emitter<'_, String>| {
                    for w in line.split(' ') {
                        out.emit(w.to_string());
                    }
                },
                name: "split".into(),
                _out: std::marker::PhantomData,
            },
            second: Then {
                first: FilterOp {
                    f: |w: &String| !w.is_empty(),
                    name: "non-empty".into(),
                },
                second: MapOp {
                    f: |w: String| w.len(),
                    name: "len".into(),
                },
            },
        };
        let mut out = Vec::new();
        chain.push("a bb  ccc".to_string(), &mut out);
        assert_eq!(out, vec![1, 2, 3]);
        let mut names = Vec::new();
        chain.names(&mut names);
        assert_eq!(names, ["split", "non-empty", "len"]);
    }
}
