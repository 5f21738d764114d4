//! Typed side outputs: an operator's outputs besides its main one (Flink's
//! `OutputTag`), read by the job as streams of their own.
//!
//! A tag names a side output and fixes its record type, so an operator that emits
//! to `&OutputTag<Alert>` and a job that reads `side_output(&OutputTag<Alert>)` are
//! checked against each other at compile time.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use weir_actors::SideOutput;

use super::error::OperatorError;
use super::operator_type::NoKey;
use crate::record::Keyed;

/// The name and record type of a side output.
pub struct OutputTag<T> {
    name: Arc<str>,
    _type: PhantomData<fn(T)>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag {
            name: self.name.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.name)
    }
}

impl<T: Send + 'static> OutputTag<T> {
    /// A tag called `name` (unique among one operator's side outputs).
    pub fn new(name: impl AsRef<str>) -> Self {
        OutputTag {
            name: Arc::from(name.as_ref()),
            _type: PhantomData,
        }
    }

    /// The side output's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A side record as it travels: with the timestamp of the record or timer that sent
/// it, so the stream reading the side output keeps event time.
fn stamped<T: Send + 'static>(item: T, ts: i64) -> Box<dyn Any + Send> {
    Box::new(Keyed {
        kp: 0,
        ts,
        key: NoKey,
        value: item,
    })
}

/// The side outputs the job reads from one partition actor, by name.
#[derive(Default)]
pub struct SideOutputs {
    outputs: Vec<(String, Box<dyn SideOutput>)>,
}

impl SideOutputs {
    /// Side outputs feeding the given readers.
    pub(crate) fn new(outputs: Vec<(String, Box<dyn SideOutput>)>) -> Self {
        SideOutputs { outputs }
    }

    /// Whether the job reads any side output of this stage.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Whether the job reads the side output called `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.outputs.iter().any(|(n, _)| n == name)
    }

    /// Sends `item` to the side output `name`. A side output the job does not read
    /// takes nothing (like Flink's, records to an unread tag are discarded).
    pub(crate) fn push<T: Send + 'static>(
        &mut self,
        name: &str,
        item: T,
        ts: i64,
    ) -> Result<(), OperatorError> {
        match self.outputs.iter_mut().find(|(n, _)| n == name) {
            Some((_, out)) => out
                .push_any(stamped(item, ts))
                .map_err(|e| OperatorError::msg(format!("side output '{name}': {e}"))),
            None => Ok(()),
        }
    }

    /// Sends `item` to the stage's only side output.
    pub(crate) fn push_only<T: Send + 'static>(
        &mut self,
        item: T,
        ts: i64,
    ) -> Result<(), OperatorError> {
        match self.outputs.as_mut_slice() {
            [(_, out)] => out
                .push_any(stamped(item, ts))
                .map_err(OperatorError::Failed),
            [] => Err(OperatorError::msg("this stage has no side output")),
            _ => Err(OperatorError::msg(
                "this stage has several side outputs: name one with an OutputTag",
            )),
        }
    }

    /// Visits every side output (the kernel sends them like the main output).
    pub(crate) fn each(&mut self, visit: &mut dyn FnMut(&mut dyn SideOutput)) {
        for (_, out) in &mut self.outputs {
            visit(out.as_mut());
        }
    }
}
