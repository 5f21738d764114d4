//! W2: tumbling event-time windows over out-of-order events.

use std::sync::atomic::Ordering;

use rustc_hash::FxHashMap;

use crate::connector::generator::W2Event;
use crate::connector::sinks::Counted;
use crate::job::{EngineOptions, JobError};
use crate::jobs;

use super::BenchResult;

/// Runs W2 with `n` events on a node with `options`, checks the result and reports it;
/// `max_drift` aligns the sources' watermarks (see [`jobs::w2_aligned`]).
pub fn run(
    options: EngineOptions,
    n: u64,
    max_drift: Option<std::time::Duration>,
) -> Result<BenchResult, JobError> {
    BenchResult::measure(
        "w2",
        options,
        n,
        |node| {
            let (job, sink, late) = jobs::w2_aligned(n, max_drift);
            let report = node.run(job)?;
            Ok(((sink, late), report))
        },
        |(sink, late)| check(n, &sink.result(), late.load(Ordering::Relaxed)),
    )
}

/// W2's check: no event was late; one row per (key, window) holding events, none
/// twice; counts sum to `n` and sums to the sum of `i % 1000`; and every row equals a
/// single-threaded recount of the generator.
pub fn check(n: u64, rows: &Counted<(u64, i64), (u64, u64)>, late: u64) -> Result<(), String> {
    if late != 0 {
        return Err(format!(
            "{late} events were late; the 500 ms bound covers W2's disorder"
        ));
    }
    if rows.received != rows.last.len() as u64 {
        return Err(format!(
            "{} rows for {} distinct (key, window) pairs: some window fired twice",
            rows.received,
            rows.last.len()
        ));
    }
    let count: u64 = rows.last.values().map(|v| v.0).sum();
    let sum: u64 = rows.last.values().map(|v| v.1).sum();
    let expected_sum: u64 = (0..n).map(|i| i % 1_000).sum();
    if count != n {
        return Err(format!("counts sum to {count}, expected {n}"));
    }
    if sum != expected_sum {
        return Err(format!("sums sum to {sum}, expected {expected_sum}"));
    }
    let mut expected: FxHashMap<(u64, i64), (u64, u64)> = FxHashMap::default();
    for i in 0..n {
        let e = W2Event::generate(i);
        let slot = expected
            .entry((e.key, e.time_ms - e.time_ms.rem_euclid(1_000)))
            .or_insert((0, 0));
        slot.0 += 1;
        slot.1 += e.value;
    }
    if expected.len() != rows.last.len() {
        return Err(format!(
            "{} rows, expected {}",
            rows.last.len(),
            expected.len()
        ));
    }
    for (k, v) in &expected {
        match rows.last.get(k) {
            Some(got) if got == v => {}
            Some(got) => {
                return Err(format!(
                    "key {} window {}: got {got:?}, expected {v:?}",
                    k.0, k.1
                ))
            }
            None => return Err(format!("no row for key {} window {}", k.0, k.1)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(n: u64) -> Counted<(u64, i64), (u64, u64)> {
        let mut c = Counted::default();
        for i in 0..n {
            let e = W2Event::generate(i);
            let slot = c
                .last
                .entry((e.key, e.time_ms / 1_000 * 1_000))
                .or_insert((0, 0));
            slot.0 += 1;
            slot.1 += e.value;
        }
        c.received = c.last.len() as u64;
        c
    }

    #[test]
    fn the_check_passes_on_exact_rows_and_fails_on_any_error() {
        let good = exact(30_000);
        assert_eq!(check(30_000, &good, 0), Ok(()));
        assert!(check(30_000, &good, 1).unwrap_err().contains("late"));

        let mut dup = good.clone();
        dup.received += 1;
        assert!(check(30_000, &dup, 0).unwrap_err().contains("twice"));

        let mut moved = good.clone();
        let (&k1, _) = moved.last.iter().next().unwrap();
        let k2 = *moved.last.keys().find(|k| **k != k1).unwrap();
        moved.last.get_mut(&k1).unwrap().0 += 1;
        moved.last.get_mut(&k2).unwrap().0 -= 1;
        assert!(check(30_000, &moved, 0).is_err());
    }
}
