//! Credit-based flow control: the sending and receiving state of one channel.
//!
//! One credit is one payload, a batch or a marker. The receiver grants its window of
//! credits when it opens the channel, and one more each time its mailbox accepts a
//! payload; the sender spends one per payload it puts on the wire. So, per channel,
//! `credits at the sender + payloads in flight + payloads buffered at the receiver`
//! never exceeds the window, and a channel whose receiver stalls stops only its own
//! sender.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::{mpsc, Semaphore};

use super::frame::ChannelId;

/// The largest window a receiver may grant: far above any sensible setting, and
/// far below what the credit counters can hold.
pub const MAX_WINDOW: u32 = 1 << 16;

/// The sending end of one channel.
pub(crate) struct Outbound {
    /// Credits granted and not yet spent.
    pub credits: Semaphore,
    sent: AtomicU64,
    granted: AtomicU64,
    /// Why the receiver closed the channel, once it has.
    closed: Mutex<Option<String>>,
}

impl Outbound {
    pub fn new() -> Self {
        Outbound {
            credits: Semaphore::new(0),
            sent: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            closed: Mutex::new(None),
        }
    }

    /// Adds `n` credits; refuses a grant that would leave more than [`MAX_WINDOW`]
    /// unspent (a peer that does that is broken, and would overflow the semaphore).
    pub fn grant(&self, n: u32) -> Result<(), String> {
        let unspent = self.credits.available_permits() as u64 + n as u64;
        if unspent > MAX_WINDOW as u64 {
            return Err(format!(
                "it granted {n} credits, leaving {unspent} unspent, more than the most a window holds ({MAX_WINDOW})"
            ));
        }
        self.granted.fetch_add(n as u64, Ordering::Relaxed);
        self.credits.add_permits(n as usize);
        Ok(())
    }

    /// Counts a payload put on the wire.
    pub fn spent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The receiver closed the channel.
    pub fn close(&self, reason: String) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        closed.get_or_insert(reason);
        self.credits.close();
    }

    /// Why the receiver closed the channel, if it did.
    pub fn closed_reason(&self) -> Option<String> {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stats(&self) -> OutboundStats {
        OutboundStats {
            sent: self.sent.load(Ordering::Relaxed),
            granted: self.granted.load(Ordering::Relaxed),
            credit: self.credits.available_permits(),
        }
    }
}

/// What a sending channel has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundStats {
    /// Payloads put on the wire.
    pub sent: u64,
    /// Credits the receiver has granted in all.
    pub granted: u64,
    /// Credits left to spend now.
    pub credit: usize,
}

/// The receiving end of one channel, as the connection's reader sees it: a queue to
/// the channel's delivery task.
pub(crate) struct Inbound {
    queue: mpsc::Sender<Vec<u8>>,
    counts: std::sync::Arc<InboundCounts>,
    window: u32,
}

/// Counters shared by the reader and a channel's delivery task.
#[derive(Default)]
pub(crate) struct InboundCounts {
    received: AtomicU64,
    delivered: AtomicU64,
}

impl InboundCounts {
    /// Counts a payload accepted by the mailbox.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a receiving channel has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundStats {
    /// Payloads that arrived.
    pub received: u64,
    /// Payloads the receiving mailbox accepted.
    pub delivered: u64,
    /// Payloads that arrived and are not yet delivered (at most the window).
    pub buffered: u64,
    /// The channel's window.
    pub window: u32,
}

/// What became of a payload handed to [`Inbound::push`].
pub(crate) enum Pushed {
    /// Queued for delivery.
    Queued,
    /// The channel's delivery has ended (its mailbox closed, or it failed): the
    /// payload was in flight when the receiver closed the channel, and is dropped.
    Dropped,
}

impl Inbound {
    /// A channel buffering at most `window` payloads, and the queue its delivery task
    /// reads.
    pub fn new(window: u32) -> (Self, mpsc::Receiver<Vec<u8>>, std::sync::Arc<InboundCounts>) {
        let (queue, rx) = mpsc::channel(window as usize);
        let counts = std::sync::Arc::new(InboundCounts::default());
        (
            Inbound {
                queue,
                counts: counts.clone(),
                window,
            },
            rx,
            counts,
        )
    }

    /// Queues a payload that arrived; refuses one beyond the credits granted.
    pub fn push(&self, channel: ChannelId, payload: Vec<u8>) -> Result<Pushed, String> {
        let stats = self.stats();
        if stats.buffered >= self.window as u64 {
            return Err(format!(
                "channel {channel} sent a payload beyond its credit ({} buffered, window {})",
                stats.buffered, self.window
            ));
        }
        match self.queue.try_send(payload) {
            Ok(()) => {
                self.counts.received.fetch_add(1, Ordering::Relaxed);
                Ok(Pushed::Queued)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(Pushed::Dropped),
            Err(mpsc::error::TrySendError::Full(_)) => Err(format!(
                "channel {channel} sent a payload beyond its credit (window {})",
                self.window
            )),
        }
    }

    pub fn stats(&self) -> InboundStats {
        let received = self.counts.received.load(Ordering::Relaxed);
        let delivered = self.counts.delivered.load(Ordering::Relaxed);
        InboundStats {
            received,
            delivered,
            buffered: received.saturating_sub(delivered),
            window: self.window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_refuses_payloads_beyond_its_window() {
        let (inbound, _rx, counts) = Inbound::new(2);
        let id = ChannelId::new(1, 1, 0, 0);
        assert!(matches!(inbound.push(id, vec![1]), Ok(Pushed::Queued)));
        assert!(matches!(inbound.push(id, vec![2]), Ok(Pushed::Queued)));
        let err = inbound.push(id, vec![3]).err().unwrap();
        assert!(err.contains("beyond its credit"), "{err}");
        counts.delivered();
        assert_eq!(inbound.stats().buffered, 1);
    }

    #[test]
    fn a_grant_past_the_largest_window_is_refused() {
        let out = Outbound::new();
        out.grant(MAX_WINDOW).unwrap();
        assert!(out.grant(1).is_err());
        assert_eq!(out.stats().credit, MAX_WINDOW as usize);
    }
}
