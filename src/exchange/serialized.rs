//! A channel that sends every batch and marker through the wire codec before it
//! reaches the receiver's mailbox: the network channel's behaviour, on one node.

use weir_actors::channel::SendFuture;
use weir_actors::{Channel, Mailbox, MailboxClosed, Payload, TrySendError};

use super::{codec, Data};

/// Encodes each payload into a frame and decodes it again, then hands it to the
/// receiver's mailbox (with its backpressure).
pub struct SerializedChannel<T: Send + 'static> {
    mailbox: Mailbox<T>,
}

impl<T: Send + 'static> SerializedChannel<T> {
    /// A channel to `mailbox`.
    pub fn new(mailbox: Mailbox<T>) -> Self {
        SerializedChannel { mailbox }
    }
}

/// The payload after a trip through the codec. A record that does not survive it
/// (a bug of its type's serde implementation) is logged with the reason, and the
/// channel reports itself closed, which fails the sending actor and so the job.
fn round_trip<T: Data>(payload: Payload<T>) -> Result<Payload<T>, MailboxClosed> {
    codec::encode(&payload)
        .and_then(|frame| codec::decode::<T>(&frame))
        .map_err(|e| {
            tracing::error!(record_type = std::any::type_name::<T>(), error = %e,
                "a record does not cross the exchange's codec");
            MailboxClosed
        })
}

impl<T: Data> Channel<T> for SerializedChannel<T> {
    fn try_send(&self, from: u32, payload: Payload<T>) -> Result<(), TrySendError<T>> {
        // Encoded before the attempt: a full channel hands the (decoded) payload
        // back, and the later send encodes it again. At most twice per payload,
        // and only in this checking mode.
        let payload = round_trip(payload).map_err(|_| TrySendError::Closed)?;
        self.mailbox.try_send(from, payload)
    }

    fn send(&self, from: u32, payload: Payload<T>) -> SendFuture {
        let mailbox = self.mailbox.clone();
        let payload = round_trip(payload);
        Box::pin(async move { mailbox.send(from, payload?).await })
    }
}
