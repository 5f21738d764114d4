//! Processing-time clocks used for state time-to-live.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of processing time, in milliseconds since the Unix epoch.
///
/// State TTL is measured on this clock rather than on event time, so expiry does not
/// depend on the data. It is a trait so tests (and simulations) can drive time by hand
/// with [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current processing time in milliseconds.
    fn now_ms(&self) -> u64;
}

/// The wall clock ([`SystemTime`]); what production nodes use.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 is a broken host; reading it as time 0 keeps state
        // usable (entries simply expire later) instead of failing every access.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock moved only by hand, for deterministic TTL tests.
///
/// Clones share the same time (an `Arc<AtomicU64>`), so a test can keep one clone and
/// hand another to [`StateStore::keyed`](super::StateStore::keyed).
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock that reads `start_ms` until it is moved.
    pub fn new(start_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Sets the time to `ms` (may move backwards; tests decide).
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`, saturating at `u64::MAX`.
    pub fn advance(&self, ms: u64) {
        // fetch_update with a closure that always returns Some cannot fail.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let a = ManualClock::new(10);
        let b = a.clone();
        assert_eq!(b.now_ms(), 10);
        a.advance(5);
        assert_eq!(b.now_ms(), 15);
        b.set(3);
        assert_eq!(a.now_ms(), 3);
        a.set(u64::MAX - 1);
        a.advance(10);
        assert_eq!(a.now_ms(), u64::MAX);
    }

    #[test]
    fn system_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z in milliseconds.
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
