//! Cluster coordination, end to end: two coordinators play two nodes of one cluster,
//! on a real etcd (started per test by `common::etcd`) and on the embedded backend
//! (two handles on one in-process state). Each behaviour is written once, generic over
//! the backend, and run on both.

mod common;

use std::future::Future;
use std::time::Duration;

use weir::cluster::{
    rebalance, CoordinationError, Coordinator, EmbeddedCoordinator, EtcdCoordinator, Member,
    NodeId, Ring,
};

use common::etcd::EtcdServer;

/// The lease TTL of the tests' members: short, so an expiry is quick to wait for,
/// and at least etcd's minimum.
const TTL: Duration = Duration::from_secs(2);

/// How long a call that should resolve may take (a lease expiry takes about `TTL`).
const PATIENCE: Duration = Duration::from_secs(30);

fn n(name: &str) -> NodeId {
    NodeId::new(name)
}

fn names(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.node.as_str()).collect()
}

/// Waits until `done` holds, checking every 20 ms; fails after `PATIENCE`.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `future`, which must resolve within `PATIENCE`.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}

async fn both_members_join_and_see_each_other(a: &dyn Coordinator, b: &dyn Coordinator) {
    let _m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    let _m2 = b.join(&n("n2"), "127.0.0.1:7002", TTL).await.unwrap();
    for coordinator in [a, b] {
        let members = coordinator.members().await.unwrap();
        assert_eq!(
            members,
            vec![
                Member {
                    node: n("n1"),
                    address: "127.0.0.1:7001".into()
                },
                Member {
                    node: n("n2"),
                    address: "127.0.0.1:7002".into()
                },
            ]
        );
    }
}

async fn a_member_whose_keep_alive_stops_disappears_when_its_lease_expires(
    a: &dyn Coordinator,
    b: &dyn Coordinator,
) {
    let m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    let m2 = b.join(&n("n2"), "127.0.0.1:7002", TTL).await.unwrap();
    m1.stop_keep_alive();
    eventually("n1's lease expired", || async {
        names(&b.members().await.unwrap()) == ["n2"]
    })
    .await;
    // n2 joined with the same TTL at the same time: its keep-alive held it.
    assert_eq!(names(&a.members().await.unwrap()), ["n2"]);
    assert!(!m2.is_lost());
}

async fn a_member_that_leaves_disappears_at_once(a: &dyn Coordinator, b: &dyn Coordinator) {
    let m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    let _m2 = b.join(&n("n2"), "127.0.0.1:7002", TTL).await.unwrap();
    a.leave(m1).await.unwrap();
    assert_eq!(names(&b.members().await.unwrap()), ["n2"]);
}

async fn one_leader_at_a_time_and_the_other_takes_over_when_its_lease_expires(
    a: &dyn Coordinator,
    b: &dyn Coordinator,
) {
    let m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    let m2 = b.join(&n("n2"), "127.0.0.1:7002", TTL).await.unwrap();
    let first = within("n1's election", a.campaign(&m1)).await.unwrap();
    assert_eq!(first.node(), &n("n1"));
    assert_eq!(a.leader().await.unwrap(), Some(first.leader()));
    assert_eq!(b.leader().await.unwrap(), Some(first.leader()));
    // Campaigning again while leader is the same leadership.
    let again = a.campaign(&m1).await.unwrap();
    assert_eq!(again.revision(), first.revision());
    // n2 cannot win while n1 holds the lease (n1's keep-alive renews it meanwhile).
    let blocked = tokio::time::timeout(TTL + TTL / 2, b.campaign(&m2)).await;
    assert!(blocked.is_err(), "n2 was elected while n1 led: {blocked:?}");
    m1.stop_keep_alive();
    let second = within("n2's election", b.campaign(&m2)).await.unwrap();
    assert_eq!(second.node(), &n("n2"));
    assert!(second.revision() > first.revision());
    assert_eq!(a.leader().await.unwrap(), Some(second.leader()));
}

