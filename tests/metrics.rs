//! Metrics end to end: a `weir run demo` with JSON logs and checkpointing is scraped
//! over HTTP while it runs; windowed, line-reading and Kafka jobs run in-process under
//! the Prometheus recorder. Both ways, the exported set must agree with the tables of
//! docs/metrics.md, and the values must agree with what the jobs did.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::events::{time, Count, Events};
use common::kafka::{cluster, produce, spread};
use weir::connector::kafka::{KafkaSource, Utf8Text};
use weir::connector::lines::LineSource;
use weir::prelude::*;
use weir::window::Tumbling;

/// One metric of docs/metrics.md.
#[derive(Debug)]
struct Documented {
    kind: String,
    labels: BTreeSet<String>,
    exported: String,
}

/// The metric tables of docs/metrics.md: every row whose first cell is a `weir_` name.
fn documented() -> BTreeMap<String, Documented> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `weir_")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "a metric row has 5 cells: {line}");
        let labels = cells[2]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let name = cells[0].trim_matches('`').to_string();
        let row = Documented {
            kind: cells[1].to_string(),
            labels,
            exported: cells[3].to_string(),
        };
        assert!(rows.insert(name.clone(), row).is_none(), "{name} twice");
    }
    assert!(rows.len() > 20, "the tables were found: {rows:?}");
    rows
}

/// One sample of a scrape.
#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape: per metric (histograms under their base name), its type and samples
/// (a histogram's `_bucket`, `_sum` and `_count` lines all count as its samples).
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, Vec<(String, Sample)>>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
                scrape.types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|b| scrape.types.get(*b).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            scrape
                .samples
                .entry(base.to_string())
                .or_default()
                .push((name.to_string(), Sample { labels, value }));
        }
        scrape
    }

    /// The plain samples of `name` (for a histogram: its `_count` lines).
    fn values(&self, name: &str) -> Vec<Sample> {
        let wanted = match self.types.get(name).map(String::as_str) {
            Some("histogram") => format!("{name}_count"),
            _ => name.to_string(),
        };
        self.samples
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(series, _)| *series == wanted)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The sum of `name` over the samples whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.values(name)
            .iter()
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
            .sum()
    }
}

/// `a="x",b="y"` (values may hold escaped quotes).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// The body of `GET path`, which must answer 200.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if path == "/metrics" {
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    }
    body.to_string()
}

/// Every exported metric is documented with its type and labels; every documented
/// metric whose condition is in `met` is exported.
fn assert_agrees_with_docs(scrape: &Scrape, met: &[&str]) {
    let docs = documented();
    for (name, kind) in &scrape.types {
        if !name.starts_with("weir_") {
            continue;
        }
        let doc = docs
            .get(name)
            .unwrap_or_else(|| panic!("{name} is exported but not in docs/metrics.md"));
        assert_eq!(&doc.kind, kind, "{name}: documented type");
        for (series, sample) in scrape.samples.get(name).into_iter().flatten() {
            let labels: BTreeSet<String> = sample
                .labels
                .keys()
                .filter(|k| *k != "le" && *k != "quantile")
                .cloned()
                .collect();
            assert_eq!(labels, doc.labels, "{series}: documented labels");
        }
    }
    for (name, doc) in &docs {
        if met.contains(&doc.exported.as_str()) {
            assert!(
                scrape.types.contains_key(name),
                "{name} ({}) is documented but was not exported",
                doc.exported
            );
        }
    }
}

