//! Tests of checkpoint capture and restore: [`KeyedState::take_delta`],
//! [`StateStore::restore_stage`] and [`merge_chain`] working together.

use super::testutil::*;
use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const ET: TimerDomain = TimerDomain::EventTime;
const PT: TimerDomain = TimerDomain::ProcessingTime;

/// Every raw entry of `stage`'s tree in `store`, in key order.
fn contents(store: &StateStore, stage: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .db()
        .open_tree(tree_name(stage))
        .unwrap()
        .iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Appends a capture to per-partition chains.
fn capture<K: StateKey>(ks: &mut KeyedState<K>, chains: &mut BTreeMap<u32, Vec<Vec<u8>>>) {
    for (kp, d) in ks.take_delta().unwrap() {
        assert!(ks.owned().contains(&kp));
        chains.entry(kp).or_default().push(d);
    }
}

/// A fresh temporary store with `stage` restored from `chains`.
fn restored(stage: &str, chains: &BTreeMap<u32, Vec<Vec<u8>>>) -> StateStore {
    let store = StateStore::temporary(small_config()).unwrap();
    store.restore_stage(stage, chains.clone()).unwrap();
    store
}

/// The decoded points of a single delta, as owned bytes.
fn points(delta: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    Delta::decode(delta)
        .unwrap()
        .points()
        .iter()
        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
        .collect()
}

fn value_key<K: serde::Serialize>(kp: u32, name: &str, key: &K) -> Vec<u8> {
    let mut buf = Vec::new();
    codec::write_entry_key(&mut buf, kp, codec::state_id(name), key).unwrap();
    buf
}

fn record<T: serde::Serialize>(v: &T, expires_at: u64) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_value(v, expires_at, &mut out).unwrap();
    out
}

#[test]
fn dirty_entries_are_captured_without_touching_sled() {
    let (store, mut ks, _clock) = keyed::<String>("agg", 0..4);
    let h = ks.register_value::<u64>(StateDescriptor::new("n")).unwrap();
    let a = "a".to_string();
    assert!(ks.take_delta().unwrap().is_empty());
    ks.value(h, 2, &a).set(5).unwrap();
    let deltas = ks.take_delta().unwrap();
    assert_eq!(deltas.len(), 1, "only the changed partition");
    assert_eq!(deltas[0].0, 2);
    assert_eq!(
        points(&deltas[0].1),
        vec![(value_key(2, "n", &a), Some(record(&5u64, 0)))]
    );
    assert!(
        contents(&store, "agg").is_empty(),
        "nothing written to sled"
    );
    // Nothing changed since: nothing to capture, although sled still lags.
    assert!(ks.take_delta().unwrap().is_empty());
    // Captured entries are not evictable before they reach sled...
    assert_eq!(ks.evict_clean(), 0);
    assert_eq!(ks.value(h, 2, &a).value().unwrap(), Some(5));
    // ...and a flush writes them without reporting them again.
    assert_eq!(ks.flush().unwrap().written, 1);
    assert_eq!(contents(&store, "agg").len(), 1);
    assert!(ks.take_delta().unwrap().is_empty());
    // A change after the capture is captured again.
    *ks.value(h, 2, &a).get_or_insert_with(|| 0).unwrap() += 1;
    assert_eq!(
        points(&ks.take_delta().unwrap()[0].1),
        vec![(value_key(2, "n", &a), Some(record(&6u64, 0)))]
    );
}

#[test]
fn changes_flushed_and_evicted_before_a_capture_are_in_it_once() {
    let store = StateStore::temporary(StoreConfig {
        cache_entries: 10,
        sled_cache_bytes: 1 << 20,
    })
    .unwrap();
    let mut ks = store
        .keyed::<u32>("agg", 0..2, Arc::new(ManualClock::new(0)))
        .unwrap();
    let h = ks.register_value::<u32>(StateDescriptor::new("v")).unwrap();
    // Logs larger than the cache: this test is about the log, not its overflow.
    ks.set_delta_log_limit(usize::MAX);
    for k in 0..100u32 {
        ks.value(h, k % 2, &k).set(k).unwrap();
        ks.maintain().unwrap();
    }
    assert!(ks.delta_log_len() > 90);
    assert!(ks.cached_entries() <= 10);
    let mut chains = BTreeMap::new();
    capture(&mut ks, &mut chains);
    let total: usize = chains.values().map(|c| points(&c[0]).len()).sum();
    assert_eq!(total, 100);
    // The log is emptied by the capture.
    assert!(ks.take_delta().unwrap().is_empty());
    // Clearing an evicted key is captured as a delete.
    ks.evict_clean();
    ks.value(h, 1, &7).clear().unwrap();
    ks.flush().unwrap();
    ks.evict_clean();
    let d = ks.take_delta().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(points(&d[0].1), vec![(value_key(1, "v", &7u32), None)]);
    chains.entry(1).or_default().push(d[0].1.clone());
    ks.flush().unwrap();
    assert_eq!(
        contents(&restored("agg", &chains), "agg"),
        contents(&store, "agg")
    );
}

#[test]
fn a_cleared_value_that_was_only_captured_is_deleted_in_the_next_delta() {
    let (_store, mut ks, _clock) = keyed::<u8>("s", 0..1);
    let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    ks.value(h, 0, &1).set(1).unwrap();
    ks.take_delta().unwrap();
    // Never flushed, so not in sled; but the image has it.
    ks.value(h, 0, &1).clear().unwrap();
    let d = ks.take_delta().unwrap();
    assert_eq!(points(&d[0].1), vec![(value_key(0, "v", &1u8), None)]);
    // Set and cleared between two captures, and never persisted: nothing at all.
    let (_store, mut ks, _clock) = keyed::<u8>("s", 0..1);
    let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    ks.value(h, 0, &1).set(1).unwrap();
    ks.value(h, 0, &1).clear().unwrap();
    assert!(ks.take_delta().unwrap().is_empty());
    assert_eq!(ks.cached_entries(), 0);
}

