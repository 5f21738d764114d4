//! The partition actor's ordering guarantees, tested on the actor itself: output,
//! barriers and end-of-input leave in the order the task produced them even while
//! downstream mailboxes are full, and an actor finishes exactly once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use weir_actors::checkpoint::{Acknowledge, TaskSnapshot, TriggerEpoch};
use weir_actors::mailbox::{Mailbox, MailboxGate};
use weir_actors::message::{Deliver, Payload};
use weir_actors::outbox::Outbox;
use weir_actors::partition_actor::{ActorId, PartitionActor, Stop};
use weir_actors::stats::ActorStats;
use weir_actors::supervisor::ActorReport;
use weir_actors::task::{Pumped, Task, TaskError};
use weir_actors::Marker;

mod support;
use support::Counter;

/// What a receiving actor saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Record(u64),
    Barrier(u64),
    End,
    Other,
}

/// A downstream actor that records what arrives and frees each mailbox slot only
/// after `hold`, so that its senders keep meeting a full mailbox.
struct Slow {
    seen: Arc<Mutex<Vec<Seen>>>,
    hold: Duration,
}

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<Deliver<u64>> for Slow {
    type Result = ();
    fn handle(&mut self, mut msg: Deliver<u64>, ctx: &mut Context<Self>) {
        let payload = std::mem::replace(&mut msg.payload, Payload::Batch(Vec::new()));
        let mut seen = self.seen.lock().unwrap();
        match payload {
            Payload::Batch(batch) => seen.extend(batch.into_iter().map(Seen::Record)),
            Payload::Marker(Marker::Barrier(e)) => seen.push(Seen::Barrier(e)),
            Payload::Marker(Marker::EndOfInput) => seen.push(Seen::End),
            Payload::Marker(_) => seen.push(Seen::Other),
        }
        ctx.run_later(self.hold, move |_, _| drop(msg));
    }
}

/// Answered by a [`Slow`] actor once it has handled every message queued before it
/// (an actor's mailbox is first in, first out).
#[derive(Message)]
#[rtype(result = "()")]
struct Drained;

impl Handler<Drained> for Slow {
    type Result = ();
    fn handle(&mut self, _: Drained, _: &mut Context<Self>) {}
}

/// Waits until `done` holds, polling every 2 ms; fails after 10 s. (Tests wait on
/// conditions, never for a fixed time.)
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `actor` has stopped, so it sends nothing more, then until each of
/// `downstream` has handled everything it had been sent.
async fn settle<A: Actor>(actor: &Addr<A>, downstream: &[Addr<Slow>]) {
    wait_until("the actor stopped", || !actor.connected()).await;
    for slow in downstream {
        slow.send(Drained).await.expect("the downstream actor runs");
    }
}

/// Acknowledged snapshots, by epoch (`None` for a final snapshot), in arrival order.
type Acks = Arc<Mutex<Vec<(Option<u64>, TaskSnapshot)>>>;

