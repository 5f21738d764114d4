//! Process-wide tables the sink's partitions share with its commit actions, which
//! run on the checkpoint writer thread with nothing but their own fields:
//!
//! - the **live slots**: each transactional producer a sink partition holds, by
//!   transactional id, so an action can commit the transaction the producer holds
//!   open (the fast path) instead of producing the epoch again;
//! - the **logs** a test put in place of librdkafka, by bootstrap string;
//! - the **transaction counters** of each sink, by sink id.
//!
//! Slots are held weakly: when a sink partition is dropped (its job attempt ended),
//! its producers leave the table, and a later action takes the redo path.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use super::log::{LogProducer, TransactionalLog};
use super::rdkafka_log::RdKafkaLog;

/// Locks `mutex`, going on after a panic of another holder: every value behind
/// these locks stays consistent between statements (a panic mid-protocol is one
/// of the crashes the protocol survives).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a slot's transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No transaction open; the slot may take the next epoch.
    Idle,
    /// A transaction is open and receiving the records of the epoch in progress.
    Filling,
    /// The transaction holds the output and marker of this epoch, waiting for the
    /// epoch to complete.
    PreCommitted(u64),
}

/// One transactional producer of a sink partition, and its transaction's phase.
pub(crate) struct Slot {
    /// The transactional id.
    pub id: String,
    /// The producer (`None` after a failure left it unusable).
    pub producer: Option<Box<dyn LogProducer>>,
    /// Its transaction.
    pub phase: Phase,
    /// The newest epoch whose transaction this slot's id committed in this process.
    pub committed_through: Option<u64>,
}

/// A slot shared between its sink partition and the commit actions.
pub(crate) type SharedSlot = Arc<Mutex<Slot>>;

static LIVE: LazyLock<Mutex<HashMap<String, Weak<Mutex<Slot>>>>> = LazyLock::new(Mutex::default);
/// Slots of dropped sink partitions that hold a pre-committed transaction: its
/// epoch may be complete with the commit action still to run (the last epoch of a
/// finished job, or the epoch a rollback restores), so the producer is kept until
/// a new sink partition takes the id over (and fences it); a committed one is kept
/// too, so an action applied again sees that its epoch committed.
static ORPHANS: LazyLock<Mutex<HashMap<String, SharedSlot>>> = LazyLock::new(Mutex::default);
static LOGS: LazyLock<Mutex<HashMap<String, Arc<dyn TransactionalLog>>>> =
    LazyLock::new(Mutex::default);
static COUNTERS: LazyLock<Mutex<HashMap<String, Arc<TransactionCounts>>>> =
    LazyLock::new(Mutex::default);

/// Makes `slot` the live producer of its transactional id (replacing a dropped one).
pub(crate) fn register(slot: &SharedSlot) {
    let id = lock(slot).id.clone();
    let mut live = lock(&LIVE);
    live.retain(|_, weak| weak.strong_count() > 0);
    live.insert(id.clone(), Arc::downgrade(slot));
    drop(live);
    lock(&ORPHANS).remove(&id);
}

/// Whether a running sink partition of this process holds `transactional_id`'s
/// producer (kept slots of dropped partitions do not count).
pub(crate) fn held(transactional_id: &str) -> bool {
    lock(&LIVE)
        .get(transactional_id)
        .is_some_and(|weak| weak.strong_count() > 0)
}

/// Keeps `slot` (of a dropped sink partition, holding a pre-committed transaction)
/// alive for its commit action.
pub(crate) fn adopt(slot: SharedSlot) {
    let id = lock(&slot).id.clone();
    lock(&ORPHANS).insert(id, slot);
}

/// The live slot of `transactional_id`, if a sink partition of this process holds it.
pub(crate) fn live(transactional_id: &str) -> Option<SharedSlot> {
    let held = lock(&LIVE).get(transactional_id).and_then(Weak::upgrade);
    held.or_else(|| lock(&ORPHANS).get(transactional_id).cloned())
}

/// Makes every sink and commit action with bootstrap string `bootstrap` use `log`
/// instead of librdkafka, for this process's life (tests use it to put an
/// in-memory model of a cluster in place).
pub(crate) fn install_log(bootstrap: &str, log: Arc<dyn TransactionalLog>) {
    lock(&LOGS).insert(bootstrap.to_owned(), log);
}

/// The log to reach `bootstrap` through: an installed one, else librdkafka with
/// `settings`.
pub(crate) fn log_for(
    bootstrap: &str,
    settings: &BTreeMap<String, String>,
    timeout: Duration,
) -> Arc<dyn TransactionalLog> {
    if let Some(log) = lock(&LOGS).get(bootstrap) {
        return log.clone();
    }
    Arc::new(RdKafkaLog::new(bootstrap, settings.clone(), timeout))
}

/// How many Kafka transactions a sink committed and aborted in this process.
#[derive(Debug, Default)]
pub struct TransactionCounts {
    committed: AtomicU64,
    aborted: AtomicU64,
}

impl TransactionCounts {
    /// Transactions committed (by the commit of a completed epoch, or by a redo
    /// that produced an epoch again).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }
    /// Transactions the sink aborted itself (the epoch in progress when a sink
    /// partition is dropped by a rollback). Transactions aborted by fencing (a
    /// restarted producer's `init_transactions`) or by the broker's timeout are
    /// not seen by the sink and not counted.
    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }
    pub(crate) fn count_commit(&self) {
        self.committed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_abort(&self) {
        self.aborted.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a transaction sink `sink` committed, here and in the exported
/// `weir_kafka_transactions_committed_total`.
pub(crate) fn count_commit(sink: &str) {
    transaction_counts(sink).count_commit();
    crate::metrics::kafka::transaction_committed(sink);
}

/// Counts a transaction sink `sink` aborted, here and in the exported
/// `weir_kafka_transactions_aborted_total`.
pub(crate) fn count_abort(sink: &str) {
    transaction_counts(sink).count_abort();
    crate::metrics::kafka::transaction_aborted(sink);
}

/// The transaction counters of the sink with id `sink` (shared by its partitions
/// and its commit actions; created at first use).
pub fn transaction_counts(sink: &str) -> Arc<TransactionCounts> {
    lock(&COUNTERS).entry(sink.to_owned()).or_default().clone()
}