#[test]
fn map_clears_become_prefix_deletes_also_across_flushes() {
    let (store, mut ks, _clock) = keyed::<u8>("join", 0..1);
    let m = ks
        .register_map::<u8, u8>(StateDescriptor::new("m"))
        .unwrap();
    let mut chains = BTreeMap::new();
    for uk in 0..5 {
        ks.map(m, 0, &1).insert(uk, uk).unwrap();
    }
    capture(&mut ks, &mut chains);
    // Cleared while its entries are captured but not in sled; one entry is written
    // again after the clear.
    ks.map(m, 0, &1).clear().unwrap();
    ks.map(m, 0, &1).insert(9, 9).unwrap();
    let d = ks.take_delta().unwrap();
    let decoded = Delta::decode(&d[0].1).unwrap();
    assert_eq!(decoded.prefix_deletes(), &[&value_key(0, "m", &1u8)[..]]);
    assert_eq!(decoded.points().len(), 1);
    chains.entry(0).or_default().push(d[0].1.clone());
    // Cleared again and flushed before the capture: the log carries the prefix delete.
    ks.flush().unwrap();
    ks.map(m, 0, &1).insert(3, 3).unwrap();
    ks.flush().unwrap();
    ks.map(m, 0, &1).clear().unwrap();
    ks.map(m, 0, &1).insert(4, 4).unwrap();
    ks.flush().unwrap();
    ks.evict_clean();
    capture(&mut ks, &mut chains);
    assert_eq!(
        contents(&restored("join", &chains), "join"),
        contents(&store, "join")
    );
    assert_eq!(ks.map(m, 0, &1).entries().unwrap(), vec![(4, 4)]);
}

#[test]
fn removing_an_entry_written_after_a_captured_clear_is_captured() {
    let (store, mut ks, _clock) = keyed::<u8>("join", 0..1);
    let m = ks
        .register_map::<u8, u8>(StateDescriptor::new("m"))
        .unwrap();
    let mut chains = BTreeMap::new();
    ks.map(m, 0, &1).insert(1, 1).unwrap();
    ks.flush().unwrap();
    capture(&mut ks, &mut chains);
    ks.map(m, 0, &1).clear().unwrap();
    capture(&mut ks, &mut chains); // the clear is captured, sled still has entry 1
    ks.map(m, 0, &1).insert(2, 2).unwrap();
    capture(&mut ks, &mut chains); // entry 2 is captured, not in sled
    assert_eq!(ks.map(m, 0, &1).remove(&2).unwrap(), Some(2));
    // The flush deletes entry 2 through the clear's prefix scan, and must log it.
    ks.flush().unwrap();
    capture(&mut ks, &mut chains);
    assert!(contents(&store, "join").is_empty());
    assert!(contents(&restored("join", &chains), "join").is_empty());
}

#[test]
fn expiry_is_captured_as_a_delete() {
    let (store, mut ks, clock) = keyed::<u8>("ttl", 0..2);
    let v = ks
        .register_value::<u8>(StateDescriptor::new("v").with_ttl(Duration::from_millis(10)))
        .unwrap();
    let mut chains: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    ks.value(v, 0, &1).set(1).unwrap(); // expires at 1010
    ks.value(v, 1, &2).set(2).unwrap();
    ks.flush().unwrap();
    ks.evict_clean();
    ks.value(v, 1, &2).value().unwrap(); // cached again, clean
    capture(&mut ks, &mut chains);
    let all: usize = chains.values().map(|c| points(&c[0]).len()).sum();
    assert_eq!(all, 2);
    clock.advance(10);
    // Key 2 is cached and clean: the capture deletes it at once. Key 1 is only on
    // disk: its delete is captured when the purge removes it.
    let d = ks.take_delta().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(points(&d[0].1), vec![(value_key(1, "v", &2u8), None)]);
    chains.entry(1).or_default().push(d[0].1.clone());
    // Both stored records are expired: the purge deletes both from sled, but logs
    // only key 1 (key 2 is a captured tombstone, its delete already captured).
    assert_eq!(ks.purge_expired().unwrap(), 2);
    ks.flush().unwrap();
    capture(&mut ks, &mut chains);
    assert_eq!(
        points(chains[&0].last().unwrap()),
        vec![(value_key(0, "v", &1u8), None)]
    );
    assert!(contents(&store, "ttl").is_empty());
    assert!(contents(&restored("ttl", &chains), "ttl").is_empty());
}

#[test]
fn an_expiry_a_flush_deletes_before_the_capture_is_in_it() {
    let (store, mut ks, clock) = keyed::<u8>("ttl", 0..1);
    let v = ks
        .register_value::<u8>(StateDescriptor::new("v").with_ttl(Duration::from_millis(10)))
        .unwrap();
    let mut chains = BTreeMap::new();
    ks.value(v, 0, &1).set(1).unwrap();
    capture(&mut ks, &mut chains);
    ks.flush().unwrap(); // clean and cached
    clock.advance(10);
    assert_eq!(ks.flush().unwrap().deleted, 1);
    let d = ks.take_delta().unwrap();
    assert_eq!(points(&d[0].1), vec![(value_key(0, "v", &1u8), None)]);
    chains.entry(0).or_default().push(d[0].1.clone());
    assert!(contents(&store, "ttl").is_empty());
    assert!(contents(&restored("ttl", &chains), "ttl").is_empty());
}

