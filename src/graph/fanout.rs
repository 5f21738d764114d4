//! Fan-out: a stream read by several consumers.
//!
//! `share()` closes the current stage and returns a [`Shared`] handle; each
//! `stream()` of it starts a consumer. A consumer's stateless operators and its
//! partitioning (or sink) run inside the producing stage, as one route of it: every
//! record goes to every route (cloned for all but the last), and each route sends
//! through its own output, with its own backpressure and the markers.
//!
//! ```
//! use weir::prelude::*;
//!
//! let lengths = CollectSink::<usize>::new();
//! let upper = CollectSink::<String>::new();
//! let job = Job::new("fan-out");
//! // W1Lines::new(n) makes n words, ten to a line: 50 lines.
//! let lines = job.source(W1Lines::new(500)).share();
//! lines.stream().map(|l: String| l.len()).sink(lengths.clone());
//! let sunk = lines.stream().map(|l: String| l.to_uppercase()).sink(upper.clone());
//! Node::new(EngineOptions::for_tests(2)).unwrap().run(sunk).unwrap();
//! assert_eq!(lengths.items().len(), 50);
//! assert_eq!(upper.items().len(), 50);
//! ```

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use weir_actors::{MailboxClosed, Marker, Outbox, SideOutput, TaskError};

use crate::connector::action_frame::{decode_action, encode_action};
use crate::connector::{SinkError, SinkRecovery};
use crate::job::builder::{Head, IntoPlan, Stream};
use crate::job::commits::StageCommitter;
use crate::job::plan::wired_mailboxes;
use crate::job::terminal::{IntoTerminal, Terminal, TerminalEnv, TerminalSpec};
use crate::operator::chain::Identity;
use crate::operator::Chain;

use super::{Graph, Port};

/// The routes a shared stage feeds, added as consumers attach.
type Routes<T> = Arc<Mutex<Vec<Box<dyn RouteSpec<T>>>>>;

/// A stream that several consumers read. Cloneable: each clone, and each
/// [`Shared::stream`] of it, reads every record.
pub struct Shared<T> {
    graph: Graph,
    slot: usize,
    routes: Routes<T>,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            graph: self.graph.clone(),
            slot: self.slot,
            routes: self.routes.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> Shared<T> {
    /// A new consumer of the shared stream.
    pub fn stream(&self) -> Stream<SharedHead<T>, Identity> {
        Stream::start(
            self.graph.clone(),
            self.slot,
            SharedHead {
                routes: self.routes.clone(),
            },
        )
    }
}

impl<H: Head, C: Chain<H::Out>> Stream<H, C>
where
    C::Out: Clone + Send + 'static,
{
    /// Closes the current stage so that several consumers can read its records
    /// (fan-out); start each with [`Shared::stream`].
    pub fn share(self) -> Shared<C::Out>
    where
        H: IntoPlan<C, FanOutSpec<C::Out>>,
    {
        let routes: Routes<C::Out> = Arc::new(Mutex::new(Vec::new()));
        let graph = self.graph().clone();
        let slot = self.slot();
        self.close_with(FanOutSpec {
            routes: routes.clone(),
        });
        Shared {
            graph,
            slot,
            routes,
        }
    }
}

fn lock<T>(routes: &Routes<T>) -> std::sync::MutexGuard<'_, Vec<Box<dyn RouteSpec<T>>>> {
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

/// The head of a consumer of a shared stream: what it builds becomes a route of the
/// shared stage.
pub struct SharedHead<T> {
    routes: Routes<T>,
}

impl<T: Send + 'static> Head for SharedHead<T> {
    type Out = T;
}

impl<T, C, Ts> IntoPlan<C, Ts> for SharedHead<T>
where
    T: Send + 'static,
    C: Chain<T>,
    Ts: TerminalSpec<C::Out>,
{
    fn close(self, chain: C, term: Ts, _graph: &Graph, _slot: usize) -> Port {
        let mut routes = lock(&self.routes);
        routes.push(Box::new(RouteOf {
            chain,
            term,
            _in: PhantomData,
        }));
        Port::Route(routes.len() as u32 - 1)
    }
}