async fn the_other_takes_over_when_the_leader_leaves_or_resigns(
    a: &dyn Coordinator,
    b: &dyn Coordinator,
) {
    let m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    let m2 = b.join(&n("n2"), "127.0.0.1:7002", TTL).await.unwrap();
    let first = a.campaign(&m1).await.unwrap();
    let waiting = b.campaign(&m2);
    let leaving = async {
        a.leave(m1).await.unwrap();
    };
    let (second, ()) = within("n2's election", async { tokio::join!(waiting, leaving) }).await;
    let second = second.unwrap();
    assert_eq!(second.node(), &n("n2"));
    assert!(second.revision() > first.revision());
    b.resign(second).await.unwrap();
    assert_eq!(a.leader().await.unwrap(), None);
    let m3 = a.join(&n("n3"), "127.0.0.1:7003", TTL).await.unwrap();
    let third = within("n3's election", a.campaign(&m3)).await.unwrap();
    assert_eq!(third.node(), &n("n3"));
}

async fn a_deposed_leaders_snapshot_commit_is_refused(a: &dyn Coordinator, b: &dyn Coordinator) {
    let job = "wordcount";
    let m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    let m2 = b.join(&n("n2"), "127.0.0.1:7002", TTL).await.unwrap();
    let first = a.campaign(&m1).await.unwrap();
    assert_eq!(b.last_snapshot(job).await.unwrap(), None);
    a.commit_snapshot(job, 1, None, &first).await.unwrap();
    assert_eq!(b.last_snapshot(job).await.unwrap(), Some(1));

    // n1 hangs: its lease expires; even before anyone else is elected, its
    // leadership commits nothing.
    m1.stop_keep_alive();
    eventually("n1's leadership ended", || async {
        b.leader().await.unwrap().is_none()
    })
    .await;
    let refused = a.commit_snapshot(job, 2, Some(1), &first).await;
    assert!(
        matches!(refused, Err(CoordinationError::NotLeader { revision, .. }) if revision == first.revision()),
        "{refused:?}"
    );

    let second = within("n2's election", b.campaign(&m2)).await.unwrap();
    let refused = a.commit_snapshot(job, 2, Some(1), &first).await;
    assert!(
        matches!(refused, Err(CoordinationError::NotLeader { .. })),
        "{refused:?}"
    );
    b.commit_snapshot(job, 2, Some(1), &second).await.unwrap();
    assert_eq!(a.last_snapshot(job).await.unwrap(), Some(2));

    // The pointer is compare-and-swap too, and only moves forward.
    let conflict = b.commit_snapshot(job, 3, Some(1), &second).await;
    assert!(
        matches!(
            &conflict,
            Err(CoordinationError::SnapshotConflict {
                expected: Some(1),
                found: Some(2),
                ..
            })
        ),
        "{conflict:?}"
    );
    let backwards = b.commit_snapshot(job, 2, Some(2), &second).await;
    assert!(
        matches!(backwards, Err(CoordinationError::Invalid(_))),
        "{backwards:?}"
    );
    // Another job's pointer is separate.
    assert_eq!(a.last_snapshot("other").await.unwrap(), None);
}

async fn a_ring_proposal_with_a_stale_generation_is_refused(
    a: &dyn Coordinator,
    b: &dyn Coordinator,
) {
    let m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    let m2 = b.join(&n("n2"), "127.0.0.1:7002", TTL).await.unwrap();
    let leading = a.campaign(&m1).await.unwrap();
    assert_eq!(a.ring().await.unwrap(), None);
    let first = Ring::initial(16, [n("n1"), n("n2")]).unwrap();
    a.propose_ring(first.clone(), 0, &leading).await.unwrap();
    assert_eq!(b.ring().await.unwrap(), Some(first.clone()));

    // A proposal computed before the first ring was stored: refused.
    let late = Ring::initial(16, [n("n2")]).unwrap();
    let refused = a.propose_ring(late, 0, &leading).await;
    assert!(
        matches!(
            refused,
            Err(CoordinationError::StaleGeneration {
                expected: 0,
                current: 1
            })
        ),
        "{refused:?}"
    );

    let grown = rebalance(&first, [n("n1"), n("n2"), n("n3")]).unwrap();
    a.propose_ring(grown.clone(), 1, &leading).await.unwrap();
    // A rebalance of the ring read before that change: refused, the ring stays.
    let shrunk = rebalance(&first, [n("n1")]).unwrap();
    let refused = a.propose_ring(shrunk, 1, &leading).await;
    assert!(
        matches!(
            refused,
            Err(CoordinationError::StaleGeneration {
                expected: 1,
                current: 2
            })
        ),
        "{refused:?}"
    );
    let stored = a.ring().await.unwrap().unwrap();
    assert_eq!(stored, grown);
    assert_eq!(stored.generation(), 2);
    assert_eq!(stored.partitions_of(&n("n3")).len(), 5);

    // A proposal whose own generation does not follow the expected one is malformed.
    let skipped = rebalance(&grown, [n("n1")]).unwrap();
    let invalid = a.propose_ring(skipped, 1, &leading).await;
    assert!(
        matches!(invalid, Err(CoordinationError::Invalid(_))),
        "{invalid:?}"
    );

    // Only the leader changes the ring: n1 leaves (its lease and leader key go) and
    // n2 leads; n1's proposal, even from the current ring, is refused, and n2's goes
    // through.
    let next = rebalance(&grown, [n("n1"), n("n2")]).unwrap();
    a.leave(m1).await.unwrap();
    let refused = a.propose_ring(next.clone(), 2, &leading).await;
    assert!(
        matches!(refused, Err(CoordinationError::NotLeader { .. })),
        "{refused:?}"
    );
    let second = within("n2's election", b.campaign(&m2)).await.unwrap();
    b.propose_ring(next.clone(), 2, &second).await.unwrap();
    assert_eq!(a.ring().await.unwrap(), Some(next));
}

