//! The window operators: keyed operators (built on [`KeyedProcess`] like any user
//! operator) that gather a key's records into windows kept in keyed state, fire them
//! with event-time timers as the watermark passes their end, and clear them once they
//! can no longer fire.
//!
//! Lateness follows Flink: a record is late for a window when the watermark has
//! passed the window's end plus the allowed lateness; a record late for all its
//! windows goes to the late-data output (and is counted), never silently dropped. A
//! record within the allowed lateness updates its window, which fires again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use weir_actors::state::{MapHandle, StateDescriptor, StateValue, ValueHandle};

use crate::connector::{Sink, SinkError};
use crate::operator::{
    AggregateFn, Collector, Key, KeyedContext, KeyedProcess, OpenContext, OperatorError,
};
use crate::record::NO_TIMESTAMP;

use super::assigner::{TimeDomain, TimeWindow, WindowAssigner};
use super::session::MergedWindows;

/// What a window operator emits: the key, the window and the result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowResult<K, R> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The window function's result.
    pub value: R,
}

/// Makes each partition's late-data sink.
pub type LateSinkFactory<K, V> =
    Arc<dyn Fn(u32, u32) -> Result<Box<dyn Sink<(K, V)>>, SinkError> + Send + Sync>;

/// Where records too late for every window go: a sink (when the job gave one) and a
/// counter either way.
pub struct LateOutput<K, V> {
    factory: Option<LateSinkFactory<K, V>>,
    sink: Option<Box<dyn Sink<(K, V)>>>,
    count: Arc<AtomicU64>,
    /// `weir_late_records_total` of this partition (set when the operator opens).
    metric: metrics::Counter,
    /// Late records go to the stage's side output, read by the job as a stream.
    to_side: bool,
}

impl<K, V> Clone for LateOutput<K, V> {
    fn clone(&self) -> Self {
        LateOutput {
            factory: self.factory.clone(),
            sink: None,
            count: self.count.clone(),
            metric: metrics::Counter::noop(),
            to_side: self.to_side,
        }
    }
}

impl<K: 'static, V: 'static> LateOutput<K, V> {
    /// Late records are counted and logged.
    pub fn counted(count: Arc<AtomicU64>) -> Self {
        LateOutput {
            factory: None,
            sink: None,
            count,
            metric: metrics::Counter::noop(),
            to_side: false,
        }
    }

    /// Late records go to the stage's side output (a stream of the job), counted.
    pub fn to_side_output(count: Arc<AtomicU64>) -> Self {
        LateOutput {
            factory: None,
            sink: None,
            count,
            metric: metrics::Counter::noop(),
            to_side: true,
        }
    }

    /// Late records go to the sinks `factory` makes, and are counted.
    pub fn to_sink(factory: LateSinkFactory<K, V>, count: Arc<AtomicU64>) -> Self {
        LateOutput {
            factory: Some(factory),
            sink: None,
            count,
            metric: metrics::Counter::noop(),
            to_side: false,
        }
    }

    /// The counter of late records this output counts into (shared by its clones).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }

