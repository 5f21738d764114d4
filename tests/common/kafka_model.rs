//! An in-memory model of a Kafka cluster with Kafka's transaction semantics, as a
//! `TransactionalLog` the real sink runs against:
//!
//! - a `read_committed` reader sees records written outside transactions and those
//!   of committed transactions, never those of open or aborted ones;
//! - `init_transactions` fences every older producer of the id (their calls fail)
//!   and aborts the id's open transaction;
//! - a fenced producer's commit fails;
//! - a marker lookup reads up to the partition's last stable offset (the first
//!   record of a transaction still open), as a real `read_committed` reader does;
//! - a broker-side transaction timeout aborts the open transaction and fences its
//!   producer.
//!
//! Faults are planned: the n-th operation of a kind (optionally on one topic or
//! transactional id) fails with an error, a panic, or a simulated process death
//! (every producer made so far stops working, without aborting anything: the
//! broker keeps their transactions open until fenced), before or after it takes
//! effect. Faults fire in plan order: one is armed when the previous one fired.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use weir::connector::kafka::{
    KafkaOutput, KafkaSinkError, LogProducer, PartitionEnds, TransactionalLog,
};

/// An operation a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Init,
    Begin,
    Send,
    Flush,
    Commit,
    Abort,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The call fails; nothing happens.
    Error,
    /// The call panics; nothing happens.
    Panic,
    /// The process dies before the call reaches the broker.
    DieBefore,
    /// The call takes effect, then the process dies before it hears back.
    DieAfter,
    /// The broker's transaction timeout aborts the id's open transaction (and
    /// fences its producer) just before the call.
    ExpireBefore,
    /// The process dies before the call reaches the broker and stays down (every
    /// call fails) until the test restarts it ([`KafkaModel::resume`]).
    HaltBefore,
    /// The call takes effect, then the process dies and stays down.
    HaltAfter,
}

/// A planned fault: the `nth` (1-based, counted from when it is armed) `op` whose
/// topic and transactional id contain the given texts.
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    pub topic: Option<String>,
    pub id: Option<String>,
    pub nth: u64,
    pub effect: Effect,
}

impl Fault {
    pub fn new(op: Op, nth: u64, effect: Effect) -> Self {
        Fault {
            op,
            topic: None,
            id: None,
            nth,
            effect,
        }
    }
    pub fn on_topic(mut self, topic: &str) -> Self {
        self.topic = Some(topic.to_owned());
        self
    }
    pub fn on_id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnState {
    Open,
    Committed,
    Aborted,
}

#[derive(Debug, Clone)]
struct Entry {
    record: KafkaOutput,
    txn: Option<usize>,
}

#[derive(Default)]
struct IdState {
    producer_epoch: u64,
    open: Option<usize>,
}

#[derive(Default)]
struct State {
    /// topic -> partition -> log.
    topics: BTreeMap<String, BTreeMap<i32, Vec<Entry>>>,
    txns: Vec<TxnState>,
    ids: BTreeMap<String, IdState>,
    generation: u64,
    faults: Vec<Fault>,
    armed_count: u64,
    fired: Vec<Fault>,
    commits: u64,
    halted: bool,
}

impl State {
    /// The log of `topic`/`partition`.
    fn log(&self, topic: &str, partition: i32) -> Result<&Vec<Entry>, KafkaSinkError> {
        self.topics
            .get(topic)
            .and_then(|t| t.get(&partition))
            .ok_or_else(|| err(format!("no partition {topic}/{partition}")))
    }

    /// The last stable offset of `log`: the first record of a transaction still
    /// open, or its end.
    fn stable_end(&self, log: &[Entry]) -> usize {
        log.iter()
            .position(|e| e.txn.is_some_and(|t| self.txns[t] == TxnState::Open))
            .unwrap_or(log.len())
    }
}

/// The model cluster.
#[derive(Clone, Default)]
pub struct KafkaModel {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn err(what: impl Into<String>) -> KafkaSinkError {
    KafkaSinkError::client(what.into(), "model cluster")
}

impl KafkaModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plans faults (fired in order).
    pub fn with_faults(self, faults: Vec<Fault>) -> Self {
        lock(&self.state).faults = faults;
        self
    }

    /// The faults that fired.
    pub fn fired(&self) -> Vec<Fault> {
        lock(&self.state).fired.clone()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let mut s = lock(&self.state);
        let t = s.topics.entry(topic.to_owned()).or_default();
        for p in 0..partitions {
            t.entry(p).or_default();
        }
    }

    /// What a read_committed consumer of `topic` sees, partition by partition.
    pub fn read_committed(&self, topic: &str) -> Vec<KafkaOutput> {
        self.read(topic, true)
    }