#[test]
fn a_purge_never_hides_a_newer_captured_value() {
    let (store, mut ks, clock) = keyed::<u8>("ttl", 0..1);
    let v = ks
        .register_value::<u8>(StateDescriptor::new("v").with_ttl(Duration::from_millis(10)))
        .unwrap();
    let m = ks
        .register_map::<String, u8>(StateDescriptor::new("m").with_ttl(Duration::from_millis(10)))
        .unwrap();
    let uk = "user key".to_string();
    let mut chains = BTreeMap::new();
    ks.value(v, 0, &1).set(1).unwrap();
    ks.map(m, 0, &1).insert(uk.clone(), 1).unwrap();
    ks.flush().unwrap();
    capture(&mut ks, &mut chains);
    clock.advance(9);
    ks.value(v, 0, &1).set(2).unwrap(); // refreshed: lives until 1019
    ks.map(m, 0, &1).insert(uk.clone(), 2).unwrap();
    capture(&mut ks, &mut chains);
    clock.advance(1);
    // sled's old records expired; the captured ones did not.
    assert_eq!(ks.purge_expired().unwrap(), 2);
    capture(&mut ks, &mut chains);
    ks.flush().unwrap();
    let here = contents(&store, "ttl");
    assert_eq!(here.len(), 2);
    assert_eq!(contents(&restored("ttl", &chains), "ttl"), here);
}

#[test]
fn timer_changes_are_captured_and_flushes_do_not_repeat_them() {
    let (store, mut ks, _clock) = keyed::<u16>("win", 0..3);
    let mut chains: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    ks.register_timer(ET, 0, &1, 10).unwrap();
    ks.register_timer(PT, 2, &2, 20).unwrap();
    ks.register_timer(ET, 1, &3, 30).unwrap();
    ks.delete_timer(ET, 1, &3, 30).unwrap(); // cancels: partition 1 unchanged
    let d = ks.take_delta().unwrap();
    assert_eq!(d.iter().map(|(kp, _)| *kp).collect::<Vec<_>>(), vec![0, 2]);
    for (kp, bytes) in d {
        chains.entry(kp).or_default().push(bytes);
    }
    ks.flush().unwrap();
    assert!(ks.take_delta().unwrap().is_empty());
    assert_eq!(ks.pop_timer(ET, 100).unwrap().unwrap().key, 1);
    ks.register_timer(ET, 1, &4, 40).unwrap();
    capture(&mut ks, &mut chains);
    ks.flush().unwrap();
    assert_eq!(
        contents(&restored("win", &chains), "win"),
        contents(&store, "win")
    );
    let back = restored("win", &chains);
    let mut ks2 = back
        .keyed::<u16>("win", 0..3, Arc::new(ManualClock::new(0)))
        .unwrap();
    assert_eq!(ks2.timer_count(), 2);
    assert_eq!(ks2.pop_timer(ET, 100).unwrap().unwrap().key, 4);
    assert_eq!(ks2.pop_timer(PT, 100).unwrap().unwrap().key, 2);
}

#[test]
fn restored_state_reads_back_and_reports_only_new_changes() {
    let (_store, mut ks, clock) = keyed::<String>("job", 0..4);
    let v = ks.register_value::<u64>(StateDescriptor::new("v")).unwrap();
    let m = ks
        .register_map::<u32, String>(StateDescriptor::new("m"))
        .unwrap();
    let l = ks
        .register_list::<i8>(StateDescriptor::new("l").with_ttl(Duration::from_secs(60)))
        .unwrap();
    let k = "key".to_string();
    let mut chains = BTreeMap::new();
    ks.value(v, 3, &k).set(42).unwrap();
    ks.map(m, 1, &k).insert(7, "seven".into()).unwrap();
    ks.list(l, 0, &k).add(-1).unwrap();
    ks.register_timer(ET, 2, &k, 99).unwrap();
    capture(&mut ks, &mut chains);
    ks.list(l, 0, &k).add(-2).unwrap();
    capture(&mut ks, &mut chains);
    ks.value(v, 3, &k).set(0).unwrap(); // not captured: lost by the restore

    let store = restored("job", &chains);
    let mut back = store
        .keyed::<String>("job", 0..4, Arc::new(clock.clone()))
        .unwrap();
    let v = back
        .register_value::<u64>(StateDescriptor::new("v"))
        .unwrap();
    let m = back
        .register_map::<u32, String>(StateDescriptor::new("m"))
        .unwrap();
    let l = back
        .register_list::<i8>(StateDescriptor::new("l").with_ttl(Duration::from_secs(60)))
        .unwrap();
    assert!(back.take_delta().unwrap().is_empty());
    assert_eq!(back.value(v, 3, &k).value().unwrap(), Some(42));
    assert_eq!(
        back.map(m, 1, &k).entries().unwrap(),
        vec![(7, "seven".to_string())]
    );
    assert_eq!(back.list(l, 0, &k).get().unwrap(), vec![-1, -2]);
    assert_eq!(back.next_timer(ET), Some(99));
    // Reads change nothing to capture.
    assert!(back.take_delta().unwrap().is_empty());
    back.value(v, 3, &k).set(43).unwrap();
    let d = back.take_delta().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        points(&d[0].1),
        vec![(value_key(3, "v", &k), Some(record(&43u64, 0)))]
    );
    // The restored expiry still applies.
    clock.advance(60_000);
    assert!(back.list(l, 0, &k).get().unwrap().is_empty());
}

