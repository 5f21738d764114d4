//! The embedded coordinator: everything `Coordinator` promises, held in process, for
//! a node that runs alone (today's behaviour, nothing to start).
//!
//! It follows the etcd backend's semantics so the same behavioural tests pass on
//! both: leases expire after their TTL unless kept alive, a member and a leadership
//! live exactly as long as their lease, every change of leader takes a new, larger
//! revision from one counter, and the ring and snapshot pointer are compare-and-swap.
//! Clones share one state, so two handles can play two members of one process's
//! cluster (the tests do). Nothing is persisted: a process restart starts from
//! nothing, as a single node's recovery already does from its local snapshots.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::coordinator::{
    check_advance, check_proposal, check_ttl, CoordFuture, CoordinationError, Coordinator, Leader,
    Leadership, Membership,
};
use super::node::{Member, NodeId};
use super::ring::Ring;

/// The in-process coordinator. Cloning shares the state.
#[derive(Clone, Default)]
pub struct EmbeddedCoordinator {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken whenever the leader key is freed, so a campaign re-checks at once.
    leader_freed: Notify,
}

#[derive(Default)]
struct State {
    /// The last revision handed out (leaderships take the next one).
    revision: u64,
    next_lease: i64,
    /// Live leases and when each expires.
    leases: HashMap<i64, Instant>,
    members: BTreeMap<NodeId, (Member, i64)>,
    leader: Option<(Leader, i64)>,
    ring: Option<Ring>,
    snapshots: HashMap<String, u64>,
}

impl State {
    /// `Ok` while `leadership` is the current one: what every write only the
    /// leader may make checks first.
    fn check_leader(&self, leadership: &Leadership) -> Result<(), CoordinationError> {
        let current = self.leader.as_ref().map(|(l, _)| l.revision);
        if current != Some(leadership.revision()) {
            return Err(CoordinationError::NotLeader {
                node: leadership.node().clone(),
                revision: leadership.revision(),
            });
        }
        Ok(())
    }

    /// Drops the leases past their deadline, with the members and leadership held
    /// under them. Returns whether the leader went.
    fn expire(&mut self, now: Instant) -> bool {
        self.leases.retain(|_, deadline| *deadline > now);
        self.drop_orphans()
    }

    /// Drops members and leadership whose lease is gone; returns whether the leader
    /// went.
    fn drop_orphans(&mut self) -> bool {
        let leases = &self.leases;
        self.members
            .retain(|_, (_, lease)| leases.contains_key(lease));
        match &self.leader {
            Some((_, lease)) if !leases.contains_key(lease) => {
                self.leader = None;
                true
            }
            _ => false,
        }
    }
}

impl EmbeddedCoordinator {
    /// An empty coordinator.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state with expired leases removed (waking campaigns if the leader went).
    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.expire(Instant::now()) {
            self.shared.leader_freed.notify_waiters();
        }
        state
    }

    fn keep_alive(
        &self,
        lease: i64,
        ttl: Duration,
        lost: watch::Sender<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let mut state = this.state();
                match state.leases.get_mut(&lease) {
                    Some(deadline) => *deadline = Instant::now() + ttl,
                    None => {
                        drop(state);
                        let _ = lost.send(true);
                        return;
                    }
                }
            }
        }
    }
}

