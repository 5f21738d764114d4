//! Who is in the cluster: a node's id, and a member as the coordinator lists it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The name of one `weir node` process in the cluster, unique within it (a host name,
/// or a name from the node's configuration). The ring assigns key partitions to node
/// ids; membership and leadership are held by node id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(String);

impl NodeId {
    /// A node id from its name.
    pub fn new(name: impl Into<String>) -> Self {
        NodeId(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> Self {
        NodeId::new(name)
    }
}

/// A live member of the cluster: a node that joined and whose lease has not expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id.
    pub node: NodeId,
    /// Where other nodes reach it (its data-plane address, `host:port`).
    pub address: String,
}
