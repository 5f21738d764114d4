//! Fraud detection on card transactions: a job graph with two sources, a fan-out, an
//! interval join, a keyed operator of our own with event-time timers, a side output,
//! a union and two sinks.
//!
//!     cargo run --release --example fraud_detection            # 200,000 transactions
//!     cargo run --release --example fraud_detection -- 20000   # fewer
//!
//! The input is generated (deterministic, so every run prints the same alerts):
//! card transactions of 200 accounts, four a second, up to 3 s out of order, and a
//! stream of account updates (a changed e-mail address, phone number or postal
//! address), one every 20 s. The job raises two kinds of alerts:
//!
//! - **small then large** ([`SmallThenLarge`], an operator type of this file): an
//!   account's large transaction (at least $500) comes at most one minute after a
//!   small one (at most $1), in event time: someone tried the card with a small
//!   amount before spending. The operator keeps each account's transactions in keyed
//!   state until the watermark passes them, and an event-time timer per timestamp
//!   replays them in timestamp order, however out of order they arrived.
//! - **large after a change**: a large transaction at most ten minutes after the
//!   account's contact details changed (an account taken over). This is an interval
//!   join of the large transactions (left) with the account updates (right), keyed by
//!   account: [`IntervalJoin::new(-CHANGE_REACH_MS, 0)`](weir::join::IntervalJoin).
//!
//! ```text
//!  transactions --share--+--key_by(account)--> small-then-large --+
//!   (source 1)           |                      | side output:    +--union--> alerts (sink)
//!                        |                      +-> late (sink)   |
//!                        +--filter(large)--key_by--+              |
//!  account updates ---------------key_by(account)--+--interval join--map--+
//!   (source 2)                                       (connect)
//! ```
//!
//! It prints how many alerts of each kind it raised, then the first ten by time, one
//! line each, e.g.
//!
//! ```text
//! 1994 alerts: 572 small-then-large, 1422 large-after-change; 0 late transactions
//! at 0:00:07.069  account 87   small-then-large    transaction 37 of $1355.26, 6.9 s after transaction 7 of $0.58
//! at 0:01:37.589  account 105  large-after-change  transaction 400 of $787.73, 37.8 s after its email changed
//! ...
//! ```
//!
//! and the job report on stderr. `tests/examples.rs` runs [`job`] on a smaller input
//! and checks every alert against a plain sequential computation of the same rules.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::connector::generator::splitmix64;
use weir::connector::source::{counter_position, decode_counter_position};
use weir::connector::{ReadStatus, SourceError};
use weir::join::{IntervalJoin, JoinError, Joined};
use weir::prelude::*;

/// Accounts the transactions are spread over.
pub const ACCOUNTS: u64 = 200;
/// Event time between two transactions (of any account), in ms.
pub const TRANSACTION_EVERY_MS: i64 = 250;
/// Event time between two account updates, in ms.
pub const UPDATE_EVERY_MS: i64 = 20_000;
/// How far behind its place in the stream a record's timestamp may be, in ms.
pub const MAX_DELAY_MS: i64 = 3_000;
/// A small transaction: at most $1.
pub const SMALL_MAX_CENTS: u64 = 100;
/// A large transaction: at least $500.
pub const LARGE_MIN_CENTS: u64 = 50_000;
/// How long after a small transaction a large one raises an alert, in ms.
pub const SMALL_REACH_MS: i64 = 60_000;
/// How long after a change of contact details a large transaction raises an alert,
/// in ms.
pub const CHANGE_REACH_MS: i64 = 600_000;

/// One card transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Its number in the stream, unique.
    pub id: u64,
    /// The account charged.
    pub account: u32,
    /// The amount, in cents.
    pub cents: u64,
    /// When it happened (event time), in ms since the stream began.
    pub time_ms: i64,
}

/// Which contact detail of an account changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Change {
    /// The e-mail address.
    Email,
    /// The phone number.
    Phone,
    /// The postal address.
    Address,
}

/// A change to an account's contact details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdate {
    /// Its number in the stream, unique.
    pub id: u64,
    /// The account changed.
    pub account: u32,
    /// What changed.
    pub change: Change,
    /// When (event time), in ms.
    pub time_ms: i64,
}

