//! Word count over text lines.

use crate::connector::sinks::{tab_separated, CountingSink};
use crate::connector::Source;
use crate::connector::TransactionalFileSink;
use crate::job::Job;
use crate::operator::Emitter;

/// The words of a line: maximal runs of alphanumeric characters (Unicode), lowercased.
/// Apostrophes and hyphens split words.
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

/// Counts the words of `source`'s lines with a running count per word in keyed state;
/// the sink holds the final count of every word once the job has finished.
pub fn wordcount<S>(source: S) -> (Job, CountingSink<String, u64>)
where
    S: Source<Item = String>,
{
    let sink = CountingSink::new();
    let job = Job::new("wordcount")
        .source(source)
        .flat_map(|line: String, out: &mut Emitter<'_, (String, u64)>| {
            for word in words(&line) {
                out.emit((word, 1));
            }
        })
        .group_by_key()
        .reduce(|count, one| count + one)
        .sink(sink.clone());
    (job, sink)
}

/// Word count whose running counts are written exactly once into `dir`: one
/// `word<TAB>count` line per word occurrence, staged per epoch and published when the
/// epoch completes (see [`TransactionalFileSink`]). After any crash and resume the
/// committed lines are those of a run without a crash.
pub fn wordcount_to_dir<S>(source: S, dir: &std::path::Path) -> Job
where
    S: Source<Item = String>,
{
    wordcount_of_to_dir(source, |line: String| line, dir)
}

/// [`wordcount_to_dir`] over any source whose items `text_of` turns into a line of
/// text (for example the values of Kafka records).
pub fn wordcount_of_to_dir<S, F>(source: S, text_of: F, dir: &std::path::Path) -> Job
where
    S: Source,
    F: Fn(S::Item) -> String + Clone + Send + Unpin + 'static,
{
    Job::new("wordcount")
        .source(source)
        .flat_map(move |item: S::Item, out: &mut Emitter<'_, (String, u64)>| {
            let line = text_of(item);
            for word in words(&line) {
                out.emit((word, 1));
            }
        })
        .group_by_key()
        .reduce(|count, one| count + one)
        .sink(TransactionalFileSink::new(
            dir,
            tab_separated::<String, u64>,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_alphanumeric_runs_lowercased() {
        let w: Vec<String> = words("It's a Fine-day, 2 fine DAYS!").collect();
        assert_eq!(w, ["it", "s", "a", "fine", "day", "2", "fine", "days"]);
    }
}
