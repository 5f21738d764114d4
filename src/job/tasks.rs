//! The tasks partition actors run: a source stage's and a keyed stage's.

use weir_actors::state::KeyedState;
use weir_actors::{Outbox, Pumped, Task, TaskError};

use crate::connector::{ReadStatus, SourceReader};
use crate::operator::{Chain, Collector, KeyedContext, KeyedProcess, OpenContext};
use crate::record::Keyed;

use super::terminal::{IntoTerminal, Terminal};

/// Pushes items through a chain into a terminal.
struct Pipe<'a, C, Tm, W: Send + 'static> {
    chain: &'a mut C,
    into: IntoTerminal<'a, Tm, W>,
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
}

fn check<Tm: Terminal<T>, T>(term: &mut Tm) -> Result<(), TaskError> {
    match term.take_error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A source stage's partition: reads a split, runs the chain, feeds the terminal.
pub(crate) struct SourceTask<R, C, Tm> {
    pub reader: R,
    pub chain: C,
    pub term: Tm,
    /// Records read per round.
    pub budget: usize,
    pub what: String,
}

impl<R, C, Tm> Task for SourceTask<R, C, Tm>
where
    R: SourceReader,
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
        let mut pipe = Pipe {
            chain: &mut self.chain,
            into: IntoTerminal {
                term: &mut self.term,
                out,
            },
        };
        let status = self
            .reader
            .read(self.budget, &mut pipe)
            .map_err(|e| TaskError::caused(format!("reading {}", self.what), e))?;
        check(&mut self.term)?;
        Ok(match status {
            ReadStatus::More => Pumped::More,
            ReadStatus::Idle => Pumped::Idle,
            ReadStatus::Exhausted => Pumped::Exhausted,
        })
    }

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        self.term.finish(out)
    }
}

/// A keyed stage's partition: runs the keyed operator with each record's key state,
/// then the chain and terminal after it.
pub(crate) struct KeyedTask<P: KeyedProcess, C, Tm> {
    pub process: P,
    pub state: KeyedState<P::Key>,
    pub chain: C,
    pub term: Tm,
    pub partition: u32,
    pub parallelism: u32,
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
        let mut pipe = Pipe {
            chain: &mut self.chain,
            into: IntoTerminal {
                term: &mut self.term,
                out,
            },
        };
        for record in batch {
            let mut ctx = KeyedContext {
                state: &mut self.state,
                kp: record.kp,
                key: &record.key,
                out: &mut pipe,
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

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        let mut pipe = Pipe {
            chain: &mut self.chain,
            into: IntoTerminal {
                term: &mut self.term,
                out,
            },
        };
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
