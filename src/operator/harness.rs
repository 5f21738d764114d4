//! A test harness for keyed operators: runs any [`KeyedProcess`] on a temporary state
//! store, one element, watermark or clock tick at a time, and captures what it emits
//! (Flink's `KeyedOneInputStreamOperatorTestHarness`).
//!
//! The harness drives the same task a keyed stage's partition actor runs (the job's
//! `KeyedTask`), so records, timers, watermarks, processing time, end of input and
//! snapshots behave exactly as in a job: nothing of the runtime is imitated here. What
//! the harness adds is the driving, by hand and in order, and the capture of the
//! operator's main and side outputs.
//!
//! Snapshots are the state's own checkpoint deltas ([`KeyedState::take_delta`]), kept
//! per key partition as the chains a job's snapshot store would hold; [`restore`]
//! folds them into a fresh harness (with its own store), on all key partitions or a
//! subset ([`HarnessOptions::owned`], as an actor of a rescaled stage would), so a test
//! can check that an operator's state survives a restart.
//!
//! ```
//! use weir::operator::harness::OperatorHarness;
//! use weir::prelude::*;
//!
//! /// Counts each key's records, emitting the count so far.
//! #[derive(Clone, Default)]
//! struct Count(Option<ValueHandle<u64>>);
//!
//! impl KeyedProcess for Count {
//!     type Key = String;
//!     type In = ();
//!     type Out = (String, u64);
//!     fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<(), OperatorError> {
//!         self.0 = Some(ctx.value_state(StateDescriptor::new("count"))?);
//!         Ok(())
//!     }
//!     fn process(&mut self, _: (), ctx: &mut KeyedContext<'_, String, (String, u64)>)
//!         -> Result<(), OperatorError> {
//!         let handle = self.0.ok_or_else(|| OperatorError::msg("not opened"))?;
//!         let n = ctx.value(handle).value()?.unwrap_or(0) + 1;
//!         ctx.value(handle).set(n)?;
//!         let key = ctx.key().clone();
//!         ctx.emit((key, n));
//!         Ok(())
//!     }
//! }
//!
//! let mut harness = OperatorHarness::new(Count::default())?;
//! harness.process_element("a".to_string(), (), 10)?;
//! let snapshot = harness.snapshot()?;
//! // A restart: a fresh harness from the snapshot counts on.
//! let mut restored = OperatorHarness::restore(Count::default(), &snapshot)?;
//! restored.process_element("a".to_string(), (), 11)?;
//! assert_eq!(restored.take_output(), vec![(11, ("a".to_string(), 2))]);
//! # Ok::<(), weir::operator::harness::HarnessError>(())
//! ```
//!
//! [`restore`]: OperatorHarness::restore

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use weir_actors::side::SideSend;
use weir_actors::state::{Clock, KeyedState, ManualClock, StateError, StateStore, StoreConfig};
use weir_actors::{MailboxClosed, Marker, Outbox, SideOutput, Task, TaskError, NO_WATERMARK};

use crate::job::plan::no_rules;
use crate::job::tasks::{InputMap, KeyedTask};
use crate::job::terminal::Terminal;
use crate::operator::chain::Identity;
use crate::operator::queryable::QueryableStates;
use crate::partition::{key_partition, KeyEncodeError, DEFAULT_KEY_PARTITIONS};
use crate::record::Keyed;

use super::operator_state::redistribute;
use super::{KeyedProcess, NoKey, SideOutputs};

/// The stage name the harness's state is stored under.
const HARNESS_STAGE: &str = "harness";
/// The chunk-id stage of the operator's own state in the harness's snapshots.
const HARNESS_OPERATOR_STAGE: &str = "harness-operator";

