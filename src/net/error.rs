//! The data plane's errors.

use super::frame::{ChannelId, FrameError};

/// What went wrong on a connection or one of its channels.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A socket operation failed.
    #[error("{context} ({peer}): {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The other end's address or node id.
        peer: String,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
    /// The peer sent bytes that are not a valid frame (damaged, or not weir).
    #[error("bad frame from {peer}: {source}")]
    Frame {
        /// The other end.
        peer: String,
        /// What is wrong with the frame.
        #[source]
        source: FrameError,
    },
    /// The handshake did not complete: other cluster, wrong secret, silence.
    #[error("handshake with {peer} failed: {reason}")]
    Handshake {
        /// The other end.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The peer broke the protocol (a frame out of place, credit overrun).
    #[error("protocol error from {peer}: {reason}")]
    Protocol {
        /// The other end.
        peer: String,
        /// What it did.
        reason: String,
    },
    /// The connection is gone; every channel on it fails with this.
    #[error("connection to {peer} failed: {reason}")]
    ConnectionFailed {
        /// The other end.
        peer: String,
        /// The first error the connection met.
        reason: String,
    },
    /// One channel was closed by one of its ends.
    #[error("channel {channel} to {peer} is closed: {reason}")]
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// The other end.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A payload could not be encoded for the wire (its serde implementation failed,
    /// or it is larger than a frame may be).
    #[error("payload of channel {channel} cannot be sent: {reason}")]
    Encode {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: String,
    },
    /// The configuration cannot work.
    #[error("data plane configuration: {0}")]
    Config(String),
}
