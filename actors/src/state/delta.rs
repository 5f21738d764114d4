//! Checkpoint deltas: the change of one key partition's stored state between two
//! epoch barriers, as bytes a snapshot file can hold.
//!
//! sled is only a local spill area; the durable truth of a stage's keyed state is a
//! chain of deltas per key partition in the snapshot store: a full image followed by
//! the deltas captured at later barriers ([`KeyedState::take_delta`]). Recovery folds
//! each chain and writes the result into a fresh tree
//! ([`StateStore::restore_stage`]); compaction folds a chain into one image
//! ([`merge_chain`]).
//!
//! # What a delta describes
//!
//! A delta says how to turn the sled content of one key partition at one barrier into
//! its content at the next, in terms of raw sled bytes:
//!
//! 1. first, *prefix deletes*: every key starting with one of these byte strings is
//!    removed (a cleared map state);
//! 2. then *point operations*, applied in order: a put stores a value record under a
//!    key, exactly the bytes sled would hold ([`codec::encode_value`]); a delete
//!    removes a key. A later operation on the same key wins.
//!
//! A *full image* is a delta with no prefix deletes and only puts, applied to an
//! empty partition. Any delta applied to an empty partition yields an image, which is
//! what [`merge_chain`] computes; its images list each key once, in key order.
//!
//! # Encoding (version 1)
//!
//! ```text
//! [version u8 = 1][crc32 LE u32][key partition u32 BE][body length u64 LE][body]
//! body := prefix-delete* point*
//! prefix-delete := 0x01 varint(len) bytes
//! point         := 0x02 varint(len) key varint(len) value    (put)
//!                | 0x03 varint(len) key                      (delete)
//! ```
//!
//! The CRC-32 (IEEE) covers everything after itself. Lengths are unsigned LEB128
//! varints (at most 10 bytes, no overlong forms). [`Delta::decode`] checks the
//! version, the checksum, the body length, every record's framing, that every key and
//! prefix lies in the header's key partition, that no prefix delete follows a point,
//! and that every put carries an intact value record; anything else is a
//! [`StateError::Corrupt`] saying what is wrong, never a panic.
//!
//! [`KeyedState::take_delta`]: super::KeyedState::take_delta
//! [`StateStore::restore_stage`]: super::StateStore::restore_stage

use super::codec;
use super::error::StateError;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Version byte of the delta encoding written by this code.
pub const DELTA_FORMAT_VERSION: u8 = 1;

/// Length of a delta's header: version (1) + CRC-32 (4) + key partition (4) + body
/// length (8).
pub const DELTA_HEADER_LEN: usize = 1 + 4 + 4 + 8;

/// Record tag of a prefix delete.
const TAG_PREFIX_DELETE: u8 = 1;
/// Record tag of a point put.
const TAG_PUT: u8 = 2;
/// Record tag of a point delete.
const TAG_DELETE: u8 = 3;

/// Most bytes of an unsigned LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// The sled content of one key partition, borrowed from the deltas it was folded
/// from: key to value record, in key order.
pub(crate) type Image<'a> = BTreeMap<&'a [u8], &'a [u8]>;

/// One point operation of a decoded delta: a key and its new value record, or `None`
/// for a delete.
pub type Point<'a> = (&'a [u8], Option<&'a [u8]>);

/// A decoded delta, borrowing its keys and values from the encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta<'a> {
    /// The key partition every key and prefix lies in.
    kp: u32,
    /// Prefixes whose keys are all deleted first.
    prefix_deletes: Vec<&'a [u8]>,
    /// Puts and deletes, applied in order after the prefix deletes.
    points: Vec<Point<'a>>,
}

