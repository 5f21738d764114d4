//! Unit tests of [`KeyedState`](super::KeyedState): registration, isolation,
//! eviction, corruption, flush statistics and the purge of expired entries.

use super::super::testutil::*;
use super::super::*;
use std::time::Duration;

fn assert_send<T: Send>() {}

fn assert_sync<T: Sync>() {}

#[test]
fn keyed_state_is_send() {
    assert_send::<KeyedState<String>>();
    assert_send::<StateStore>();
    assert_sync::<StateStore>();
}

#[test]
fn descriptor_registration_rules() {
    let (_store, mut ks, _clock) = keyed::<u32>("s", 0..1);
    let a = ks.register_value::<u64>(StateDescriptor::new("a")).unwrap();
    // Same descriptor, same type: the same handle.
    assert_eq!(
        ks.register_value::<u64>(StateDescriptor::new("a")).unwrap(),
        a
    );
    let conflict =
        |e: StateError| matches!(e, StateError::DescriptorConflict { ref name, .. } if name == "a");
    assert!(conflict(
        ks.register_value::<u32>(StateDescriptor::new("a"))
            .unwrap_err()
    ));
    assert!(conflict(
        ks.register_list::<u64>(StateDescriptor::new("a"))
            .unwrap_err()
    ));
    assert!(conflict(
        ks.register_map::<u64, u64>(StateDescriptor::new("a"))
            .unwrap_err()
    ));
    assert!(conflict(
        ks.register_value::<u64>(StateDescriptor::new("a").with_ttl(Duration::from_secs(1)))
            .unwrap_err()
    ));
    // Two names with one CRC-32.
    assert_eq!(
        codec::state_id("state-29685295"),
        codec::state_id("state-32060020")
    );
    ks.register_value::<u8>(StateDescriptor::new("state-29685295"))
        .unwrap();
    let err = ks
        .register_value::<u8>(StateDescriptor::new("state-32060020"))
        .unwrap_err();
    assert!(
        matches!(err, StateError::DescriptorConflict { ref name, ref reason, .. }
            if name == "state-32060020" && reason.contains("state-29685295")),
        "{err}"
    );
    assert!(matches!(
        ks.register_value::<u8>(StateDescriptor::new(""))
            .unwrap_err(),
        StateError::InvalidDescriptor { .. }
    ));
    assert!(matches!(
        ks.register_value::<u8>(StateDescriptor::new("z").with_ttl(Duration::from_micros(10)))
            .unwrap_err(),
        StateError::InvalidDescriptor { .. }
    ));
}

#[test]
#[should_panic(expected = "key partition 4 is not owned")]
fn foreign_key_partition_panics() {
    let (_store, mut ks, _clock) = keyed::<u32>("s", 2..4);
    let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    let _ = ks.value(h, 4, &1).get();
}

#[test]
#[should_panic(expected = "does not belong")]
fn foreign_handle_panics() {
    let (_store, mut ks, _clock) = keyed::<u32>("s", 0..1);
    let (_store2, mut other, _clock2) = keyed::<u32>("s", 0..1);
    let _ = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    let h = other
        .register_value::<String>(StateDescriptor::new("v"))
        .unwrap();
    let _ = ks.value(h, 0, &1).get();
}