async fn a_campaign_under_an_expired_lease_fails(a: &dyn Coordinator, b: &dyn Coordinator) {
    let m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    m1.stop_keep_alive();
    eventually("n1's lease expired", || async {
        b.members().await.unwrap().is_empty()
    })
    .await;
    let refused = within("the refusal", a.campaign(&m1)).await;
    assert!(
        matches!(&refused, Err(CoordinationError::LeaseExpired { node }) if node == &n("n1")),
        "{refused:?}"
    );
    assert_eq!(b.leader().await.unwrap(), None);
}

/// Runs each behaviour on both backends: `embedded::<name>` and `etcd::<name>`.
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let a = EmbeddedCoordinator::new();
                    let b = a.clone();
                    super::$behaviour(&a, &b).await;
                }
            )*
        }

        mod etcd {
            use super::*;
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let server = EtcdServer::start();
                    let a = coordinator(&server);
                    let b = coordinator(&server);
                    super::$behaviour(&a, &b).await;
                }
            )*
        }
    };
}

/// A coordinator on `server`, as a node would make it.
fn coordinator(server: &EtcdServer) -> EtcdCoordinator {
    EtcdCoordinator::new(&server.endpoint(), "/weir/test")
        .unwrap()
        .with_poll_interval(Duration::from_millis(50))
}

on_both_backends!(
    both_members_join_and_see_each_other,
    a_member_whose_keep_alive_stops_disappears_when_its_lease_expires,
    a_member_that_leaves_disappears_at_once,
    one_leader_at_a_time_and_the_other_takes_over_when_its_lease_expires,
    the_other_takes_over_when_the_leader_leaves_or_resigns,
    a_deposed_leaders_snapshot_commit_is_refused,
    a_ring_proposal_with_a_stale_generation_is_refused,
    a_campaign_under_an_expired_lease_fails,
);

#[tokio::test]
async fn two_clusters_under_different_prefixes_share_one_etcd_without_seeing_each_other() {
    let server = EtcdServer::start();
    let a = EtcdCoordinator::new(&server.endpoint(), "/weir/a").unwrap();
    let b = EtcdCoordinator::new(&server.endpoint(), "/weir/b").unwrap();
    let _m1 = a.join(&n("n1"), "127.0.0.1:7001", TTL).await.unwrap();
    assert_eq!(names(&a.members().await.unwrap()), ["n1"]);
    assert!(b.members().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_etcd_is_a_clear_error() {
    let port = common::tansu::free_port();
    let coordinator = EtcdCoordinator::new(&format!("http://127.0.0.1:{port}"), "/weir")
        .unwrap()
        .with_request_timeout(Duration::from_secs(2))
        .unwrap();
    let error = coordinator.members().await.unwrap_err();
    assert!(
        matches!(error, CoordinationError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[test]
fn an_endpoint_that_is_not_plain_http_is_refused() {
    for endpoint in ["https://127.0.0.1:2379", "127.0.0.1:2379", "not a url"] {
        assert!(
            matches!(
                EtcdCoordinator::new(endpoint, "/weir"),
                Err(CoordinationError::Invalid(_))
            ),
            "{endpoint}"
        );
    }
}
