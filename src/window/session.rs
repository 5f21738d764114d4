//! Keeping the session windows of one key merged.
//!
//! A session assigner gives each element its own window `[ts, ts + gap)`. Windows that
//! overlap or touch belong to the same session, so when a new one arrives the window
//! operator adds it to the key's [`MergedWindows`], which folds it together with every
//! window it intersects and reports which windows disappeared, so the operator can merge
//! the state and timers kept for them into the surviving window.

use super::TimeWindow;
use serde::{Deserialize, Serialize};

/// The session windows of one key, kept merged: no two intersect.
///
/// Windows are sorted by start; since none overlap or touch, each ends strictly before
/// the next begins. Serialized as the plain list of windows; deserializing re-merges the
/// list, so even a hand-edited or corrupt list yields a set that keeps the invariant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<TimeWindow>", into = "Vec<TimeWindow>")]
pub struct MergedWindows {
    windows: Vec<TimeWindow>,
}

/// What [`MergedWindows::add`] did with a window, so the caller can merge the state it
/// keeps per window.
///
/// The caller folds the state of every window in `absorbed` into the state of `result`
/// (creating it unless `already_present`), then drops the absorbed windows' state and
/// timers, and sets a timer for `result` if it is new or grew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The window the added window ended up in: itself, an existing window that already
    /// covered it, or the cover of it and the windows it merged with.
    pub result: TimeWindow,
    /// Existing windows merged away into `result` and no longer in the set, in order of
    /// start; empty if none. A window equal to `result` is never listed here.
    pub absorbed: Vec<TimeWindow>,
    /// Whether `result` was in the set before this call, unchanged (the added window fell
    /// inside it), so its state already exists under that window.
    pub already_present: bool,
}

impl MergedWindows {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The windows, sorted by start, no two intersecting.
    pub fn windows(&self) -> &[TimeWindow] {
        &self.windows
    }

    /// How many windows there are.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether there are no windows (the key has no open session).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The window containing `ts`, if any; for routing a late element or timer to its
    /// session.
    pub fn window_containing(&self, ts: i64) -> Option<TimeWindow> {
        let idx = self.windows.partition_point(|w| w.end <= ts);
        self.windows.get(idx).copied().filter(|w| w.contains(ts))
    }

    /// Adds `new`; if it intersects existing windows they all merge into one. Returns
    /// what happened so the caller can merge the state kept per window.
    ///
    /// A window whose end is before its start is taken as the empty window at its start.
    /// Takes `O(log n + k)` comparisons plus the cost of shifting the vector, for `k`
    /// windows merged.
    pub fn add(&mut self, new: TimeWindow) -> MergeOutcome {
        let new = TimeWindow::new(new.start, new.end.max(new.start));
        // Both starts and ends increase strictly along the vector, so the windows
        // intersecting `new` form the run [first, past): those ending at or after its
        // start and starting at or before its end.
        let first = self.windows.partition_point(|w| w.end < new.start);
        let past = self.windows.partition_point(|w| w.start <= new.end);
        let past = past.max(first);

        let mut result = new;
        for w in &self.windows[first..past] {
            result = result.cover(w);
        }
        let merged: Vec<TimeWindow> = self.windows.splice(first..past, [result]).collect();
        let already_present = merged.contains(&result);
        let absorbed = merged.into_iter().filter(|w| *w != result).collect();
        MergeOutcome {
            result,
            absorbed,
            already_present,
        }
    }

    /// Removes the window equal to `w`, for example once it has fired and been purged.
    /// Returns whether it was there.
    pub fn remove(&mut self, w: &TimeWindow) -> bool {
        match self.windows.binary_search(w) {
            Ok(idx) => {
                self.windows.remove(idx);
                true
            }
            Err(_) => false,
        }
    }
}

impl From<Vec<TimeWindow>> for MergedWindows {
    /// Builds a set by adding each window in turn, merging those that intersect.
    fn from(windows: Vec<TimeWindow>) -> Self {
        windows.into_iter().collect()
    }
}

impl From<MergedWindows> for Vec<TimeWindow> {
    /// The windows, sorted by start.
    fn from(set: MergedWindows) -> Self {
        set.windows
    }
}

