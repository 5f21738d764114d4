//! Helpers shared by the kernel's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_actors::checkpoint::{CheckpointConfig, TaskSnapshot};
use weir_actors::outbox::Outbox;
use weir_actors::snapshot::SnapshotStore;
use weir_actors::task::{Pumped, Task, TaskError};

/// A source of `next..n`, a few records per round, each to output `record % 2`; its
/// snapshot's one commit action is its position (the next record, little-endian).
pub struct Counter {
    /// The next record.
    pub next: u64,
    /// The end of the range (exclusive).
    pub n: u64,
}

impl Task for Counter {
    type In = ();
    type Out = u64;
    fn on_batch(&mut self, _: u32, _: Vec<()>, _: &mut Outbox<u64>) -> Result<(), TaskError> {
        Err(TaskError::msg("a source has no input"))
    }
    fn pump(&mut self, out: &mut Outbox<u64>) -> Result<Pumped, TaskError> {
        for _ in 0..3 {
            if self.next == self.n {
                return Ok(Pumped::Exhausted);
            }
            out.push_to((self.next % 2) as usize, self.next);
            self.next += 1;
        }
        Ok(Pumped::More)
    }
    fn snapshot(&mut self, _: u64, _: &mut Outbox<u64>) -> Result<TaskSnapshot, TaskError> {
        Ok(TaskSnapshot {
            chunks: Vec::new(),
            commits: vec![self.next.to_le_bytes().to_vec()],
        })
    }
}

/// The checkpoint configuration of job `job` (two epochs retained, no hold-off,
/// nothing restored) whose committer notes every commit action in `applied`.
pub fn checkpoint_config(
    job: &str,
    interval: Option<Duration>,
    timeout: Duration,
    store: Option<Arc<dyn SnapshotStore>>,
    applied: Arc<Mutex<Vec<Vec<u8>>>>,
) -> CheckpointConfig {
    CheckpointConfig {
        job: job.into(),
        interval,
        timeout,
        retain: 2,
        compact_after: 4,
        store,
        committer: Arc::new(move |_stage: u32, action: &[u8]| {
            applied.lock().unwrap().push(action.to_vec());
            Ok(())
        }),
        merge: Arc::new(|chain: &[Vec<u8>]| Ok(chain.concat())),
        meta: BTreeMap::new(),
        first_epoch: 1,
        restored: None,
        hold_off: Duration::ZERO,
    }
}
