//! Keyed operators: the user's per-record function with the key's state in scope.

use weir_actors::state::{
    KeyedState, ListHandle, ListState, MapHandle, MapState, StateDescriptor, StateKey, StateValue,
    TimerDomain, ValueHandle, ValueState,
};

use crate::record::NO_TIMESTAMP;

use super::chain::Collector;
use super::error::OperatorError;

/// What can be a key: encodable (its encoding picks the key partition and names its
/// state on disk), hashable, comparable and cloneable. Implemented for every such type.
pub trait Key: StateKey + Unpin + std::fmt::Debug {}
impl<T: StateKey + Unpin + std::fmt::Debug> Key for T {}

/// Given to [`KeyedProcess::open`]: registers the operator's state.
pub struct OpenContext<'a, K> {
    pub(crate) state: &'a mut KeyedState<K>,
    pub(crate) queryables: &'a mut super::queryable::QueryableStates<K>,
    pub(crate) job: &'a str,
    pub(crate) stage: &'a str,
    pub(crate) partition: u32,
    pub(crate) parallelism: u32,
}

impl<K: Key> OpenContext<'_, K> {
    /// Lets the status API read the value state behind `handle` as `name`, for
    /// one key at a time, while the job runs (`GET
    /// /api/jobs/{job}/stages/{stage}/state/{name}?key=...`; docs/operations.md).
    /// The value is shown as JSON.
    pub fn make_queryable<T: StateValue>(
        &mut self,
        name: &str,
        handle: ValueHandle<T>,
    ) -> Result<(), OperatorError> {
        self.queryables.add_value(name, handle)
    }

    /// Registers a single-value state; the handle reads and writes it in `process`.
    pub fn value_state<T: StateValue>(
        &mut self,
        descriptor: StateDescriptor,
    ) -> Result<ValueHandle<T>, OperatorError> {
        Ok(self.state.register_value(descriptor)?)
    }

    /// Registers a map state (a map per key).
    pub fn map_state<UK: StateKey, UV: StateValue>(
        &mut self,
        descriptor: StateDescriptor,
    ) -> Result<MapHandle<UK, UV>, OperatorError> {
        Ok(self.state.register_map(descriptor)?)
    }

    /// Registers a list state (a list per key).
    pub fn list_state<T: StateValue>(
        &mut self,
        descriptor: StateDescriptor,
    ) -> Result<ListHandle<T>, OperatorError> {
        Ok(self.state.register_list(descriptor)?)
    }

    /// This partition actor's index within its stage.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// How many partition actors the stage has.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// The job's name (e.g. for the labels of an operator's own metrics).
    pub fn job(&self) -> &str {
        self.job
    }

    /// The stage's name (e.g. for the labels of an operator's own metrics).
    pub fn stage(&self) -> &str {
        self.stage
    }
}

/// Given to [`KeyedProcess::process`] with each record: the record's key, that key's
/// state, and the output.
pub struct KeyedContext<'a, K, O> {
    pub(crate) state: &'a mut KeyedState<K>,
    pub(crate) kp: u32,
    pub(crate) key: &'a K,
    pub(crate) out: &'a mut dyn Collector<O>,
    /// The current record's timestamp (or the firing timer's).
    pub(crate) ts: i64,
    /// The operator's current watermark.
    pub(crate) watermark: i64,
    /// Which kind of timer is firing (in `on_timer`), if any.
    pub(crate) timer_domain: Option<TimerDomain>,
    /// The stage's side output, if the job reads one.
    pub(crate) side: Option<&'a mut (dyn weir_actors::SideOutput + 'static)>,
}

