//! The `weir` command line as a user meets it.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

/// Metrics on a port the system picks, so that parallel runs never collide on the
/// default port.
const LOCAL_METRICS: [&str; 2] = ["--metrics-addr", "127.0.0.1:0"];

fn weir() -> Command {
    common::node::weir_command()
}

#[test]
fn help_lists_the_commands_and_the_engine_flags() {
    let out = weir().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "bench", "config"] {
        assert!(text.contains(word), "{text}");
    }
    let out = weir().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--workers",
        "--parallelism",
        "--key-partitions",
        "--mailbox-capacity",
        "--batch-size",
        "--state-dir",
        "--duration",
    ] {
        assert!(text.contains(flag), "missing {flag}: {text}");
    }
}

#[test]
fn bench_w1_prints_a_passing_json_line_last() {
    let out = weir()
        .args(["bench", "w1", "--n", "100000", "--no-progress"])
        .args(LOCAL_METRICS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["workload"], "w1");
    assert_eq!(v["n"], 100_000);
    assert_eq!(v["checkpointing"], false);
    assert_eq!(v["check"], "passed");
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    for key in ["parallelism", "seconds"] {
        assert!(v.get(key).is_some(), "{last}");
    }
}

#[test]
fn the_demo_runs_for_a_duration_and_prints_its_summary() {
    let out = weir()
        .args([
            "run",
            "demo",
            "--duration",
            "1",
            "--progress-interval-ms",
            "300",
        ])
        .args(LOCAL_METRICS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("sensor\treadings\tmean\tmin\tmax"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().count(),
        11,
        "header and ten sensors: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[weir] demo:"),
        "live progress lines: {stderr}"
    );
    assert!(stderr.contains("finished in"), "summary: {stderr}");
}

#[test]
fn wordcount_reads_standard_input() {
    let mut child = weir()
        .args(["run", "wordcount", "--no-progress"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .args(LOCAL_METRICS)
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"the cat and the hat\nThe end\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().next(), Some("the\t3"), "{stdout}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
}

#[test]
fn a_bad_config_value_is_named_with_its_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[engine]\nmailbox_capacity = 0\n").unwrap();
    let out = weir()
        .args(["run", "demo", "--duration", "0.1", "--config"])
        .arg(&path)
        .args(LOCAL_METRICS)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("engine.mailbox_capacity") && stderr.contains("node.toml"),
        "{stderr}"
    );

    std::fs::write(&path, "[engine]\nwrokers = 2\n").unwrap();
    let out = weir()
        .args(["config", "--check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrokers"));
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/weir.toml");
    let out = weir().args(["config", "--check", path]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_and_bench_help_list_the_checkpoint_and_recovery_flags() {
    let out = weir().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--checkpoint-interval-ms",
        "--checkpoint-timeout-ms",
        "--checkpoint-retain",
        "--checkpoint-compact-after",
        "--restart-strategy",
        "--restart-attempts",
        "--restart-delay-ms",
        "--restart-initial-delay-ms",
        "--restart-max-delay-ms",
        "--restart-multiplier",
        "--restart-reset-after-ms",
        "--restart-max-failures",
        "--restart-failure-interval-ms",
        "--no-poison",
        "--poison-replays",
        "--savepoint-dir",
        "--from-savepoint",
        "exponential-backoff",
    ] {
        assert!(text.contains(flag), "missing {flag}: {text}");
    }
    let out = weir().args(["bench", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--checkpoint-interval-ms", "--state-dir"] {
        assert!(text.contains(flag), "missing {flag}: {text}");
    }
    assert!(!text.contains("--from-savepoint"), "{text}");
}

#[test]
fn a_bad_recovery_flag_is_named_with_the_command_line_and_its_key() {
    for (flag, value, key) in [
        ("--checkpoint-interval-ms", "5", "checkpoint.interval_ms"),
        ("--restart-multiplier", "0.5", "restart.multiplier"),
        ("--poison-replays", "0", "poison.replays"),
    ] {
        let out = weir()
            .args(["run", "demo", "--duration", "0.1", flag, value])
            .args(LOCAL_METRICS)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("command line: {key} = ")),
            "{flag} {value}: {stderr}"
        );
    }
    let out = weir()
        .args(["run", "demo", "--restart-strategy", "sometimes"])
        .args(LOCAL_METRICS)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failure-rate"), "{stderr}");
}

#[test]
fn bench_accepts_a_checkpoint_interval_and_a_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir()
        .args([
            "bench",
            "w1",
            "--n",
            "20000",
            "--no-progress",
            "--checkpoint-interval-ms",
            "100",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .args(LOCAL_METRICS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["workload"], "w1");
    assert_eq!(v["check"], "passed");
}

#[test]
fn a_metrics_port_in_use_stops_the_node_with_an_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = weir()
        .args(["run", "demo", "--duration", "0.1", "--metrics-addr", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")),
        "{stderr}"
    );
    // --no-metrics runs without binding anything.
    let out = weir()
        .args(["run", "demo", "--duration", "0.1", "--no-metrics"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("serving Prometheus metrics"));
}

#[test]
fn wordcount_reads_kafka_from_the_brokers_of_the_config_section_or_says_what_is_missing() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let dir = tempfile::tempdir().unwrap();
    let out = weir()
        .args(["run", "wordcount", "--kafka-topic", "lines", "--output-dir"])
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kafka.brokers") && stderr.contains("--kafka-brokers"),
        "{stderr}"
    );

    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("lines", 1, 1).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .create()
        .unwrap();
    for line in ["to be or", "not to be"] {
        producer
            .send(BaseRecord::<(), _>::to("lines").payload(line))
            .unwrap();
    }
    producer.flush(std::time::Duration::from_secs(10)).unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[kafka.consumer]\nclient.id = \"cli-test\"\n",
            mock.bootstrap_servers()
        ),
    )
    .unwrap();
    let output = dir.path().join("out");
    let status = weir()
        .args([
            "run",
            "wordcount",
            "--kafka-topic",
            "lines",
            "--workers",
            "1",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--output-dir")
        .arg(&output)
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    let mut lines = weir::connector::txn_file::read_committed(&output).unwrap();
    lines.sort();
    assert_eq!(
        lines,
        ["be\t1", "be\t2", "not\t1", "or\t1", "to\t1", "to\t2"]
    );
}

#[test]
fn bench_kafka_w1_without_a_cluster_says_which_key_and_flag_to_set() {
    let out = weir()
        .args(["bench", "kafka-w1", "--n", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bench kafka-w1")
            && stderr.contains("kafka.brokers")
            && stderr.contains("--kafka-brokers"),
        "{stderr}"
    );
}
