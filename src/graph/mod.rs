//! The job graph: the stages the typed builder creates and the edges between them.
//!
//! Every stream under construction belongs to one graph, shared by all the streams
//! of a job (several sources, fan-out, union, connect and side outputs all add to
//! it). A stage gets a slot when it is started (at its source, or at the operator
//! that heads it) and its plan when the builder closes it (at its sink or at the
//! partitioning that ends it); an edge joins one output port of a stage to a stage
//! that reads it, with the way records are partitioned between them.
//!
//! When the job is run, the graph is frozen into a [`JobPlan`]: stages numbered in
//! the order they were started, except that the stages reading side outputs come
//! last (so the numbering of a job without graphs features is that of a pipeline,
//! and its savepoints stay readable), and the edges in those numbers.

pub mod broadcast;
pub mod connect;
pub mod fanout;
pub mod partitioning;
pub mod side;
pub mod union;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::job::plan::StagePlan;
use crate::job::JobError;

/// Which output of a stage an edge leaves from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    /// The stage's main output (its terminal).
    Main,
    /// Route `n` of a stage whose output several consumers read (fan-out).
    Route(u32),
    /// The side output tagged with this name.
    Side(String),
}

/// How records are spread over the partitions of the receiving stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// To the owner of the record's key partition.
    Key,
    /// Partition `i` to partition `i` (modulo the receivers).
    Forward,
    /// Round robin over every receiver.
    Rebalance,
    /// Every record to every receiver.
    Broadcast,
    /// A side output, forwarded partition to partition.
    Side,
}

impl Partitioning {
    /// The name shown by the status API and `Job::describe`.
    pub fn name(self) -> &'static str {
        match self {
            Partitioning::Key => "key",
            Partitioning::Forward => "forward",
            Partitioning::Rebalance => "rebalance",
            Partitioning::Broadcast => "broadcast",
            Partitioning::Side => "side",
        }
    }
}

/// An edge of the graph under construction, between slots.
#[derive(Debug, Clone)]
pub(crate) struct SlotEdge {
    pub from: usize,
    pub port: Port,
    pub to: usize,
    pub partitioning: Partitioning,
}

/// A stage's place in the graph under construction.
struct Slot {
    plan: Option<Box<dyn StagePlan>>,
    /// Whether the stage reads a side output (numbered after the others).
    side: bool,
}

/// The graph a job's streams add to.
struct GraphInner {
    name: String,
    slots: Vec<Slot>,
    edges: Vec<SlotEdge>,
    /// A misuse of the builder noticed while building (reported when the job is
    /// run).
    error: Option<String>,
}

/// A handle on the graph of a job under construction; every stream of the job holds
/// one.
#[derive(Clone)]
pub struct Graph(Arc<Mutex<GraphInner>>);

