//! Key partitions: how a record's key picks the key partition, and how key partitions
//! are spread over a stage's partition actors.
//!
//! The key partition of a key is
//!
//! ```text
//! kp = splitmix64_finalise(fnv1a64(bincode(key))) mod P
//! ```
//!
//! where `bincode(key)` is the key's bincode 1 encoding (fixed-width little-endian
//! integers, strings and sequences prefixed by a u64 length), FNV-1a 64 is taken over
//! those bytes, and the SplitMix64 finaliser spreads FNV's weak low bits. Everything is
//! defined on bytes with wrapping arithmetic, so the result is the same in every
//! process, run and platform. `tests/routing.rs` pins known values: changing this
//! function would move every key's state, so it is a breaking change of the snapshot
//! format.
//!
//! Key partitions are assigned to the `parallelism` partition actors of a stage in
//! contiguous ranges (as Flink assigns key groups): actor `i` owns
//! `ceil(i * P / n) .. ceil((i + 1) * P / n)`.

use std::ops::Range;

use serde::Serialize;

/// Default number of key partitions `P`.
pub const DEFAULT_KEY_PARTITIONS: u32 = 128;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The SplitMix64 finaliser (the mixing part of SplitMix64, without the increment).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a 64 as an `io::Write`, so a key can be hashed while bincode encodes it,
/// without building the encoding in memory.
struct FnvWriter(u64);

impl std::io::Write for FnvWriter {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A key that cannot be encoded, so it has no key partition.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the key to find its key partition: {0}")]
pub struct KeyEncodeError(String);

/// The stable 64-bit hash of a key's bincode encoding.
#[inline]
pub fn key_hash<K: Serialize + ?Sized>(key: &K) -> Result<u64, KeyEncodeError> {
    let mut w = FnvWriter(FNV_OFFSET);
    bincode::serialize_into(&mut w, key).map_err(|e| KeyEncodeError(e.to_string()))?;
    Ok(mix64(w.0))
}

/// The stable hash of raw bytes, as used for keys whose encoding is those bytes.
pub fn bytes_hash(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix64(h)
}

/// The key partition of `key` among `key_partitions` (`P`).
#[inline]
pub fn key_partition<K: Serialize + ?Sized>(
    key: &K,
    key_partitions: u32,
) -> Result<u32, KeyEncodeError> {
    Ok((key_hash(key)? % u64::from(key_partitions.max(1))) as u32)
}

/// Which of `parallelism` partition actors owns key partition `kp` of `P`.
#[inline]
pub fn owner_of(kp: u32, key_partitions: u32, parallelism: u32) -> u32 {
    ((u64::from(kp) * u64::from(parallelism)) / u64::from(key_partitions.max(1))) as u32
}

/// The key partitions owned by partition actor `index` of `parallelism`.
pub fn owned_range(index: u32, key_partitions: u32, parallelism: u32) -> Range<u32> {
    let p = u64::from(key_partitions);
    let n = u64::from(parallelism.max(1));
    let start = (u64::from(index) * p).div_ceil(n);
    let end = (u64::from(index + 1) * p).div_ceil(n);
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn owned_ranges_tile_the_key_space_and_agree_with_owner_of(p in 1u32..2048, n in 1u32..64) {
            prop_assume!(n <= p);
            let mut next = 0;
            for i in 0..n {
                let r = owned_range(i, p, n);
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty());
                for kp in r.clone() {
                    prop_assert_eq!(owner_of(kp, p, n), i);
                }
                next = r.end;
            }
            prop_assert_eq!(next, p);
        }

        #[test]
        fn key_partition_is_in_range_and_deterministic(s in ".*", p in 1u32..100_000) {
            let a = key_partition(&s, p).unwrap();
            prop_assert!(a < p);
            prop_assert_eq!(a, key_partition(&s.clone(), p).unwrap());
        }
    }

    #[test]
    fn a_string_key_hashes_like_its_encoding() {
        let encoded = bincode::serialize("w42").unwrap();
        assert_eq!(key_hash("w42").unwrap(), bytes_hash(&encoded));
    }
}
