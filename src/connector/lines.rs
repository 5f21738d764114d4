//! The line source: lines of a text file (split by byte ranges across parallel
//! readers) or of standard input (one reader).
//!
//! A line that is not valid UTF-8 is not dropped: it goes to the dead-letter output
//! with the file, line number and reason.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::operator::Collector;

use super::dead_letter::{DeadLetter, DeadLetters};
use super::source::{ReadStatus, Source, SourceError, SourceReader};

/// Where lines come from.
#[derive(Clone, Debug)]
enum Origin {
    File(PathBuf),
    Stdin,
}

/// A source of text lines (without their line ending).
#[derive(Clone)]
pub struct LineSource {
    origin: Origin,
    dead_letters: DeadLetters,
}

impl LineSource {
    /// The lines of the file at `path`, read in parallel by byte ranges.
    pub fn file(path: impl AsRef<Path>, dead_letters: DeadLetters) -> Self {
        LineSource {
            origin: Origin::File(path.as_ref().to_path_buf()),
            dead_letters,
        }
    }

    /// The lines of standard input, read by one reader.
    pub fn stdin(dead_letters: DeadLetters) -> Self {
        LineSource {
            origin: Origin::Stdin,
            dead_letters,
        }
    }
}

/// Reads the lines of one split.
pub struct LineReader {
    input: Option<BufReader<Box<dyn Read + Send>>>,
    /// Interactive input: return as soon as what has arrived is read.
    stop_when_drained: bool,
    what: String,
    /// Bytes of the split left to start lines in (files); `u64::MAX` for stdin.
    remaining: u64,
    /// Line number of the next line in the whole input, when known (split 0, stdin).
    line_no: Option<u64>,
    /// Byte offset of the next line in the whole input.
    offset: u64,
    buf: Vec<u8>,
    dead_letters: DeadLetters,
    /// The file read (`None` for stdin, which cannot rewind).
    path: Option<PathBuf>,
    /// End of the split's byte range (files).
    end: u64,
}

impl Source for LineSource {
    type Item = String;
    type Reader = LineReader;

    fn name(&self) -> String {
        match &self.origin {
            Origin::File(p) => format!("lines({})", p.display()),
            Origin::Stdin => "lines(stdin)".into(),
        }
    }

    fn max_parallelism(&self) -> Option<u32> {
        match self.origin {
            Origin::Stdin => Some(1),
            Origin::File(_) => None,
        }
    }

    fn reader(&self, split: u32, splits: u32) -> Result<LineReader, SourceError> {
        match &self.origin {
            Origin::Stdin => Ok(LineReader {
                input: (split == 0).then(|| {
                    BufReader::with_capacity(
                        1 << 16,
                        Box::new(std::io::stdin()) as Box<dyn Read + Send>,
                    )
                }),
                stop_when_drained: true,
                what: "stdin".into(),
                remaining: u64::MAX,
                line_no: Some(1),
                offset: 0,
                buf: Vec::new(),
                dead_letters: self.dead_letters.clone(),
                path: None,
                end: u64::MAX,
            }),
            Origin::File(path) => {
                let what = path.display().to_string();
                let io = |source| SourceError::Io {
                    what: what.clone(),
                    source,
                };
                let mut file = File::open(path).map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                let splits = u64::from(splits.max(1));
                let start = len * u64::from(split) / splits;
                let end = len * (u64::from(split) + 1) / splits;
                // A split owns the lines that start inside [start, end). Unless it
                // begins the file, it skips the line in progress at `start`: that line
                // belongs to the split before.
                let mut offset = start;
                if start > 0 {
                    file.seek(SeekFrom::Start(start - 1)).map_err(io)?;
                    offset = start - 1;
                }
                let mut reader =
                    BufReader::with_capacity(1 << 16, Box::new(file) as Box<dyn Read + Send>);
                if start > 0 {
                    let mut skipped = Vec::new();
                    offset += reader.read_until(b'\n', &mut skipped).map_err(io)? as u64;
                }
                Ok(LineReader {
                    input: Some(reader),
                    stop_when_drained: false,
                    what,
                    remaining: end.saturating_sub(offset),
                    line_no: (split == 0).then_some(1),
                    offset,
                    buf: Vec::new(),
                    dead_letters: self.dead_letters.clone(),
                    path: Some(path.clone()),
                    end,
                })
            }
        }
    }
}

impl LineReader {
    fn position(&self) -> String {
        match self.line_no {
            Some(n) => format!("{} line {n}", self.what),
            None => format!("{} byte {}", self.what, self.offset),
        }
    }
}

