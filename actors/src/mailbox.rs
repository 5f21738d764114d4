//! Bounded mailboxes.
//!
//! actix's own `send` waits for the handler's reply, which would make every batch a
//! round trip. weir instead bounds each partition actor's mailbox with one semaphore
//! of `capacity` slots per input channel (per upstream partition): a sender takes a
//! slot of its own channel (waiting while none is free), enqueues the message with
//! `do_send`, and the receiver frees the slot once it has handled the message. The
//! time senders spend waiting for a slot is the backpressure signal.
//!
//! Slots are per channel, like Flink's per-channel credits, because epoch alignment
//! holds back the messages of inputs that already delivered the barrier: with one
//! shared pool, held messages could take every slot and block the barrier still to
//! come on another input. With per-channel slots a held-back channel only stops its
//! own sender, which is exactly what alignment asks for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use tokio::sync::{Semaphore, TryAcquireError};

use crate::message::{Deliver, Payload};

/// The receiving side's slot counters, one per input channel, shared by every sender
/// to one actor.
#[derive(Clone, Debug)]
pub struct MailboxGate {
    channels: Arc<[Arc<Semaphore>]>,
    capacity: usize,
}

impl MailboxGate {
    /// A gate admitting at most `capacity` messages (batches or markers) at once from
    /// each of `inputs` input channels (at least one).
    pub fn new(capacity: usize, inputs: u32) -> Self {
        let capacity = capacity.max(1);
        MailboxGate {
            channels: (0..inputs.max(1))
                .map(|_| Arc::new(Semaphore::new(capacity)))
                .collect(),
            capacity,
        }
    }

    /// The slots of input channel `from` (the last channel for an index past the end,
    /// which only a planner bug produces; the receiver reports the bad input).
    fn channel(&self, from: u32) -> &Arc<Semaphore> {
        let last = self.channels.len() - 1;
        &self.channels[(from as usize).min(last)]
    }

    /// How many messages are queued, held or being handled right now, over all
    /// channels.
    pub fn depth(&self) -> usize {
        self.channels
            .iter()
            .map(|c| self.capacity.saturating_sub(c.available_permits()))
            .sum()
    }

    /// The most messages the mailbox holds, over all channels.
    pub fn capacity(&self) -> usize {
        self.capacity * self.channels.len()
    }

    /// Refuses every further send and wakes every waiting sender with an error; used
    /// when a job fails so that no actor stays blocked on a peer that is gone.
    pub fn close(&self) {
        for channel in self.channels.iter() {
            channel.close();
        }
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
        match self.gate.channel(from).clone().try_acquire_owned() {
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
        let channel = self.gate.channel(from);
        let (slot, waited) = match channel.clone().try_acquire_owned() {
            Ok(slot) => (slot, Duration::ZERO),
            Err(TryAcquireError::Closed) => return Err(MailboxClosed),
            Err(TryAcquireError::NoPermits) => {
                let started = Instant::now();
                let slot = channel
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
