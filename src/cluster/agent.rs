//! A node's life in the cluster: it joins under a lease, campaigns to lead, and,
//! while it leads, keeps the ring in step with the live members (a node that joins
//! takes its share; the partitions of a node whose lease expired go to the others),
//! with the fewest moves. What it sees is published as a [`ClusterView`] for the
//! status API (`GET /api/cluster`).
//!
//! The agent runs on a thread of its own with a small tokio runtime; it polls the
//! coordinator every `poll` interval. A membership that is lost (the lease expired,
//! e.g. after the node was cut off) is joined again under a new lease.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::coordinator::{Coordinator, Leadership, Membership};
use super::node::{Member, NodeId};
use super::ring::{rebalance, Ring};

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's id.
    pub node: NodeId,
    /// Where other nodes reach it.
    pub address: String,
    /// The membership lease: how long after it stops renewing a node is gone.
    pub ttl: Duration,
    /// How often the view is refreshed (and the ring checked, when leading).
    pub poll: Duration,
    /// The key partitions `P` the ring assigns.
    pub key_partitions: u32,
}

/// One node's share of the ring, for the status API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    /// The node.
    pub node: String,
    /// How many key partitions it owns.
    pub partitions: u32,
    /// They, as inclusive ranges `[first, last]`.
    pub ranges: Vec<(u32, u32)>,
}

/// What this node sees of the cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    /// This node's id.
    pub node: String,
    /// The live members: node id and address.
    pub members: Vec<(String, String)>,
    /// The leader's node id and fencing revision, if one is elected.
    pub leader: Option<(String, u64)>,
    /// Whether this node leads.
    pub leading: bool,
    /// The ring's generation (0: none yet).
    pub ring_generation: u64,
    /// Each node's share of the ring.
    pub ring: Vec<Share>,
    /// The last coordination error, if the last refresh failed.
    pub error: Option<String>,
}

/// The view as shared between the agent and its readers.
pub type SharedView = Arc<Mutex<ClusterView>>;

