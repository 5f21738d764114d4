//! Poison records: a record that makes an operator fail on K consecutive replays goes
//! to the dead-letter output with the error instead of restarting the job forever.
//!
//! Normal runs pay nothing. After an operator fails, the next attempt runs that stage
//! *suspiciously*: before each record it notes the record's identity in a slot the
//! node can read after a failure. When the same identity fails `poison.replays` times
//! in a row, the following attempts divert that record to the dead letters (with the
//! error) and process the rest.
//!
//! A record's identity is its stage, key, timestamp and its ordinal among the records
//! of that key the partition handled since the restored epoch. Values need no trait
//! bound for this; the price is that the ordinal is only stable across replays when
//! the key's records arrive in the same order each time — true when a key's records
//! come from one source split (a Kafka partition keyed by the same key, a file split),
//! not when one key is fed by several splits that interleave differently per replay.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::connector::{DeadLetter, DeadLetters};

/// The record a suspicious partition is processing right now.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub fingerprint: u64,
    pub shown: String,
}

/// One suspicious partition's view: which records are poisoned, where to note the
/// record in flight, and where poisoned records go.
pub(crate) struct Suspect {
    stage: Arc<str>,
    partition: u32,
    poisoned: Arc<HashMap<u64, String>>,
    in_flight: InFlightSlot,
    dead_letters: DeadLetters,
    /// Records seen per key (by the key's description) since the attempt started.
    ordinals: HashMap<String, u64>,
}

