//! The registry of a keyed state's state descriptors: registering value, map and
//! list states, the checks that keep registrations consistent, and the identity
//! ([`StateMeta`]) a registered state's cache and accessors share.

use crate::state::codec::{self, CodecError};
use crate::state::descriptor::{ListHandle, MapHandle, StateDescriptor, StateKind, ValueHandle};
use crate::state::error::StateError;
use crate::state::map::MapCache;
use crate::state::value::ValueCache;
use crate::state::{StateKey, StateValue};
use std::any::TypeId;
use std::time::Duration;

use super::{ErasedCache, KeyedState};

/// Identity of a registered state, shared by its cache and its accessors.
pub(crate) struct StateMeta {
    /// The descriptor's name.
    pub(crate) name: String,
    /// The state id in sled keys (CRC-32 of the name).
    pub(crate) id: u32,
    /// TTL in milliseconds (at least 1), `None` without TTL.
    pub(crate) ttl_ms: Option<u64>,
}

impl StateMeta {
    /// "state `x` of stage `s` in key partition n", for error messages.
    pub(crate) fn what(&self, stage: &str, kp: u32) -> String {
        format!(
            "state `{}` of stage `{stage}` in key partition {kp}",
            self.name
        )
    }

    /// Maps a rejected value record to `Corrupt` (damaged bytes) or `Decode` (intact
    /// bytes of another type).
    pub(crate) fn codec_error(&self, stage: &str, kp: u32, err: CodecError) -> StateError {
        match err {
            CodecError::Payload(source) => self.decode_error(stage, kp, source),
            other => StateError::Corrupt {
                what: self.what(stage, kp),
                reason: other.to_string(),
            },
        }
    }

    /// A `Decode` error for this state.
    pub(crate) fn decode_error(&self, stage: &str, kp: u32, source: bincode::Error) -> StateError {
        StateError::Decode {
            stage: stage.to_owned(),
            name: self.name.clone(),
            kp,
            source,
        }
    }

    /// An `Encode` error for this state.
    pub(crate) fn encode_error(&self, stage: &str, kp: u32, source: bincode::Error) -> StateError {
        StateError::Encode {
            stage: stage.to_owned(),
            name: self.name.clone(),
            kp,
            source,
        }
    }

    /// A `Sled` error for this state; `doing` says what was being done to it.
    pub(crate) fn sled_error(
        &self,
        stage: &str,
        kp: u32,
        doing: &str,
        source: sled::Error,
    ) -> StateError {
        StateError::Sled {
            context: format!("{doing} {}", self.what(stage, kp)),
            source,
        }
    }
}

/// A registered descriptor, to detect conflicting registrations.
pub(super) struct Registration {
    /// The state's name.
    pub(super) name: String,
    /// Its state id.
    pub(super) id: u32,
    /// Value, map or list.
    pub(super) kind: StateKind,
    /// The value type (or user key and value types), `()` where unused.
    pub(super) types: [TypeId; 2],
    /// Names of `types`, for error messages.
    pub(super) type_names: [&'static str; 2],
    /// The descriptor's TTL.
    pub(super) ttl: Option<Duration>,
}

impl<K: StateKey> KeyedState<K> {
    /// Registers a value state holding one `T` per key and returns its handle.
    ///
    /// Registering the same descriptor again with the same type returns the same
    /// handle; the same name with another kind, type or TTL, or another name with the
    /// same state id, is a [`StateError::DescriptorConflict`].
    pub fn register_value<T: StateValue>(
        &mut self,
        d: StateDescriptor,
    ) -> Result<ValueHandle<T>, StateError> {
        let types = [TypeId::of::<T>(), TypeId::of::<()>()];
        let names = [std::any::type_name::<T>(), ""];
        let index = self.register(d, StateKind::Value, types, names, |meta, on_disk| {
            Box::new(ValueCache::<K, T>::new(meta, on_disk))
        })?;
        Ok(ValueHandle::new(index))
    }