/// What the job reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Alert {
    /// A large transaction at most [`SMALL_REACH_MS`] after the account's latest
    /// small one.
    SmallThenLarge {
        /// The account.
        account: u32,
        /// The small transaction's id.
        small: u64,
        /// The large transaction's id.
        large: u64,
    },
    /// A large transaction at most [`CHANGE_REACH_MS`] after a change of the
    /// account's contact details (one alert per change in reach).
    LargeAfterChange {
        /// The account.
        account: u32,
        /// The large transaction's id.
        transaction: u64,
        /// The update's id.
        update: u64,
    },
}

/// The `i`th transaction: four a second in stream order, each up to
/// [`MAX_DELAY_MS`] earlier than its place; about one in twenty is small and one in
/// twenty large.
pub fn transaction(i: u64) -> Transaction {
    let r = splitmix64(i);
    let account = (r % ACCOUNTS) as u32;
    let delay = ((r >> 16) % MAX_DELAY_MS as u64) as i64;
    let cents = match (r >> 32) % 20 {
        0 => 1 + (r >> 40) % SMALL_MAX_CENTS,
        1 => LARGE_MIN_CENTS + (r >> 40) % 100_000,
        _ => SMALL_MAX_CENTS + 1 + (r >> 40) % (LARGE_MIN_CENTS - SMALL_MAX_CENTS - 1),
    };
    Transaction {
        id: i,
        account,
        cents,
        time_ms: (i as i64 * TRANSACTION_EVERY_MS - delay).max(0),
    }
}

/// The `u`th account update: one every [`UPDATE_EVERY_MS`], each up to
/// [`MAX_DELAY_MS`] earlier than its place.
pub fn account_update(u: u64) -> AccountUpdate {
    let r = splitmix64(u ^ 0x005E_ED0F_ACC0_u64);
    AccountUpdate {
        id: u,
        account: (r % ACCOUNTS) as u32,
        change: match (r >> 32) % 3 {
            0 => Change::Email,
            1 => Change::Phone,
            _ => Change::Address,
        },
        time_ms: (u as i64 * UPDATE_EVERY_MS - ((r >> 16) % MAX_DELAY_MS as u64) as i64).max(0),
    }
}

/// How many account updates cover the event time of `transactions` transactions.
pub fn updates_for(transactions: u64) -> u64 {
    (transactions as i64 * TRANSACTION_EVERY_MS / UPDATE_EVERY_MS) as u64 + 1
}

/// A generated stream: records `0..n` made by `make`, split round robin (split `s`
/// of `k` reads `s, s + k, ...`, so each split is in stream order).
pub struct Generated<T> {
    name: &'static str,
    n: u64,
    make: fn(u64) -> T,
}

impl<T> Generated<T> {
    /// `n` records made by `make`, named `name` in the stage names.
    pub fn new(name: &'static str, n: u64, make: fn(u64) -> T) -> Self {
        Generated { name, n, make }
    }
}

/// Reads one split of a [`Generated`] stream.
pub struct GeneratedReader<T> {
    next: u64,
    step: u64,
    n: u64,
    make: fn(u64) -> T,
}

impl<T: Send + 'static> Source for Generated<T> {
    type Item = T;
    type Reader = GeneratedReader<T>;

    fn name(&self) -> String {
        self.name.to_string()
    }

    fn reader(&self, split: u32, splits: u32) -> Result<GeneratedReader<T>, SourceError> {
        Ok(GeneratedReader {
            next: u64::from(split),
            step: u64::from(splits.max(1)),
            n: self.n,
            make: self.make,
        })
    }
}

impl<T: Send + 'static> SourceReader for GeneratedReader<T> {
    type Item = T;

    fn read<C: Collector<T>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        for _ in 0..budget {
            if self.next >= self.n {
                return Ok(ReadStatus::Exhausted);
            }
            out.collect((self.make)(self.next));
            self.next += self.step;
        }
        Ok(ReadStatus::More)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(counter_position(self.next))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = decode_counter_position("generated stream", position)?;
        Ok(())
    }
}