/// Why the harness could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Opening, restoring or reading the temporary state store failed.
    #[error("harness state store: {0}")]
    State(#[from] StateError),
    /// The operator (or the task around it) failed; the message says in which handler.
    #[error("operator failed: {0}")]
    Operator(#[from] TaskError),
    /// A key could not be encoded to find its key partition.
    #[error(transparent)]
    Key(#[from] KeyEncodeError),
    /// The key's partition is not among those this harness owns (see
    /// [`HarnessOptions::owned`]).
    #[error("key {key} is in key partition {kp}, which this harness does not own ({}..{})", owned.start, owned.end)]
    NotOwned {
        /// The key, as `Debug` shows it.
        key: String,
        /// Its key partition.
        kp: u32,
        /// The key partitions the harness owns.
        owned: Range<u32>,
    },
    /// An element or watermark was given after [`OperatorHarness::end_input`].
    #[error("the input has already ended")]
    Ended,
    /// The harness was built without a side output ([`HarnessOptions::side_output`]).
    #[error("this harness captures no side output (set HarnessOptions::side_output)")]
    NoSideOutput,
    /// A side output record is not of the type asked for.
    #[error("a side output record is not a {expected}")]
    SideOutputType {
        /// The type asked for.
        expected: &'static str,
    },
    /// The options do not fit the snapshot (or each other).
    #[error("harness options: {0}")]
    Options(String),
}

/// How a harness is set up.
#[derive(Clone, Debug)]
pub struct HarnessOptions {
    /// Key partitions `P` of the (imagined) job: a key's partition is its hash modulo
    /// `P`, as in a job.
    pub key_partitions: u32,
    /// The key partitions this harness owns (`None`: all of them), as one partition
    /// actor of a stage of some parallelism would; elements of other partitions are
    /// refused, and a restore keeps only these partitions' state.
    pub owned: Option<Range<u32>>,
    /// Whether the operator has a side output, captured by the harness
    /// ([`OperatorHarness::take_side_output`]). Without one,
    /// [`KeyedContext::has_side_output`](super::KeyedContext::has_side_output) is false.
    pub side_output: bool,
    /// The processing time the harness's [`ManualClock`] starts at, in ms (a restore
    /// starts at the snapshot's time instead).
    pub start_time_ms: u64,
}

impl Default for HarnessOptions {
    /// All of [`DEFAULT_KEY_PARTITIONS`] key partitions, no side output, clock at 0.
    fn default() -> Self {
        HarnessOptions {
            key_partitions: DEFAULT_KEY_PARTITIONS,
            owned: None,
            side_output: false,
            start_time_ms: 0,
        }
    }
}

/// The state of a harness at one moment: per key partition, the chain of checkpoint
/// deltas captured so far (what a job's snapshot store holds for the stage), with the
/// watermark and processing time of that moment.
#[derive(Clone, Debug, Default)]
pub struct HarnessSnapshot {
    chains: BTreeMap<u32, Vec<Vec<u8>>>,
    /// The operator's own state (what `snapshot_state` wrote), if any.
    operator_state: Option<Vec<u8>>,
    key_partitions: u32,
    watermark: i64,
    processing_time_ms: u64,
    /// The epoch this snapshot is of.
    epoch: u64,
    /// The commit actions the operator handed over at this snapshot's barrier.
    commit_actions: Vec<Vec<u8>>,
}

impl HarnessSnapshot {
    /// The epoch the snapshot is of: the harness numbers its snapshots 1, 2, ...
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The commit actions a transactional operator handed over at this barrier
    /// ([`OperatorStateWriter::commit_action`](super::OperatorStateWriter::commit_action)),
    /// encoded, in order: what a job would record with the epoch and give to the
    /// operator's committer once the epoch is complete.
    pub fn commit_actions(&self) -> &[Vec<u8>] {
        &self.commit_actions
    }

    /// The key partitions that hold any state, in order.
    pub fn key_partitions_with_state(&self) -> Vec<u32> {
        self.chains.keys().copied().collect()
    }

    /// The operator's watermark when the snapshot was taken.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The harness's processing time when the snapshot was taken, in ms.
    pub fn processing_time_ms(&self) -> u64 {
        self.processing_time_ms
    }

    /// Total bytes of the captured deltas.
    pub fn bytes(&self) -> usize {
        self.chains.values().flatten().map(Vec::len).sum()
    }
}

/// The terminal of the harness's task: keeps every record with its timestamp.
struct CaptureTerminal<T> {
    records: Vec<(i64, T)>,
}

impl<T: Send + 'static> Terminal<T> for CaptureTerminal<T> {
    type Wire = ();

    fn accept(&mut self, item: T, ts: i64, _out: &mut Outbox<()>) {
        self.records.push((ts, item));
    }

    fn take_error(&mut self) -> Option<TaskError> {
        None
    }

    fn finish(&mut self, _out: &mut Outbox<()>) -> Result<(), TaskError> {
        Ok(())
    }
}

/// What the operator sent to its side output, boxed (the type is checked when a test
/// takes them).
type SideRecords = Arc<Mutex<Vec<Box<dyn Any + Send>>>>;

/// The side output the harness gives the task: keeps every record.
struct CaptureSide {
    records: SideRecords,
}

impl SideOutput for CaptureSide {
    fn push_any(&mut self, item: Box<dyn Any + Send>) -> Result<(), String> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item);
        Ok(())
    }

    fn send_now(&mut self) -> Result<bool, MailboxClosed> {
        Ok(true)
    }

    fn take_pending(&mut self) -> SideSend {
        Box::pin(std::future::ready(Ok(Duration::ZERO)))
    }

    fn broadcast_marker(&mut self, _marker: Marker) {}

    fn flush(&mut self) {}
}

