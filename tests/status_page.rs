//! The status page of a running `weir run demo` node, loaded in headless Chromium
//! (Debian's `chromium`, provisioned by `scripts/test-deps.sh chromium`): the job's
//! stage names and figures render. Also: the CLI's status server flags.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::node::WeirProcess;
use common::{deps, http};

/// A headless Chromium run, killed and reaped on drop.
struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Loads `url`, lets its scripts run for `budget` of virtual time, and returns
    /// the DOM as rendered.
    fn dump_dom(url: &str, budget: Duration) -> String {
        let binary = deps::provision("chromium");
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--virtual-time-budget={}", budget.as_millis()))
            .arg("--dump-dom")
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium");
        let mut run = Chromium {
            child,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while run.child.try_wait().expect("chromium status").is_none() {
            assert!(
                Instant::now() < deadline,
                "chromium did not finish within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut dom = String::new();
        std::io::Read::read_to_string(run.child.stdout.as_mut().unwrap(), &mut dom).unwrap();
        dom
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` as it appears in serialised HTML.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The integers in cells of class `class`, in order.
fn cells(dom: &str, class: &str) -> Vec<u64> {
    let open = format!("class=\"{class}\">");
    dom.match_indices(&open)
        .filter_map(|(at, _)| {
            let rest = &dom[at + open.len()..];
            rest[..rest.find('<')?].parse().ok()
        })
        .collect()
}

#[test]
fn the_page_of_a_running_node_renders_its_stages_and_figures() {
    let state = tempfile::tempdir().unwrap();
    let mut node = WeirProcess::checkpointed_demo(state.path(), &["--no-metrics"]);
    let addr = node.status_addr();
    // Wait until it has run a checkpoint, so every section has figures.
    let deadline = Instant::now() + Duration::from_secs(20);
    while http::get(addr, "/api/jobs").json()["jobs"][0]["checkpoints"]["completed"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "no checkpoint:\n{}",
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = http::get(addr, "/api/jobs").json()["jobs"][0].clone();
    let dom = Chromium::dump_dom(&format!("http://{addr}/"), Duration::from_secs(3));
    let after = http::get(addr, "/api/jobs").json()["jobs"][0].clone();

    assert!(
        dom.contains(r#"<span id="job-name" class="">demo</span>"#),
        "{dom}"
    );
    assert!(dom.contains(r#"class="state running">running<"#), "{dom}");
    let stages = after["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    for stage in stages {
        let name = escaped(stage["name"].as_str().unwrap());
        assert!(
            dom.contains(&format!(r#"class="stage-name">{name}<"#)),
            "stage {name} missing from the table:\n{dom}"
        );
        assert!(
            dom.contains(&format!("<title>{name}</title>")),
            "graph node {name}"
        );
    }
    // The records-in figures are the node's: between what the API said before the
    // page loaded and after.
    let shown = cells(&dom, "records-in");
    assert_eq!(shown.len(), 2, "{dom}");
    for (i, figure) in shown.iter().enumerate() {
        let low = before["stages"][i]["records_in"].as_u64().unwrap();
        let high = after["stages"][i]["records_in"].as_u64().unwrap();
        assert!(
            low > 0 && (low..=high).contains(figure),
            "stage {i}: {low} <= {figure} <= {high}"
        );
    }
    assert_eq!(cells(&dom, "parallelism"), vec![2, 2]);
    // The checkpoint history lists completed epochs.
    let completed = dom.matches(r#"class="epoch completed""#).count();
    assert!(completed >= 1, "{dom}");
    assert!(
        dom.contains(r#"id="checkpoints-completed">completed "#),
        "{dom}"
    );
}

#[test]
fn a_taken_status_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut node = WeirProcess::start(&[
        "run",
        "demo",
        "--duration",
        "1",
        "--no-metrics",
        "--http-addr",
        &addr,
    ]);
    assert!(!node.wait(), "weir must fail");
    let text = node.stderr();
    assert!(
        text.contains(&format!("cannot serve the status API on {addr}")),
        "{text}"
    );
}

#[test]
fn no_http_serves_nothing() {
    let mut node = WeirProcess::start(&[
        "run",
        "demo",
        "--limit",
        "1000",
        "--no-metrics",
        "--no-http",
    ]);
    assert!(node.wait(), "{}", node.stderr());
    assert!(!node.stderr().contains("status API"), "{}", node.stderr());
}

#[test]
fn the_page_of_a_node_shows_its_cluster_and_its_jobs() {
    let mut node = WeirProcess::start(&[
        "node",
        "--node-id",
        "page-node",
        "--key-partitions",
        "16",
        "--no-metrics",
        "--no-progress",
    ]);
    let addr = node.served_at("[weir] node API and status page on ");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http::get(addr, "/api/cluster").json()["ring_generation"] == 0 {
        assert!(Instant::now() < deadline, "no ring:\n{}", node.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let dom = Chromium::dump_dom(&format!("http://{addr}/"), Duration::from_secs(3));
    assert!(dom.contains(r#"<section id="cluster-section">"#), "{dom}");
    assert!(dom.contains("this node: page-node (leader)"), "{dom}");
    assert_eq!(cells(&dom, "partitions"), vec![16], "{dom}");
    assert!(dom.contains("<td>0-15</td>"), "{dom}");
}
