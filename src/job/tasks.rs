//! The tasks partition actors run: a source stage's and a keyed stage's.

use std::time::Instant;

use weir_actors::state::{KeyedState, TimerDomain};
use weir_actors::{Marker, Outbox, Pumped, SideOutput, Task, TaskError, NO_WATERMARK};

use crate::connector::{ReadStatus, SourceReader};
use crate::operator::{Chain, Collector, KeyedContext, KeyedProcess, OpenContext};
use crate::record::{Keyed, NO_TIMESTAMP};
use crate::time::TimestampStrategy;

use super::terminal::{IntoTerminal, Terminal};

/// Pushes items through a chain into a terminal.
struct Pipe<'a, C, Tm, W: Send + 'static> {
    chain: &'a mut C,
    into: IntoTerminal<'a, Tm, W>,
}

impl<'a, C, Tm, W: Send + 'static> Pipe<'a, C, Tm, W> {
    /// Pushes into `chain`, then `term`, sending through `out`.
    fn new(chain: &'a mut C, term: &'a mut Tm, out: &'a mut Outbox<W>) -> Self {
        Pipe {
            chain,
            into: IntoTerminal {
                term,
                out,
                ts: NO_TIMESTAMP,
            },
        }
    }
}

impl<In, C, Tm> Collector<In> for Pipe<'_, C, Tm, Tm::Wire>
where
    C: Chain<In>,
    Tm: Terminal<C::Out>,
{
    #[inline(always)]
    fn collect(&mut self, item: In) {
        self.chain.push(item, &mut self.into);
    }

    #[inline(always)]
    fn set_timestamp(&mut self, ts: i64) {
        self.into.ts = ts;
    }
}

/// Stamps each item a source reads with its timestamp and tracks the highest one.
struct Stamp<'a, S, P> {
    time: &'a S,
    max_ts: &'a mut i64,
    count: usize,
    pipe: P,
}

impl<T, S: TimestampStrategy<T>, P: Collector<T>> Collector<T> for Stamp<'_, S, P> {
    #[inline(always)]
    fn collect(&mut self, item: T) {
        self.count += 1;
        if S::ENABLED {
            let ts = self.time.timestamp(&item);
            if ts > *self.max_ts {
                *self.max_ts = ts;
            }
            self.pipe.set_timestamp(ts);
        }
        self.pipe.collect(item);
    }
}

