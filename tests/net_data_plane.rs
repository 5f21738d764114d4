//! The cluster's network data plane between two nodes in one process: each node's
//! endpoint runs on a tokio runtime of its own thread, the receiving actors are
//! actix actors behind real kernel mailboxes, and everything travels over TCP on
//! 127.0.0.1 (through a small cutting proxy where a test breaks the connection).

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use common::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use weir::net::{ChannelId, Connection, Endpoint, NetChannel, NetConfig, NetError};
use weir_actors::{
    Channel, Deliver, Mailbox, MailboxGate, Marker, Outbox, Payload, Sender, TrySendError,
};

const JOB: u64 = 42;
const EDGE: u32 = 3;

/// One node: a tokio runtime on a thread of its own, until dropped.
struct Node {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(name: &str) -> Node {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                handle_tx.send(rt.handle().clone()).unwrap();
                let _ = rt.block_on(stopped);
            })
            .unwrap();
        Node {
            handle: handle_rx.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the node's runtime and waits for its result.
    fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the node's task finished")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a receiving actor saw from one input, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Record(u64),
    Mark(Marker),
}

/// Everything one receiving actor saw, by input (`from`).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(u32, Item)>>>);

impl Seen {
    fn from(&self, from: u32) -> Vec<Item> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(f, _)| *f == from)
            .map(|(_, i)| i.clone())
            .collect()
    }
    fn ended(&self, from: u32) -> bool {
        self.from(from).last() == Some(&Item::Mark(Marker::EndOfInput))
    }
}

/// A receiving actor: notes each payload; while `hold` is set it keeps the
/// messages (and so their mailbox slots) instead of handling them, like an actor
/// that does not drain.
struct Receiver {
    seen: Seen,
    hold: Arc<AtomicBool>,
    held: Vec<Deliver<u64>>,
}

impl Actor for Receiver {
    type Context = Context<Self>;
}

impl Handler<Deliver<u64>> for Receiver {
    type Result = ();
    fn handle(&mut self, mut msg: Deliver<u64>, _: &mut Context<Self>) {
        let payload = std::mem::replace(&mut msg.payload, Payload::Batch(Vec::new()));
        let mut seen = self.seen.0.lock().unwrap();
        match payload {
            Payload::Batch(batch) => {
                seen.extend(batch.into_iter().map(|r| (msg.from, Item::Record(r))))
            }
            Payload::Marker(m) => seen.push((msg.from, Item::Mark(m))),
        }
        if self.hold.load(Ordering::SeqCst) {
            self.held.push(msg);
        }
    }
}

/// Lets a holding receiver go: it frees what it held and holds nothing more.
#[derive(Message)]
#[rtype(result = "()")]
struct Release;

impl Handler<Release> for Receiver {
    type Result = ();
    fn handle(&mut self, _: Release, _: &mut Context<Self>) {
        self.hold.store(false, Ordering::SeqCst);
        self.held.clear();
    }
}

/// The actor system of the receiving node, on a thread of its own.
struct Actors {
    arbiter: ArbiterHandle,
    system: System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Actors {
    fn start() -> Actors {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = System::new();
            let current = system.block_on(async { System::current() });
            tx.send((current.arbiter().clone(), current)).unwrap();
            let _ = system.run();
        });
        let (arbiter, system) = rx.recv().unwrap();
        Actors {
            arbiter,
            system,
            thread: Some(thread),
        }
    }

    /// A receiving actor with `inputs` inputs of `capacity` slots each.
    fn receiver(&self, inputs: u32, capacity: usize, hold: bool) -> Probe {
        let seen = Seen::default();
        let hold_flag = Arc::new(AtomicBool::new(hold));
        let (s, h) = (seen.clone(), hold_flag.clone());
        let addr = Receiver::start_in_arbiter(&self.arbiter, move |_| Receiver {
            seen: s,
            hold: h,
            held: Vec::new(),
        });
        let gate = MailboxGate::new(capacity, inputs);
        Probe {
            mailbox: Mailbox::new(addr.clone().recipient(), gate.clone()),
            seen,
            addr,
            gate,
        }
    }
}

