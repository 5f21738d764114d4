//! An actor's address for one kind of message, opaque to the engine.

use actix::{Message, Recipient};
use tokio::sync::oneshot;

use crate::query::{QueryAnswer, QueryState, StateQuery};

/// Where one actor takes messages of type `M`: a source actor's epoch trigger, an
/// actor's epoch-complete notice, its state queries, or the coordinator's
/// acknowledgements. The engine only carries endpoints from where they are made to
/// where they are used; the kernel sends on them.
pub struct Endpoint<M>
where
    M: Message<Result = ()> + Send,
{
    recipient: Recipient<M>,
}

impl<M> Clone for Endpoint<M>
where
    M: Message<Result = ()> + Send,
{
    fn clone(&self) -> Self {
        Endpoint {
            recipient: self.recipient.clone(),
        }
    }
}

impl<M> Endpoint<M>
where
    M: Message<Result = ()> + Send,
{
    /// Wraps an actor's recipient.
    pub(crate) fn new(recipient: Recipient<M>) -> Self {
        Endpoint { recipient }
    }

    /// The actor's recipient, for the kernel's own messages.
    pub(crate) fn into_recipient(self) -> Recipient<M> {
        self.recipient
    }
}

impl Endpoint<QueryState> {
    /// Asks the actor for one key's state; the answer arrives on the returned
    /// receiver (which errs if the actor stops before answering).
    pub fn ask(&self, query: StateQuery) -> oneshot::Receiver<QueryAnswer> {
        let (reply, answer) = oneshot::channel();
        self.recipient.do_send(QueryState { query, reply });
        answer
    }
}
