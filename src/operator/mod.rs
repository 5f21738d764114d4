//! The operator API: what users write.
//!
//! Stateless operators (map, filter, flat_map) are fused into chains that run inside
//! one partition actor, compiled into one loop (Flink calls this operator chaining).
//! Keyed operators implement [`KeyedProcess`]: they see one record at a time with the
//! state of its key in scope, and emit downstream through their context.

pub mod builtin;
pub mod chain;
pub mod either;
pub mod error;
pub mod harness;
pub mod keyed;
pub mod queryable;

pub use builtin::{Aggregate, AggregateFn, Reduce};
pub use chain::{Chain, Collector, Emitter};
pub use either::Either;
pub use error::OperatorError;
pub use keyed::{Key, KeyedContext, KeyedProcess, OpenContext};
