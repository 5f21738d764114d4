//! The partition actor: runs one [`Task`] for one partition of one stage.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::checkpoint::{Acknowledge, Aligned, Aligner, EpochComplete, TriggerEpoch};
use crate::marker::{Marker, Progress, WatermarkTracker};
use crate::message::{Deliver, Payload};
use crate::outbox::Outbox;
use crate::panic::{guarded, Failure};
use crate::query::{QueryAnswer, QueryState};
use crate::state::{Clock, SystemClock};
use crate::stats::ActorStats;
use crate::supervisor::{ActorEvent, ActorReport};
use crate::task::{Pumped, Task};

/// Which partition of which stage of which job an actor runs; every report and error
/// names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ActorId {
    /// The job's name.
    pub job: Arc<str>,
    /// The stage's name.
    pub stage: Arc<str>,
    /// The stage's position in the job.
    pub stage_index: u32,
    /// The partition's index within its stage.
    pub partition: u32,
}

impl std::fmt::Display for ActorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job '{}', stage '{}', partition {}",
            self.job, self.stage, self.partition
        )
    }
}

/// Asks a partition actor to stop at once (its job is failing or cancelled).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Stop;

/// A source actor's note to itself: produce the next round.
#[derive(Message)]
#[rtype(result = "()")]
struct Pump;

/// An actor's note to itself: its task's processing-time deadline has come.
#[derive(Message)]
#[rtype(result = "()")]
struct Deadline;

/// Sends `msg` to the actor itself through its mailbox once `delay` has passed.
///
/// Self-messages must go through the mailbox, never `ctx.notify`: actix runs a
/// notified (spawned) message even while a mailbox handler's [`AtomicResponse`] is
/// still waiting on downstream slots, so the notified handler's output would
/// overtake the output still being sent (a record could pass a barrier, or be
/// dropped when the actor stops). The mailbox respects the wait.
fn post_later<A, M>(ctx: &mut Context<A>, msg: M, delay: Duration) -> SpawnHandle
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    ctx.run_later(delay, move |_, ctx| ctx.address().do_send(msg))
}

/// How long an idle source waits before it is pumped again.
const IDLE_SOURCE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// All inputs ended; the final output is being sent.
    Finishing,
    Done,
}

/// An actix actor that runs a [`Task`], feeding it batches from its bounded mailbox and
/// sending its output downstream with backpressure.
///
/// While its output waits for slots in a full downstream mailbox, the actor handles no
/// other message, so its own mailbox fills and its senders wait in turn: backpressure
/// travels upstream to the sources.
pub struct PartitionActor<T: Task> {
    id: ActorId,
    task: Box<T>,
    out: Outbox<T::Out>,
    ended: Vec<bool>,
    open_inputs: usize,
    watermarks: WatermarkTracker,
    /// Whether this actor told its receivers it is idle.
    idle_sent: bool,
    phase: Phase,
    /// The source's last round found no more input for now.
    idle: bool,
    /// A source's next round ([`Pump`]) is queued or scheduled. A source reads in
    /// one loop of rounds, each scheduling the next; the other messages it handles
    /// (epoch triggers, deadlines) must not start another loop, or every epoch
    /// would add one and a barrier would queue behind ever more rounds.
    pump_scheduled: bool,
    /// The processing-time deadline a wake-up is scheduled for.
    wakeup: Option<(i64, SpawnHandle)>,
    /// Processing time (the wall clock unless a test injects another).
    clock: Arc<dyn Clock>,
    supervisor: Recipient<ActorReport>,
    stats: Arc<ActorStats>,
    /// Barrier alignment over the inputs.
    aligner: Aligner,
    /// Messages of inputs blocked by the alignment, per input, in arrival order; they
    /// keep their mailbox slots until handled.
    held: Vec<VecDeque<Deliver<T::In>>>,
    held_count: usize,
    /// Where snapshots are acknowledged; `None` when nobody coordinates epochs.
    checkpoints: Option<Recipient<Acknowledge>>,
    /// The last epoch whose barrier this actor passed.
    last_epoch: u64,
    /// Output is on its way out, waiting for downstream slots: no handler may run
    /// the task until it is sent, or its output would overtake what is queued.
    sending: bool,
    /// Whether the task has outputs besides the main one.
    extras: bool,
    /// Whether the actor finished its input (rather than stopping part way).
    finished: bool,
}

