//! Watermarks per lane inside one source split.
//!
//! A split can hold several independent, separately ordered streams: a Kafka split
//! reads several topic partitions, each ordered on its own, and the order in which
//! the client interleaves them says nothing about event time. Taking the split's
//! watermark from the highest timestamp over all of them would let a partition far
//! ahead in event time make every record of a slower one late. So a reader may
//! report which *lane* (sub-stream) each record comes from, and the split's
//! watermark is then computed as Flink's Kafka source does:
//!
//! - each lane tracks the highest timestamp seen in it;
//! - the split's highest timestamp (from which the strategy derives its watermark)
//!   is the minimum over the lanes that are not idle, and never goes backwards;
//! - a lane with no records for the strategy's idleness timeout is idle and stops
//!   holding the split back; its next record makes it hold it again (from where the
//!   split is: the split's value stays put until the lane catches up);
//! - a lane the reader declared but that has not produced a record yet holds the
//!   split back (its partition may hold the oldest records), until it turns idle.
//!
//! Readers without lanes never call into this module, and their records cost what
//! they did before (see the source task's `Stamp`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::record::NO_TIMESTAMP;

/// A reader's name for one lane of its split: stable across restarts (a snapshot
/// keeps each lane's highest timestamp under it), e.g. a hash of a Kafka topic and
/// partition.
pub type LaneId = u64;

/// One lane's progress.
#[derive(Debug, Clone)]
struct Lane {
    id: LaneId,
    /// The highest timestamp seen in the lane ([`NO_TIMESTAMP`]: none yet).
    max_ts: i64,
    /// The lane delivered a record since the last [`SplitLanes::refresh`].
    active: bool,
    /// When the lane last delivered (or was declared), as of a refresh.
    last_input: Instant,
    idle: bool,
}

/// The lanes of one source split and the split's highest timestamp derived from
/// them.
#[derive(Debug, Clone)]
pub struct SplitLanes {
    lanes: Vec<Lane>,
    /// Highest timestamps from a snapshot, for lanes the reader has not declared
    /// (again) yet; each moves into its lane when the lane is declared.
    restored: BTreeMap<LaneId, i64>,
    /// The split's highest timestamp for watermark purposes: the minimum over
    /// non-idle lanes, never decreasing.
    combined: i64,
}

impl SplitLanes {
    /// No lanes yet; the split's value starts at `floor` (its restored or current
    /// highest timestamp, [`NO_TIMESTAMP`] for none) and never goes below it.
    pub fn new(floor: i64) -> Self {
        SplitLanes {
            lanes: Vec::new(),
            restored: BTreeMap::new(),
            combined: floor,
        }
    }

    /// Lanes as a snapshot had them ([`SplitLanes::snapshot`]): each lane resumes
    /// from its highest timestamp once its reader declares it again; `floor` is the
    /// split's value at the snapshot.
    pub fn restored(floor: i64, lanes: impl IntoIterator<Item = (LaneId, i64)>) -> Self {
        SplitLanes {
            lanes: Vec::new(),
            restored: lanes.into_iter().collect(),
            combined: floor,
        }
    }

    /// The index of lane `id`, declaring it (at `now`) if it is new.
    pub fn declare(&mut self, id: LaneId, now: Instant) -> usize {
        if let Some(i) = self.lanes.iter().position(|l| l.id == id) {
            return i;
        }
        let max_ts = self.restored.remove(&id).unwrap_or(NO_TIMESTAMP);
        self.lanes.push(Lane {
            id,
            max_ts,
            active: false,
            last_input: now,
            idle: false,
        });
        self.lanes.len() - 1
    }

    /// The highest timestamp seen in lane `index`.
    #[inline]
    pub fn max_ts(&self, index: usize) -> i64 {
        self.lanes.get(index).map_or(NO_TIMESTAMP, |l| l.max_ts)
    }

    /// Lane `index` delivered records, the highest timestamp now being `max_ts`.
    #[inline]
    pub fn delivered(&mut self, index: usize, max_ts: i64) {
        if let Some(lane) = self.lanes.get_mut(index) {
            lane.active = true;
            lane.max_ts = lane.max_ts.max(max_ts);
        }
    }

