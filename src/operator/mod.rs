//! The operator API: what users write.
//!
//! An operator type implements [`Operator`]: its fields are its own state, its
//! handlers (records, timers, watermarks, open and close, snapshot and restore,
//! epoch completed, abort) have defaults, and the engine runs one partition actor
//! per partition of it. Keyed operators see each record with the state of its key
//! in scope ([`KeyedContext`]); non-keyed ones (`Key = NoKey`) keep operator state
//! ([`operator_state`]). Stateless operators (map, filter, flat_map, and any type of
//! yours implementing [`Chain`]) are fused into chains that run inside one partition
//! actor, compiled into one loop (Flink calls this operator chaining).

pub mod broadcast;
pub mod builtin;
pub mod chain;
pub mod either;
pub mod error;
pub mod fused;
pub mod harness;
pub mod keyed;
pub mod operator_state;
pub mod operator_type;
pub mod queryable;
pub mod side;

pub use broadcast::{BroadcastContext, BroadcastProcess};
pub use builtin::{Aggregate, AggregateFn, PassThrough, Reduce};
pub use chain::{Chain, Collector, Emitter};
pub use either::Either;
pub use error::OperatorError;
pub use fused::{ChainExt, Fused};
pub use keyed::{Key, KeyedContext, OpenContext};
pub use operator_state::{OperatorStateReader, OperatorStateWriter};
pub use operator_type::{NoKey, Operator};
pub use side::{OutputTag, SideOutputs};

/// The operator trait under its earlier name: a keyed operator implements
/// [`Operator`] (this is the same trait).
pub use operator_type::Operator as KeyedProcess;
