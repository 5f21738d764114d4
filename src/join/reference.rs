//! Reference joins for the property tests: what each join must output, computed
//! from the whole input at once, by brute force over every pair, with none of the
//! operators' state, timers or cleanup.

use crate::operator::Either;
use crate::window::{TimeWindow, WindowAssigner};

use super::Joined;

/// One record as it arrived: key, event timestamp, the processing time of its
/// arrival, and the record.
#[derive(Debug, Clone)]
pub(crate) struct Arrival<K, L, R> {
    pub key: K,
    pub ts: i64,
    pub processing_time: u64,
    pub value: Either<L, R>,
}

/// A pair of arrivals of one key, left first: `(left index, left, right index, right)`
/// in arrival order.
type Pair<'a, K, L, R> = (
    usize,
    &'a Arrival<K, L, R>,
    &'a L,
    usize,
    &'a Arrival<K, L, R>,
    &'a R,
);

/// Join results with their timestamps.
pub(crate) type Stamped<K, L, R> = Vec<(i64, Joined<K, L, R>)>;

/// Every left-right pair of the same key.
fn pairs<K: PartialEq, L, R>(input: &[Arrival<K, L, R>]) -> Vec<Pair<'_, K, L, R>> {
    let mut out = Vec::new();
    for (i, a) in input.iter().enumerate() {
        let Either::Left(l) = &a.value else { continue };
        for (j, b) in input.iter().enumerate() {
            if let Either::Right(r) = &b.value {
                if a.key == b.key {
                    out.push((i, a, l, j, b, r));
                }
            }
        }
    }
    out
}

fn joined<K: Clone, L: Clone, R: Clone>(key: &K, l: &L, r: R) -> Joined<K, L, R> {
    Joined {
        key: key.clone(),
        left: l.clone(),
        right: r,
    }
}

/// The window join: for non-merging assigners, a pair once per window containing
/// both timestamps; for sessions, a pair once if both lie in the same session, the
/// sessions being the key's windows merged by a sort and sweep. Timestamp: the
/// window's last instant.
pub(crate) fn window_join<K, L, R, A>(assigner: &A, input: &[Arrival<K, L, R>]) -> Stamped<K, L, R>
where
    K: PartialEq + Clone,
    L: Clone,
    R: Clone,
    A: WindowAssigner,
{
    let mut out = Vec::new();
    for (_, a, l, _, b, r) in pairs(input) {
        if assigner.is_merging() {
            let sessions = sessions_of(assigner, input.iter().filter(|x| x.key == a.key));
            let home = |ts: i64| sessions.iter().position(|s| s.contains(ts));
            if home(a.ts).is_some() && home(a.ts) == home(b.ts) {
                let session = sessions[home(a.ts).unwrap_or_default()];
                out.push((session.max_timestamp(), joined(&a.key, l, r.clone())));
            }
        } else {
            for w in assigner.windows_of(a.ts) {
                if w.contains(b.ts) {
                    out.push((w.max_timestamp(), joined(&a.key, l, r.clone())));
                }
            }
        }
    }
    out
}

/// The sessions of some records: their windows sorted by start and swept, a window
/// starting at or before the current session's end extending it.
fn sessions_of<'a, K: 'a, L: 'a, R: 'a, A: WindowAssigner>(
    assigner: &A,
    records: impl Iterator<Item = &'a Arrival<K, L, R>>,
) -> Vec<TimeWindow> {
    let mut windows: Vec<TimeWindow> = records.flat_map(|x| assigner.windows_of(x.ts)).collect();
    windows.sort();
    let mut sessions: Vec<TimeWindow> = Vec::new();
    for w in windows {
        match sessions.last_mut() {
            Some(current) if w.start <= current.end => current.end = current.end.max(w.end),
            _ => sessions.push(w),
        }
    }
    sessions
}

/// The interval join: every pair with `l.ts + lower <= r.ts <= l.ts + upper`, at
/// `max(l.ts, r.ts)`.
pub(crate) fn interval_join<K, L, R>(
    lower: i64,
    upper: i64,
    input: &[Arrival<K, L, R>],
) -> Stamped<K, L, R>
where
    K: PartialEq + Clone,
    L: Clone,
    R: Clone,
{
    pairs(input)
        .into_iter()
        .filter(|(_, a, _, _, b, _)| {
            let (lt, rt) = (i128::from(a.ts), i128::from(b.ts));
            lt + i128::from(lower) <= rt && rt <= lt + i128::from(upper)
        })
        .map(|(_, a, l, _, b, r)| (a.ts.max(b.ts), joined(&a.key, l, r.clone())))
        .collect()
}

/// Whether two arrivals of a regular join meet: the later one arrives before the
/// earlier one's row expired (`ttl` ms after its arrival), or always without TTL.
fn meet<K, L, R>(
    i: usize,
    a: &Arrival<K, L, R>,
    j: usize,
    b: &Arrival<K, L, R>,
    ttl: Option<u64>,
) -> bool {
    let (first, second) = if i < j { (a, b) } else { (b, a) };
    ttl.is_none_or(|ttl| second.processing_time < first.processing_time.saturating_add(ttl))
}

/// The inner join: every pair that meets, at `max(l.ts, r.ts)`.
pub(crate) fn inner_join<K, L, R>(ttl: Option<u64>, input: &[Arrival<K, L, R>]) -> Stamped<K, L, R>
where
    K: PartialEq + Clone,
    L: Clone,
    R: Clone,
{
    pairs(input)
        .into_iter()
        .filter(|(i, a, _, j, b, _)| meet(*i, a, *j, b, ttl))
        .map(|(_, a, l, _, b, r)| (a.ts.max(b.ts), joined(&a.key, l, r.clone())))
        .collect()
}

/// The left join: the inner join's pairs with `Some(r)`, and `(l, None)` at `l.ts`
/// for every left record that meets none.
pub(crate) fn left_join<K, L, R>(
    ttl: Option<u64>,
    input: &[Arrival<K, L, R>],
) -> Stamped<K, L, Option<R>>
where
    K: PartialEq + Clone,
    L: Clone,
    R: Clone,
{
    let met = pairs(input)
        .into_iter()
        .filter(|(i, a, _, j, b, _)| meet(*i, a, *j, b, ttl))
        .collect::<Vec<_>>();
    let mut out: Stamped<K, L, Option<R>> = met
        .iter()
        .map(|(_, a, l, _, b, r)| (a.ts.max(b.ts), joined(&a.key, *l, Some((*r).clone()))))
        .collect();
    for (i, a) in input.iter().enumerate() {
        if let Either::Left(l) = &a.value {
            if !met.iter().any(|(li, ..)| *li == i) {
                out.push((a.ts, joined(&a.key, l, None)));
            }
        }
    }
    out
}