/// Kills the child process if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_demo_exports_what_docs_list_and_logs_json_lines() {
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "run",
            "demo",
            "--duration",
            "6",
            "--workers",
            "2",
            "--parallelism",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--checkpoint-interval-ms",
            "200",
            "--progress-interval-ms",
            "500",
        ])
        // Only weir's own info events and warnings: the snapshot store's info events
        // (one per epoch) must not appear, which shows RUST_LOG is respected.
        .env(
            "RUST_LOG",
            "warn,weir::metrics=info,weir::console=info,weir::progress=info",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the metrics address is logged");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        lines.push(line);
        if event["fields"]["message"] == "serving Prometheus metrics" {
            break event["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    assert!(addr.ip().is_loopback());
    assert!(get(addr, "/").contains("/metrics"));

    // Scrape until the first checkpoint completed and the keyed stage's messages
    // were published.
    let scrape = loop {
        let scrape = Scrape::parse(&get(addr, "/metrics"));
        // (The first publish may come before anything reached the keyed stage.)
        if scrape.sum("weir_checkpoint_last_completed_epoch", &[]) >= 1.0
            && scrape.sum("weir_messages_in_total", &[]) > 0.0
        {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint within the deadline"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_agrees_with_docs(&scrape, &["always", "checkpointing"]);

    // Sane values.
    let job = [("job", "demo")];
    let source_stage = scrape
        .values("weir_records_in_total")
        .iter()
        .map(|s| s.labels["stage"].clone())
        .find(|stage| stage.starts_with("source:"))
        .expect("a source stage");
    let read = scrape.sum("weir_records_in_total", &[("stage", &source_stage)]);
    assert!(read > 0.0);
    assert_eq!(
        scrape.values("weir_records_in_total").len(),
        4,
        "2 stages x 2 partitions"
    );
    assert!(scrape.sum("weir_messages_in_total", &job) > 0.0);
    assert!(
        scrape.sum("weir_processing_seconds", &job) > 0.0,
        "handled messages are counted"
    );
    for ratio in ["weir_busy_ratio", "weir_backpressure_ratio"] {
        for s in scrape.values(ratio) {
            assert!((0.0..=1.0).contains(&s.value), "{ratio} {s:?}");
        }
    }
    for depth in scrape.values("weir_mailbox_depth") {
        let capacity = scrape.sum(
            "weir_mailbox_capacity",
            &[
                ("stage", &depth.labels["stage"]),
                ("partition", &depth.labels["partition"]),
            ],
        );
        assert!(
            capacity >= 1.0 && depth.value <= capacity,
            "{depth:?} of {capacity}"
        );
    }
    assert!(scrape.sum("weir_checkpoints_completed_total", &job) >= 1.0);
    assert_eq!(scrape.sum("weir_restarts_total", &job), 0.0);
    assert!(scrape.sum("weir_checkpoint_size_bytes", &job) >= 1.0);

    // The demo ends after its duration; every stderr line is a JSON log event.
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{lines:?}");
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let mut finished = None;
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(event.get(key).is_some(), "no {key}: {line}");
        }
        let level = event["level"].as_str().unwrap();
        let target = event["target"].as_str().unwrap();
        assert!(
            level != "INFO" || target.starts_with("weir::"),
            "RUST_LOG keeps {target} at warn: {line}"
        );
        if event["fields"]["message"] == "job finished" {
            finished = Some(event);
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"target\":\"weir::progress\"")),
        "progress lines are log events too"
    );
    let finished = finished.expect("the summary is a log event");
    let total_read = finished["fields"]["records_read"].as_f64().unwrap();
    assert!(
        total_read >= read,
        "{total_read} read in all, {read} when scraped"
    );
}

#[test]
fn in_process_jobs_export_exact_counts_late_records_dead_letters_and_kafka_lag() {
    let server = weir::metrics::install("127.0.0.1:0".parse().unwrap()).unwrap();
    // A window job with one record too late for its window.
    let mut events: Vec<(u64, i64)> = (0..100).map(|t| (1, t)).collect();
    events.push((1, 500));
    events.push((1, 10));
    let sink = CollectSink::new();
    let job = Job::new("late")
        .source_with_time(Events { events, stop: None }, time(0))
        .key_by(|e: &(u64, i64)| e.0)
        .window(Tumbling::of(Duration::from_millis(100)).unwrap())
        .aggregate(Count)
        .sink(sink.clone());
    let node = Node::new(EngineOptions::for_tests(1)).unwrap();
    let late = node.run(job).unwrap();
    // The node's status board holds the same figures, for a status API.
    let status = node.status().job("late").expect("the job's status");
    assert_eq!(status.state, weir::status::JobState::Finished);
    assert_eq!(status.restarts, 0);
    assert_eq!(status.stages[0].records_in, 102);
    assert_eq!(node.status().jobs().len(), 1);

    // Lines with one that is not UTF-8: a dead letter.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    std::fs::write(&path, b"to be\nor not\n\xff\xfe\nto be\n").unwrap();
    let dead = DeadLetters::to_log();
    let (job, _counts) = weir::jobs::wordcount(LineSource::file(&path, dead.clone()));
    let words = Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run(job)
        .unwrap();
    assert_eq!(dead.count(), 1);

    // A Kafka topic of two partitions, read with librdkafka statistics every
    // 100 ms until every record was read and both partitions' lag shows 0 (60 s at
    // most).
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("lagging", 2, 1).unwrap();
    produce(
        &bootstrap,
        "lagging",
        &spread(40, 2, "k", "v", 1_700_000_000_000),
    );
    let read = CollectSink::new();
    let stop = StopFlag::new();
    let job = Job::new("kafka")
        .source(
            KafkaSource::new(
                bootstrap.clone(),
                ["lagging"],
                Utf8Text,
                DeadLetters::to_log(),
            )
            .set("statistics.interval.ms", "100")
            .stop_on(stop.clone()),
        )
        .map(|r: weir::connector::kafka::KafkaRecord<String>| r.value)
        .sink(read.clone());
    let (addr, ender) = (server.addr(), stop.clone());
    let control = RunControl {
        stop: Some(stop),
        duration: Some(Duration::from_secs(60)),
        observer: Some(Box::new(move |live| {
            if ender.is_stopped() || live.records_read() < 40 {
                return;
            }
            let scrape = Scrape::parse(&get(addr, "/metrics"));
            let lag: Vec<f64> = scrape
                .values("weir_kafka_consumer_lag_records")
                .into_iter()
                .filter(|s| s.labels["topic"] == "lagging")
                .map(|s| s.value)
                .collect();
            if lag == [0.0, 0.0] {
                ender.stop();
            }
        })),
        observe_every: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    Node::new(EngineOptions::for_tests(1))
        .unwrap()
        .run_with(job, control)
        .unwrap();
    assert_eq!(read.items().len(), 40);

    let scrape = Scrape::parse(&get(server.addr(), "/metrics"));
    assert_agrees_with_docs(
        &scrape,
        &[
            "always",
            "watermarks",
            "windows",
            "dead letters",
            "kafka source",
        ],
    );

    // Records in equal what the sources read, exactly (the last publish is at the end).
    for (job, report) in [("late", &late), ("wordcount", &words)] {
        let source = &report.stages[0].name;
        assert_eq!(
            scrape.sum("weir_records_in_total", &[("job", job), ("stage", source)]),
            report.records_read() as f64,
            "{job}"
        );
        let out: u64 = report.stages[0].records_out;
        assert_eq!(
            scrape.sum("weir_records_out_total", &[("job", job), ("stage", source)]),
            out as f64,
            "{job}"
        );
    }
    assert_eq!(late.records_read(), 102);
    // Bytes read: the four lines with their line ends; the Kafka keys `k0`..`k39`
    // and values `v 0`..`v 39`.
    assert_eq!(
        scrape.sum("weir_source_bytes_total", &[("job", "wordcount")]),
        22.0
    );
    assert_eq!(
        scrape.sum("weir_source_bytes_total", &[("job", "kafka")]),
        260.0
    );
    assert_eq!(
        scrape.sum("weir_source_bytes_total", &[("job", "late")]),
        0.0
    );
    assert_eq!(
        scrape.sum("weir_late_records_total", &[("job", "late")]),
        1.0
    );
    assert_eq!(scrape.sum("weir_dead_letters_total", &[]), 1.0);
    // The last finite watermark of the event-time source: the event at 500 ms,
    // bound 0.
    let source = &late.stages[0].name;
    let watermark = scrape
        .values("weir_watermark_timestamp_seconds")
        .into_iter()
        .filter(|s| s.labels["job"] == "late" && &s.labels["stage"] == source)
        .map(|s| s.value)
        .fold(f64::MIN, f64::max);
    assert!((0.49..=0.5).contains(&watermark), "{watermark}");
    // Both partitions were read to their end long before the job stopped.
    let lag = scrape.values("weir_kafka_consumer_lag_records");
    assert_eq!(lag.len(), 2, "{lag:?}");
    for s in &lag {
        assert_eq!(s.labels["topic"], "lagging");
        assert_eq!(s.value, 0.0, "{s:?}");
    }
}

/// numbers 0..2000 -> (x % 10, x) -> running sum per key, panicking once at record
/// `fault_at` if given; checkpoints every 50 ms and a fixed-delay restart strategy.
fn run_sums(name: &str, fault_at: Option<u64>) -> weir::job::report::JobReport {
    let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = CollectSink::new();
    let job = Job::new(name)
        .source(common::Numbers::upto(2000).paced(Duration::from_millis(1)))
        .map(|x: u64| (x % 10, x))
        .group_by_key()
        .reduce(move |sum: u64, x: u64| {
            if Some(x) == fault_at && !fired.swap(true, std::sync::atomic::Ordering::Relaxed) {
                panic!("injected fault at record {x}");
            }
            sum + x
        })
        .sink(sink);
    let mut options = EngineOptions::for_tests(1);
    options.checkpoint.interval = Some(Duration::from_millis(50));
    options.restart = RestartStrategy::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(5),
    };
    Node::new(options).unwrap().run(job).unwrap()
}

#[test]
fn a_restart_after_an_injected_panic_is_counted_and_replays_are_counted_again() {
    let server = weir::metrics::install("127.0.0.1:0".parse().unwrap()).unwrap();
    let clean = run_sums("sums-clean", None);
    let faulty = run_sums("sums-faulty", Some(1500));
    assert_eq!(clean.restarts, 0);
    assert_eq!(faulty.restarts, 1);
    let scrape = Scrape::parse(&get(server.addr(), "/metrics"));
    assert_eq!(
        scrape.sum("weir_restarts_total", &[("job", "sums-clean")]),
        0.0
    );
    assert_eq!(
        scrape.sum("weir_restarts_total", &[("job", "sums-faulty")]),
        1.0
    );
    let read = |job: &str, report: &weir::job::report::JobReport| {
        scrape.sum(
            "weir_records_in_total",
            &[("job", job), ("stage", &report.stages[0].name)],
        )
    };
    // Without faults the counter is what the job read; with one, the records read
    // again after the restart (from the last complete epoch) count again.
    assert_eq!(read("sums-clean", &clean), 2000.0);
    assert!(read("sums-faulty", &faulty) > 2000.0);
    for job in ["sums-clean", "sums-faulty"] {
        assert!(scrape.sum("weir_checkpoints_completed_total", &[("job", job)]) >= 1.0);
    }
    // The failure is counted against the keyed stage's partition 0, and only there.
    let keyed = &faulty.stages[1].name;
    assert_eq!(
        scrape.sum(
            "weir_operator_failures_total",
            &[("job", "sums-faulty"), ("stage", keyed), ("partition", "0")]
        ),
        1.0
    );
    assert_eq!(
        scrape.sum("weir_operator_failures_total", &[("job", "sums-faulty")]),
        1.0
    );
    assert_eq!(
        scrape.sum("weir_operator_failures_total", &[("job", "sums-clean")]),
        0.0
    );
    assert_agrees_with_docs(&scrape, &["always", "checkpointing", "failures"]);
}

#[test]
fn keyed_state_entries_and_bytes_are_exported_per_stage_and_partition() {
    let server = weir::metrics::install("127.0.0.1:0".parse().unwrap()).unwrap();
    // numbers 0..1000 -> (x % 10, x) -> running sum per key: ten keys of u64, each
    // one value entry of the `reduce` state.
    let job = Job::new("state-usage")
        .source(common::Numbers::upto(1000))
        .map(|x: u64| (x % 10, x))
        .group_by_key()
        .reduce(|sum: u64, x: u64| sum + x)
        .sink(CollectSink::new());
    let mut options = EngineOptions::for_tests(2);
    options.state_metrics_interval = Some(Duration::from_millis(20));
    let key_partitions = options.key_partitions;
    let report = Node::new(options).unwrap().run(job).unwrap();
    let keyed = &report.stages[1].name;
    // Each entry: sled key = 4-byte key partition + 4-byte state id + bincode(u64);
    // value = 13-byte record header + bincode(u64).
    const ENTRY_BYTES: f64 = (4 + 4 + 8 + 13 + 8) as f64;
    let mut expected = [0.0f64; 2];
    for key in 0..10u64 {
        let kp = weir::partition::key_partition(&key, key_partitions).unwrap();
        expected[weir::partition::owner_of(kp, key_partitions, 2) as usize] += 1.0;
    }
    let scrape = Scrape::parse(&get(server.addr(), "/metrics"));
    for (partition, expected) in expected.iter().enumerate() {
        let labels = [
            ("job", "state-usage"),
            ("stage", keyed.as_str()),
            ("partition", &partition.to_string()),
        ];
        assert_eq!(
            scrape.sum("weir_state_keys", &labels),
            *expected,
            "partition {partition}"
        );
        assert_eq!(
            scrape.sum("weir_state_bytes", &labels),
            expected * ENTRY_BYTES,
            "partition {partition}"
        );
    }
    assert_eq!(
        scrape.sum("weir_state_keys", &[("job", "state-usage")]),
        10.0
    );
    assert!(expected.iter().all(|n| *n > 0.0), "both actors own keys");
    // Only keyed stages are measured.
    let measured: BTreeSet<String> = scrape
        .values("weir_state_keys")
        .into_iter()
        .filter(|s| s.labels["job"] == "state-usage")
        .map(|s| s.labels["stage"].clone())
        .collect();
    assert_eq!(measured, BTreeSet::from([keyed.clone()]));
    assert_agrees_with_docs(&scrape, &["always", "keyed state"]);
}
