//! The status API of a running node (`weir::status`): health and readiness through a
//! job's life, `/api/jobs` against what the job did, the savepoint trigger and a
//! restore from the savepoint it returns. Servers bind 127.0.0.1 on a free port and
//! stop when dropped.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{http, Numbers};
use serde_json::{json, Value};
use weir::prelude::*;
use weir::status::auth::ApiToken;
use weir::status::{StatusBoard, StatusServer};

const N: u64 = 40_000;
const KEYS: u64 = 50;

type Ts = fn(&u64) -> i64;

fn event_time(x: &u64) -> i64 {
    *x as i64
}

/// numbers (event time = the number, in ms) -> (x % KEYS, x) -> running sum per key.
fn sums(source: Numbers, sink: CountingSink<u64, u64>) -> Job {
    let ts: Ts = event_time;
    Job::new("sums")
        .source_with_time(
            source,
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(10), ts),
        )
        .map(|x: u64| (x % KEYS, x))
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(sink)
}

fn reference() -> HashMap<u64, u64> {
    let mut sums = HashMap::new();
    for x in 0..N {
        *sums.entry(x % KEYS).or_insert(0) += x;
    }
    sums
}

fn options(state: &std::path::Path) -> EngineOptions {
    let mut o = EngineOptions::for_tests(2);
    o.state_dir = Some(state.to_path_buf());
    o.checkpoint.interval = Some(Duration::from_millis(100));
    o
}

/// Serves `board` (a node's) on a free 127.0.0.1 port.
fn serve(board: StatusBoard) -> StatusServer {
    StatusServer::start("127.0.0.1:0".parse().unwrap(), board, None)
        .expect("status server on a free port")
}