impl<T: Task> PartitionActor<T> {
    /// An actor running `task` with `inputs` upstream partitions (0 for a source),
    /// sending through `out` and reporting to `supervisor`.
    pub fn new(
        id: ActorId,
        task: T,
        inputs: u32,
        out: Outbox<T::Out>,
        supervisor: Recipient<ActorReport>,
        stats: Arc<ActorStats>,
    ) -> Self {
        PartitionActor {
            id,
            task: Box::new(task),
            out,
            ended: vec![false; inputs as usize],
            open_inputs: inputs as usize,
            watermarks: WatermarkTracker::new(inputs as usize),
            idle_sent: false,
            phase: Phase::Running,
            idle: false,
            pump_scheduled: false,
            wakeup: None,
            clock: Arc::new(SystemClock),
            supervisor,
            stats,
            aligner: Aligner::new(inputs as usize),
            held: (0..inputs).map(|_| VecDeque::new()).collect(),
            held_count: 0,
            checkpoints: None,
            last_epoch: 0,
            sending: false,
            extras: false,
            finished: false,
        }
    }

    /// Reads processing time from `clock` instead of the wall clock (the node's
    /// clock, which tests replace with a [`crate::state::ManualClock`]). The actor
    /// wakes for its task's next deadline after the time `clock` says is left, and
    /// reads `clock` again then: a clock moved by hand is noticed at the latest one
    /// such delay later.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Processing time now, in ms since the Unix epoch.
    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    /// Acknowledges snapshots to `coordinator` (epoch barriers, final snapshot).
    pub fn with_checkpoints(mut self, coordinator: Recipient<Acknowledge>) -> Self {
        self.checkpoints = Some(coordinator);
        self
    }

    /// The actor's barriers continue from `epoch` (the epoch the job was restored
    /// from), so that its final snapshot is numbered after it.
    pub fn with_restored_epoch(mut self, epoch: u64) -> Self {
        self.last_epoch = epoch;
        self
    }

    /// Takes the task's snapshot for `epoch` and sends it to the coordinator (as the
    /// final snapshot when `epoch` is `None`).
    fn take_snapshot(&mut self, epoch: Option<u64>, alignment: Duration) -> Result<(), Failure> {
        let Some(coordinator) = self.checkpoints.clone() else {
            return Ok(());
        };
        let number = epoch.unwrap_or(self.last_epoch + 1);
        let task = &mut self.task;
        let out = &mut self.out;
        let snapshot = guarded(|| task.snapshot(number, out))?;
        coordinator.do_send(Acknowledge {
            actor: self.id.clone(),
            epoch,
            snapshot,
            alignment,
        });
        Ok(())
    }

    /// Every input delivered barrier `epoch` (or ended): snapshot, forward the
    /// barrier, acknowledge, then handle what the alignment held back.
    fn complete_epoch(&mut self, epoch: u64, alignment: Duration) -> Result<(), Failure> {
        self.take_snapshot(Some(epoch), alignment)?;
        self.last_epoch = epoch;
        self.broadcast(Marker::Barrier(epoch));
        self.replay_held()
    }

    /// Handles held messages of inputs no longer blocked, in their arrival order.
    fn replay_held(&mut self) -> Result<(), Failure> {
        for input in 0..self.held.len() {
            while !self.aligner.is_blocked(input) && self.phase == Phase::Running {
                let Some(mut msg) = self.held[input].pop_front() else {
                    break;
                };
                self.held_count -= 1;
                let payload = std::mem::replace(&mut msg.payload, Payload::Batch(Vec::new()));
                let result = self.handle_payload(msg.from, payload);
                msg.release_slot();
                result?;
            }
        }
        Ok(())
    }

    fn is_source(&self) -> bool {
        self.ended.is_empty()
    }

