//! Broadcast state in the builder: a keyed stream connected with a broadcast stream
//! (rules, configuration) into a [`BroadcastProcess`] operator.
//!
//! Records of the keyed stream go to the owner of their key partition, as after any
//! `key_by`; every record of the broadcast stream goes to every partition of the
//! operator.

use std::marker::PhantomData;

use weir_actors::{Outbox, TaskError};

use crate::connector::SinkError;
use crate::job::builder::{Head, IntoPlan, KeyedStream, Stream};
use crate::job::plan::KeyedStagePlan;
use crate::job::terminal::{KeyRouter, KeySelector, Terminal, TerminalEnv, TerminalSpec};
use crate::operator::{BroadcastContext, BroadcastProcess, Chain, OperatorError};
use crate::record::Routed;

use super::partitioning::BroadcastSpec;
use super::{Graph, Partitioning, Port};

/// A keyed stream and a broadcast stream, waiting for their operator.
pub struct BroadcastConnected<K, B> {
    keyed: K,
    rules: B,
}

impl<H, C, Sel> KeyedStream<H, C, Sel>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
{
    /// Connects this keyed stream with `rules`, whose every record reaches every
    /// partition of the operator that follows (broadcast state).
    pub fn connect_broadcast<H2, C2>(
        self,
        rules: Stream<H2, C2>,
    ) -> BroadcastConnected<KeyedStream<H, C, Sel>, Stream<H2, C2>>
    where
        H2: Head,
        C2: Chain<H2::Out>,
        C2::Out: Clone + crate::exchange::Data,
    {
        BroadcastConnected { keyed: self, rules }
    }
}

/// The stream a broadcast-state operator `P` emits: a new stage that starts at `P`.
pub type BroadcastProcessed<P> = Stream<BroadcastHead<P>, crate::operator::chain::Identity>;

impl<H, C, Sel, H2, C2> BroadcastConnected<KeyedStream<H, C, Sel>, Stream<H2, C2>>
where
    H: Head,
    C: Chain<H::Out>,
    C::Out: 'static,
    Sel: KeySelector<C::Out>,
    H2: Head,
    C2: Chain<H2::Out>,
    C2::Out: Clone + crate::exchange::Data,
{
    /// Runs `op` on both streams: keyed records with their key's state, broadcast
    /// records on every partition.
    pub fn process<P>(self, op: P) -> BroadcastProcessed<P>
    where
        P: BroadcastProcess<Key = Sel::Key, In = Sel::Value, Rule = C2::Out>,
        H: IntoPlan<C, RoutedExchangeSpec<Sel, C2::Out>>,
        H2: IntoPlan<C2, BroadcastSpec<C2::Out, Routed<Sel::Key, Sel::Value, C2::Out>>>,
    {
        let graph = self.keyed.graph().clone();
        let to = graph.add_slot_after(self.keyed.slot());
        let (keyed, selector) = self.keyed.into_parts();
        keyed.close_to(
            RoutedExchangeSpec {
                selector,
                _rule: PhantomData,
            },
            Partitioning::Key,
            to,
        );
        if !graph.same(self.rules.graph()) {
            graph.note_error("connect_broadcast of streams of two different jobs".into());
        }
        self.rules
            .close_to(BroadcastSpec::new(), Partitioning::Broadcast, to);
        Stream::start(graph, to, BroadcastHead(op))
    }
}

/// A stage that starts at a broadcast-state operator.
pub struct BroadcastHead<P>(P);

impl<P: BroadcastProcess> Head for BroadcastHead<P> {
    type Out = P::Out;
}

/// Hands a broadcast record to the operator.
fn on_rule<P: BroadcastProcess>(
    op: &mut P,
    rule: P::Rule,
    ctx: &mut BroadcastContext<'_, P::Out>,
) -> Result<(), OperatorError> {
    op.process_broadcast(rule, ctx)
}

impl<P, C, Ts> IntoPlan<C, Ts> for BroadcastHead<P>
where
    P: BroadcastProcess,
    C: Chain<P::Out>,
    Ts: TerminalSpec<C::Out>,
{
    fn close(self, chain: C, term: Ts, graph: &Graph, slot: usize) -> Port {
        graph.set_plan(
            slot,
            Box::new(KeyedStagePlan::<P, C, Ts, Routed<P::Key, P::In, P::Rule>> {
                process: self.0,
                chain,
                term,
                on_rule: on_rule::<P>,
            }),
        );
        Port::Main
    }
}

/// The spec of the keyed side's exchange into a broadcast-state operator.
pub struct RoutedExchangeSpec<Sel, R> {
    selector: Sel,
    _rule: PhantomData<fn() -> R>,
}

/// Sends each keyed record to the owner of its key partition, as a keyed record of
/// a broadcast-state stage.
pub struct RoutedExchange<Sel, R> {
    router: KeyRouter<Sel>,
    _rule: PhantomData<fn() -> R>,
}

impl<T, Sel, R> Terminal<T> for RoutedExchange<Sel, R>
where
    Sel: KeySelector<T>,
    R: crate::exchange::Data,
{
    type Wire = Routed<Sel::Key, Sel::Value, R>;

    #[inline]
    fn accept(&mut self, item: T, ts: i64, out: &mut Outbox<Self::Wire>) {
        if let Some((dest, record)) = self.router.route(item, ts) {
            out.push_to(dest, Routed::Keyed(record));
        }
    }

    fn take_error(&mut self) -> Option<TaskError> {
        self.router.take_error()
    }

    fn finish(&mut self, _out: &mut Outbox<Self::Wire>) -> Result<(), TaskError> {
        self.router.finish()
    }
}

impl<T: 'static, Sel, R> TerminalSpec<T> for RoutedExchangeSpec<Sel, R>
where
    Sel: KeySelector<T>,
    R: crate::exchange::Data,
{
    type Terminal = RoutedExchange<Sel, R>;
    fn describe(&self) -> String {
        "key_by".into()
    }
    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError> {
        let downstream = env.receivers;
        let key_partitions = env.key_partitions;
        Ok(RoutedExchange {
            router: KeyRouter::new(self.selector.clone(), downstream, key_partitions),
            _rule: PhantomData,
        })
    }
}
