//! Queryable state: a read of one key's state from a running partition actor.
//!
//! A query is a control message to the actor ([`QueryState`]), handled between two
//! batches like every other message: the task reads its own state, so nothing is
//! locked on the record path. The kernel carries the request and answer as text
//! (the engine decides the key and value encodings, JSON today) and knows nothing
//! of which key partition a key belongs to: an actor that does not own the key
//! says which actor does ([`QueryAnswer::Owner`]).

use actix::Message;
use tokio::sync::oneshot;

/// What is asked: one state of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateQuery {
    /// The state's name, as the operator made it queryable.
    pub state: String,
    /// The key, encoded as the engine expects it (JSON).
    pub key: String,
}

/// A partition actor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryAnswer {
    /// The key's value (encoded as the engine chose), or `None` when the key has no
    /// value in this state.
    Value {
        /// The key partition the key hashes to.
        key_partition: u32,
        /// The value, if any.
        value: Option<String>,
    },
    /// Another actor of the stage owns the key: ask actor `.0`.
    Owner(u32),
    /// The request is wrong: the key does not decode, or the state is unknown.
    BadRequest(String),
    /// The actor could not answer now (it is finishing, or reading failed).
    Unavailable(String),
}

/// Asks a partition actor for one key's state; the answer goes to `reply`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct QueryState {
    /// The request.
    pub query: StateQuery,
    /// Where the answer goes.
    pub reply: oneshot::Sender<QueryAnswer>,
}