/// Builds one route of a shared stage, types erased but for the input.
trait RouteSpec<T>: Send {
    fn describe(&self) -> String;
    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError>;
    fn committer(&self) -> Option<Arc<dyn StageCommitter>>;
    fn build(&self, env: &TerminalEnv<'_>, index: u32) -> Result<Box<dyn Route<T>>, SinkError>;
}

/// A consumer's chain and terminal, as a route.
struct RouteOf<T, C, Ts> {
    chain: C,
    term: Ts,
    _in: PhantomData<fn(T)>,
}

impl<T, C, Ts> RouteSpec<T> for RouteOf<T, C, Ts>
where
    T: Send + 'static,
    C: Chain<T>,
    Ts: TerminalSpec<C::Out>,
{
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        self.chain.names(&mut parts);
        parts.push(self.term.describe());
        parts.join(" -> ")
    }

    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        self.term.recover(recovery)
    }

    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        self.term.committer()
    }

    fn build(&self, env: &TerminalEnv<'_>, index: u32) -> Result<Box<dyn Route<T>>, SinkError> {
        let port = Port::Route(index);
        let (dests, offset) =
            wired_mailboxes::<<Ts::Terminal as Terminal<C::Out>>::Wire>("", env.outputs, &port)
                .map_err(|e| SinkError::Failed(e.to_string()))?;
        let receivers = dests.len() as u32;
        let term = self.term.build_with(&TerminalEnv {
            partition: env.partition,
            parallelism: env.parallelism,
            receivers,
            key_partitions: env.key_partitions,
            batch_size: env.batch_size,
            exchange: env.exchange,
            outputs: env.outputs,
            job: env.job,
            stage: env.stage,
            stage_index: env.stage_index,
            store: env.store,
            clock: env.clock.clone(),
        })?;
        Ok(Box::new(RouteRun {
            chain: self.chain.clone(),
            term,
            out: Outbox::over(
                offset + env.partition,
                crate::exchange::senders(dests, env.exchange),
                env.batch_size,
            ),
            _in: PhantomData,
        }))
    }
}

/// One partition's route: a consumer's chain and terminal with its own output.
trait Route<T>: SideOutput {
    fn accept(&mut self, item: T, ts: i64);
    fn take_error(&mut self) -> Option<TaskError>;
    fn on_watermark(&mut self, watermark: i64);
    fn finish(&mut self) -> Result<(), TaskError>;
    fn pre_commit(&mut self, epoch: u64) -> Result<Vec<Vec<u8>>, TaskError>;
    fn committed(&mut self, epoch: u64);
    fn aborted(&mut self);
}

struct RouteRun<T, C, Tm>
where
    C: Chain<T>,
    Tm: Terminal<C::Out>,
{
    chain: C,
    term: Tm,
    out: Outbox<Tm::Wire>,
    _in: PhantomData<fn(T)>,
}

impl<T, C, Tm> Route<T> for RouteRun<T, C, Tm>
where
    T: Send + 'static,
    C: Chain<T>,
    Tm: Terminal<C::Out>,
{
    #[inline]
    fn accept(&mut self, item: T, ts: i64) {
        let mut into = IntoTerminal {
            term: &mut self.term,
            out: &mut self.out,
            ts,
        };
        self.chain.push(item, &mut into);
    }
    fn take_error(&mut self) -> Option<TaskError> {
        self.term.take_error()
    }
    fn on_watermark(&mut self, watermark: i64) {
        self.term.on_watermark(watermark, &mut self.out);
    }
    fn finish(&mut self) -> Result<(), TaskError> {
        self.term.finish(&mut self.out)
    }
    fn pre_commit(&mut self, epoch: u64) -> Result<Vec<Vec<u8>>, TaskError> {
        self.term.pre_commit(epoch, &mut self.out)
    }
    fn committed(&mut self, epoch: u64) {
        self.term.committed(epoch);
    }
    fn aborted(&mut self) {
        self.term.aborted();
    }
}

impl<T, C, Tm> SideOutput for RouteRun<T, C, Tm>
where
    T: Send + 'static,
    C: Chain<T>,
    Tm: Terminal<C::Out>,
{
    fn push_any(&mut self, _item: Box<dyn std::any::Any + Send>) -> Result<(), String> {
        Err("a route of a shared stream takes records from its stage only".into())
    }
    fn send_now(&mut self) -> Result<bool, MailboxClosed> {
        self.out.send_now()
    }
    fn take_pending(&mut self) -> weir_actors::side::SideSend {
        Box::pin(self.out.take_pending().send_all())
    }
    fn broadcast_marker(&mut self, marker: Marker) {
        self.out.broadcast_marker(marker);
    }
    fn flush(&mut self) {
        self.out.flush();
    }
    fn records_out(&self) -> u64 {
        self.out.records_out()
    }
}

/// The terminal spec of a shared stage: one route per consumer.
pub struct FanOutSpec<T> {
    routes: Routes<T>,
}

/// A shared stage's terminal in one partition: feeds every route.
pub struct FanOut<T> {
    routes: Vec<Box<dyn Route<T>>>,
    /// Whether several routes end in transactional sinks: each action is then
    /// tagged with its route ([`RouteCommitters`]).
    tag_actions: bool,
}