/// Polls `GET path` until `done` holds for its response (10 s at most).
fn wait_for(
    addr: std::net::SocketAddr,
    path: &str,
    done: impl Fn(&http::Response) -> bool,
) -> http::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http::get(addr, path);
        if done(&response) {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never got there; last: {} {}",
            response.status,
            response.body
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn endpoints_follow_a_job_through_its_life() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::new(options(root.path())).unwrap();
    let server = serve(node.status());
    let addr = server.local_addr();

    // Before any job: alive, not ready, no jobs.
    let health = http::get(addr, "/healthz");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    let ready = http::get(addr, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["ready"], json!(false));
    assert_eq!(http::get(addr, "/api/jobs").json(), json!({"jobs": []}));
    assert_eq!(http::get(addr, "/api/jobs/sums").status, 404);

    let sink = CountingSink::new();
    let job = sums(
        Numbers::upto(N).paced(Duration::from_millis(5)),
        sink.clone(),
    );
    let runner = std::thread::spawn(move || node.run(job));

    // While it runs: ready, and the graph as planned.
    let ready = wait_for(addr, "/readyz", |r| r.status == 200);
    assert_eq!(
        ready.json(),
        json!({"ready": true, "job": "sums", "state": "running"})
    );
    let running = wait_for(addr, "/api/jobs/sums", |r| {
        let j = r.json();
        j["stages"][0]["records_in"].as_u64() > Some(0) && j["stages"][0]["watermark_ms"].is_i64()
    })
    .json();
    assert_eq!(running["state"], "running");
    assert_eq!(running["attempt"], 1);
    assert_eq!(running["key_partitions"], 16);
    assert_eq!(
        running["edges"],
        json!([{"from": 0, "to": 1, "kind": "data", "partitioning": "key"}])
    );
    let stages = running["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0]["name"], "source:numbers -> map -> key_by");
    assert_eq!(stages[0]["kind"], "source");
    assert_eq!(stages[1]["name"], "reduce -> sink:counting");
    assert_eq!(stages[1]["kind"], "keyed");
    for stage in stages {
        assert_eq!(stage["parallelism"], 2);
        assert_eq!(stage["partitions"].as_array().unwrap().len(), 2);
        let bp = stage["backpressure"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&bp), "{stage}");
        assert!(["ok", "low", "high"].contains(&stage["backpressure_level"].as_str().unwrap()));
    }
    // Event time: the source's watermark trails what it read (bound 10 ms).
    let watermark = stages[0]["watermark_ms"].as_i64().unwrap();
    assert!((0..N as i64).contains(&watermark), "watermark {watermark}");
    assert!(stages[0]["records_in_per_second"].as_f64().unwrap() >= 0.0);

    let report = runner.join().unwrap().expect("the job finishes");

    // Finished: not ready, and the figures are the job's.
    let ready = http::get(addr, "/readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["state"], "finished");
    let jobs = http::get(addr, "/api/jobs").json();
    let done = &jobs["jobs"][0];
    assert_eq!(done["state"], "finished");
    assert_eq!(done["restarts"], 0);
    for (i, summary) in report.stages.iter().enumerate() {
        let stage = &done["stages"][i];
        assert_eq!(stage["name"], summary.name.as_str());
        assert_eq!(stage["records_in"], summary.records_in, "stage {i}");
        assert_eq!(stage["records_out"], summary.records_out, "stage {i}");
        let per_partition: u64 = stage["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["records_in"].as_u64().unwrap())
            .sum();
        assert_eq!(per_partition, summary.records_in);
    }
    assert_eq!(done["stages"][0]["records_in"], N);
    assert_eq!(done["stages"][1]["records_in"], N);
    let checkpoints = &done["checkpoints"];
    assert_eq!(checkpoints["enabled"], true);
    assert_eq!(checkpoints["interval_ms"], 100);
    assert_eq!(checkpoints["completed"], report.checkpoints.completed);
    assert_eq!(checkpoints["last_epoch"], report.checkpoints.last_epoch);
    let history = checkpoints["history"].as_array().unwrap();
    assert!(
        report.checkpoints.completed >= 2,
        "{:?}",
        report.checkpoints
    );
    assert_eq!(history.len() as u64, report.checkpoints.completed.min(32));
    let last = history.last().unwrap();
    assert_eq!(last["epoch"], report.checkpoints.last_epoch);
    assert_eq!(
        (last["outcome"].clone(), last["is_final"].clone()),
        (json!("completed"), json!(true))
    );
    assert!(history.iter().all(|r| r["bytes"].as_u64().is_some()));
    assert_eq!(
        sink.result().last.into_iter().collect::<HashMap<_, _>>(),
        reference()
    );
    // A savepoint of a finished job is refused.
    let refused = http::post(addr, "/api/jobs/sums/savepoints");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("finished"));
}

#[test]
fn a_savepoint_taken_through_the_api_restores_to_the_same_result() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::new(options(&root.path().join("state"))).unwrap();
    let server = serve(node.status());
    let addr = server.local_addr();
    assert_eq!(http::post(addr, "/api/jobs/sums/savepoints").status, 404);

    let source = Numbers::upto(N).paced(Duration::from_millis(5));
    let emitted = source.emitted.clone();
    let job = sums(source, CountingSink::new());
    let runner = std::thread::spawn(move || node.run(job));
    wait_for(addr, "/readyz", |r| r.status == 200);
    assert_eq!(http::post(addr, "/api/jobs/other/savepoints").status, 404);
    let taken = http::post(addr, "/api/jobs/sums/savepoints?stop=true");
    assert_eq!(taken.status, 200, "{}", taken.body);
    let body = taken.json();
    assert_eq!(body["stopped"], true);
    let path = PathBuf::from(body["path"].as_str().unwrap());
    assert!(path.is_dir(), "{}", path.display());
    let first = runner.join().unwrap().expect("stopped with a savepoint");
    assert_eq!(first.savepoint.as_ref(), Some(&path));
    let read = emitted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read < N, "stopped early ({read} of {N} read)");
    let status = http::get(addr, "/api/jobs/sums").json();
    assert_eq!(status["state"], "finished");
    assert_eq!(status["savepoints"][0]["path"], body["path"]);
    let history = status["checkpoints"]["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|r| r["savepoint"] == true && r["outcome"] == "completed"),
        "{history:?}"
    );

    // Restored from it, the job ends with the sums of a run that never stopped.
    let mut o = options(&root.path().join("state2"));
    o.from_savepoint = Some(path);
    let sink = CountingSink::new();
    let node = Node::new(o).unwrap();
    let restored = node
        .run(sums(Numbers::upto(N), sink.clone()))
        .expect("restored run");
    assert!(restored.restored_from.is_some());
    let status = node
        .status()
        .job("sums")
        .expect("the restored run's status");
    assert_eq!(status.restored_from_epoch, restored.restored_from);
    assert_eq!(
        sink.result().last.into_iter().collect::<HashMap<_, _>>(),
        reference()
    );
}

#[test]
fn a_restart_is_reported_with_its_cause() {
    let root = tempfile::tempdir().unwrap();
    let mut o = options(root.path());
    o.restart = RestartStrategy::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(5),
    };
    o.poison.enabled = false;
    let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = fired.clone();
    let ts: Ts = event_time;
    let job = Job::new("faulty")
        .source_with_time(
            Numbers::upto(N).paced(Duration::from_millis(1)),
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(10), ts),
        )
        .map(move |x: u64| {
            if x == 20_001 && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("injected fault at {x}");
            }
            (x % KEYS, x)
        })
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(CountingSink::new());
    let node = Node::new(o).unwrap();
    let server = serve(node.status());
    let addr = server.local_addr();
    let report = node.run(job).expect("recovers");
    assert_eq!(report.restarts, 1);
    let status = http::get(addr, "/api/jobs/faulty").json();
    assert_eq!(status["state"], "finished");
    assert_eq!(status["restarts"], 1);
    assert_eq!(status["attempt"], 2);
    let cause = status["last_failure"].as_str().unwrap();
    assert!(cause.contains("injected fault at 20001"), "{cause}");
}

