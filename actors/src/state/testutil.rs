//! Helpers shared by the unit tests of the state module.

use super::{codec, KeyedState, ManualClock, StateKey, StateStore, StoreConfig};
use std::sync::Arc;

/// A temporary store, a keyed state of `stage` over `owned` on it, and the manual
/// clock (starting at 1000 ms) it runs on.
pub(crate) fn keyed<K: StateKey>(
    stage: &str,
    owned: std::ops::Range<u32>,
) -> (StateStore, KeyedState<K>, ManualClock) {
    let store = StateStore::temporary(small_config()).unwrap();
    let clock = ManualClock::new(1000);
    let ks = store.keyed(stage, owned, Arc::new(clock.clone())).unwrap();
    (store, ks, clock)
}

/// A configuration for tests: a small sled cache, a large entry limit.
pub(crate) fn small_config() -> StoreConfig {
    StoreConfig {
        cache_entries: 1_000_000,
        sled_cache_bytes: 4 * 1024 * 1024,
    }
}

/// Every raw sled entry of key partition `kp` in the stage's tree.
pub(crate) fn raw_entries<K>(ks: &KeyedState<K>, kp: u32) -> Vec<(sled::IVec, sled::IVec)>
where
    K: StateKey,
{
    ks.tree()
        .scan_prefix(codec::partition_prefix(kp))
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}
