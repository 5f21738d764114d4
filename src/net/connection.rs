//! One authenticated, multiplexed connection between two nodes.
//!
//! An [`Endpoint`] dials ([`Endpoint::connect`]) or accepts ([`Listener::accept`]);
//! both run the handshake (Hello, Auth: see [`super::auth`]) before anything else.
//! A [`Connection`] then runs two tasks on the tokio runtime it was made on: a writer
//! that drains one queue of frames into the socket (sending a heartbeat when idle),
//! and a reader that dispatches incoming frames to channels: data to a channel's
//! delivery task, credits to its sender.
//!
//! The first error either task meets (a socket error, a damaged frame, a protocol
//! violation, a goodbye, silence past the idle timeout) fails the connection: every
//! channel on it fails with that error, and waiting senders wake up. A connection is
//! never repaired; the job restarts and dials a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, watch};

use super::auth::{self, Role};
use super::channel::deliver;
use super::error::NetError;
use super::flow::{Inbound, InboundStats, Outbound, OutboundStats, Pushed};
use super::frame::{self, ChannelId, Encoded, Frame, Hello, HEADER_LEN};
use super::NetConfig;
use crate::exchange::Data;
use weir_actors::Mailbox;

/// A node's side of the data plane: its identity, the cluster secret and the limits.
#[derive(Debug, Clone)]
pub struct Endpoint {
    config: Arc<NetConfig>,
}

impl Endpoint {
    /// An endpoint with `config`, once it is checked.
    pub fn new(config: NetConfig) -> Result<Self, NetError> {
        config.validate()?;
        Ok(Endpoint {
            config: Arc::new(config),
        })
    }

    /// Listens on `addr` for connections from other nodes.
    pub async fn listen(&self, addr: impl ToSocketAddrs) -> Result<Listener, NetError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NetError::Io {
                context: "binding the data plane's listener",
                peer: "-".into(),
                source,
            })?;
        Ok(Listener {
            listener,
            config: self.config.clone(),
        })
    }

    /// Dials the node listening at `addr` and runs the handshake.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connection, NetError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| NetError::Io {
                context: "connecting",
                peer: addr.to_string(),
                source,
            })?;
        Connection::establish(stream, addr, Role::Dialer, self.config.clone()).await
    }
}

/// Accepts connections from other nodes.
pub struct Listener {
    listener: TcpListener,
    config: Arc<NetConfig>,
}

impl Listener {
    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.listener.local_addr().map_err(|source| NetError::Io {
            context: "reading the listener's address",
            peer: "-".into(),
            source,
        })
    }

    /// Accepts the next connection and runs the handshake. A peer that fails the
    /// handshake is an error here; the caller decides whether to accept again.
    pub async fn accept(&self) -> Result<Connection, NetError> {
        let (stream, addr) = self
            .listener
            .accept()
            .await
            .map_err(|source| NetError::Io {
                context: "accepting a connection",
                peer: "-".into(),
                source,
            })?;
        Connection::establish(stream, addr, Role::Listener, self.config.clone()).await
    }
}

/// An item of the writer's queue.
enum Outgoing {
    Frame(Encoded),
    /// Write everything before this, then close the socket (a local close).
    Close,
}

/// The channels of a connection and its fate.
#[derive(Default)]
struct State {
    outbound: HashMap<ChannelId, Arc<Outbound>>,
    inbound: HashMap<ChannelId, Inbound>,
    /// The first error the connection met; set once.
    failure: Option<String>,
}

/// What the connection's handles and tasks share.
pub(crate) struct Shared {
    /// "node X at address", for errors.
    peer: String,
    peer_node: String,
    config: Arc<NetConfig>,
    runtime: tokio::runtime::Handle,
    writer: mpsc::UnboundedSender<Outgoing>,
    state: Mutex<State>,
    /// Set when the tasks must stop.
    stop: watch::Sender<bool>,
}

