//! Durable storage for checkpoint snapshots.
//!
//! The checkpoint machinery cuts a consistent snapshot at each epoch marker: every
//! stage writes the state of each key partition (and every source the position of
//! each split) as a *chunk*, and once all chunks of an epoch are stored the
//! coordinator commits a *manifest* listing them. An epoch exists for restore only once
//! its manifest is committed, and only if the manifest and all its chunks still read
//! back cleanly; otherwise restore falls back to the previous epoch.
//!
//! The checkpoint coordinator's writer thread (`crate::checkpoint`) writes into a
//! store; the engine's recovery reads from it.
//!
//! - [`format`](mod@format) holds the versioned, checksummed envelope every file uses.
//! - [`store`] holds the data model and the [`SnapshotStore`] trait.
//! - [`local`] holds [`LocalDirStore`], the store on a local directory.
//! - [`copy`](mod@copy) copies an epoch between stores (savepoint export and import).
//! - [`names`] maps user-supplied names to file names.
//! - [`verify`] holds the checks every store applies to what it reads back.
//! - [`error`] holds [`SnapshotError`].

pub mod copy;
pub mod error;
pub mod format;
pub mod local;
pub mod names;
pub mod store;
pub mod verify;

#[cfg(test)]
mod testutil;

pub use copy::copy_epoch;
pub use error::SnapshotError;
pub use local::LocalDirStore;
pub use store::{ChunkId, ChunkRef, Manifest, NewChunk, RetainStats, SnapshotStore};