#[test]
fn stages_and_partitions_are_isolated() {
    let store = StateStore::temporary(small_config()).unwrap();
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(ManualClock::new(0));
    let mut a = store.keyed::<u32>("a", 0..2, clock.clone()).unwrap();
    let mut b = store.keyed::<u32>("b", 0..2, clock.clone()).unwrap();
    let ha = a.register_value::<u32>(StateDescriptor::new("v")).unwrap();
    let hb = b.register_value::<u32>(StateDescriptor::new("v")).unwrap();
    let ma = a
        .register_map::<u32, u32>(StateDescriptor::new("m"))
        .unwrap();
    a.value(ha, 0, &1).set(10).unwrap();
    a.value(ha, 1, &1).set(11).unwrap();
    a.map(ma, 0, &1).insert(5, 50).unwrap();
    b.value(hb, 0, &1).set(20).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    for _ in 0..2 {
        assert_eq!(a.value(ha, 0, &1).value().unwrap(), Some(10));
        assert_eq!(a.value(ha, 1, &1).value().unwrap(), Some(11));
        assert_eq!(b.value(hb, 0, &1).value().unwrap(), Some(20));
        assert_eq!(b.value(hb, 1, &1).value().unwrap(), None);
        assert_eq!(a.map(ma, 0, &1).entries().unwrap(), vec![(5, 50)]);
        assert!(a.map(ma, 1, &1).is_empty().unwrap());
        a.evict_clean();
        b.evict_clean();
    }
    // A later keyed state over part of the range sees only its partitions.
    drop(a);
    let mut a1 = store.keyed::<u32>("a", 1..2, clock).unwrap();
    let ha1 = a1.register_value::<u32>(StateDescriptor::new("v")).unwrap();
    assert_eq!(a1.value(ha1, 1, &1).value().unwrap(), Some(11));
    a1.value(ha1, 1, &1).clear().unwrap();
    a1.flush().unwrap();
    assert_eq!(
        raw_entries(&a1, 0).len(),
        2,
        "partition 0 (value and map) untouched"
    );
    assert!(raw_entries(&a1, 1).is_empty());
    assert_eq!(raw_entries(&b, 0).len(), 1);
}

#[test]
fn maintain_flushes_and_evicts_over_the_limit_and_values_survive() {
    let store = StateStore::temporary(StoreConfig {
        cache_entries: 100,
        sled_cache_bytes: 1 << 20,
    })
    .unwrap();
    let mut ks = store
        .keyed::<u64>("agg", 0..4, std::sync::Arc::new(ManualClock::new(0)))
        .unwrap();
    let h = ks
        .register_value::<u64>(StateDescriptor::new("sum"))
        .unwrap();
    for round in 0..3u64 {
        for k in 0..1000u64 {
            *ks.value(h, (k % 4) as u32, &k)
                .get_or_insert_with(|| 0)
                .unwrap() += k + round;
            ks.maintain().unwrap();
            assert!(ks.cached_entries() <= 100);
        }
    }
    // Under the limit, maintain changes nothing.
    let before = ks.cached_entries();
    ks.maintain().unwrap();
    assert_eq!(ks.cached_entries(), before);
    assert!(before > 0);
    ks.flush().unwrap();
    ks.evict_clean();
    for k in 0..1000u64 {
        assert_eq!(
            ks.value(h, (k % 4) as u32, &k).value().unwrap(),
            Some(3 * k + 3)
        );
    }
}