impl<'a> Delta<'a> {
    /// Checks and decodes an encoded delta (see the [module docs](self) for what is
    /// checked). Errors are [`StateError::Corrupt`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StateError> {
        parse(bytes).map_err(|reason| StateError::Corrupt {
            what: "state delta".into(),
            reason,
        })
    }

    /// The key partition the delta belongs to.
    pub fn kp(&self) -> u32 {
        self.kp
    }

    /// The prefixes deleted before the points are applied.
    pub fn prefix_deletes(&self) -> &[&'a [u8]] {
        &self.prefix_deletes
    }

    /// The puts (`Some(value record)`) and deletes (`None`), in application order.
    pub fn points(&self) -> &[Point<'a>] {
        &self.points
    }

    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        self.prefix_deletes.is_empty() && self.points.is_empty()
    }

    /// Whether the delta has the shape of a full image: no prefix deletes, no point
    /// deletes.
    pub fn is_image(&self) -> bool {
        self.prefix_deletes.is_empty() && self.points.iter().all(|(_, v)| v.is_some())
    }

    /// Applies the delta to `image`, the sled content of its key partition as a sorted
    /// map.
    pub(crate) fn apply_to(&self, image: &mut Image<'a>) {
        for prefix in &self.prefix_deletes {
            let doomed: Vec<&[u8]> = image
                .range::<[u8], _>((Bound::Included(*prefix), Bound::Unbounded))
                .map(|(k, _)| *k)
                .take_while(|k| k.starts_with(prefix))
                .collect();
            for key in doomed {
                image.remove(key);
            }
        }
        for (key, value) in &self.points {
            match value {
                Some(v) => {
                    image.insert(key, v);
                }
                None => {
                    image.remove(key);
                }
            }
        }
    }
}

/// Folds a chain (a full image, then the deltas captured after it, oldest first) into
/// one full image, for compaction: the result, applied to an empty key partition,
/// gives the same content as the chain applied in order.
///
/// Every element is checked as by [`Delta::decode`], and all must belong to the same
/// key partition; an empty chain is an error too (it names no key partition). The
/// output lists each stored key once, in key order.
pub fn merge_chain(chain: &[&[u8]]) -> Result<Vec<u8>, StateError> {
    let (kp, image) = fold_chain(chain, None, |i, n| {
        format!("element {} of {n} of a delta chain", i + 1)
    })?;
    let size: usize = image.iter().map(|(k, v)| k.len() + v.len() + 12).sum();
    let mut out = DeltaWriter::new(kp, std::iter::empty(), size);
    for (key, value) in &image {
        out.put(key, value);
    }
    Ok(out.finish())
}

/// Decodes and applies every element of `chain` in order, starting from an empty key
/// partition, and returns the key partition and the resulting sled content.
///
/// With `expected_kp`, every element must belong to it; without, all must belong to
/// the first element's. `what(i, n)` names element `i` of `n` in error messages.
pub(crate) fn fold_chain<'a>(
    chain: &[&'a [u8]],
    expected_kp: Option<u32>,
    what: impl Fn(usize, usize) -> String,
) -> Result<(u32, Image<'a>), StateError> {
    let n = chain.len();
    let mut kp = expected_kp;
    let mut image = BTreeMap::new();
    for (i, bytes) in chain.iter().enumerate() {
        let delta = parse(bytes).map_err(|reason| StateError::Corrupt {
            what: what(i, n),
            reason,
        })?;
        match kp {
            Some(k) if k != delta.kp => {
                return Err(StateError::Corrupt {
                    what: what(i, n),
                    reason: format!(
                    "it belongs to key partition {}, but the chain is that of key partition {k}",
                    delta.kp
                ),
                })
            }
            Some(_) => {}
            None => kp = Some(delta.kp),
        }
        delta.apply_to(&mut image);
    }
    match kp {
        Some(kp) => Ok((kp, image)),
        None => Err(StateError::Corrupt {
            what: "delta chain".into(),
            reason: "the chain is empty: it has no full image to start from".into(),
        }),
    }
}

