//! The network channel: the kernel's [`Channel`] to an actor on another node, and
//! the task that delivers its payloads there.

use std::any::type_name;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, TryAcquireError};
use weir_actors::channel::SendFuture;
use weir_actors::{Channel, Mailbox, MailboxClosed, Payload, TrySendError};

use super::connection::{Connection, Shared};
use super::error::NetError;
use super::flow::{InboundCounts, Outbound};
use super::frame::{ChannelId, Frame};
use crate::exchange::{codec, Data};

/// The channels from this node's partitions of one stage to partition `to` of the
/// next stage, on another node, over `connection`.
///
/// Like the mailbox it stands for, one `NetChannel` is shared by every sending
/// partition: the `from` of each send picks the logical channel
/// `ChannelId { job, edge, from, to }`, with credits of its own. It keeps the
/// mailbox's contract: one sender's payloads arrive in the order sent (each is put
/// on the wire in order, on one TCP stream); a channel out of credit makes its
/// sender wait (`send`) or hands the payload back (`try_send`); and a channel whose
/// connection failed, or whose receiver closed it, fails the send.
///
/// The kernel's trait can only say "closed"; the reason is logged, and
/// [`NetChannel::send_payload`] returns it as a [`NetError`].
pub struct NetChannel<T> {
    connection: Connection,
    job: u64,
    edge: u32,
    to: u32,
    _records: PhantomData<fn(T)>,
}

impl<T: Data> NetChannel<T> {
    /// The channels of edge `edge` of job `job` to receiving partition `to`, whose
    /// node is at the other end of `connection`.
    pub fn new(connection: &Connection, job: u64, edge: u32, to: u32) -> Self {
        NetChannel {
            connection: connection.clone(),
            job,
            edge,
            to,
            _records: PhantomData,
        }
    }

    /// The logical channel a send from partition `from` travels on.
    pub fn id(&self, from: u32) -> ChannelId {
        ChannelId::new(self.job, self.edge, from, self.to)
    }

    /// Sends `payload` from partition `from`, waiting for a credit; resolves to the
    /// time spent waiting, or to the reason the channel cannot send.
    pub fn send_payload(
        &self,
        from: u32,
        payload: Payload<T>,
    ) -> impl std::future::Future<Output = Result<Duration, NetError>> + Send + 'static {
        send_on(self.connection.shared().clone(), self.id(from), payload)
    }
}

/// Logs why a send failed, for the kernel's reason-less error.
fn failed(channel: ChannelId, error: &NetError) {
    tracing::warn!(%channel, %error, "a network channel cannot send");
}

/// Encodes `payload` and queues it for the wire; the caller holds a credit.
fn put<T: Data>(
    shared: &Shared,
    id: ChannelId,
    out: &Outbound,
    payload: &Payload<T>,
) -> Result<(), NetError> {
    let encode = |reason: String| NetError::Encode {
        channel: id,
        reason,
    };
    let bytes = codec::encode(payload).map_err(|e| encode(e.to_string()))?;
    if bytes.len() > shared.max_frame() as usize {
        return Err(encode(format!(
            "{} bytes encoded, more than a frame may hold ({}): send smaller batches",
            bytes.len(),
            shared.max_frame()
        )));
    }
    out.spent();
    shared.send(Frame::Data {
        channel: id,
        payload: bytes,
    })
}

async fn send_on<T: Data>(
    shared: Arc<Shared>,
    id: ChannelId,
    payload: Payload<T>,
) -> Result<Duration, NetError> {
    let out = shared.outbound(id)?;
    let waited = match out.credits.try_acquire() {
        Ok(credit) => {
            credit.forget();
            Duration::ZERO
        }
        Err(TryAcquireError::Closed) => return Err(shared.send_error(id, &out)),
        Err(TryAcquireError::NoPermits) => {
            let started = Instant::now();
            out.credits
                .acquire()
                .await
                .map_err(|_| shared.send_error(id, &out))?
                .forget();
            started.elapsed()
        }
    };
    put(&shared, id, &out, &payload)?;
    Ok(waited)
}

impl<T: Data> Channel<T> for NetChannel<T> {
    fn try_send(&self, from: u32, payload: Payload<T>) -> Result<(), TrySendError<T>> {
        let shared = self.connection.shared();
        let id = self.id(from);
        let closed = |e: NetError| {
            failed(id, &e);
            TrySendError::Closed
        };
        let out = shared.outbound(id).map_err(closed)?;
        match out.credits.try_acquire() {
            Ok(credit) => credit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(payload)),
            Err(TryAcquireError::Closed) => return Err(closed(shared.send_error(id, &out))),
        }
        put(shared, id, &out, &payload).map_err(closed)
    }

    fn send(&self, from: u32, payload: Payload<T>) -> SendFuture {
        let id = self.id(from);
        let sending = self.send_payload(from, payload);
        Box::pin(async move {
            sending.await.map_err(|e| {
                failed(id, &e);
                MailboxClosed
            })
        })
    }
}

/// Delivers the payloads of channel `id` that arrive on `queue` into `mailbox`, in
/// order, granting one credit back for each payload the mailbox accepts. Ends when
/// the channel or the connection closes.
pub(crate) async fn deliver<T: Data>(
    shared: Arc<Shared>,
    id: ChannelId,
    mut queue: mpsc::Receiver<Vec<u8>>,
    counts: Arc<InboundCounts>,
    mailbox: Mailbox<T>,
) {
    let mut stop = shared.stopped();
    loop {
        let bytes = tokio::select! {
            bytes = queue.recv() => bytes,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(bytes) = bytes else { return };
        let payload = match codec::decode::<T>(&bytes) {
            Ok(payload) => payload,
            Err(e) => {
                let reason = format!("a payload does not decode as {}: {e}", type_name::<T>());
                return shared.close_inbound(id, reason);
            }
        };
        let accepted = tokio::select! {
            accepted = mailbox.send(id.from, payload) => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        if accepted.is_err() {
            return shared.close_inbound(id, "the receiving actor's mailbox is closed".into());
        }
        counts.delivered();
        if shared.send(Frame::Credit { channel: id, n: 1 }).is_err() {
            return;
        }
    }
}
