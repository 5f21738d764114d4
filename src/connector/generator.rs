//! Deterministic generators: the benchmark workloads of `shared/bench/WORKLOADS.md`
//! and the demo stream. The same N gives the same records on every engine, split
//! across parallel readers so that every index is emitted exactly once.

use crate::operator::Collector;

use super::source::{
    counter_position, decode_counter_position, ReadStatus, Source, SourceError, SourceReader,
    StopFlag,
};

/// SplitMix64, exactly as WORKLOADS.md defines it (with the increment).
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The range of indices split `split` of `splits` covers among `total`.
pub fn split_range(total: u64, split: u32, splits: u32) -> std::ops::Range<u64> {
    let splits = u64::from(splits.max(1));
    let split = u64::from(split);
    (total * split / splits)..(total * (split + 1) / splits)
}

/// Words per W1 line.
pub const W1_WORDS_PER_LINE: u64 = 10;
/// Distinct W1 words.
pub const W1_VOCABULARY: u64 = 100_000;

/// Appends W1 word `i` ("w" and the decimal of splitmix64(i) % 100,000) to `line`.
#[inline]
pub fn push_w1_word(line: &mut String, i: u64) {
    let mut v = splitmix64(i) % W1_VOCABULARY;
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    line.push('w');
    for &d in &digits[at..] {
        line.push(d as char);
    }
}

/// W1 word `i` as a string.
pub fn w1_word(i: u64) -> String {
    let mut s = String::with_capacity(8);
    push_w1_word(&mut s, i);
    s
}

/// W1 line `j` of a workload of `n` words: words 10j .. 10j+9 (fewer in the last
/// line when `n` is not a multiple of ten), separated by single spaces.
pub fn w1_line(j: u64, n: u64) -> String {
    let first = j * W1_WORDS_PER_LINE;
    let last = (first + W1_WORDS_PER_LINE).min(n);
    let mut line = String::with_capacity(70);
    for i in first..last {
        if i > first {
            line.push(' ');
        }
        push_w1_word(&mut line, i);
    }
    line
}

/// The W1 source: `n` words in lines of ten (line j holds words 10j .. 10j+9; the
/// last line is shorter when n is not a multiple of ten).
#[derive(Clone, Debug)]
pub struct W1Lines {
    n: u64,
}

impl W1Lines {
    /// The W1 source for `n` words.
    pub fn new(n: u64) -> Self {
        W1Lines { n }
    }

    /// Number of lines.
    pub fn lines(&self) -> u64 {
        self.n.div_ceil(W1_WORDS_PER_LINE)
    }
}

/// Reads a range of W1 lines.
pub struct W1Reader {
    next: u64,
    end: u64,
    n: u64,
}

impl Source for W1Lines {
    type Item = String;
    type Reader = W1Reader;

    fn name(&self) -> String {
        "w1-lines".into()
    }

    fn reader(&self, split: u32, splits: u32) -> Result<W1Reader, SourceError> {
        let r = split_range(self.lines(), split, splits);
        Ok(W1Reader {
            next: r.start,
            end: r.end,
            n: self.n,
        })
    }
}

impl SourceReader for W1Reader {
    type Item = String;

    #[inline]
    fn read<C: Collector<String>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        let stop = self.end.min(self.next + budget.max(1) as u64);
        while self.next < stop {
            out.collect(w1_line(self.next, self.n));
            self.next += 1;
        }
        Ok(if self.next >= self.end {
            ReadStatus::Exhausted
        } else {
            ReadStatus::More
        })
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(counter_position(self.next))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = decode_counter_position("w1-lines", position)?;
        Ok(())
    }
}

/// One W2 event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct W2Event {
    /// splitmix64(i) % 10,000.
    pub key: u64,
    /// i % 1,000.
    pub value: u64,
    /// Event time in ms: i / 1,000 - (splitmix64(i ^ 0x5DEECE66D) % 500), clamped at 0.
    pub time_ms: i64,
}

impl W2Event {
    /// Event `i` of W2.
    #[inline]
    pub fn generate(i: u64) -> Self {
        let base = (i / 1_000) as i64;
        let lag = (splitmix64(i ^ 0x5_DEEC_E66D) % 500) as i64;
        W2Event {
            key: splitmix64(i) % 10_000,
            value: i % 1_000,
            time_ms: (base - lag).max(0),
        }
    }
}

/// The W2 source: `n` events.
#[derive(Clone, Debug)]
pub struct W2Events {
    n: u64,
}