impl Graph {
    /// An empty graph for the job called `name`.
    pub(crate) fn new(name: String) -> Self {
        Graph(Arc::new(Mutex::new(GraphInner {
            name,
            slots: Vec::new(),
            edges: Vec::new(),
            error: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, GraphInner> {
        // The graph is only touched by the builder's own code, which does not panic
        // while holding the lock; a poisoned lock still holds a consistent graph.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's name.
    pub fn job_name(&self) -> String {
        self.lock().name.clone()
    }

    /// Reserves the slot of a stage being started.
    pub(crate) fn add_slot(&self, side: bool) -> usize {
        let mut g = self.lock();
        g.slots.push(Slot { plan: None, side });
        g.slots.len() - 1
    }

    /// Reserves the slot of a stage that `from` feeds: it reads a side output
    /// (is numbered with those stages) when `from` does.
    pub(crate) fn add_slot_after(&self, from: usize) -> usize {
        let side = self.lock().slots.get(from).is_some_and(|s| s.side);
        self.add_slot(side)
    }

    /// Gives slot `slot` its plan (the stage is closed).
    pub(crate) fn set_plan(&self, slot: usize, plan: Box<dyn StagePlan>) {
        if let Some(s) = self.lock().slots.get_mut(slot) {
            s.plan = Some(plan);
        }
    }

    /// Adds an edge from `port` of slot `from` to slot `to`.
    pub(crate) fn add_edge(&self, from: usize, port: Port, to: usize, partitioning: Partitioning) {
        self.lock().edges.push(SlotEdge {
            from,
            port,
            to,
            partitioning,
        });
    }

    /// Notes a misuse of the builder, reported when the job is run.
    pub(crate) fn note_error(&self, reason: String) {
        let mut g = self.lock();
        if g.error.is_none() {
            g.error = Some(reason);
        }
    }

    /// Whether two handles are of the same graph (streams of different jobs cannot
    /// be combined).
    pub(crate) fn same(&self, other: &Graph) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The names of the stages closed so far, in run order.
    pub(crate) fn stage_names(&self) -> Vec<String> {
        let g = self.lock();
        order(&g.slots)
            .into_iter()
            .filter_map(|slot| g.slots[slot].plan.as_ref().map(|p| p.name()))
            .collect()
    }

    /// Freezes the graph into the plan a node runs: takes every stage's plan out.
    ///
    /// Fails if a stage was started but never closed (a stream that was neither
    /// sunk nor read), or if the job has no source.
    pub(crate) fn freeze(&self) -> Result<JobPlan, JobError> {
        let mut g = self.lock();
        let name = g.name.clone();
        let plan_error = |reason: String| JobError::Plan {
            job: name.clone(),
            reason,
        };
        if let Some(reason) = g.error.take() {
            return Err(plan_error(reason));
        }
        let run_order = order(&g.slots);
        let mut index_of = vec![0u32; g.slots.len()];
        for (index, slot) in run_order.iter().enumerate() {
            index_of[*slot] = index as u32;
        }
        let mut stages = Vec::with_capacity(run_order.len());
        for slot in &run_order {
            match g.slots[*slot].plan.take() {
                Some(plan) => stages.push(plan),
                None => {
                    return Err(plan_error(format!(
                        "stage {} was started but its stream never reaches a sink \
                         (end every stream in a sink, or read it with another operator)",
                        index_of[*slot]
                    )))
                }
            }
        }
        if stages.is_empty() {
            return Err(plan_error("it has no stage".into()));
        }
        let edges = g
            .edges
            .iter()
            .map(|e| Edge {
                from: index_of[e.from],
                port: e.port.clone(),
                to: index_of[e.to],
                partitioning: e.partitioning,
            })
            .collect();
        g.slots.clear();
        g.edges.clear();
        Ok(JobPlan {
            name: g.name.clone(),
            stages,
            edges,
        })
    }
}

/// The run order of the slots: the stages that do not read a side output in the
/// order they were started, then those that do.
fn order(slots: &[Slot]) -> Vec<usize> {
    let main = (0..slots.len()).filter(|&i| !slots[i].side);
    let side = (0..slots.len()).filter(|&i| slots[i].side);
    main.chain(side).collect()
}

/// An edge of a frozen graph, between stage indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The sending stage.
    pub from: u32,
    /// The sending stage's output the edge leaves from.
    pub port: Port,
    /// The receiving stage.
    pub to: u32,
    /// How records are spread over the receivers.
    pub partitioning: Partitioning,
}

/// A frozen job graph: the stages in run order and the edges between them.
pub struct JobPlan {
    /// The job's name.
    pub name: String,
    /// The stages; a stage's index is its position.
    pub(crate) stages: Vec<Box<dyn StagePlan>>,
    /// The edges.
    pub edges: Vec<Edge>,
}

impl JobPlan {
    /// The stages' names, in run order.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// The edges into stage `to`, in the order its input channels are numbered.
    pub fn inputs_of(&self, to: u32) -> Vec<&Edge> {
        self.edges.iter().filter(|e| e.to == to).collect()
    }

    /// The edges out of stage `from`.
    pub fn outputs_of(&self, from: u32) -> Vec<&Edge> {
        self.edges.iter().filter(|e| e.from == from).collect()
    }

    /// The stages in an order where every stage comes after every stage it sends
    /// to (so that a stage's receivers exist when it is spawned), or an error
    /// naming a cycle (which the typed builder cannot produce).
    pub fn receivers_first(&self) -> Result<Vec<u32>, String> {
        let n = self.stages.len();
        let mut remaining: Vec<usize> = vec![0; n];
        for e in &self.edges {
            remaining[e.from as usize] += 1;
        }
        let mut ready: Vec<u32> = (0..n as u32)
            .filter(|&s| remaining[s as usize] == 0)
            .collect();
        let mut out = Vec::with_capacity(n);
        while let Some(stage) = ready.pop() {
            out.push(stage);
            for e in self.edges.iter().filter(|e| e.to == stage) {
                remaining[e.from as usize] -= 1;
                if remaining[e.from as usize] == 0 {
                    ready.push(e.from);
                }
            }
        }
        if out.len() == n {
            Ok(out)
        } else {
            Err("the job graph has a cycle".into())
        }
    }
}
