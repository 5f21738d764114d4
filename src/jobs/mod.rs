//! Built-in jobs, runnable with `weir run <job>`: the word count, the demo and the
//! benchmark workloads.

mod demo;
mod w1;
mod w2;
mod wordcount;

pub use demo::{demo, SensorStats, SensorSummary};
pub use w1::w1;
pub use w2::{w2, w2_aligned, CountSum, W2Rows};
pub use wordcount::{wordcount, wordcount_of_to_dir, wordcount_to_dir, words};