    /// Brings idleness up to date at `now` (a lane without records for
    /// `idle_timeout` is idle; `None`: lanes never idle) and returns the split's
    /// highest timestamp for watermark purposes.
    ///
    /// The result does not depend on how often this is called: a lane is idle from
    /// its deadline (last input + timeout) on, so when every lane has gone idle by
    /// `now`, the split takes the value it had just before the last of them did
    /// (the minimum over the lanes with the latest deadline), as if it had been
    /// refreshed then.
    pub fn refresh(&mut self, now: Instant, idle_timeout: Option<Duration>) -> i64 {
        let mut lowest: Option<i64> = None;
        // The lanes that went idle in this refresh with the latest deadline, and
        // the minimum of their maxima.
        let mut last_to_idle: Option<(Instant, i64)> = None;
        for lane in &mut self.lanes {
            if lane.active {
                lane.active = false;
                lane.idle = false;
                lane.last_input = now;
            } else if let (false, Some(timeout)) = (lane.idle, idle_timeout) {
                let deadline = lane.last_input.checked_add(timeout);
                if let Some(deadline) = deadline.filter(|d| *d <= now) {
                    lane.idle = true;
                    last_to_idle = match last_to_idle {
                        Some((d, m)) if d > deadline => Some((d, m)),
                        Some((d, m)) if d == deadline => Some((d, m.min(lane.max_ts))),
                        _ => Some((deadline, lane.max_ts)),
                    };
                }
            }
            if !lane.idle {
                lowest = Some(lowest.map_or(lane.max_ts, |m| m.min(lane.max_ts)));
            }
        }
        if let Some(lowest) = lowest.or(last_to_idle.map(|(_, m)| m)) {
            self.combined = self.combined.max(lowest);
        }
        self.combined
    }

    /// The split's highest timestamp for watermark purposes as of the last refresh.
    pub fn combined(&self) -> i64 {
        self.combined
    }

    /// Every lane's highest timestamp, for a snapshot: the declared lanes and the
    /// restored ones not declared again yet, sorted by id.
    pub fn snapshot(&self) -> Vec<(LaneId, i64)> {
        let mut out: Vec<(LaneId, i64)> = self.restored.iter().map(|(&k, &v)| (k, v)).collect();
        out.extend(self.lanes.iter().map(|l| (l.id, l.max_ts)));
        out.sort_unstable();
        out
    }

    /// How many lanes are declared.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Whether no lane is declared.
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_lane_far_ahead_does_not_move_the_split() {
        let t0 = Instant::now();
        let mut lanes = SplitLanes::new(NO_TIMESTAMP);
        let (fast, slow) = (lanes.declare(1, t0), lanes.declare(2, t0));
        lanes.delivered(fast, 100_000);
        assert_eq!(
            lanes.refresh(t0, None),
            NO_TIMESTAMP,
            "the slow lane has nothing yet"
        );
        lanes.delivered(slow, 10);
        assert_eq!(lanes.refresh(t0, None), 10);
        lanes.delivered(slow, 500);
        assert_eq!(lanes.refresh(t0, None), 500);
    }

    #[test]
    fn an_idle_lane_stops_holding_back_and_resumes_without_moving_the_split_back() {
        let t0 = Instant::now();
        let timeout = Some(Duration::from_millis(100));
        let mut lanes = SplitLanes::new(NO_TIMESTAMP);
        let (a, b) = (lanes.declare(1, t0), lanes.declare(2, t0));
        lanes.delivered(a, 1_000);
        lanes.delivered(b, 50);
        assert_eq!(lanes.refresh(t0, timeout), 50);
        lanes.delivered(a, 2_000);
        let later = t0 + Duration::from_millis(150);
        assert_eq!(lanes.refresh(later, timeout), 2_000, "b idle");
        lanes.delivered(b, 60);
        assert_eq!(
            lanes.refresh(later, timeout),
            2_000,
            "b back, behind: no step back"
        );
        lanes.delivered(b, 1_500);
        assert_eq!(lanes.refresh(later, timeout), 2_000);
        lanes.delivered(b, 2_500);
        lanes.delivered(a, 3_000);
        assert_eq!(
            lanes.refresh(later, timeout),
            2_500,
            "b holds the split again"
        );
    }