    /// Opens the late-data sink (if any) of the operator being opened, and its
    /// `weir_late_records_total` counter.
    pub(crate) fn open(&mut self, ctx: &OpenContext<'_, K>) -> Result<(), OperatorError>
    where
        K: Key,
    {
        let (partition, parallelism) = (ctx.partition(), ctx.parallelism());
        self.metric = crate::metrics::late_records(ctx.job(), ctx.stage(), partition);
        if let Some(f) = &self.factory {
            self.sink = Some(
                f(partition, parallelism)
                    .map_err(|e| OperatorError::msg(format!("opening the late-data sink: {e}")))?,
            );
        }
        Ok(())
    }

    /// Counts a late record and sends it where the job asked: the stage's side
    /// output, the late-data sink, or the log.
    pub(crate) fn send<O>(
        &mut self,
        key: K,
        value: V,
        ts: i64,
        watermark: i64,
        ctx: &mut KeyedContext<'_, K, O>,
    ) -> Result<(), OperatorError>
    where
        K: Key,
        V: Send,
    {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        self.metric.increment(1);
        if self.to_side {
            return ctx.emit_side((key, value));
        }
        match self.sink.as_mut() {
            Some(sink) => sink
                .write((key, value))
                .map_err(|e| OperatorError::msg(format!("writing a late record: {e}"))),
            None => {
                if (n + 1).is_power_of_two() {
                    tracing::warn!(timestamp = ts, watermark, late_records = n + 1,
                        "a record arrived after its windows closed (counted; give the window a late-data sink to keep them)");
                }
                Ok(())
            }
        }
    }

    /// Finishes the late-data sink, if any.
    pub(crate) fn close(&mut self) -> Result<(), OperatorError> {
        match self.sink.as_mut() {
            Some(sink) => sink
                .finish()
                .map_err(|e| OperatorError::msg(format!("finishing the late-data sink: {e}"))),
            None => Ok(()),
        }
    }
}

/// How a window's contents become its result: incrementally (an accumulator per
/// window) or all at once (the window's records, given to a function when it fires).
pub trait WindowFunction<K, V>: Clone + Send + 'static {
    /// What is kept per window.
    type Contents: StateValue;
    /// What a firing emits.
    type Output: 'static;
    /// Empty contents.
    fn create(&self) -> Self::Contents;
    /// Adds a record.
    fn add(&self, contents: &mut Self::Contents, value: V);
    /// Merges `other` into `contents` (session windows).
    fn merge(&self, contents: &mut Self::Contents, other: Self::Contents);
    /// The results of a firing window.
    fn fire(
        &self,
        key: &K,
        window: &TimeWindow,
        contents: &Self::Contents,
        out: &mut dyn FnMut(Self::Output),
    );
}

/// Incremental aggregation with an [`AggregateFn`].
#[derive(Clone)]
pub struct Incremental<A>(pub A);

impl<K, V, A: AggregateFn<V>> WindowFunction<K, V> for Incremental<A> {
    type Contents = A::Acc;
    type Output = A::Output;
    fn create(&self) -> A::Acc {
        self.0.create()
    }
    #[inline]
    fn add(&self, acc: &mut A::Acc, value: V) {
        self.0.add(acc, value);
    }
    fn merge(&self, acc: &mut A::Acc, other: A::Acc) {
        self.0.merge(acc, other);
    }
    fn fire(&self, _key: &K, _window: &TimeWindow, acc: &A::Acc, out: &mut dyn FnMut(A::Output)) {
        out(self.0.result(acc));
    }
}

/// A full-window function: keeps every record of the window and hands them all to
/// `f` when the window fires (Flink's `ProcessWindowFunction`).
pub struct FullWindow<F, O>(pub F, pub std::marker::PhantomData<fn() -> O>);

impl<F: Clone, O> Clone for FullWindow<F, O> {
    fn clone(&self) -> Self {
        FullWindow(self.0.clone(), std::marker::PhantomData)
    }
}

impl<K, V, O, F> WindowFunction<K, V> for FullWindow<F, O>
where
    V: StateValue,
    O: 'static,
    F: Fn(&K, &TimeWindow, &[V], &mut dyn FnMut(O)) + Clone + Send + 'static,
{
    type Contents = Vec<V>;
    type Output = O;
    fn create(&self) -> Vec<V> {
        Vec::new()
    }
    fn add(&self, contents: &mut Vec<V>, value: V) {
        contents.push(value);
    }
    fn merge(&self, contents: &mut Vec<V>, mut other: Vec<V>) {
        contents.append(&mut other);
    }
    fn fire(&self, key: &K, window: &TimeWindow, contents: &Vec<V>, out: &mut dyn FnMut(O)) {
        (self.0)(key, window, contents, out);
    }
}

/// The event-time window operator for any assigner (merging or not) and window
/// function.
pub struct WindowOperator<K, V, A, F: WindowFunction<K, V>> {
    assigner: A,
    function: F,
    allowed_lateness: i64,
    late: LateOutput<K, V>,
    contents: Option<MapHandle<TimeWindow, F::Contents>>,
    sessions: Option<ValueHandle<MergedWindows>>,
    scratch: Vec<TimeWindow>,
}

impl<K, V, A: Clone, F: WindowFunction<K, V>> Clone for WindowOperator<K, V, A, F> {
    fn clone(&self) -> Self {
        WindowOperator {
            assigner: self.assigner.clone(),
            function: self.function.clone(),
            allowed_lateness: self.allowed_lateness,
            late: self.late.clone(),
            contents: self.contents,
            sessions: self.sessions,
            scratch: Vec::new(),
        }
    }
}