/// One authenticated connection to another node, shared by every channel between
/// the two. Cheap to clone; every clone is the same connection.
///
/// A connection lives until it fails or [`Connection::close`] is called.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl Connection {
    async fn establish(
        mut stream: TcpStream,
        addr: SocketAddr,
        role: Role,
        config: Arc<NetConfig>,
    ) -> Result<Connection, NetError> {
        let peer_addr = addr.to_string();
        // Frames are written whole and flushed; Nagle's delay would only add latency.
        stream.set_nodelay(true).map_err(|source| NetError::Io {
            context: "configuring the socket",
            peer: peer_addr.clone(),
            source,
        })?;
        let hello = tokio::time::timeout(
            config.handshake_timeout,
            handshake(&mut stream, &config, role, &peer_addr),
        )
        .await
        .map_err(|_| NetError::Handshake {
            peer: peer_addr.clone(),
            reason: format!(
                "no complete handshake within {:?}",
                config.handshake_timeout
            ),
        })??;
        let peer = format!("node {} at {peer_addr}", hello.node);
        tracing::info!(%peer, ?role, "data plane connection established");
        let (read, write) = stream.into_split();
        let (writer, queue) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            peer,
            peer_node: hello.node,
            config,
            runtime: tokio::runtime::Handle::current(),
            writer,
            state: Mutex::new(State::default()),
            stop,
        });
        tokio::spawn(read_loop(shared.clone(), BufReader::new(read)));
        tokio::spawn(write_loop(shared.clone(), BufWriter::new(write), queue));
        Ok(Connection { shared })
    }

    /// The peer's node id, as it stated it in the (authenticated) handshake.
    pub fn peer_node(&self) -> &str {
        &self.shared.peer_node
    }

    /// Delivers channel `id` into `mailbox` on this node (as input `id.from`): each
    /// payload that arrives is decoded and sent into the mailbox, and a credit goes
    /// back to the sender once the mailbox has accepted it, so a full mailbox stops
    /// the sender on the other node. Grants the first window of credits now.
    ///
    /// A payload that does not decode as `T`, or a mailbox that closes, closes the
    /// channel: its sender's next send fails with the reason.
    pub fn receive<T: Data>(&self, id: ChannelId, mailbox: Mailbox<T>) -> Result<(), NetError> {
        let window = self.shared.config.window;
        let (inbound, queue, counts) = Inbound::new(window);
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.failure {
                return Err(self.shared.failed(reason));
            }
            if state.inbound.contains_key(&id) {
                return Err(NetError::Config(format!(
                    "channel {id} is already received on the connection to {}",
                    self.shared.peer
                )));
            }
            state.inbound.insert(id, inbound);
        }
        self.shared
            .runtime
            .spawn(deliver(self.shared.clone(), id, queue, counts, mailbox));
        self.shared.send(Frame::Credit {
            channel: id,
            n: window,
        })
    }

    /// Closes the connection: says goodbye with `reason` and fails every channel on
    /// it, on both nodes.
    pub fn close(&self, reason: &str) {
        self.shared
            .fail_with(format!("closed by this node: {reason}"), reason);
    }

    /// The error the connection failed with, if it has.
    pub fn failure(&self) -> Option<NetError> {
        let state = self.shared.lock();
        state.failure.as_ref().map(|r| self.shared.failed(r))
    }

    /// Waits until the connection has failed (or was closed), and says why.
    pub async fn closed(&self) -> NetError {
        let mut stop = self.shared.stop.subscribe();
        let _ = stop.wait_for(|stopped| *stopped).await;
        self.failure()
            .unwrap_or_else(|| self.shared.failed("stopped"))
    }

    /// The sending side's counters of channel `id`, if it has been used or granted
    /// credit.
    pub fn outbound_stats(&self, id: ChannelId) -> Option<OutboundStats> {
        self.shared.lock().outbound.get(&id).map(|o| o.stats())
    }

    /// The receiving side's counters of channel `id`, if it is received here.
    pub fn inbound_stats(&self, id: ChannelId) -> Option<InboundStats> {
        self.shared.lock().inbound.get(&id).map(|i| i.stats())
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding it; if some did, the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest frame body this connection sends.
    pub fn max_frame(&self) -> u32 {
        self.config.max_frame
    }

    /// The error every channel fails with once the connection failed with `reason`.
    pub fn failed(&self, reason: &str) -> NetError {
        NetError::ConnectionFailed {
            peer: self.peer.clone(),
            reason: reason.to_string(),
        }
    }

    /// The sending state of channel `id` (made on first use), or the connection's
    /// failure.
    pub fn outbound(&self, id: ChannelId) -> Result<Arc<Outbound>, NetError> {
        let mut state = self.lock();
        if let Some(reason) = &state.failure {
            return Err(self.failed(reason));
        }
        Ok(state
            .outbound
            .entry(id)
            .or_insert_with(|| Arc::new(Outbound::new()))
            .clone())
    }

    /// Why sends on `out` fail: its channel was closed, or the connection failed.
    pub fn send_error(&self, id: ChannelId, out: &Outbound) -> NetError {
        if let Some(reason) = out.closed_reason() {
            return NetError::ChannelClosed {
                channel: id,
                peer: self.peer.clone(),
                reason,
            };
        }
        let state = self.lock();
        self.failed(state.failure.as_deref().unwrap_or("the connection stopped"))
    }

    /// Queues `frame` for the writer.
    pub fn send(&self, frame: Frame) -> Result<(), NetError> {
        self.writer
            .send(Outgoing::Frame(frame.encode()))
            .map_err(|_| {
                let state = self.lock();
                self.failed(state.failure.as_deref().unwrap_or("its writer has stopped"))
            })
    }

    /// A channel's delivery ended on this side (`reason`): tells the sender.
    pub fn close_inbound(&self, id: ChannelId, reason: String) {
        let known = self.lock().inbound.remove(&id).is_some();
        if known {
            tracing::warn!(peer = %self.peer, channel = %id, %reason, "closing a received channel");
            let _ = self.send(Frame::ChannelClosed {
                channel: id,
                reason,
            });
        }
    }

    /// A receiver that waits until the tasks must stop.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Fails the connection with `reason` (the first reason wins), telling the peer.
    fn fail(&self, reason: String) {
        let goodbye = reason.clone();
        self.fail_with(reason, &goodbye);
    }

    /// Records the failure `reason`, fails every channel, queues a goodbye saying
    /// `goodbye` (the writer has [`GOODBYE_GRACE`] to send it) and stops the tasks.
    fn fail_with(&self, reason: String, goodbye: &str) {
        {
            let mut state = self.lock();
            if state.failure.is_some() {
                return;
            }
            for out in state.outbound.values() {
                out.credits.close();
            }
            // Dropping the queues ends the delivery tasks.
            state.inbound.clear();
            state.failure = Some(reason.clone());
        }
        tracing::warn!(peer = %self.peer, %reason, "data plane connection failed");
        let goodbye = Frame::Goodbye {
            reason: goodbye.to_string(),
        };
        let _ = self.writer.send(Outgoing::Frame(goodbye.encode()));
        let _ = self.writer.send(Outgoing::Close);
        self.stop.send_replace(true);
    }

    /// Dispatches one frame; an error is the reason the connection fails.
    fn on_frame(&self, frame: Frame) -> Result<(), String> {
        let protocol = |reason: String| {
            NetError::Protocol {
                peer: self.peer.clone(),
                reason,
            }
            .to_string()
        };
        match frame {
            Frame::Data { channel, payload } => {
                let state = self.lock();
                match state.inbound.get(&channel) {
                    Some(inbound) => inbound
                        .push(channel, payload)
                        .map(|_: Pushed| ())
                        .map_err(protocol),
                    // Not (or no longer) received here: the receiver closed it and
                    // told the sender, and this payload was already in flight.
                    None => Ok(()),
                }
            }
            Frame::Credit { channel, n } => {
                let out = {
                    let mut state = self.lock();
                    state
                        .outbound
                        .entry(channel)
                        .or_insert_with(|| Arc::new(Outbound::new()))
                        .clone()
                };
                out.grant(n)
                    .map_err(|e| protocol(format!("on channel {channel}: {e}")))
            }
            Frame::ChannelClosed { channel, reason } => {
                let mut state = self.lock();
                // The sender of a channel received here is done: what it sent is
                // still delivered, then its delivery task ends.
                if state.inbound.remove(&channel).is_none() {
                    // The receiver of a channel sent from here closed it, perhaps
                    // before this side first used it.
                    state
                        .outbound
                        .entry(channel)
                        .or_insert_with(|| Arc::new(Outbound::new()))
                        .close(reason);
                }
                Ok(())
            }
            Frame::Heartbeat => Ok(()),
            Frame::Goodbye { reason } => Err(format!("the peer closed the connection: {reason}")),
            Frame::Hello(_) | Frame::Auth { .. } => Err(protocol(format!(
                "a {:?} frame after the handshake",
                frame.kind()
            ))),
        }
    }
}