#[test]
fn restore_replaces_the_whole_stage_and_reports_stats() {
    let (store, mut ks, clock) = keyed::<u8>("s", 0..3);
    let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    for kp in 0..3 {
        ks.value(h, kp, &1).set(1).unwrap();
    }
    let mut chains = BTreeMap::new();
    capture(&mut ks, &mut chains);
    ks.value(h, 1, &2).set(2).unwrap();
    capture(&mut ks, &mut chains);
    ks.flush().unwrap();
    drop(ks);
    // Partition 2 has no chain: its stored state goes too.
    chains.remove(&2);
    let stats = store.restore_stage("s", chains.clone()).unwrap();
    assert_eq!((stats.partitions, stats.deltas, stats.entries), (2, 3, 3));
    assert!(stats.bytes > 0);
    let mut ks = store.keyed::<u8>("s", 0..3, Arc::new(clock)).unwrap();
    let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    assert_eq!(ks.value(h, 1, &2).value().unwrap(), Some(2));
    assert_eq!(ks.value(h, 2, &1).value().unwrap(), None);
    // An empty chain restores an empty partition.
    drop(ks);
    let stats = store.restore_stage("s", [(0, Vec::new())]).unwrap();
    assert_eq!((stats.partitions, stats.entries), (1, 0));
    assert!(contents(&store, "s").is_empty());
}

#[test]
fn restore_rejects_misfiled_damaged_and_duplicate_chains_and_keeps_the_state() {
    let (store, mut ks, _clock) = keyed::<u8>("s", 0..3);
    let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    ks.value(h, 1, &1).set(1).unwrap();
    ks.value(h, 2, &1).set(2).unwrap();
    let mut chains = BTreeMap::new();
    capture(&mut ks, &mut chains);
    ks.flush().unwrap();
    drop(ks);
    let before = contents(&store, "s");
    let good1 = chains[&1][0].clone();

    // Filed under another partition.
    let err = store
        .restore_stage("s", [(2, vec![good1.clone()])])
        .unwrap_err();
    assert!(
        matches!(err, StateError::Corrupt { ref what, ref reason }
            if what.contains("key partition 2") && what.contains("`s`")
                && reason.contains("belongs to key partition 1")),
        "{err}"
    );
    // A well-sealed delta whose key lies outside its own partition.
    let mut foreign = good1.clone();
    let at = delta::DELTA_HEADER_LEN + 2; // tag, key length, then the key
    foreign[at..at + 4].copy_from_slice(&2u32.to_be_bytes());
    let crc = crc32fast::hash(&foreign[5..]);
    foreign[1..5].copy_from_slice(&crc.to_le_bytes());
    let err = store.restore_stage("s", [(1, vec![foreign])]).unwrap_err();
    assert!(err.to_string().contains("lies in key partition 2"), "{err}");
    // A flipped bit, in the second element of a chain.
    let mut damaged = good1.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 4;
    let err = store
        .restore_stage("s", [(1, vec![good1.clone(), damaged])])
        .unwrap_err();
    assert!(
        matches!(err, StateError::Corrupt { ref what, ref reason }
            if what.contains("delta 2 of 2") && reason.contains("checksum")),
        "{err}"
    );
    // Two chains for one partition.
    let err = store
        .restore_stage("s", [(1, vec![good1.clone()]), (1, vec![])])
        .unwrap_err();
    assert!(matches!(err, StateError::InvalidRequest { .. }), "{err}");
    assert!(matches!(
        store.restore_stage("", chains.clone()).unwrap_err(),
        StateError::InvalidRequest { .. }
    ));
    // None of that touched the stored state.
    assert_eq!(contents(&store, "s"), before);
    store.restore_stage("s", chains).unwrap();
    assert_eq!(contents(&store, "s"), before);
}

