//! Triggers: when a global window (one window per key, never ending on its own)
//! fires and when it is purged. Open for users: implement [`Trigger`].

use weir_actors::state::{StateDescriptor, TimerDomain, ValueHandle};

use crate::operator::{Key, KeyedContext, KeyedProcess, OpenContext, OperatorError};

use super::assigner::TimeWindow;
use super::operator::{WindowFunction, WindowResult};

/// What a trigger decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// The window's result is emitted; its contents are kept.
    Fire,
    /// The window's contents are dropped without a result.
    Purge,
    /// The result is emitted, then the contents are dropped.
    FireAndPurge,
}

/// What a trigger sees and may do for the current key's window.
pub struct TriggerContext {
    count: u64,
    watermark: i64,
    processing_time: i64,
    timers: Vec<(TimerDomain, i64)>,
    deleted: Vec<(TimerDomain, i64)>,
}

impl TriggerContext {
    /// Records in the window since it was last purged (including the current one).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The wall clock, ms since the Unix epoch.
    pub fn processing_time(&self) -> i64 {
        self.processing_time
    }

    /// Asks for [`Trigger::on_timer`] when the watermark reaches `time`.
    pub fn register_event_timer(&mut self, time: i64) {
        self.timers.push((TimerDomain::EventTime, time));
    }

    /// Asks for [`Trigger::on_timer`] when the wall clock passes `time`.
    pub fn register_processing_timer(&mut self, time: i64) {
        self.timers.push((TimerDomain::ProcessingTime, time));
    }

    /// Cancels a timer registered earlier (for instance when purging the window).
    pub fn delete_timer(&mut self, domain: TimerDomain, time: i64) {
        self.deleted.push((domain, time));
    }
}

/// Decides when a key's global window fires. One copy runs per partition actor;
/// whatever it must remember per key goes through the context (count, timers).
pub trait Trigger<V>: Clone + Send + 'static {
    /// A short name for stage names.
    fn name(&self) -> String;
    /// A record (with its timestamp) was added to the window.
    fn on_element(&mut self, value: &V, timestamp: i64, ctx: &mut TriggerContext) -> TriggerResult;
    /// A timer the trigger registered fired.
    fn on_timer(
        &mut self,
        _time: i64,
        _domain: TimerDomain,
        _ctx: &mut TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
}

/// Fires and purges every `n` records (Flink's purging count trigger).
#[derive(Clone, Copy, Debug)]
pub struct CountTrigger {
    n: u64,
}

impl CountTrigger {
    /// Every `n` records (at least 1).
    pub fn of(n: u64) -> Self {
        CountTrigger { n: n.max(1) }
    }
}

impl<V> Trigger<V> for CountTrigger {
    fn name(&self) -> String {
        format!("count({})", self.n)
    }
    fn on_element(&mut self, _value: &V, _ts: i64, ctx: &mut TriggerContext) -> TriggerResult {
        if ctx.count() >= self.n {
            TriggerResult::FireAndPurge
        } else {
            TriggerResult::Continue
        }
    }
}

/// Fires every `interval` of event time while the window holds records (Flink's
/// continuous event-time trigger): at the next multiple of the interval after a
/// record, then again at each multiple the watermark passes.
#[derive(Clone, Copy, Debug)]
pub struct EveryEventTime {
    interval: i64,
}

impl EveryEventTime {
    /// Every `interval` of event time (at least 1 ms).
    pub fn of(interval: std::time::Duration) -> Self {
        EveryEventTime {
            interval: i64::try_from(interval.as_millis())
                .unwrap_or(i64::MAX)
                .max(1),
        }
    }

    fn next_after(&self, t: i64) -> i64 {
        let start = t - t.rem_euclid(self.interval);
        start.saturating_add(self.interval - 1)
    }
}

impl<V> Trigger<V> for EveryEventTime {
    fn name(&self) -> String {
        format!("every_event_time({} ms)", self.interval)
    }
    fn on_element(&mut self, _value: &V, ts: i64, ctx: &mut TriggerContext) -> TriggerResult {
        ctx.register_event_timer(self.next_after(ts));
        TriggerResult::Continue
    }
    fn on_timer(
        &mut self,
        time: i64,
        domain: TimerDomain,
        ctx: &mut TriggerContext,
    ) -> TriggerResult {
        if domain != TimerDomain::EventTime {
            return TriggerResult::Continue;
        }
        // Once event time has run out (the input ended: the watermark is +infinity)
        // there is no next interval; registering one would fire for ever.
        if ctx.current_watermark() < i64::MAX {
            ctx.register_event_timer(time.saturating_add(self.interval));
        }
        TriggerResult::Fire
    }
}

