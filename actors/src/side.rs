//! Side outputs: a task's second output (Flink's side outputs), sent by the kernel
//! with the same batching, backpressure and in-band markers as its main output.
//!
//! The side output is type-erased so that a task can carry one without its type
//! appearing in the task's own types: the operator pushes boxed records, which the
//! side output unboxes to the type its receivers take (a mismatch is an error, never a
//! silent drop).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::mailbox::{Mailbox, MailboxClosed};
use crate::marker::Marker;
use crate::outbox::Outbox;

/// A future sending a side output's queued messages; yields the time spent waiting.
pub type SideSend = Pin<Box<dyn Future<Output = Result<Duration, MailboxClosed>>>>;

/// A task's second output.
pub trait SideOutput: Send {
    /// Queues one record (boxed); fails if it is not of the receivers' type.
    fn push_any(&mut self, item: Box<dyn Any + Send>) -> Result<(), String>;
    /// Sends queued messages while slots are free; `Ok(true)` when none is left.
    fn send_now(&mut self) -> Result<bool, MailboxClosed>;
    /// Takes the queue out to be sent by a future while the actor waits.
    fn take_pending(&mut self) -> SideSend;
    /// Queues `marker` for every receiver, after everything pushed before it.
    fn broadcast_marker(&mut self, marker: Marker);
    /// Seals partly filled batches.
    fn flush(&mut self);
    /// Records sent through this output that count as the stage's output (a route
    /// of a fan-out counts; a side output such as late data does not).
    fn records_out(&self) -> u64 {
        0
    }
}

/// A side output that sends every record to one receiver (the partition with the
/// sender's index: forward partitioning) and markers to all.
pub struct ForwardSide<T: Send + 'static> {
    out: Outbox<T>,
    dest: usize,
}

impl<T: Send + 'static> ForwardSide<T> {
    /// Partition `me` of the sending stage, feeding `receivers`.
    pub fn new(me: u32, receivers: Vec<Mailbox<T>>, batch_size: usize) -> Self {
        Self::with_channel(me, me, receivers, batch_size)
    }

    /// Partition `partition` of the sending stage, feeding `receivers` as their
    /// input channel `channel` (when the receivers read other inputs too).
    pub fn with_channel(
        partition: u32,
        channel: u32,
        receivers: Vec<Mailbox<T>>,
        batch_size: usize,
    ) -> Self {
        Self::over(
            partition,
            channel,
            crate::channel::local(receivers),
            batch_size,
        )
    }

    /// Partition `partition` of the sending stage, feeding its receivers through
    /// `channels` (in-process or not) as their input channel `channel`.
    pub fn over(
        partition: u32,
        channel: u32,
        channels: Vec<crate::channel::Sender<T>>,
        batch_size: usize,
    ) -> Self {
        let dest = partition as usize % channels.len().max(1);
        ForwardSide {
            out: Outbox::over(channel, channels, batch_size),
            dest,
        }
    }
}

impl<T: Send + 'static> SideOutput for ForwardSide<T> {
    fn push_any(&mut self, item: Box<dyn Any + Send>) -> Result<(), String> {
        match item.downcast::<T>() {
            Ok(item) => {
                if self.out.destinations() > 0 {
                    self.out.push_to(self.dest, *item);
                }
                Ok(())
            }
            Err(_) => Err(format!(
                "a side output record is not of the type its receivers take ({})",
                std::any::type_name::<T>()
            )),
        }
    }

    fn send_now(&mut self) -> Result<bool, MailboxClosed> {
        self.out.send_now()
    }

    fn take_pending(&mut self) -> SideSend {
        Box::pin(self.out.take_pending().send_all())
    }

    fn broadcast_marker(&mut self, marker: Marker) {
        self.out.broadcast_marker(marker);
    }

    fn flush(&mut self) {
        self.out.flush();
    }
}
