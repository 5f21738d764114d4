//! Transient faults injected into operators: a panic the first time a chosen record
//! goes through, so that the job restarts and the record goes through afterwards.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Panics the first time it sees each of its target records (a transient fault:
/// after the restart the record goes through). Clones share what fired.
#[derive(Clone, Default)]
pub struct Faults {
    targets: Arc<HashSet<u64>>,
    fired: Arc<Mutex<HashSet<u64>>>,
}

impl Faults {
    /// `count` targets drawn from `seed` (SplitMix64), spread over `0..n`.
    pub fn seeded(seed: u64, count: usize, n: u64) -> Self {
        let mut targets = HashSet::new();
        let mut x = seed;
        while targets.len() < count {
            x = weir::connector::generator::splitmix64(x);
            targets.insert(x % n);
        }
        Faults {
            targets: Arc::new(targets),
            fired: Arc::default(),
        }
    }

    /// Faults at exactly these records.
    pub fn at(records: &[u64]) -> Self {
        Faults {
            targets: Arc::new(records.iter().copied().collect()),
            fired: Arc::default(),
        }
    }

    /// Panics if `record` is a target that has not fired yet.
    pub fn check(&self, record: u64) {
        if self.targets.contains(&record) {
            let first = self
                .fired
                .lock()
                .map(|mut f| f.insert(record))
                .unwrap_or(false);
            if first {
                panic!("injected fault at record {record}");
            }
        }
    }

    /// How many targets fired.
    pub fn fired(&self) -> usize {
        self.fired.lock().map(|f| f.len()).unwrap_or(0)
    }
}