impl Coordinator for EmbeddedCoordinator {
    fn join<'a>(
        &'a self,
        node: &'a NodeId,
        address: &'a str,
        ttl: Duration,
    ) -> CoordFuture<'a, Membership> {
        Box::pin(async move {
            check_ttl(ttl)?;
            let member = Member {
                node: node.clone(),
                address: address.to_string(),
            };
            let lease = {
                let mut state = self.state();
                state.next_lease += 1;
                let lease = state.next_lease;
                state.leases.insert(lease, Instant::now() + ttl);
                state.members.insert(node.clone(), (member.clone(), lease));
                lease
            };
            let (lost_tx, lost_rx) = watch::channel(false);
            let task = tokio::spawn(self.keep_alive(lease, ttl, lost_tx));
            Ok(Membership::new(member, lease, ttl, task, lost_rx))
        })
    }

    fn leave(&self, membership: Membership) -> CoordFuture<'_, ()> {
        Box::pin(async move {
            membership.stop_keep_alive();
            let mut state = self.state();
            state.leases.remove(&membership.lease());
            if state.drop_orphans() {
                self.shared.leader_freed.notify_waiters();
            }
            Ok(())
        })
    }

    fn members(&self) -> CoordFuture<'_, Vec<Member>> {
        Box::pin(async move {
            Ok(self
                .state()
                .members
                .values()
                .map(|(member, _)| member.clone())
                .collect())
        })
    }

    fn campaign<'a>(&'a self, membership: &'a Membership) -> CoordFuture<'a, Leadership> {
        Box::pin(async move {
            loop {
                let freed = self.shared.leader_freed.notified();
                tokio::pin!(freed);
                // Registered before the check, so a release in between is not missed.
                freed.as_mut().enable();
                let wake_at = {
                    let mut state = self.state();
                    if !state.leases.contains_key(&membership.lease()) {
                        return Err(CoordinationError::LeaseExpired {
                            node: membership.node().clone(),
                        });
                    }
                    match &state.leader {
                        Some((leader, lease)) if *lease == membership.lease() => {
                            return Ok(Leadership::new(
                                leader.member.clone(),
                                *lease,
                                leader.revision,
                            ));
                        }
                        Some((_, lease)) => state.leases.get(lease).copied(),
                        None => {
                            state.revision += 1;
                            let leader = Leader {
                                member: membership.member().clone(),
                                revision: state.revision,
                            };
                            state.leader = Some((leader.clone(), membership.lease()));
                            return Ok(Leadership::new(
                                leader.member,
                                membership.lease(),
                                leader.revision,
                            ));
                        }
                    }
                };
                // Wake when the leader resigns or leaves, or when its lease is due
                // (it may have been renewed by then: the loop checks again).
                let wake_at = wake_at.unwrap_or_else(Instant::now);
                tokio::select! {
                    () = &mut freed => {}
                    () = tokio::time::sleep_until(wake_at) => {}
                    () = membership.lost() => {}
                }
            }
        })
    }

    fn leader(&self) -> CoordFuture<'_, Option<Leader>> {
        Box::pin(async move { Ok(self.state().leader.as_ref().map(|(l, _)| l.clone())) })
    }

    fn resign(&self, leadership: Leadership) -> CoordFuture<'_, ()> {
        Box::pin(async move {
            let mut state = self.state();
            if matches!(&state.leader, Some((l, _)) if l.revision == leadership.revision()) {
                state.leader = None;
                self.shared.leader_freed.notify_waiters();
            }
            Ok(())
        })
    }

    fn ring(&self) -> CoordFuture<'_, Option<Ring>> {
        Box::pin(async move { Ok(self.state().ring.clone()) })
    }

    fn propose_ring<'a>(
        &'a self,
        ring: Ring,
        expected_generation: u64,
        leadership: &'a Leadership,
    ) -> CoordFuture<'a, ()> {
        Box::pin(async move {
            check_proposal(&ring, expected_generation)?;
            let mut state = self.state();
            state.check_leader(leadership)?;
            let current = state.ring.as_ref().map_or(0, Ring::generation);
            if current != expected_generation {
                return Err(CoordinationError::StaleGeneration {
                    expected: expected_generation,
                    current,
                });
            }
            state.ring = Some(ring);
            Ok(())
        })
    }

    fn last_snapshot<'a>(&'a self, job: &'a str) -> CoordFuture<'a, Option<u64>> {
        Box::pin(async move { Ok(self.state().snapshots.get(job).copied()) })
    }

    fn commit_snapshot<'a>(
        &'a self,
        job: &'a str,
        epoch: u64,
        expected_previous: Option<u64>,
        leadership: &'a Leadership,
    ) -> CoordFuture<'a, ()> {
        Box::pin(async move {
            check_advance(job, epoch, expected_previous)?;
            let mut state = self.state();
            state.check_leader(leadership)?;
            let found = state.snapshots.get(job).copied();
            if found != expected_previous {
                return Err(CoordinationError::SnapshotConflict {
                    job: job.to_string(),
                    expected: expected_previous,
                    found,
                });
            }
            state.snapshots.insert(job.to_string(), epoch);
            Ok(())
        })
    }
}
