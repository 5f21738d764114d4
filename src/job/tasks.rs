//! The tasks partition actors run: a source stage's and a keyed stage's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use weir_actors::checkpoint::{ChunkData, TaskSnapshot};
use weir_actors::snapshot::ChunkId;
use weir_actors::state::{KeyedState, TimerDomain};
use weir_actors::{
    Marker, Outbox, Progress, Pumped, QueryAnswer, SideOutput, StateQuery, Task, TaskError,
    WatermarkTracker, NO_WATERMARK,
};

use crate::connector::{ReadStatus, SourceReader};
use crate::operator::queryable::QueryableStates;
use crate::operator::{
    BroadcastContext, Chain, Collector, KeyedContext, OpenContext, Operator, OperatorError,
    OperatorStateReader, OperatorStateWriter, SideOutputs,
};
use crate::record::{Keyed, Routed, NO_TIMESTAMP};
use crate::time::{AlignmentGroup, LaneId, SplitLanes, TimestampStrategy};

use super::split_snapshot::SplitSnapshot;
use super::terminal::{IntoTerminal, Terminal};

/// Pushes items through a chain into a terminal.
struct Pipe<'a, C, Tm, W: Send + 'static> {
    chain: &'a mut C,
    into: IntoTerminal<'a, Tm, W>,
}

impl<'a, C, Tm, W: Send + 'static> Pipe<'a, C, Tm, W> {
    /// Pushes into `chain`, then `term`, sending through `out`.
    fn new(chain: &'a mut C, term: &'a mut Tm, out: &'a mut Outbox<W>) -> Self {
        Pipe {
            chain,
            into: IntoTerminal {
                term,
                out,
                ts: NO_TIMESTAMP,
            },
        }
    }
}

impl<In, C, Tm> Collector<In> for Pipe<'_, C, Tm, Tm::Wire>
where
    C: Chain<In>,
    Tm: Terminal<C::Out>,
{
    #[inline(always)]
    fn collect(&mut self, item: In) {
        self.chain.push(item, &mut self.into);
    }

    #[inline(always)]
    fn set_timestamp(&mut self, ts: i64) {
        self.into.ts = ts;
    }
}

/// Stamps each item a source reads with its timestamp and tracks the highest one:
/// the split's, or the current lane's when the reader reports lanes (see
/// [`crate::time::lanes`]). The highest timestamp is kept in a local field while
/// the round reads, and written back by [`Stamp::finish`], so a reader without
/// lanes pays one comparison per record.
struct Stamp<'a, S, P> {
    time: &'a S,
    /// The highest timestamp of the current lane (of the split, without lanes).
    max_ts: i64,
    /// The current lane's index and id (`None`: no lane reported this round).
    lane: Option<(usize, LaneId)>,
    progress: &'a mut SplitProgress,
    count: usize,
    pipe: P,
}

impl<'a, S, P> Stamp<'a, S, P> {
    fn new(time: &'a S, progress: &'a mut SplitProgress, pipe: P) -> Self {
        Stamp {
            time,
            max_ts: progress.max_ts,
            lane: None,
            progress,
            count: 0,
            pipe,
        }
    }

    /// Writes the highest timestamp back where it belongs.
    fn store(&mut self) {
        match (self.lane, self.progress.lanes.as_mut()) {
            (Some((index, _)), Some(lanes)) => lanes.delivered(index, self.max_ts),
            _ => self.progress.max_ts = self.max_ts,
        }
    }

    /// The lanes of the split, created (from the split's value) at the first lane.
    fn lanes(&mut self) -> &mut SplitLanes {
        let floor = self.progress.max_ts;
        self.progress
            .lanes
            .get_or_insert_with(|| SplitLanes::new(floor))
    }

    /// The reader moved to lane `id`.
    #[cold]
    #[inline(never)]
    fn switch_lane(&mut self, id: LaneId) {
        self.store();
        let lanes = self.lanes();
        let index = lanes.declare(id, Instant::now());
        let max_ts = lanes.max_ts(index);
        self.max_ts = max_ts;
        self.lane = Some((index, id));
    }

    /// The round is over: the records read and the split's progress updated.
    fn finish(mut self) -> usize {
        self.store();
        self.count
    }
}

impl<T, S: TimestampStrategy<T>, P: Collector<T>> Collector<T> for Stamp<'_, S, P> {
    #[inline(always)]
    fn collect(&mut self, item: T) {
        self.count += 1;
        if S::ENABLED {
            let ts = self.time.timestamp(&item);
            if ts > self.max_ts {
                self.max_ts = ts;
            }
            self.pipe.set_timestamp(ts);
        }
        self.pipe.collect(item);
    }

    #[inline(always)]
    fn set_lane(&mut self, lane: LaneId) {
        if S::ENABLED && self.lane.is_none_or(|(_, id)| id != lane) {
            self.switch_lane(lane);
        }
    }

    fn declare_lane(&mut self, lane: LaneId) {
        if S::ENABLED {
            self.lanes().declare(lane, Instant::now());
        }
    }
}

