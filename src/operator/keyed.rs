//! The contexts an operator type's handlers get: [`OpenContext`] to register state,
//! [`KeyedContext`] with each record and timer (the key, its state, the outputs).

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

/// Given to [`Operator::open`](super::Operator::open): registers the operator's state.
pub struct OpenContext<'a, K> {
    pub(crate) state: &'a mut KeyedState<K>,
    pub(crate) queryables: &'a mut super::queryable::QueryableStates<K>,
    pub(crate) job: &'a str,
    pub(crate) stage: &'a str,
    pub(crate) partition: u32,
    pub(crate) parallelism: u32,
}

/// Whether `K` is [`NoKey`](super::NoKey): the operator is not keyed.
fn keyless<K: 'static>() -> bool {
    std::any::TypeId::of::<K>() == std::any::TypeId::of::<super::NoKey>()
}

/// The error of a keyed-only feature used by a non-keyed operator.
fn not_keyed(what: &str) -> OperatorError {
    OperatorError::msg(format!(
        "{what} needs a keyed operator (key the stream with key_by or group_by_key); \
         a non-keyed operator keeps its state in its fields and snapshots it as operator state"
    ))
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
        if keyless::<K>() {
            return Err(not_keyed("value state"));
        }
        Ok(self.state.register_value(descriptor)?)
    }

    /// Registers a map state (a map per key).
    pub fn map_state<UK: StateKey, UV: StateValue>(
        &mut self,
        descriptor: StateDescriptor,
    ) -> Result<MapHandle<UK, UV>, OperatorError> {
        if keyless::<K>() {
            return Err(not_keyed("map state"));
        }
        Ok(self.state.register_map(descriptor)?)
    }

    /// Registers a list state (a list per key).
    pub fn list_state<T: StateValue>(
        &mut self,
        descriptor: StateDescriptor,
    ) -> Result<ListHandle<T>, OperatorError> {
        if keyless::<K>() {
            return Err(not_keyed("list state"));
        }
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

/// Given to [`Operator::process`](super::Operator::process) with each record: the record's key, that key's
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
    /// The side outputs the job reads from this stage.
    pub(crate) sides: &'a mut super::side::SideOutputs,
    /// Which input of the stage the record came from (0 for a one-input stage).
    pub(crate) input: u32,
    /// That input's name: the stage that feeds it.
    pub(crate) input_name: &'a str,
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

    /// Asks for [`Operator::on_timer`](super::Operator::on_timer) to be called for the current key once the
    /// watermark reaches `timestamp`. Registering the same time twice gives one call.
    pub fn register_event_timer(&mut self, timestamp: i64) -> Result<(), OperatorError> {
        if keyless::<K>() {
            return Err(not_keyed("an event-time timer"));
        }
        if timestamp == NO_TIMESTAMP {
            return Err(OperatorError::msg(
                "cannot register an event-time timer at NO_TIMESTAMP (does the source assign timestamps?)",
            ));
        }
        Ok(self
            .state
            .register_timer(TimerDomain::EventTime, self.kp, self.key, timestamp)?)
    }

    /// Asks for [`Operator::on_timer`](super::Operator::on_timer) to be called for the current key once the
    /// wall clock reaches `timestamp` (ms since the Unix epoch). Timers still pending
    /// when the input ends fire then, in order.
    pub fn register_processing_timer(&mut self, timestamp: i64) -> Result<(), OperatorError> {
        if keyless::<K>() {
            return Err(not_keyed("a processing-time timer"));
        }
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

    /// Whether the job reads a side output of this stage.
    pub fn has_side_output(&self) -> bool {
        !self.sides.is_empty()
    }

    /// Sends `item` to the stage's only side output (read by the job as a stream
    /// of its own). Fails if the job reads no side output here, reads several (name
    /// one with [`KeyedContext::output`]), or reads it as another type.
    pub fn emit_side<T: Send + 'static>(&mut self, item: T) -> Result<(), OperatorError> {
        self.sides.push_only(item, self.ts)
    }

    /// Sends `item` to the side output `tag` names. A side output the job does not
    /// read takes nothing.
    pub fn output<T: Send + 'static>(
        &mut self,
        tag: &super::side::OutputTag<T>,
        item: T,
    ) -> Result<(), OperatorError> {
        self.sides.push(tag.name(), item, self.ts)
    }

    /// Which input of the stage the current record came from: 0 for a stage with
    /// one input, the position of the stream in `union` (the stream `union` was
    /// called on is 0). Two-input operators see their input in the
    /// [`Either`](super::Either) variant instead.
    pub fn input(&self) -> u32 {
        self.input
    }

    /// The name of the input the current record came from: the stage that feeds it
    /// (as the job's stage names and the status API show it), e.g.
    /// `"source:orders -> map -> forward"`.
    pub fn input_name(&self) -> &str {
        self.input_name
    }

    /// In [`Operator::on_timer`](super::Operator::on_timer): whether an event-time or a processing-time timer
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