impl Drop for Actors {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A receiving actor's mailbox and what it saw.
struct Probe {
    mailbox: Mailbox<u64>,
    seen: Seen,
    addr: Addr<Receiver>,
    gate: MailboxGate,
}

fn config(node: &str, secret: &str) -> NetConfig {
    let mut config = NetConfig::new(node, "weir-test", secret.as_bytes().to_vec());
    config.window = 4;
    config
}

/// Node `a` dials node `b` at `addr` (its listener's, or a proxy's) while `b`
/// accepts.
fn connect(
    a: &Node,
    a_config: NetConfig,
    b: &Node,
    b_config: NetConfig,
    via: Option<&Proxy>,
) -> (Result<Connection, NetError>, Result<Connection, NetError>) {
    let listener = b.run(async move {
        Endpoint::new(b_config)
            .unwrap()
            .listen("127.0.0.1:0")
            .await
            .unwrap()
    });
    let target = listener.local_addr().unwrap();
    let addr = match via {
        Some(proxy) => proxy.forward_to(target),
        None => target,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    b.handle.spawn(async move {
        let _ = tx.send(listener.accept().await);
    });
    let dialed = a.run(async move { Endpoint::new(a_config).unwrap().connect(addr).await });
    let accepted = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    (dialed, accepted)
}

/// Sends everything queued in `outbox`, waiting for credit where needed, as a
/// partition actor does.
async fn drain(outbox: &mut Outbox<u64>) {
    if !outbox.send_now().expect("the channel is open") {
        outbox
            .take_pending()
            .send_all()
            .await
            .expect("the channel is open");
    }
}

#[test]
fn records_and_markers_of_many_channels_arrive_in_order_exactly_once() {
    const SENDERS: u32 = 4;
    const RECEIVERS: u32 = 3;
    const ROUNDS: u64 = 600;
    let (a, b, actors) = (
        Node::start("node-a"),
        Node::start("node-b"),
        Actors::start(),
    );
    let (to_b, from_a) = connect(&a, config("a", "s3cret"), &b, config("b", "s3cret"), None);
    let (to_b, from_a) = (to_b.unwrap(), from_a.unwrap());

    let probes: Vec<Probe> = (0..RECEIVERS)
        .map(|_| actors.receiver(SENDERS, 2, false))
        .collect();
    for (to, probe) in probes.iter().enumerate() {
        for from in 0..SENDERS {
            from_a
                .receive(
                    ChannelId::new(JOB, EDGE, from, to as u32),
                    probe.mailbox.clone(),
                )
                .unwrap();
        }
    }
    let channels: Vec<Sender<u64>> = (0..RECEIVERS)
        .map(|to| Arc::new(NetChannel::<u64>::new(&to_b, JOB, EDGE, to)) as Sender<u64>)
        .collect();

    // What each receiver must see from each sender, in order.
    let mut expected = vec![vec![Vec::new(); SENDERS as usize]; RECEIVERS as usize];
    let record = |from: u32, round: u64| from as u64 * 1_000_000 + round;
    let marker_at = |round: u64| match round {
        r if r % 100 == 99 => Some(Marker::Barrier(r / 100 + 1)),
        r if r % 25 == 24 => Some(Marker::Watermark(r as i64)),
        _ => None,
    };
    for from in 0..SENDERS {
        for round in 0..ROUNDS {
            let to = (round % RECEIVERS as u64) as usize;
            expected[to][from as usize].push(Item::Record(record(from, round)));
            if let Some(m) = marker_at(round) {
                for exp in expected.iter_mut() {
                    exp[from as usize].push(Item::Mark(m));
                }
            }
        }
        for exp in expected.iter_mut() {
            exp[from as usize].push(Item::Mark(Marker::EndOfInput));
        }
    }

    let senders: Vec<_> = (0..SENDERS)
        .map(|from| {
            let channels = channels.clone();
            a.handle.spawn(async move {
                let mut outbox = Outbox::over(from, channels, 5);
                for round in 0..ROUNDS {
                    outbox.push_to((round % RECEIVERS as u64) as usize, record(from, round));
                    if let Some(m) = marker_at(round) {
                        outbox.broadcast_marker(m);
                    }
                    if round % 7 == 0 {
                        outbox.flush();
                        drain(&mut outbox).await;
                    }
                }
                outbox.broadcast_marker(Marker::EndOfInput);
                drain(&mut outbox).await;
            })
        })
        .collect();

    wait_until("every receiver saw every sender end", || {
        probes
            .iter()
            .all(|p| (0..SENDERS).all(|from| p.seen.ended(from)))
    });
    for (to, probe) in probes.iter().enumerate() {
        for from in 0..SENDERS {
            assert_eq!(
                probe.seen.from(from),
                expected[to][from as usize],
                "receiver {to}, sender {from}"
            );
        }
    }
    for sender in senders {
        a.run(async move { sender.await.unwrap() });
    }
    assert!(to_b.failure().is_none() && from_a.failure().is_none());
    to_b.close("test over");
}

#[test]
fn a_receiver_that_does_not_drain_stalls_only_its_own_channel_and_its_sender_stays_bounded() {
    const STALLED_BATCHES: u64 = 200;
    const FLOWING_BATCHES: u64 = 500;
    let (a, b, actors) = (
        Node::start("node-a"),
        Node::start("node-b"),
        Actors::start(),
    );
    let (to_b, from_a) = connect(&a, config("a", "s3cret"), &b, config("b", "s3cret"), None);
    let (to_b, from_a) = (to_b.unwrap(), from_a.unwrap());
    let window = 4u64;
    let capacity = 2usize;

    let stalled = actors.receiver(1, capacity, true);
    let flowing = actors.receiver(1, capacity, false);
    let stalled_id = ChannelId::new(JOB, EDGE, 0, 0);
    let flowing_id = ChannelId::new(JOB, EDGE, 0, 1);
    from_a.receive(stalled_id, stalled.mailbox.clone()).unwrap();
    from_a.receive(flowing_id, flowing.mailbox.clone()).unwrap();

    let stalled_channel = NetChannel::<u64>::new(&to_b, JOB, EDGE, 0);
    let stalled_sends = Arc::new(AtomicU64::new(0));
    let done = stalled_sends.clone();
    let stalled_sender = a.handle.spawn(async move {
        for i in 0..STALLED_BATCHES {
            stalled_channel
                .send_payload(0, Payload::Batch(vec![i]))
                .await
                .unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        }
        stalled_channel
            .send_payload(0, Payload::Marker(Marker::EndOfInput))
            .await
            .unwrap();
    });

    // The stalled channel fills up: its receiver's mailbox, the delivery task's
    // buffer, and the sender's credits, and then it stops.
    let full = || {
        let (out, inb) = (
            to_b.outbound_stats(stalled_id),
            from_a.inbound_stats(stalled_id),
        );
        matches!((out, inb), (Some(out), Some(inb))
            if out.credit == 0 && inb.buffered == window && out.sent == inb.received)
    };
    wait_until("the stalled channel is full", full);

    // Meanwhile the other channel on the same connection carries all its batches.
    let flowing_channel = NetChannel::<u64>::new(&to_b, JOB, EDGE, 1);
    a.run(async move {
        for i in 0..FLOWING_BATCHES {
            flowing_channel
                .send_payload(0, Payload::Batch(vec![i]))
                .await
                .unwrap();
        }
        flowing_channel
            .send_payload(0, Payload::Marker(Marker::EndOfInput))
            .await
            .unwrap();
    });
    wait_until("the flowing channel delivered everything", || {
        flowing.seen.ended(0)
    });
    let mut want: Vec<Item> = (0..FLOWING_BATCHES).map(Item::Record).collect();
    want.push(Item::Mark(Marker::EndOfInput));
    assert_eq!(flowing.seen.from(0), want);

    // The stalled sender is still stalled, with no more in flight than its credits.
    let out = to_b.outbound_stats(stalled_id).unwrap();
    let inb = from_a.inbound_stats(stalled_id).unwrap();
    assert_eq!(out.credit, 0);
    assert!(
        out.sent - inb.delivered <= window,
        "{} payloads outstanding (sent {}, delivered {}) for a window of {window}",
        out.sent - inb.delivered,
        out.sent,
        inb.delivered
    );
    assert!(inb.buffered <= window);
    assert_eq!(
        inb.delivered, capacity as u64,
        "the mailbox holds its capacity and no more"
    );
    assert_eq!(stalled.gate.depth(), capacity);
    assert_eq!(stalled_sends.load(Ordering::SeqCst), out.sent);
    assert!(out.sent < STALLED_BATCHES);

    // Once the receiver drains, the stalled channel delivers everything, in order.
    stalled.addr.do_send(Release);
    wait_until("the stalled channel delivered everything", || {
        stalled.seen.ended(0)
    });
    let mut want: Vec<Item> = (0..STALLED_BATCHES).map(Item::Record).collect();
    want.push(Item::Mark(Marker::EndOfInput));
    assert_eq!(stalled.seen.from(0), want);
    a.run(async move { stalled_sender.await.unwrap() });
    to_b.close("test over");
}

#[test]
fn a_wrong_secret_fails_the_handshake_on_both_sides_with_a_clear_error() {
    let (a, b) = (Node::start("node-a"), Node::start("node-b"));
    let (dialed, accepted) = connect(&a, config("a", "right"), &b, config("b", "wrong"), None);
    let (dialed, accepted) = (dialed.unwrap_err(), accepted.unwrap_err());
    assert!(
        dialed
            .to_string()
            .contains("node b did not prove the cluster secret"),
        "{dialed}"
    );
    assert!(
        accepted
            .to_string()
            .contains("node a did not prove the cluster secret"),
        "{accepted}"
    );
}

/// A TCP proxy for one connection: forwards bytes both ways, can flip one bit of
/// the dialer's stream at a given offset, and drops both sides on command.
struct Proxy {
    node: Node,
    cut: watch::Sender<bool>,
    /// Bytes forwarded from the dialer so far.
    forwarded: Arc<AtomicU64>,
    /// The offset in the dialer's stream whose byte is damaged (none: `u64::MAX`).
    corrupt_at: Arc<AtomicU64>,
}

impl Proxy {
    fn new() -> Proxy {
        Proxy {
            node: Node::start("proxy"),
            cut: watch::channel(false).0,
            forwarded: Arc::default(),
            corrupt_at: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// Listens for one connection and forwards it to `target`; returns its address.
    fn forward_to(&self, target: SocketAddr) -> SocketAddr {
        let listener = self
            .node
            .run(async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() });
        let addr = listener.local_addr().unwrap();
        let (cut, forwarded, corrupt_at) = (
            self.cut.subscribe(),
            self.forwarded.clone(),
            self.corrupt_at.clone(),
        );
        self.node.handle.spawn(async move {
            let (dialer, _) = listener.accept().await.unwrap();
            let upstream = tokio::net::TcpStream::connect(target).await.unwrap();
            let (dr, dw) = dialer.into_split();
            let (ur, uw) = upstream.into_split();
            let there = pump(dr, uw, Some((forwarded, corrupt_at)));
            let back = pump(ur, dw, None);
            let mut cut = cut;
            tokio::select! {
                _ = async { tokio::join!(there, back) } => {}
                _ = cut.wait_for(|c| *c) => {}
            }
            // Both sides are dropped here.
        });
        addr
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

type Damage = (Arc<AtomicU64>, Arc<AtomicU64>);

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    damage: Option<Damage>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some((forwarded, corrupt_at)) = &damage {
            let start = forwarded.load(Ordering::SeqCst);
            let at = corrupt_at.load(Ordering::SeqCst);
            if at >= start && at < start + n as u64 {
                buf[(at - start) as usize] ^= 0x40;
            }
            forwarded.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[test]
fn a_corrupted_frame_is_detected_by_its_checksum_and_fails_the_connection() {
    let (a, b, actors) = (
        Node::start("node-a"),
        Node::start("node-b"),
        Actors::start(),
    );
    let proxy = Proxy::new();
    // No heartbeats during the test, so that the next bytes from `a` are the data.
    let quiet = |node| {
        let mut c = config(node, "s3cret");
        c.heartbeat = Duration::from_secs(600);
        c.idle_timeout = Duration::from_secs(1200);
        c
    };
    let (to_b, from_a) = connect(&a, quiet("a"), &b, quiet("b"), Some(&proxy));
    let (to_b, from_a) = (to_b.unwrap(), from_a.unwrap());
    let probe = actors.receiver(1, 2, false);
    let id = ChannelId::new(JOB, EDGE, 0, 0);
    from_a.receive(id, probe.mailbox.clone()).unwrap();
    let channel = NetChannel::<u64>::new(&to_b, JOB, EDGE, 0);

    // Damage a byte inside the body of the next frame from `a`.
    let header = 33;
    proxy.corrupt_at.store(
        proxy.forwarded.load(Ordering::SeqCst) + header + 10,
        Ordering::SeqCst,
    );
    a.run(async move {
        channel
            .send_payload(0, Payload::Batch((0..100).collect()))
            .await
    })
    .unwrap();

    let err = b.run({
        let from_a = from_a.clone();
        async move { from_a.closed().await }
    });
    let text = err.to_string();
    assert!(
        text.contains("checksum mismatch") && text.contains("bad frame from node a"),
        "{text}"
    );
    assert!(
        probe.seen.from(0).is_empty(),
        "nothing damaged is delivered"
    );
    // The sending node learns why from the goodbye, or at least that it is gone.
    let err = a.run({
        let to_b = to_b.clone();
        async move { to_b.closed().await }
    });
    assert!(matches!(err, NetError::ConnectionFailed { .. }), "{err}");
}

#[test]
fn a_connection_cut_in_the_middle_fails_waiting_and_later_sends_with_an_error() {
    let (a, b, actors) = (
        Node::start("node-a"),
        Node::start("node-b"),
        Actors::start(),
    );
    let proxy = Proxy::new();
    let (to_b, from_a) = connect(
        &a,
        config("a", "s3cret"),
        &b,
        config("b", "s3cret"),
        Some(&proxy),
    );
    let (to_b, from_a) = (to_b.unwrap(), from_a.unwrap());
    // A receiver that does not drain, so that its sender ends up waiting for credit.
    let probe = actors.receiver(1, 1, true);
    let id = ChannelId::new(JOB, EDGE, 0, 0);
    from_a.receive(id, probe.mailbox.clone()).unwrap();
    let channel = Arc::new(NetChannel::<u64>::new(&to_b, JOB, EDGE, 0));

    let sender = channel.clone();
    let sending = a.handle.spawn(async move {
        let mut sent = 0u64;
        loop {
            if let Err(e) = sender.send_payload(0, Payload::Batch(vec![sent])).await {
                return (sent, e);
            }
            sent += 1;
        }
    });
    wait_until("the sender waits for credit", || {
        to_b.outbound_stats(id)
            .is_some_and(|s| s.credit == 0 && s.sent > 0)
    });

    proxy.cut();
    let (sent, err) = a.run(async move { sending.await.unwrap() });
    assert!(sent >= 1);
    let text = err.to_string();
    assert!(
        text.contains("connection to node b at") && text.contains("failed"),
        "{text}"
    );
    // Later sends fail at once, through the kernel's trait as well.
    let later = a.run({
        let channel = channel.clone();
        async move { channel.send_payload(0, Payload::Marker(Marker::Idle)).await }
    });
    assert!(
        matches!(later, Err(NetError::ConnectionFailed { .. })),
        "{later:?}"
    );
    assert!(matches!(
        channel.try_send(0, Payload::Batch(vec![1])),
        Err(TrySendError::Closed)
    ));
    let send = channel.send(0, Payload::Batch(vec![1]));
    assert!(a.run(send).is_err());
    // The receiving node sees the failure too.
    let err = b.run({
        let from_a = from_a.clone();
        async move { from_a.closed().await }
    });
    assert!(err.to_string().contains("node a"), "{err}");
}

#[test]
fn a_receiver_that_closes_or_cannot_decode_closes_only_its_own_channel() {
    let (a, b, actors) = (
        Node::start("node-a"),
        Node::start("node-b"),
        Actors::start(),
    );
    let (to_b, from_a) = connect(&a, config("a", "s3cret"), &b, config("b", "s3cret"), None);
    let (to_b, from_a) = (to_b.unwrap(), from_a.unwrap());
    let (closing, wrong_type, open) = (
        actors.receiver(1, 2, false),
        actors.receiver(1, 2, false),
        actors.receiver(1, 2, false),
    );
    for (to, probe) in [&closing, &wrong_type, &open].into_iter().enumerate() {
        from_a
            .receive(
                ChannelId::new(JOB, EDGE, 0, to as u32),
                probe.mailbox.clone(),
            )
            .unwrap();
    }
    // The receiving job stops: its actor's mailbox closes.
    closing.gate.close();
    let closing_channel = NetChannel::<u64>::new(&to_b, JOB, EDGE, 0);
    // The sender's records are not what the receiver reads.
    let wrong_channel = NetChannel::<bool>::new(&to_b, JOB, EDGE, 1);
    let open_channel = NetChannel::<u64>::new(&to_b, JOB, EDGE, 2);

    let errors = a.run(async move {
        let mut errors = Vec::new();
        for _ in 0..2 {
            let mut sends = 0;
            let error = loop {
                // Sends go out until the receiver's ChannelClosed arrives.
                match closing_channel
                    .send_payload(0, Payload::Batch(vec![1]))
                    .await
                {
                    Ok(_) => sends += 1,
                    Err(e) => break e,
                }
                assert!(sends <= 100, "the channel never closed");
            };
            errors.push(error);
            let error = loop {
                match wrong_channel
                    .send_payload(0, Payload::Batch(vec![true]))
                    .await
                {
                    Ok(_) => sends += 1,
                    Err(e) => break e,
                }
                assert!(sends <= 200, "the channel never closed");
            };
            errors.push(error);
        }
        open_channel
            .send_payload(0, Payload::Batch(vec![7]))
            .await
            .unwrap();
        errors
    });
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        matches!(errors[0], NetError::ChannelClosed { .. })
            && text[0].contains("the receiving actor's mailbox is closed"),
        "{}",
        text[0]
    );
    assert!(text[1].contains("does not decode as u64"), "{}", text[1]);
    assert_eq!(text[2], text[0], "a closed channel stays closed");
    wait_until("the open channel delivered", || {
        open.seen.from(0) == vec![Item::Record(7)]
    });
    assert!(wrong_type.seen.from(0).is_empty());
    assert!(to_b.failure().is_none(), "only the channels closed");
}
