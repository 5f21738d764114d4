//! State descriptors (name + TTL) and the typed handles returned by registration.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// Names one piece of keyed state of a stage, and optionally its time-to-live.
///
/// The name is the state's identity on disk (its state id is the CRC-32 of the name),
/// so renaming a state abandons its stored data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateDescriptor {
    /// The state's name (its identity on disk).
    name: String,
    /// Time-to-live of entries, if any.
    ttl: Option<Duration>,
}

impl StateDescriptor {
    /// A descriptor for the state called `name`, without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ttl: None,
        }
    }

    /// Sets a time-to-live: an entry expires `ttl` after it was last created or written
    /// (processing time), is never returned once expired, and is deleted from disk at the
    /// next flush. Millisecond resolution; a zero TTL is rejected at registration.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured time-to-live, if any.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The state id used in sled keys: CRC-32 of the name.
    pub fn state_id(&self) -> u32 {
        super::codec::state_id(&self.name)
    }
}

/// The shape of a registered state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// One value per key ([`ValueHandle`]).
    Value,
    /// A map of user keys to user values per key ([`MapHandle`]).
    Map,
    /// A list per key, stored as one value ([`ListHandle`]).
    List,
}

/// Defines a typed handle struct with trait impls free of bounds on its parameters.
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident < $($p:ident),+ >) => {
        $(#[$doc])*
        ///
        /// A handle is an index into the [`KeyedState`](super::KeyedState) that issued
        /// it, typed so accessors need no runtime type annotations. It is `Copy`
        /// whatever its type parameters are; using it with another `KeyedState`
        /// panics or addresses another state.
        pub struct $name<$($p),+> {
            pub(crate) index: usize,
            _types: PhantomData<fn() -> ($($p,)+)>,
        }

        impl<$($p),+> $name<$($p),+> {
            pub(crate) fn new(index: usize) -> Self {
                Self { index, _types: PhantomData }
            }
        }

        impl<$($p),+> Clone for $name<$($p),+> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<$($p),+> Copy for $name<$($p),+> {}

        impl<$($p),+> PartialEq for $name<$($p),+> {
            fn eq(&self, other: &Self) -> bool {
                self.index == other.index
            }
        }

        impl<$($p),+> Eq for $name<$($p),+> {}

        impl<$($p),+> fmt::Debug for $name<$($p),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("index", &self.index).finish()
            }
        }
    };
}

handle!(
    /// Handle to a registered value state holding one `T` per key.
    ValueHandle<T>
);
handle!(
    /// Handle to a registered map state holding a map `UK -> UV` per key.
    MapHandle<UK, UV>
);
handle!(
    /// Handle to a registered list state holding a `Vec<T>` per key.
    ListHandle<T>
);

#[cfg(test)]
mod tests {
    use super::*;

    struct NotClone;

    fn assert_send_sync_copy<H: Send + Sync + Copy>() {}

    #[test]
    fn handles_are_copy_send_sync_without_bounds() {
        assert_send_sync_copy::<ValueHandle<NotClone>>();
        assert_send_sync_copy::<MapHandle<NotClone, std::rc::Rc<u8>>>();
        assert_send_sync_copy::<ListHandle<std::cell::Cell<u8>>>();
        let h = ValueHandle::<NotClone>::new(3);
        let g = h;
        assert_eq!(h, g);
        assert_eq!(format!("{h:?}"), "ValueHandle { index: 3 }");
    }

    #[test]
    fn descriptor_accessors() {
        let d = StateDescriptor::new("count").with_ttl(Duration::from_secs(2));
        assert_eq!(d.name(), "count");
        assert_eq!(d.ttl(), Some(Duration::from_secs(2)));
        assert_eq!(d.state_id(), crc32fast::hash(b"count"));
        assert_eq!(StateDescriptor::new("x").ttl(), None);
    }
}