    /// What a read_uncommitted consumer of `topic` sees.
    pub fn read_uncommitted(&self, topic: &str) -> Vec<KafkaOutput> {
        self.read(topic, false)
    }

    fn read(&self, topic: &str, committed_only: bool) -> Vec<KafkaOutput> {
        let s = lock(&self.state);
        s.topics
            .get(topic)
            .into_iter()
            .flat_map(|t| t.values())
            .flatten()
            .filter(|e| !committed_only || e.txn.is_none_or(|t| s.txns[t] == TxnState::Committed))
            .map(|e| e.record.clone())
            .collect()
    }

    /// Transactions still open.
    pub fn open_transactions(&self) -> usize {
        lock(&self.state)
            .txns
            .iter()
            .filter(|t| **t == TxnState::Open)
            .count()
    }

    /// Transactions committed.
    pub fn commits(&self) -> u64 {
        lock(&self.state).commits
    }

    /// The process died (a `Halt` fault fired) and was not restarted yet.
    pub fn halted(&self) -> bool {
        lock(&self.state).halted
    }

    /// The process is started again: calls reach the cluster again.
    pub fn resume(&self) {
        lock(&self.state).halted = false;
    }

    /// The broker's timeout aborts `id`'s open transaction and fences its producer.
    pub fn expire(&self, id: &str) {
        expire(&mut lock(&self.state), id);
    }
}

fn expire(s: &mut State, id: &str) {
    let ids = s.ids.entry(id.to_owned()).or_default();
    ids.producer_epoch += 1;
    if let Some(t) = ids.open.take() {
        s.txns[t] = TxnState::Aborted;
    }
}

impl TransactionalLog for KafkaModel {
    fn producer(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<Box<dyn LogProducer>, KafkaSinkError> {
        let s = lock(&self.state);
        if s.halted {
            return Err(err("creating a producer: the process is down"));
        }
        let generation = s.generation;
        drop(s);
        Ok(Box::new(ModelProducer {
            model: self.clone(),
            id: transactional_id.map(str::to_owned),
            producer_epoch: None,
            generation,
        }))
    }

    fn ensure_marker_topic(&self, topic: &str, partitions: i32) -> Result<i32, KafkaSinkError> {
        let mut s = lock(&self.state);
        let t = s.topics.entry(topic.to_owned()).or_default();
        if t.is_empty() {
            for p in 0..partitions.max(1) {
                t.insert(p, Vec::new());
            }
        }
        Ok(t.len() as i32)
    }

    fn newest_committed(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, KafkaSinkError> {
        let s = lock(&self.state);
        let log = s.log(topic, partition)?;
        // A read_committed reader reads up to the last stable offset.
        Ok(log[..s.stable_end(log)]
            .iter()
            .rev()
            .filter(|e| e.txn.is_none_or(|t| s.txns[t] == TxnState::Committed))
            .find(|e| e.record.key.as_deref() == Some(key))
            .and_then(|e| e.record.value.clone()))
    }

    fn newest_written(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<(i64, Vec<u8>)>, KafkaSinkError> {
        let s = lock(&self.state);
        let log = s.log(topic, partition)?;
        Ok(log
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| e.record.key.as_deref() == Some(key))
            .map(|(offset, e)| (offset as i64, e.record.value.clone().unwrap_or_default())))
    }

    fn ends(&self, topic: &str, partition: i32) -> Result<PartitionEnds, KafkaSinkError> {
        let s = lock(&self.state);
        let log = s.log(topic, partition)?;
        Ok(PartitionEnds {
            high: log.len() as i64,
            stable: s.stable_end(log) as i64,
        })
    }
}

/// A producer of the model.
pub struct ModelProducer {
    model: KafkaModel,
    id: Option<String>,
    producer_epoch: Option<u64>,
    generation: u64,
}

impl ModelProducer {
    /// Checks liveness, fencing and faults, then runs `op` on the state.
    fn call<R>(
        &mut self,
        op: Op,
        topic: Option<&str>,
        f: impl FnOnce(&mut State, &mut Self) -> Result<R, KafkaSinkError>,
    ) -> Result<R, KafkaSinkError> {
        let model = self.model.clone();
        let mut s = lock(&model.state);
        let name = self.id.clone().unwrap_or_else(|| "(plain)".into());
        if self.generation != s.generation || s.halted {
            return Err(err(format!("{op:?} by {name}: the process died")));
        }
        if op != Op::Init {
            if let (Some(id), Some(mine)) = (&self.id, self.producer_epoch) {
                if s.ids.get(id).map(|i| i.producer_epoch) != Some(mine) {
                    return Err(err(format!("{op:?} by {name}: producer fenced")));
                }
            }
        }
        let mut effect = None;
        if let Some(fault) = s.faults.first().cloned() {
            let hits = fault.op == op
                && fault
                    .topic
                    .as_deref()
                    .is_none_or(|t| topic.is_some_and(|x| x.contains(t)))
                && fault.id.as_deref().is_none_or(|i| name.contains(i));
            if hits {
                s.armed_count += 1;
                if s.armed_count == fault.nth {
                    s.faults.remove(0);
                    s.armed_count = 0;
                    s.fired.push(fault.clone());
                    effect = Some(fault.effect);
                }
            }
        }
        match effect {
            None => f(&mut s, self),
            Some(Effect::Error) => Err(err(format!("{op:?} by {name}: injected error"))),
            Some(Effect::Panic) => {
                drop(s);
                panic!("injected panic in {op:?} by {name}")
            }
            Some(Effect::DieBefore) => {
                s.generation += 1;
                Err(err(format!("{op:?} by {name}: injected process death")))
            }
            Some(Effect::DieAfter) => {
                f(&mut s, self)?;
                s.generation += 1;
                Err(err(format!(
                    "{op:?} by {name}: process died after the call"
                )))
            }
            Some(Effect::HaltBefore) => {
                s.generation += 1;
                s.halted = true;
                Err(err(format!("{op:?} by {name}: injected process death")))
            }
            Some(Effect::HaltAfter) => {
                f(&mut s, self)?;
                s.generation += 1;
                s.halted = true;
                Err(err(format!(
                    "{op:?} by {name}: process died after the call"
                )))
            }
            Some(Effect::ExpireBefore) => {
                expire(&mut s, &name);
                drop(s);
                self.call(op, topic, f)
            }
        }
    }

    fn open_txn(s: &State, id: &Option<String>) -> Option<usize> {
        id.as_ref()
            .and_then(|id| s.ids.get(id))
            .and_then(|i| i.open)
    }
}

impl LogProducer for ModelProducer {
    fn init_transactions(&mut self) -> Result<(), KafkaSinkError> {
        self.call(Op::Init, None, |s, me| {
            let id = me
                .id
                .clone()
                .ok_or_else(|| err("init on a plain producer"))?;
            let ids = s.ids.entry(id).or_default();
            ids.producer_epoch += 1;
            let epoch = ids.producer_epoch;
            if let Some(t) = ids.open.take() {
                s.txns[t] = TxnState::Aborted;
            }
            me.producer_epoch = Some(epoch);
            Ok(())
        })
    }

    fn begin(&mut self) -> Result<(), KafkaSinkError> {
        self.call(Op::Begin, None, |s, me| {
            let id = me
                .id
                .clone()
                .ok_or_else(|| err("begin on a plain producer"))?;
            if me.producer_epoch.is_none() {
                return Err(err("begin before init_transactions"));
            }
            if Self::open_txn(s, &me.id).is_some() {
                return Err(err("begin with a transaction open"));
            }
            s.txns.push(TxnState::Open);
            let t = s.txns.len() - 1;
            s.ids.entry(id).or_default().open = Some(t);
            Ok(())
        })
    }

    fn send(&mut self, topic: &str, record: &KafkaOutput) -> Result<(), KafkaSinkError> {
        self.call(Op::Send, Some(topic), |s, me| {
            let txn = Self::open_txn(s, &me.id);
            if me.id.is_some() && txn.is_none() {
                return Err(err("transactional send outside a transaction"));
            }
            let partition = record.partition.unwrap_or(0);
            s.topics
                .entry(topic.to_owned())
                .or_default()
                .entry(partition)
                .or_default()
                .push(Entry {
                    record: record.clone(),
                    txn,
                });
            Ok(())
        })
    }

    fn flush(&mut self) -> Result<(), KafkaSinkError> {
        self.call(Op::Flush, None, |_, _| Ok(()))
    }

    fn commit(&mut self) -> Result<(), KafkaSinkError> {
        self.call(Op::Commit, None, |s, me| {
            let t = Self::open_txn(s, &me.id).ok_or_else(|| err("commit without a transaction"))?;
            s.txns[t] = TxnState::Committed;
            if let Some(id) = &me.id {
                s.ids.entry(id.clone()).or_default().open = None;
            }
            s.commits += 1;
            Ok(())
        })
    }

    fn abort(&mut self) -> Result<(), KafkaSinkError> {
        self.call(Op::Abort, None, |s, me| {
            let t = Self::open_txn(s, &me.id).ok_or_else(|| err("abort without a transaction"))?;
            s.txns[t] = TxnState::Aborted;
            if let Some(id) = &me.id {
                s.ids.entry(id.clone()).or_default().open = None;
            }
            Ok(())
        })
    }
}
