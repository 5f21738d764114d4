//! A panic (or error) inside an operator fails the job with a clear error naming the
//! stage, the partition and the cause, and the process lives on to run the next job.

mod common;

use common::Numbers;
use weir::prelude::*;

fn node() -> Node {
    Node::new(EngineOptions::for_tests(2)).expect("node")
}

#[test]
fn a_panic_in_a_chained_operator_fails_the_job_with_stage_partition_and_message() {
    let job = Job::new("panicky")
        .source(Numbers::upto(10_000))
        .map(|x: u64| {
            if x == 7_777 {
                panic!("boom at {x}");
            }
            x
        })
        .key_by(|x: &u64| x % 10)
        .reduce(|a, b| a + b)
        .sink(CountingSink::<u64, u64>::new());
    let err = node().run(job).expect_err("the job must fail").to_string();
    // 7,777 is odd: split 1 of 2 reads the odd numbers.
    assert!(err.contains("job 'panicky' failed"), "{err}");
    assert!(
        err.contains("stage 'source:numbers -> map -> key_by'"),
        "{err}"
    );
    assert!(err.contains("partition 1"), "{err}");
    assert!(err.contains("boom at 7777"), "{err}");
    assert!(
        err.contains("tests/failure.rs"),
        "the panic location is named: {err}"
    );
}

/// Panics on one key.
#[derive(Clone)]
struct PoisonKey;

impl KeyedProcess for PoisonKey {
    type Key = u64;
    type In = u64;
    type Out = (u64, u64);
    fn name(&self) -> String {
        "poison".into()
    }
    fn process(
        &mut self,
        value: u64,
        ctx: &mut KeyedContext<'_, u64, (u64, u64)>,
    ) -> Result<(), OperatorError> {
        if *ctx.key() == 13 {
            panic!("key 13 is poison");
        }
        let key = *ctx.key();
        ctx.emit((key, value));
        Ok(())
    }
}

#[test]
fn a_panic_in_a_keyed_operator_names_the_keyed_stage_and_the_process_survives() {
    let job = Job::new("poisoned")
        .source(Numbers::upto(1_000))
        .key_by(|x: &u64| x % 20)
        .process(PoisonKey)
        .sink(CountingSink::<u64, u64>::new());
    let err = node().run(job).expect_err("the job must fail").to_string();
    let owner =
        weir::partition::owner_of(weir::partition::key_partition(&13u64, 16).unwrap(), 16, 2);
    assert!(err.contains("stage 'poison -> sink:counting'"), "{err}");
    assert!(err.contains(&format!("partition {owner}")), "{err}");
    assert!(err.contains("key 13 is poison"), "{err}");

    // The process is alive and a new job runs to completion.
    let sink = CountingSink::<u64, u64>::new();
    let job = Job::new("after")
        .source(Numbers::upto(1_000))
        .key_by(|x: &u64| x % 20)
        .reduce(|a, b| a + b)
        .sink(sink.clone());
    node().run(job).expect("a later job runs");
    let result = sink.result();
    assert_eq!(result.received, 1_000);
    assert_eq!(result.last.values().sum::<u64>(), (0..1_000).sum::<u64>());
}

/// Fails with an error (not a panic) on one value.
#[derive(Clone)]
struct RejectsNegative;

impl KeyedProcess for RejectsNegative {
    type Key = u64;
    type In = u64;
    type Out = (u64, u64);
    fn process(
        &mut self,
        value: u64,
        ctx: &mut KeyedContext<'_, u64, (u64, u64)>,
    ) -> Result<(), OperatorError> {
        if value == 500 {
            return Err(OperatorError::msg("value 500 is not allowed"));
        }
        let key = *ctx.key();
        ctx.emit((key, value));
        Ok(())
    }
}

#[test]
fn an_operator_error_fails_the_job_like_a_panic() {
    let job = Job::new("erroring")
        .source(Numbers::upto(1_000))
        .key_by(|x: &u64| x % 3)
        .process(RejectsNegative)
        .sink(CountingSink::<u64, u64>::new());
    let err = node().run(job).expect_err("the job must fail").to_string();
    assert!(err.contains("stage 'process -> sink:counting'"), "{err}");
    assert!(err.contains("value 500 is not allowed"), "{err}");
}