impl SourceReader for LineReader {
    type Item = String;

    fn read<C: Collector<String>>(
        &mut self,
        budget: usize,
        out: &mut C,
    ) -> Result<ReadStatus, SourceError> {
        for round in 0..budget.max(1) {
            if self.remaining == 0 {
                return Ok(ReadStatus::Exhausted);
            }
            let Some(input) = self.input.as_mut() else {
                return Ok(ReadStatus::Exhausted);
            };
            // Interactive input: after the first line, read only what has arrived,
            // so the lines reach the job now instead of when a round is full.
            if round > 0 && self.stop_when_drained && input.buffer().is_empty() {
                return Ok(ReadStatus::Idle);
            }
            self.buf.clear();
            let n = input
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| SourceError::Io {
                    what: self.what.clone(),
                    source,
                })?;
            if n == 0 {
                self.remaining = 0;
                return Ok(ReadStatus::Exhausted);
            }
            let mut line: &[u8] = &self.buf;
            if line.ends_with(b"\n") {
                line = &line[..line.len() - 1];
            }
            if line.ends_with(b"\r") {
                line = &line[..line.len() - 1];
            }
            match std::str::from_utf8(line) {
                Ok(text) => out.collect(text.to_owned()),
                Err(e) => self.dead_letters.send(DeadLetter {
                    origin: format!("lines({})", self.what),
                    position: self.position(),
                    reason: format!("not valid UTF-8: {e}"),
                    record: String::from_utf8_lossy(line).into_owned(),
                    raw_value: Some(line.to_vec()),
                    ..Default::default()
                }),
            }
            self.offset += n as u64;
            self.remaining = self.remaining.saturating_sub(n as u64);
            if let Some(l) = self.line_no.as_mut() {
                *l += 1;
            }
        }
        Ok(ReadStatus::More)
    }

    /// A file split's position: the byte offset of the next line and, for the first
    /// split, its line number.
    fn position(&self) -> Option<Vec<u8>> {
        self.path.as_ref()?;
        bincode::serialize(&(self.offset, self.line_no)).ok()
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let Some(path) = self.path.clone() else {
            return Err(SourceError::Invalid(
                "stdin cannot resume from a snapshot position".into(),
            ));
        };
        let (offset, line_no): (u64, Option<u64>) =
            bincode::deserialize(position).map_err(|e| {
                SourceError::Invalid(format!("{}: bad snapshot position: {e}", self.what))
            })?;
        let io = |source| SourceError::Io {
            what: self.what.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        self.input = Some(BufReader::with_capacity(
            1 << 16,
            Box::new(file) as Box<dyn Read + Send>,
        ));
        self.offset = offset;
        self.line_no = line_no;
        self.remaining = self.end.saturating_sub(offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &Path, splits: u32) -> (Vec<String>, u64) {
        let dl = DeadLetters::to_log();
        let src = LineSource::file(path, dl.clone());
        let mut all = Vec::new();
        for s in 0..splits {
            let mut r = src.reader(s, splits).unwrap();
            while r.read(3, &mut all).unwrap() == ReadStatus::More {}
        }
        (all, dl.count())
    }

    #[test]
    fn every_line_is_read_once_whatever_the_number_of_splits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let mut f = File::create(&path).unwrap();
        let expected: Vec<String> = (0..200)
            .map(|i| format!("line {i} {}", "x".repeat(i % 13)))
            .collect();
        for l in &expected {
            writeln!(f, "{l}").unwrap();
        }
        write!(f, "last without newline").unwrap();
        drop(f);
        let mut expected = expected;
        expected.push("last without newline".into());
        for splits in [1, 2, 3, 7, 64, 500] {
            let (mut got, bad) = lines_of(&path, splits);
            got.sort();
            let mut want = expected.clone();
            want.sort();
            assert_eq!(got, want, "splits = {splits}");
            assert_eq!(bad, 0);
        }
    }

    #[test]
    fn invalid_utf8_goes_to_dead_letters_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"good\nba\xffd\r\nalso good\n").unwrap();
        let letters = dir.path().join("dl.jsonl");
        let dl = DeadLetters::to_file(&letters).unwrap();
        let src = LineSource::file(&path, dl.clone());
        let mut got = Vec::new();
        let mut r = src.reader(0, 1).unwrap();
        while r.read(10, &mut got).unwrap() == ReadStatus::More {}
        assert_eq!(got, vec!["good".to_string(), "also good".to_string()]);
        assert_eq!(dl.count(), 1);
        let text = std::fs::read_to_string(&letters).unwrap();
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("not valid UTF-8"), "{text}");
    }
}