impl<T: Clone + Send + 'static> Terminal<T> for FanOut<T> {
    type Wire = ();

    #[inline]
    fn accept(&mut self, item: T, ts: i64, _out: &mut Outbox<()>) {
        if let Some((last, rest)) = self.routes.split_last_mut() {
            for route in rest {
                route.accept(item.clone(), ts);
            }
            last.accept(item, ts);
        }
    }

    fn take_error(&mut self) -> Option<TaskError> {
        self.routes.iter_mut().find_map(|r| r.take_error())
    }

    fn on_watermark(&mut self, watermark: i64, _out: &mut Outbox<()>) {
        for route in &mut self.routes {
            route.on_watermark(watermark);
        }
    }

    fn finish(&mut self, _out: &mut Outbox<()>) -> Result<(), TaskError> {
        for route in &mut self.routes {
            route.finish()?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64, _out: &mut Outbox<()>) -> Result<Vec<Vec<u8>>, TaskError> {
        let mut all = Vec::new();
        for (index, route) in self.routes.iter_mut().enumerate() {
            let actions = route.pre_commit(epoch)?;
            if self.tag_actions {
                for action in actions {
                    all.push(RouteCommitters::tag(index as u32, action)?);
                }
            } else {
                all.extend(actions);
            }
        }
        Ok(all)
    }

    fn committed(&mut self, epoch: u64) {
        for route in &mut self.routes {
            route.committed(epoch);
        }
    }

    fn aborted(&mut self) {
        for route in &mut self.routes {
            route.aborted();
        }
    }

    fn extra_outputs(&mut self, visit: &mut dyn FnMut(&mut dyn SideOutput)) {
        for route in &mut self.routes {
            let route: &mut dyn Route<T> = route.as_mut();
            visit(route);
        }
    }

    fn has_extra_outputs(&self) -> bool {
        !self.routes.is_empty()
    }
}

impl<T: Clone + Send + 'static> TerminalSpec<T> for FanOutSpec<T> {
    type Terminal = FanOut<T>;

    fn describe(&self) -> String {
        let routes = lock(&self.routes);
        let parts: Vec<String> = routes
            .iter()
            .map(|r| format!("({})", r.describe()))
            .collect();
        format!("fan_out[{}]", parts.join(", "))
    }

    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        for route in lock(&self.routes).iter() {
            route.recover(recovery)?;
        }
        Ok(())
    }

    fn build_with(&self, env: &TerminalEnv<'_>) -> Result<Self::Terminal, SinkError> {
        let specs = lock(&self.routes);
        if specs.is_empty() {
            return Err(SinkError::Failed(
                "a shared stream is read by no consumer (call stream() on it and end that in a sink)"
                    .into(),
            ));
        }
        let mut routes = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            routes.push(spec.build(env, index as u32)?);
        }
        let transactional = specs.iter().filter(|r| r.committer().is_some()).count();
        Ok(FanOut {
            routes,
            tag_actions: transactional > 1,
        })
    }

    /// The committer of the route that ends in a transactional sink; with several,
    /// one that hands each action to its route's.
    fn committer(&self) -> Option<Arc<dyn StageCommitter>> {
        let specs = lock(&self.routes);
        let committers: Vec<(u32, Arc<dyn StageCommitter>)> = specs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.committer().map(|c| (i as u32, c)))
            .collect();
        match committers.len() {
            0 => None,
            1 => committers.into_iter().next().map(|(_, c)| c),
            _ => Some(Arc::new(RouteCommitters { committers })),
        }
    }
}

/// The committers of a shared stage whose routes end in several transactional
/// sinks. Each route's encoded action travels inside an action frame of its own
/// that names the route, `(route, action)`, so that one stage's commit list can
/// hold the actions of several sinks.
struct RouteCommitters {
    committers: Vec<(u32, Arc<dyn StageCommitter>)>,
}

impl RouteCommitters {
    /// Route `route`'s encoded `action`, tagged.
    fn tag(route: u32, action: Vec<u8>) -> Result<Vec<u8>, TaskError> {
        encode_action(&(route, action))
            .map_err(|e| TaskError::caused(format!("tagging a commit action of route {route}"), e))
    }
}

impl StageCommitter for RouteCommitters {
    fn commit(&self, encoded: &[u8]) -> Result<(), SinkError> {
        let (route, action): (u32, Vec<u8>) = decode_action(encoded)?;
        let committer = self
            .committers
            .iter()
            .find(|(r, _)| *r == route)
            .map(|(_, c)| c)
            .ok_or_else(|| {
                SinkError::Failed(format!(
                    "a commit action names route {route} of a shared stream, which ends \
                     in no transactional sink (was the snapshot taken from another job graph?)"
                ))
            })?;
        committer.commit(&action)
    }
}