/// The task a harness drives.
type HarnessTask<P> = KeyedTask<
    P,
    Identity,
    CaptureTerminal<<P as KeyedProcess>::Out>,
    Keyed<<P as KeyedProcess>::Key, <P as KeyedProcess>::In>,
>;

/// Each key partition's chain of snapshot chunks.
type Chains = BTreeMap<u32, Vec<Vec<u8>>>;

/// Runs one keyed operator by hand: see the [module docs](self).
pub struct OperatorHarness<P: KeyedProcess>
where
    P::Out: Send,
{
    task: HarnessTask<P>,
    /// Never read: the task sends nothing downstream (its terminal keeps records).
    outbox: Outbox<()>,
    /// Keeps the temporary store (and its sled database) alive.
    _store: StateStore,
    clock: ManualClock,
    key_partitions: u32,
    owned: Range<u32>,
    side: Option<SideRecords>,
    chains: BTreeMap<u32, Vec<Vec<u8>>>,
    operator_state: Option<Vec<u8>>,
    epoch: u64,
    ended: bool,
}

impl<P: KeyedProcess> OperatorHarness<P>
where
    P::Out: Send,
{
    /// A harness with [`HarnessOptions::default`]; the operator is opened.
    pub fn new(process: P) -> Result<Self, HarnessError> {
        Self::with_options(process, HarnessOptions::default())
    }

    /// A harness set up by `options`; the operator is opened.
    pub fn with_options(process: P, options: HarnessOptions) -> Result<Self, HarnessError> {
        let store = StateStore::temporary(harness_store_config())?;
        Self::open(
            process,
            options,
            store,
            (BTreeMap::new(), None),
            NO_WATERMARK,
        )
    }

    /// A fresh harness (its own store) holding the state of `snapshot`, as a restarted
    /// job's partition actor would: the operator is opened, its timers are back, and
    /// its watermark and clock are those of the snapshot. Owns all key partitions.
    ///
    /// A restarted partition actor starts without a watermark and learns it again
    /// from its inputs; the harness resumes at the snapshot's, so that a test goes on
    /// where it left off.
    pub fn restore(process: P, snapshot: &HarnessSnapshot) -> Result<Self, HarnessError> {
        Self::restore_with_options(
            process,
            snapshot,
            HarnessOptions {
                key_partitions: snapshot.key_partitions,
                ..HarnessOptions::default()
            },
        )
    }

    /// Like [`restore`](Self::restore), set up by `options`: with
    /// [`HarnessOptions::owned`], only those key partitions' state is restored (one
    /// actor of a rescaled stage). `options.key_partitions` must be the snapshot's.
    pub fn restore_with_options(
        process: P,
        snapshot: &HarnessSnapshot,
        options: HarnessOptions,
    ) -> Result<Self, HarnessError> {
        if options.key_partitions != snapshot.key_partitions {
            return Err(HarnessError::Options(format!(
                "the snapshot has {} key partitions, the options {}",
                snapshot.key_partitions, options.key_partitions
            )));
        }
        let owned = owned_range(&options)?;
        let chains: BTreeMap<u32, Vec<Vec<u8>>> = snapshot
            .chains
            .iter()
            .filter(|(kp, _)| owned.contains(kp))
            .map(|(kp, chain)| (*kp, chain.clone()))
            .collect();
        let store = StateStore::temporary(harness_store_config())?;
        store.restore_stage(HARNESS_STAGE, chains.clone())?;
        let options = HarnessOptions {
            start_time_ms: snapshot.processing_time_ms,
            ..options
        };
        Self::open(
            process,
            options,
            store,
            (chains, snapshot.operator_state.clone()),
            snapshot.watermark,
        )
    }

    /// Builds the task on `store` and opens the operator.
    fn open(
        process: P,
        options: HarnessOptions,
        store: StateStore,
        (chains, operator_state): (Chains, Option<Vec<u8>>),
        watermark: i64,
    ) -> Result<Self, HarnessError> {
        let owned = owned_range(&options)?;
        let clock = ManualClock::new(options.start_time_ms);
        let state: KeyedState<P::Key> =
            store.keyed(HARNESS_STAGE, owned.clone(), Arc::new(clock.clone()))?;
        let side = options
            .side_output
            .then(|| Arc::new(Mutex::new(Vec::new())));
        let mut task = KeyedTask {
            process,
            state,
            chain: Identity,
            term: CaptureTerminal {
                records: Vec::new(),
            },
            job: Arc::from("harness"),
            stage: Arc::from(HARNESS_STAGE),
            partition: 0,
            parallelism: 1,
            watermark,
            sides: SideOutputs::new(
                side.clone()
                    .map(|records| {
                        (
                            "side".to_string(),
                            Box::new(CaptureSide { records }) as Box<dyn SideOutput>,
                        )
                    })
                    .into_iter()
                    .collect(),
            ),
            chunk_stage: HARNESS_STAGE.to_string(),
            operator_chunk_stage: HARNESS_OPERATOR_STAGE.to_string(),
            wrote_operator_state: false,
            restored: match &operator_state {
                Some(frame) => redistribute(&[(0, frame.clone())], 1)
                    .map_err(|e| {
                        HarnessError::Operator(TaskError::caused("restoring operator state", e))
                    })?
                    .into_iter()
                    .next(),
                None => None,
            },
            run: 0,
            suspect: None,
            queryables: QueryableStates::default(),
            key_partitions: options.key_partitions,
            inputs: InputMap::default(),
            on_rule: no_rules::<P>,
            _wire: std::marker::PhantomData,
        };
        let mut outbox = Outbox::new(0, Vec::new(), 1);
        task.start(&mut outbox)?;
        Ok(OperatorHarness {
            task,
            outbox,
            _store: store,
            clock,
            key_partitions: options.key_partitions,
            owned,
            side,
            chains,
            operator_state,
            epoch: 0,
            ended: false,
        })
    }

    /// Hands the operator one record of `key` with timestamp `ts` (use
    /// [`NO_TIMESTAMP`](crate::record::NO_TIMESTAMP) for a job without event time).
    pub fn process_element(
        &mut self,
        key: P::Key,
        value: P::In,
        ts: i64,
    ) -> Result<(), HarnessError> {
        self.check_running()?;
        let kp = key_partition(&key, self.key_partitions)?;
        if !self.owned.contains(&kp) {
            return Err(HarnessError::NotOwned {
                key: format!("{key:?}"),
                kp,
                owned: self.owned.clone(),
            });
        }
        let record = Keyed { kp, ts, key, value };
        self.task.on_batch(0, vec![record], &mut self.outbox)?;
        Ok(())
    }

    /// The operator's watermark advances to `watermark`: event-time timers due by it
    /// fire, in timestamp order. A watermark at or below the current one is ignored,
    /// as a partition actor ignores a watermark that does not advance.
    pub fn process_watermark(&mut self, watermark: i64) -> Result<(), HarnessError> {
        self.check_running()?;
        if watermark > self.task.watermark {
            self.task.on_watermark(watermark, &mut self.outbox)?;
        }
        Ok(())
    }

    /// Sets the processing time (the clock state TTL and processing-time timers read)
    /// to `now_ms`; processing-time timers due by then fire, in order, as a partition
    /// actor fires them (a timer for `t` fires once the clock is past `t`).
    pub fn set_processing_time(&mut self, now_ms: u64) -> Result<(), HarnessError> {
        self.check_running()?;
        self.clock.set(now_ms);
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        if self.task.next_deadline().is_some_and(|due| due <= now) {
            self.task.on_processing_time(now, &mut self.outbox)?;
        }
        Ok(())
    }

    /// Every input ends, as in a job: the watermark reaches `i64::MAX` (every
    /// event-time timer fires), then the remaining processing-time timers fire and
    /// the operator's `close` runs. Nothing can be given to the harness afterwards.
    pub fn end_input(&mut self) -> Result<(), HarnessError> {
        self.process_watermark(i64::MAX)?;
        self.task.end_of_input(&mut self.outbox)?;
        self.ended = true;
        Ok(())
    }

    /// Takes what the operator emitted so far, as `(timestamp, record)` in emission
    /// order.
    pub fn take_output(&mut self) -> Vec<(i64, P::Out)> {
        std::mem::take(&mut self.task.term.records)
    }

    /// What the operator emitted so far (not taken).
    pub fn output(&self) -> &[(i64, P::Out)] {
        &self.task.term.records
    }

    /// Takes what the operator sent to its side output, in order, as `T`. Fails
    /// (and takes nothing) if a record is of another type.
    pub fn take_side_output<T: Send + 'static>(&mut self) -> Result<Vec<T>, HarnessError> {
        let records = self.side.as_ref().ok_or(HarnessError::NoSideOutput)?;
        let mut records = records.lock().unwrap_or_else(PoisonError::into_inner);
        if records.iter().any(|r| !r.is::<Keyed<NoKey, T>>()) {
            return Err(HarnessError::SideOutputType {
                expected: std::any::type_name::<T>(),
            });
        }
        Ok(std::mem::take(&mut *records)
            .into_iter()
            .filter_map(|r| r.downcast::<Keyed<NoKey, T>>().ok().map(|b| b.value))
            .collect())
    }

    /// Captures the state as a checkpoint barrier would (the task's own snapshot:
    /// the state's deltas since the previous capture, appended to each key
    /// partition's chain) and returns every chain so far.
    pub fn snapshot(&mut self) -> Result<HarnessSnapshot, HarnessError> {
        self.epoch += 1;
        let taken = self.task.snapshot(self.epoch, &mut self.outbox)?;
        for chunk in taken.chunks {
            if chunk.id.stage == HARNESS_OPERATOR_STAGE {
                self.operator_state = Some(chunk.data);
                continue;
            }
            self.chains
                .entry(chunk.id.key_partition)
                .or_default()
                .push(chunk.data);
        }
        Ok(HarnessSnapshot {
            chains: self.chains.clone(),
            operator_state: self.operator_state.clone(),
            key_partitions: self.key_partitions,
            watermark: self.task.watermark,
            processing_time_ms: self.clock.now_ms(),
            epoch: self.epoch,
            commit_actions: taken.commits,
        })
    }

    /// Tells the operator that epoch `epoch` (the epoch of a snapshot taken here) is
    /// complete, as a job does once the epoch's snapshot is durable and its commit
    /// actions ran ([`Operator::epoch_complete`](super::Operator::epoch_complete)).
    pub fn complete_epoch(&mut self, epoch: u64) {
        self.task.epoch_complete(epoch);
    }

    /// The run fails before its input ended: the operator's
    /// [`abort`](super::Operator::abort) runs, as in a job being torn down.
    pub fn abort(&mut self) {
        self.task.aborted();
    }

    /// The operator's current watermark.
    pub fn watermark(&self) -> i64 {
        self.task.watermark
    }

    /// The harness's clock (processing time); move it with
    /// [`set_processing_time`](Self::set_processing_time) so timers fire.
    pub fn processing_time_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Pending timers of both domains, of every key.
    pub fn pending_timers(&self) -> usize {
        self.task.state.timer_count()
    }

    /// Live state entries of every key (timers not counted), after writing the cache
    /// to the store: a map counts one per entry, a value or list one. For checking
    /// that an operator cleans up after itself.
    pub fn state_entries(&mut self) -> Result<usize, HarnessError> {
        self.task.state.flush()?;
        self.task.state.purge_expired()?;
        let mut entries = 0;
        for item in self.task.state.tree().iter() {
            let (key, _) = item.map_err(|source| StateError::Sled {
                context: "counting the harness's state entries".into(),
                source,
            })?;
            if !is_timer_key(&key) {
                entries += 1;
            }
        }
        Ok(entries)
    }

    /// The operator under test.
    pub fn operator(&self) -> &P {
        &self.task.process
    }

    fn check_running(&self) -> Result<(), HarnessError> {
        if self.ended {
            Err(HarnessError::Ended)
        } else {
            Ok(())
        }
    }
}