/// Appends the unsigned LEB128 encoding of `v` to `out`.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-prefixed byte string.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Point records encoded ahead of the prefix deletes they will follow: what
/// [`KeyedState::take_delta`](super::KeyedState::take_delta) collects per key
/// partition while it walks the caches, before it knows every cleared map.
#[derive(Default)]
pub(crate) struct PointRecords {
    /// The encoded records, in order.
    bytes: Vec<u8>,
    /// How many records.
    len: usize,
}

impl PointRecords {
    /// Appends a put of `value` (a value record) under `key`.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.push(TAG_PUT);
        put_bytes(&mut self.bytes, key);
        put_bytes(&mut self.bytes, value);
        self.len += 1;
    }

    /// Appends a delete of `key`.
    pub(crate) fn delete(&mut self, key: &[u8]) {
        self.bytes.push(TAG_DELETE);
        put_bytes(&mut self.bytes, key);
        self.len += 1;
    }

    /// How many records.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Writes one encoded delta: the prefix deletes are given up front, so the order the
/// format requires holds by construction; points are appended after them.
pub(crate) struct DeltaWriter {
    /// Header and records so far; the CRC and body length are filled in by
    /// [`finish`](Self::finish).
    out: Vec<u8>,
}

impl DeltaWriter {
    /// A delta of key partition `kp` starting with the given prefix deletes, with
    /// room for about `capacity` bytes of records.
    pub(crate) fn new<'p>(
        kp: u32,
        prefixes: impl IntoIterator<Item = &'p [u8]>,
        capacity: usize,
    ) -> Self {
        let mut out = Vec::with_capacity(DELTA_HEADER_LEN + capacity);
        out.push(DELTA_FORMAT_VERSION);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&kp.to_be_bytes());
        out.extend_from_slice(&[0; 8]);
        for prefix in prefixes {
            out.push(TAG_PREFIX_DELETE);
            put_bytes(&mut out, prefix);
        }
        Self { out }
    }

    /// Appends a put of `value` (a value record) under `key`.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) {
        self.out.push(TAG_PUT);
        put_bytes(&mut self.out, key);
        put_bytes(&mut self.out, value);
    }

    /// Appends a delete of `key`.
    pub(crate) fn delete(&mut self, key: &[u8]) {
        self.out.push(TAG_DELETE);
        put_bytes(&mut self.out, key);
    }

    /// Appends records encoded earlier, after those written so far.
    pub(crate) fn append(&mut self, records: &PointRecords) {
        self.out.extend_from_slice(&records.bytes);
    }

    /// Fills in the body length and the checksum and returns the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let body = (self.out.len() - DELTA_HEADER_LEN) as u64;
        self.out[9..DELTA_HEADER_LEN].copy_from_slice(&body.to_le_bytes());
        let crc = crc32fast::hash(&self.out[5..]);
        self.out[1..5].copy_from_slice(&crc.to_le_bytes());
        self.out
    }
}

/// A reader over a delta's body that reports where and why framing is broken.
struct Reader<'a> {
    /// The body.
    bytes: &'a [u8],
    /// Offset of the next unread byte in `bytes`.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Offset in the whole delta of the next unread byte, for error messages.
    fn offset(&self) -> usize {
        DELTA_HEADER_LEN + self.pos
    }

    /// Reads one byte.
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| format!("record cut short at byte {}", self.offset()))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads an unsigned LEB128 varint, rejecting overlong and overflowing forms.
    fn varint(&mut self) -> Result<u64, String> {
        let start = self.offset();
        let mut v: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if i == MAX_VARINT_LEN - 1 && bits > 1 {
                return Err(format!("length at byte {start} overflows 64 bits"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(format!("length at byte {start} has an overlong encoding"));
                }
                return Ok(v);
            }
        }
        Err(format!("length at byte {start} overflows 64 bits"))
    }

    /// Reads a length-prefixed byte string.
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let at = self.offset();
        let len = self.varint()?;
        let left = self.bytes.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= left)
            .ok_or_else(|| {
                format!("length {len} at byte {at} runs past the end ({left} bytes left)")
            })?;
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    /// Whether everything was read.
    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// Checks that `key` (at byte `at`) lies in key partition `kp`.
