//! Key routing is part of the on-disk format: a key's key partition decides where its
//! state lives. These values are pinned; if this test fails, the routing changed and
//! every stored state would land in the wrong partition.

use weir::partition::{bytes_hash, key_hash, key_partition, owned_range, owner_of};

/// The documented definition, written out independently of the library: FNV-1a 64
/// over the bincode encoding, then the SplitMix64 finaliser.
fn reference_hash(encoded: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in encoded {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// bincode 1 encoding of a string: u64 little-endian length, then the bytes.
fn encoded_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

#[test]
fn pinned_hashes_and_key_partitions() {
    let strings = [
        ("", 0x813f_0174_a236_7c13u64, 19u32),
        ("w0", 0x2e9c_141f_be5f_273d, 61),
        ("hello", 0xb56a_c049_715c_2522, 34),
        ("weir", 0x9d78_f095_b34c_9b73, 115),
    ];
    for (key, hash, kp) in strings {
        assert_eq!(key_hash(key).unwrap(), hash, "hash of {key:?}");
        assert_eq!(
            reference_hash(&encoded_str(key)),
            hash,
            "reference hash of {key:?}"
        );
        assert_eq!(
            key_partition(key, 128).unwrap(),
            kp,
            "key partition of {key:?}"
        );
        assert_eq!(
            key_partition(&key.to_string(), 128).unwrap(),
            kp,
            "String and &str agree"
        );
    }
    let numbers = [
        (0u64, 0x813f_0174_a236_7c13u64, 19u32),
        (1, 0x5ca6_bbcb_b1e8_5355, 85),
        (42, 0xe15f_07fe_f55b_9454, 84),
        (u64::MAX, 0x9795_737c_4a2d_acd5, 85),
    ];
    for (key, hash, kp) in numbers {
        assert_eq!(key_hash(&key).unwrap(), hash, "hash of {key}");
        assert_eq!(reference_hash(&key.to_le_bytes()), hash);
        assert_eq!(key_partition(&key, 128).unwrap(), kp);
    }
    let tuple = ("user-7".to_string(), 3u32);
    assert_eq!(key_hash(&tuple).unwrap(), 0x8c3a_2268_973b_5cec);
    assert_eq!(key_partition(&tuple, 1000).unwrap(), 284);
    assert_eq!(bytes_hash(b"abc"), 0x0dd4_9049_0804_b508);
}

#[test]
fn ownership_is_contiguous_and_moves_little_when_parallelism_changes() {
    // 128 key partitions over 2 and over 3 actors.
    assert_eq!(owned_range(0, 128, 2), 0..64);
    assert_eq!(owned_range(1, 128, 2), 64..128);
    assert_eq!(owned_range(0, 128, 3), 0..43);
    assert_eq!(owned_range(1, 128, 3), 43..86);
    assert_eq!(owned_range(2, 128, 3), 86..128);
    assert_eq!(owner_of(63, 128, 2), 0);
    assert_eq!(owner_of(64, 128, 2), 1);
    assert_eq!(owner_of(127, 128, 3), 2);
}

#[test]
fn keys_spread_evenly_over_key_partitions() {
    let p = 128u32;
    let mut counts = vec![0u32; p as usize];
    for i in 0..128_000u64 {
        counts[key_partition(&format!("w{i}"), p).unwrap() as usize] += 1;
    }
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    // 1,000 expected per partition; a uniform hash stays well within +-15%.
    assert!(*min > 850 && *max < 1150, "min {min}, max {max}");
}
