//! The one message type that carries data and markers between partition actors.

use tokio::sync::OwnedSemaphorePermit;

use crate::marker::Marker;

/// What one upstream actor delivers to one downstream actor: a batch of records or a
/// control marker.
///
/// Records always travel in batches so that the cost of a message (an allocation and a
/// cross-thread wake-up) is spread over many records.
#[derive(Debug)]
pub enum Payload<T> {
    /// A batch of records, in the order the sender produced them.
    Batch(Vec<T>),
    /// An in-band control marker.
    Marker(Marker),
}

/// The actix message a partition actor receives: a payload, the index of the upstream
/// partition that sent it, and the mailbox slot it occupies.
///
/// The slot (a semaphore permit) is released when the receiver has handled the
/// message; that release is what lets a waiting sender go on.
pub struct Deliver<T> {
    /// Index of the sending partition among the receiver's inputs.
    pub from: u32,
    /// The batch or marker.
    pub payload: Payload<T>,
    pub(crate) slot: Option<OwnedSemaphorePermit>,
}

impl<T> Deliver<T> {
    /// Frees the mailbox slot this message occupied.
    pub fn release_slot(&mut self) {
        self.slot = None;
    }
}

impl<T: Send + 'static> actix::Message for Deliver<T> {
    type Result = ();
}