/// A running agent; dropping it leaves the cluster.
pub struct ClusterAgent {
    view: SharedView,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl ClusterAgent {
    /// Starts taking part in the cluster through `coordinator`.
    pub fn start(
        coordinator: Arc<dyn Coordinator>,
        config: AgentConfig,
    ) -> std::io::Result<ClusterAgent> {
        let view: SharedView = Arc::new(Mutex::new(ClusterView {
            node: config.node.to_string(),
            ..Default::default()
        }));
        let (stop, stopped) = watch::channel(false);
        let shared = view.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("weir-cluster-agent".into())
            .spawn(move || runtime.block_on(run(coordinator, config, shared, stopped)))?;
        Ok(ClusterAgent {
            view,
            stop,
            thread: Some(thread),
        })
    }

    /// What the node sees now.
    pub fn view(&self) -> ClusterView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The view, shared (for the status API).
    pub fn shared_view(&self) -> SharedView {
        self.view.clone()
    }
}

impl Drop for ClusterAgent {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Each node's share of `ring`, as ranges.
pub fn shares(ring: &Ring) -> Vec<Share> {
    ring.nodes()
        .iter()
        .map(|node| {
            let mut ranges: Vec<(u32, u32)> = Vec::new();
            let owned = ring.partitions_of(node);
            for kp in &owned {
                match ranges.last_mut() {
                    Some((_, last)) if *last + 1 == *kp => *last = *kp,
                    _ => ranges.push((*kp, *kp)),
                }
            }
            Share {
                node: node.to_string(),
                partitions: owned.len() as u32,
                ranges,
            }
        })
        .collect()
}

/// The agent's loop: join, campaign, refresh, keep the ring, until stopped.
async fn run(
    coordinator: Arc<dyn Coordinator>,
    config: AgentConfig,
    view: SharedView,
    mut stopped: watch::Receiver<bool>,
) {
    let set_error = |e: String| {
        view.lock().unwrap_or_else(PoisonError::into_inner).error = Some(e);
    };
    while !*stopped.borrow() {
        let membership = match coordinator
            .join(&config.node, &config.address, config.ttl)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(node = %config.node, error = %e, "cannot join the cluster; retrying");
                set_error(format!("joining: {e}"));
                if wait(&mut stopped, config.poll).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(node = %config.node, ttl = ?membership.ttl(), "joined the cluster");
        let leave = member_loop(&*coordinator, &config, &membership, &view, &mut stopped).await;
        if leave {
            let _ = coordinator.leave(membership).await;
            return;
        }
        tracing::warn!(node = %config.node, "the membership lease was lost; joining again");
    }
}

/// Sleeps `period`, or less if stopped; true when stopped.
async fn wait(stopped: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

/// One membership: campaigns in the background, refreshes the view, and keeps the
/// ring while leading. Returns true when the agent is to stop, false when the
/// membership was lost.
async fn member_loop(
    coordinator: &dyn Coordinator,
    config: &AgentConfig,
    membership: &Membership,
    view: &SharedView,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    let mut campaign = coordinator.campaign(membership);
    let mut leadership: Option<Leadership> = None;
    loop {
        if membership.is_lost() {
            return false;
        }
        if leadership.is_none() {
            // Poll the campaign without waiting for it.
            tokio::select! {
                biased;
                won = &mut campaign => match won {
                    Ok(l) => {
                        tracing::info!(node = %config.node, revision = l.revision(), "leading the cluster");
                        leadership = Some(l);
                    }
                    Err(e) => {
                        tracing::warn!(node = %config.node, error = %e, "campaign failed");
                        return false;
                    }
                },
                () = std::future::ready(()) => {}
            }
        }
        let refreshed = refresh(coordinator, config, leadership.as_ref()).await;
        {
            let mut v = view.lock().unwrap_or_else(PoisonError::into_inner);
            match refreshed {
                Ok(fresh) => *v = fresh,
                Err(e) => v.error = Some(e),
            }
        }
        if wait(stopped, config.poll).await {
            return true;
        }
    }
}

/// Reads the members, the leader and the ring; while leading, proposes the ring the
/// members call for.
async fn refresh(
    coordinator: &dyn Coordinator,
    config: &AgentConfig,
    leadership: Option<&Leadership>,
) -> Result<ClusterView, String> {
    let members: Vec<Member> = coordinator.members().await.map_err(|e| e.to_string())?;
    let leader = coordinator.leader().await.map_err(|e| e.to_string())?;
    let mut ring = coordinator.ring().await.map_err(|e| e.to_string())?;
    let leading = leader
        .as_ref()
        .is_some_and(|l| l.member.node == config.node && leadership.is_some());
    if let (true, Some(leadership)) = (leading, leadership) {
        let ids: Vec<NodeId> = members.iter().map(|m| m.node.clone()).collect();
        let wanted = match &ring {
            None if !ids.is_empty() => Some(Ring::initial(config.key_partitions, ids.clone())),
            Some(current) if current.nodes() != ids.as_slice() && !ids.is_empty() => {
                Some(rebalance(current, ids.clone()))
            }
            _ => None,
        };
        if let Some(next) = wanted {
            let next = next.map_err(|e| e.to_string())?;
            let expected = ring.as_ref().map_or(0, Ring::generation);
            match coordinator
                .propose_ring(next.clone(), expected, leadership)
                .await
            {
                Ok(()) => {
                    tracing::info!(generation = next.generation(), nodes = ?ids, "ring changed");
                    ring = Some(next);
                }
                Err(e) => tracing::warn!(error = %e, "ring proposal refused"),
            }
        }
    }
    Ok(ClusterView {
        node: config.node.to_string(),
        members: members
            .iter()
            .map(|m| (m.node.to_string(), m.address.clone()))
            .collect(),
        leader: leader.map(|l| (l.member.node.to_string(), l.revision)),
        leading,
        ring_generation: ring.as_ref().map_or(0, Ring::generation),
        ring: ring.as_ref().map(shares).unwrap_or_default(),
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::EmbeddedCoordinator;

    fn wait_for(
        agent: &ClusterAgent,
        what: &str,
        ok: impl Fn(&ClusterView) -> bool,
    ) -> ClusterView {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = agent.view();
            if ok(&v) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {v:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn config(node: &str) -> AgentConfig {
        AgentConfig {
            node: NodeId::new(node),
            address: format!("{node}:7000"),
            ttl: Duration::from_secs(1),
            poll: Duration::from_millis(20),
            key_partitions: 16,
        }
    }

    #[test]
    fn nodes_join_one_leads_and_the_ring_follows_the_members() {
        let coordinator = Arc::new(EmbeddedCoordinator::new());
        let a = ClusterAgent::start(coordinator.clone(), config("a")).unwrap();
        let v = wait_for(&a, "a alone owns the ring", |v| {
            v.leading && v.ring.len() == 1 && v.ring[0].partitions == 16
        });
        assert_eq!(v.ring[0].ranges, vec![(0, 15)]);
        let b = ClusterAgent::start(coordinator.clone(), config("b")).unwrap();
        let v = wait_for(&a, "b takes its share", |v| {
            v.members.len() == 2 && v.ring.iter().all(|s| s.partitions == 8)
        });
        assert_eq!(v.ring_generation, 2);
        let seen_by_b = wait_for(&b, "b sees the same ring", |v| v.ring_generation == 2);
        assert!(!seen_by_b.leading);
        assert_eq!(seen_by_b.leader.as_ref().map(|l| l.0.as_str()), Some("a"));
        // The leader leaves: b leads, and the ring goes back to b alone.
        drop(a);
        let v = wait_for(&b, "b leads alone", |v| {
            v.leading && v.ring.len() == 1 && v.ring[0].partitions == 16
        });
        assert_eq!(v.ring_generation, 3);
    }
}