#[test]
fn flipped_byte_on_disk_is_reported_as_corrupt() {
    let (_store, mut ks, _clock) = keyed::<String>("agg", 0..8);
    let h = ks
        .register_value::<String>(StateDescriptor::new("label"))
        .unwrap();
    let key = "k".to_string();
    ks.value(h, 5, &key).set("some value".into()).unwrap();
    ks.flush().unwrap();
    ks.evict_clean();
    let raw = raw_entries(&ks, 5);
    assert_eq!(raw.len(), 1);
    let (k, v) = &raw[0];
    let mut bad = v.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    ks.tree().insert(k, bad).unwrap();
    let err = ks.value(h, 5, &key).value().unwrap_err();
    match &err {
        StateError::Corrupt { what, reason } => {
            assert!(
                what.contains("`label`") && what.contains("`agg`") && what.contains("partition 5"),
                "{what}"
            );
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // An unknown format version is corrupt too, not decoded.
    let mut future = v.to_vec();
    future[0] = 2;
    ks.tree().insert(k, future).unwrap();
    assert!(matches!(
        ks.value(h, 5, &key).value().unwrap_err(),
        StateError::Corrupt { .. }
    ));
}

#[test]
fn intact_bytes_of_another_type_are_a_decode_error() {
    let store = StateStore::temporary(small_config()).unwrap();
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(ManualClock::new(0));
    let mut ks = store.keyed::<u8>("agg", 0..1, clock.clone()).unwrap();
    let h = ks
        .register_value::<String>(StateDescriptor::new("v"))
        .unwrap();
    ks.value(h, 0, &1).set("hello".into()).unwrap();
    ks.flush().unwrap();
    drop(ks);
    let mut ks = store.keyed::<u8>("agg", 0..1, clock).unwrap();
    let h = ks.register_value::<u64>(StateDescriptor::new("v")).unwrap();
    assert!(matches!(
        ks.value(h, 0, &1).value().unwrap_err(),
        StateError::Decode { ref name, kp: 0, .. } if name == "v"
    ));
}

#[test]
fn flush_stats_count_writes_deletes_and_bytes() {
    let (_store, mut ks, _clock) = keyed::<u8>("s", 0..1);
    let h = ks.register_value::<u8>(StateDescriptor::new("v")).unwrap();
    assert_eq!(ks.flush().unwrap(), FlushStats::default());
    ks.value(h, 0, &1).set(1).unwrap();
    ks.value(h, 0, &2).set(2).unwrap();
    let s = ks.flush().unwrap();
    // key: 8-byte prefix + 1; value: 13-byte header + 1.
    assert_eq!(
        s,
        FlushStats {
            written: 2,
            deleted: 0,
            bytes: 2 * (9 + 14),
            purged: 0,
        }
    );
    // Clean entries are not written again.
    assert_eq!(ks.flush().unwrap(), FlushStats::default());
}

#[test]
fn flush_purges_expired_entries_that_are_not_cached_incrementally() {
    let (_store, mut ks, clock) = keyed::<u32>("ttl", 0..3);
    let ttl = Duration::from_millis(50);
    let v = ks
        .register_value::<u32>(StateDescriptor::new("v").with_ttl(ttl))
        .unwrap();
    let m = ks
        .register_map::<u8, u8>(StateDescriptor::new("m").with_ttl(ttl))
        .unwrap();
    let keep = ks
        .register_value::<u32>(StateDescriptor::new("keep"))
        .unwrap();
    for k in 0..10u32 {
        ks.value(v, k % 2, &k).set(k).unwrap();
        ks.value(keep, k % 2, &k).set(k).unwrap();
    }
    ks.map(m, 2, &1).insert(1, 1).unwrap();
    ks.map(m, 2, &1).insert(2, 2).unwrap();
    ks.flush().unwrap();
    ks.evict_clean();
    assert_eq!(ks.cached_entries(), 0);
    clock.advance(50);
    ks.set_purge_per_flush(0);
    assert_eq!(ks.flush().unwrap().purged, 0);
    ks.set_purge_per_flush(4);
    let mut total = 0;
    for _ in 0..4 {
        let purged = ks.flush().unwrap().purged;
        assert!(purged <= 4, "{purged}");
        total += purged;
    }
    assert_eq!(total, 12);
    assert_eq!(ks.flush().unwrap().purged, 0);
    // Only the TTL states lost entries; the rest is intact.
    let stored: usize = (0..3).map(|p| raw_entries(&ks, p).len()).sum();
    assert_eq!(stored, 10);
    assert_eq!(ks.value(keep, 1, &7).value().unwrap(), Some(7));
    assert_eq!(ks.value(v, 1, &7).value().unwrap(), None);
}

#[test]
fn purge_expired_sweeps_everything_and_spares_live_entries() {
    let (_store, mut ks, clock) = keyed::<u32>("ttl", 0..2);
    let v = ks
        .register_value::<u32>(StateDescriptor::new("v").with_ttl(Duration::from_millis(10)))
        .unwrap();
    ks.set_purge_per_flush(0);
    for k in 0..6u32 {
        ks.value(v, k % 2, &k).set(k).unwrap();
    }
    ks.flush().unwrap();
    ks.evict_clean();
    clock.advance(5);
    ks.value(v, 0, &0).set(100).unwrap(); // refreshed: lives until 1015
    ks.flush().unwrap();
    clock.advance(5);
    assert_eq!(ks.purge_expired().unwrap(), 5);
    assert_eq!(ks.purge_expired().unwrap(), 0);
    assert_eq!(raw_entries(&ks, 0).len() + raw_entries(&ks, 1).len(), 1);
    ks.evict_clean();
    assert_eq!(ks.value(v, 0, &0).value().unwrap(), Some(100));
}