/// Raises [`Alert::SmallThenLarge`]: per account, in event-time order, a large
/// transaction at most `reach_ms` after the latest small one.
///
/// Transactions arrive out of order, so each waits in keyed state until the
/// watermark reaches its timestamp: an event-time timer per timestamp then hands the
/// account's transactions of that instant to [`SmallThenLarge::replay`], in
/// timestamp order. The latest small transaction is kept in keyed state too, and a
/// second timer forgets it once it is out of reach, so an account's state stays
/// small. A transaction that arrives at or behind the watermark (none does in this
/// input) goes to the side output `late`.
#[derive(Clone)]
pub struct SmallThenLarge {
    small_max_cents: u64,
    large_min_cents: u64,
    reach_ms: i64,
    late: OutputTag<Transaction>,
    /// Per account: the transactions waiting for the watermark, by timestamp.
    waiting: Option<MapHandle<i64, Vec<Transaction>>>,
    /// Per account: time and id of the latest small transaction still in reach.
    last_small: Option<ValueHandle<(i64, u64)>>,
}

/// The keyed state of [`SmallThenLarge`], registered in `open`.
struct Handles {
    waiting: MapHandle<i64, Vec<Transaction>>,
    last_small: ValueHandle<(i64, u64)>,
}

impl SmallThenLarge {
    /// The detector of this example's thresholds, sending late transactions to
    /// `late`.
    pub fn new(late: OutputTag<Transaction>) -> Self {
        SmallThenLarge {
            small_max_cents: SMALL_MAX_CENTS,
            large_min_cents: LARGE_MIN_CENTS,
            reach_ms: SMALL_REACH_MS,
            late,
            waiting: None,
            last_small: None,
        }
    }

    fn handles(&self) -> Result<Handles, OperatorError> {
        match (self.waiting, self.last_small) {
            (Some(waiting), Some(last_small)) => Ok(Handles {
                waiting,
                last_small,
            }),
            _ => Err(OperatorError::msg("small-then-large used before open()")),
        }
    }

    /// Handles the account's transactions of instant `at` (in id order), after every
    /// earlier one.
    fn replay(
        &self,
        at: i64,
        mut transactions: Vec<Transaction>,
        ctx: &mut KeyedContext<'_, u32, Alert>,
    ) -> Result<(), OperatorError> {
        let last_small = self.handles()?.last_small;
        transactions.sort_by_key(|t| t.id);
        for t in transactions {
            if t.cents >= self.large_min_cents {
                if let Some((small_at, small)) = ctx.value(last_small).value()? {
                    if small_at < at && at - small_at <= self.reach_ms {
                        ctx.emit(Alert::SmallThenLarge {
                            account: t.account,
                            small,
                            large: t.id,
                        });
                    }
                }
            } else if t.cents <= self.small_max_cents {
                ctx.value(last_small).set((at, t.id))?;
                // Forget it once no later transaction can be in reach.
                ctx.register_event_timer(at + self.reach_ms)?;
            }
        }
        Ok(())
    }
}

impl Operator for SmallThenLarge {
    type Key = u32;
    type In = Transaction;
    type Out = Alert;

    fn name(&self) -> String {
        "small-then-large".into()
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, u32>) -> Result<(), OperatorError> {
        self.waiting = Some(ctx.map_state(StateDescriptor::new("waiting"))?);
        self.last_small = Some(ctx.value_state(StateDescriptor::new("last-small"))?);
        Ok(())
    }

    fn process(
        &mut self,
        t: Transaction,
        ctx: &mut KeyedContext<'_, u32, Alert>,
    ) -> Result<(), OperatorError> {
        let waiting = self.handles()?.waiting;
        let at = ctx.timestamp();
        if at <= ctx.current_watermark() {
            return ctx.output(&self.late, t);
        }
        let mut bucket = ctx.map(waiting);
        let mut same_instant = bucket.get(&at)?.unwrap_or_default();
        same_instant.push(t);
        bucket.insert(at, same_instant)?;
        ctx.register_event_timer(at)
    }

    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut KeyedContext<'_, u32, Alert>,
    ) -> Result<(), OperatorError> {
        let Handles {
            waiting,
            last_small,
        } = self.handles()?;
        if let Some(transactions) = ctx.map(waiting).remove(&at)? {
            self.replay(at, transactions, ctx)?;
        }
        let mut last = ctx.value(last_small);
        if let Some((small_at, _)) = last.value()? {
            if at >= small_at + self.reach_ms {
                last.clear()?;
            }
        }
        Ok(())
    }
}