fn check<Tm: Terminal<T>, T>(term: &mut Tm) -> Result<(), TaskError> {
    match term.take_error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One split a source task reads.
pub(crate) struct SourceSplit<R> {
    /// The split's number among the source's splits.
    pub id: u32,
    pub reader: R,
    pub progress: SplitProgress,
    pub exhausted: bool,
    /// The last read found nothing available right now.
    pub idle_now: bool,
}

/// A source stage's partition: reads its splits in turn, stamps records with event
/// time, runs the chain, feeds the terminal, and sends the combined watermark of its
/// splits.
pub(crate) struct SourceTask<R, S, C, Tm> {
    pub splits: Vec<SourceSplit<R>>,
    /// The split read next (round robin).
    pub cursor: usize,
    /// The splits' watermarks combined: the minimum over active splits.
    pub watermarks: WatermarkTracker,
    /// Whether this task told its receivers it is idle.
    pub idle_sent: bool,
    pub time: S,
    pub chain: C,
    pub term: Tm,
    /// Records read per round.
    pub budget: usize,
    pub what: String,
    /// Chunk-id stage of the split positions.
    pub chunk_stage: String,
    /// Records read so far.
    pub read: u64,
    /// The stage's watermark alignment group and this actor's place in it.
    pub alignment: Option<(Arc<AlignmentGroup>, usize)>,
    /// The splits' positions at each snapshotted epoch not yet completed, told to
    /// the readers when their epoch completes.
    pub pending: PendingPositions,
}

/// The positions a source task's splits had at the barriers of the epochs it
/// snapshotted that have not completed yet: `(split index, position)` per epoch.
///
/// Bounded: completing epoch `e` drops every entry up to `e`, so an abandoned
/// epoch's entries go once a later epoch completes (its positions supersede them);
/// at most the epochs in flight are held.
#[derive(Debug, Default)]
pub(crate) struct PendingPositions {
    epochs: BTreeMap<u64, Vec<(usize, Vec<u8>)>>,
}

impl PendingPositions {
    /// Records the splits' positions at the barrier of `epoch`.
    pub fn record(&mut self, epoch: u64, positions: Vec<(usize, Vec<u8>)>) {
        self.epochs.insert(epoch, positions);
    }

    /// Epoch `epoch` completed: its positions (none if this task did not snapshot
    /// it), with every entry up to `epoch` dropped.
    pub fn complete(&mut self, epoch: u64) -> Vec<(usize, Vec<u8>)> {
        let later = self.epochs.split_off(&epoch.saturating_add(1));
        let done = std::mem::replace(&mut self.epochs, later);
        done.into_iter()
            .next_back()
            .filter(|(e, _)| *e == epoch)
            .map(|(_, positions)| positions)
            .unwrap_or_default()
    }

    /// How many epochs' positions are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.epochs.len()
    }
}

/// Which split a source task reads next.
enum NextSplit {
    /// Split `.0`.
    Read(usize),
    /// Every split that is not exhausted is too far ahead of the stage's slowest
    /// actor in event time (watermark alignment): read nothing this round.
    Paused,
    /// Every split is exhausted.
    Exhausted,
}

/// Event-time progress of one source split.
pub(crate) struct SplitProgress {
    /// The split's highest timestamp for watermark purposes (with lanes: their
    /// combined value as of the last read round).
    pub max_ts: i64,
    /// The split's lanes, once its reader reported one.
    pub lanes: Option<SplitLanes>,
    pub sent: i64,
    sent_at: Option<Instant>,
    last_input: Instant,
    idle: bool,
}

impl SplitProgress {
    pub fn new() -> Self {
        SplitProgress {
            max_ts: NO_TIMESTAMP,
            lanes: None,
            sent: NO_WATERMARK,
            sent_at: None,
            last_input: Instant::now(),
            idle: false,
        }
    }
}

