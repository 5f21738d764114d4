//! A user's own `weir` binary: it compiles its operators in, registers its jobs by
//! name, and gets every command of the `weir` binary from the library.
//!
//! ```text
//! cargo run --release --example custom_jobs -- run word-lengths --set n=100000 --set out=/tmp/lengths.tsv
//! cargo run --release --example custom_jobs -- run w1        # the built-in jobs are still there
//! ```

use std::convert::Infallible;
use std::process::ExitCode;

use weir::app::{self, JobParams, JobRegistry, RegistryError};
use weir::prelude::*;

/// A terminal operator of this binary: counts what reaches it, logs it at close.
#[derive(Clone, Default)]
pub struct CountAndLog {
    seen: u64,
}

impl Operator for CountAndLog {
    type Key = NoKey;
    type In = (u64, u64);
    type Out = Infallible;

    fn name(&self) -> String {
        "sink:count-and-log".into()
    }

    fn process(
        &mut self,
        _value: (u64, u64),
        _ctx: &mut KeyedContext<'_, NoKey, Infallible>,
    ) -> Result<(), OperatorError> {
        self.seen += 1;
        Ok(())
    }

    fn close(&mut self, _out: &mut dyn Collector<Infallible>) -> Result<(), OperatorError> {
        tracing::info!(updates = self.seen, "count-and-log finished");
        Ok(())
    }
}

/// This binary's jobs.
pub fn jobs() -> Result<JobRegistry, RegistryError> {
    let mut jobs = JobRegistry::new();
    jobs.register(
        "word-lengths",
        "how many of W1's words have each length; --set n=WORDS --set out=FILE",
        |p: &JobParams| {
            let n: u64 = p.get_or("n", 10_000)?;
            let out: String = p.require("word-lengths", "out")?;
            Ok(Job::new("word-lengths")
                .source(W1Lines::new(n))
                .flat_map(|line: String, out: &mut Emitter<'_, (u64, u64)>| {
                    for word in line.split(' ') {
                        out.emit((word.len() as u64, 1));
                    }
                })
                .group_by_key()
                .reduce(|a, b| a + b)
                .sink(FileSink::new(out, tab_separated)))
        },
    )?;
    jobs.register(
        "lengths-counted",
        "W1's word lengths into a terminal operator of this binary; --set n=WORDS",
        |p: &JobParams| -> Result<Job, RegistryError> {
            Ok(Job::new("lengths-counted")
                .source(W1Lines::new(p.get_or("n", 10_000)?))
                .flat_map(|line: String, out: &mut Emitter<'_, (u64, u64)>| {
                    for word in line.split(' ') {
                        out.emit((word.len() as u64, 1));
                    }
                })
                .group_by_key()
                .reduce(|a, b| a + b)
                .sink(CountAndLog::default()))
        },
    )?;
    Ok(jobs)
}

fn main() -> ExitCode {
    match jobs() {
        Ok(jobs) => app::main_with(jobs),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