    /// Registers a map state holding a map `UK -> UV` per key and returns its handle.
    /// Each map entry is stored (and expires) on its own. Conflicts as for
    /// [`register_value`](Self::register_value).
    pub fn register_map<UK: StateKey, UV: StateValue>(
        &mut self,
        d: StateDescriptor,
    ) -> Result<MapHandle<UK, UV>, StateError> {
        let types = [TypeId::of::<UK>(), TypeId::of::<UV>()];
        let names = [std::any::type_name::<UK>(), std::any::type_name::<UV>()];
        let index = self.register(d, StateKind::Map, types, names, |meta, on_disk| {
            Box::new(MapCache::<K, UK, UV>::new(meta, on_disk))
        })?;
        Ok(MapHandle::new(index))
    }

    /// Registers a list state holding a `Vec<T>` per key and returns its handle. The
    /// list is stored, cached and expires as one value. Conflicts as for
    /// [`register_value`](Self::register_value).
    pub fn register_list<T: StateValue>(
        &mut self,
        d: StateDescriptor,
    ) -> Result<ListHandle<T>, StateError> {
        let types = [TypeId::of::<T>(), TypeId::of::<()>()];
        let names = [std::any::type_name::<T>(), ""];
        let index = self.register(d, StateKind::List, types, names, |meta, on_disk| {
            Box::new(ValueCache::<K, Vec<T>>::new(meta, on_disk))
        })?;
        Ok(ListHandle::new(index))
    }

    /// Validates and records a descriptor, returning its (new or existing) index.
    fn register(
        &mut self,
        d: StateDescriptor,
        kind: StateKind,
        types: [TypeId; 2],
        type_names: [&'static str; 2],
        make: impl FnOnce(StateMeta, Vec<bool>) -> Box<dyn ErasedCache<K>>,
    ) -> Result<usize, StateError> {
        let name = d.name().to_owned();
        if name.is_empty() {
            return Err(StateError::InvalidDescriptor {
                stage: self.stage.clone(),
                name,
                reason: "the state name is empty".into(),
            });
        }
        let ttl_ms = match d.ttl() {
            None => None,
            Some(ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                if ms == 0 {
                    return Err(StateError::InvalidDescriptor {
                        stage: self.stage.clone(),
                        name,
                        reason: format!("TTL {ttl:?} is below the 1 ms resolution"),
                    });
                }
                Some(ms)
            }
        };
        let id = d.state_id();
        if name == codec::TIMER_STATE_NAME || id == codec::TIMER_STATE_ID {
            return Err(StateError::DescriptorConflict {
                stage: self.stage.clone(),
                name,
                reason: format!(
                    "the name `{}` and its state id {:#010x} are reserved for timers",
                    codec::TIMER_STATE_NAME,
                    codec::TIMER_STATE_ID
                ),
            });
        }
        for (index, r) in self.registry.iter().enumerate() {
            if r.name == name {
                if r.kind == kind && r.types == types && r.ttl == d.ttl() {
                    return Ok(index);
                }
                return Err(StateError::DescriptorConflict {
                    stage: self.stage.clone(),
                    name,
                    reason: format!(
                        "already registered as {:?} state of {} {} with TTL {:?}; now requested as {:?} state of {} {} with TTL {:?}",
                        r.kind, r.type_names[0], r.type_names[1], r.ttl,
                        kind, type_names[0], type_names[1], d.ttl()
                    ),
                });
            }
            if r.id == id {
                return Err(StateError::DescriptorConflict {
                    stage: self.stage.clone(),
                    name,
                    reason: format!(
                        "its state id {id:#010x} (CRC-32 of the name) equals that of state `{}`",
                        r.name
                    ),
                });
            }
        }
        let mut on_disk = vec![false; self.partition_on_disk.len()];
        for (i, flag) in on_disk.iter_mut().enumerate() {
            if !self.partition_on_disk[i] {
                continue;
            }
            let kp = self.owned.start + i as u32;
            let first = self
                .tree
                .scan_prefix(codec::state_prefix(kp, id))
                .next()
                .transpose()
                .map_err(|source| StateError::Sled {
                    context: format!(
                        "probing state `{name}` of stage `{}` in key partition {kp}",
                        self.stage
                    ),
                    source,
                })?;
            *flag = first.is_some();
        }
        let meta = StateMeta {
            name: name.clone(),
            id,
            ttl_ms,
        };
        self.caches.push(make(meta, on_disk));
        self.registry.push(Registration {
            name,
            id,
            kind,
            types,
            type_names,
            ttl: d.ttl(),
        });
        Ok(self.caches.len() - 1)
    }
}