/// Collects acknowledgements and actor reports.
#[derive(Default)]
struct Collector {
    acks: Acks,
    reports: Arc<Mutex<Vec<String>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Acknowledge> for Collector {
    type Result = ();
    fn handle(&mut self, ack: Acknowledge, _: &mut Context<Self>) {
        self.acks.lock().unwrap().push((ack.epoch, ack.snapshot));
    }
}

impl Handler<ActorReport> for Collector {
    type Result = ();
    fn handle(&mut self, report: ActorReport, _: &mut Context<Self>) {
        self.reports
            .lock()
            .unwrap()
            .push(format!("{:?}", report.event));
    }
}

/// Forwards what it receives and notes the watermarks it is told of.
struct Relay {
    watermarks: Arc<Mutex<Vec<i64>>>,
}

impl Task for Relay {
    type In = u64;
    type Out = u64;
    fn on_watermark(&mut self, watermark: i64, _: &mut Outbox<u64>) -> Result<(), TaskError> {
        self.watermarks.lock().unwrap().push(watermark);
        Ok(())
    }
    fn on_batch(
        &mut self,
        _: u32,
        batch: Vec<u64>,
        out: &mut Outbox<u64>,
    ) -> Result<(), TaskError> {
        for x in batch {
            out.push_to(0, x);
        }
        Ok(())
    }
}

fn id(stage: &str) -> ActorId {
    ActorId {
        job: "test".into(),
        stage: stage.into(),
        stage_index: 0,
        partition: 0,
    }
}

fn position(snapshot: &TaskSnapshot) -> u64 {
    u64::from_le_bytes(snapshot.commits[0].clone().try_into().unwrap())
}

#[test]
fn barriers_and_records_leave_a_backpressured_source_in_production_order() {
    const N: u64 = 3_000;
    let system = System::new();
    let seen: Vec<Arc<Mutex<Vec<Seen>>>> = (0..2).map(|_| Arc::default()).collect();
    let collector = Collector::default();
    let (acks, reports) = (collector.acks.clone(), collector.reports.clone());
    let epochs = system.block_on(async {
        let collector = collector.start();
        let slows: Vec<Addr<Slow>> = seen
            .iter()
            .map(|s| {
                Slow {
                    seen: s.clone(),
                    hold: Duration::from_micros(300),
                }
                .start()
            })
            .collect();
        let dests: Vec<Mailbox<u64>> = slows
            .iter()
            .map(|slow| Mailbox::new(slow.clone().recipient(), MailboxGate::new(1, 1)))
            .collect();
        let stats = Arc::new(ActorStats::new(MailboxGate::new(1, 1)));
        let source = PartitionActor::new(
            id("source"),
            Counter { next: 0, n: N },
            0,
            Outbox::new(0, dests, 4),
            collector.clone().recipient(),
            stats,
        )
        .with_checkpoints(collector.clone().recipient())
        .start();
        // Trigger epochs while the source runs into full mailboxes.
        let mut epoch = 0;
        while reports.lock().unwrap().is_empty() {
            epoch += 1;
            source.do_send(TriggerEpoch(epoch));
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        settle(&source, &slows).await;
        epoch
    });
    assert_eq!(
        *reports.lock().unwrap(),
        vec!["Finished".to_string()],
        "the source finished once"
    );
    assert!(epochs > 3, "epochs were triggered during the run");
    // Per barrier, the records before it on every output are exactly those the
    // source had produced when it snapshotted: no record overtook a barrier.
    let acks = acks.lock().unwrap();
    let positions: Vec<(u64, u64)> = acks
        .iter()
        .filter_map(|(e, s)| e.map(|e| (e, position(s))))
        .collect();
    assert!(positions.len() > 1, "barriers passed: {positions:?}");
    for (dest, seen) in seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        let records: Vec<u64> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Record(x) => Some(*x),
                _ => None,
            })
            .collect();
        let want: Vec<u64> = (0..N).filter(|x| x % 2 == dest as u64).collect();
        assert_eq!(records, want, "output {dest}: every record once, in order");
        assert_eq!(seen.last(), Some(&Seen::End), "output {dest} ends last");
        for &(epoch, at) in &positions {
            let index = seen
                .iter()
                .position(|s| *s == Seen::Barrier(epoch))
                .unwrap_or_else(|| panic!("output {dest}: barrier {epoch} missing"));
            let before = seen[..index]
                .iter()
                .filter(|s| matches!(s, Seen::Record(_)))
                .count() as u64;
            let produced = (0..at).filter(|x| x % 2 == dest as u64).count() as u64;
            assert_eq!(
                before, produced,
                "output {dest}: records before barrier {epoch} vs the source's position {at}"
            );
        }
    }
}