#[test]
fn queryable_state_returns_the_value_the_job_emitted_for_each_key() {
    let stop = StopFlag::new();
    let ender = stop.clone();
    let sink = CountingSink::new();
    let job = Job::new("counts")
        .source(Numbers {
            stop: stop.clone(),
            ..Numbers::upto(N).then_idle()
        })
        .map(|x: u64| (x % KEYS, x))
        .group_by_key()
        .reduce(|a: u64, b: u64| a + b)
        .sink(sink.clone());
    let mut o = EngineOptions::for_tests(2);
    o.key_partitions = 16;
    let node = Node::new(o).unwrap();
    let server = serve(node.status());
    let addr = server.local_addr();
    let runner = std::thread::spawn(move || {
        node.run_with(
            job,
            RunControl {
                stop: Some(stop),
                ..Default::default()
            },
        )
    });
    // Every record processed by the keyed stage (the sink merges what it saw only
    // when the job ends, so the status API tells when the input is through).
    wait_for(addr, "/api/jobs/counts", |r| {
        r.json()["stages"][1]["records_in"] == N
    });
    let want = reference();
    let mut queried = HashMap::new();
    let mut owners = std::collections::BTreeSet::new();
    for key in 0..KEYS {
        let read = http::get(
            addr,
            &format!("/api/jobs/counts/stages/1/state/reduce?key={key}"),
        );
        assert_eq!(read.status, 200, "{}", read.body);
        let body = read.json();
        assert_eq!(body["found"], true, "{body}");
        assert_eq!(body["key"], key);
        assert_eq!(body["value"], want[&key], "key {key}: the reference sum");
        queried.insert(key, body["value"].as_u64().unwrap());
        let kp = body["key_partition"].as_u64().unwrap() as u32;
        assert_eq!(
            body["partition"].as_u64().unwrap() as u32,
            weir::partition::owner_of(kp, 16, 2)
        );
        owners.insert(body["partition"].as_u64().unwrap());
    }
    assert_eq!(owners.len(), 2, "keys owned by both actors were answered");
    // A key never seen, malformed keys, unknown states and stages.
    let absent = http::get(addr, "/api/jobs/counts/stages/1/state/reduce?key=999").json();
    assert_eq!(
        (absent["found"].clone(), absent["value"].clone()),
        (json!(false), Value::Null)
    );
    let bad_key = http::get(
        addr,
        "/api/jobs/counts/stages/1/state/reduce?key=%22seven%22",
    );
    assert_eq!(bad_key.status, 400, "{}", bad_key.body);
    assert!(bad_key.json()["error"]
        .as_str()
        .unwrap()
        .contains("does not decode"));
    assert_eq!(
        http::get(addr, "/api/jobs/counts/stages/1/state/reduce").status,
        400
    );
    let unknown = http::get(addr, "/api/jobs/counts/stages/1/state/sums?key=1");
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.body.contains("reduce"),
        "lists the queryable states: {}",
        unknown.body
    );
    let source = http::get(addr, "/api/jobs/counts/stages/0/state/reduce?key=1");
    assert_eq!(source.status, 400, "{}", source.body);
    assert_eq!(
        http::get(addr, "/api/jobs/counts/stages/7/state/reduce?key=1").status,
        404
    );
    assert_eq!(
        http::get(addr, "/api/jobs/other/stages/1/state/reduce?key=1").status,
        404
    );

    // Once the job has ended its state is no longer served.
    let stopping = http::get(addr, "/api/jobs/counts").json();
    assert_eq!(stopping["state"], "running");
    ender.stop();
    runner.join().unwrap().expect("the job finishes");
    // What was queried is what the job emitted last for each key.
    let emitted: HashMap<u64, u64> = sink.result().last.into_iter().collect();
    assert_eq!(emitted, queried);
    let after = http::get(addr, "/api/jobs/counts/stages/1/state/reduce?key=1");
    assert_eq!(after.status, 503, "{}", after.body);
}

#[test]
fn with_a_token_the_mutating_endpoints_refuse_requests_without_it() {
    let node = Node::new(EngineOptions::for_tests(1)).unwrap();
    let token = ApiToken::new("a-test-token-0123456789", "test").unwrap();
    let server = StatusServer::start("127.0.0.1:0".parse().unwrap(), node.status(), Some(token))
        .expect("status server on a free port");
    let addr = server.local_addr();
    let path = "/api/jobs/nothing/savepoints?stop=true";
    let none = http::post(addr, path);
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert!(none.json()["error"].as_str().unwrap().contains("Bearer"));
    let wrong = http::request_with(
        addr,
        "POST",
        path,
        &[("Authorization", "Bearer not-it-0123456789")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    // With the token the request reaches the endpoint (no such job here).
    let right = http::request_with(
        addr,
        "POST",
        path,
        &[("Authorization", "Bearer a-test-token-0123456789")],
    );
    assert_eq!(right.status, 404, "{}", right.body);
    // Reading stays open: probes and dashboards send no token.
    assert_eq!(http::get(addr, "/healthz").status, 200);
    assert_eq!(http::get(addr, "/api/jobs").status, 200);
}

#[test]
fn an_api_beyond_loopback_without_a_token_is_refused_before_binding() {
    let node = Node::new(EngineOptions::for_tests(1)).unwrap();
    // Checked before anything binds: nothing listens on 0.0.0.0 here.
    let err = StatusServer::start("0.0.0.0:0".parse().unwrap(), node.status(), None)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("WEIR_HTTP_TOKEN") && text.contains("loopback"),
        "{text}"
    );
}
