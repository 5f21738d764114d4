//! Byte layouts of the state store: sled keys and the versioned, checksummed value
//! record.
//!
//! Public so later work (per-partition snapshots, partition moves, inspection tools)
//! reads and writes exactly the bytes this store does.
//!
//! All payloads use bincode 1.3's default functions (fixed-width little-endian
//! integers), so the bytes are identical on every platform.

use super::timers::TimerDomain;
use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version byte of the value record written by this code.
pub const VALUE_FORMAT_VERSION: u8 = 1;

/// Length of the value record header: version (1) + CRC-32 (4) + expiry (8).
pub const VALUE_HEADER_LEN: usize = 1 + 4 + 8;

/// Length of the key-partition prefix of every sled key.
pub const PARTITION_PREFIX_LEN: usize = 4;

/// Length of the `[key partition][state id]` prefix of every sled key.
pub const STATE_PREFIX_LEN: usize = 8;

/// The reserved state name under which timers are stored (see [`TIMER_STATE_ID`]).
/// Registering a user state of this name, or of any name with the same state id, is a
/// [`StateError::DescriptorConflict`](super::StateError::DescriptorConflict).
pub const TIMER_STATE_NAME: &str = "__weir_timers";

/// The state id of timers: [`state_id`]`(`[`TIMER_STATE_NAME`]`)`, the CRC-32 of
/// `"__weir_timers"`.
pub const TIMER_STATE_ID: u32 = 0x135a_96bf;

/// Length of the fixed part of a timer's sled key:
/// `[key partition][TIMER_STATE_ID][domain u8][timestamp u64 BE]`.
pub const TIMER_KEY_HEADER_LEN: usize = STATE_PREFIX_LEN + 1 + 8;

/// Why a stored value record was rejected.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Fewer bytes than the fixed header.
    #[error("record is {len} bytes, shorter than the {VALUE_HEADER_LEN}-byte header")]
    Truncated {
        /// The record's length.
        len: usize,
    },
    /// A format version this code does not know.
    #[error("unknown value format version {found} (expected {VALUE_FORMAT_VERSION})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The CRC-32 over expiry and payload does not match the stored one.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the record.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// The record is intact but its payload does not decode as the requested type.
    #[error("payload does not decode as the registered type: {0}")]
    Payload(#[source] bincode::Error),
}

impl CodecError {
    /// True when the bytes themselves are damaged or of an unknown format (as opposed
    /// to intact bytes of another type).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, CodecError::Payload(_))
    }
}

/// The state id of a descriptor name: CRC-32 (IEEE) of its UTF-8 bytes.
pub fn state_id(name: &str) -> u32 {
    crc32fast::hash(name.as_bytes())
}

/// The sled key prefix shared by every entry of key partition `kp`.
pub fn partition_prefix(kp: u32) -> [u8; PARTITION_PREFIX_LEN] {
    kp.to_be_bytes()
}

/// The sled key prefix shared by every entry of state `state_id` in key partition `kp`.
pub fn state_prefix(kp: u32, state_id: u32) -> [u8; STATE_PREFIX_LEN] {
    let mut out = [0u8; STATE_PREFIX_LEN];
    out[..4].copy_from_slice(&kp.to_be_bytes());
    out[4..].copy_from_slice(&state_id.to_be_bytes());
    out
}

/// The key partition a sled key belongs to, or `None` for a key shorter than the
/// partition prefix (which this store never writes).
pub fn key_partition(sled_key: &[u8]) -> Option<u32> {
    let head: [u8; PARTITION_PREFIX_LEN] = sled_key.get(..PARTITION_PREFIX_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(head))
}

/// Replaces `buf` with `[kp BE][state id BE][bincode(key)]`: the sled key of a value or
/// list entry, and the prefix of a map's entries.
pub fn write_entry_key<K: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    kp: u32,
    state_id: u32,
    key: &K,
) -> bincode::Result<()> {
    buf.clear();
    buf.extend_from_slice(&state_prefix(kp, state_id));
    append_bincode(buf, key)
}

/// Appends `bincode(value)` to `buf` (used for the user key of a map entry).
///
/// bincode's encoding of one type is self-delimiting, so `bincode(key)` is never a
/// proper prefix of another key's encoding and map prefix scans cannot leak entries of
/// one key into another.
pub fn append_bincode<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> bincode::Result<()> {
    bincode::serialize_into(&mut *buf, value)
}

/// Decodes `bytes` as exactly one `T`: trailing bytes are an error, because they mean
/// the bytes were written for another type.
///
/// The wire format is that of bincode's default functions (fixed-width little-endian
/// integers, no size limit); only the trailing-bytes check is stricter. Decoding works
/// on the slice, so a length prefix larger than the remaining bytes fails cleanly
/// instead of allocating.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    bincode::options()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize(bytes)
}