#[test]
fn an_overflowing_delta_log_turns_into_a_full_image() {
    let store = StateStore::temporary(StoreConfig {
        cache_entries: 10,
        sled_cache_bytes: 1 << 20,
    })
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let mut ks = store.keyed::<u32>("s", 0..4, clock.clone()).unwrap();
    let v = ks.register_value::<u32>(StateDescriptor::new("v")).unwrap();
    let m = ks
        .register_map::<u8, u8>(StateDescriptor::new("m"))
        .unwrap();
    let mut chains = BTreeMap::new();
    ks.map(m, 3, &1).insert(1, 1).unwrap();
    ks.map(m, 3, &2).insert(1, 1).unwrap();
    ks.register_timer(ET, 3, &5, 5).unwrap();
    ks.flush().unwrap();
    capture(&mut ks, &mut chains);
    // A job that never captures: the logs stay within the limit (the cache size)...
    for k in 0..1000u32 {
        ks.value(v, k % 3, &k).set(k).unwrap();
        ks.maintain().unwrap();
    }
    let logged = ks.delta_log_len();
    assert!(logged <= 10, "{logged}");
    assert!(ks.delta_resets()[..3].iter().all(|r| *r) && !ks.delta_resets()[3]);
    // ...and a capture then sends full images of the dropped partitions, including
    // what is pending in the cache (cleared maps, captured entries, timers).
    ks.map(m, 0, &1).insert(1, 1).unwrap();
    ks.flush().unwrap();
    ks.map(m, 0, &1).clear().unwrap();
    ks.map(m, 0, &1).insert(2, 2).unwrap();
    ks.register_timer(ET, 0, &1, 1).unwrap();
    ks.value(v, 1, &1).clear().unwrap();
    ks.map(m, 3, &2).clear().unwrap();
    let d = ks.take_delta().unwrap();
    assert_eq!(
        d.iter().map(|(kp, _)| *kp).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    for (kp, bytes) in &d {
        let delta = Delta::decode(bytes).unwrap();
        if *kp < 3 {
            assert_eq!(delta.prefix_deletes(), &[&kp.to_be_bytes()[..]]);
            assert!(delta.points().iter().all(|(_, v)| v.is_some()));
        } else {
            assert_eq!(delta.prefix_deletes(), &[&value_key(3, "m", &2u32)[..]]);
        }
        chains.entry(*kp).or_default().push(bytes.clone());
    }
    assert!(ks.delta_resets().iter().all(|r| !r));
    // Back to deltas.
    ks.value(v, 0, &0).set(7).unwrap();
    let d = ks.take_delta().unwrap();
    assert_eq!(
        points(&d[0].1),
        vec![(value_key(0, "v", &0u32), Some(record(&7u32, 0)))]
    );
    chains.entry(0).or_default().push(d[0].1.clone());
    ks.flush().unwrap();
    assert_eq!(
        contents(&restored("s", &chains), "s"),
        contents(&store, "s")
    );
    // Lowering the limit applies at once.
    ks.value(v, 0, &1).set(1).unwrap();
    ks.flush().unwrap();
    ks.set_delta_log_limit(0);
    assert!(ks.delta_resets()[0]);
}

/// The keys of the deletes among a delta's points.
fn deletes(delta: &[u8]) -> Vec<Vec<u8>> {
    points(delta)
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect()
}

/// The sled key of user key `uk` in the map of `key` of map state `name`.
fn map_key<K: serde::Serialize, UK: serde::Serialize>(
    kp: u32,
    name: &str,
    key: &K,
    uk: &UK,
) -> Vec<u8> {
    let mut buf = value_key(kp, name, key);
    codec::append_bincode(&mut buf, uk).unwrap();
    buf
}

/// Windowed workloads create most entries and delete them again between two
/// barriers (a window's contents and its timers). Such an entry never reached the
/// image, so the delta must not carry a delete for it, whatever kind of state holds
/// it, whether its partition has data on disk or not; entries the image does hold
/// (captured before, written by a flush, or read back from sled) still get theirs.
#[test]
fn entries_created_and_deleted_within_an_epoch_leave_no_tombstone() {
    let (store, mut ks, clock) = keyed::<u32>("win", 0..2);
    let v = ks.register_value::<u64>(StateDescriptor::new("v")).unwrap();
    let t = ks
        .register_value::<u64>(StateDescriptor::new("t").with_ttl(Duration::from_millis(10)))
        .unwrap();
    let l = ks.register_list::<u8>(StateDescriptor::new("l")).unwrap();
    let m = ks
        .register_map::<i64, u64>(StateDescriptor::new("m"))
        .unwrap();
    let mut chains: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    // Partition 1 gets data on disk and in the image; partition 0 stays empty.
    ks.value(v, 1, &100).set(1).unwrap();
    ks.value(t, 1, &100).set(1).unwrap();
    ks.list(l, 1, &100).add(1).unwrap();
    ks.map(m, 1, &100).insert(-1, 1).unwrap();
    ks.map(m, 1, &7).insert(-1, 1).unwrap();
    ks.register_timer(ET, 1, &100, 5).unwrap();
    capture(&mut ks, &mut chains);
    ks.flush().unwrap();
    ks.evict_clean();

    // One epoch: every kind of entry opened and closed again, in both partitions,
    // through the ways operators do it.
    assert_eq!(ks.pop_timer(ET, 5).unwrap().map(|f| f.key), Some(100));
    for kp in 0..2u32 {
        for key in 0..3u32 {
            // Looked up first, as operators do (a blind `set` in a partition with
            // data on disk cannot know, and keeps its delete).
            assert_eq!(ks.value(v, kp, &key).get().unwrap(), None);
            ks.value(v, kp, &key).set(9).unwrap();
            ks.value(v, kp, &key).clear().unwrap();
            *ks.value(v, kp, &(key + 10))
                .get_or_insert_with(|| 0)
                .unwrap() += 1;
            ks.value(v, kp, &(key + 10)).clear().unwrap();
            assert_eq!(ks.value(t, kp, &key).get().unwrap(), None);
            ks.value(t, kp, &key).set(9).unwrap(); // expires before the capture
            ks.list(l, kp, &key).add(3).unwrap();
            ks.list(l, kp, &key).clear().unwrap();
            // A window: looked up (absent), created, read whole when its timer
            // fires, and removed.
            for w in [0i64, 1000] {
                assert_eq!(ks.map(m, kp, &key).get(&w).unwrap(), None);
                ks.map(m, kp, &key).insert(w, 5).unwrap();
                ks.register_timer(ET, kp, &key, w + 999).unwrap();
            }
            assert_eq!(ks.map(m, kp, &key).len().unwrap(), 2);
            for w in [0i64, 1000] {
                assert_eq!(ks.pop_timer(ET, i64::MAX).unwrap().map(|f| f.kp), Some(kp));
                assert_eq!(ks.map(m, kp, &key).remove(&w).unwrap(), Some(5));
            }
            // Inserted without a lookup first, then removed.
            ks.map(m, kp, &key).insert(77, 1).unwrap();
            ks.map(m, kp, &key).remove(&77).unwrap();
        }
    }
    clock.advance(10);
    // The stored TTL value expired: read back, it becomes a tombstone the image needs.
    assert_eq!(ks.value(t, 1, &100).get().unwrap(), None);
    let d = ks.take_delta().unwrap();
    // Partition 0 had nothing before: no delta at all. Partition 1 deletes exactly
    // the expired TTL value and the timer that fired, both of which the image holds.
    assert_eq!(d.iter().map(|(kp, _)| *kp).collect::<Vec<_>>(), vec![1]);
    let mut key_bytes = Vec::new();
    codec::append_bincode(&mut key_bytes, &100u32).unwrap();
    let mut timer_key = Vec::new();
    codec::write_timer_key(&mut timer_key, 1, ET, 5, &key_bytes);
    let mut expected = vec![value_key(1, "t", &100u32), timer_key];
    expected.sort();
    let mut got = deletes(&d[0].1);
    got.sort();
    assert_eq!(got, expected, "{:?}", points(&d[0].1));
    assert!(points(&d[0].1).iter().all(|(_, v)| v.is_none()));
    chains.entry(1).or_default().push(d[0].1.clone());
    ks.flush().unwrap();
    assert_eq!(
        contents(&restored("win", &chains), "win"),
        contents(&store, "win")
    );
}

/// The other side of [`entries_created_and_deleted_within_an_epoch_leave_no_tombstone`]:
/// an entry created in the epoch but written to sled by a flush (logged, perhaps
/// evicted and read back) or captured, and then deleted, is deleted in the delta.
#[test]
fn deletes_of_entries_a_flush_or_capture_persisted_are_kept() {
    let (store, mut ks, _clock) = keyed::<u32>("win", 0..1);
    let v = ks.register_value::<u64>(StateDescriptor::new("v")).unwrap();
    let m = ks
        .register_map::<i64, u64>(StateDescriptor::new("m"))
        .unwrap();
    let mut chains: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    // Flushed mid-epoch (the log holds the puts), then deleted while cached.
    ks.value(v, 0, &1).set(1).unwrap();
    ks.map(m, 0, &1).insert(1, 1).unwrap();
    ks.flush().unwrap();
    ks.value(v, 0, &1).clear().unwrap();
    ks.map(m, 0, &1).remove(&1).unwrap();
    // Flushed, evicted, read back and deleted.
    ks.value(v, 0, &2).set(2).unwrap();
    ks.map(m, 0, &2).insert(2, 2).unwrap();
    ks.map(m, 0, &5).insert(5, 5).unwrap();
    ks.flush().unwrap();
    ks.evict_clean();
    // Overwritten blind (the map is not fully loaded), then removed.
    ks.map(m, 0, &5).insert(5, 6).unwrap();
    assert_eq!(ks.map(m, 0, &5).remove(&5).unwrap(), Some(6));
    ks.value(v, 0, &2).clear().unwrap();
    assert_eq!(ks.map(m, 0, &2).remove(&2).unwrap(), Some(2));
    // Written blind (no read) where sled has data: it may be stored, so in doubt
    // the delete stays.
    ks.value(v, 0, &4).set(4).unwrap();
    ks.value(v, 0, &4).clear().unwrap();
    let d = ks.take_delta().unwrap();
    let mut got = deletes(&d[0].1);
    got.sort();
    let mut expected = vec![
        value_key(0, "v", &1u32),
        value_key(0, "v", &2u32),
        value_key(0, "v", &4u32),
        map_key(0, "m", &1u32, &1i64),
        map_key(0, "m", &2u32, &2i64),
        map_key(0, "m", &5u32, &5i64),
    ];
    expected.sort();
    assert_eq!(got, expected);
    chains.entry(0).or_default().push(d[0].1.clone());
    // Captured (not flushed), then deleted in the next epoch.
    ks.value(v, 0, &3).set(3).unwrap();
    ks.map(m, 0, &3).insert(3, 3).unwrap();
    capture(&mut ks, &mut chains);
    ks.value(v, 0, &3).clear().unwrap();
    ks.map(m, 0, &3).remove(&3).unwrap();
    let d = ks.take_delta().unwrap();
    let mut got = deletes(&d[0].1);
    got.sort();
    assert_eq!(
        got,
        vec![value_key(0, "v", &3u32), map_key(0, "m", &3u32, &3i64)]
    );
    chains.entry(0).or_default().push(d[0].1.clone());
    ks.flush().unwrap();
    assert_eq!(
        contents(&restored("win", &chains), "win"),
        contents(&store, "win")
    );
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Set(u32, u8, u32),
    Add(u32, u8, u32),
    ClearValue(u32, u8),
    GetValue(u32, u8),
    TtlSet(u32, u8, u32),
    GetTtl(u32, u8),
    ListAdd(u32, u8, i8),
    ListClear(u32, u8),
    MapInsert(bool, u32, u8, u8, u16),
    MapRemove(bool, u32, u8, u8),
    MapClear(bool, u32, u8),
    MapEntries(bool, u32, u8),
    /// Looks a user key up (caching its absence or its stored value).
    MapGet(bool, u32, u8, u8),
    /// A value created and deleted at once (within one epoch), after a lookup or
    /// blind (`bool`).
    ValueBlip(bool, u32, u8, u32),
    /// A list created and cleared at once.
    ListBlip(u32, u8, i8),
    /// A window: a user key looked up (or not: `bool`), inserted with a timer, the
    /// map read whole, the timer deleted and the entry removed, all at once.
    MapBlip(bool, bool, u32, u8, u8, u16),
    Register(bool, u32, u8, i8),
    DeleteTimer(bool, u32, u8, i8),
    Pop(bool, i8),
    Advance(u64),
    Flush,
    Maintain,
    Evict,
    Purge,
    Capture,
    /// Crash and recover: drop the keyed state, restore the stage from the chains,
    /// open it again.
    Recover,
}

fn op() -> impl Strategy<Value = Op> {
    let kp = 0u32..3;
    let key = 0u8..4;
    let uk = 0u8..4;
    let ts = -4i8..4;
    prop_oneof![
        4 => (kp.clone(), key.clone(), any::<u32>()).prop_map(|(p, k, v)| Op::Set(p, k, v)),
        4 => (kp.clone(), key.clone(), 0u32..9).prop_map(|(p, k, v)| Op::Add(p, k, v)),
        2 => (kp.clone(), key.clone()).prop_map(|(p, k)| Op::ClearValue(p, k)),
        2 => (kp.clone(), key.clone()).prop_map(|(p, k)| Op::GetValue(p, k)),
        3 => (kp.clone(), key.clone(), any::<u32>()).prop_map(|(p, k, v)| Op::TtlSet(p, k, v)),
        2 => (kp.clone(), key.clone()).prop_map(|(p, k)| Op::GetTtl(p, k)),
        3 => (kp.clone(), key.clone(), any::<i8>()).prop_map(|(p, k, v)| Op::ListAdd(p, k, v)),
        1 => (kp.clone(), key.clone()).prop_map(|(p, k)| Op::ListClear(p, k)),
        5 => (any::<bool>(), kp.clone(), key.clone(), uk.clone(), any::<u16>())
            .prop_map(|(t, p, k, u, v)| Op::MapInsert(t, p, k, u, v)),
        2 => (any::<bool>(), kp.clone(), key.clone(), uk.clone())
            .prop_map(|(t, p, k, u)| Op::MapRemove(t, p, k, u)),
        2 => (any::<bool>(), kp.clone(), key.clone()).prop_map(|(t, p, k)| Op::MapClear(t, p, k)),
        1 => (any::<bool>(), kp.clone(), key.clone()).prop_map(|(t, p, k)| Op::MapEntries(t, p, k)),
        2 => (any::<bool>(), kp.clone(), key.clone(), uk.clone())
            .prop_map(|(t, p, k, u)| Op::MapGet(t, p, k, u)),
        2 => (any::<bool>(), kp.clone(), key.clone(), any::<u32>())
            .prop_map(|(r, p, k, v)| Op::ValueBlip(r, p, k, v)),
        1 => (kp.clone(), key.clone(), any::<i8>()).prop_map(|(p, k, v)| Op::ListBlip(p, k, v)),
        3 => (any::<bool>(), any::<bool>(), kp.clone(), key.clone(), uk.clone(), any::<u16>())
            .prop_map(|(r, t, p, k, u, v)| Op::MapBlip(r, t, p, k, u, v)),
        3 => (any::<bool>(), kp.clone(), key.clone(), ts.clone())
            .prop_map(|(d, p, k, t)| Op::Register(d, p, k, t)),
        1 => (any::<bool>(), kp, key, ts.clone()).prop_map(|(d, p, k, t)| Op::DeleteTimer(d, p, k, t)),
        2 => (any::<bool>(), ts).prop_map(|(d, t)| Op::Pop(d, t)),
        2 => (0u64..12).prop_map(Op::Advance),
        1 => Just(Op::Flush),
        2 => Just(Op::Maintain),
        1 => Just(Op::Evict),
        1 => Just(Op::Purge),
        3 => Just(Op::Capture),
        1 => Just(Op::Recover),
    ]
}

/// The handles of the model test's states.
struct Handles {
    v: ValueHandle<u32>,
    t: ValueHandle<u32>,
    l: ListHandle<i8>,
    m: MapHandle<u8, u16>,
    mt: MapHandle<u8, u16>,
}

fn register(ks: &mut KeyedState<u8>) -> Handles {
    let ttl = Duration::from_millis(20);
    Handles {
        v: ks.register_value(StateDescriptor::new("v")).unwrap(),
        t: ks
            .register_value(StateDescriptor::new("t").with_ttl(ttl))
            .unwrap(),
        l: ks
            .register_list(StateDescriptor::new("l").with_ttl(ttl))
            .unwrap(),
        m: ks.register_map(StateDescriptor::new("m")).unwrap(),
        mt: ks
            .register_map(StateDescriptor::new("mt").with_ttl(ttl))
            .unwrap(),
    }
}

fn domain(event: bool) -> TimerDomain {
    if event {
        ET
    } else {
        PT
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever happens between captures (writes, deletes, clears, expiry, timers,
    /// entries created and deleted within one epoch, flushes, evictions, purges,
    /// crashes with recovery), the captured chains,
    /// restored into a fresh store, and their merged images too, give byte for byte
    /// the sled content of the original after a full flush.
    #[test]
    fn restored_chains_equal_the_flushed_original(
        ops in proptest::collection::vec(op(), 1..150),
        // Small: maintain flushes and evicts all the time. Large: only explicit
        // flushes reach sled, so captured entries pile up between them.
        cache in prop_oneof![Just(6usize), Just(30), Just(10_000)],
        // Small: delta logs overflow, and captures send full images.
        log_limit in prop_oneof![Just(3usize), Just(25), Just(usize::MAX)],
    ) {
        let store = StateStore::temporary(StoreConfig {
            cache_entries: cache,
            sled_cache_bytes: 1 << 20,
        })
        .unwrap();
        let clock = ManualClock::new(1_000);
        let open = |store: &StateStore| {
            let mut ks = store
                .keyed::<u8>("m", 0..3, Arc::new(clock.clone()))
                .unwrap();
            let h = register(&mut ks);
            ks.set_delta_log_limit(log_limit);
            (ks, h)
        };
        let (mut ks, mut h) = open(&store);
        let mut chains: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Set(p, k, v) => ks.value(h.v, p, &k).set(v).unwrap(),
                Op::Add(p, k, v) => {
                    let mut s = ks.value(h.v, p, &k);
                    let slot = s.get_or_insert_with(|| 0).unwrap();
                    *slot = slot.wrapping_add(v);
                }
                Op::ClearValue(p, k) => ks.value(h.v, p, &k).clear().unwrap(),
                Op::GetValue(p, k) => {
                    ks.value(h.v, p, &k).get().unwrap();
                }
                Op::TtlSet(p, k, v) => ks.value(h.t, p, &k).set(v).unwrap(),
                Op::GetTtl(p, k) => {
                    ks.value(h.t, p, &k).get().unwrap();
                }
                Op::ListAdd(p, k, v) => ks.list(h.l, p, &k).add(v).unwrap(),
                Op::ListClear(p, k) => ks.list(h.l, p, &k).clear().unwrap(),
                Op::MapInsert(t, p, k, u, v) => {
                    let m = if t { h.mt } else { h.m };
                    ks.map(m, p, &k).insert(u, v).unwrap();
                }
                Op::MapRemove(t, p, k, u) => {
                    let m = if t { h.mt } else { h.m };
                    ks.map(m, p, &k).remove(&u).unwrap();
                }
                Op::MapClear(t, p, k) => {
                    let m = if t { h.mt } else { h.m };
                    ks.map(m, p, &k).clear().unwrap();
                }
                Op::MapEntries(t, p, k) => {
                    let m = if t { h.mt } else { h.m };
                    ks.map(m, p, &k).entries().unwrap();
                }
                Op::MapGet(t, p, k, u) => {
                    let m = if t { h.mt } else { h.m };
                    ks.map(m, p, &k).get(&u).unwrap();
                }
                Op::ValueBlip(read, p, k, v) => {
                    if read {
                        ks.value(h.v, p, &k).get().unwrap();
                    }
                    ks.value(h.v, p, &k).set(v).unwrap();
                    ks.value(h.v, p, &k).clear().unwrap();
                }
                Op::ListBlip(p, k, v) => {
                    ks.list(h.l, p, &k).add(v).unwrap();
                    ks.list(h.l, p, &k).clear().unwrap();
                }
                Op::MapBlip(read, t, p, k, u, v) => {
                    let m = if t { h.mt } else { h.m };
                    let ts = i64::from(u) + 100;
                    if read {
                        ks.map(m, p, &k).get(&u).unwrap();
                    }
                    ks.map(m, p, &k).insert(u, v).unwrap();
                    ks.register_timer(ET, p, &k, ts).unwrap();
                    if read {
                        ks.map(m, p, &k).entries().unwrap();
                    }
                    ks.delete_timer(ET, p, &k, ts).unwrap();
                    ks.map(m, p, &k).remove(&u).unwrap();
                }
                Op::Register(d, p, k, t) => ks.register_timer(domain(d), p, &k, t.into()).unwrap(),
                Op::DeleteTimer(d, p, k, t) => ks.delete_timer(domain(d), p, &k, t.into()).unwrap(),
                Op::Pop(d, t) => {
                    ks.pop_timer(domain(d), t.into()).unwrap();
                }
                Op::Advance(ms) => clock.advance(ms),
                Op::Flush => {
                    ks.flush().unwrap();
                }
                Op::Maintain => {
                    ks.maintain().unwrap();
                    prop_assert!(ks.cached_entries() <= cache);
                }
                Op::Evict => {
                    ks.evict_clean();
                }
                Op::Purge => {
                    ks.purge_expired().unwrap();
                }
                Op::Capture => capture(&mut ks, &mut chains),
                Op::Recover => {
                    drop(ks);
                    store.restore_stage("m", chains.clone()).unwrap();
                    (ks, h) = open(&store);
                    prop_assert!(ks.take_delta().unwrap().is_empty());
                }
            }
        }
        capture(&mut ks, &mut chains);
        // A flush at the capture's instant, without the incremental purge (its
        // deletes are captured when they happen, not when they are due).
        ks.set_purge_per_flush(0);
        ks.flush().unwrap();
        let original = contents(&store, "m");

        let back = restored("m", &chains);
        prop_assert_eq!(&contents(&back, "m"), &original);

        let merged: BTreeMap<u32, Vec<Vec<u8>>> = chains
            .iter()
            .map(|(kp, chain)| {
                let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
                (*kp, vec![merge_chain(&refs).unwrap()])
            })
            .collect();
        let back_merged = restored("m", &merged);
        prop_assert_eq!(&contents(&back_merged, "m"), &original);

        // The restored state opens cleanly, with nothing to capture.
        let mut ks2 = back
            .keyed::<u8>("m", 0..3, Arc::new(clock.clone()))
            .unwrap();
        register(&mut ks2);
        prop_assert!(ks2.take_delta().unwrap().is_empty());
        prop_assert_eq!(ks2.timer_count(), ks.timer_count());
    }
}

/// Measures [`KeyedState::take_delta`] for 50,000 dirty `u64` values keyed by
/// `String` over 16 key partitions. Run with
/// `cargo test -p weir-actors --release capture_tests::take_delta_of_50k -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run in release mode with --ignored --nocapture"]
fn take_delta_of_50k_dirty_values() {
    use std::time::Instant;
    let store = StateStore::temporary(StoreConfig::default()).unwrap();
    let mut ks = store
        .keyed::<String>("bench", 0..16, Arc::new(ManualClock::new(0)))
        .unwrap();
    let h = ks
        .register_value::<u64>(StateDescriptor::new("count"))
        .unwrap();
    let keys: Vec<String> = (0..50_000).map(|i| format!("word-{i:08}")).collect();
    let mut times = Vec::new();
    for round in 0..7 {
        for (i, k) in keys.iter().enumerate() {
            *ks.value(h, (i % 16) as u32, k)
                .get_or_insert_with(|| 0)
                .unwrap() += 1;
        }
        let t = Instant::now();
        let deltas = ks.take_delta().unwrap();
        let took = t.elapsed();
        let bytes: usize = deltas.iter().map(|(_, d)| d.len()).sum();
        println!(
            "round {round}: take_delta of 50,000 dirty values: {took:?} ({:.0} ns/entry), {} partitions, {bytes} bytes",
            took.as_nanos() as f64 / 50_000.0,
            deltas.len()
        );
        times.push(took);
    }
    times.sort();
    println!("median {:?}, best {:?}", times[times.len() / 2], times[0]);
    let t = Instant::now();
    let stats = ks.flush().unwrap();
    println!(
        "for comparison, flushing them to sled: {:?} ({} written)",
        t.elapsed(),
        stats.written
    );
}