    fn fail(&mut self, failure: Failure, ctx: &mut Context<Self>) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        tracing::error!(actor = %self.id, %failure, "partition actor failed");
        self.supervisor.do_send(ActorReport {
            id: self.id.clone(),
            event: ActorEvent::Failed(failure),
        });
        ctx.stop();
    }

    /// Queues `marker` on the main output and the side output.
    fn broadcast(&mut self, marker: Marker) {
        self.out.broadcast_marker(marker);
        if self.extras {
            self.task
                .extra_outputs(&mut |side| side.broadcast_marker(marker));
        }
    }

    /// Seals partly filled batches of both outputs.
    fn flush_outputs(&mut self) {
        self.out.flush();
        if self.extras {
            self.task.extra_outputs(&mut |side| side.flush());
        }
    }

    /// Schedules a wake-up for the task's next processing-time deadline, if it is
    /// earlier than the one already scheduled.
    fn schedule_deadline(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.task.next_deadline() else {
            return;
        };
        if let Some((at, handle)) = self.wakeup {
            if at <= deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = u64::try_from(deadline.saturating_sub(self.now_ms())).unwrap_or(0);
        let handle = post_later(ctx, Deadline, std::time::Duration::from_millis(delay));
        self.wakeup = Some((deadline, handle));
    }

    /// Bookkeeping after the task ran: publish counters, then send the output,
    /// waiting for slots if a downstream mailbox is full.
    fn after_work(&mut self, ctx: &mut Context<Self>) -> AtomicResponse<Self, ()> {
        let mut out = self.out.records_out();
        if self.extras {
            self.task
                .extra_outputs(&mut |side| out += side.records_out());
        }
        self.stats.set_out(out);
        self.stats.set_watermark(self.out.last_watermark());
        if self.phase == Phase::Running {
            self.schedule_deadline(ctx);
        }
        let main_done = self.out.send_now();
        let mut side_done: Result<bool, crate::mailbox::MailboxClosed> = Ok(true);
        if self.extras {
            self.task.extra_outputs(&mut |side| match side.send_now() {
                Ok(done) => {
                    if let Ok(all) = side_done.as_mut() {
                        *all &= done;
                    }
                }
                Err(closed) => side_done = Err(closed),
            });
        }
        match (main_done, side_done) {
            (Ok(true), Ok(true)) => {
                self.proceed(ctx);
                AtomicResponse::new(Box::pin(actix::fut::ready(())))
            }
            (Ok(main_done), Ok(side_done)) => {
                let main = (!main_done).then(|| self.out.take_pending());
                let mut sides = Vec::new();
                if !side_done {
                    self.task
                        .extra_outputs(&mut |side| sides.push(side.take_pending()));
                }
                let sending = async move {
                    let mut waited = std::time::Duration::ZERO;
                    if let Some(main) = main {
                        waited += main.send_all().await?;
                    }
                    for side in sides {
                        waited += side.await?;
                    }
                    Ok::<_, crate::mailbox::MailboxClosed>(waited)
                };
                self.sending = true;
                AtomicResponse::new(Box::pin(actix::fut::wrap_future(sending).map(
                    |sent, act: &mut Self, ctx: &mut Context<Self>| match sent {
                        Ok(waited) => {
                            act.sending = false;
                            act.stats.add_send_wait(waited);
                            act.proceed(ctx);
                        }
                        Err(closed) => act.fail(Failure::Error(closed.to_string()), ctx),
                    },
                )))
            }
            (Err(closed), _) | (_, Err(closed)) => {
                self.fail(Failure::Error(closed.to_string()), ctx);
                AtomicResponse::new(Box::pin(actix::fut::ready(())))
            }
        }
    }

    /// Output is sent: finish if the input is done, or schedule the source's next
    /// round (unless one is already on its way).
    fn proceed(&mut self, ctx: &mut Context<Self>) {
        match self.phase {
            Phase::Finishing => {
                self.phase = Phase::Done;
                self.finished = true;
                self.supervisor.do_send(ActorReport {
                    id: self.id.clone(),
                    event: ActorEvent::Finished,
                });
                ctx.stop();
            }
            Phase::Running if self.is_source() && !self.pump_scheduled => {
                self.pump_scheduled = true;
                if self.idle {
                    post_later(ctx, Pump, IDLE_SOURCE_BACKOFF);
                } else {
                    ctx.address().do_send(Pump);
                }
            }
            _ => {}
        }
    }

    /// Every input has ended: let the task emit what it holds, then end the outputs.
    fn finish_input(&mut self) -> Result<(), Failure> {
        let task = &mut self.task;
        let out = &mut self.out;
        guarded(|| task.end_of_input(out))?;
        self.take_snapshot(None, Duration::ZERO)?;
        self.broadcast(Marker::EndOfInput);
        self.phase = Phase::Finishing;
        Ok(())
    }

    /// Reacts to a change of the combined watermark: lets the task fire what it
    /// completes, then forwards the watermark (or the idle status) downstream.
    fn on_progress(&mut self, progress: Progress) -> Result<(), Failure> {
        self.fire_watermark(progress, true)
    }

    fn fire_watermark(&mut self, progress: Progress, forward: bool) -> Result<(), Failure> {
        match progress {
            Progress::Unchanged => {
                // An input woke up behind the watermark: this actor is active again,
                // and its receivers must stop treating it as idle.
                if forward && self.idle_sent && !self.watermarks.all_idle() {
                    self.idle_sent = false;
                    let current = self.watermarks.current();
                    self.broadcast(Marker::Watermark(current));
                }
                Ok(())
            }
            Progress::AllIdle => {
                if forward && !self.idle_sent {
                    self.idle_sent = true;
                    self.broadcast(Marker::Idle);
                }
                Ok(())
            }
            Progress::Advanced(w) => {
                let task = &mut self.task;
                let out = &mut self.out;
                guarded(|| task.on_watermark(w, out))?;
                if forward {
                    self.idle_sent = false;
                    self.broadcast(Marker::Watermark(w));
                }
                Ok(())
            }
        }
    }

    /// Ends the handling of one message: counts the busy time, then sends the output
    /// (or fails the actor).
    fn settle(
        &mut self,
        started: Instant,
        result: Result<(), Failure>,
        ctx: &mut Context<Self>,
    ) -> AtomicResponse<Self, ()> {
        self.stats.add_busy(started.elapsed());
        match result {
            Ok(()) => self.after_work(ctx),
            Err(failure) => {
                self.fail(failure, ctx);
                self.done()
            }
        }
    }

    fn done(&self) -> AtomicResponse<Self, ()> {
        AtomicResponse::new(Box::pin(actix::fut::ready(())))
    }

    /// Fails the actor if a handler is about to run the task while earlier output
    /// is still being sent (the ordering of records and markers would break);
    /// returns whether it did.
    fn overlaps_sending(&mut self, what: &str, ctx: &mut Context<Self>) -> bool {
        if !self.sending {
            return false;
        }
        self.fail(
            Failure::Error(format!(
                "internal error: {what} handled while earlier output was still being sent"
            )),
            ctx,
        );
        true
    }
}