/// Reads frames and dispatches them until the connection fails.
async fn read_loop(shared: Arc<Shared>, mut reader: BufReader<OwnedReadHalf>) {
    let mut stop = shared.stopped();
    let idle = shared.config.idle_timeout;
    let max = shared.config.max_frame;
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            next = tokio::time::timeout(idle, read_frame(&mut reader, max, &shared.peer)) => next,
        };
        let frame = match next {
            Err(_) => return shared.fail(format!("nothing arrived from the peer for {idle:?}")),
            Ok(Err(e)) => return shared.fail(e.to_string()),
            Ok(Ok(None)) => {
                return shared.fail("the peer closed the connection without a goodbye".into())
            }
            Ok(Ok(Some(frame))) => frame,
        };
        if let Err(reason) = shared.on_frame(frame) {
            return shared.fail(reason);
        }
    }
}

/// How long the writer may still take, once the connection has failed or been
/// closed, to send what was queued before (the goodbye last).
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// Writes queued frames, and a heartbeat when the queue has been quiet, until the
/// connection fails or is closed; then sends what was queued up to the goodbye,
/// within [`GOODBYE_GRACE`].
async fn write_loop(
    shared: Arc<Shared>,
    mut writer: BufWriter<OwnedWriteHalf>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) {
    let stop = shared.stopped();
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    loop {
        let first = tokio::select! {
            biased;
            item = queue.recv() => item,
            _ = heartbeat.tick() => Some(Outgoing::Frame(Frame::Heartbeat.encode())),
        };
        let Some(first) = first else { return };
        let mut stop = stop.clone();
        let give_up = async move {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(GOODBYE_GRACE).await;
        };
        let written = tokio::select! {
            written = write_batch(&mut writer, first, &mut queue) => written,
            _ = give_up => return,
        };
        match written {
            Ok(true) => {}
            Ok(false) => {
                // The goodbye is out: close the socket.
                let _ = tokio::time::timeout(GOODBYE_GRACE, writer.shutdown()).await;
                return;
            }
            Err(source) => {
                return shared.fail(
                    NetError::Io {
                        context: "writing to the peer",
                        peer: shared.peer.clone(),
                        source,
                    }
                    .to_string(),
                )
            }
        }
    }
}

