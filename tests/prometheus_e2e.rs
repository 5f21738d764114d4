//! End to end: a real Prometheus server (Debian's, provisioned by
//! `scripts/test-deps.sh prometheus`) on 127.0.0.1 scrapes a running `weir run demo`
//! every second with ops/'s alert rules loaded, and weir's metrics arrive through
//! Prometheus's HTTP query API with the labels and values the node itself reports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::node::WeirProcess;
use common::tansu::free_port;
use common::{deps, http};
use serde_json::Value;

/// A Prometheus server process, killed and reaped on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, with ops/'s alert rules.
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let binary = deps::provision("prometheus");
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/prometheus/weir-alerts.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: weir\n    honor_labels: true\n    \
                 static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("starting prometheus");
        let mut server = Prometheus { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", server.log_text());
            }
            if std::net::TcpStream::connect(addr).is_ok()
                && http::get(addr, "/-/ready").status == 200
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let response = http::get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        );
        let body = response.json();
        assert_eq!(body["status"], "success", "{promql}: {}", response.body);
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `promql` until `done` holds for its result (30 s at most).
    fn query_until(&self, promql: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = self.query(promql);
            if done(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} never got there: {result:?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A sample's value.
fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_scrapes_a_running_node_and_its_figures_are_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics_arg = metrics_addr.to_string();
    let state = dir.path().join("state");
    let mut node = WeirProcess::checkpointed_demo(&state, &["--metrics-addr", &metrics_arg]);
    let status_addr = node.status_addr();
    let prometheus = Prometheus::start(dir.path(), metrics_addr);

    // The target is up, and every actor's records counter arrives, labelled as the
    // status API names the job, its stages and partitions.
    prometheus.query_until("up{job=\"weir\"} == 1", |r| r.len() == 1);
    let records =
        prometheus.query_until("weir_records_in_total{job=\"demo\"} > 0", |r| r.len() == 4);
    let status = http::get(status_addr, "/api/jobs/demo").json();
    let stage_names: BTreeSet<String> = status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let mut by_stage: BTreeMap<String, f64> = BTreeMap::new();
    let mut partitions = BTreeSet::new();
    for sample in &records {
        let labels = &sample["metric"];
        assert_eq!(labels["job"], "demo");
        assert_eq!(labels["instance"], metrics_arg.as_str());
        let stage = labels["stage"].as_str().unwrap().to_string();
        partitions.insert((
            stage.clone(),
            labels["partition"].as_str().unwrap().to_string(),
        ));
        let v = value(sample);
        assert!(v > 0.0 && v.fract() == 0.0, "a count of records: {v}");
        *by_stage.entry(stage).or_default() += v;
    }
    assert_eq!(
        by_stage.keys().cloned().collect::<BTreeSet<_>>(),
        stage_names
    );
    assert_eq!(
        partitions.len(),
        4,
        "two partitions per stage: {partitions:?}"
    );
    // Prometheus's figures lag the node's own: never ahead of what the node reports
    // after the query.
    let later = http::get(status_addr, "/api/jobs/demo").json();
    for stage in later["stages"].as_array().unwrap() {
        let name = stage["name"].as_str().unwrap();
        let live = stage["records_in"].as_f64().unwrap();
        assert!(
            by_stage[name] <= live,
            "{name}: scraped {} > live {live}",
            by_stage[name]
        );
    }
    // The rate of reading is positive while the demo runs.
    let rate = prometheus.query_until(
        "sum(rate(weir_records_in_total{stage=~\"source:.*\"}[5s]))",
        |r| r.len() == 1 && value(&r[0]) > 0.0,
    );
    assert!(value(&rate[0]).is_finite());

    // Ratios stay within 0..1, mailboxes have their configured size.
    for sample in prometheus.query_until("weir_backpressure_ratio", |r| r.len() == 4) {
        assert!((0.0..=1.0).contains(&value(&sample)), "{sample}");
    }
    for sample in prometheus.query_until("weir_busy_ratio", |r| r.len() == 4) {
        assert!((0.0..=1.0).contains(&value(&sample)), "{sample}");
    }
    for sample in prometheus.query_until("weir_mailbox_capacity", |r| r.len() == 4) {
        assert!(value(&sample) >= 1.0, "{sample}");
    }

    // Checkpoints: the interval gauge and completed epochs, agreeing with the node.
    let interval = prometheus.query_until("weir_checkpoint_interval_seconds{job=\"demo\"}", |r| {
        r.len() == 1
    });
    assert_eq!(value(&interval[0]), 0.2);
    let completed = prometheus
        .query_until("weir_checkpoints_completed_total{job=\"demo\"} >= 2", |r| {
            r.len() == 1
        });
    let node_completed = http::get(status_addr, "/api/jobs/demo").json()["checkpoints"]
        ["completed"]
        .as_f64()
        .unwrap();
    assert!(value(&completed[0]) <= node_completed);
    let durations = prometheus.query_until(
        "weir_checkpoint_duration_seconds_count{job=\"demo\"} > 0",
        |r| r.len() == 1,
    );
    assert!(value(&durations[0]) >= 1.0);
    prometheus.query_until("weir_restarts_total{job=\"demo\"} == 0", |r| r.len() == 1);

    // Every metric ops/ uses that a checkpointed demo exports has arrived.
    let names: BTreeSet<String> = prometheus
        .query_until("count by (__name__) ({__name__=~\"weir_.*\"})", |r| {
            r.len() >= 15
        })
        .iter()
        .map(|s| s["metric"]["__name__"].as_str().unwrap().to_string())
        .collect();
    for expected in [
        "weir_records_in_total",
        "weir_records_out_total",
        "weir_backpressure_ratio",
        "weir_busy_ratio",
        "weir_mailbox_depth",
        "weir_mailbox_capacity",
        "weir_processing_seconds_bucket",
        "weir_restarts_total",
        "weir_state_store_bytes",
        "weir_checkpoints_completed_total",
        "weir_checkpoints_failed_total",
        "weir_checkpoint_interval_seconds",
        "weir_checkpoint_last_completed_epoch",
        "weir_checkpoint_duration_seconds_bucket",
        "weir_checkpoint_size_bytes_sum",
        "weir_checkpoint_alignment_seconds_bucket",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }

    // ops/'s alert rules are loaded and evaluate without error against real series.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = http::get(prometheus.addr, "/api/v1/rules").json();
        let groups = rules["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let group_names: BTreeSet<&str> =
            groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(
            group_names,
            BTreeSet::from(["weir-checkpoints", "weir-flow", "weir-node"])
        );
        let evaluated: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        assert_eq!(evaluated.len(), 8);
        if evaluated.iter().all(|r| r["health"] == "ok") {
            // A healthy demo fires none of the failure alerts.
            for rule in &evaluated {
                let name = rule["name"].as_str().unwrap();
                if [
                    "WeirCheckpointsFailing",
                    "WeirNodeDown",
                    "WeirJobRestarting",
                    "WeirDeadLetters",
                ]
                .contains(&name)
                {
                    assert_eq!(rule["state"], "inactive", "{rule}");
                }
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated ok: {evaluated:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(prometheus);
    drop(node);
}