fn check_kp(kind: &str, key: &[u8], at: usize, kp: u32) -> Result<(), String> {
    match codec::key_partition(key) {
        Some(k) if k == kp => Ok(()),
        Some(k) => Err(format!(
            "{kind} at byte {at} lies in key partition {k}, not in the delta's key partition {kp}"
        )),
        None => Err(format!(
            "{kind} at byte {at} is {} bytes, shorter than the {}-byte key partition prefix",
            key.len(),
            codec::PARTITION_PREFIX_LEN
        )),
    }
}

/// Decodes a delta, returning why it is rejected.
fn parse(bytes: &[u8]) -> Result<Delta<'_>, String> {
    if bytes.len() < DELTA_HEADER_LEN {
        return Err(format!(
            "delta is {} bytes, shorter than the {DELTA_HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    if bytes[0] != DELTA_FORMAT_VERSION {
        return Err(format!(
            "unknown delta format version {} (expected {DELTA_FORMAT_VERSION})",
            bytes[0]
        ));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let computed = crc32fast::hash(&bytes[5..]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let kp = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[9..DELTA_HEADER_LEN]);
    let declared = u64::from_le_bytes(len);
    let body = &bytes[DELTA_HEADER_LEN..];
    if declared != body.len() as u64 {
        return Err(format!(
            "body is {} bytes, but the header says {declared}",
            body.len()
        ));
    }
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let mut delta = Delta {
        kp,
        prefix_deletes: Vec::new(),
        points: Vec::new(),
    };
    while !r.at_end() {
        let at = r.offset();
        match r.byte()? {
            TAG_PREFIX_DELETE => {
                if !delta.points.is_empty() {
                    return Err(format!(
                        "prefix delete at byte {at} follows a point operation"
                    ));
                }
                let prefix = r.bytes()?;
                check_kp("prefix delete", prefix, at, kp)?;
                delta.prefix_deletes.push(prefix);
            }
            TAG_PUT => {
                let key = r.bytes()?;
                check_kp("key", key, at, kp)?;
                let value = r.bytes()?;
                codec::open_value(value)
                    .map_err(|e| format!("value of the put at byte {at}: {e}"))?;
                delta.points.push((key, Some(value)));
            }
            TAG_DELETE => {
                let key = r.bytes()?;
                check_kp("key", key, at, kp)?;
                delta.points.push((key, None));
            }
            tag => return Err(format!("unknown record tag {tag} at byte {at}")),
        }
    }
    Ok(delta)
}

/// Changes of one key partition written to sled since the last capture, kept until
/// the next [`KeyedState::take_delta`](super::KeyedState::take_delta) puts them into
/// its delta: what flushes and purges wrote on behalf of entries that then left the
/// cache (or became clean), so they would otherwise be forgotten.
///
/// Composes like the deltas it feeds: a prefix delete drops the points recorded
/// under it, a point replaces the previous one of the same key. So it holds at most
/// one point per key, and emptying it at each capture bounds its memory by what
/// changed in one epoch.
#[derive(Default, Debug)]
pub(crate) struct DeltaLog {
    /// Prefix deletes; no element is a prefix of another.
    prefixes: BTreeSet<sled::IVec>,
    /// The latest put (`Some`) or delete (`None`) of each key, after the prefixes.
    points: BTreeMap<sled::IVec, Option<sled::IVec>>,
}

impl DeltaLog {
    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.points.is_empty()
    }

    /// How many prefix deletes and points are held.
    pub(crate) fn len(&self) -> usize {
        self.prefixes.len() + self.points.len()
    }

    /// Records that every key starting with `prefix` was deleted, after everything
    /// recorded so far.
    pub(crate) fn delete_prefix(&mut self, prefix: &[u8]) {
        let doomed: Vec<sled::IVec> = self
            .points
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for key in doomed {
            self.points.remove(&key);
        }
        // The set is prefix-free, so the only element that can be a prefix of
        // `prefix` is the greatest one not above it.
        let covered = self
            .prefixes
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(prefix)))
            .next_back()
            .is_some_and(|p| prefix.starts_with(p));
        if covered {
            return;
        }
        let longer: Vec<sled::IVec> = self
            .prefixes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|p| p.starts_with(prefix))
            .cloned()
            .collect();
        for p in longer {
            self.prefixes.remove(&p);
        }
        self.prefixes.insert(prefix.into());
    }

    /// Records a put (`Some`) or delete (`None`) of `key`, after everything recorded so
    /// far.
    pub(crate) fn point(&mut self, key: sled::IVec, value: Option<sled::IVec>) {
        self.points.insert(key, value);
    }

    /// Writes the log as a delta of `kp` followed by `later` (changes made after the
    /// logged ones, with prefix deletes `later_prefixes`), and empties the log.
    pub(crate) fn drain_into_delta(
        &mut self,
        kp: u32,
        later_prefixes: &[Vec<u8>],
        later: &PointRecords,
    ) -> Vec<u8> {
        for p in later_prefixes {
            self.delete_prefix(p);
        }
        let log = std::mem::take(self);
        // Points of the log are mostly small: a rough size saves regrowing the buffer.
        let capacity = later.bytes.len() + 64 * log.points.len();
        let mut out = DeltaWriter::new(kp, log.prefixes.iter().map(|p| &p[..]), capacity);
        for (key, value) in &log.points {
            match value {
                Some(v) => out.put(key, v),
                None => out.delete(key),
            }
        }
        out.append(later);
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A value record holding `v`.
    fn rec(v: u8) -> Vec<u8> {
        let mut out = Vec::new();
        codec::encode_value(&v, 0, &mut out).unwrap();
        out
    }

    /// A key of partition `kp` with the given tail.
    fn key(kp: u32, tail: &[u8]) -> Vec<u8> {
        let mut k = kp.to_be_bytes().to_vec();
        k.extend_from_slice(tail);
        k
    }

    /// Encodes a delta from plain parts.
    fn encode(kp: u32, prefixes: &[Vec<u8>], points: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
        let mut w = DeltaWriter::new(kp, prefixes.iter().map(|p| &p[..]), 0);
        for (k, v) in points {
            match v {
                Some(v) => w.put(k, v),
                None => w.delete(k),
            }
        }
        w.finish()
    }

    /// Recomputes the checksum after a deliberate edit.
    fn reseal(bytes: &mut [u8]) {
        let crc = crc32fast::hash(&bytes[5..]);
        bytes[1..5].copy_from_slice(&crc.to_le_bytes());
    }

    fn corrupt_reason(bytes: &[u8]) -> String {
        match Delta::decode(bytes) {
            Err(StateError::Corrupt { reason, .. }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn layout_is_fixed() {
        let bytes = encode(
            7,
            &[key(7, &[1])],
            &[(key(7, &[2]), Some(rec(9))), (key(7, &[3]), None)],
        );
        assert_eq!(bytes[0], DELTA_FORMAT_VERSION);
        assert_eq!(&bytes[5..9], &[0, 0, 0, 7]);
        let body = (bytes.len() - DELTA_HEADER_LEN) as u64;
        assert_eq!(&bytes[9..17], &body.to_le_bytes());
        assert_eq!(&bytes[1..5], &crc32fast::hash(&bytes[5..]).to_le_bytes());
        let mut expected = vec![TAG_PREFIX_DELETE, 5, 0, 0, 0, 7, 1];
        expected.extend_from_slice(&[TAG_PUT, 5, 0, 0, 0, 7, 2, 14]);
        expected.extend_from_slice(&rec(9));
        expected.extend_from_slice(&[TAG_DELETE, 5, 0, 0, 0, 7, 3]);
        assert_eq!(&bytes[DELTA_HEADER_LEN..], &expected[..]);
        let d = Delta::decode(&bytes).unwrap();
        assert_eq!(d.kp(), 7);
        assert_eq!(d.prefix_deletes(), &[&key(7, &[1])[..]]);
        assert_eq!(d.points().len(), 2);
        assert!(!d.is_image() && !d.is_empty());
        let empty = encode(3, &[], &[]);
        assert_eq!(empty.len(), DELTA_HEADER_LEN);
        let d = Delta::decode(&empty).unwrap();
        assert!(d.is_empty() && d.is_image());
    }

    #[test]
    fn varints_round_trip_and_reject_bad_forms() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader {
                bytes: &out,
                pos: 0,
            };
            assert_eq!(r.varint().unwrap(), v);
            assert!(r.at_end());
        }
        let bad: [&[u8]; 4] = [
            &[0x80, 0x00],                                                 // overlong zero
            &[0xff; 10], // continues past 10 bytes
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // 65 bits
            &[0x80],     // cut short
        ];
        for b in bad {
            let mut r = Reader { bytes: b, pos: 0 };
            assert!(r.varint().is_err(), "{b:?}");
        }
    }

    #[test]
    fn damage_is_reported_with_what_is_wrong() {
        let good = encode(2, &[key(2, &[1])], &[(key(2, &[5]), Some(rec(1)))]);
        assert!(corrupt_reason(&good[..10]).contains("shorter than the 17-byte header"));
        let mut b = good.clone();
        b[0] = 9;
        assert!(corrupt_reason(&b).contains("unknown delta format version 9"));
        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(corrupt_reason(&b).contains("checksum mismatch"));
        // A truncated body with a recomputed checksum: the length field catches it.
        let mut b = good[..good.len() - 3].to_vec();
        reseal(&mut b);
        assert!(corrupt_reason(&b).contains("but the header says"));
        // Well-sealed but malformed records.
        let sealed = |kp: u32, body: &[u8]| {
            let mut b = encode(kp, &[], &[]);
            b.extend_from_slice(body);
            let len = body.len() as u64;
            b[9..17].copy_from_slice(&len.to_le_bytes());
            reseal(&mut b);
            b
        };
        assert!(corrupt_reason(&sealed(2, &[7])).contains("unknown record tag 7 at byte 17"));
        assert!(corrupt_reason(&sealed(2, &[TAG_DELETE, 9, 0, 0])).contains("runs past the end"));
        assert!(corrupt_reason(&sealed(2, &[TAG_PUT])).contains("cut short"));
        assert!(corrupt_reason(&sealed(2, &[TAG_DELETE, 2, 0, 0])).contains("shorter than"));
        let mut foreign = vec![TAG_DELETE, 4];
        foreign.extend_from_slice(&3u32.to_be_bytes());
        assert!(corrupt_reason(&sealed(2, &foreign)).contains("lies in key partition 3"));
        let mut late_prefix = vec![TAG_DELETE, 4, 0, 0, 0, 2, TAG_PREFIX_DELETE, 4];
        late_prefix.extend_from_slice(&2u32.to_be_bytes());
        assert!(corrupt_reason(&sealed(2, &late_prefix)).contains("follows a point"));
        let mut bad_value = vec![TAG_PUT, 4, 0, 0, 0, 2, 3, 1, 2, 3];
        assert!(corrupt_reason(&sealed(2, &bad_value)).contains("value of the put"));
        bad_value[7] = 1;
        assert!(Delta::decode(&sealed(2, &bad_value)).is_err());
    }

    #[test]
    fn merge_chain_checks_partitions_and_emptiness() {
        let a = encode(1, &[], &[(key(1, &[1]), Some(rec(1)))]);
        let b = encode(2, &[], &[(key(2, &[1]), Some(rec(1)))]);
        let err = merge_chain(&[&a, &b]).unwrap_err();
        assert!(
            matches!(err, StateError::Corrupt { ref what, ref reason }
                if what.contains("element 2 of 2") && reason.contains("key partition 2")),
            "{err}"
        );
        let err = merge_chain(&[]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let mut bad = a.clone();
        bad[20] ^= 1;
        let err = merge_chain(&[&a, &bad]).unwrap_err();
        assert!(err.to_string().contains("element 2 of 2"), "{err}");
    }

    #[test]
    fn merge_applies_prefix_deletes_before_points() {
        let base = encode(
            0,
            &[],
            &[
                (key(0, &[1, 1]), Some(rec(1))),
                (key(0, &[1, 2]), Some(rec(2))),
                (key(0, &[2]), Some(rec(3))),
            ],
        );
        let delta = encode(
            0,
            &[key(0, &[1])],
            &[
                (key(0, &[1, 2]), Some(rec(4))),
                (key(0, &[2]), None),
                (key(0, &[2]), Some(rec(5))),
            ],
        );
        let merged = merge_chain(&[&base, &delta]).unwrap();
        let d = Delta::decode(&merged).unwrap();
        assert!(d.is_image());
        assert_eq!(
            d.points(),
            &[
                (&key(0, &[1, 2])[..], Some(&rec(4)[..])),
                (&key(0, &[2])[..], Some(&rec(5)[..]))
            ]
        );
    }

    /// Applies plain parts to a model map, sequentially.
    fn apply_model(
        model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
        prefixes: &[Vec<u8>],
        points: &[(Vec<u8>, Option<Vec<u8>>)],
    ) {
        for p in prefixes {
            model.retain(|k, _| !k.starts_with(p));
        }
        for (k, v) in points {
            match v {
                Some(v) => model.insert(k.clone(), v.clone()),
                None => model.remove(k),
            };
        }
    }

    /// Keys of partition 5 drawn from a small alphabet, so prefixes and collisions
    /// are common.
    fn small_key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..3, 0..4).prop_map(|t| key(5, &t))
    }

    fn point() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
        (small_key(), proptest::option::of(any::<u8>().prop_map(rec)))
    }

    /// A delta as plain parts: prefix deletes and points.
    type Parts = (Vec<Vec<u8>>, Vec<(Vec<u8>, Option<Vec<u8>>)>);

    fn parts() -> impl Strategy<Value = Parts> {
        (
            proptest::collection::vec(small_key(), 0..3),
            proptest::collection::vec(point(), 0..12),
        )
    }

    /// One step of a log model: a prefix delete or a point.
    #[derive(Clone, Debug)]
    enum LogOp {
        Prefix(Vec<u8>),
        Point(Vec<u8>, Option<Vec<u8>>),
    }

    fn log_op() -> impl Strategy<Value = LogOp> {
        prop_oneof![
            1 => small_key().prop_map(LogOp::Prefix),
            4 => point().prop_map(|(k, v)| LogOp::Point(k, v)),
        ]
    }

    proptest! {
        #[test]
        fn deltas_round_trip(p in parts()) {
            let bytes = encode(5, &p.0, &p.1);
            let d = Delta::decode(&bytes).unwrap();
            prop_assert_eq!(d.kp(), 5);
            let prefixes: Vec<&[u8]> = p.0.iter().map(|x| &x[..]).collect();
            prop_assert_eq!(d.prefix_deletes(), &prefixes[..]);
            let points: Vec<Point<'_>> = p.1.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
            prop_assert_eq!(d.points(), &points[..]);
        }

        #[test]
        fn any_damage_is_an_error_never_a_panic(
            p in parts(),
            pos in any::<prop::sample::Index>(),
            mask in 1u8..=255,
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode(5, &p.0, &p.1);
            let mut flipped = bytes.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= mask;
            prop_assert!(Delta::decode(&flipped).is_err(), "flip of byte {} undetected", i);
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(Delta::decode(short).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Delta::decode(&bytes);
            let mut sealed = bytes.clone();
            if sealed.len() >= DELTA_HEADER_LEN {
                sealed[0] = DELTA_FORMAT_VERSION;
                let body = (sealed.len() - DELTA_HEADER_LEN) as u64;
                sealed[9..17].copy_from_slice(&body.to_le_bytes());
                reseal(&mut sealed);
                let _ = Delta::decode(&sealed);
            }
        }

        /// Folding a chain equals applying its elements one after another, and
        /// merging part of a chain first changes nothing.
        #[test]
        fn merge_chain_is_sequential_application(
            chain in proptest::collection::vec(parts(), 1..5),
            split in any::<prop::sample::Index>(),
        ) {
            let encoded: Vec<Vec<u8>> = chain.iter().map(|(p, q)| encode(5, p, q)).collect();
            let refs: Vec<&[u8]> = encoded.iter().map(|e| &e[..]).collect();
            let mut model = BTreeMap::new();
            for (p, q) in &chain {
                apply_model(&mut model, p, q);
            }
            let merged = merge_chain(&refs).unwrap();
            let image = Delta::decode(&merged).unwrap();
            prop_assert!(image.is_image());
            let got: BTreeMap<Vec<u8>, Vec<u8>> = image
                .points()
                .iter()
                .map(|(k, v)| (k.to_vec(), v.unwrap_or_default().to_vec()))
                .collect();
            prop_assert_eq!(got.len(), image.points().len(), "keys are unique");
            prop_assert_eq!(&got, &model);
            // Compacting a prefix of the chain first gives the same image.
            let at = split.index(refs.len()) + 1;
            let head = merge_chain(&refs[..at]).unwrap();
            let mut rest: Vec<&[u8]> = vec![&head];
            rest.extend_from_slice(&refs[at..]);
            prop_assert_eq!(merge_chain(&rest).unwrap(), merged);
        }

        /// A log drained into a delta (with later changes appended) has the effect of
        /// every recorded operation applied in order, then the later ones.
        #[test]
        fn delta_log_composes_like_sequential_application(
            base in proptest::collection::vec(point(), 0..10),
            ops in proptest::collection::vec(log_op(), 0..20),
            later in parts(),
        ) {
            let mut model = BTreeMap::new();
            apply_model(&mut model, &[], &base);
            let base_bytes = encode(5, &[], &base);
            let mut log = DeltaLog::default();
            for op in &ops {
                match op {
                    LogOp::Prefix(p) => {
                        log.delete_prefix(p);
                        apply_model(&mut model, std::slice::from_ref(p), &[]);
                    }
                    LogOp::Point(k, v) => {
                        log.point(k[..].into(), v.as_deref().map(Into::into));
                        apply_model(&mut model, &[], &[(k.clone(), v.clone())]);
                    }
                }
            }
            apply_model(&mut model, &later.0, &later.1);
            let mut records = PointRecords::default();
            for (k, v) in &later.1 {
                match v {
                    Some(v) => records.put(k, v),
                    None => records.delete(k),
                }
            }
            prop_assert_eq!(records.len(), later.1.len());
            let delta = log.drain_into_delta(5, &later.0, &records);
            prop_assert!(log.is_empty());
            let (_, image) = fold_chain(&[&base_bytes, &delta], Some(5), |i, _| i.to_string()).unwrap();
            let got: BTreeMap<Vec<u8>, Vec<u8>> =
                image.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(got, model);
            // The decoded prefix set is prefix-free.
            let decoded = Delta::decode(&delta).unwrap();
            let ps = decoded.prefix_deletes();
            for a in ps {
                for b in ps {
                    prop_assert!(a == b || !b.starts_with(a));
                }
            }
        }
    }
}