/// Writes `first` and whatever else is queued, then flushes. Returns `Ok(false)` at a
/// close request.
async fn write_batch(
    writer: &mut BufWriter<OwnedWriteHalf>,
    first: Outgoing,
    queue: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> std::io::Result<bool> {
    let mut next = Some(first);
    while let Some(item) = next {
        match item {
            Outgoing::Frame(frame) => write_frame(writer, &frame).await?,
            Outgoing::Close => {
                writer.flush().await?;
                return Ok(false);
            }
        }
        next = queue.try_recv().ok();
    }
    writer.flush().await?;
    Ok(true)
}

async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Encoded,
) -> std::io::Result<()> {
    writer.write_all(&frame.header).await?;
    writer.write_all(&frame.body).await
}

/// Reads one frame; `None` at a clean end of stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_body: u32,
    peer: &str,
) -> Result<Option<Frame>, NetError> {
    let io = |context, source| NetError::Io {
        context,
        peer: peer.to_string(),
        source,
    };
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = reader
            .read(&mut header[got..])
            .await
            .map_err(|e| io("reading from the peer", e))?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io(
                "reading from the peer",
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection closed in the middle of a frame header",
                ),
            ));
        }
        got += n;
    }
    let bad = |source| NetError::Frame {
        peer: peer.to_string(),
        source,
    };
    let header = frame::decode_header(&header, max_body).map_err(bad)?;
    let mut body = vec![0u8; header.len as usize];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| io("reading a frame body from the peer", e))?;
    frame::decode_body(&header, body).map(Some).map_err(bad)
}