impl<R, S, C, Tm> SourceTask<R, S, C, Tm>
where
    R: SourceReader,
    S: TimestampStrategy<R::Item>,
    C: Chain<R::Item>,
    Tm: Terminal<C::Out>,
{
    /// After split `i` read `read` records: update its watermark or idleness (the
    /// watermark at most once per interval), then act on the combined watermark.
    fn progress(&mut self, i: usize, read: usize, out: &mut Outbox<Tm::Wire>) {
        let now = Instant::now();
        let p = &mut self.splits[i].progress;
        let mut change = None;
        if read > 0 {
            p.last_input = now;
            if p.idle {
                // Active again (even behind): the tracker must count it again.
                p.idle = false;
                change = Some(self.watermarks.watermark(i, p.sent));
            }
        }
        // Only once the reader declared a lane: lanes restored from a snapshot alone
        // (a reader that no longer reports lanes) must not pin the split's value.
        if let Some(lanes) = p.lanes.as_mut().filter(|l| !l.is_empty()) {
            p.max_ts = lanes.refresh(now, self.time.idle_timeout());
        }
        let wm = self.time.watermark(p.max_ts);
        let due = p
            .sent_at
            .is_none_or(|at| now.duration_since(at) >= self.time.interval());
        if wm > p.sent && due {
            p.sent = wm;
            p.sent_at = Some(now);
            change = Some(self.watermarks.watermark(i, wm));
        } else if read == 0 && !p.idle {
            if let Some(timeout) = self.time.idle_timeout() {
                if now.duration_since(p.last_input) >= timeout {
                    p.idle = true;
                    change = Some(self.watermarks.idle(i));
                }
            }
        }
        if let Some(progress) = change {
            self.announce(progress, out);
        }
    }

    /// Sends what a change of the combined watermark means downstream.
    fn announce(&mut self, progress: Progress, out: &mut Outbox<Tm::Wire>) {
        match progress {
            Progress::Advanced(w) => {
                self.term.on_watermark(w, out);
                self.send_marker(Marker::Watermark(w), out);
                self.idle_sent = false;
            }
            Progress::AllIdle => {
                if !self.idle_sent {
                    self.idle_sent = true;
                    self.send_marker(Marker::Idle, out);
                }
            }
            Progress::Unchanged => {
                if self.idle_sent && !self.watermarks.all_idle() {
                    self.idle_sent = false;
                    let current = self.watermarks.current();
                    self.send_marker(Marker::Watermark(current), out);
                }
            }
        }
    }

    /// Queues `marker` on every output of the stage: the main one and the
    /// terminal's own (the routes of a shared source), as the partition actor does
    /// with the markers it sends itself.
    fn send_marker(&mut self, marker: Marker, out: &mut Outbox<Tm::Wire>) {
        out.broadcast_marker(marker);
        self.term
            .extra_outputs(&mut |route| route.broadcast_marker(marker));
    }

    /// The next split to read, round robin over those not exhausted, skipping those
    /// the alignment holds back.
    fn next_split(&mut self) -> NextSplit {
        let n = self.splits.len();
        let mut paused = false;
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let split = &self.splits[i];
            if split.exhausted {
                continue;
            }
            if let Some((group, _)) = &self.alignment {
                if group.ahead(self.time.watermark(split.progress.max_ts)) {
                    paused = true;
                    continue;
                }
            }
            self.cursor = (i + 1) % n;
            return NextSplit::Read(i);
        }
        if paused {
            NextSplit::Paused
        } else {
            NextSplit::Exhausted
        }
    }

    /// Tells the alignment group this actor's watermark: the lowest over its splits
    /// that are neither exhausted nor idle (`i64::MAX` when none holds anything
    /// back).
    fn publish_alignment(&self) {
        let Some((group, actor)) = &self.alignment else {
            return;
        };
        let watermark = self
            .splits
            .iter()
            .filter(|s| !s.exhausted && !s.idle_now)
            .map(|s| self.time.watermark(s.progress.max_ts))
            .min()
            .unwrap_or(i64::MAX);
        group.publish(*actor, watermark);
    }
}

