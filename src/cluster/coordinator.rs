//! The `Coordinator` trait: what the nodes of a cluster agree on through a proven
//! store (etcd), or in process for one node: membership with leases, the election of
//! the job's coordinator with a fencing token, the ring under compare-and-swap, and
//! each job's last complete snapshot.
//!
//! The methods are asynchronous: every call of the etcd backend is a network round
//! trip, a campaign waits for the current leader to go, and leases are kept alive by
//! a background task; all of that sits on the tokio runtime the node already runs its
//! HTTP servers on. They return boxed futures (`CoordFuture`) rather than `async fn`
//! so the trait stays object safe: a node picks its backend from its configuration
//! and holds an `Arc<dyn Coordinator>`. One allocation per call is nothing next to a
//! network round trip.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::node::{Member, NodeId};
use super::record::RecordError;
use super::ring::Ring;

/// The future every coordinator call returns.
pub type CoordFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, CoordinationError>> + Send + 'a>>;

/// What the nodes of a cluster agree on. See the module documentation and
/// `docs/cluster.md` ("Coordination").
pub trait Coordinator: Send + Sync {
    /// Joins the cluster as `node`, reachable at `address`, under a lease of `ttl`
    /// that the returned [`Membership`] keeps alive in the background. When the
    /// lease expires (the node stopped, hung, or lost the coordinator for longer
    /// than `ttl`) the member disappears from [`Coordinator::members`], and so does
    /// any leadership held under it. Joining again under the same id replaces the
    /// earlier record.
    fn join<'a>(
        &'a self,
        node: &'a NodeId,
        address: &'a str,
        ttl: Duration,
    ) -> CoordFuture<'a, Membership>;

    /// Leaves the cluster at once: revokes the membership's lease, which removes the
    /// member and ends any leadership held under it.
    fn leave(&self, membership: Membership) -> CoordFuture<'_, ()>;

    /// The live members, in node id order.
    fn members(&self) -> CoordFuture<'_, Vec<Member>>;

    /// Resolves when `membership`'s node is the leader (the job's coordinator), with
    /// its [`Leadership`]. The leadership is bound to the membership's lease: it ends
    /// when the lease does. Fails with [`CoordinationError::LeaseExpired`] if the
    /// lease is lost while waiting. Campaigning while already leader returns the
    /// current leadership.
    fn campaign<'a>(&'a self, membership: &'a Membership) -> CoordFuture<'a, Leadership>;

    /// The current leader, if any.
    fn leader(&self) -> CoordFuture<'_, Option<Leader>>;

    /// Gives up `leadership` (if it is still current), so another candidate wins.
    fn resign(&self, leadership: Leadership) -> CoordFuture<'_, ()>;

    /// The current ring, if one was ever proposed; its generation is
    /// [`Ring::generation`] (no ring is generation 0).
    fn ring(&self) -> CoordFuture<'_, Option<Ring>>;

    /// Stores `ring` if the current generation is `expected_generation` (0: no ring
    /// yet), as one compare-and-swap. `ring.generation()` must be
    /// `expected_generation + 1` (what [`Ring::initial`] and
    /// [`super::ring::rebalance`] produce from the ring they were given). A stale
    /// expectation is refused with [`CoordinationError::StaleGeneration`]: whoever
    /// computed the proposal from an older ring must read the new one first. Only
    /// the current leader changes the ring: the same transaction checks that
    /// `leadership` is still the current one, so a deposed leader's proposal fails
    /// with [`CoordinationError::NotLeader`] even if no one changed the ring since.
    fn propose_ring<'a>(
        &'a self,
        ring: Ring,
        expected_generation: u64,
        leadership: &'a Leadership,
    ) -> CoordFuture<'a, ()>;

    /// The epoch of `job`'s last complete snapshot, if one was committed.
    fn last_snapshot<'a>(&'a self, job: &'a str) -> CoordFuture<'a, Option<u64>>;

    /// Moves `job`'s snapshot pointer from `expected_previous` to `epoch` (which must
    /// be larger), in one transaction that also checks that `leadership` is still the
    /// current one: a deposed leader's commit fails with
    /// [`CoordinationError::NotLeader`], and a pointer that moved meanwhile fails with
    /// [`CoordinationError::SnapshotConflict`].
    fn commit_snapshot<'a>(
        &'a self,
        job: &'a str,
        epoch: u64,
        expected_previous: Option<u64>,
        leadership: &'a Leadership,
    ) -> CoordFuture<'a, ()>;
}