/// The 8 bytes of timestamp `ts` in a timer key: big-endian with the sign bit
/// flipped, so byte order is numeric order (`i64::MIN` is all zeros).
pub fn timer_timestamp_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`timer_timestamp_bytes`].
pub fn timer_timestamp_from_bytes(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The sled key prefix of every timer of `domain` in key partition `kp`.
pub fn timer_domain_prefix(kp: u32, domain: TimerDomain) -> [u8; STATE_PREFIX_LEN + 1] {
    let mut out = [0u8; STATE_PREFIX_LEN + 1];
    out[..STATE_PREFIX_LEN].copy_from_slice(&state_prefix(kp, TIMER_STATE_ID));
    out[STATE_PREFIX_LEN] = domain.tag();
    out
}

/// Replaces `buf` with the sled key of a timer,
/// `[kp BE][TIMER_STATE_ID BE][domain tag][timestamp (see timer_timestamp_bytes)][key]`,
/// where `encoded_key` is the bincode encoding of the record key. Within one key
/// partition and domain, sled orders timers by timestamp, then key bytes.
pub fn write_timer_key(
    buf: &mut Vec<u8>,
    kp: u32,
    domain: TimerDomain,
    timestamp: i64,
    encoded_key: &[u8],
) {
    buf.clear();
    buf.extend_from_slice(&timer_domain_prefix(kp, domain));
    buf.extend_from_slice(&timer_timestamp_bytes(timestamp));
    buf.extend_from_slice(encoded_key);
}

/// A timer's sled key taken apart by [`parse_timer_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKeyParts<'a> {
    /// The key partition.
    pub kp: u32,
    /// The timer's clock.
    pub domain: TimerDomain,
    /// When it fires.
    pub timestamp: i64,
    /// The bincode encoding of the record key.
    pub key: &'a [u8],
}

/// Takes apart a sled key written by [`write_timer_key`]; the error says why the key
/// is not one (too short, another state id, unknown domain tag).
pub fn parse_timer_key(sled_key: &[u8]) -> Result<TimerKeyParts<'_>, String> {
    if sled_key.len() < TIMER_KEY_HEADER_LEN {
        return Err(format!(
            "timer key of {} bytes is shorter than the {TIMER_KEY_HEADER_LEN}-byte header",
            sled_key.len()
        ));
    }
    let (head, key) = sled_key.split_at(TIMER_KEY_HEADER_LEN);
    let mut word = [0u8; 4];
    word.copy_from_slice(&head[..4]);
    let kp = u32::from_be_bytes(word);
    word.copy_from_slice(&head[4..8]);
    let id = u32::from_be_bytes(word);
    if id != TIMER_STATE_ID {
        return Err(format!(
            "state id {id:#010x} is not the timer state id {TIMER_STATE_ID:#010x}"
        ));
    }
    let domain = TimerDomain::from_tag(head[8])
        .ok_or_else(|| format!("unknown timer domain tag {}", head[8]))?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&head[9..]);
    Ok(TimerKeyParts {
        kp,
        domain,
        timestamp: timer_timestamp_from_bytes(ts),
        key,
    })
}

/// Replaces `out` with the value record
/// `[VALUE_FORMAT_VERSION][crc32 LE][expires_at_ms u64 LE][bincode(value)]`, where the
/// CRC covers everything after itself. `expires_at_ms == 0` means no TTL.
pub fn encode_value<T: Serialize + ?Sized>(
    value: &T,
    expires_at_ms: u64,
    out: &mut Vec<u8>,
) -> bincode::Result<()> {
    out.clear();
    out.push(VALUE_FORMAT_VERSION);
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&expires_at_ms.to_le_bytes());
    bincode::serialize_into(&mut *out, value)?;
    let crc = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Checks a value record's version and checksum and returns its expiry and payload
/// bytes, without decoding the payload.
pub fn open_value(record: &[u8]) -> Result<(u64, &[u8]), CodecError> {
    if record.len() < VALUE_HEADER_LEN {
        return Err(CodecError::Truncated { len: record.len() });
    }
    let (head, body) = record.split_at(5);
    if head[0] != VALUE_FORMAT_VERSION {
        return Err(CodecError::UnknownVersion { found: head[0] });
    }
    let stored = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    let (expiry, payload) = body.split_at(8);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(expiry);
    Ok((u64::from_le_bytes(exp), payload))
}

