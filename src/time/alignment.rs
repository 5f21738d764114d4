//! Watermark alignment: the source actors of a stage read at a common event-time
//! pace. An actor whose watermark runs more than `max_drift` ahead of the slowest
//! actor's pauses its reading until the slowest catches up (Flink's watermark
//! alignment).
//!
//! Without it, sources read as fast as they can and drift apart in event time; a
//! keyed stage's watermark is its slowest input's, so windows stay open (in state,
//! and in every checkpoint) for as long as the drift lasts. Alignment only decides
//! *when* a split is read, never *what* it reads, so results are the same with it
//! or without it.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::record::NO_TIMESTAMP;

/// The shared watermarks of one source stage's actors.
#[derive(Debug)]
pub struct AlignmentGroup {
    max_drift_ms: i64,
    /// Each actor's watermark: [`NO_TIMESTAMP`] until it has one (which holds every
    /// other actor back, as it holds back the watermark downstream), `i64::MAX`
    /// while it holds nothing back (all its splits idle or exhausted).
    watermarks: Vec<AtomicI64>,
}

impl AlignmentGroup {
    /// A group of `actors` source actors allowed to run `max_drift_ms` ahead of the
    /// slowest.
    pub fn new(actors: usize, max_drift_ms: i64) -> Self {
        AlignmentGroup {
            max_drift_ms: max_drift_ms.max(0),
            watermarks: (0..actors).map(|_| AtomicI64::new(NO_TIMESTAMP)).collect(),
        }
    }

    /// Actor `actor` now has watermark `watermark` (`i64::MAX`: it holds nothing back).
    pub fn publish(&self, actor: usize, watermark: i64) {
        if let Some(slot) = self.watermarks.get(actor) {
            slot.store(watermark, Ordering::Relaxed);
        }
    }

    /// The slowest actor's watermark ([`NO_TIMESTAMP`] while some actor has not
    /// read anything yet).
    pub fn slowest(&self) -> i64 {
        self.watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Whether a split at `watermark` is too far ahead of the slowest actor to be
    /// read now. A split with no watermark yet is never held back, and neither is the
    /// slowest actor's (its watermark is the minimum), so the group always advances:
    /// at the start, the actors that read first wait until every actor has read once.
    pub fn ahead(&self, watermark: i64) -> bool {
        watermark != NO_TIMESTAMP && watermark > self.slowest().saturating_add(self.max_drift_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_ahead_of_the_slowest_by_more_than_the_drift_waits() {
        let group = AlignmentGroup::new(3, 1_000);
        assert!(
            !group.ahead(NO_TIMESTAMP),
            "a split with no watermark reads"
        );
        group.publish(0, 10_000);
        group.publish(1, 10_500);
        assert!(
            group.ahead(10_000),
            "actor 2 has not read yet: the others wait"
        );
        group.publish(2, 12_000);
        assert_eq!(group.slowest(), 10_000);
        assert!(!group.ahead(11_000));
        assert!(group.ahead(11_001));
        assert!(!group.ahead(NO_TIMESTAMP));
        group.publish(2, 9_000);
        assert!(group.ahead(10_500));
        // An actor with nothing to hold back (idle or exhausted) releases the others.
        group.publish(2, i64::MAX);
        assert!(!group.ahead(10_500));
        group.publish(0, i64::MAX);
        group.publish(1, i64::MAX);
        assert!(!group.ahead(i64::MAX - 1));
    }
}