/// Whether a stored key is a timer's (its state id is the reserved timer id).
fn is_timer_key(key: &[u8]) -> bool {
    use weir_actors::state::codec::TIMER_STATE_ID;
    key.get(4..8)
        .is_some_and(|id| id == TIMER_STATE_ID.to_be_bytes())
}

/// The key partitions `options` give the harness, checked.
fn owned_range(options: &HarnessOptions) -> Result<Range<u32>, HarnessError> {
    if options.key_partitions == 0 {
        return Err(HarnessError::Options(
            "key_partitions must be at least 1".into(),
        ));
    }
    let owned = options.owned.clone().unwrap_or(0..options.key_partitions);
    if owned.start > owned.end || owned.end > options.key_partitions {
        return Err(HarnessError::Options(format!(
            "owned key partitions {}..{} do not lie within 0..{}",
            owned.start, owned.end, options.key_partitions
        )));
    }
    Ok(owned)
}

/// A small store: harnesses are many and short-lived.
fn harness_store_config() -> StoreConfig {
    StoreConfig {
        cache_entries: 1_000_000,
        sled_cache_bytes: 1024 * 1024,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_actors::state::{StateDescriptor, TimerDomain, ValueHandle};

    use super::*;
    use crate::operator::{KeyedContext, OpenContext, OperatorError};
    use crate::partition::owned_range;

    /// Sums each key's values; a timer 10 ms after each record reports the sum;
    /// negative values also go to the side output; 99 asks for a processing-time
    /// timer 5 ms from now.
    #[derive(Clone, Default)]
    struct Probe {
        sum: Option<ValueHandle<i64>>,
        ttl: Option<Duration>,
    }

    impl KeyedProcess for Probe {
        type Key = u32;
        type In = i64;
        type Out = String;

        fn open(&mut self, ctx: &mut OpenContext<'_, u32>) -> Result<(), OperatorError> {
            let descriptor = StateDescriptor::new("sum");
            let descriptor = match self.ttl {
                Some(ttl) => descriptor.with_ttl(ttl),
                None => descriptor,
            };
            self.sum = Some(ctx.value_state(descriptor)?);
            Ok(())
        }

        fn process(
            &mut self,
            value: i64,
            ctx: &mut KeyedContext<'_, u32, String>,
        ) -> Result<(), OperatorError> {
            let handle = self.sum.ok_or_else(|| OperatorError::msg("not open"))?;
            let sum = ctx.value(handle).value()?.unwrap_or(0) + value;
            ctx.value(handle).set(sum)?;
            let key = *ctx.key();
            ctx.emit(format!("{key}:{sum}"));
            ctx.register_event_timer(ctx.timestamp() + 10)?;
            if value < 0 {
                ctx.emit_side(value)?;
            }
            if value == 99 {
                ctx.register_processing_timer(ctx.processing_time() + 5)?;
            }
            Ok(())
        }

        fn on_timer(
            &mut self,
            timestamp: i64,
            ctx: &mut KeyedContext<'_, u32, String>,
        ) -> Result<(), OperatorError> {
            let handle = self.sum.ok_or_else(|| OperatorError::msg("not open"))?;
            let sum = ctx.value(handle).value()?;
            let domain = match ctx.timer_domain() {
                Some(TimerDomain::EventTime) => "event",
                Some(TimerDomain::ProcessingTime) => "processing",
                None => "none",
            };
            let key = *ctx.key();
            ctx.emit(format!("{domain} timer {key}@{timestamp} sum={sum:?}"));
            Ok(())
        }
    }

    fn lines(expected: &[(i64, &str)]) -> Vec<(i64, String)> {
        expected
            .iter()
            .map(|(ts, s)| (*ts, s.to_string()))
            .collect()
    }

    #[test]
    fn event_timers_fire_in_order_as_the_watermark_passes_them() {
        let mut h = OperatorHarness::new(Probe::default()).unwrap();
        h.process_element(1, 5, 20).unwrap();
        h.process_element(2, 7, 3).unwrap();
        h.process_element(1, 1, 4).unwrap();
        assert_eq!(
            h.take_output(),
            lines(&[(20, "1:5"), (3, "2:7"), (4, "1:6")])
        );
        h.process_watermark(14).unwrap();
        assert_eq!(
            h.take_output(),
            lines(&[
                (13, "event timer 2@13 sum=Some(7)"),
                (14, "event timer 1@14 sum=Some(6)")
            ])
        );
        h.process_watermark(10).unwrap(); // behind: ignored
        assert_eq!(h.watermark(), 14);
        assert_eq!(h.pending_timers(), 1);
        h.end_input().unwrap();
        assert_eq!(
            h.take_output(),
            lines(&[(30, "event timer 1@30 sum=Some(6)")])
        );
        assert!(matches!(
            h.process_element(1, 1, 40),
            Err(HarnessError::Ended)
        ));
        assert!(matches!(h.process_watermark(50), Err(HarnessError::Ended)));
    }

    #[test]
    fn processing_timers_fire_once_the_clock_is_past_them_or_at_the_end() {
        let options = HarnessOptions {
            start_time_ms: 100,
            ..HarnessOptions::default()
        };
        let mut h = OperatorHarness::with_options(Probe::default(), options).unwrap();
        h.process_element(1, 99, 0).unwrap(); // timer at 105
        h.set_processing_time(102).unwrap();
        h.process_element(2, 99, 0).unwrap(); // timer at 107
        h.take_output();
        h.set_processing_time(105).unwrap();
        assert!(h.take_output().is_empty(), "due at 105: fires after it");
        h.set_processing_time(106).unwrap();
        assert_eq!(
            h.take_output(),
            lines(&[(105, "processing timer 1@105 sum=Some(99)")])
        );
        assert_eq!(h.processing_time_ms(), 106);
        h.end_input().unwrap();
        let out = h.take_output();
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(
            out[2],
            (107, "processing timer 2@107 sum=Some(99)".to_string())
        );
    }

    #[test]
    fn state_ttl_runs_on_the_harness_clock() {
        let probe = Probe {
            ttl: Some(Duration::from_millis(50)),
            ..Probe::default()
        };
        let mut h = OperatorHarness::new(probe).unwrap();
        h.process_element(1, 5, 0).unwrap();
        h.set_processing_time(49).unwrap();
        h.process_element(1, 1, 0).unwrap(); // 6, written again: expires at 99
        h.set_processing_time(99).unwrap();
        h.process_element(1, 1, 0).unwrap(); // expired: starts over
        assert_eq!(
            h.take_output(),
            lines(&[(0, "1:5"), (0, "1:6"), (0, "1:1")])
        );
    }

    #[test]
    fn side_output_is_captured_and_type_checked() {
        let options = HarnessOptions {
            side_output: true,
            ..HarnessOptions::default()
        };
        let mut h = OperatorHarness::with_options(Probe::default(), options).unwrap();
        h.process_element(1, -3, 0).unwrap();
        h.process_element(2, -4, 0).unwrap();
        assert!(matches!(
            h.take_side_output::<String>(),
            Err(HarnessError::SideOutputType { .. })
        ));
        assert_eq!(h.take_side_output::<i64>().unwrap(), [-3, -4]);
        assert!(h.take_side_output::<i64>().unwrap().is_empty());

        let mut without = OperatorHarness::new(Probe::default()).unwrap();
        assert!(matches!(
            without.take_side_output::<i64>(),
            Err(HarnessError::NoSideOutput)
        ));
        let err = without.process_element(1, -3, 0).unwrap_err();
        assert!(err.to_string().contains("no side output"), "{err}");
    }

    #[test]
    fn state_and_timers_survive_a_snapshot_and_restore() {
        let mut h = OperatorHarness::new(Probe::default()).unwrap();
        h.process_element(1, 5, 0).unwrap();
        h.process_element(2, 7, 1).unwrap();
        let first = h.snapshot().unwrap();
        h.process_element(1, 1, 2).unwrap();
        h.process_watermark(10).unwrap(); // fires 1@10, a delta of its own
        h.set_processing_time(42).unwrap();
        let second = h.snapshot().unwrap();
        assert_eq!(second.watermark(), 10);
        assert_eq!(second.processing_time_ms(), 42);
        assert!(second.bytes() > first.bytes(), "the chains grew by a delta");

        let mut early = OperatorHarness::restore(Probe::default(), &first).unwrap();
        early.process_element(1, 1, 2).unwrap();
        assert_eq!(early.take_output(), lines(&[(2, "1:6")]));

        let mut late = OperatorHarness::restore(Probe::default(), &second).unwrap();
        assert_eq!(late.watermark(), 10);
        assert_eq!(late.processing_time_ms(), 42);
        assert_eq!(late.pending_timers(), 2, "1@10 fired before the snapshot");
        late.end_input().unwrap();
        assert_eq!(
            late.take_output(),
            lines(&[
                (11, "event timer 2@11 sum=Some(7)"),
                (12, "event timer 1@12 sum=Some(6)")
            ])
        );
    }

    #[test]
    fn a_restore_can_split_the_key_partitions_as_a_rescaled_stage_does() {
        let options = HarnessOptions {
            key_partitions: 8,
            ..HarnessOptions::default()
        };
        let mut h = OperatorHarness::with_options(Probe::default(), options.clone()).unwrap();
        for key in 0..20 {
            h.process_element(key, i64::from(key), 0).unwrap();
        }
        h.take_output();
        let snapshot = h.snapshot().unwrap();
        let mut seen = Vec::new();
        for i in 0..2 {
            let owned = owned_range(i, 8, 2);
            let options = HarnessOptions {
                owned: Some(owned.clone()),
                ..options.clone()
            };
            let mut part =
                OperatorHarness::restore_with_options(Probe::default(), &snapshot, options)
                    .unwrap();
            for key in 0..20u32 {
                let kp = key_partition(&key, 8).unwrap();
                let result = part.process_element(key, 100, 1);
                if owned.contains(&kp) {
                    result.unwrap();
                    seen.push(key);
                } else {
                    assert!(matches!(result, Err(HarnessError::NotOwned { .. })));
                }
            }
            for (_, line) in part.take_output() {
                let (key, sum) = line.split_once(':').unwrap();
                let key: i64 = key.parse().unwrap();
                assert_eq!(sum, (key + 100).to_string(), "key {key} kept its sum");
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        let wrong = HarnessOptions::default();
        assert!(matches!(
            OperatorHarness::restore_with_options(Probe::default(), &snapshot, wrong),
            Err(HarnessError::Options(_))
        ));
    }

    #[test]
    fn state_entries_counts_live_state_but_not_timers() {
        let mut h = OperatorHarness::new(Probe::default()).unwrap();
        assert_eq!(h.state_entries().unwrap(), 0);
        h.process_element(1, 5, 0).unwrap();
        h.process_element(2, 5, 0).unwrap();
        assert_eq!(h.state_entries().unwrap(), 2);
        assert_eq!(h.pending_timers(), 2);
    }
}