impl FromIterator<TimeWindow> for MergedWindows {
    /// Builds a set by adding each window in turn, merging those that intersect.
    fn from_iter<I: IntoIterator<Item = TimeWindow>>(iter: I) -> Self {
        let mut set = MergedWindows::new();
        for w in iter {
            set.add(w);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(start: i64, end: i64) -> TimeWindow {
        TimeWindow::new(start, end)
    }

    /// The merged sessions of `events` computed directly: sort the windows by start
    /// and sweep, extending the current one while the next touches or overlaps it.
    fn brute_force(events: &[(i64, i64)]) -> Vec<TimeWindow> {
        let mut windows: Vec<TimeWindow> = events
            .iter()
            .map(|&(ts, gap)| w(ts, ts.saturating_add(gap)))
            .collect();
        windows.sort();
        let mut merged: Vec<TimeWindow> = Vec::new();
        for win in windows {
            match merged.last_mut() {
                Some(cur) if win.start <= cur.end => cur.end = cur.end.max(win.end),
                _ => merged.push(win),
            }
        }
        merged
    }

    fn assert_invariant(set: &MergedWindows) -> Result<(), TestCaseError> {
        for pair in set.windows().windows(2) {
            prop_assert!(pair[0].start < pair[1].start, "unsorted: {:?}", set);
            prop_assert!(!pair[0].intersects(&pair[1]), "intersecting: {:?}", set);
        }
        for win in set.windows() {
            prop_assert!(win.start <= win.end);
        }
        Ok(())
    }

    /// Adds every event in order, checking the invariant and the outcome after each.
    fn add_all(events: &[(i64, i64)]) -> Result<MergedWindows, TestCaseError> {
        let mut set = MergedWindows::new();
        for &(ts, gap) in events {
            let new = w(ts, ts.saturating_add(gap));
            let before = set.clone();
            let out = set.add(new);
            assert_invariant(&set)?;
            // The result holds the new window and everything it absorbed, and is in the set.
            prop_assert!(out.result.start <= new.start && new.end <= out.result.end);
            prop_assert!(set.windows().contains(&out.result));
            prop_assert_eq!(out.already_present, before.windows().contains(&out.result));
            for a in &out.absorbed {
                prop_assert!(before.windows().contains(a));
                prop_assert!(!set.windows().contains(a));
                prop_assert!(out.result.start <= a.start && a.end <= out.result.end);
            }
            // Nothing else changed: the windows before, less the absorbed, plus the result.
            let mut expected: Vec<TimeWindow> = before
                .windows()
                .iter()
                .filter(|b| !out.absorbed.contains(b))
                .copied()
                .collect();
            if !out.already_present {
                expected.push(out.result);
            }
            expected.sort();
            prop_assert_eq!(set.windows(), expected.as_slice());
        }
        Ok(set)
    }

    fn events() -> impl Strategy<Value = Vec<(i64, i64)>> {
        prop::collection::vec((-1_000i64..1_000, 1i64..60), 0..40)
    }

    proptest! {
        #[test]
        fn any_order_gives_the_brute_force_sessions(
            (events, shuffled) in events().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
        ) {
            let expected = brute_force(&events);
            let in_order = add_all(&events)?;
            let reordered = add_all(&shuffled)?;
            prop_assert_eq!(in_order.windows(), expected.as_slice());
            prop_assert_eq!(reordered.windows(), expected.as_slice());
            prop_assert_eq!(in_order, reordered);
        }

        #[test]
        fn wide_range_events_merge_like_brute_force(
            (events, shuffled) in prop::collection::vec(
                (-(1i64 << 60)..(1i64 << 60), 1i64..(1i64 << 58)), 0..30,
            ).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
        ) {
            let expected = brute_force(&events);
            let set = add_all(&shuffled)?;
            prop_assert_eq!(set.windows(), expected.as_slice());
        }

        #[test]
        fn extreme_events_never_panic(
            events in prop::collection::vec(
                (prop_oneof![
                    any::<i64>(),
                    Just(i64::MIN),
                    Just(i64::MAX),
                    (i64::MAX - 100)..=i64::MAX,
                    i64::MIN..(i64::MIN + 100),
                ], 1i64..=i64::MAX),
                0..30,
            ).prop_shuffle()
        ) {
            let set = add_all(&events)?;
            let expected = brute_force(&events);
            prop_assert_eq!(set.windows(), expected.as_slice());
        }

        #[test]
        fn arbitrary_windows_keep_the_invariant(
            raw in prop::collection::vec((any::<i64>(), any::<i64>()), 0..30)
        ) {
            let mut set = MergedWindows::new();
            for (start, end) in raw {
                set.add(w(start, end));
                assert_invariant(&set)?;
            }
        }

        #[test]
        fn removing_every_window_empties_the_set(events in events()) {
            let mut set = add_all(&events)?;
            for win in set.windows().to_vec() {
                prop_assert!(set.remove(&win));
                prop_assert!(!set.remove(&win));
                assert_invariant(&set)?;
            }
            prop_assert!(set.is_empty());
        }
    }

    #[test]
    fn add_reports_absorbed_windows() {
        let mut set = MergedWindows::new();
        let out = set.add(w(0, 10));
        assert_eq!(
            out,
            MergeOutcome {
                result: w(0, 10),
                absorbed: vec![],
                already_present: false
            }
        );
        set.add(w(20, 30));
        set.add(w(40, 50));
        assert_eq!(set.windows(), &[w(0, 10), w(20, 30), w(40, 50)]);

        // Falls inside an existing window: nothing changes.
        let out = set.add(w(22, 25));
        assert_eq!(out.result, w(20, 30));
        assert!(out.absorbed.is_empty());
        assert!(out.already_present);

        // The same window again.
        let out = set.add(w(40, 50));
        assert_eq!(out.result, w(40, 50));
        assert!(out.already_present && out.absorbed.is_empty());

        // Touching at both ends bridges three windows.
        let out = set.add(w(10, 40));
        assert_eq!(out.result, w(0, 50));
        assert_eq!(out.absorbed, vec![w(0, 10), w(20, 30), w(40, 50)]);
        assert!(!out.already_present);
        assert_eq!(set.windows(), &[w(0, 50)]);

        // Extending one window absorbs it.
        let out = set.add(w(45, 60));
        assert_eq!(out.result, w(0, 60));
        assert_eq!(out.absorbed, vec![w(0, 50)]);
        assert_eq!(set.len(), 1);

        // A disjoint window before.
        let out = set.add(w(-20, -1));
        assert_eq!(out.result, w(-20, -1));
        assert!(out.absorbed.is_empty() && !out.already_present);
        assert_eq!(set.windows(), &[w(-20, -1), w(0, 60)]);
    }

    #[test]
    fn inverted_and_empty_windows_are_handled() {
        let mut set = MergedWindows::new();
        let out = set.add(w(10, 5));
        assert_eq!(out.result, w(10, 10));
        let out = set.add(w(10, 20));
        assert_eq!(out.result, w(10, 20));
        assert_eq!(out.absorbed, vec![w(10, 10)]);
        let out = set.add(w(20, 20));
        assert_eq!(out.result, w(10, 20));
        assert!(out.already_present);

        let mut set = MergedWindows::new();
        set.add(w(i64::MAX, i64::MAX));
        set.add(w(i64::MIN, i64::MIN));
        set.add(w(i64::MAX - 10, i64::MAX));
        set.add(TimeWindow::GLOBAL);
        assert_eq!(set.windows(), &[TimeWindow::GLOBAL]);
    }

    #[test]
    fn remove_and_lookup() {
        let mut set: MergedWindows = vec![w(0, 10), w(20, 30)].into();
        assert!(!set.remove(&w(0, 5)));
        assert_eq!(set.window_containing(5), Some(w(0, 10)));
        assert_eq!(set.window_containing(10), None);
        assert_eq!(set.window_containing(29), Some(w(20, 30)));
        assert_eq!(set.window_containing(-1), None);
        assert!(set.remove(&w(0, 10)));
        assert_eq!(set.window_containing(5), None);
        assert_eq!(set.windows(), &[w(20, 30)]);
    }

    #[test]
    fn from_vec_remerges_and_round_trips() {
        let set = MergedWindows::from(vec![w(30, 40), w(0, 10), w(5, 20), w(20, 25)]);
        assert_eq!(set.windows(), &[w(0, 25), w(30, 40)]);
        let list: Vec<TimeWindow> = set.clone().into();
        assert_eq!(MergedWindows::from(list), set);
    }
}