/// A global window per key with a trigger (Flink's `GlobalWindows` + `Trigger`).
pub struct GlobalWindowOperator<K, V, T, F: WindowFunction<K, V>> {
    trigger: T,
    function: F,
    contents: Option<ValueHandle<(u64, F::Contents)>>,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K, V, T: Clone, F: WindowFunction<K, V>> Clone for GlobalWindowOperator<K, V, T, F> {
    fn clone(&self) -> Self {
        GlobalWindowOperator {
            trigger: self.trigger.clone(),
            function: self.function.clone(),
            contents: self.contents,
            _types: std::marker::PhantomData,
        }
    }
}

impl<K, V, T, F: WindowFunction<K, V>> GlobalWindowOperator<K, V, T, F> {
    /// A global window per key, fired by `trigger`, computed by `function`.
    pub fn new(trigger: T, function: F) -> Self {
        GlobalWindowOperator {
            trigger,
            function,
            contents: None,
            _types: std::marker::PhantomData,
        }
    }
}

impl<K, V, T, F> GlobalWindowOperator<K, V, T, F>
where
    K: Key,
    V: Send + Unpin + 'static,
    T: Trigger<V>,
    F: WindowFunction<K, V>,
{
    fn handle(&self) -> Result<ValueHandle<(u64, F::Contents)>, OperatorError> {
        self.contents
            .ok_or_else(|| OperatorError::msg("global window used before open()"))
    }

    fn context(
        ctx: &KeyedContext<'_, K, WindowResult<K, F::Output>>,
        count: u64,
    ) -> TriggerContext {
        TriggerContext {
            count,
            watermark: ctx.current_watermark(),
            processing_time: ctx.processing_time(),
            timers: Vec::new(),
            deleted: Vec::new(),
        }
    }

    /// Registers what the trigger asked for, then fires and/or purges.
    fn apply(
        &self,
        result: TriggerResult,
        tctx: TriggerContext,
        ctx: &mut KeyedContext<'_, K, WindowResult<K, F::Output>>,
    ) -> Result<(), OperatorError> {
        for (domain, time) in tctx.deleted {
            match domain {
                TimerDomain::EventTime => ctx.delete_event_timer(time)?,
                TimerDomain::ProcessingTime => ctx.delete_processing_timer(time)?,
            }
        }
        for (domain, time) in tctx.timers {
            match domain {
                TimerDomain::EventTime => ctx.register_event_timer(time)?,
                TimerDomain::ProcessingTime => ctx.register_processing_timer(time)?,
            }
        }
        let handle = self.handle()?;
        if matches!(result, TriggerResult::Fire | TriggerResult::FireAndPurge) {
            if let Some((_, contents)) = ctx.value(handle).value()? {
                let key = ctx.key().clone();
                let mut results = Vec::new();
                self.function
                    .fire(&key, &TimeWindow::GLOBAL, &contents, &mut |r| {
                        results.push(r)
                    });
                for value in results {
                    ctx.emit(WindowResult {
                        key: key.clone(),
                        window: TimeWindow::GLOBAL,
                        value,
                    });
                }
            }
        }
        if matches!(result, TriggerResult::Purge | TriggerResult::FireAndPurge) {
            ctx.value(handle).clear()?;
        }
        Ok(())
    }
}

impl<K, V, T, F> KeyedProcess for GlobalWindowOperator<K, V, T, F>
where
    K: Key,
    V: Send + Unpin + 'static,
    T: Trigger<V>,
    F: WindowFunction<K, V>,
{
    type Key = K;
    type In = V;
    type Out = WindowResult<K, F::Output>;

    fn name(&self) -> String {
        format!("global_window({})", self.trigger.name())
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), OperatorError> {
        self.contents = Some(ctx.value_state(StateDescriptor::new("global-window"))?);
        Ok(())
    }

    fn process(
        &mut self,
        value: V,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let handle = self.handle()?;
        let ts = ctx.timestamp();
        let (watermark, processing_time) = (ctx.current_watermark(), ctx.processing_time());
        let (result, tctx) = {
            // One lookup: count the record, ask the trigger, then add the record (a
            // firing includes it).
            let function = &self.function;
            let mut state = ctx.value(handle);
            let (count, contents) = state.get_or_insert_with(|| (0, function.create()))?;
            *count += 1;
            let mut tctx = TriggerContext {
                count: *count,
                watermark,
                processing_time,
                timers: Vec::new(),
                deleted: Vec::new(),
            };
            let result = self.trigger.on_element(&value, ts, &mut tctx);
            function.add(contents, value);
            (result, tctx)
        };
        self.apply(result, tctx, ctx)
    }

    fn on_timer(
        &mut self,
        time: i64,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let handle = self.handle()?;
        let Some((count, _)) = ctx.value(handle).value()? else {
            return Ok(());
        };
        let domain = ctx.timer_domain().unwrap_or(TimerDomain::EventTime);
        let mut tctx = Self::context(ctx, count);
        let result = self.trigger.on_timer(time, domain, &mut tctx);
        self.apply(result, tctx, ctx)
    }
}