impl<K: Key, O> KeyedContext<'_, K, O> {
    /// The timestamp of the current record, or of the timer being fired
    /// ([`NO_TIMESTAMP`] when the job has no event time).
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.ts
    }

    /// The operator's current watermark: every record with a timestamp at or below it
    /// has arrived, except late ones.
    #[inline]
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Emits one record with timestamp `ts` (instead of the current record's).
    pub fn emit_at(&mut self, item: O, ts: i64) {
        self.out.set_timestamp(ts);
        self.out.collect(item);
        self.out.set_timestamp(self.ts);
    }

    /// Asks for [`KeyedProcess::on_timer`] to be called for the current key once the
    /// watermark reaches `timestamp`. Registering the same time twice gives one call.
    pub fn register_event_timer(&mut self, timestamp: i64) -> Result<(), OperatorError> {
        if timestamp == NO_TIMESTAMP {
            return Err(OperatorError::msg(
                "cannot register an event-time timer at NO_TIMESTAMP (does the source assign timestamps?)",
            ));
        }
        Ok(self
            .state
            .register_timer(TimerDomain::EventTime, self.kp, self.key, timestamp)?)
    }

    /// Asks for [`KeyedProcess::on_timer`] to be called for the current key once the
    /// wall clock reaches `timestamp` (ms since the Unix epoch). Timers still pending
    /// when the input ends fire then, in order.
    pub fn register_processing_timer(&mut self, timestamp: i64) -> Result<(), OperatorError> {
        Ok(self
            .state
            .register_timer(TimerDomain::ProcessingTime, self.kp, self.key, timestamp)?)
    }

    /// Cancels a processing-time timer of the current key.
    pub fn delete_processing_timer(&mut self, timestamp: i64) -> Result<(), OperatorError> {
        Ok(self
            .state
            .delete_timer(TimerDomain::ProcessingTime, self.kp, self.key, timestamp)?)
    }

    /// Whether the job reads this stage's side output.
    pub fn has_side_output(&self) -> bool {
        self.side.is_some()
    }

    /// Sends `item` to the stage's side output (read by the job as a stream of its
    /// own). Fails if the job reads no side output here, or reads it as another type.
    pub fn emit_side<T: Send + 'static>(&mut self, item: T) -> Result<(), OperatorError> {
        match self.side.as_mut() {
            Some(side) => side.push_any(Box::new(item)).map_err(OperatorError::Failed),
            None => Err(OperatorError::msg("this stage has no side output")),
        }
    }

    /// In [`KeyedProcess::on_timer`]: whether an event-time or a processing-time timer
    /// fired. `None` while processing a record.
    pub fn timer_domain(&self) -> Option<TimerDomain> {
        self.timer_domain
    }

    /// Cancels an event-time timer of the current key.
    pub fn delete_event_timer(&mut self, timestamp: i64) -> Result<(), OperatorError> {
        Ok(self
            .state
            .delete_timer(TimerDomain::EventTime, self.kp, self.key, timestamp)?)
    }

    /// The current processing time (ms since the Unix epoch): the node's clock,
    /// which is the wall clock unless a test injected another
    /// ([`crate::job::Node::with_clock`]).
    pub fn processing_time(&self) -> i64 {
        self.state.processing_time_ms()
    }

    /// The current record's key.
    #[inline]
    pub fn key(&self) -> &K {
        self.key
    }

    /// The current key's key partition.
    #[inline]
    pub fn key_partition(&self) -> u32 {
        self.kp
    }

    /// Emits one record downstream.
    #[inline]
    pub fn emit(&mut self, item: O) {
        self.out.collect(item);
    }

    /// The current key's value state for `handle`.
    #[inline]
    pub fn value<T: StateValue>(&mut self, handle: ValueHandle<T>) -> ValueState<'_, K, T> {
        self.state.value(handle, self.kp, self.key)
    }

    /// The current key's map state for `handle`.
    #[inline]
    pub fn map<UK: StateKey, UV: StateValue>(
        &mut self,
        handle: MapHandle<UK, UV>,
    ) -> MapState<'_, K, UK, UV> {
        self.state.map(handle, self.kp, self.key)
    }

    /// The current key's list state for `handle`.
    #[inline]
    pub fn list<T: StateValue>(&mut self, handle: ListHandle<T>) -> ListState<'_, K, T> {
        self.state.list(handle, self.kp, self.key)
    }
}

/// A keyed operator: handles one record at a time with its key's state in scope (the
/// equivalent of Flink's `KeyedProcessFunction`).
///
/// One copy (a `clone` of the value given to the job builder) runs in each partition
/// actor of the stage; state registered in [`KeyedProcess::open`] is kept per key, in
/// the node's state store, and survives the copy.
pub trait KeyedProcess: Clone + Send + 'static {
    /// The key type; records arrive grouped by it.
    type Key: Key;
    /// The value of each incoming record.
    type In: Send + Unpin + 'static;
    /// What the operator emits.
    type Out: 'static;

    /// A short name for stage names, metrics and errors.
    fn name(&self) -> String {
        "process".to_string()
    }

    /// Called once per partition actor before any record: register state here.
    fn open(&mut self, _ctx: &mut OpenContext<'_, Self::Key>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Handles one record.
    fn process(
        &mut self,
        value: Self::In,
        ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), OperatorError>;

    /// Called when a timer of the current key fires: an event-time timer when the
    /// watermark reaches `timestamp`, a processing-time timer when the wall clock does
    /// ([`KeyedContext::timer_domain`] says which). The key's state is in scope and
    /// emitted records carry `timestamp`. Timers fire in timestamp order, each once.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Called once when every input has ended; may emit final results.
    fn close(&mut self, _out: &mut dyn Collector<Self::Out>) -> Result<(), OperatorError> {
        Ok(())
    }
}
