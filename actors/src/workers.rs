//! The worker pool: a fixed set of threads, one actix arbiter each, on which every
//! partition actor of the node runs.

use actix::{Arbiter, ArbiterHandle};

/// A fixed set of worker threads (actix arbiters). Partition actors are placed on them
/// round-robin; each actor stays on its thread for life.
pub struct WorkerPool {
    arbiters: Vec<Arbiter>,
}

impl WorkerPool {
    /// Starts `workers` threads (at least one). Must be called inside a running actix
    /// system.
    pub fn start(workers: usize) -> Self {
        WorkerPool {
            arbiters: (0..workers.max(1)).map(|_| Arbiter::new()).collect(),
        }
    }

    /// How many worker threads there are.
    pub fn len(&self) -> usize {
        self.arbiters.len()
    }

    /// Always false: a pool has at least one worker.
    pub fn is_empty(&self) -> bool {
        self.arbiters.is_empty()
    }

    /// The worker that should host the `index`-th actor.
    pub fn worker(&self, index: usize) -> ArbiterHandle {
        self.arbiters[index % self.arbiters.len()].handle()
    }

    /// Stops every worker thread and waits for it to end.
    pub fn shutdown(self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        for arbiter in self.arbiters {
            let _ = arbiter.join();
        }
    }
}