/// The largest frame body read before the peer is authenticated: a Hello with two
/// names of at most 65,535 bytes and a nonce fits, and a stranger cannot make this
/// node allocate more.
const HANDSHAKE_MAX_FRAME: u32 = 2 * (2 + u16::MAX as u32) + frame::NONCE_LEN as u32;

/// Runs the handshake on a fresh stream; returns the peer's (authenticated) hello.
async fn handshake(
    stream: &mut TcpStream,
    config: &NetConfig,
    role: Role,
    peer: &str,
) -> Result<Hello, NetError> {
    let failed = |reason: String| NetError::Handshake {
        peer: peer.to_string(),
        reason,
    };
    let io = |source| NetError::Io {
        context: "during the handshake",
        peer: peer.to_string(),
        source,
    };
    let ours = Hello {
        node: config.node.clone(),
        cluster: config.cluster.clone(),
        nonce: auth::nonce().map_err(|e| failed(format!("no random nonce: {e}")))?,
    };
    write_frame(stream, &Frame::Hello(ours.clone()).encode())
        .await
        .map_err(io)?;
    let theirs = match read_frame(stream, HANDSHAKE_MAX_FRAME, peer).await? {
        Some(Frame::Hello(hello)) => hello,
        Some(Frame::Goodbye { reason }) => {
            return Err(failed(format!("the peer refused: {reason}")))
        }
        Some(other) => {
            return Err(failed(format!(
                "expected a Hello frame, got {:?}",
                other.kind()
            )))
        }
        None => return Err(failed("the peer closed the connection".into())),
    };
    if theirs.cluster != config.cluster {
        let reason = format!(
            "node {} belongs to cluster {:?}, this node {} to cluster {:?}",
            theirs.node, theirs.cluster, config.node, config.cluster
        );
        refuse(stream, &reason).await;
        return Err(failed(reason));
    }
    if theirs.nonce == ours.nonce {
        let reason = "the peer echoed this node's challenge".to_string();
        refuse(stream, &reason).await;
        return Err(failed(reason));
    }
    let (dialer, listener, peer_role) = match role {
        Role::Dialer => (&ours, &theirs, Role::Listener),
        Role::Listener => (&theirs, &ours, Role::Dialer),
    };
    let proof = auth::proof(&config.secret, role, dialer, listener);
    write_frame(stream, &Frame::Auth { proof }.encode())
        .await
        .map_err(io)?;
    let their_proof = match read_frame(stream, HANDSHAKE_MAX_FRAME, peer).await? {
        Some(Frame::Auth { proof }) => proof,
        Some(Frame::Goodbye { reason }) => {
            return Err(failed(format!("the peer refused: {reason}")))
        }
        Some(other) => {
            return Err(failed(format!(
                "expected an Auth frame, got {:?}",
                other.kind()
            )))
        }
        None => return Err(failed("the peer closed the connection".into())),
    };
    if !auth::verify(&config.secret, peer_role, dialer, listener, &their_proof) {
        let reason = format!(
            "node {} did not prove the cluster secret (authentication failed: do the two nodes have the same secret?)",
            theirs.node
        );
        refuse(stream, &reason).await;
        return Err(failed(reason));
    }
    Ok(theirs)
}

/// Tells the peer why the handshake is refused (best effort: it may be gone).
async fn refuse(stream: &mut TcpStream, reason: &str) {
    let goodbye = Frame::Goodbye {
        reason: reason.to_string(),
    }
    .encode();
    let _ = write_frame(stream, &goodbye).await;
    let _ = stream.flush().await;
}

