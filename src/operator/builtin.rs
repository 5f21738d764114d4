//! Built-in keyed operators: running reduce and running aggregate.

use std::marker::PhantomData;

use weir_actors::state::{StateDescriptor, StateValue, ValueHandle};

use super::error::OperatorError;
use super::keyed::{Key, KeyedContext, OpenContext};
use super::KeyedProcess;

/// A running reduce: keeps one value per key, combines each new value into it with
/// `f`, and emits `(key, combined)` on every update.
pub struct Reduce<K, V, F> {
    f: F,
    handle: Option<ValueHandle<V>>,
    _key: PhantomData<fn() -> K>,
}

impl<K, V, F: Clone> Clone for Reduce<K, V, F> {
    fn clone(&self) -> Self {
        Reduce {
            f: self.f.clone(),
            handle: self.handle,
            _key: PhantomData,
        }
    }
}

impl<K, V, F> Reduce<K, V, F> {
    /// A reduce combining values with `f`.
    pub fn new(f: F) -> Self {
        Reduce {
            f,
            handle: None,
            _key: PhantomData,
        }
    }
}

fn not_open(what: &str) -> OperatorError {
    OperatorError::msg(format!("{what}: state used before open()"))
}

impl<K, V, F> KeyedProcess for Reduce<K, V, F>
where
    K: Key,
    V: StateValue + Unpin,
    F: Fn(V, V) -> V + Clone + Send + 'static,
{
    type Key = K;
    type In = V;
    type Out = (K, V);

    fn name(&self) -> String {
        "reduce".into()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        let handle = ctx.value_state(StateDescriptor::new("reduce"))?;
        ctx.make_queryable("reduce", handle)?;
        self.handle = Some(handle);
        Ok(())
    }

    #[inline]
    fn process(
        &mut self,
        value: V,
        ctx: &mut KeyedContext<'_, K, (K, V)>,
    ) -> Result<(), OperatorError> {
        let handle = self.handle.ok_or_else(|| not_open("reduce"))?;
        let mut state = ctx.value(handle);
        // One lookup: insert the first value of a key, or combine into the stored one.
        let mut first = false;
        let acc = state.get_or_insert_with(|| {
            first = true;
            value.clone()
        })?;
        if !first {
            *acc = (self.f)(acc.clone(), value);
        }
        let combined = acc.clone();
        let key = ctx.key().clone();
        ctx.emit((key, combined));
        Ok(())
    }
}

/// An aggregation with an accumulator (Flink's `AggregateFunction`): values are added
/// into an accumulator kept as state, and a result is read from it.
pub trait AggregateFn<V>: Clone + Send + 'static {
    /// The accumulator kept in state.
    type Acc: StateValue;
    /// What is emitted.
    type Output: 'static;
    /// A fresh accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one value.
    fn add(&self, acc: &mut Self::Acc, value: V);
    /// Merges `other` into `acc` (when session windows merge, or partial aggregates
    /// meet).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result for an accumulator.
    fn result(&self, acc: &Self::Acc) -> Self::Output;
}

/// A running aggregate: emits `(key, result)` after every value.
pub struct Aggregate<K, V, A: AggregateFn<V>> {
    agg: A,
    handle: Option<ValueHandle<<A as AggregateFn<V>>::Acc>>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V, A: AggregateFn<V>> Clone for Aggregate<K, V, A> {
    fn clone(&self) -> Self {
        Aggregate {
            agg: self.agg.clone(),
            handle: self.handle,
            _types: PhantomData,
        }
    }
}

impl<K, V, A: AggregateFn<V>> Aggregate<K, V, A> {
    /// A running aggregate with `agg`.
    pub fn new(agg: A) -> Self {
        Aggregate {
            agg,
            handle: None,
            _types: PhantomData,
        }
    }
}

impl<K, V, A> KeyedProcess for Aggregate<K, V, A>
where
    K: Key,
    V: Send + Unpin + 'static,
    A: AggregateFn<V>,
{
    type Key = K;
    type In = V;
    type Out = (K, A::Output);

    fn name(&self) -> String {
        "aggregate".into()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        let handle = ctx.value_state(StateDescriptor::new("aggregate"))?;
        ctx.make_queryable("aggregate", handle)?;
        self.handle = Some(handle);
        Ok(())
    }

    #[inline]
    fn process(
        &mut self,
        value: V,
        ctx: &mut KeyedContext<'_, K, (K, A::Output)>,
    ) -> Result<(), OperatorError> {
        let handle = self.handle.ok_or_else(|| not_open("aggregate"))?;
        let agg = &self.agg;
        let mut state = ctx.value(handle);
        let acc = state.get_or_insert_with(|| agg.create())?;
        agg.add(acc, value);
        let result = agg.result(acc);
        let key = ctx.key().clone();
        ctx.emit((key, result));
        Ok(())
    }
}

/// Passes every record on unchanged: the head of a stage that only gathers records
/// (after a `union` or a repartitioning), whose chain then runs the operators that
/// follow.
pub struct PassThrough<T>(PhantomData<fn(T) -> T>);

impl<T> Default for PassThrough<T> {
    fn default() -> Self {
        PassThrough(PhantomData)
    }
}

impl<T> Clone for PassThrough<T> {
    fn clone(&self) -> Self {
        PassThrough(PhantomData)
    }
}

impl<T: Send + Unpin + 'static> KeyedProcess for PassThrough<T> {
    type Key = super::NoKey;
    type In = T;
    type Out = T;

    fn name(&self) -> String {
        "pass".into()
    }

    #[inline]
    fn process(
        &mut self,
        value: T,
        ctx: &mut KeyedContext<'_, super::NoKey, T>,
    ) -> Result<(), OperatorError> {
        ctx.emit(value);
        Ok(())
    }
}
