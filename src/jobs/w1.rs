//! The W1 job: lines -> split on spaces -> key by word -> running count -> counting
//! sink.

use crate::connector::generator::W1Lines;
use crate::connector::sinks::CountingSink;
use crate::job::Job;
use crate::operator::Emitter;

/// W1 over `n` words, and the sink that will hold its result.
pub fn w1(n: u64) -> (Job, CountingSink<String, u64>) {
    let sink = CountingSink::new();
    let job = Job::new("w1")
        .source(W1Lines::new(n))
        .flat_map(|line: String, out: &mut Emitter<'_, (String, u64)>| {
            for word in line.split(' ') {
                out.emit((word.to_owned(), 1));
            }
        })
        .group_by_key()
        .reduce(|count, one| count + one)
        .sink(sink.clone());
    (job, sink)
}