impl<R, S, C, Tm> Task for SourceTask<R, S, C, Tm>
where
    R: SourceReader,
    S: TimestampStrategy<R::Item>,
    C: Chain<R::Item>,
    Tm: Terminal<C::Out>,
{
    type In = ();
    type Out = Tm::Wire;

    fn on_batch(
        &mut self,
        from: u32,
        _batch: Vec<()>,
        _out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        Err(TaskError::msg(format!(
            "source {} received a batch from input {from}; sources have no inputs",
            self.what
        )))
    }

    fn pump(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<Pumped, TaskError> {
        // Published before choosing: after a restore every split starts with a
        // watermark, and if no actor told the group its own, all would wait.
        self.publish_alignment();
        let i = match self.next_split() {
            NextSplit::Read(i) => i,
            NextSplit::Paused => return Ok(Pumped::Idle),
            NextSplit::Exhausted => return Ok(Pumped::Exhausted),
        };
        let split = &mut self.splits[i];
        let mut stamp = Stamp::new(
            &self.time,
            &mut split.progress,
            Pipe::new(&mut self.chain, &mut self.term, out),
        );
        let status = split.reader.read(self.budget, &mut stamp);
        let read = stamp.finish();
        let status = status.map_err(|e| {
            TaskError::caused(format!("reading {} split {}", self.what, split.id), e)
        })?;
        self.read += read as u64;
        split.idle_now = status == ReadStatus::Idle;
        check(&mut self.term)?;
        if status == ReadStatus::Exhausted {
            self.splits[i].exhausted = true;
            if S::ENABLED && self.splits.iter().any(|s| !s.exhausted) {
                let progress = self.watermarks.ended(i);
                self.announce(progress, out);
            }
        } else if S::ENABLED {
            self.progress(i, read, out);
        }
        self.publish_alignment();
        let live = self.splits.iter().filter(|s| !s.exhausted);
        let (mut any, mut all_idle) = (false, true);
        for s in live {
            any = true;
            all_idle &= s.idle_now;
        }
        Ok(match (any, all_idle) {
            (false, _) => Pumped::Exhausted,
            (true, true) => Pumped::Idle,
            (true, false) => Pumped::More,
        })
    }

    fn records_read(&self) -> u64 {
        self.read
    }

    fn extra_outputs(&mut self, visit: &mut dyn FnMut(&mut dyn SideOutput)) {
        self.term.extra_outputs(visit);
    }

    fn has_extra_outputs(&self) -> bool {
        self.term.has_extra_outputs()
    }

    fn bytes_read(&self) -> u64 {
        self.splits.iter().map(|s| s.reader.bytes_read()).sum()
    }

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        self.term.finish(out)
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<TaskSnapshot, TaskError> {
        let commits = self.term.pre_commit(epoch, out)?;
        let mut chunks = Vec::with_capacity(self.splits.len());
        let mut positions = Vec::with_capacity(self.splits.len());
        for split in &mut self.splits {
            split.reader.before_barrier().map_err(|e| {
                TaskError::caused(
                    format!(
                        "{} split {} at the barrier of epoch {epoch}",
                        self.what, split.id
                    ),
                    e,
                )
            })?;
        }
        for (i, split) in self.splits.iter().enumerate() {
            let position = if split.exhausted {
                // Not stored (an exhausted split is not read again), but still
                // reported when the epoch completes: it is where the split ended.
                if let Some(end) = split.reader.position() {
                    positions.push((i, end));
                }
                None
            } else {
                let position = split.reader.position().ok_or_else(|| {
                    TaskError::msg(format!(
                        "source {} cannot be checkpointed: it cannot rewind to a position",
                        self.what
                    ))
                })?;
                positions.push((i, position.clone()));
                Some(position)
            };
            let record = SplitSnapshot {
                position,
                exhausted: split.exhausted,
                max_ts: split.progress.max_ts,
                lanes: split
                    .progress
                    .lanes
                    .as_ref()
                    .map(SplitLanes::snapshot)
                    .unwrap_or_default(),
            };
            let data = record
                .encode()
                .map_err(|e| TaskError::caused("encoding a split position", e))?;
            chunks.push(ChunkData {
                id: ChunkId::new(self.chunk_stage.clone(), split.id),
                full: true,
                data,
            });
        }
        self.pending.record(epoch, positions);
        Ok(TaskSnapshot { chunks, commits })
    }

    fn epoch_complete(&mut self, epoch: u64) {
        self.term.committed(epoch);
        for (i, position) in self.pending.complete(epoch) {
            let split = &mut self.splits[i];
            if let Err(error) = split.reader.position_committed(&position) {
                tracing::warn!(source = %self.what, split = split.id, epoch, %error,
                    "could not report a completed epoch's position to the source; the job goes on");
            }
        }
    }

    fn aborted(&mut self) {
        self.term.aborted();
    }
}

/// A record as it reaches an operator stage: a keyed record (for a non-keyed stage,
/// keyed by [`NoKey`](crate::operator::NoKey)), or a record of the broadcast stream
/// of a broadcast-state operator.
pub(crate) enum Arrival<K, V, R> {
    Keyed(Keyed<K, V>),
    Broadcast(i64, R),
}

/// What an operator stage receives on the wire, taken apart for the task.
pub(crate) trait WireRecord: Send + Unpin + 'static {
    type Key;
    type Value;
    /// The broadcast stream's records (`Infallible` when the stage reads none).
    type Rule;
    fn arrive(self) -> Arrival<Self::Key, Self::Value, Self::Rule>;
}

impl<K: Send + Unpin + 'static, V: Send + Unpin + 'static> WireRecord for Keyed<K, V> {
    type Key = K;
    type Value = V;
    type Rule = std::convert::Infallible;
    #[inline(always)]
    fn arrive(self) -> Arrival<K, V, std::convert::Infallible> {
        Arrival::Keyed(self)
    }
}

impl<K, V, R> WireRecord for Routed<K, V, R>
where
    K: Send + Unpin + 'static,
    V: Send + Unpin + 'static,
    R: Send + Unpin + 'static,
{
    type Key = K;
    type Value = V;
    type Rule = R;
    #[inline(always)]
    fn arrive(self) -> Arrival<K, V, R> {
        match self {
            Routed::Keyed(k) => Arrival::Keyed(k),
            Routed::Broadcast { ts, value } => Arrival::Broadcast(ts, value),
        }
    }
}