/// Checks and decodes a value record into `(expires_at_ms, value)`.
pub fn decode_value<T: DeserializeOwned>(record: &[u8]) -> Result<(u64, T), CodecError> {
    let (expires_at_ms, payload) = open_value(record)?;
    let value = decode_exact(payload).map_err(CodecError::Payload)?;
    Ok((expires_at_ms, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<i32>,
        score: Option<f64>,
        nested: BTreeMap<String, (u8, bool)>,
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<u64>(),
            ".{0,40}",
            proptest::collection::vec(any::<i32>(), 0..20),
            proptest::option::of(-1e12f64..1e12),
            proptest::collection::btree_map(".{0,8}", (any::<u8>(), any::<bool>()), 0..6),
        )
            .prop_map(|(id, name, tags, score, nested)| Sample {
                id,
                name,
                tags,
                score,
                nested,
            })
    }

    #[test]
    fn layout_is_fixed() {
        let mut out = Vec::new();
        encode_value(&0x0102_0304u32, 7, &mut out).unwrap();
        assert_eq!(out[0], 1);
        assert_eq!(&out[5..13], &7u64.to_le_bytes());
        assert_eq!(&out[13..], &[4, 3, 2, 1]);
        assert_eq!(&out[1..5], &crc32fast::hash(&out[5..]).to_le_bytes());

        let mut key = Vec::new();
        write_entry_key(&mut key, 3, 0xAABB_CCDD, &5u16).unwrap();
        assert_eq!(key, vec![0, 0, 0, 3, 0xAA, 0xBB, 0xCC, 0xDD, 5, 0]);
        assert_eq!(key_partition(&key), Some(3));
        assert_eq!(key_partition(&key[..3]), None);
        assert_eq!(state_id("count"), crc32fast::hash(b"count"));
    }

    #[test]
    fn rejects_unknown_version_truncation_and_foreign_types() {
        let mut out = Vec::new();
        encode_value(&"hello".to_string(), 0, &mut out).unwrap();
        let mut bad = out.clone();
        bad[0] = 2;
        assert!(matches!(
            open_value(&bad),
            Err(CodecError::UnknownVersion { found: 2 })
        ));
        assert!(matches!(
            open_value(&out[..12]),
            Err(CodecError::Truncated { len: 12 })
        ));
        // Intact record of another type: a u8 leaves trailing bytes, a u64 is too long.
        let err = decode_value::<u8>(&out).unwrap_err();
        assert!(matches!(err, CodecError::Payload(_)) && !err.is_corruption());
        let (_, s) = decode_value::<String>(&out).unwrap();
        assert_eq!(s, "hello");
        // A huge length prefix fails without trying to allocate it.
        encode_value(&u64::MAX, 0, &mut out).unwrap();
        assert!(matches!(
            decode_value::<String>(&out),
            Err(CodecError::Payload(_))
        ));
        assert!(matches!(
            decode_value::<Vec<u64>>(&out),
            Err(CodecError::Payload(_))
        ));
    }

    #[test]
    fn decode_matches_the_default_bincode_functions() {
        let v = (1u16, -2i64, "x".to_string(), vec![Some(3u8), None]);
        let bytes = bincode::serialize(&v).unwrap();
        assert_eq!(
            decode_exact::<(u16, i64, String, Vec<Option<u8>>)>(&bytes).unwrap(),
            v
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_exact::<(u16, i64, String, Vec<Option<u8>>)>(&longer).is_err());
        assert_eq!(bytes.len(), 2 + 8 + 8 + 1 + 8 + 1 + 1 + 1);
    }

    #[test]
    fn timer_state_id_is_the_crc_of_the_reserved_name() {
        assert_eq!(TIMER_STATE_ID, state_id(TIMER_STATE_NAME));
    }

    #[test]
    fn timer_key_layout_is_fixed() {
        let mut key = Vec::new();
        write_timer_key(&mut key, 3, TimerDomain::ProcessingTime, -2, &[9, 8]);
        let mut expected = vec![0, 0, 0, 3];
        expected.extend_from_slice(&TIMER_STATE_ID.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend_from_slice(&[9, 8]);
        assert_eq!(key, expected);
        assert_eq!(key_partition(&key), Some(3));
        assert_eq!(
            parse_timer_key(&key).unwrap(),
            TimerKeyParts {
                kp: 3,
                domain: TimerDomain::ProcessingTime,
                timestamp: -2,
                key: &[9, 8],
            }
        );
        assert_eq!(timer_timestamp_bytes(i64::MIN), [0; 8]);
        assert_eq!(timer_timestamp_bytes(i64::MAX), [0xff; 8]);
        assert!(parse_timer_key(&key[..TIMER_KEY_HEADER_LEN - 1]).is_err());
        let mut bad = key.clone();
        bad[8] = 2;
        assert!(parse_timer_key(&bad).unwrap_err().contains("domain tag 2"));
        bad = key.clone();
        bad[4] ^= 1;
        assert!(parse_timer_key(&bad).unwrap_err().contains("state id"));
    }

    proptest! {
        #[test]
        fn timer_timestamp_bytes_order_numerically(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), timer_timestamp_bytes(a).cmp(&timer_timestamp_bytes(b)));
            prop_assert_eq!(timer_timestamp_from_bytes(timer_timestamp_bytes(a)), a);
        }

        #[test]
        fn value_record_round_trips(v in sample(), expires in any::<u64>()) {
            let mut out = Vec::new();
            encode_value(&v, expires, &mut out).unwrap();
            let (e, back) = decode_value::<Sample>(&out).unwrap();
            prop_assert_eq!(e, expires);
            prop_assert_eq!(back, v);
        }

        #[test]
        fn any_single_flipped_byte_is_rejected(
            v in sample(),
            expires in any::<u64>(),
            pos in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let mut out = Vec::new();
            encode_value(&v, expires, &mut out).unwrap();
            let i = pos.index(out.len());
            out[i] ^= mask;
            let res = decode_value::<Sample>(&out);
            prop_assert!(
                matches!(res, Err(ref e) if e.is_corruption()),
                "flipping byte {} with {:#04x} was not detected: {:?}", i, mask, res
            );
        }
    }
}
