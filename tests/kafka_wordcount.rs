//! `examples/kafka_wordcount.rs` end to end against a Tansu broker (a separate
//! process, 127.0.0.1): lines produced to the input topic become running counts on
//! the output topic; the example is interrupted (SIGINT), started again with the same
//! state directory, fed more lines, and stopped with SIGTERM. With `--exactly-once`
//! every word's counts, as a read_committed consumer sees them, are 1, 2, ..., n
//! exactly once; at least once, none is missing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tansu::{create_topic, produce_to, TansuBroker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 2;

/// The example's binary: built by `cargo test` with the other examples; built here
/// when only this test target was asked for.
fn example_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_weir"))
        .parent()
        .expect("the target directory")
        .join("examples");
    let binary = dir.join("kafka_wordcount");
    if !binary.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "kafka_wordcount"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example kafka_wordcount");
        assert!(status.success(), "building the example failed");
    }
    binary
}

/// The running example, killed and reaped on drop if still running.
struct Example(Child);

impl Example {
    fn start(bootstrap: &str, state: &Path, exactly_once: bool) -> Example {
        let mut command = Command::new(example_binary());
        if exactly_once {
            command.arg("--exactly-once");
        }
        let child = command
            .args([
                "--brokers",
                bootstrap,
                "--input",
                "lines",
                "--output",
                "counts",
            ])
            .arg("--state-dir")
            .arg(state)
            .args([
                "--workers",
                "2",
                "--checkpoint-interval-ms",
                "200",
                "--no-progress",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example");
        Example(child)
    }

    /// Sends `signal` and waits (at most 60 s) for a successful exit.
    fn stop_with(mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                assert!(status.success(), "the example exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the example did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A read_committed reader of the output topic: every count seen, per word, in
/// order.
struct Output {
    consumer: BaseConsumer,
    counts: BTreeMap<String, Vec<u64>>,
}

impl Output {
    fn new(bootstrap: &str) -> Output {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "kafka-wordcount-test")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .expect("an output consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset("counts", p, Offset::Beginning)
                .expect("a partition");
        }
        consumer.assign(&tpl).expect("assign the output");
        Output {
            consumer,
            counts: BTreeMap::new(),
        }
    }

    /// Reads whatever arrives within `time`.
    fn drain(&mut self, time: Duration) {
        let until = Instant::now() + time;
        while Instant::now() < until {
            self.poll_one();
        }
    }

    /// Polls once (100 ms at most), noting the count received, if any.
    fn poll_one(&mut self) {
        let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) else {
            return;
        };
        let word = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
        let count = std::str::from_utf8(m.payload().unwrap_or_default())
            .unwrap()
            .parse::<u64>()
            .unwrap();
        drop(m);
        self.counts.entry(word).or_default().push(count);
    }

    /// Reads until every word of `want` has reached its count (60 s at most).
    fn read_until(&mut self, want: &BTreeMap<String, u64>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !want
            .iter()
            .all(|(w, n)| self.counts.get(w).and_then(|c| c.last()) == Some(n))
        {
            assert!(
                Instant::now() < deadline,
                "the output did not reach {want:?}; it has {:?}",
                self.counts
            );
            self.poll_one();
        }
    }
}

/// `lines` lines of words from a small vocabulary, spread over the partitions, and
/// the running totals they add to `totals`.
fn lines(
    from: usize,
    lines: usize,
    totals: &mut BTreeMap<String, u64>,
) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    const WORDS: [&str; 7] = ["the", "weir", "holds", "water", "back", "river", "flows"];
    (from..from + lines)
        .map(|i| {
            let words: Vec<&str> = (0..1 + i % 5).map(|j| WORDS[(i * 3 + j) % 7]).collect();
            for w in &words {
                *totals.entry((*w).to_owned()).or_default() += 1;
            }
            let partition = (i % PARTITIONS as usize) as i32;
            (
                partition,
                format!("line{i}").into_bytes(),
                words.join(" ").into_bytes(),
            )
        })
        .collect()
}

/// Runs the example over two batches of lines, interrupted with SIGINT between them
/// and stopped with SIGTERM at the end; returns the words' totals and every count
/// the output topic received, per word.
fn run_twice(exactly_once: bool) -> (BTreeMap<String, u64>, BTreeMap<String, Vec<u64>>) {
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "lines", PARTITIONS);
    create_topic(&bootstrap, "counts", PARTITIONS);
    let state = tempfile::tempdir().unwrap();
    let mut totals = BTreeMap::new();
    let mut first = lines(0, 60, &mut totals);
    // A value that is not UTF-8: a dead letter, not a crash or a silent drop.
    first.push((0, b"bad".to_vec(), vec![0xff, 0xfe, b' ']));
    produce_to(&bootstrap, "lines", &first);

    let example = Example::start(&bootstrap, state.path(), exactly_once);
    let mut output = Output::new(&bootstrap);
    output.read_until(&totals);
    example.stop_with("-INT");
    let dead = std::fs::read_to_string(state.path().join("dead-letters.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("offset"), "{dead}");

    let example = Example::start(&bootstrap, state.path(), exactly_once);
    produce_to(&bootstrap, "lines", &lines(60, 60, &mut totals));
    output.read_until(&totals);
    example.stop_with("-TERM");
    output.drain(Duration::from_secs(1));
    assert_eq!(output.counts.len(), totals.len());
    (totals, output.counts)
}

#[test]
fn the_kafka_wordcount_example_resumes_exactly_once_after_sigint_and_stops_on_sigterm() {
    let (totals, counts) = run_twice(true);
    for (word, n) in &totals {
        let want: Vec<u64> = (1..=*n).collect();
        assert_eq!(counts[word], want, "the counts of {word}");
    }
}

#[test]
fn at_least_once_the_example_loses_no_count_across_a_restart() {
    let (totals, counts) = run_twice(false);
    for (word, n) in &totals {
        // Counts written since the last checkpoint may come again after the
        // restart, but none is missing and the last is the total.
        let mut seen = counts[word].clone();
        assert_eq!(seen.last(), Some(n), "the last count of {word}");
        seen.sort_unstable();
        seen.dedup();
        let want: Vec<u64> = (1..=*n).collect();
        assert_eq!(seen, want, "the counts of {word}");
    }
}