/// How an operator stage handles a broadcast record: the operator's
/// `process_broadcast`, or nothing for a stage that reads no broadcast stream.
pub(crate) type RuleHandler<P, R> =
    fn(&mut P, R, &mut BroadcastContext<'_, <P as Operator>::Out>) -> Result<(), OperatorError>;

/// Which input of a stage each input channel belongs to: the edges into the stage,
/// in order, each with as many channels as its sender has partitions.
#[derive(Debug, Clone, Default)]
pub(crate) struct InputMap {
    /// The first channel of each input after the first.
    starts: Vec<u32>,
    /// Each input's name (the stage feeding it).
    names: Vec<std::sync::Arc<str>>,
}

impl InputMap {
    /// The name of input `input` ("" when unnamed).
    #[inline]
    pub fn name_of(&self, input: u32) -> &str {
        self.names.get(input as usize).map_or("", |n| n)
    }

    /// The map of inputs with `channels[i]` channels each, named `names[i]`.
    pub fn new(channels: &[u32], names: &[std::sync::Arc<str>]) -> Self {
        let mut starts = Vec::new();
        let mut next = 0;
        for (i, n) in channels.iter().enumerate() {
            if i > 0 {
                starts.push(next);
            }
            next += n;
        }
        InputMap {
            starts,
            names: names.to_vec(),
        }
    }

    /// The input that channel `from` belongs to.
    #[inline]
    pub fn input_of(&self, from: u32) -> u32 {
        self.starts.iter().take_while(|&&s| s <= from).count() as u32
    }
}

/// An operator stage's partition: runs the operator with each record's key state
/// (or, for a non-keyed operator, without), fires its timers as the watermark and
/// the clock pass them, then runs the chain and terminal.
pub(crate) struct KeyedTask<P: Operator, C, Tm, W: WireRecord> {
    pub process: P,
    pub state: KeyedState<P::Key>,
    pub chain: C,
    pub term: Tm,
    /// The job's name (for metric labels).
    pub job: std::sync::Arc<str>,
    /// The stage's name (for metric labels).
    pub stage: std::sync::Arc<str>,
    pub partition: u32,
    pub parallelism: u32,
    pub watermark: i64,
    /// The side outputs the job reads from this stage.
    pub sides: SideOutputs,
    /// Chunk-id stage of this stage's keyed state.
    pub chunk_stage: String,
    /// Chunk-id stage of this stage's operator state.
    pub operator_chunk_stage: String,
    /// Whether the operator wrote operator state in this run (or restored some):
    /// it is then written at every barrier, even empty, so a restore never reads
    /// an older one.
    pub wrote_operator_state: bool,
    /// The operator state to restore before `open`, on a restore.
    pub restored: Option<OperatorStateReader>,
    /// The epoch this run restored (0 for a run from the beginning): written into
    /// the operator state frames, so a later restore reads this run's only.
    pub run: u64,
    /// Set when this stage failed in an earlier attempt: records are noted before
    /// they are processed, and poisoned ones diverted to the dead letters.
    pub suspect: Option<super::poison::Suspect>,
    /// The states the operator made queryable (in `open`).
    pub queryables: QueryableStates<P::Key>,
    /// Key partitions `P`: a queried key's partition, and which actor owns it.
    pub key_partitions: u32,
    /// Which input each channel belongs to.
    pub inputs: InputMap,
    /// What a broadcast record is handed to.
    pub on_rule: RuleHandler<P, W::Rule>,
    pub _wire: std::marker::PhantomData<fn(W)>,
}

impl<P, C, Tm, W> KeyedTask<P, C, Tm, W>
where
    P: Operator,
    C: Chain<P::Out>,
    Tm: Terminal<C::Out>,
    W: WireRecord<Key = P::Key, Value = P::In>,
{
    /// Fires, in timestamp order, every timer of `domain` due at `up_to`, including
    /// timers registered while firing.
    fn fire_timers(
        &mut self,
        domain: TimerDomain,
        up_to: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        while let Some(timer) = self
            .state
            .pop_timer(domain, up_to)
            .map_err(|e| TaskError::caused("reading timers", e))?
        {
            pipe.into.ts = timer.timestamp;
            let mut ctx = KeyedContext {
                state: &mut self.state,
                kp: timer.kp,
                key: &timer.key,
                out: &mut pipe,
                ts: timer.timestamp,
                watermark: self.watermark,
                timer_domain: Some(domain),
                sides: &mut self.sides,
                input: 0,
                input_name: self.inputs.name_of(0),
            };
            self.process
                .on_timer(timer.timestamp, &mut ctx)
                .map_err(|e| TaskError::caused("on_timer", e))?;
        }
        Ok(())
    }
}

impl<P, C, Tm, W> Task for KeyedTask<P, C, Tm, W>
where
    P: Operator,
    C: Chain<P::Out>,
    Tm: Terminal<C::Out>,
    W: WireRecord<Key = P::Key, Value = P::In>,
{
    type In = W;
    type Out = Tm::Wire;

    fn start(&mut self, _out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        if let Some(restored) = self.restored.take() {
            // The stage had operator state: this partition writes a frame at every
            // barrier from now on, even an empty one, so that the restored frames
            // (of an older run) are superseded rather than read again.
            self.wrote_operator_state = true;
            self.process
                .restore_state(&restored)
                .map_err(|e| TaskError::caused("restore_state", e))?;
        }
        let mut ctx = OpenContext {
            state: &mut self.state,
            queryables: &mut self.queryables,
            job: &self.job,
            stage: &self.stage,
            partition: self.partition,
            parallelism: self.parallelism,
        };
        self.process
            .open(&mut ctx)
            .map_err(|e| TaskError::caused("open", e))
    }

    fn on_batch(
        &mut self,
        from: u32,
        batch: Vec<W>,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        let input = self.inputs.input_of(from);
        let input_name = self.inputs.name_of(input);
        let mut suspect = self.suspect.take();
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        for record in batch {
            let record = match record.arrive() {
                Arrival::Keyed(record) => record,
                Arrival::Broadcast(ts, rule) => {
                    pipe.into.ts = ts;
                    let mut ctx = BroadcastContext {
                        out: &mut pipe,
                        ts,
                        watermark: self.watermark,
                        partition: self.partition,
                    };
                    (self.on_rule)(&mut self.process, rule, &mut ctx)
                        .map_err(|e| TaskError::caused("process_broadcast", e))?;
                    continue;
                }
            };
            if let Some(suspect) = suspect.as_mut() {
                if !suspect.admit(&record.key, record.ts) {
                    continue;
                }
            }
            pipe.into.ts = record.ts;
            let mut ctx = KeyedContext {
                state: &mut self.state,
                kp: record.kp,
                key: &record.key,
                out: &mut pipe,
                ts: record.ts,
                watermark: self.watermark,
                timer_domain: None,
                sides: &mut self.sides,
                input,
                input_name,
            };
            self.process
                .process(record.value, &mut ctx)
                .map_err(|e| TaskError::caused("process", e))?;
        }
        if let Some(suspect) = &suspect {
            suspect.clear();
        }
        self.suspect = suspect;
        check(&mut self.term)?;
        self.state
            .maintain()
            .map_err(|e| TaskError::caused("state cache maintenance", e))
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        self.watermark = watermark;
        self.fire_timers(TimerDomain::EventTime, watermark, out)?;
        {
            let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
            pipe.into.ts = watermark;
            self.process
                .on_watermark(watermark, &mut pipe)
                .map_err(|e| TaskError::caused("on_watermark", e))?;
        }
        self.term.on_watermark(watermark, out);
        check(&mut self.term)?;
        self.state
            .maintain()
            .map_err(|e| TaskError::caused("state cache maintenance", e))
    }

    fn extra_outputs(&mut self, visit: &mut dyn FnMut(&mut dyn SideOutput)) {
        self.sides.each(visit);
        self.term.extra_outputs(visit);
    }

    fn has_extra_outputs(&self) -> bool {
        !self.sides.is_empty() || self.term.has_extra_outputs()
    }

    /// A processing-time timer for `t` fires once the clock has passed `t` (at
    /// `t + 1`): records processed during millisecond `t` still see its window open,
    /// so a window never fires twice.
    fn next_deadline(&self) -> Option<i64> {
        self.state
            .next_timer(TimerDomain::ProcessingTime)
            .map(|t| t.saturating_add(1))
    }

    fn on_processing_time(
        &mut self,
        now_ms: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        self.fire_timers(TimerDomain::ProcessingTime, now_ms.saturating_sub(1), out)?;
        check(&mut self.term)?;
        self.state
            .maintain()
            .map_err(|e| TaskError::caused("state cache maintenance", e))
    }

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        // Processing-time timers still pending fire now, so a bounded job's last
        // processing-time windows are not lost.
        self.fire_timers(TimerDomain::ProcessingTime, i64::MAX, out)?;
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        self.process
            .close(&mut pipe)
            .map_err(|e| TaskError::caused("close", e))?;
        check(&mut self.term)?;
        self.state
            .flush()
            .map_err(|e| TaskError::caused("flushing state at end of input", e))?;
        self.term.finish(out)
    }

    /// The key partitions whose state changed since the previous epoch, as deltas,
    /// and the operator's own state; encoding them is the only work done here,
    /// writing is the coordinator's.
    fn snapshot(
        &mut self,
        epoch: u64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<TaskSnapshot, TaskError> {
        if let Some(suspect) = &self.suspect {
            suspect.flush_dead_letters().map_err(|e| {
                TaskError::caused(format!("dead letters at the barrier of epoch {epoch}"), e)
            })?;
        }
        let mut commits = self.term.pre_commit(epoch, out)?;
        let deltas = self
            .state
            .take_delta()
            .map_err(|e| TaskError::caused(format!("capturing the state of epoch {epoch}"), e))?;
        let mut chunks: Vec<ChunkData> = deltas
            .into_iter()
            .map(|(kp, data)| ChunkData {
                id: ChunkId::new(self.chunk_stage.clone(), kp),
                full: false,
                data,
            })
            .collect();
        let mut writer = OperatorStateWriter::new();
        self.process
            .snapshot_state(epoch, &mut writer)
            .map_err(|e| TaskError::caused(format!("snapshot_state of epoch {epoch}"), e))?;
        commits.extend(writer.take_commit_actions());
        if !writer.is_empty() || self.wrote_operator_state {
            self.wrote_operator_state = true;
            chunks.push(ChunkData {
                id: ChunkId::new(self.operator_chunk_stage.clone(), self.partition),
                full: true,
                data: writer.encode(self.run, self.partition, self.parallelism),
            });
        }
        Ok(TaskSnapshot { chunks, commits })
    }

    fn epoch_complete(&mut self, epoch: u64) {
        self.term.committed(epoch);
        if let Err(error) = self.process.epoch_complete(epoch) {
            tracing::warn!(stage = %self.stage, partition = self.partition, epoch, %error,
                "the operator's epoch_complete failed; the job goes on");
        }
    }

    fn aborted(&mut self) {
        self.process.abort();
        self.term.aborted();
    }

    /// Reads a queryable state of the key given as JSON, if this actor owns the
    /// key's partition; otherwise names the owner.
    fn query(&mut self, query: &StateQuery) -> QueryAnswer {
        let key: P::Key = match serde_json::from_str(&query.key) {
            Ok(key) => key,
            Err(e) => {
                return QueryAnswer::BadRequest(format!(
                    "key {} does not decode as this stage's key type: {e}",
                    query.key
                ))
            }
        };
        let kp = match crate::partition::key_partition(&key, self.key_partitions) {
            Ok(kp) => kp,
            Err(e) => return QueryAnswer::BadRequest(format!("key {}: {e}", query.key)),
        };
        let owner = crate::partition::owner_of(kp, self.key_partitions, self.parallelism);
        if owner != self.partition {
            return QueryAnswer::Owner(owner);
        }
        match self
            .queryables
            .read(&mut self.state, &query.state, kp, &key)
        {
            None => QueryAnswer::BadRequest(format!(
                "no queryable state '{}' in this stage (queryable: {:?})",
                query.state,
                self.queryables.names()
            )),
            Some(Ok(value)) => QueryAnswer::Value {
                key_partition: kp,
                value: value.map(|v| v.to_string()),
            },
            Some(Err(e)) => QueryAnswer::Unavailable(e.to_string()),
        }
    }
}

/// The first stage of a branch read from another stage's side output: runs its chain
/// and terminal on each record it receives.
pub(crate) struct PassTask<T, C, Tm> {
    pub chain: C,
    pub term: Tm,
    pub _in: std::marker::PhantomData<fn(T)>,
}

impl<T, C, Tm> Task for PassTask<T, C, Tm>
where
    T: Send + Unpin + 'static,
    C: Chain<T>,
    Tm: Terminal<C::Out>,
{
    /// Side records keep the timestamp of the record (or timer) that sent them.
    type In = Keyed<crate::operator::NoKey, T>;
    type Out = Tm::Wire;

    fn on_batch(
        &mut self,
        _from: u32,
        batch: Vec<Keyed<crate::operator::NoKey, T>>,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        let mut pipe = Pipe::new(&mut self.chain, &mut self.term, out);
        for record in batch {
            pipe.into.ts = record.ts;
            pipe.collect(record.value);
        }
        check(&mut self.term)
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<(), TaskError> {
        self.term.on_watermark(watermark, out);
        check(&mut self.term)
    }

    fn extra_outputs(&mut self, visit: &mut dyn FnMut(&mut dyn SideOutput)) {
        self.term.extra_outputs(visit);
    }

    fn has_extra_outputs(&self) -> bool {
        self.term.has_extra_outputs()
    }

    fn end_of_input(&mut self, out: &mut Outbox<Tm::Wire>) -> Result<(), TaskError> {
        self.term.finish(out)
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        out: &mut Outbox<Tm::Wire>,
    ) -> Result<TaskSnapshot, TaskError> {
        Ok(TaskSnapshot {
            chunks: Vec::new(),
            commits: self.term.pre_commit(epoch, out)?,
        })
    }

    fn epoch_complete(&mut self, epoch: u64) {
        self.term.committed(epoch);
    }

    fn aborted(&mut self) {
        self.term.aborted();
    }
}

#[cfg(test)]
mod input_map_tests {
    use super::InputMap;

    #[test]
    fn channels_map_to_their_input_and_its_name() {
        let names = ["source:a -> forward".into(), "source:b -> forward".into()];
        let map = InputMap::new(&[2, 3], &names);
        let inputs: Vec<u32> = (0..5).map(|c| map.input_of(c)).collect();
        assert_eq!(inputs, [0, 0, 1, 1, 1]);
        assert_eq!(map.name_of(1), "source:b -> forward");
        assert_eq!(map.name_of(7), "", "an unknown input has no name");
        let single = InputMap::new(&[4], &[]);
        assert!((0..4).all(|c| single.input_of(c) == 0));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::connector::SourceError;
    use crate::operator::chain::Identity;
    use crate::time::WatermarkStrategy;

    fn at(epoch: u64) -> Vec<(usize, Vec<u8>)> {
        vec![(0, vec![epoch as u8]), (1, vec![epoch as u8, 1])]
    }

    #[test]
    fn a_completed_epoch_gives_its_positions_and_drops_older_ones() {
        let mut pending = PendingPositions::default();
        pending.record(1, at(1));
        pending.record(2, at(2));
        pending.record(3, at(3));
        assert_eq!(pending.complete(1), at(1));
        assert_eq!(pending.len(), 2);
        // Epoch 2 abandoned: epoch 3's completion supersedes it.
        assert_eq!(pending.complete(3), at(3));
        assert_eq!(pending.len(), 0, "bounded: nothing up to 3 is kept");
        assert!(pending.complete(2).is_empty(), "already dropped");
    }

    #[test]
    fn an_epoch_this_task_did_not_snapshot_gives_nothing_but_still_drops_older_ones() {
        let mut pending = PendingPositions::default();
        pending.record(4, at(4));
        pending.record(6, at(6));
        assert!(pending.complete(5).is_empty());
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.complete(6), at(6));
        assert_eq!(pending.len(), 0);
    }

    /// Reads `0..end` in one round, then finds nothing more (stays open).
    struct UpTo {
        next: u64,
        end: u64,
    }

    impl SourceReader for UpTo {
        type Item = u64;
        fn read<C: Collector<u64>>(
            &mut self,
            _budget: usize,
            out: &mut C,
        ) -> Result<ReadStatus, SourceError> {
            while self.next < self.end {
                out.collect(self.next);
                self.next += 1;
            }
            Ok(ReadStatus::Idle)
        }
    }

    /// An output that keeps the markers queued on it.
    struct MarkerLog(Arc<Mutex<Vec<Marker>>>);

    impl SideOutput for MarkerLog {
        fn push_any(&mut self, _item: Box<dyn std::any::Any + Send>) -> Result<(), String> {
            Ok(())
        }
        fn send_now(&mut self) -> Result<bool, weir_actors::MailboxClosed> {
            Ok(true)
        }
        fn take_pending(&mut self) -> weir_actors::side::SideSend {
            Box::pin(std::future::ready(Ok(std::time::Duration::ZERO)))
        }
        fn broadcast_marker(&mut self, marker: Marker) {
            self.0.lock().unwrap().push(marker);
        }
        fn flush(&mut self) {}
    }

    /// The terminal of a shared source: no main output, one route of its own.
    struct OneRoute(MarkerLog);

    impl Terminal<u64> for OneRoute {
        type Wire = ();
        fn accept(&mut self, _item: u64, _ts: i64, _out: &mut Outbox<()>) {}
        fn take_error(&mut self) -> Option<TaskError> {
            None
        }
        fn finish(&mut self, _out: &mut Outbox<()>) -> Result<(), TaskError> {
            Ok(())
        }
        fn extra_outputs(&mut self, visit: &mut dyn FnMut(&mut dyn SideOutput)) {
            visit(&mut self.0);
        }
        fn has_extra_outputs(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_shared_source_sends_its_watermarks_and_idleness_down_every_route() {
        let route = Arc::new(Mutex::new(Vec::new()));
        let ts: fn(&u64) -> i64 = |x| *x as i64;
        let time = WatermarkStrategy::ascending(ts)
            .with_interval(Duration::ZERO)
            .with_idleness(Duration::ZERO);
        let mut task = SourceTask {
            splits: vec![SourceSplit {
                id: 0,
                reader: UpTo { next: 0, end: 10 },
                progress: SplitProgress::new(),
                exhausted: false,
                idle_now: false,
            }],
            cursor: 0,
            watermarks: WatermarkTracker::new(1),
            idle_sent: false,
            time,
            chain: Identity,
            term: OneRoute(MarkerLog(route.clone())),
            budget: 64,
            what: "up-to".into(),
            chunk_stage: "source/0".into(),
            read: 0,
            alignment: None,
            pending: PendingPositions::default(),
        };
        let mut main = Outbox::<()>::over(0, Vec::new(), 64);
        task.pump(&mut main).unwrap();
        assert_eq!(*route.lock().unwrap(), vec![Marker::Watermark(9)]);
        // Nothing more to read: the split is idle (timeout zero), and says so.
        task.pump(&mut main).unwrap();
        assert_eq!(
            *route.lock().unwrap(),
            vec![Marker::Watermark(9), Marker::Idle]
        );
    }
}
