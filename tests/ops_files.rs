//! Everything in ops/ checked with its ecosystem's tool: the Prometheus config and
//! alert rules with `promtool` (including the rules' unit tests), the Kubernetes
//! manifests and Prometheus files with `yamllint` and a YAML parse, the systemd unit
//! with `systemd-analyze verify`, the Grafana dashboard as JSON; and across them:
//! every metric they name is one weir exports, and the manifests agree with weir's
//! own configuration loader and command line.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use common::deps;
use serde_json::Value;
use weir::cli::Cli;
use weir::config::WeirConfig;
use weir::metrics::catalogue::{Kind, CATALOGUE};

fn ops(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops").join(path)
}

/// Runs `tool args` and fails with its output unless it succeeds.
fn run_ok(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        tool.display()
    );
    text
}

fn promtool() -> PathBuf {
    deps::provision("prometheus").with_file_name("promtool")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_rules() {
    let config = ops("prometheus/prometheus.yml");
    let text = run_ok(&promtool(), &["check", "config", path_str(&config)]);
    assert!(text.contains("1 rule files found"), "{text}");
    let rules = ops("prometheus/weir-alerts.yml");
    let text = run_ok(&promtool(), &["check", "rules", path_str(&rules)]);
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    let tests = ops("prometheus/weir-alerts.test.yml");
    let text = run_ok(&promtool(), &["test", "rules", path_str(&tests)]);
    assert!(text.contains("SUCCESS"), "{text}");
    // Every alert of the rules file is exercised.
    let rules = std::fs::read_to_string(ops("prometheus/weir-alerts.yml")).unwrap();
    let tested = std::fs::read_to_string(&tests).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tested.contains(&format!("alertname: {name}\n")),
                "alert {name} has no promtool test"
            );
        }
    }
}

/// The `weir_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("weir_") {
        let start = at + found;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'_'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        if before_ok {
            names.insert(text[start..end].to_string());
        }
        at = end;
    }
    names
}

/// Whether `name` is exported: a catalogue metric, or the `_bucket`, `_sum` or
/// `_count` series of a catalogue histogram.
fn exported(name: &str) -> bool {
    CATALOGUE.iter().any(|def| {
        def.name == name
            || (def.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(def.name)))
    })
}

#[test]
fn every_metric_named_in_ops_is_exported() {
    let files = [
        "prometheus/weir-alerts.yml",
        "prometheus/weir-alerts.test.yml",
        "grafana/weir-dashboard.json",
    ];
    let mut all = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(ops(file)).unwrap();
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        for name in &names {
            assert!(
                exported(name),
                "{file} names {name}, which weir does not export"
            );
        }
        all.extend(names);
    }
    // The dashboard and alerts cover what the issue asks for.
    for needed in [
        "weir_records_in_total",
        "weir_backpressure_ratio",
        "weir_watermark_lag_seconds",
        "weir_checkpoint_duration_seconds_bucket",
        "weir_checkpoints_failed_total",
        "weir_checkpoint_interval_seconds",
        "weir_restarts_total",
        "weir_kafka_consumer_lag_records",
        "weir_dead_letters_total",
    ] {
        assert!(all.contains(needed), "nothing in ops/ uses {needed}");
    }
    assert!(!exported("weir_no_such_metric"));
    assert!(
        !exported("weir_records_in_total_bucket"),
        "only histograms have buckets"
    );
}

#[test]
fn the_grafana_dashboard_is_valid_json_with_a_query_on_every_panel() {
    let text = std::fs::read_to_string(ops("grafana/weir-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "weir-overview");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job"]);
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{panel}"
        );
        if panel["type"] == "row" {
            continue;
        }
        titles.push(panel["title"].as_str().unwrap().to_string());
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert!(!metric_names(expr).is_empty(), "{expr}");
            // Balanced brackets: a cheap guard against a truncated query.
            for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
                assert_eq!(
                    expr.matches(open).count(),
                    expr.matches(close).count(),
                    "{expr}"
                );
            }
        }
    }
    for wanted in [
        "Records in",
        "Backpressure",
        "Watermark lag",
        "Checkpoint duration",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(wanted)),
            "no {wanted} panel in {titles:?}"
        );
    }
}

