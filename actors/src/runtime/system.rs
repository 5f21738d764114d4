//! The actor system a run's attempts execute in.

use std::future::Future;

/// The actor system of one run: the thread that calls [`Runtime::block_on`] drives
/// the supervisors and the checkpoint coordinator, and the worker pool started inside
/// it hosts the partition actors. One runtime serves every attempt of a run.
pub struct Runtime {
    runner: actix::SystemRunner,
}

impl Runtime {
    /// A new actor system (not yet running anything).
    pub fn new() -> Self {
        Runtime {
            runner: actix::System::new(),
        }
    }

    /// Runs `future` on the system until it completes; the actors started inside it
    /// run meanwhile.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runner.block_on(future)
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}