fn check<Tm: Terminal<T>, T>(term: &mut Tm) -> Result<(), TaskError> {
    match term.take_error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A source stage's partition: reads a split, stamps records with event time, runs
/// the chain, feeds the terminal, and sends the split's watermarks.
pub(crate) struct SourceTask<R, S, C, Tm> {
    pub reader: R,
    pub time: S,
    pub chain: C,
    pub term: Tm,
    /// Records read per round.
    pub budget: usize,
    pub what: String,
    pub progress: SplitProgress,
    /// Records read so far.
    pub read: u64,
}

/// Event-time progress of one source split.
pub(crate) struct SplitProgress {
    max_ts: i64,
    sent: i64,
    sent_at: Option<Instant>,
    last_input: Instant,
    idle: bool,
}

impl SplitProgress {
    pub fn new() -> Self {
        SplitProgress {
            max_ts: NO_TIMESTAMP,
            sent: NO_WATERMARK,
            sent_at: None,
            last_input: Instant::now(),
            idle: false,
        }
    }
}

impl<R, S, C, Tm> SourceTask<R, S, C, Tm>
where
    R: SourceReader,
    S: TimestampStrategy<R::Item>,
    C: Chain<R::Item>,
    Tm: Terminal<C::Out>,
{
    /// After a round that read `read` records: send the watermark if it advanced and
    /// the interval passed, or declare the split idle after its idle timeout.
    fn progress(&mut self, read: usize, out: &mut Outbox<Tm::Wire>) {
        let now = Instant::now();
        let p = &mut self.progress;
        if read > 0 {
            p.last_input = now;
            if p.idle {
                // Active again: a watermark (even an old one) says so downstream.
                p.idle = false;
                out.broadcast_marker(Marker::Watermark(p.sent));
            }
        }
        let wm = self.time.watermark(p.max_ts);
        let due = p
            .sent_at
            .is_none_or(|at| now.duration_since(at) >= self.time.interval());
        if wm > p.sent && due {
            self.term.on_watermark(wm, out);
            out.broadcast_marker(Marker::Watermark(wm));
            p.sent = wm;
            p.sent_at = Some(now);
        } else if read == 0 && !p.idle {
            if let Some(timeout) = self.time.idle_timeout() {
                if now.duration_since(p.last_input) >= timeout {
                    p.idle = true;
                    out.broadcast_marker(Marker::Idle);
                }
            }
        }
    }
}

impl<R, S, C, Tm> Task for SourceTask<R, S, C, Tm>
where
    R: SourceReader,
    S: TimestampStrategy<R::Item>,
    C: Chain<R::Item>,
    Tm: Terminal<C::Out>,
{
    type In = ();
    type Out = Tm::Wire;

    fn on_batch(
        &mut self,
        from: u32,
        _batch: Vec<()>,
        _out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        Err(TaskError::msg(format!(
            "source {} received a batch from input {from}; sources have no inputs",
            self.what
        )))
    }

    fn pump(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<Pumped, TaskError> {
        let mut stamp = Stamp {
            time: &self.time,
            max_ts: &mut self.progress.max_ts,
            count: 0,
            pipe: Pipe::new(&mut self.chain, &mut self.term, out),
        };
        let status = self
            .reader
            .read(self.budget, &mut stamp)
            .map_err(|e| TaskError::caused(format!("reading {}", self.what), e))?;
        let read = stamp.count;
        self.read += read as u64;
        check(&mut self.term)?;
        if S::ENABLED && status != ReadStatus::Exhausted {
            self.progress(read, out);
        }
        Ok(match status {
            ReadStatus::More => Pumped::More,
            ReadStatus::Idle => Pumped::Idle,
            ReadStatus::Exhausted => Pumped::Exhausted,
        })
    }

    fn records_read(&self) -> u64 {
        self.read
    }

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        self.term.finish(out)
    }
}

/// A keyed stage's partition: runs the keyed operator with each record's key state,
/// fires its timers as the watermark passes them, then the chain and terminal.
pub(crate) struct KeyedTask<P: KeyedProcess, C, Tm> {
    pub process: P,
    pub state: KeyedState<P::Key>,
    pub chain: C,
    pub term: Tm,
    pub partition: u32,
    pub parallelism: u32,
    pub watermark: i64,
    /// The side output the job reads from this stage, if any.
    pub side: Option<Box<dyn SideOutput>>,
}

impl<P, C, Tm> KeyedTask<P, C, Tm>
where
    P: KeyedProcess,
    C: Chain<P::Out>,
    Tm: Terminal<C::Out>,
{
    /// Fires, in timestamp order, every timer of `domain` due at `up_to`, including
    /// timers registered while firing.
    fn fire_timers(
        &mut self,
        domain: TimerDomain,
        up_to: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        while let Some(timer) = self
            .state
            .pop_timer(domain, up_to)
            .map_err(|e| TaskError::caused("reading timers", e))?
        {
            pipe.into.ts = timer.timestamp;
            let mut ctx = KeyedContext {
                state: &mut self.state,
                kp: timer.kp,
                key: &timer.key,
                out: &mut pipe,
                ts: timer.timestamp,
                watermark: self.watermark,
                timer_domain: Some(domain),
                side: self.side.as_deref_mut(),
            };
            self.process
                .on_timer(timer.timestamp, &mut ctx)
                .map_err(|e| TaskError::caused("on_timer", e))?;
        }
        Ok(())
    }
}

impl<P, C, Tm> Task for KeyedTask<P, C, Tm>
where
    P: KeyedProcess,
    C: Chain<P::Out>,
    Tm: Terminal<C::Out>,
{
    type In = Keyed<P::Key, P::In>;
    type Out = Tm::Wire;

    fn start(&mut self, _out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        let mut ctx = OpenContext {
            state: &mut self.state,
            partition: self.partition,
            parallelism: self.parallelism,
        };
        self.process
            .open(&mut ctx)
            .map_err(|e| TaskError::caused("open", e))
    }

    fn on_batch(
        &mut self,
        _from: u32,
        batch: Vec<Keyed<P::Key, P::In>>,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        for record in batch {
            pipe.into.ts = record.ts;
            let mut ctx = KeyedContext {
                state: &mut self.state,
                kp: record.kp,
                key: &record.key,
                out: &mut pipe,
                ts: record.ts,
                watermark: self.watermark,
                timer_domain: None,
                side: self.side.as_deref_mut(),
            };
            self.process
                .process(record.value, &mut ctx)
                .map_err(|e| TaskError::caused("process", e))?;
        }
        check(&mut self.term)?;
        self.state
            .maintain()
            .map_err(|e| TaskError::caused("state cache maintenance", e))
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        self.watermark = watermark;
        self.fire_timers(TimerDomain::EventTime, watermark, out)?;
        self.term.on_watermark(watermark, out);
        check(&mut self.term)?;
        self.state
            .maintain()
            .map_err(|e| TaskError::caused("state cache maintenance", e))
    }

    fn side_output(&mut self) -> Option<&mut (dyn SideOutput + 'static)> {
        self.side.as_deref_mut()
    }

    /// A processing-time timer for `t` fires once the clock has passed `t` (at
    /// `t + 1`): records processed during millisecond `t` still see its window open,
    /// so a window never fires twice.
    fn next_deadline(&self) -> Option<i64> {
        self.state
            .next_timer(TimerDomain::ProcessingTime)
            .map(|t| t.saturating_add(1))
    }

    fn on_processing_time(
        &mut self,
        now_ms: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        self.fire_timers(TimerDomain::ProcessingTime, now_ms.saturating_sub(1), out)?;
        check(&mut self.term)?;
        self.state
            .maintain()
            .map_err(|e| TaskError::caused("state cache maintenance", e))
    }

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        // Processing-time timers still pending fire now, so a bounded job's last
        // processing-time windows are not lost.
        self.fire_timers(TimerDomain::ProcessingTime, i64::MAX, out)?;
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        self.process
            .close(&mut pipe)
            .map_err(|e| TaskError::caused("close", e))?;
        check(&mut self.term)?;
        self.state
            .flush()
            .map_err(|e| TaskError::caused("flushing state at end of input", e))?;
        self.term.finish(out)
    }
}

/// The first stage of a branch read from another stage's side output: runs its chain
/// and terminal on each record it receives.
pub(crate) struct PassTask<T, C, Tm> {
    pub chain: C,
    pub term: Tm,
    pub _in: std::marker::PhantomData<fn(T)>,
}

impl<T, C, Tm> Task for PassTask<T, C, Tm>
where
    T: Send + Unpin + 'static,
    C: Chain<T>,
    Tm: Terminal<C::Out>,
{
    type In = T;
    type Out = Tm::Wire;

    fn on_batch(
        &mut self,
        _from: u32,
        batch: Vec<T>,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        for item in batch {
            pipe.collect(item);
        }
        check(&mut self.term)
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        self.term.on_watermark(watermark, out);
        check(&mut self.term)
    }

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        self.term.finish(out)
    }
}