/// Every YAML document of `file`, parsed by PyYAML (Debian's python3-yaml) into JSON.
fn yaml_documents(file: &Path) -> Vec<Value> {
    deps::provision("yamllint");
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            path_str(file),
        ])
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "{} does not parse as YAML:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn yamllint_accepts_every_yaml_file_in_ops() {
    let yamllint = deps::provision("yamllint");
    let config = ops(".yamllint");
    run_ok(
        &yamllint,
        &[
            "--strict",
            "-c",
            path_str(&config),
            path_str(&ops("k8s")),
            path_str(&ops("prometheus")),
        ],
    );
}

/// `args` as the `weir` command line takes them.
fn parses_as_weir(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("weir").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("weir does not take {args:?}: {e}"))
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other_and_with_weir() {
    let one = |file: &str| {
        let docs = yaml_documents(&ops(file));
        assert_eq!(docs.len(), 1, "{file}: one document");
        docs.into_iter().next().unwrap()
    };
    let config_map = one("k8s/configmap.yaml");
    let service = one("k8s/service.yaml");
    let set = one("k8s/statefulset.yaml");
    assert_eq!(
        (
            config_map["kind"].as_str(),
            config_map["apiVersion"].as_str()
        ),
        (Some("ConfigMap"), Some("v1"))
    );
    assert_eq!(
        (service["kind"].as_str(), service["apiVersion"].as_str()),
        (Some("Service"), Some("v1"))
    );
    assert_eq!(
        (set["kind"].as_str(), set["apiVersion"].as_str()),
        (Some("StatefulSet"), Some("apps/v1"))
    );

    // The configuration is one weir accepts.
    let toml = config_map["data"]["weir.toml"]
        .as_str()
        .expect("data.weir.toml");
    let config = WeirConfig::from_toml_str(toml, "k8s/configmap.yaml")
        .unwrap_or_else(|e| panic!("the ConfigMap's weir.toml: {e}"));
    assert!(config.http.enabled && config.metrics.enabled);

    let pod = &set["spec"]["template"];
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    for selector in [
        &set["spec"]["selector"]["matchLabels"],
        &service["spec"]["selector"],
    ] {
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(
                labels.get(k),
                Some(v),
                "selector {k} does not match the pods"
            );
        }
    }
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    assert_eq!(
        service["spec"]["clusterIP"], "None",
        "a StatefulSet's Service is headless"
    );

    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    };
    assert_eq!(port("http"), u64::from(config.http.addr.port()));
    assert_eq!(port("metrics"), u64::from(config.metrics.addr.port()));
    assert!(
        config.http.addr.ip().is_unspecified() && config.metrics.addr.ip().is_unspecified(),
        "in a pod the servers must listen on all interfaces"
    );
    // Beyond loopback the status API's mutating endpoints need a token: the pod
    // takes it from a Secret (or the configuration names a token file).
    let token_from_secret = container["env"].as_array().is_some_and(|env| {
        env.iter().any(|e| {
            e["name"] == weir::status::auth::TOKEN_ENV
                && e["valueFrom"]["secretKeyRef"]["key"].is_string()
        })
    });
    assert!(
        token_from_secret || config.http.token_file.is_some(),
        "the status API listens on {} with no token for its mutating endpoints",
        config.http.addr
    );
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"],
        port("metrics").to_string()
    );
    for p in service["spec"]["ports"].as_array().unwrap() {
        let target = p["targetPort"].as_str().unwrap();
        assert_eq!(
            p["port"].as_u64(),
            Some(port(target)),
            "Service port {target}"
        );
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");

    // The arguments are a weir command line whose --config is the mounted ConfigMap.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let cli = parses_as_weir(&args);
    let weir::cli::Command::Run(run) = cli.command else {
        panic!("the container runs `weir run`");
    };
    let config_path = run.engine.config.expect("--config");
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == volume)
            .and_then(|m| m["mountPath"].as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no mount of volume {volume}"))
    };
    assert_eq!(config_path.parent(), Some(mount_of("config").as_path()));
    assert_eq!(
        config_path.file_name().and_then(|n| n.to_str()),
        Some("weir.toml")
    );
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let config_volume = volumes.iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(
        config_volume["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    // State lives on the per-pod volume claim.
    assert_eq!(
        config.state.dir.as_deref(),
        Some(mount_of("state").as_path())
    );
    assert_eq!(
        set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "state"
    );
}

#[test]
fn systemd_verifies_the_unit_and_weir_takes_its_command_line() {
    let analyze = deps::provision("systemd-analyze");
    let unit = std::fs::read_to_string(ops("systemd/weir.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/weir"));
    let args: Vec<&str> = words.collect();
    let cli = parses_as_weir(&args);
    let weir::cli::Command::Run(run) = cli.command else {
        panic!("the unit runs `weir run`");
    };
    assert_eq!(
        run.engine.state_dir.as_deref(),
        Some(Path::new("/var/lib/weir"))
    );
    assert!(
        unit.contains("\nStateDirectory=weir\n"),
        "/var/lib/weir is the unit's state directory"
    );
    assert!(
        unit.contains("\nKillSignal=SIGINT\n"),
        "stopping drains the job"
    );
    // systemd-analyze checks the binary exists: verify a copy that runs this build.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("weir.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/weir", env!("CARGO_BIN_EXE_weir")),
    )
    .unwrap();
    let text = run_ok(&analyze, &["verify", path_str(&copy)]);
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("weir.service"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze: {complaints:?}");
}

#[test]
fn the_kubernetes_cluster_manifests_run_weir_nodes_on_their_etcd() {
    let etcd_docs = yaml_documents(&ops("k8s/cluster/etcd.yaml"));
    let node_docs = yaml_documents(&ops("k8s/cluster/nodes.yaml"));
    let config_map = yaml_documents(&ops("k8s/configmap.yaml")).remove(0);
    let kind = |docs: &[Value], kind: &str| -> Value {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let (etcd_service, etcd_set) = (kind(&etcd_docs, "Service"), kind(&etcd_docs, "StatefulSet"));
    let (node_service, node_set) = (kind(&node_docs, "Service"), kind(&node_docs, "StatefulSet"));
    for (service, set) in [(&etcd_service, &etcd_set), (&node_service, &node_set)] {
        assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
        assert_eq!(service["spec"]["clusterIP"], "None");
        let labels = &set["spec"]["template"]["metadata"]["labels"];
        for (k, v) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                &labels[k], v,
                "{} selects its pods",
                service["metadata"]["name"]
            );
        }
    }
    let etcd_port = etcd_service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "client")
        .and_then(|p| p["port"].as_u64())
        .expect("etcd's client port");

    // The nodes run `weir node` on that etcd, under their pod names, with the
    // ConfigMap's configuration, and are ready without a job.
    let pod = &node_set["spec"]["template"];
    assert!(node_set["spec"]["replicas"].as_u64().unwrap_or(0) >= 3);
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let cli = parses_as_weir(&args);
    let weir::cli::Command::Node(node) = cli.command else {
        panic!("the nodes run `weir node`");
    };
    assert_eq!(
        node.coordinator,
        format!(
            "etcd://{}:{etcd_port}",
            etcd_service["metadata"]["name"].as_str().unwrap()
        )
    );
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        var("WEIR_NODE_ID").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert!(
        var(weir::status::auth::TOKEN_ENV).unwrap()["valueFrom"]["secretKeyRef"]["key"].is_string()
    );
    let config_path = node.engine.config.expect("--config");
    assert_eq!(config_path, PathBuf::from("/etc/weir/weir.toml"));
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    assert!(volumes
        .iter()
        .any(|v| v["configMap"]["name"] == config_map["metadata"]["name"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    let toml = config_map["data"]["weir.toml"].as_str().unwrap();
    let config = WeirConfig::from_toml_str(toml, "k8s/configmap.yaml").unwrap();
    let http_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .and_then(|p| p["containerPort"].as_u64());
    assert_eq!(http_port, Some(u64::from(config.http.addr.port())));
}
