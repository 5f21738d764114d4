//! Cluster coordination: what the `weir node` processes running one job agree on, and
//! the ring that assigns the job's key partitions to them.
//!
//! - [`ring`]: the assignment of key partitions to nodes, its generation, balanced
//!   rebalancing with minimal movement, and its stored form.
//! - [`coordinator`]: the [`Coordinator`] trait (membership with leases, leader
//!   election with a fencing revision, the ring under compare-and-swap, each job's
//!   snapshot pointer committed only by the current leader).
//! - [`embedded`]: the in-process backend for a node that runs alone.
//! - [`etcd`]: the backend for a cluster, on etcd v3's JSON gateway.
//! - [`record`]: the versioned, checksummed envelope of every stored value.
//!
//! `docs/cluster.md` ("Coordination") describes the keys, the election and the fencing.

pub mod agent;
pub mod coordinator;
pub mod embedded;
pub mod etcd;
pub mod node;
pub mod record;
pub mod ring;

pub use coordinator::{CoordinationError, Coordinator, Leader, Leadership, Membership};
pub use embedded::EmbeddedCoordinator;
pub use etcd::EtcdCoordinator;
pub use node::{Member, NodeId};
pub use ring::{rebalance, Ring, RingError};