impl<K, V, A, F> WindowOperator<K, V, A, F>
where
    K: Key,
    V: Clone + Send + Unpin + 'static,
    A: WindowAssigner,
    F: WindowFunction<K, V>,
{
    /// A window operator; `allowed_lateness` in ms.
    pub fn new(assigner: A, function: F, allowed_lateness: i64, late: LateOutput<K, V>) -> Self {
        WindowOperator {
            assigner,
            function,
            allowed_lateness: allowed_lateness.max(0),
            late,
            contents: None,
            sessions: None,
            scratch: Vec::new(),
        }
    }

    fn processing_time(&self) -> bool {
        self.assigner.domain() == TimeDomain::ProcessingTime
    }

    /// The time windows are measured against: the watermark, or the wall clock for
    /// processing-time windows.
    fn now(&self, ctx: &KeyedContext<'_, K, WindowResult<K, F::Output>>) -> i64 {
        if self.processing_time() {
            ctx.processing_time()
        } else {
            ctx.current_watermark()
        }
    }

    fn register_timer(
        &self,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
        at: i64,
    ) -> Result<(), OperatorError> {
        if self.processing_time() {
            ctx.register_processing_timer(at)
        } else {
            ctx.register_event_timer(at)
        }
    }

    fn delete_timer(
        &self,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
        at: i64,
    ) -> Result<(), OperatorError> {
        if self.processing_time() {
            ctx.delete_processing_timer(at)
        } else {
            ctx.delete_event_timer(at)
        }
    }

    pub(crate) fn cleanup_time(&self, w: &TimeWindow) -> i64 {
        w.max_timestamp().saturating_add(self.allowed_lateness)
    }

    fn handles(&self) -> Result<MapHandle<TimeWindow, F::Contents>, OperatorError> {
        self.contents
            .ok_or_else(|| OperatorError::msg("window operator used before open()"))
    }

    /// Emits the result of `window` with the window's last instant as timestamp.
    fn fire(
        &self,
        window: &TimeWindow,
        contents: &F::Contents,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
    ) {
        let key = ctx.key().clone();
        let mut results = Vec::new();
        self.function
            .fire(&key, window, contents, &mut |r| results.push(r));
        for value in results {
            ctx.emit_at(
                WindowResult {
                    key: key.clone(),
                    window: *window,
                    value,
                },
                window.max_timestamp(),
            );
        }
    }

    /// Adds `value` to the (non-merging) window `w`, firing it at once when the
    /// watermark already passed its end (a late record within the allowed lateness).
    fn add_to_window(
        &mut self,
        w: TimeWindow,
        value: V,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
    ) -> Result<(), OperatorError> {
        self.update_window(w, ctx, move |function, contents| {
            function.add(contents, value)
        })
    }

    /// Merges partial contents (aggregated before the key exchange) into window `w`.
    pub(crate) fn merge_into_window(
        &mut self,
        w: TimeWindow,
        partial: F::Contents,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
    ) -> Result<(), OperatorError> {
        if self.cleanup_time(&w) <= ctx.current_watermark() {
            return Err(OperatorError::msg(format!(
                "a partial aggregate for window {w} arrived after the window was cleared (watermark {}); partial aggregates must precede the watermark that closes their window",
                ctx.current_watermark()
            )));
        }
        self.update_window(w, ctx, move |function, contents| {
            function.merge(contents, partial)
        })
    }

    fn update_window(
        &mut self,
        w: TimeWindow,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
        update: impl FnOnce(&F, &mut F::Contents),
    ) -> Result<(), OperatorError> {
        let handle = self.handles()?;
        let watermark = self.now(ctx);
        let mut map = ctx.map(handle);
        let (mut contents, new) = match map.get(&w)? {
            Some(c) => (c, false),
            None => (self.function.create(), true),
        };
        update(&self.function, &mut contents);
        // Event time: a window the watermark already passed (a late record within the
        // allowed lateness) fires at once. Processing-time windows always fire by
        // their timer, even when the clock is already at their end.
        let fire_now = !self.processing_time() && w.max_timestamp() <= watermark;
        if fire_now {
            self.fire(&w, &contents, ctx);
        }
        ctx.map(handle).insert(w, contents)?;
        if new {
            if !fire_now {
                self.register_timer(ctx, w.max_timestamp())?;
            }
            if self.allowed_lateness > 0 {
                self.register_timer(ctx, self.cleanup_time(&w))?;
            }
        }
        Ok(())
    }

    fn add_to_session(
        &mut self,
        w: TimeWindow,
        value: V,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
    ) -> Result<(), OperatorError> {
        let handle = self.handles()?;
        let sessions = self
            .sessions
            .ok_or_else(|| OperatorError::msg("session windows used before open()"))?;
        let mut merged = ctx.value(sessions).value()?.unwrap_or_default();
        let outcome = merged.add(w);
        let result = outcome.result;
        // Gather the contents of the windows merged away (and of the result window if
        // it existed already), cancelling their timers.
        let mut contents = ctx.map(handle).remove(&result)?;
        for gone in &outcome.absorbed {
            if let Some(c) = ctx.map(handle).remove(gone)? {
                match contents.as_mut() {
                    Some(acc) => self.function.merge(acc, c),
                    None => contents = Some(c),
                }
            }
            self.delete_timer(ctx, gone.max_timestamp())?;
            if self.allowed_lateness > 0 {
                self.delete_timer(ctx, self.cleanup_time(gone))?;
            }
        }
        let mut contents = contents.unwrap_or_else(|| self.function.create());
        self.function.add(&mut contents, value);
        let fire_now = !self.processing_time() && result.max_timestamp() <= self.now(ctx);
        if fire_now {
            self.fire(&result, &contents, ctx);
        } else {
            self.register_timer(ctx, result.max_timestamp())?;
        }
        if self.allowed_lateness > 0 {
            self.register_timer(ctx, self.cleanup_time(&result))?;
        }
        ctx.map(handle).insert(result, contents)?;
        ctx.value(sessions).set(merged)?;
        Ok(())
    }
}

