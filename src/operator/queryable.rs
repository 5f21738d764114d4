//! Queryable state: the states an operator lets the status API read, by name, with
//! a reader that turns one key's value into JSON.
//!
//! An operator makes a value state queryable in `open`
//! ([`OpenContext::make_queryable`](super::OpenContext::make_queryable)); the
//! built-in `reduce` and `aggregate` do so for their state (named `reduce` and
//! `aggregate`). A query reads the state through the same cache the operator
//! writes, so it sees every record processed so far (docs/operations.md).

use weir_actors::state::{KeyedState, StateError, StateValue, ValueHandle};

use super::error::OperatorError;
use super::keyed::Key;

/// Why a queryable state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Reading the state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The value has no JSON form (for example a map with non-string keys).
    #[error("the value of state '{state}' does not encode as JSON: {source}")]
    Json {
        /// The state's name.
        state: String,
        /// What serde_json reported.
        source: serde_json::Error,
    },
}

/// Reads one key's value (of key partition `kp`) as JSON.
type Reader<K> = Box<
    dyn Fn(&mut KeyedState<K>, u32, &K) -> Result<Option<serde_json::Value>, QueryError> + Send,
>;

/// The queryable states of one partition actor.
pub struct QueryableStates<K> {
    readers: Vec<(String, Reader<K>)>,
}

impl<K> Default for QueryableStates<K> {
    fn default() -> Self {
        QueryableStates {
            readers: Vec::new(),
        }
    }
}

impl<K: Key> QueryableStates<K> {
    /// Makes the value state behind `handle` readable as `name`.
    pub(crate) fn add_value<T: StateValue>(
        &mut self,
        name: &str,
        handle: ValueHandle<T>,
    ) -> Result<(), OperatorError> {
        if self.readers.iter().any(|(n, _)| n == name) {
            return Err(OperatorError::msg(format!(
                "state '{name}' is made queryable twice"
            )));
        }
        let name_owned = name.to_string();
        let reader: Reader<K> = Box::new(move |state, kp, key| {
            let mut value = state.value(handle, kp, key);
            match value.get()? {
                Some(v) => serde_json::to_value(v)
                    .map(Some)
                    .map_err(|source| QueryError::Json {
                        state: name_owned.clone(),
                        source,
                    }),
                None => Ok(None),
            }
        });
        self.readers.push((name.to_string(), reader));
        Ok(())
    }

    /// Reads `name` for `key` (of key partition `kp`); `None` when no state of that
    /// name is queryable.
    pub(crate) fn read(
        &self,
        state: &mut KeyedState<K>,
        name: &str,
        kp: u32,
        key: &K,
    ) -> Option<Result<Option<serde_json::Value>, QueryError>> {
        let (_, reader) = self.readers.iter().find(|(n, _)| n == name)?;
        Some(reader(state, kp, key))
    }

    /// The queryable states' names, in the order they were added.
    pub fn names(&self) -> Vec<&str> {
        self.readers.iter().map(|(n, _)| n.as_str()).collect()
    }
}
