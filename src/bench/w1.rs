//! W1: word count with a running count per word in keyed state.

use crate::connector::generator::{splitmix64, W1_VOCABULARY};
use crate::connector::sinks::Counted;
use crate::job::{EngineOptions, JobError};
use crate::jobs;

use super::BenchResult;

/// Runs W1 with `n` words on a node with `options`, checks the result and reports it.
pub fn run(options: EngineOptions, n: u64) -> Result<BenchResult, JobError> {
    BenchResult::measure(
        "w1",
        options,
        n,
        |node| {
            let (job, sink) = jobs::w1(n);
            let report = node.run(job)?;
            Ok((sink, report))
        },
        |sink| check(n, &sink.result()),
    )
}

/// W1's check: the sink received `n` updates, the final counts sum to `n`, and every
/// word's final count equals a single-threaded recount of the generator.
pub fn check(n: u64, counted: &Counted<String, u64>) -> Result<(), String> {
    if counted.received != n {
        return Err(format!(
            "the sink received {} updates, expected {n}",
            counted.received
        ));
    }
    let total: u64 = counted.last.values().sum();
    if total != n {
        return Err(format!("final counts sum to {total}, expected {n}"));
    }
    let mut expected = vec![0u64; W1_VOCABULARY as usize];
    for i in 0..n {
        expected[(splitmix64(i) % W1_VOCABULARY) as usize] += 1;
    }
    let distinct = expected.iter().filter(|&&c| c > 0).count();
    if counted.last.len() != distinct {
        return Err(format!(
            "{} distinct words reached the sink, expected {distinct}",
            counted.last.len()
        ));
    }
    for (word, &count) in &counted.last {
        let id: usize = word
            .strip_prefix('w')
            .and_then(|d| d.parse().ok())
            .filter(|&id: &usize| id < expected.len())
            .ok_or_else(|| format!("the sink received a word that W1 never generates: {word:?}"))?;
        if expected[id] != count {
            return Err(format!(
                "final count of {word} is {count}, expected {}",
                expected[id]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::generator::w1_word;

    fn exact(n: u64) -> Counted<String, u64> {
        let mut c = Counted::default();
        for i in 0..n {
            *c.last.entry(w1_word(i)).or_insert(0) += 1;
        }
        c.received = n;
        c
    }

    #[test]
    fn the_check_passes_on_exact_counts_and_fails_on_any_error() {
        let good = exact(5_000);
        assert_eq!(check(5_000, &good), Ok(()));

        let mut dropped = good.clone();
        dropped.received -= 1;
        assert!(check(5_000, &dropped).unwrap_err().contains("updates"));

        let mut wrong = good.clone();
        let word = w1_word(0);
        *wrong.last.get_mut(&word).unwrap() += 1;
        let first = w1_word(1);
        *wrong.last.get_mut(&first).unwrap() -= 1;
        let err = check(5_000, &wrong).unwrap_err();
        assert!(err.contains("final count"), "{err}");

        let mut missing = good;
        missing.last.remove(&word);
        assert!(check(5_000, &missing).is_err());
    }
}