impl<K, V, A, F> KeyedProcess for WindowOperator<K, V, A, F>
where
    K: Key,
    V: Clone + Send + Unpin + 'static,
    A: WindowAssigner,
    F: WindowFunction<K, V>,
{
    type Key = K;
    type In = V;
    type Out = WindowResult<K, F::Output>;

    fn name(&self) -> String {
        format!("window({})", self.assigner.name())
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        self.contents = Some(ctx.map_state(StateDescriptor::new("window-contents"))?);
        if self.assigner.is_merging() {
            self.sessions = Some(ctx.value_state(StateDescriptor::new("window-sessions"))?);
        }
        self.late.open(ctx)
    }

    fn process(
        &mut self,
        value: V,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let ts = if self.processing_time() {
            ctx.processing_time()
        } else {
            ctx.timestamp()
        };
        if ts == NO_TIMESTAMP {
            return Err(OperatorError::msg(format!(
                "{} needs event time, but a record has no timestamp: give the source a WatermarkStrategy (Job::source_with_time)",
                self.assigner.name()
            )));
        }
        let watermark = self.now(ctx);
        let mut open = std::mem::take(&mut self.scratch);
        open.clear();
        self.assigner.assign(ts, &mut open);
        // In processing time nothing is late: the windows come from the clock itself.
        if !self.processing_time() {
            let lateness = self.allowed_lateness;
            open.retain(|w| w.max_timestamp().saturating_add(lateness) > watermark);
        }
        let result = match open.split_last() {
            None => {
                let key = ctx.key().clone();
                self.late.send(key, value, ts, watermark, ctx)
            }
            Some((&last, _)) if self.assigner.is_merging() => self.add_to_session(last, value, ctx),
            Some((&last, others)) => {
                // A record in several windows (sliding) is added to each.
                let mut added = Ok(());
                for &w in others {
                    added = added.and_then(|()| self.add_to_window(w, value.clone(), ctx));
                }
                added.and_then(|()| self.add_to_window(last, value, ctx))
            }
        };
        self.scratch = open;
        result
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let handle = self.handles()?;
        let windows = ctx.map(handle).entries()?;
        for (w, contents) in windows {
            if w.max_timestamp() == timestamp {
                self.fire(&w, &contents, ctx);
            }
            if self.cleanup_time(&w) == timestamp {
                ctx.map(handle).remove(&w)?;
                if let Some(sessions) = self.sessions {
                    let mut merged = ctx.value(sessions).value()?.unwrap_or_default();
                    merged.remove(&w);
                    if merged.windows().is_empty() {
                        ctx.value(sessions).clear()?;
                    } else {
                        ctx.value(sessions).set(merged)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn close(&mut self, _out: &mut dyn Collector<Self::Out>) -> Result<(), OperatorError> {
        self.late.close()
    }
}
