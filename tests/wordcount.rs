//! Word count over real text files equals a count made independently here, through
//! the library and through the `weir` binary.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weir::prelude::*;

/// The project's own prose and code: real text of some size.
fn corpus(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    let mut files: Vec<PathBuf> = ["README.md", "Cargo.toml"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    for sub in ["docs", "src", "src/job", "src/operator", "actors/src/state"] {
        if let Ok(entries) = std::fs::read_dir(root.join(sub)) {
            let mut v: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            files.extend(v);
        }
    }
    for f in files {
        if let Ok(t) = std::fs::read_to_string(&f) {
            text.push_str(&t);
        }
    }
    // Some non-ASCII words, and Windows line endings.
    text.push_str("Übergröße café naïve CAFÉ\r\nüBERGRÖSSE straße\r\n");
    assert!(text.len() > 50_000, "corpus is only {} bytes", text.len());
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// The independent count: same word definition (alphanumeric runs, lowercased), a
/// plain loop and a BTreeMap.
fn count_words(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() {
            word.push(c);
        } else if !word.is_empty() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
            word.clear();
        }
    }
    counts
}

#[test]
fn library_word_count_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = corpus(dir.path());
    let expected = count_words(&std::fs::read_to_string(&path).unwrap());
    for parallelism in [1, 2, 4] {
        let dead = DeadLetters::to_log();
        let (job, sink) = weir::jobs::wordcount(LineSource::file(&path, dead.clone()));
        Node::new(EngineOptions::for_tests(parallelism))
            .unwrap()
            .run(job)
            .unwrap();
        let got: BTreeMap<String, u64> = sink.result().last.into_iter().collect();
        assert_eq!(got, expected, "parallelism {parallelism}");
        assert_eq!(dead.count(), 0);
    }
}

#[test]
fn the_weir_binary_counts_a_file_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = corpus(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"bad \xff line\n");
    std::fs::write(&path, &bytes).unwrap();
    let expected = count_words(&String::from_utf8_lossy(&bytes[..bytes.len() - 11]));

    let out = dir.path().join("counts.tsv");
    let letters = dir.path().join("dead.jsonl");
    let status = common::node::weir_command()
        .args([
            "run",
            "wordcount",
            "--metrics-addr",
            "127.0.0.1:0",
            "--no-progress",
            "--parallelism",
            "2",
            "--workers",
            "2",
        ])
        .arg("--input")
        .arg(&path)
        .arg("--output")
        .arg(&out)
        .arg("--dead-letters")
        .arg(&letters)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let mut got = BTreeMap::new();
    let mut previous = u64::MAX;
    for line in text.lines() {
        let (word, count) = line.split_once('\t').unwrap();
        let count: u64 = count.parse().unwrap();
        assert!(count <= previous, "output is sorted by count, descending");
        previous = count;
        got.insert(word.to_string(), count);
    }
    assert_eq!(got, expected);
    let letters = std::fs::read_to_string(&letters).unwrap();
    assert_eq!(letters.lines().count(), 1, "{letters}");
    assert!(
        letters.contains("not valid UTF-8") && letters.contains("corpus.txt"),
        "{letters}"
    );
}
