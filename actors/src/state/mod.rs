//! Keyed operator state on sled, with a write-back cache in front of it.
//!
//! Every keyed partition actor owns one [`KeyedState`]: the state of one *stage*
//! (operator) for a contiguous range of *key partitions* on this node. The actor
//! registers its named states once ([`KeyedState::register_value`],
//! [`KeyedState::register_map`], [`KeyedState::register_list`]) and then, per record,
//! opens a short-lived accessor ([`ValueState`], [`MapState`], [`ListState`]) for the
//! record's key partition and key.
//!
//! # Why a write-back cache
//!
//! The per-record path must cost about one hash-map operation. Decoded, typed values
//! therefore live in per-state, per-key-partition hash maps keyed by the typed key; a
//! write only marks the cached entry dirty. Dirty entries reach sled, in key order and
//! in bounded [`sled::Batch`]es ([`FLUSH_CHUNK`]), when the actor calls
//! [`KeyedState::flush`] (at epoch markers and end of input) or when
//! [`KeyedState::maintain`] finds the cache above its configured size.
//! Cache misses read through to sled, except in key partitions known to hold nothing on
//! disk, so the first sight of many new keys costs no disk reads.
//!
//! # On-disk layout (version 1)
//!
//! * one sled tree per stage, named `weir/state/v1/<stage>` ([`tree_name`]);
//! * key `[key partition u32 BE][state id u32 BE][bincode(key)]` for value and list
//!   state, and `...[bincode(key)][bincode(user key)]` per map entry, so one key
//!   partition is one contiguous prefix range and one map is one prefix scan;
//! * the state id is the CRC-32 of the state's name ([`codec::state_id`]);
//! * every stored value is `[version u8 = 1][crc32 LE u32][expires_at_ms u64 LE][bincode]`
//!   ([`codec::encode_value`]); unknown versions and checksum mismatches are reported as
//!   [`StateError::Corrupt`], never decoded;
//! * a timer is the key `[key partition u32 BE][TIMER_STATE_ID u32 BE][domain u8]
//!   [timestamp u64 BE, sign bit flipped][bincode(key)]` ([`codec::write_timer_key`])
//!   with an empty-payload value record; [`codec::TIMER_STATE_ID`] is the state id of
//!   the reserved name [`codec::TIMER_STATE_NAME`], which user states cannot take.
//!
//! # Time to live
//!
//! A descriptor may carry a TTL ([`StateDescriptor::with_ttl`]). Like Flink's
//! `StateTtlConfig` with `OnCreateAndWrite` and `NeverReturnExpired`, the expiry of an
//! entry is set when it is created or written, reads never return an expired entry, and
//! expired entries are deleted from sled at the next flush (cached ones at once, stored
//! ones by an incremental purge per flush, or by [`KeyedState::purge_expired`]). Time
//! is processing time from the [`Clock`] given to [`StateStore::keyed`].
//!
//! # Timers
//!
//! Like Flink's `TimerService`, a keyed state holds event-time and processing-time
//! timers per key ([`KeyedState::register_timer`], [`KeyedState::delete_timer`],
//! [`KeyedState::next_timer`], [`KeyedState::pop_timer`]). One `(domain, key
//! partition, key, timestamp)` is one timer, however often it is registered. Every
//! pending timer of the owned key partitions is kept in memory, ordered by
//! `(timestamp, key partition, bincode(key))` per domain, and is never evicted; the
//! keyed state loads the stored timers of its partitions when it is opened, and
//! flushes new, fired and deleted timers with the rest of the state. The store keeps
//! no clock for them: the actor pops what is due at each watermark or processing-time
//! tick.
//!
//! # Checkpoints
//!
//! sled is a local spill area, not the durable truth: writing every change to sled at
//! each epoch barrier would cost far too much (about 14k instructions per insert). At
//! each barrier the actor calls [`KeyedState::take_delta`] instead, which encodes,
//! without touching sled, what changed in each owned key partition since the previous
//! capture ([`delta`] describes the format); another thread writes the deltas to
//! snapshot files. A key partition's chain (a full image, then its deltas) applied in
//! order gives the sled content the partition would have had after a full flush at the
//! last capture. Recovery wipes the stage's tree and rebuilds it from the chains
//! ([`StateStore::restore_stage`]); compaction folds a chain into a new image
//! ([`merge_chain`]).
//!
//! To capture cheaply, a cached entry is in one of three states: *clean* (sled and the
//! captured image both hold it), *dirty* (changed since the last capture, not in sled)
//! or *captured* (in the image, not yet in sled). A write makes an entry dirty, exactly
//! as it did before checkpoints existed; `take_delta` encodes dirty entries and makes
//! them captured; a flush writes dirty and captured entries to sled and makes them
//! clean, and records the changes it wrote on behalf of dirty entries (and expiries and
//! purges) in a per-partition delta log, which the next `take_delta` empties into its
//! delta. Captured entries are not evictable until flushed. Timers, never evicted,
//! keep both sides of each change in memory instead. The delta logs are bounded
//! ([`KeyedState::set_delta_log_limit`]): past the bound, the largest are dropped and
//! their key partitions captured next as full images, so a job that never captures
//! does not accumulate them.

mod clock;
pub mod codec;
pub mod delta;
mod descriptor;
mod error;
mod keyed;
mod list;
mod map;
mod slab;
mod store;
mod timers;
mod usage;
mod value;

pub use clock::{Clock, ManualClock, SystemClock};
pub use delta::{merge_chain, Delta};
pub use descriptor::{ListHandle, MapHandle, StateDescriptor, StateKind, ValueHandle};
pub use error::StateError;
pub use keyed::{FlushStats, KeyedState, DEFAULT_PURGE_PER_FLUSH, FLUSH_CHUNK};
pub use list::ListState;
pub use map::MapState;
pub use store::{tree_name, RestoreStats, StateStore, StoreConfig};
pub use timers::{FiredTimer, TimerDomain};
pub use usage::PartitionUsage;
pub use value::ValueState;

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;

/// A type usable as a record key or a map user key in keyed state.
///
/// Keys are hashed in the cache (`Hash + Eq`), cloned only when a new entry enters the
/// cache, and bincode-encoded into the sled key. Implemented for every type that meets
/// the bounds.
pub trait StateKey: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + 'static {}

impl<T> StateKey for T where T: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + 'static {}

/// A type usable as a stored value (value state, list element, map user value).
///
/// Values are kept decoded in the cache and bincode-encoded only at flush time.
/// Implemented for every type that meets the bounds.
pub trait StateValue: Serialize + DeserializeOwned + Clone + Send + 'static {}

impl<T> StateValue for T where T: Serialize + DeserializeOwned + Clone + Send + 'static {}

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod testutil;