    #[test]
    fn restored_lanes_resume_from_their_maxima_when_declared() {
        let t0 = Instant::now();
        let mut lanes = SplitLanes::restored(400, [(7, 900), (8, 400)]);
        assert_eq!(lanes.snapshot(), vec![(7, 900), (8, 400)]);
        let a = lanes.declare(7, t0);
        assert_eq!(lanes.max_ts(a), 900);
        assert_eq!(
            lanes.refresh(t0, None),
            900,
            "only lane 7 is declared so far"
        );
        let b = lanes.declare(8, t0);
        lanes.delivered(b, 450);
        assert_eq!(lanes.refresh(t0, None), 900, "never back");
        assert_eq!(lanes.snapshot(), vec![(7, 900), (8, 450)]);
        assert_eq!(
            lanes.declare(7, t0),
            a,
            "declaring twice gives the same lane"
        );
        assert_eq!(lanes.len(), 2);
    }

    /// One step of a property test: a record in a lane, or time passing and a
    /// refresh.
    #[derive(Debug, Clone)]
    enum Step {
        Record { lane: usize, ts: i64 },
        Refresh { after_ms: u64 },
    }

    fn step(lanes: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..lanes, -1_000i64..1_000).prop_map(|(lane, ts)| Step::Record { lane, ts }),
            (0u64..80).prop_map(|after_ms| Step::Refresh { after_ms }),
        ]
    }

    proptest! {
        /// After every refresh the split's value is the minimum over the non-idle
        /// lanes' maxima, or the previous value if that is higher (or no lane is
        /// active): monotonic, and held back by every lane that is not idle.
        #[test]
        fn the_split_is_the_monotonic_minimum_of_its_non_idle_lanes(
            n in 1usize..5,
            timeout_ms in proptest::option::of(10u64..60),
            steps in proptest::collection::vec(step(5), 1..120),
        ) {
            let t0 = Instant::now();
            let timeout = timeout_ms.map(Duration::from_millis);
            let mut lanes = SplitLanes::new(NO_TIMESTAMP);
            let ids: Vec<usize> = (0..n).map(|l| lanes.declare(l as LaneId * 31, t0)).collect();
            // The model: per lane, its maximum, whether it delivered since the last
            // refresh, and the time of the last refresh at which it had delivered.
            let mut max = vec![NO_TIMESTAMP; n];
            let mut fresh = vec![false; n];
            let mut last = vec![0u64; n];
            let (mut now, mut before, mut previous) = (0u64, 0u64, NO_TIMESTAMP);
            for s in steps {
                match s {
                    Step::Record { lane, ts } => {
                        let lane = lane % n;
                        max[lane] = max[lane].max(ts);
                        fresh[lane] = true;
                        lanes.delivered(ids[lane], ts);
                    }
                    Step::Refresh { after_ms } => {
                        now += after_ms;
                        for l in 0..n {
                            if std::mem::take(&mut fresh[l]) {
                                last[l] = now;
                            }
                        }
                        // A lane is busy at instant `at` until `timeout` after its
                        // last input; with no lane busy now, the split keeps the
                        // value of the last instant since the previous refresh at
                        // which one was.
                        let busy_at = |at: u64| {
                            (0..n)
                                .filter(|&l| timeout_ms.is_none_or(|t| at < last[l] + t))
                                .map(|l| max[l])
                                .min()
                        };
                        let lowest = (before..=now).rev().find_map(busy_at);
                        let want = lowest.map_or(previous, |m| m.max(previous));
                        before = now;
                        let got = lanes.refresh(t0 + Duration::from_millis(now), timeout);
                        prop_assert_eq!(got, want);
                        prop_assert!(got >= previous, "monotonic");
                        prop_assert_eq!(lanes.combined(), got);
                        previous = got;
                    }
                }
            }
        }
    }
}