impl<T: Task> Actor for PartitionActor<T> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The bound is enforced by the mailbox gate; actix's own capacity only
        // matters for `send`, which weir does not use between partition actors.
        self.extras = self.task.has_extra_outputs();
        let task = &mut self.task;
        let out = &mut self.out;
        if let Err(failure) = guarded(|| task.start(out)) {
            self.fail(failure, ctx);
            return;
        }
        if self.is_source() {
            self.pump_scheduled = true;
            ctx.address().do_send(Pump);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if !self.finished {
            self.task.aborted();
        }
        self.task.stopped();
    }
}

impl<T: Task> PartitionActor<T> {
    /// Handles one batch or marker from input `from`.
    fn handle_payload(&mut self, from: u32, payload: Payload<T::In>) -> Result<(), Failure> {
        match payload {
            Payload::Batch(batch) => {
                self.stats.add_in(batch.len() as u64);
                let task = &mut self.task;
                let out = &mut self.out;
                guarded(|| task.on_batch(from, batch, out))
            }
            Payload::Marker(Marker::Watermark(w)) => {
                self.stats.add_in(0);
                let progress = self.watermarks.watermark(from as usize, w);
                self.on_progress(progress)
            }
            Payload::Marker(Marker::Idle) => {
                self.stats.add_in(0);
                let progress = self.watermarks.idle(from as usize);
                self.on_progress(progress)
            }
            Payload::Marker(Marker::Barrier(epoch)) => {
                self.stats.add_in(0);
                match self.aligner.barrier(from as usize, epoch, &self.ended) {
                    Ok(Aligned::Waiting) => Ok(()),
                    Ok(Aligned::Complete { epoch, took }) => self.complete_epoch(epoch, took),
                    Err(violation) => Err(Failure::Error(violation)),
                }
            }
            Payload::Marker(Marker::EndOfInput) => {
                self.stats.add_in(0);
                match self.ended.get_mut(from as usize) {
                    Some(ended) if !*ended => {
                        *ended = true;
                        self.open_inputs -= 1;
                        // The watermark tracker learns of the end first: messages the
                        // alignment held back may end the last input below, and the
                        // final watermark must then count this input as ended.
                        let progress = self.watermarks.ended(from as usize);
                        if self.open_inputs > 0 {
                            self.on_progress(progress)?;
                        }
                        // An ended input counts as aligned for a barrier in progress.
                        if let Aligned::Complete { epoch, took } =
                            self.aligner.input_ended(&self.ended)
                        {
                            self.complete_epoch(epoch, took)?;
                            if self.phase != Phase::Running {
                                // The held messages replayed by the alignment ended
                                // the last input: the actor has already finished.
                                return Ok(());
                            }
                        }
                        if self.open_inputs == 0 {
                            // The last input ended: event time runs out (the
                            // watermark reaches +infinity), then the input ends.
                            self.fire_watermark(progress, false)
                                .and_then(|()| self.finish_input())
                        } else {
                            Ok(())
                        }
                    }
                    Some(_) => Err(Failure::Error(format!(
                        "input {from} sent end-of-input twice"
                    ))),
                    None => Err(Failure::Error(format!(
                        "end-of-input from unknown input {from} (this actor has {})",
                        self.ended.len()
                    ))),
                }
            }
        }
    }
}