/// The alert of a large transaction joined with an update of its account.
fn large_after_change(joined: Joined<u32, Transaction, AccountUpdate>) -> Alert {
    Alert::LargeAfterChange {
        account: joined.key,
        transaction: joined.left.id,
        update: joined.right.id,
    }
}

/// The fraud-detection job over the first `transactions` transactions (and the
/// account updates of the same stretch of event time): alerts go to `alerts`,
/// transactions too late to be checked to `late`.
pub fn job(
    transactions: u64,
    alerts: &CollectSink<Alert>,
    late: &CollectSink<Transaction>,
) -> Result<Job, JoinError> {
    let delay = Duration::from_millis(MAX_DELAY_MS as u64);
    let job = Job::new("fraud-detection");
    let payments = job
        .source_with_time(
            Generated::new("transactions", transactions, transaction),
            WatermarkStrategy::bounded_out_of_orderness(delay, |t: &Transaction| t.time_ms),
        )
        .share();
    let updates = job
        .source_with_time(
            Generated::new("account-updates", updates_for(transactions), account_update),
            WatermarkStrategy::bounded_out_of_orderness(delay, |u: &AccountUpdate| u.time_ms),
        )
        .key_by(|u: &AccountUpdate| u.account);

    let late_tag = OutputTag::<Transaction>::new("late");
    let mut small_then_large = payments
        .stream()
        .key_by(|t: &Transaction| t.account)
        .process(SmallThenLarge::new(late_tag.clone()));
    small_then_large.side_output(&late_tag).sink(late.clone());

    let after_change = payments
        .stream()
        .filter(|t: &Transaction| t.cents >= LARGE_MIN_CENTS)
        .key_by(|t: &Transaction| t.account)
        .connect(updates)
        .process(IntervalJoin::new(-CHANGE_REACH_MS, 0)?)
        .map(large_after_change);

    Ok(small_then_large.union(after_change).sink(alerts.clone()))
}

/// `ms` as `h:mm:ss.mmm`.
fn clock(ms: i64) -> String {
    format!(
        "{}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000
    )
}

/// `cents` as dollars.
fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// One line describing `alert`, with the time it was raised at.
fn describe(alert: &Alert) -> (i64, String) {
    match *alert {
        Alert::SmallThenLarge {
            account,
            small,
            large,
        } => {
            let (s, l) = (transaction(small), transaction(large));
            let line = format!(
                "at {}  account {account:<4} small-then-large    transaction {large} of {}, {:.1} s after transaction {small} of {}",
                clock(l.time_ms),
                dollars(l.cents),
                (l.time_ms - s.time_ms) as f64 / 1e3,
                dollars(s.cents)
            );
            (l.time_ms, line)
        }
        Alert::LargeAfterChange {
            account,
            transaction: id,
            update,
        } => {
            let (t, u) = (transaction(id), account_update(update));
            let line = format!(
                "at {}  account {account:<4} large-after-change  transaction {id} of {}, {:.1} s after its {} changed",
                clock(t.time_ms),
                dollars(t.cents),
                (t.time_ms - u.time_ms) as f64 / 1e3,
                format!("{:?}", u.change).to_lowercase()
            );
            (t.time_ms, line)
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let transactions = match std::env::args().nth(1) {
        Some(n) => n.parse::<u64>()?,
        None => 200_000,
    };
    let (alerts, late) = (CollectSink::new(), CollectSink::new());
    let job = job(transactions, &alerts, &late)?;
    let options = EngineOptions {
        progress: None,
        ..EngineOptions::default()
    };
    let report = Node::new(options)?.run(job)?;

    let mut lines: Vec<(i64, String)> = alerts.items().iter().map(describe).collect();
    lines.sort();
    let small_then_large = alerts
        .items()
        .iter()
        .filter(|a| matches!(a, Alert::SmallThenLarge { .. }))
        .count();
    println!(
        "{} alerts: {small_then_large} small-then-large, {} large-after-change; {} late transactions",
        lines.len(),
        lines.len() - small_then_large,
        late.items().len()
    );
    for (_, line) in lines.iter().take(10) {
        println!("{line}");
    }
    eprint!("{report}");
    Ok(())
}
