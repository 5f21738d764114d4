//! Per-actor counters: what flowed through, how long the actor was busy, and how long
//! it waited on full mailboxes downstream (backpressure).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::mailbox::MailboxGate;

/// Counters one partition actor updates once per handled message; anyone (the
/// progress reporter, metrics) may read them at any time.
#[derive(Debug)]
pub struct ActorStats {
    records_in: AtomicU64,
    records_out: AtomicU64,
    messages_in: AtomicU64,
    busy_ns: AtomicU64,
    send_wait_ns: AtomicU64,
    /// The last watermark the actor sent downstream; `i64::MIN` before the first.
    watermark: AtomicI64,
    mailbox: MailboxGate,
}

/// A consistent-enough copy of [`ActorStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Records received (for a source: records read).
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Messages (batches and markers) handled.
    pub messages_in: u64,
    /// Time spent running the task.
    pub busy: Duration,
    /// Time spent waiting for a slot in a full downstream mailbox.
    pub send_wait: Duration,
    /// Messages in this actor's mailbox right now.
    pub mailbox_depth: usize,
    /// Capacity of this actor's mailbox.
    pub mailbox_capacity: usize,
    /// The last event-time watermark (ms) the actor sent downstream, or `None`
    /// before its first (and always, in a job without event time).
    pub watermark: Option<i64>,
}

impl ActorStats {
    /// Counters for an actor whose mailbox is bounded by `mailbox`.
    pub fn new(mailbox: MailboxGate) -> Self {
        ActorStats {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            send_wait_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            mailbox,
        }
    }

    pub(crate) fn add_in(&self, records: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// For sources: the records read so far (a source has no input, so its
    /// `records_in` counts what it read).
    pub(crate) fn set_read(&self, records: u64) {
        self.records_in.store(records, Ordering::Relaxed);
    }

    pub(crate) fn set_out(&self, records: u64) {
        self.records_out.store(records, Ordering::Relaxed);
    }

    pub(crate) fn add_busy(&self, d: Duration) {
        self.busy_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_send_wait(&self, d: Duration) {
        self.send_wait_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records the watermark the actor last sent downstream (`i64::MIN`: none yet).
    pub(crate) fn set_watermark(&self, watermark: i64) {
        self.watermark.store(watermark, Ordering::Relaxed);
    }

    /// The gate of this actor's mailbox.
    pub fn mailbox(&self) -> &MailboxGate {
        &self.mailbox
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
            send_wait: Duration::from_nanos(self.send_wait_ns.load(Ordering::Relaxed)),
            mailbox_depth: self.mailbox.depth(),
            mailbox_capacity: self.mailbox.capacity(),
            watermark: match self.watermark.load(Ordering::Relaxed) {
                i64::MIN => None,
                w => Some(w),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_none_until_one_is_sent() {
        let stats = ActorStats::new(MailboxGate::new(1, 2));
        assert_eq!(stats.snapshot().watermark, None);
        stats.set_watermark(1_000);
        assert_eq!(stats.snapshot().watermark, Some(1_000));
        stats.set_watermark(-5);
        assert_eq!(stats.snapshot().watermark, Some(-5));
    }
}
