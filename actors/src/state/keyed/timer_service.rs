//! The keyed state's timer service: registering, deleting, peeking at and popping
//! event-time and processing-time timers per key (the timers themselves, and how
//! they are stored, are `crate::state::timers`).

use crate::state::codec;
use crate::state::error::StateError;
use crate::state::timers::{FiredTimer, TimerDomain};
use crate::state::StateKey;

use super::KeyedState;

impl<K: StateKey> KeyedState<K> {
    /// Registers a timer of `domain` for `key` (in key partition `kp`) at `timestamp`.
    /// Registering the same `(domain, kp, key, timestamp)` again is a no-op: one timer
    /// fires once. The timer is written to sled at the next [`flush`](Self::flush).
    ///
    /// # Panics
    /// If `kp` is not owned (see the type's docs).
    pub fn register_timer(
        &mut self,
        domain: TimerDomain,
        kp: u32,
        key: &K,
        timestamp: i64,
    ) -> Result<(), StateError> {
        self.encode_timer_key(kp, key)?;
        self.timers.register(domain, kp, &self.key_buf, timestamp);
        Ok(())
    }

    /// Deletes a timer registered with
    /// [`register_timer`](Self::register_timer); a no-op if there is none.
    ///
    /// # Panics
    /// If `kp` is not owned (see the type's docs).
    pub fn delete_timer(
        &mut self,
        domain: TimerDomain,
        kp: u32,
        key: &K,
        timestamp: i64,
    ) -> Result<(), StateError> {
        self.encode_timer_key(kp, key)?;
        self.timers.delete(domain, kp, &self.key_buf, timestamp);
        Ok(())
    }

    /// The timestamp of the earliest timer of `domain`, if any. Cheap (no allocation,
    /// no disk): meant to be called on every watermark.
    #[inline]
    pub fn next_timer(&self, domain: TimerDomain) -> Option<i64> {
        self.timers.next(domain)
    }

    /// Removes and returns the earliest timer of `domain` with a timestamp `<= up_to`,
    /// or `None`. Timers come out in `(timestamp, kp, bincode(key))` order, each once;
    /// timers registered in between (e.g. by the handler of the previous one) are
    /// seen. The removal reaches sled at the next [`flush`](Self::flush).
    ///
    /// A stored key that does not decode as `K` is a [`StateError::Decode`] and stays
    /// queued (keys are checked when the state is opened, so this is not expected).
    pub fn pop_timer(
        &mut self,
        domain: TimerDomain,
        up_to: i64,
    ) -> Result<Option<FiredTimer<K>>, StateError> {
        self.timers.pop(domain, up_to, &self.stage)
    }

    /// Number of pending timers of both domains, for metrics.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Checks `kp` and puts `bincode(key)` into the key buffer.
    fn encode_timer_key(&mut self, kp: u32, key: &K) -> Result<(), StateError> {
        self.part_index(kp);
        self.key_buf.clear();
        codec::append_bincode(&mut self.key_buf, key)
            .map_err(|e| self.timers.meta().encode_error(&self.stage, kp, e))
    }
}
