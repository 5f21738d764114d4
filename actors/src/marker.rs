//! Control markers: messages that travel in-band, in the same mailbox and the same
//! order as the data, so that "everything before the marker" is well defined on every
//! channel.

/// A control marker sent by one upstream partition actor to one downstream actor, in
/// the same stream of messages as its record batches.
///
/// Markers never overtake data: a marker sent after a batch is handled after it. This
/// is what later lets epoch markers cut consistent snapshots and watermarks bound event
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Marker {
    /// The sender will send nothing more: its input is exhausted. An actor whose every
    /// input has ended finishes its own work, forwards this marker and stops.
    EndOfInput,
}
