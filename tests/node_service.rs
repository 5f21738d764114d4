//! `weir node` runs the jobs submitted to it: the real binary as a node process on
//! free 127.0.0.1 ports, driven by `weir job ...` commands (and the API they use):
//! submit by definition name with parameters, list, cancel, a savepoint, the token
//! on the mutating commands, and a clean stop on SIGTERM.

mod common;

use std::process::Output;
use std::time::Duration;

use common::etcd::EtcdServer;
use common::http;
use common::node::{weir_command, WeirProcess};
use common::wait_until;

/// `weir job ARGS...` against the node at `addr`, with `token` if given.
fn job(addr: std::net::SocketAddr, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = weir_command();
    cmd.arg("job")
        .args(args)
        .arg("--node")
        .arg(format!("http://{addr}"));
    cmd.env_remove("WEIR_HTTP_TOKEN");
    if let Some(token) = token {
        cmd.env("WEIR_HTTP_TOKEN", token);
    }
    cmd.output().expect("running weir job")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The state of job `name` in `weir job list`, if listed.
fn state_of(addr: std::net::SocketAddr, token: &str, name: &str) -> Option<String> {
    let out = job(addr, Some(token), &["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["name"] == name)
        .and_then(|j| j["state"].as_str().map(str::to_string))
}

#[test]
fn a_node_runs_submitted_jobs_side_by_side_lists_cancels_and_stops() {
    const TOKEN: &str = "node-test-token-0123456789";
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let mut node = WeirProcess::start_with_env(
        &[
            "node",
            "--workers",
            "2",
            "--checkpoint-interval-ms",
            "100",
            "--state-dir",
            state_dir,
            "--no-progress",
        ],
        &[("WEIR_HTTP_TOKEN", TOKEN)],
    );
    let addr = node.served_at("[weir] node API and status page on ");

    // The definitions: the built-in jobs.
    let defs = json(&job(addr, None, &["definitions"]));
    let names: Vec<&str> = defs["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for name in ["demo", "w1", "w2", "wordcount"] {
        assert!(names.contains(&name), "{names:?}");
    }

    // Mutating commands need the token.
    let refused = job(addr, None, &["submit", "w1", "--set", "n=1000"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // An endless job and a bounded one, side by side.
    let demo = job(addr, Some(TOKEN), &["submit", "demo"]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert_eq!(json(&demo)["job"], "demo");
    let w1 = job(addr, Some(TOKEN), &["submit", "w1", "--set", "n=20000"]);
    assert!(
        w1.status.success(),
        "{}",
        String::from_utf8_lossy(&w1.stderr)
    );
    let w1_name = json(&w1)["job"].as_str().unwrap().to_string();
    wait_until("w1 finished", || {
        state_of(addr, TOKEN, &w1_name).as_deref() == Some("finished")
    });
    wait_until("the demo runs", || {
        state_of(addr, TOKEN, "demo").as_deref() == Some("running")
    });

    // A second demo while the first runs is refused; bad parameters are refused.
    let twice = job(addr, Some(TOKEN), &["submit", "demo"]);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("409"));
    let typo = job(addr, Some(TOKEN), &["submit", "w1", "--set", "nn=5"]);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("nn"));

    // A savepoint of the running demo, then cancel it.
    let sp = job(addr, Some(TOKEN), &["savepoint", "demo"]);
    assert!(
        sp.status.success(),
        "{}",
        String::from_utf8_lossy(&sp.stderr)
    );
    let path = json(&sp)["path"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&path).exists(), "{path}");
    let cancel = job(addr, Some(TOKEN), &["cancel", "demo"]);
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    wait_until("the demo is cancelled", || {
        state_of(addr, TOKEN, "demo").as_deref() == Some("cancelled")
    });
    let gone = job(addr, Some(TOKEN), &["cancel", "demo"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404"));

    // A job submitted again after its cancellation runs again (from its snapshots).
    let again = job(
        addr,
        Some(TOKEN),
        &["submit", "demo", "--set", "limit=2000"],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // SIGTERM stops the node: its jobs are cancelled and it exits cleanly.
    let status = node.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", node.stderr());
}

/// A `weir node` in the cluster on `etcd`, as `id`.
fn cluster_node(etcd: &EtcdServer, id: &str) -> (WeirProcess, std::net::SocketAddr) {
    let coordinator = etcd.endpoint().replace("http://", "etcd://");
    let mut node = WeirProcess::start(&[
        "node",
        "--coordinator",
        &coordinator,
        "--node-id",
        id,
        "--lease-ms",
        "1000",
        "--key-partitions",
        "16",
        "--no-progress",
    ]);
    let addr = node.served_at("[weir] node API and status page on ");
    (node, addr)
}

/// `GET /api/cluster` of the node at `addr`.
fn cluster(addr: std::net::SocketAddr) -> serde_json::Value {
    http::get(addr, "/api/cluster").json()
}

/// The partitions each node owns in `view`'s ring.
fn shares(view: &serde_json::Value) -> Vec<(String, u64)> {
    view["ring"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    (
                        s["node"].as_str().unwrap_or("").to_string(),
                        s["partitions"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn nodes_on_etcd_share_the_ring_and_a_killed_nodes_partitions_go_to_the_survivor() {
    let etcd = EtcdServer::start();
    let (mut n1, a1) = cluster_node(&etcd, "n1");
    wait_until("n1 leads and owns every partition", || {
        let v = cluster(a1);
        v["leading"] == true && shares(&v) == vec![("n1".to_string(), 16)]
    });
    let (mut n2, a2) = cluster_node(&etcd, "n2");
    wait_until("n2 joins and takes half", || {
        shares(&cluster(a1)) == vec![("n1".to_string(), 8), ("n2".to_string(), 8)]
    });
    let seen_by_n2 = cluster(a2);
    assert_eq!(seen_by_n2["leader"][0], "n1");
    assert_eq!(seen_by_n2["leading"], false);
    assert_eq!(seen_by_n2["members"].as_array().map(Vec::len), Some(2));
    // n1, the leader, is killed: its lease expires, n2 leads and owns everything.
    n1.kill();
    wait_until("n2 leads alone", || {
        let v = cluster(a2);
        v["leading"] == true
            && v["members"].as_array().map(Vec::len) == Some(1)
            && shares(&v) == vec![("n2".to_string(), 16)]
    });
    let status = n2.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", n2.stderr());
}
