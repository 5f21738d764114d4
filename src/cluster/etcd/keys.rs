//! Where the coordinator keeps each thing in etcd, under the cluster's prefix.

/// The key layout under one prefix (see `docs/cluster.md`, "Coordination").
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The layout under `prefix` (a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// `<prefix>/members/<node>`: a member's record, bound to its lease.
    pub fn member(&self, node: &crate::cluster::NodeId) -> Vec<u8> {
        format!("{}/members/{node}", self.prefix).into_bytes()
    }

    /// The range of every member key: `[<prefix>/members/, <prefix>/members0)` (`0`
    /// is the byte after `/`).
    pub fn members_range(&self) -> (Vec<u8>, Vec<u8>) {
        (
            format!("{}/members/", self.prefix).into_bytes(),
            format!("{}/members0", self.prefix).into_bytes(),
        )
    }

    /// `<prefix>/leader`: the leader's record, bound to its lease; its create
    /// revision is the fencing token.
    pub fn leader(&self) -> Vec<u8> {
        format!("{}/leader", self.prefix).into_bytes()
    }

    /// `<prefix>/ring`: the ring; the key's version is the ring's generation.
    pub fn ring(&self) -> Vec<u8> {
        format!("{}/ring", self.prefix).into_bytes()
    }

    /// `<prefix>/jobs/<job>/snapshot`: the epoch of the job's last complete snapshot.
    pub fn snapshot(&self, job: &str) -> Vec<u8> {
        format!("{}/jobs/{job}/snapshot", self.prefix).into_bytes()
    }
}
