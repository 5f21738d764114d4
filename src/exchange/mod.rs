//! The exchange: how records cross from the partitions of one stage to those of the
//! next (by key, forward, rebalance or broadcast), through the kernel's channel
//! trait ([`weir_actors::Channel`]).
//!
//! Everything that crosses an exchange is [`Data`]: it has a serde codec, so that a
//! channel may carry it to another node. On one node the channel is the receiver's
//! mailbox and records travel as Rust values; [`ExchangeMode::Serialized`] sends
//! every batch and marker through the wire codec ([`codec`]) instead, as the
//! cluster's network channel will, so a job can be checked for the cluster on one
//! machine.

pub mod codec;
pub mod serialized;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_actors::{Mailbox, Sender};

/// What may cross an exchange: encodable and decodable (serde), sendable between
/// threads. Implemented for every such type.
pub trait Data: Serialize + DeserializeOwned + Send + Unpin + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Unpin + 'static> Data for T {}

/// How records cross the exchanges of a node's jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExchangeMode {
    /// As Rust values, through the receivers' mailboxes.
    #[default]
    Local,
    /// Encoded into wire frames and decoded again on the way, as between nodes.
    Serialized,
}

/// The channels a sending stage uses to reach `mailboxes`, as `mode` says.
pub fn senders<W: Data>(mailboxes: Vec<Mailbox<W>>, mode: ExchangeMode) -> Vec<Sender<W>> {
    match mode {
        ExchangeMode::Local => weir_actors::channel::local(mailboxes),
        ExchangeMode::Serialized => mailboxes
            .into_iter()
            .map(|m| std::sync::Arc::new(serialized::SerializedChannel::new(m)) as Sender<W>)
            .collect(),
    }
}
