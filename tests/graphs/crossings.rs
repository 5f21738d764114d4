//! Which edges of a graph the serialized exchange encodes: a record type with a
//! field the codec leaves out tells, after each edge, whether the record was
//! handed over as a value or encoded and decoded on the way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use weir::exchange::ExchangeMode;
use weir::prelude::*;

/// A number with a flag the codec does not carry: `true` when made, `false` after a
/// trip through the codec (serde's default).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Traced {
    n: u64,
    #[serde(skip)]
    as_value: bool,
}

impl Traced {
    fn new(n: u64) -> Self {
        Traced { n, as_value: true }
    }
}

/// Per edge: how many records arrived as values, and how many through the codec.
#[derive(Clone, Default)]
pub struct Crossings(Arc<Mutex<BTreeMap<&'static str, (u64, u64)>>>);

impl Crossings {
    fn note(&self, edge: &'static str, t: &Traced) {
        let mut all = self.0.lock().unwrap();
        let counts = all.entry(edge).or_default();
        if t.as_value {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }

    /// Per edge: (as values, through the codec).
    pub fn counts(&self) -> BTreeMap<&'static str, (u64, u64)> {
        self.0.lock().unwrap().clone()
    }
}

/// Notes the records of a keyed or a non-keyed edge, passes them on renewed.
#[derive(Clone)]
struct Note<K> {
    edge: &'static str,
    crossings: Crossings,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K: Key> Operator for Note<K> {
    type Key = K;
    type In = Traced;
    type Out = Traced;
    fn process(
        &mut self,
        t: Traced,
        ctx: &mut KeyedContext<'_, K, Traced>,
    ) -> Result<(), OperatorError> {
        self.crossings.note(self.edge, &t);
        ctx.emit(Traced::new(t.n));
        Ok(())
    }
}

fn note<K>(edge: &'static str, crossings: &Crossings) -> Note<K> {
    Note {
        edge,
        crossings: crossings.clone(),
        _key: std::marker::PhantomData,
    }
}

/// Notes both inputs of a connect.
#[derive(Clone)]
struct NoteBoth(Crossings);

impl Operator for NoteBoth {
    type Key = u64;
    type In = Either<Traced, Traced>;
    type Out = Traced;
    fn process(
        &mut self,
        t: Either<Traced, Traced>,
        ctx: &mut KeyedContext<'_, u64, Traced>,
    ) -> Result<(), OperatorError> {
        let t = match t {
            Either::Left(t) => {
                self.0.note("connect (left)", &t);
                t
            }
            Either::Right(t) => {
                self.0.note("connect (right)", &t);
                t
            }
        };
        ctx.emit(Traced::new(t.n));
        Ok(())
    }
}

/// Notes the keyed and the broadcast records of a broadcast-state operator.
#[derive(Clone)]
struct NoteRules(Crossings);

impl Operator for NoteRules {
    type Key = u64;
    type In = Traced;
    type Out = Traced;
    fn process(
        &mut self,
        t: Traced,
        ctx: &mut KeyedContext<'_, u64, Traced>,
    ) -> Result<(), OperatorError> {
        self.0.note("connect_broadcast (keyed)", &t);
        ctx.emit(Traced::new(t.n));
        Ok(())
    }
}

impl BroadcastProcess for NoteRules {
    type Rule = Traced;
    fn process_broadcast(
        &mut self,
        rule: Traced,
        _ctx: &mut BroadcastContext<'_, Traced>,
    ) -> Result<(), OperatorError> {
        self.0.note("connect_broadcast (rules)", &rule);
        Ok(())
    }
}

/// Runs a graph with every kind of edge in `mode` and returns, per edge, how the
/// records crossed it.
pub fn crossings(mode: ExchangeMode) -> BTreeMap<&'static str, (u64, u64)> {
    let crossings = Crossings::default();
    let c = &crossings;
    let job = Job::new("crossings");
    let a = job
        .source(crate::common::Numbers::upto(200))
        .map(Traced::new);
    let b = job
        .source(crate::common::Numbers::upto(100))
        .map(Traced::new);
    let unioned = a.union_into(b, note::<NoKey>("union (forward)", c));
    let shared = unioned
        .key_by(|t: &Traced| t.n % 5)
        .process(note::<u64>("key_by", c))
        .share();
    let rules = job
        .source(crate::common::Numbers::upto(10))
        .map(Traced::new);
    shared
        .stream()
        .key_by(|t: &Traced| t.n % 3)
        .connect_broadcast(rules)
        .process(NoteRules(c.clone()))
        .sink(CollectSink::new());
    shared
        .stream()
        .rebalance()
        .process(note::<NoKey>("rebalance (fan-out route)", c))
        .broadcast()
        .process(note::<NoKey>("broadcast", c))
        .sink(CollectSink::new());
    let right = job
        .source(crate::common::Numbers::upto(50))
        .map(Traced::new)
        .key_by(|t: &Traced| t.n % 7);
    let job = shared
        .stream()
        .key_by(|t: &Traced| t.n % 7)
        .connect(right)
        .process(NoteBoth(c.clone()))
        .sink(CollectSink::new());
    let mut options = EngineOptions::for_tests(2);
    options.exchange = mode;
    Node::new(options).unwrap().run(job).expect("the job runs");
    crossings.counts()
}
