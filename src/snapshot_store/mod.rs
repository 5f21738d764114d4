//! The shared snapshot store: checkpoints and savepoints in an object store (S3 for a
//! cluster, or a local directory through the same API), so every node of a cluster
//! reads and writes one store.
//!
//! - [`object`] holds [`ObjectStoreSnapshots`], the `SnapshotStore` on `object_store`.
//! - [`keys`] holds the object layout.
//! - [`head`] holds the head record that fences a deposed writer's commits.
//! - [`location`] parses `state.snapshot_url` and opens the store it names.
//!
//! `docs/cluster.md` ("Shared snapshot store") describes the layout, the conditional
//! commit and the crash points.

pub mod head;
pub mod keys;
pub mod location;
pub mod object;

pub use location::{open, S3Credentials, SnapshotStoreSpec, SnapshotUrl};
pub use object::{Fencing, ObjectStoreSnapshots};