impl W2Events {
    /// The W2 source for `n` events.
    pub fn new(n: u64) -> Self {
        W2Events { n }
    }
}

/// Reads every `step`-th W2 event from `next`: splits interleave, so every split
/// advances through event time together (contiguous ranges would leave one split's
/// watermark hours behind another's, and the windows between them open).
pub struct W2Reader {
    next: u64,
    step: u64,
    end: u64,
}

impl Source for W2Events {
    type Item = W2Event;
    type Reader = W2Reader;

    fn name(&self) -> String {
        "w2-events".into()
    }

    fn reader(&self, split: u32, splits: u32) -> Result<W2Reader, SourceError> {
        Ok(W2Reader {
            next: u64::from(split),
            step: u64::from(splits.max(1)),
            end: self.n,
        })
    }
}

impl SourceReader for W2Reader {
    type Item = W2Event;

    fn read<C: Collector<W2Event>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        for _ in 0..budget.max(1) {
            if self.next >= self.end {
                break;
            }
            out.collect(W2Event::generate(self.next));
            self.next += self.step;
        }
        Ok(if self.next >= self.end {
            ReadStatus::Exhausted
        } else {
            ReadStatus::More
        })
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(counter_position(self.next))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = decode_counter_position("w2-events", position)?;
        Ok(())
    }
}

/// The demo stream: endless sensor readings `(sensor, temperature in tenths of a
/// degree)` from 1,000 sensors, until the stop flag is raised.
#[derive(Clone, Debug)]
pub struct SensorReadings {
    stop: StopFlag,
    limit: Option<u64>,
}

impl SensorReadings {
    /// Readings until `stop` is raised (or `limit` readings, if given).
    pub fn new(stop: StopFlag, limit: Option<u64>) -> Self {
        SensorReadings { stop, limit }
    }
}

/// Reads every `splits`-th reading, starting at `split`.
pub struct SensorReader {
    next: u64,
    step: u64,
    stop: StopFlag,
    limit: u64,
}

impl Source for SensorReadings {
    type Item = (String, i64);
    type Reader = SensorReader;

    fn name(&self) -> String {
        "sensor-readings".into()
    }

    fn reader(&self, split: u32, splits: u32) -> Result<SensorReader, SourceError> {
        Ok(SensorReader {
            next: u64::from(split),
            step: u64::from(splits.max(1)),
            stop: self.stop.clone(),
            limit: self.limit.unwrap_or(u64::MAX),
        })
    }
}

impl SourceReader for SensorReader {
    type Item = (String, i64);

    fn read<C: Collector<(String, i64)>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        if self.stop.is_stopped() {
            return Ok(ReadStatus::Exhausted);
        }
        for _ in 0..budget.max(1) {
            if self.next >= self.limit {
                return Ok(ReadStatus::Exhausted);
            }
            let r = splitmix64(self.next);
            let sensor = format!("sensor-{:03}", r % 1_000);
            // A daily-cycle-like base per sensor plus noise, in tenths of a degree.
            let base = 150 + (splitmix64(r % 1_000) % 100) as i64;
            let noise = ((r >> 20) % 61) as i64 - 30;
            out.collect((sensor, base + noise));
            self.next += self.step;
        }
        Ok(ReadStatus::More)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(counter_position(self.next))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = decode_counter_position("sensor-readings", position)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_values() {
        // Reference outputs of SplitMix64 seeded with 0 (the sequence is splitmix64(0),
        // splitmix64(golden), ...); the first is well known.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn w1_splits_cover_every_line_once() {
        let src = W1Lines::new(1_003);
        let mut all = Vec::new();
        for s in 0..3 {
            let mut r = src.reader(s, 3).unwrap();
            while r.read(7, &mut all).unwrap() == ReadStatus::More {}
        }
        assert_eq!(all.len(), 101);
        let words: usize = all.iter().map(|l| l.split(' ').count()).sum();
        assert_eq!(words, 1_003);
        assert_eq!(all[0].split(' ').next().unwrap(), w1_word(0));
        assert_eq!(
            all[100],
            w1_word(1_000) + " " + &w1_word(1_001) + " " + &w1_word(1_002)
        );
    }

    #[test]
    fn w2_event_follows_the_workload_definition() {
        let e = W2Event::generate(123_456);
        assert_eq!(e.key, splitmix64(123_456) % 10_000);
        assert_eq!(e.value, 456);
        assert_eq!(
            e.time_ms,
            (123 - (splitmix64(123_456 ^ 0x5DEECE66D) % 500) as i64).max(0)
        );
    }
}
