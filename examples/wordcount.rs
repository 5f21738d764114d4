//! A complete word count with a keyed operator of your own.
//!
//!     cargo run --release --example wordcount -- README.md
//!
//! Reads the lines of a file, splits them into words, keys by word, and keeps a
//! running count per word in keyed state (a `ValueState<u64>` that forgets words not
//! seen for an hour). Prints the ten most frequent words at the end.

use std::time::Duration;

use weir::prelude::*;

/// Counts the records of each key in keyed state and emits `(key, count)` on every
/// update.
#[derive(Clone, Default)]
struct RunningCount {
    count: Option<ValueHandle<u64>>,
}

impl KeyedProcess for RunningCount {
    type Key = String;
    type In = ();
    type Out = (String, u64);

    fn name(&self) -> String {
        "running-count".into()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<(), OperatorError> {
        let descriptor = StateDescriptor::new("count").with_ttl(Duration::from_secs(3_600));
        self.count = Some(ctx.value_state(descriptor)?);
        Ok(())
    }

    fn process(
        &mut self,
        _: (),
        ctx: &mut KeyedContext<'_, String, (String, u64)>,
    ) -> Result<(), OperatorError> {
        let handle = self
            .count
            .ok_or_else(|| OperatorError::msg("open() was not called"))?;
        let count = {
            let mut state = ctx.value(handle);
            let count = state.get_or_insert_with(|| 0)?;
            *count += 1;
            *count
        };
        let word = ctx.key().clone();
        ctx.emit((word, count));
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: wordcount <file>")?;
    let counts = CountingSink::<String, u64>::new();
    let job = Job::new("example-wordcount")
        .source(LineSource::file(&path, DeadLetters::to_log()))
        .flat_map(|line: String, out: &mut Emitter<'_, (String, ())>| {
            for word in weir::jobs::words(&line) {
                out.emit((word, ()));
            }
        })
        .group_by_key()
        .process(RunningCount::default())
        .sink(counts.clone());

    let options = EngineOptions {
        progress: None,
        ..Default::default()
    };
    let report = Node::new(options)?.run(job)?;

    let mut top: Vec<(String, u64)> = counts.result().last.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (word, count) in top.iter().take(10) {
        println!("{count:>8}  {word}");
    }
    eprint!("{report}");
    Ok(())
}
