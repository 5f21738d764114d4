//! Per-actor counters: what flowed through, how long the actor was busy, how its
//! message handling times are spread, how long it waited on full mailboxes downstream
//! (backpressure), and the watermark it last sent.
//!
//! The actor updates plain relaxed atomics once per handled message (never per
//! record); readers (the progress printer, the metrics publisher, a status API) copy
//! them with [`ActorStats::snapshot`] whenever they like.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::mailbox::MailboxGate;
use crate::marker::NO_WATERMARK;

/// Upper bounds, in microseconds, of the buckets of the message handling time
/// histogram: powers of four from 1 µs to about 4.2 s. A last, unbounded bucket
/// holds what is slower.
pub const PROCESSING_BUCKET_BOUNDS_US: [u64; 12] = [
    1, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304,
];

/// Buckets of the handling time histogram: one per bound, plus the unbounded one.
pub const PROCESSING_BUCKETS: usize = PROCESSING_BUCKET_BOUNDS_US.len() + 1;

/// The bucket of a handling time of `micros` microseconds: the first whose bound
/// is at least `micros` (bounds are `4^i` µs, so this is `ceil(log4(micros))`).
#[inline]
pub fn processing_bucket(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    let bits = 64 - (micros - 1).leading_zeros() as usize; // ceil(log2(micros))
    bits.div_ceil(2).min(PROCESSING_BUCKETS - 1)
}

/// Counters one partition actor updates once per handled message; anyone (the
/// progress reporter, metrics) may read them at any time.
#[derive(Debug)]
pub struct ActorStats {
    records_in: AtomicU64,
    records_out: AtomicU64,
    bytes_read: AtomicU64,
    messages_in: AtomicU64,
    busy_ns: AtomicU64,
    send_wait_ns: AtomicU64,
    watermark: AtomicI64,
    processing: [AtomicU64; PROCESSING_BUCKETS],
    mailbox: MailboxGate,
}

/// A consistent-enough copy of [`ActorStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Records received (for a source: records read).
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// For sources: bytes of input consumed (0 for other actors and for sources
    /// whose input is not bytes).
    pub bytes_read: u64,
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
    /// The last watermark the actor sent downstream (ms since the Unix epoch), or
    /// [`NO_WATERMARK`] before the first.
    pub watermark: i64,
    /// Handled messages per handling-time bucket (see
    /// [`PROCESSING_BUCKET_BOUNDS_US`]); not cumulative.
    pub processing: [u64; PROCESSING_BUCKETS],
}

impl Default for StatsSnapshot {
    fn default() -> Self {
        StatsSnapshot {
            records_in: 0,
            records_out: 0,
            bytes_read: 0,
            messages_in: 0,
            busy: Duration::ZERO,
            send_wait: Duration::ZERO,
            mailbox_depth: 0,
            mailbox_capacity: 0,
            watermark: NO_WATERMARK,
            processing: [0; PROCESSING_BUCKETS],
        }
    }
}

impl ActorStats {
    /// Counters for an actor whose mailbox is bounded by `mailbox`.
    pub fn new(mailbox: MailboxGate) -> Self {
        ActorStats {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            send_wait_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
            processing: std::array::from_fn(|_| AtomicU64::new(0)),
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

    /// For sources: the bytes of input consumed so far.
    pub(crate) fn set_bytes_read(&self, bytes: u64) {
        self.bytes_read.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_out(&self, records: u64) {
        self.records_out.store(records, Ordering::Relaxed);
    }

    /// Counts one handled message that kept the actor busy for `d`: its share of
    /// busy time and its handling-time bucket.
    pub(crate) fn add_busy(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(nanos, Ordering::Relaxed);
        self.processing[processing_bucket(nanos / 1_000)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_send_wait(&self, d: Duration) {
        self.send_wait_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

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
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
            send_wait: Duration::from_nanos(self.send_wait_ns.load(Ordering::Relaxed)),
            mailbox_depth: self.mailbox.depth(),
            mailbox_capacity: self.mailbox.capacity(),
            watermark: self.watermark.load(Ordering::Relaxed),
            processing: std::array::from_fn(|i| self.processing[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handling_time_lands_in_the_first_bucket_whose_bound_holds_it() {
        for micros in [
            0u64,
            1,
            2,
            3,
            4,
            5,
            16,
            17,
            1_000,
            4_194_304,
            4_194_305,
            u64::MAX,
        ] {
            let bucket = processing_bucket(micros);
            match PROCESSING_BUCKET_BOUNDS_US.get(bucket) {
                Some(&bound) => assert!(micros <= bound, "{micros} µs above bound {bound}"),
                None => assert!(micros > PROCESSING_BUCKET_BOUNDS_US[11], "{micros} µs"),
            }
            if bucket > 0 {
                assert!(
                    micros > PROCESSING_BUCKET_BOUNDS_US[bucket - 1],
                    "{micros} µs fits an earlier bucket"
                );
            }
        }
    }

    #[test]
    fn busy_time_counts_each_message_once_in_its_bucket() {
        let stats = ActorStats::new(MailboxGate::new(4, 1));
        stats.add_busy(Duration::from_micros(3));
        stats.add_busy(Duration::from_micros(3));
        stats.add_busy(Duration::from_millis(10));
        let snap = stats.snapshot();
        assert_eq!(snap.processing[1], 2);
        assert_eq!(snap.processing[processing_bucket(10_000)], 1);
        assert_eq!(snap.processing.iter().sum::<u64>(), 3);
        assert_eq!(snap.busy, Duration::from_micros(10_006));
        assert_eq!(snap.watermark, NO_WATERMARK);
        stats.set_watermark(42);
        assert_eq!(stats.snapshot().watermark, 42);
    }
}
