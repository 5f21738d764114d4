//! Bounded mailboxes.
//!
//! actix's own `send` waits for the handler's reply, which would make every batch a
//! round trip. weir instead bounds each partition actor's mailbox with a semaphore of
//! `capacity` slots: a sender takes a slot (waiting while none is free), enqueues the
//! message with `do_send`, and the receiver frees the slot once it has handled the
//! message. The time senders spend waiting for a slot is the backpressure signal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use tokio::sync::{Semaphore, TryAcquireError};

use crate::message::{Deliver, Payload};

/// The receiving side's slot counter, shared by every sender to one actor.
#[derive(Clone, Debug)]
pub struct MailboxGate {
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl MailboxGate {
    /// A gate admitting at most `capacity` messages (batches or markers) at once.
    pub fn new(capacity: usize) -> Self {
        MailboxGate {
            slots: Arc::new(Semaphore::new(capacity.max(1))),
            capacity: capacity.max(1),
        }
    }

    /// How many messages are queued or being handled right now.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.slots.available_permits())
    }

    /// The most messages the mailbox holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refuses every further send and wakes every waiting sender with an error; used
    /// when a job fails so that no actor stays blocked on a peer that is gone.
    pub fn close(&self) {
        self.slots.close();
    }
}

/// Returned when the receiving actor's mailbox was closed (its job is stopping).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the receiving partition actor's mailbox is closed")]
pub struct MailboxClosed;

/// The sending side of one partition actor's bounded mailbox.
pub struct Mailbox<T: Send + 'static> {
    recipient: Recipient<Deliver<T>>,
    gate: MailboxGate,
}

impl<T: Send + 'static> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            recipient: self.recipient.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<T: Send + 'static> Mailbox<T> {
    /// Joins an actor's address with the gate that bounds its mailbox.
    pub fn new(recipient: Recipient<Deliver<T>>, gate: MailboxGate) -> Self {
        Mailbox { recipient, gate }
    }

    /// Enqueues `payload` if a slot is free now; gives it back otherwise.
    pub fn try_send(&self, from: u32, payload: Payload<T>) -> Result<(), TrySendError<T>> {
        match self.gate.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                self.recipient.do_send(Deliver {
                    from,
                    payload,
                    slot: Some(slot),
                });
                Ok(())
            }
            Err(TryAcquireError::NoPermits) => Err(TrySendError::Full(payload)),
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed),
        }
    }

    /// Enqueues `payload`, waiting for a free slot; returns how long it waited.
    pub async fn send(&self, from: u32, payload: Payload<T>) -> Result<Duration, MailboxClosed> {
        let (slot, waited) = match self.gate.slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, Duration::ZERO),
            Err(TryAcquireError::Closed) => return Err(MailboxClosed),
            Err(TryAcquireError::NoPermits) => {
                let started = Instant::now();
                let slot = self
                    .gate
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| MailboxClosed)?;
                (slot, started.elapsed())
            }
        };
        self.recipient.do_send(Deliver {
            from,
            payload,
            slot: Some(slot),
        });
        Ok(waited)
    }
}

/// Why [`Mailbox::try_send`] did not enqueue.
pub enum TrySendError<T> {
    /// Every slot is taken; the payload is handed back.
    Full(Payload<T>),
    /// The mailbox is closed.
    Closed,
}
