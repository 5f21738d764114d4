//! The etcd backend: the `Coordinator` on etcd v3, through its JSON gRPC gateway
//! (`POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`, `/v3/lease/grant`,
//! `/v3/lease/keepalive`, `/v3/lease/revoke`) over plain HTTP/1.1, so the build needs
//! neither gRPC nor `protoc`. `docs/cluster.md` ("Coordination") lists the keys and
//! argues the fencing; `docs/dependencies.md` says why the gateway rather than a
//! gRPC client.

pub mod api;
pub mod gateway;
mod keys;

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use self::api::{
    Compare, Empty, KeepAliveStreamItem, KeyValue, LeaseGrantRequest, LeaseGrantResponse, LeaseId,
    PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use self::gateway::Gateway;
use self::keys::Keys;
use super::coordinator::{
    check_advance, check_proposal, check_ttl, CoordFuture, CoordinationError, Coordinator, Leader,
    Leadership, Membership,
};
use super::node::{Member, NodeId};
use super::record::{self, RecordKind};
use super::ring::Ring;

/// How long one call to etcd may take before it counts as unreachable.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a campaign checks whether the leader key is free.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The coordinator on an etcd cluster. Cloning shares the HTTP connection pool.
#[derive(Clone)]
pub struct EtcdCoordinator {
    gateway: Gateway,
    keys: Keys,
    poll_interval: Duration,
}

impl EtcdCoordinator {
    /// A coordinator on the etcd at `endpoint` (`http://host:port`), keeping its keys
    /// under `prefix` (e.g. `/weir/<cluster name>`), so several clusters can share
    /// one etcd. Makes no call yet.
    pub fn new(endpoint: &str, prefix: &str) -> Result<Self, CoordinationError> {
        Ok(EtcdCoordinator {
            gateway: Gateway::new(endpoint, DEFAULT_REQUEST_TIMEOUT)?,
            keys: Keys::new(prefix),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// Bounds each call to etcd by `timeout` instead of [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Result<Self, CoordinationError> {
        self.gateway = Gateway::new(self.gateway.endpoint(), timeout)?;
        Ok(self)
    }

    /// Checks for a free leader key every `interval` while campaigning, instead of
    /// [`DEFAULT_POLL_INTERVAL`].
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, CoordinationError> {
        let answer: RangeResponse = self
            .gateway
            .call(
                "/v3/kv/range",
                &RangeRequest {
                    key: api::Bytes(key.to_vec()),
                    range_end: None,
                },
            )
            .await?;
        Ok(answer.kvs.into_iter().next())
    }

    async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, CoordinationError> {
        self.gateway.call("/v3/kv/txn", &txn).await
    }

    /// A write only the leader may make: puts `value` at `key` in one transaction
    /// that checks both that `leadership` is still the leader key's (its create
    /// revision) and `condition`. `Ok(None)` when written; a deposed leader gets
    /// [`CoordinationError::NotLeader`]; when only `condition` failed, `Ok(Some)`
    /// with `key` as it is now (`None` inside when it does not exist).
    async fn put_as_leader(
        &self,
        leadership: &Leadership,
        condition: Compare,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<Option<Option<KeyValue>>, CoordinationError> {
        let leader = self.keys.leader();
        let token = i64::try_from(leadership.revision()).unwrap_or(i64::MAX);
        let mut answer = self
            .txn(TxnRequest {
                compare: vec![Compare::created_at(&leader, token), condition],
                success: vec![RequestOp::put(key, value, 0)],
                failure: vec![RequestOp::get(&leader), RequestOp::get(key)],
            })
            .await?;
        if answer.succeeded {
            return Ok(None);
        }
        let current_leader = answer.range(0).first().map(|kv| kv.create_revision.0);
        if current_leader != Some(token) {
            return Err(CoordinationError::NotLeader {
                node: leadership.node().clone(),
                revision: leadership.revision(),
            });
        }
        Ok(Some(answer.take_first(1)))
    }

    /// The ring stored in `kv`, checked against the key's version (each proposal is
    /// one put, so the version is the generation).
    fn decode_ring(kv: &KeyValue) -> Result<Ring, CoordinationError> {
        let corrupt = |source| CoordinationError::Corrupt {
            what: "ring".into(),
            source,
        };
        let ring = Ring::decode(&kv.value.0).map_err(|e| match e {
            super::ring::RingError::Record(source) => corrupt(source),
            other => corrupt(record::RecordError::Invalid(other.to_string())),
        })?;
        if i64::try_from(ring.generation()) != Ok(kv.version.0) {
            return Err(corrupt(record::RecordError::Invalid(format!(
                "generation {} stored in a key changed {} times (written outside weir?)",
                ring.generation(),
                kv.version.0
            ))));
        }
        Ok(ring)
    }

    fn decode_pointer(job: &str, kv: Option<&KeyValue>) -> Result<Option<u64>, CoordinationError> {
        kv.map(|kv| {
            record::decode::<u64>(RecordKind::SnapshotPointer, &kv.value.0).map_err(|source| {
                CoordinationError::Corrupt {
                    what: format!("snapshot pointer of job {job}"),
                    source,
                }
            })
        })
        .transpose()
    }

    fn decode_leader(kv: &KeyValue) -> Result<Leader, CoordinationError> {
        let member: Member = record::decode(RecordKind::Leader, &kv.value.0).map_err(|source| {
            CoordinationError::Corrupt {
                what: "leader".into(),
                source,
            }
        })?;
        Ok(Leader {
            member,
            revision: revision(kv.create_revision.0),
        })
    }
}

/// An etcd revision (always positive) as the fencing token type.
fn revision(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Refreshes `lease` every third of its `ttl` until etcd says it is gone, or until no
/// refresh has succeeded for a whole `ttl` (then etcd has expired it too); either way
/// it reports the loss on `lost`.
async fn keep_alive(
    gateway: Gateway,
    node: NodeId,
    lease: i64,
    ttl: Duration,
    lost: watch::Sender<bool>,
) {
    let mut refreshed = Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        let answer: Result<KeepAliveStreamItem, _> = gateway
            .call(
                "/v3/lease/keepalive",
                &LeaseId {
                    id: api::Int(lease),
                },
            )
            .await;
        match answer {
            Ok(KeepAliveStreamItem {
                result: Some(result),
                ..
            }) if result.ttl.0 > 0 => refreshed = Instant::now(),
            Ok(KeepAliveStreamItem { error: None, .. }) => {
                tracing::warn!(%node, lease, "the membership lease is gone");
                let _ = lost.send(true);
                return;
            }
            Ok(KeepAliveStreamItem {
                error: Some(error), ..
            }) => {
                tracing::warn!(%node, lease, %error, "keeping the membership lease alive failed");
            }
            Err(error) => {
                tracing::warn!(%node, lease, %error, "keeping the membership lease alive failed");
            }
        }
        if refreshed.elapsed() >= ttl {
            tracing::warn!(%node, lease, "the membership lease was not refreshed within its TTL");
            let _ = lost.send(true);
            return;
        }
    }
}

impl Coordinator for EtcdCoordinator {
    fn join<'a>(
        &'a self,
        node: &'a NodeId,
        address: &'a str,
        ttl: Duration,
    ) -> CoordFuture<'a, Membership> {
        Box::pin(async move {
            check_ttl(ttl)?;
            let seconds = i64::try_from(ttl.as_secs_f64().ceil() as u64).unwrap_or(i64::MAX);
            let grant: LeaseGrantResponse = self
                .gateway
                .call(
                    "/v3/lease/grant",
                    &LeaseGrantRequest {
                        ttl: api::Int(seconds),
                        id: api::Int(0),
                    },
                )
                .await?;
            if !grant.error.is_empty() || grant.id.0 == 0 || grant.ttl.0 <= 0 {
                return Err(CoordinationError::Protocol {
                    path: "/v3/lease/grant",
                    detail: format!("no lease granted: {:?}", grant.error),
                });
            }
            let lease = grant.id.0;
            let granted = Duration::from_secs(grant.ttl.0.unsigned_abs());
            let member = Member {
                node: node.clone(),
                address: address.to_string(),
            };
            let value = record::encode(RecordKind::Member, &member);
            let put = PutRequest {
                key: api::Bytes(self.keys.member(node)),
                value: api::Bytes(value),
                lease: api::Int(lease),
            };
            let _: Empty = self.gateway.call("/v3/kv/put", &put).await?;
            let (lost_tx, lost_rx) = watch::channel(false);
            let task = tokio::spawn(keep_alive(
                self.gateway.clone(),
                node.clone(),
                lease,
                granted,
                lost_tx,
            ));
            Ok(Membership::new(member, lease, granted, task, lost_rx))
        })
    }

    fn leave(&self, membership: Membership) -> CoordFuture<'_, ()> {
        Box::pin(async move {
            membership.stop_keep_alive();
            let revoked: Result<Empty, _> = self
                .gateway
                .call(
                    "/v3/lease/revoke",
                    &LeaseId {
                        id: api::Int(membership.lease()),
                    },
                )
                .await;
            match revoked {
                // Already expired: the member is gone either way.
                Err(CoordinationError::Refused { status: 404, .. }) | Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn members(&self) -> CoordFuture<'_, Vec<Member>> {
        Box::pin(async move {
            let (start, end) = self.keys.members_range();
            let answer: RangeResponse = self
                .gateway
                .call(
                    "/v3/kv/range",
                    &RangeRequest {
                        key: api::Bytes(start),
                        range_end: Some(api::Bytes(end)),
                    },
                )
                .await?;
            let mut members = answer
                .kvs
                .iter()
                .map(|kv| {
                    record::decode::<Member>(RecordKind::Member, &kv.value.0).map_err(|source| {
                        CoordinationError::Corrupt {
                            what: format!("member at {}", String::from_utf8_lossy(&kv.key.0)),
                            source,
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            members.sort_by(|a, b| a.node.cmp(&b.node));
            Ok(members)
        })
    }

    fn campaign<'a>(&'a self, membership: &'a Membership) -> CoordFuture<'a, Leadership> {
        Box::pin(async move {
            let key = self.keys.leader();
            let value = record::encode(RecordKind::Leader, membership.member());
            loop {
                if membership.is_lost() {
                    return Err(CoordinationError::LeaseExpired {
                        node: membership.node().clone(),
                    });
                }
                let answer = self
                    .txn(TxnRequest {
                        compare: vec![Compare::created_at(&key, 0)],
                        success: vec![RequestOp::put(&key, value.clone(), membership.lease())],
                        failure: vec![RequestOp::get(&key)],
                    })
                    .await;
                let answer = match answer {
                    Ok(answer) => answer,
                    // A put bound to a lease that no longer exists.
                    Err(CoordinationError::Refused { status: 404, .. }) => {
                        return Err(CoordinationError::LeaseExpired {
                            node: membership.node().clone(),
                        })
                    }
                    Err(e) => return Err(e),
                };
                if answer.succeeded {
                    // The transaction's only write created the key: its revision is
                    // the key's create revision.
                    return Ok(Leadership::new(
                        membership.member().clone(),
                        membership.lease(),
                        revision(answer.header.revision.0),
                    ));
                }
                if let Some(current) = answer.range(0).first() {
                    if current.lease.0 == membership.lease() {
                        return Ok(Leadership::new(
                            membership.member().clone(),
                            membership.lease(),
                            revision(current.create_revision.0),
                        ));
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(self.poll_interval) => {}
                    () = membership.lost() => {}
                }
            }
        })
    }

    fn leader(&self) -> CoordFuture<'_, Option<Leader>> {
        Box::pin(async move {
            self.get(&self.keys.leader())
                .await?
                .map(|kv| Self::decode_leader(&kv))
                .transpose()
        })
    }

    fn resign(&self, leadership: Leadership) -> CoordFuture<'_, ()> {
        Box::pin(async move {
            let key = self.keys.leader();
            let revision = i64::try_from(leadership.revision()).unwrap_or(i64::MAX);
            // Deletes the key only if it is still this leadership's.
            self.txn(TxnRequest {
                compare: vec![Compare::created_at(&key, revision)],
                success: vec![RequestOp::delete(&key)],
                failure: vec![],
            })
            .await?;
            Ok(())
        })
    }

    fn ring(&self) -> CoordFuture<'_, Option<Ring>> {
        Box::pin(async move {
            self.get(&self.keys.ring())
                .await?
                .map(|kv| Self::decode_ring(&kv))
                .transpose()
        })
    }

    fn propose_ring<'a>(
        &'a self,
        ring: Ring,
        expected_generation: u64,
        leadership: &'a Leadership,
    ) -> CoordFuture<'a, ()> {
        Box::pin(async move {
            check_proposal(&ring, expected_generation)?;
            let key = self.keys.ring();
            let expected = i64::try_from(expected_generation).map_err(|_| {
                CoordinationError::Invalid(format!("generation {expected_generation} is too large"))
            })?;
            let condition = Compare::version_is(&key, expected);
            let Some(found) = self
                .put_as_leader(leadership, condition, &key, ring.encode())
                .await?
            else {
                return Ok(());
            };
            let current = match &found {
                Some(kv) => Self::decode_ring(kv)?.generation(),
                None => 0,
            };
            Err(CoordinationError::StaleGeneration {
                expected: expected_generation,
                current,
            })
        })
    }

    fn last_snapshot<'a>(&'a self, job: &'a str) -> CoordFuture<'a, Option<u64>> {
        Box::pin(async move {
            let kv = self.get(&self.keys.snapshot(job)).await?;
            Self::decode_pointer(job, kv.as_ref())
        })
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
            let pointer = self.keys.snapshot(job);
            let previous = match expected_previous {
                None => Compare::created_at(&pointer, 0),
                Some(previous) => Compare::value_is(
                    &pointer,
                    record::encode(RecordKind::SnapshotPointer, &previous),
                ),
            };
            let value = record::encode(RecordKind::SnapshotPointer, &epoch);
            let Some(found) = self
                .put_as_leader(leadership, previous, &pointer, value)
                .await?
            else {
                return Ok(());
            };
            Err(CoordinationError::SnapshotConflict {
                job: job.to_string(),
                expected: expected_previous,
                found: Self::decode_pointer(job, found.as_ref())?,
            })
        })
    }
}