/// Why a coordinator call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    /// etcd could not be reached, or did not answer in time.
    #[error("cannot reach etcd at {endpoint} ({path}): {reason}")]
    Unreachable {
        /// The endpoint called.
        endpoint: String,
        /// The gateway path called.
        path: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// etcd answered with an error.
    #[error("etcd at {endpoint} refused {path} (HTTP {status}): {message}")]
    Refused {
        /// The endpoint called.
        endpoint: String,
        /// The gateway path called.
        path: &'static str,
        /// The HTTP status.
        status: u16,
        /// etcd's error message.
        message: String,
    },
    /// etcd's answer is not what its JSON gateway documents.
    #[error("unexpected answer from etcd to {path}: {detail}")]
    Protocol {
        /// The gateway path called.
        path: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A stored value cannot be decoded.
    #[error("the stored {what} is damaged: {source}")]
    Corrupt {
        /// Which value (`"ring"`, `"member n1"`, ...).
        what: String,
        /// Why it does not decode.
        source: RecordError,
    },
    /// The membership's lease expired or was revoked.
    #[error("the lease of node {node} is gone: it is no longer a member")]
    LeaseExpired {
        /// The node whose lease it was.
        node: NodeId,
    },
    /// A ring proposal was computed from an older ring.
    #[error("ring proposal expected generation {expected}, but the current one is {current}")]
    StaleGeneration {
        /// The generation the proposal was computed from.
        expected: u64,
        /// The generation stored now.
        current: u64,
    },
    /// The leadership a commit was made under is no longer current.
    #[error("node {node} is no longer the leader (its leadership had revision {revision})")]
    NotLeader {
        /// The deposed node.
        node: NodeId,
        /// The fencing revision of its leadership.
        revision: u64,
    },
    /// The job's snapshot pointer is not where the committer expected it.
    #[error("snapshot pointer of job {job} is at {found:?}, not at the expected {expected:?}")]
    SnapshotConflict {
        /// The job.
        job: String,
        /// The epoch the committer expected.
        expected: Option<u64>,
        /// The epoch stored.
        found: Option<u64>,
    },
    /// The call's arguments make no sense (a zero TTL, a ring of the wrong generation,
    /// an epoch that does not advance).
    #[error("invalid coordinator request: {0}")]
    Invalid(String),
}

/// A node's membership: its lease, kept alive by a background task until the
/// membership is dropped, left, or the lease is found gone.
pub struct Membership {
    member: Member,
    lease: i64,
    ttl: Duration,
    keep_alive: JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl Membership {
    /// A membership whose keep-alive task is `keep_alive`; that task sends `true` on
    /// `lost`'s sender when it finds the lease gone. For backends.
    pub(crate) fn new(
        member: Member,
        lease: i64,
        ttl: Duration,
        keep_alive: JoinHandle<()>,
        lost: watch::Receiver<bool>,
    ) -> Self {
        Membership {
            member,
            lease,
            ttl,
            keep_alive,
            lost,
        }
    }

    /// The node.
    pub fn node(&self) -> &NodeId {
        &self.member.node
    }

    /// The member record (node and address).
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The lease's id (etcd's lease id, or the embedded backend's).
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The lease's time to live as granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the keep-alive found the lease gone (expired or revoked).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the keep-alive finds the lease gone (never, once the keep-alive
    /// is stopped).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // An error means the keep-alive stopped without losing the lease.
        if lost.wait_for(|&gone| gone).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops refreshing the lease, so it expires after its TTL as if this node had
    /// hung. What dropping the membership does too.
    pub fn stop_keep_alive(&self) {
        self.keep_alive.abort();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("member", &self.member)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// The elected leader, as anyone can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leader's node and address.
    pub member: Member,
    /// Its fencing revision (see [`Leadership::revision`]).
    pub revision: u64,
}

/// Proof of having won an election, carried into every write only the leader may
/// make. Its revision fences: each election produces a larger one, and a write under
/// a revision that is no longer the leader key's is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Leadership {
    member: Member,
    lease: i64,
    revision: u64,
}

impl Leadership {
    /// A leadership won by `member` under `lease`, with fencing `revision`. For
    /// backends.
    pub(crate) fn new(member: Member, lease: i64, revision: u64) -> Self {
        Leadership {
            member,
            lease,
            revision,
        }
    }

    /// The leader's node.
    pub fn node(&self) -> &NodeId {
        &self.member.node
    }

    /// The lease the leadership is held under.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The fencing token: etcd's create revision of the leader key (strictly larger
    /// for every new leader).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// As others see it.
    pub fn leader(&self) -> Leader {
        Leader {
            member: self.member.clone(),
            revision: self.revision,
        }
    }
}

/// Checks a requested lease TTL.
pub(crate) fn check_ttl(ttl: Duration) -> Result<(), CoordinationError> {
    if ttl.is_zero() {
        return Err(CoordinationError::Invalid("a lease TTL of zero".into()));
    }
    Ok(())
}

/// Checks a ring proposal's generation against the generation it expects to replace.
pub(crate) fn check_proposal(
    ring: &Ring,
    expected_generation: u64,
) -> Result<(), CoordinationError> {
    if ring.generation() != expected_generation.saturating_add(1) {
        return Err(CoordinationError::Invalid(format!(
            "a ring of generation {} cannot replace generation {expected_generation}",
            ring.generation()
        )));
    }
    Ok(())
}

/// Checks that a snapshot commit advances the pointer.
pub(crate) fn check_advance(
    job: &str,
    epoch: u64,
    expected_previous: Option<u64>,
) -> Result<(), CoordinationError> {
    match expected_previous {
        Some(previous) if previous >= epoch => Err(CoordinationError::Invalid(format!(
            "job {job}: epoch {epoch} does not advance the snapshot pointer from {previous}"
        ))),
        _ => Ok(()),
    }
}