#[test]
fn an_actor_whose_inputs_end_while_aligning_finishes_exactly_once() {
    let system = System::new();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let collector = Collector::default();
    let (acks, reports) = (collector.acks.clone(), collector.reports.clone());
    let watermarks: Arc<Mutex<Vec<i64>>> = Arc::default();
    let relay_watermarks = watermarks.clone();
    system.block_on(async {
        let collector = collector.start();
        let slow = Slow {
            seen: seen.clone(),
            hold: Duration::ZERO,
        }
        .start();
        let gate = MailboxGate::new(8, 2);
        let stats = Arc::new(ActorStats::new(gate.clone()));
        let relay = PartitionActor::new(
            id("relay"),
            Relay {
                watermarks: relay_watermarks,
            },
            2,
            Outbox::new(
                0,
                vec![Mailbox::new(
                    slow.clone().recipient(),
                    MailboxGate::new(8, 1),
                )],
                4,
            ),
            collector.clone().recipient(),
            stats,
        )
        .with_checkpoints(collector.clone().recipient())
        .start();
        let input = Mailbox::new(relay.clone().recipient(), gate);
        let send = |from: u32, payload: Payload<u64>| {
            assert!(input.try_send(from, payload).is_ok(), "a free slot");
        };
        // Input 0 passes barrier 1 and ends (held by the alignment); input 1's end
        // completes the alignment, and the held end-of-input ends the last input.
        send(0, Payload::Marker(Marker::Watermark(5)));
        send(1, Payload::Marker(Marker::Watermark(7)));
        send(0, Payload::Batch(vec![1, 2]));
        send(0, Payload::Marker(Marker::Barrier(1)));
        send(0, Payload::Batch(vec![3]));
        send(0, Payload::Marker(Marker::EndOfInput));
        send(1, Payload::Batch(vec![10]));
        send(1, Payload::Marker(Marker::EndOfInput));
        wait_until("the relay reported", || !reports.lock().unwrap().is_empty()).await;
        settle(&relay, &[slow]).await;
    });
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            Seen::Other,
            Seen::Record(1),
            Seen::Record(2),
            Seen::Record(10),
            Seen::Barrier(1),
            Seen::Record(3),
            Seen::End
        ],
        "one end-of-input, after everything"
    );
    let epochs: Vec<Option<u64>> = acks.lock().unwrap().iter().map(|(e, _)| *e).collect();
    assert_eq!(
        epochs,
        vec![Some(1), None],
        "epoch 1, then one final snapshot"
    );
    assert_eq!(*reports.lock().unwrap(), vec!["Finished".to_string()]);
    assert_eq!(
        *watermarks.lock().unwrap(),
        vec![5, i64::MAX],
        "event time runs out once every input ended"
    );
}

/// A source that never finds anything to read, noting when each round asked.
struct Quiet {
    asked: Arc<Mutex<Vec<Instant>>>,
}

impl Task for Quiet {
    type In = ();
    type Out = u64;
    fn on_batch(&mut self, _: u32, _: Vec<()>, _: &mut Outbox<u64>) -> Result<(), TaskError> {
        Err(TaskError::msg("a source has no input"))
    }
    fn pump(&mut self, _: &mut Outbox<u64>) -> Result<Pumped, TaskError> {
        self.asked.lock().unwrap().push(Instant::now());
        Ok(Pumped::Idle)
    }
}

#[test]
fn epoch_triggers_do_not_start_more_read_loops_in_an_idle_source() {
    // An idle source asks again after a 1 ms back-off: with one read loop, two
    // rounds are at least that far apart. Each epoch trigger used to start a loop
    // of its own, so after 30 epochs 31 loops asked about 31 times per ms (and a
    // barrier queued behind all their rounds).
    const BACKOFF: Duration = Duration::from_millis(1);
    let system = System::new();
    let asked: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let collector = Collector::default();
    let acks = collector.acks.clone();
    let after_triggers = system.block_on(async {
        let collector = collector.start();
        let stats = Arc::new(ActorStats::new(MailboxGate::new(1, 1)));
        let source = PartitionActor::new(
            id("quiet"),
            Quiet {
                asked: asked.clone(),
            },
            0,
            Outbox::new(0, Vec::new(), 4),
            collector.clone().recipient(),
            stats,
        )
        .with_checkpoints(collector.clone().recipient())
        .start();
        for epoch in 1..=30u64 {
            source.do_send(TriggerEpoch(epoch));
            wait_until("the epoch's snapshot", || {
                acks.lock().unwrap().len() == epoch as usize
            })
            .await;
        }
        let from = asked.lock().unwrap().len();
        wait_until("40 more rounds", || {
            asked.lock().unwrap().len() >= from + 40
        })
        .await;
        source.do_send(Stop);
        wait_until("the source stopped", || !source.connected()).await;
        from
    });
    let asked = asked.lock().unwrap();
    let gaps: Vec<Duration> = asked[after_triggers..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    let short = gaps.iter().filter(|gap| **gap < BACKOFF).count();
    assert_eq!(
        short,
        0,
        "rounds closer than the back-off, i.e. several read loops: {short} of {}",
        gaps.len()
    );
}
