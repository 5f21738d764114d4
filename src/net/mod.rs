//! The cluster's network data plane: records and markers between partition actors on
//! different nodes, over one authenticated, multiplexed TCP connection per pair of
//! nodes, with credit-based flow control per channel.
//!
//! - [`frame`]: the versioned, checksummed frames of a connection.
//! - [`auth`]: the challenge-response proof of the shared cluster secret.
//! - [`Endpoint`], [`Listener`], [`Connection`]: dialing, accepting, the handshake,
//!   and the connection's reader and writer tasks.
//! - [`NetChannel`]: the kernel's [`Channel`](weir_actors::Channel) on the sending
//!   node; [`Connection::receive`] delivers a channel into the receiving actor's
//!   mailbox on the other node, granting credit back as the mailbox takes payloads.
//!
//! `docs/cluster.md` ("Data plane") describes the protocol and why it stays bounded.
//! Nothing here knows about jobs or plans: the planner names channels
//! ([`ChannelId`]) and wires them.

pub mod auth;
mod channel;
mod connection;
mod error;
mod flow;
pub mod frame;

use std::fmt;
use std::time::Duration;

pub use channel::NetChannel;
pub use connection::{Connection, Endpoint, Listener};
pub use error::NetError;
pub use flow::{InboundStats, OutboundStats};
pub use frame::ChannelId;

/// How a node takes part in the data plane.
#[derive(Clone)]
pub struct NetConfig {
    /// This node's id, told to peers in the handshake (at most 255 bytes).
    pub node: String,
    /// The cluster's name; a peer of another cluster is refused (at most 255 bytes).
    pub cluster: String,
    /// The shared cluster secret every node proves it knows. Use a long random one.
    pub secret: Vec<u8>,
    /// Credits per channel: how many payloads (batches or markers) a receiver
    /// buffers at most for one channel, and so how many a sender may have in flight.
    pub window: u32,
    /// The largest frame body accepted or sent, in bytes.
    pub max_frame: u32,
    /// How long the handshake may take.
    pub handshake_timeout: Duration,
    /// How often an idle connection sends a heartbeat.
    pub heartbeat: Duration,
    /// A connection on which nothing arrives for this long has failed.
    pub idle_timeout: Duration,
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("node", &self.node)
            .field("cluster", &self.cluster)
            .field("secret", &"<redacted>")
            .field("window", &self.window)
            .field("max_frame", &self.max_frame)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl NetConfig {
    /// Node `node` of cluster `cluster` with secret `secret`, and default limits:
    /// 8 credits per channel, 64 MiB frames, a 10 s handshake, a heartbeat every
    /// 2 s and 10 s of silence to fail a connection.
    pub fn new(
        node: impl Into<String>,
        cluster: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Self {
        NetConfig {
            node: node.into(),
            cluster: cluster.into(),
            secret: secret.into(),
            window: 8,
            max_frame: 64 << 20,
            handshake_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
        }
    }

    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |what: String| Err(NetError::Config(what));
        if self.secret.is_empty() {
            return bad("the cluster secret is empty".into());
        }
        for (what, name) in [("node id", &self.node), ("cluster name", &self.cluster)] {
            if name.len() > frame::MAX_NAME_LEN {
                return bad(format!(
                    "the {what} is {} bytes, longer than {}",
                    name.len(),
                    frame::MAX_NAME_LEN
                ));
            }
        }
        if self.window == 0 || self.window > flow::MAX_WINDOW {
            return bad(format!(
                "window {} is not within 1..={}",
                self.window,
                flow::MAX_WINDOW
            ));
        }
        if self.max_frame < 1024 {
            return bad(format!("max_frame {} is below 1024 bytes", self.max_frame));
        }
        if self.heartbeat.is_zero() || self.idle_timeout <= self.heartbeat {
            return bad(format!(
                "idle_timeout {:?} must exceed a non-zero heartbeat {:?}",
                self.idle_timeout, self.heartbeat
            ));
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout is zero".into());
        }
        Ok(())
    }
}
