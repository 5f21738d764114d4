//! Channels: the path of record batches and markers from one partition actor to
//! another, behind one trait.
//!
//! The in-process channel is the receiver's bounded [`Mailbox`]. A channel to an
//! actor on another node (the cluster's TCP data plane) implements the same trait,
//! so that nothing above the kernel (no operator, no exchange) changes with where
//! the receiver runs. Every channel keeps the mailbox's contract: messages of one
//! sender arrive in the order sent, a full channel makes its sender wait (that wait
//! is backpressure), and a closed one fails the send.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::mailbox::{Mailbox, MailboxClosed, TrySendError};
use crate::message::Payload;

/// A send that waits for room: resolves to the time spent waiting.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<Duration, MailboxClosed>> + Send>>;

/// Where one sender's batches and markers go, towards one receiving actor.
pub trait Channel<T: Send + 'static>: Send + Sync {
    /// Hands `payload` over now if there is room; gives it back otherwise.
    fn try_send(&self, from: u32, payload: Payload<T>) -> Result<(), TrySendError<T>>;
    /// Hands `payload` over, waiting for room.
    fn send(&self, from: u32, payload: Payload<T>) -> SendFuture;
}

/// A channel, shared by the partitions of a sending stage.
pub type Sender<T> = Arc<dyn Channel<T>>;

impl<T: Send + 'static> Channel<T> for Mailbox<T> {
    #[inline]
    fn try_send(&self, from: u32, payload: Payload<T>) -> Result<(), TrySendError<T>> {
        Mailbox::try_send(self, from, payload)
    }

    fn send(&self, from: u32, payload: Payload<T>) -> SendFuture {
        let mailbox = self.clone();
        Box::pin(async move { mailbox.send(from, payload).await })
    }
}

/// The in-process channels to `mailboxes`.
pub fn local<T: Send + 'static>(mailboxes: Vec<Mailbox<T>>) -> Vec<Sender<T>> {
    mailboxes
        .into_iter()
        .map(|m| Arc::new(m) as Sender<T>)
        .collect()
}
