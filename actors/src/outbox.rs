//! The outbox: where a task's output records are batched per destination and queued
//! for sending, in order, with markers in-band.

use std::collections::VecDeque;
use std::time::Duration;

use crate::channel::Sender;
use crate::mailbox::{Mailbox, MailboxClosed, TrySendError};
use crate::marker::{Marker, NO_WATERMARK};
use crate::message::Payload;

/// Output side of one partition actor: one batch buffer per downstream partition
/// actor, and a queue of sealed batches and markers waiting for mailbox slots.
///
/// A task pushes records with [`Outbox::push_to`]; a buffer that reaches the batch size
/// is sealed into the send queue. The actor sends the queue after each handled message,
/// so the order of records and markers to each destination is the order the task
/// produced them in.
pub struct Outbox<T: Send + 'static> {
    me: u32,
    dests: Vec<Sender<T>>,
    buffers: Vec<Vec<T>>,
    batch_size: usize,
    queue: VecDeque<(usize, Payload<T>)>,
    records_out: u64,
    last_watermark: i64,
}

impl<T: Send + 'static> Outbox<T> {
    /// An outbox for the partition with index `me`, sending to `dests` in batches of
    /// `batch_size` records.
    pub fn new(me: u32, dests: Vec<Mailbox<T>>, batch_size: usize) -> Self {
        Self::over(me, crate::channel::local(dests), batch_size)
    }

    /// An outbox for the partition with index `me`, sending through the channels
    /// `dests` (in-process or not) in batches of `batch_size` records.
    pub fn over(me: u32, dests: Vec<Sender<T>>, batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        let buffers = dests.iter().map(|_| Vec::new()).collect();
        Outbox {
            me,
            dests,
            buffers,
            batch_size,
            queue: VecDeque::new(),
            records_out: 0,
            last_watermark: NO_WATERMARK,
        }
    }

    /// How many downstream partition actors this outbox feeds.
    #[inline]
    pub fn destinations(&self) -> usize {
        self.dests.len()
    }

    /// Records pushed so far.
    pub fn records_out(&self) -> u64 {
        self.records_out
    }

    /// The last finite watermark broadcast ([`NO_WATERMARK`] before the first): the
    /// +infinity watermark of the end of input says nothing about event-time
    /// progress and is not kept.
    pub fn last_watermark(&self) -> i64 {
        self.last_watermark
    }

    /// Appends `item` to the batch for destination `dest`.
    ///
    /// # Panics
    /// If `dest` is not below [`Outbox::destinations`]: that is a routing bug.
    #[inline]
    pub fn push_to(&mut self, dest: usize, item: T) {
        let buffer = &mut self.buffers[dest];
        if buffer.capacity() == 0 {
            buffer.reserve_exact(self.batch_size);
        }
        buffer.push(item);
        self.records_out += 1;
        if buffer.len() >= self.batch_size {
            self.seal(dest);
        }
    }

    fn seal(&mut self, dest: usize) {
        let batch = std::mem::take(&mut self.buffers[dest]);
        if !batch.is_empty() {
            self.queue.push_back((dest, Payload::Batch(batch)));
        }
    }

    /// Seals every partly filled batch, so everything pushed so far is queued.
    pub fn flush(&mut self) {
        for dest in 0..self.buffers.len() {
            self.seal(dest);
        }
    }

    /// Queues `marker` for every destination, after everything pushed before it.
    pub fn broadcast_marker(&mut self, marker: Marker) {
        if let Marker::Watermark(w) = marker {
            if w != i64::MAX {
                self.last_watermark = w;
            }
        }
        self.flush();
        for dest in 0..self.dests.len() {
            self.queue.push_back((dest, Payload::Marker(marker)));
        }
    }

    /// Sends queued messages while mailbox slots are free, without waiting. Returns
    /// `Ok(true)` when the queue is empty afterwards.
    pub fn send_now(&mut self) -> Result<bool, MailboxClosed> {
        while let Some((dest, payload)) = self.queue.pop_front() {
            match self.dests[dest].try_send(self.me, payload) {
                Ok(()) => {}
                Err(TrySendError::Full(payload)) => {
                    self.queue.push_front((dest, payload));
                    return Ok(false);
                }
                Err(TrySendError::Closed) => return Err(MailboxClosed),
            }
        }
        Ok(true)
    }

    /// Takes the queue out so that a future can send it, waiting on slots, while the
    /// actor handles nothing else.
    pub fn take_pending(&mut self) -> PendingSends<T> {
        PendingSends {
            me: self.me,
            dests: self.dests.clone(),
            queue: std::mem::take(&mut self.queue),
        }
    }
}

/// Queued messages on their way out, waiting for mailbox slots.
pub struct PendingSends<T: Send + 'static> {
    me: u32,
    dests: Vec<Sender<T>>,
    queue: VecDeque<(usize, Payload<T>)>,
}

impl<T: Send + 'static> PendingSends<T> {
    /// Sends everything in order; returns the total time spent waiting for slots.
    pub async fn send_all(mut self) -> Result<Duration, MailboxClosed> {
        let mut waited = Duration::ZERO;
        while let Some((dest, payload)) = self.queue.pop_front() {
            waited += self.dests[dest].send(self.me, payload).await?;
        }
        Ok(waited)
    }
}