/// How long a test may wait for a condition; shared by this module's tests.
#[cfg(test)]
const TEST_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node: &str, secret: &[u8]) -> NetConfig {
        NetConfig::new(node, "test", secret.to_vec())
    }

    async fn pair(
        a: NetConfig,
        b: NetConfig,
    ) -> (Result<Connection, NetError>, Result<Connection, NetError>) {
        let listener = Endpoint::new(b)
            .unwrap()
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let dialer = Endpoint::new(a).unwrap();
        tokio::join!(dialer.connect(addr), listener.accept())
    }

    #[tokio::test]
    async fn the_handshake_names_each_peer() {
        let (a, b) = pair(config("a", b"s3cret"), config("b", b"s3cret")).await;
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.peer_node(), "b");
        assert_eq!(b.peer_node(), "a");
        a.close("test over");
        let err = tokio::time::timeout(TEST_WAIT, b.closed()).await.unwrap();
        assert!(err.to_string().contains("test over"), "{err}");
    }

    #[tokio::test]
    async fn a_peer_of_another_cluster_is_refused_on_both_sides() {
        let mut other = config("b", b"s3cret");
        other.cluster = "elsewhere".into();
        let (a, b) = pair(config("a", b"s3cret"), other).await;
        for err in [a.unwrap_err(), b.unwrap_err()] {
            assert!(err.to_string().contains("cluster"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_silent_peer_fails_the_handshake_in_time() {
        let mut cfg = config("a", b"s");
        cfg.handshake_timeout = Duration::from_millis(200);
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let err = Endpoint::new(cfg).unwrap().connect(addr).await.unwrap_err();
        assert!(err.to_string().contains("no complete handshake"), "{err}");
    }

    #[tokio::test]
    async fn heartbeats_keep_an_idle_connection_alive_and_a_silent_peer_fails_it() {
        let lively = |node: &str, idle| {
            let mut cfg = config(node, b"s");
            cfg.heartbeat = Duration::from_millis(20);
            cfg.idle_timeout = Duration::from_millis(idle);
            cfg
        };
        // A pair that says nothing but heartbeats, idle-timing out after 500 ms.
        let (a, b) = pair(lively("a", 500), lively("b", 500)).await;
        let (a, b) = (a.unwrap(), b.unwrap());

        // A peer that completes the handshake by hand and then stays silent.
        let listener = Endpoint::new(lively("c", 1500))
            .unwrap()
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let silent_cfg = config("silent", b"s");
        let silent = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            handshake(&mut stream, &silent_cfg, Role::Dialer, "c")
                .await
                .unwrap();
            stream
        };
        let (accepted, _silent_stream) = tokio::join!(listener.accept(), silent);
        let accepted = accepted.unwrap();
        let err = tokio::time::timeout(TEST_WAIT, accepted.closed())
            .await
            .unwrap();
        assert!(
            err.to_string().contains("nothing arrived from the peer"),
            "{err}"
        );
        // By now the idle pair has been quiet for three of its idle timeouts.
        assert!(a.failure().is_none(), "{:?}", a.failure());
        assert!(b.failure().is_none(), "{:?}", b.failure());
    }

    #[tokio::test]
    async fn a_frame_out_of_place_is_a_protocol_error() {
        let listener = Endpoint::new(config("b", b"s"))
            .unwrap()
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let raw_cfg = config("raw", b"s");
        let raw = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let hello = handshake(&mut stream, &raw_cfg, Role::Dialer, "b")
                .await
                .unwrap();
            write_frame(&mut stream, &Frame::Hello(hello).encode())
                .await
                .unwrap();
            stream
        };
        let (accepted, _raw) = tokio::join!(listener.accept(), raw);
        let err = tokio::time::timeout(TEST_WAIT, accepted.unwrap().closed())
            .await
            .unwrap();
        assert!(
            err.to_string()
                .contains("protocol error from node raw at 127.0.0.1"),
            "{err}"
        );
        assert!(
            err.to_string().contains("Hello frame after the handshake"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_configuration_is_refused() {
        assert!(Endpoint::new(config("a", b"")).is_err());
        let mut cfg = config("a", b"s");
        cfg.window = 0;
        assert!(Endpoint::new(cfg).is_err());
    }
}