impl<T: Task> Handler<Deliver<T::In>> for PartitionActor<T> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, mut msg: Deliver<T::In>, ctx: &mut Context<Self>) -> Self::Result {
        if self.phase != Phase::Running || self.overlaps_sending("a message", ctx) {
            return self.done();
        }
        let from = msg.from;
        if self.aligner.is_blocked(from as usize) {
            // Held until the alignment completes; the message keeps its slot, so this
            // input's sender waits once its channel is full.
            if let Some(queue) = self.held.get_mut(from as usize) {
                queue.push_back(msg);
                self.held_count += 1;
            }
            return self.done();
        }
        let started = Instant::now();
        let payload = std::mem::replace(&mut msg.payload, Payload::Batch(Vec::new()));
        let result = self.handle_payload(from, payload);
        msg.release_slot();
        // Nothing else is waiting: send partly filled batches now rather than hold
        // records until a batch fills (latency when input is slow).
        if self.stats.mailbox().depth() <= self.held_count {
            self.flush_outputs();
        }
        self.settle(started, result, ctx)
    }
}

impl<T: Task> Handler<TriggerEpoch> for PartitionActor<T> {
    type Result = AtomicResponse<Self, ()>;

    /// A source starts epoch `e`: snapshot (its split positions), then barrier `e`
    /// right after the last record it sent.
    fn handle(&mut self, msg: TriggerEpoch, ctx: &mut Context<Self>) -> Self::Result {
        if self.phase != Phase::Running || self.overlaps_sending("an epoch trigger", ctx) {
            return self.done();
        }
        let started = Instant::now();
        let result = self.take_snapshot(Some(msg.0), Duration::ZERO).map(|()| {
            self.last_epoch = msg.0;
            self.broadcast(Marker::Barrier(msg.0));
        });
        self.settle(started, result, ctx)
    }
}

impl<T: Task> Handler<QueryState> for PartitionActor<T> {
    type Result = ();

    /// Answers a state query between two messages; a query never fails the actor
    /// (a panic while reading is answered as unavailable).
    fn handle(&mut self, msg: QueryState, _ctx: &mut Context<Self>) {
        let answer = if self.phase != Phase::Running {
            QueryAnswer::Unavailable(format!(
                "{} has finished its input; its state is no longer served",
                self.id
            ))
        } else {
            let task = &mut self.task;
            let query = &msg.query;
            guarded(|| Ok(task.query(query)))
                .unwrap_or_else(|failure| QueryAnswer::Unavailable(failure.to_string()))
        };
        let _ = msg.reply.send(answer);
    }
}

impl<T: Task> Handler<EpochComplete> for PartitionActor<T> {
    type Result = ();

    fn handle(&mut self, msg: EpochComplete, ctx: &mut Context<Self>) {
        if self.phase == Phase::Done {
            return;
        }
        let task = &mut self.task;
        if let Err(failure) = guarded(|| {
            task.epoch_complete(msg.0);
            Ok(())
        }) {
            self.fail(failure, ctx);
        }
    }
}

impl<T: Task> Handler<Pump> for PartitionActor<T> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Pump, ctx: &mut Context<Self>) -> Self::Result {
        self.pump_scheduled = false;
        if self.phase != Phase::Running || self.overlaps_sending("a source round", ctx) {
            return self.done();
        }
        let started = Instant::now();
        let task = &mut self.task;
        let out = &mut self.out;
        let result = guarded(|| task.pump(out)).and_then(|pumped| {
            self.stats.set_read(self.task.records_read());
            self.stats.set_bytes_read(self.task.bytes_read());
            self.idle = pumped == Pumped::Idle;
            match pumped {
                Pumped::More => Ok(()),
                Pumped::Idle => {
                    self.flush_outputs();
                    Ok(())
                }
                Pumped::Exhausted => self.finish_input(),
            }
        });
        self.settle(started, result, ctx)
    }
}

impl<T: Task> Handler<Deadline> for PartitionActor<T> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Deadline, ctx: &mut Context<Self>) -> Self::Result {
        self.wakeup = None;
        if self.phase != Phase::Running || self.overlaps_sending("a processing-time deadline", ctx)
        {
            return self.done();
        }
        let started = Instant::now();
        let now = self.now_ms();
        let task = &mut self.task;
        let out = &mut self.out;
        let result = guarded(|| task.on_processing_time(now, out));
        self.settle(started, result, ctx)
    }
}

impl<T: Task> Handler<Stop> for PartitionActor<T> {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        self.phase = Phase::Done;
        ctx.stop();
    }
}