/// FNV-1a over the stage name and the record's description.
pub(crate) fn fingerprint(stage: &str, shown: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stage.bytes().chain([0u8]).chain(shown.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Suspect {
    /// Notes the record of `key` at `ts` as in flight, or, when it is poisoned, sends
    /// it to the dead letters and returns `false` (skip it).
    pub fn admit<K: std::fmt::Debug>(&mut self, key: &K, ts: i64) -> bool {
        let key = format!("{key:?}");
        let ordinal = self.ordinals.entry(key.clone()).or_insert(0);
        *ordinal += 1;
        let time = if ts == crate::record::NO_TIMESTAMP {
            String::new()
        } else {
            format!(", timestamp {ts}")
        };
        let shown =
            format!("key {key}{time}, record #{ordinal} of this key since the restored epoch");
        let fp = fingerprint(&self.stage, &shown);
        if let Some(error) = self.poisoned.get(&fp) {
            self.dead_letters.send(DeadLetter {
                origin: self.stage.to_string(),
                position: format!("partition {}", self.partition),
                reason: format!(
                    "poison record: it failed the operator on consecutive replays: {error}"
                ),
                record: shown,
                ..Default::default()
            });
            return false;
        }
        if let Ok(mut slot) = self.in_flight.lock() {
            *slot = Some(InFlight {
                fingerprint: fp,
                shown,
            });
        }
        true
    }

    /// The records of a handled batch all went through.
    pub fn clear(&self) {
        if let Ok(mut slot) = self.in_flight.lock() {
            *slot = None;
        }
    }
}

impl Suspect {
    /// Makes the dead letters of the poison records diverted so far durable (at a
    /// checkpoint barrier, before the epoch that skipped them can complete).
    pub fn flush_dead_letters(&self) -> Result<(), crate::connector::dead_letter::DeadLetterError> {
        self.dead_letters.flush()
    }
}

/// Where a suspicious partition notes the record in flight.
type InFlightSlot = Arc<Mutex<Option<InFlight>>>;

/// The node's poison bookkeeping across the attempts of one run.
pub(crate) struct PoisonBoard {
    enabled: bool,
    replays: u32,
    dead_letters: DeadLetters,
    /// Stage names run suspiciously.
    suspects: HashSet<String>,
    /// Fingerprint -> the error it caused, once poisoned.
    poisoned: Arc<HashMap<u64, String>>,
    /// The current run of consecutive failures: fingerprint and count.
    streak: Option<(u64, u32)>,
    /// In-flight slots of this attempt's suspicious partitions.
    slots: Mutex<HashMap<(String, u32), InFlightSlot>>,
}

impl PoisonBoard {
    pub fn new(enabled: bool, replays: u32, dead_letters: DeadLetters) -> Self {
        PoisonBoard {
            enabled,
            replays: replays.max(1),
            dead_letters,
            suspects: HashSet::new(),
            poisoned: Arc::default(),
            streak: None,
            slots: Mutex::default(),
        }
    }

    /// Whether a failing record is being identified (a failure happened and no
    /// attempt has passed it yet): epochs are then held off so that replays start
    /// from the same epoch and count records alike.
    pub fn suspicious(&self) -> bool {
        self.enabled && !self.suspects.is_empty()
    }

    /// The suspect view for partition `partition` of `stage`, if that stage runs
    /// suspiciously in this attempt.
    pub fn suspect(&self, stage: &str, partition: u32) -> Option<Suspect> {
        if !self.enabled || !self.suspects.contains(stage) {
            return None;
        }
        let slot = Arc::new(Mutex::new(None));
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert((stage.to_string(), partition), slot.clone());
        }
        Some(Suspect {
            stage: Arc::from(stage),
            partition,
            poisoned: self.poisoned.clone(),
            in_flight: slot,
            dead_letters: self.dead_letters.clone(),
            ordinals: HashMap::new(),
        })
    }

    /// Partition `partition` of `stage` failed with `error`: the stage runs
    /// suspiciously from now on; the record in flight (if known) extends or starts a
    /// streak, and becomes poisoned once its streak reaches the replay limit.
    pub fn on_failure(&mut self, stage: &str, partition: u32, error: &str) {
        if !self.enabled {
            return;
        }
        self.suspects.insert(stage.to_string());
        let in_flight = self.slots.lock().ok().and_then(|mut slots| {
            let slot = slots.remove(&(stage.to_string(), partition))?;
            let taken = slot.lock().ok()?.take();
            taken
        });
        if let Ok(mut slots) = self.slots.lock() {
            slots.clear();
        }
        let Some(record) = in_flight else {
            self.streak = None;
            return;
        };
        let count = match self.streak {
            Some((fp, n)) if fp == record.fingerprint => n + 1,
            _ => 1,
        };
        self.streak = Some((record.fingerprint, count));
        if count >= self.replays {
            tracing::warn!(stage, partition, record = %record.shown, replays = count, %error,
                "poison record: it failed on consecutive replays; it goes to the dead letters from now on");
            let mut poisoned = (*self.poisoned).clone();
            poisoned.insert(record.fingerprint, error.to_string());
            self.poisoned = Arc::new(poisoned);
            self.streak = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_failing_on_k_consecutive_replays_is_poisoned() {
        let mut board = PoisonBoard::new(true, 2, DeadLetters::to_log());
        assert!(
            board.suspect("s", 0).is_none(),
            "not suspicious before a failure"
        );
        board.on_failure("s", 0, "boom"); // the first play: record unknown
        for replay in 1..=2 {
            let mut s = board.suspect("s", 0).expect("suspicious after a failure");
            assert!(s.admit(&"bad", 0), "replay {replay}: not yet poisoned");
            board.on_failure("s", 0, "boom");
        }
        let mut s = board.suspect("s", 0).unwrap();
        assert!(!s.admit(&"bad", 0), "poisoned after 2 consecutive replays");
        assert!(s.admit(&"good", 0));
        assert_eq!(board.dead_letters.count(), 1);
    }

    #[test]
    fn another_record_failing_resets_the_streak_and_disabled_never_poisons() {
        let mut board = PoisonBoard::new(true, 2, DeadLetters::to_log());
        board.on_failure("s", 0, "x");
        board.suspect("s", 0).unwrap().admit(&"a", 0);
        board.on_failure("s", 0, "x");
        board.suspect("s", 0).unwrap().admit(&"b", 0);
        board.on_failure("s", 0, "x");
        assert!(
            board.suspect("s", 0).unwrap().admit(&"a", 0),
            "streak was reset"
        );
        let mut off = PoisonBoard::new(false, 1, DeadLetters::to_log());
        off.on_failure("s", 0, "x");
        assert!(off.suspect("s", 0).is_none());
    }
}
