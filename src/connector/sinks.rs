//! Built-in sinks: standard output, a text file, a counting sink (keeps the last value
//! per key, for checks) and a collecting sink (for tests).

use std::fmt::Display;
use std::fs::File;
use std::hash::Hash;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::sink::{Sink, SinkError, SinkFactory};

const FLUSH_AT: usize = 64 * 1024;

/// Writes each record as one line of text produced by a format function.
fn format_line<T>(format: &impl Fn(&T, &mut String), item: &T, buf: &mut String) {
    format(item, buf);
    buf.push('\n');
}

/// Formats a `(key, value)` pair as `key<TAB>value`.
pub fn tab_separated<K: Display, V: Display>(item: &(K, V), out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(out, "{}\t{}", item.0, item.1);
}

/// Writes records as lines on standard output. Each partition buffers whole lines, so
/// lines of different partitions never interleave.
#[derive(Clone)]
pub struct StdoutSink<F> {
    format: F,
}

impl<F> StdoutSink<F> {
    /// Lines made by `format`.
    pub fn new(format: F) -> Self {
        StdoutSink { format }
    }
}

/// One partition's stdout writer.
pub struct StdoutPart<F> {
    format: F,
    buf: String,
}

impl<T, F: Fn(&T, &mut String) + Clone + Send + 'static> SinkFactory<T> for StdoutSink<F> {
    type Sink = StdoutPart<F>;
    fn name(&self) -> String {
        "stdout".into()
    }
    fn create(&self, _partition: u32, _parallelism: u32) -> Result<Self::Sink, SinkError> {
        Ok(StdoutPart {
            format: self.format.clone(),
            buf: String::new(),
        })
    }
}

impl<F> StdoutPart<F> {
    fn flush_buf(&mut self) -> Result<(), SinkError> {
        let mut out = std::io::stdout().lock();
        out.write_all(self.buf.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|source| SinkError::Io {
                what: "stdout".into(),
                source,
            })?;
        self.buf.clear();
        Ok(())
    }
}

impl<T, F: Fn(&T, &mut String) + Send + 'static> Sink<T> for StdoutPart<F> {
    fn write(&mut self, item: T) -> Result<(), SinkError> {
        format_line(&self.format, &item, &mut self.buf);
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush_buf()
    }
}

/// Writes records as lines to one text file shared by all partitions (each appends
/// whole buffers of lines under a lock).
#[derive(Clone)]
pub struct FileSink<F> {
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
    format: F,
}

impl<F> FileSink<F> {
    /// Lines made by `format`, written to `path` (created or truncated when the job
    /// starts).
    pub fn new(path: impl AsRef<Path>, format: F) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            file: Arc::new(Mutex::new(None)),
            format,
        }
    }
}

/// One partition's file writer.
pub struct FilePart<F> {
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
    format: F,
    buf: String,
}

impl<T, F: Fn(&T, &mut String) + Clone + Send + 'static> SinkFactory<T> for FileSink<F> {
    type Sink = FilePart<F>;
    fn name(&self) -> String {
        format!("file({})", self.path.display())
    }
    fn create(&self, _partition: u32, _parallelism: u32) -> Result<Self::Sink, SinkError> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| SinkError::Failed("file sink lock poisoned".into()))?;
        if guard.is_none() {
            let file = File::create(&self.path).map_err(|source| SinkError::Io {
                what: self.path.display().to_string(),
                source,
            })?;
            *guard = Some(file);
        }
        Ok(FilePart {
            path: self.path.clone(),
            file: self.file.clone(),
            format: self.format.clone(),
            buf: String::new(),
        })
    }
}

impl<F> FilePart<F> {
    fn flush_buf(&mut self) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            what: self.path.display().to_string(),
            source,
        };
        let mut guard = self
            .file
            .lock()
            .map_err(|_| SinkError::Failed("file sink lock poisoned".into()))?;
        if let Some(file) = guard.as_mut() {
            file.write_all(self.buf.as_bytes()).map_err(io)?;
        }
        self.buf.clear();
        Ok(())
    }
}

impl<T, F: Fn(&T, &mut String) + Send + 'static> Sink<T> for FilePart<F> {
    fn write(&mut self, item: T) -> Result<(), SinkError> {
        format_line(&self.format, &item, &mut self.buf);
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush_buf()?;
        let guard = self
            .file
            .lock()
            .map_err(|_| SinkError::Failed("file sink lock poisoned".into()))?;
        if let Some(file) = guard.as_ref() {
            file.sync_data().map_err(|source| SinkError::Io {
                what: self.path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// What a [`CountingSink`] saw: how many records, and the last value of each key.
#[derive(Debug, Clone)]
pub struct Counted<K, V> {
    /// Records received.
    pub received: u64,
    /// The last value received for each key.
    pub last: FxHashMap<K, V>,
}

impl<K, V> Default for Counted<K, V> {
    fn default() -> Self {
        Counted {
            received: 0,
            last: FxHashMap::default(),
        }
    }
}

/// Counts `(key, value)` records and keeps the last value per key: the W1 sink, and a
/// way for tests to read a job's final results.
pub struct CountingSink<K, V> {
    result: Arc<Mutex<Counted<K, V>>>,
}

impl<K, V> Clone for CountingSink<K, V> {
    fn clone(&self) -> Self {
        CountingSink {
            result: self.result.clone(),
        }
    }
}

impl<K: Eq + Hash, V> Default for CountingSink<K, V> {
    fn default() -> Self {
        CountingSink {
            result: Arc::new(Mutex::new(Counted::default())),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> CountingSink<K, V> {
    /// A new, empty counting sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// What every partition saw, merged (complete once the job has finished).
    pub fn result(&self) -> Counted<K, V> {
        match self.result.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// One partition of a [`CountingSink`].
pub struct CountingPart<K, V> {
    local: Counted<K, V>,
    result: Arc<Mutex<Counted<K, V>>>,
}

impl<K, V> SinkFactory<(K, V)> for CountingSink<K, V>
where
    K: Eq + Hash + Send + 'static,
    V: Send + 'static,
{
    type Sink = CountingPart<K, V>;
    fn name(&self) -> String {
        "counting".into()
    }
    fn create(&self, _partition: u32, _parallelism: u32) -> Result<Self::Sink, SinkError> {
        Ok(CountingPart {
            local: Counted::default(),
            result: self.result.clone(),
        })
    }
}

impl<K: Eq + Hash + Send + 'static, V: Send + 'static> Sink<(K, V)> for CountingPart<K, V> {
    #[inline]
    fn write(&mut self, (key, value): (K, V)) -> Result<(), SinkError> {
        self.local.received += 1;
        self.local.last.insert(key, value);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        let local = std::mem::take(&mut self.local);
        let mut shared = self
            .result
            .lock()
            .map_err(|_| SinkError::Failed("counting sink lock poisoned".into()))?;
        shared.received += local.received;
        shared.last.extend(local.last);
        Ok(())
    }
}

/// Collects every record into a shared `Vec` (for tests and small jobs).
pub struct CollectSink<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink {
            items: self.items.clone(),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink {
            items: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T: Clone> CollectSink<T> {
    /// An empty collecting sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything collected so far, in no particular order across partitions.
    pub fn items(&self) -> Vec<T> {
        match self.items.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// One partition of a [`CollectSink`].
pub struct CollectPart<T> {
    local: Vec<T>,
    items: Arc<Mutex<Vec<T>>>,
}

impl<T: Send + 'static> SinkFactory<T> for CollectSink<T> {
    type Sink = CollectPart<T>;
    fn name(&self) -> String {
        "collect".into()
    }
    fn create(&self, _partition: u32, _parallelism: u32) -> Result<Self::Sink, SinkError> {
        Ok(CollectPart {
            local: Vec::new(),
            items: self.items.clone(),
        })
    }
}

impl<T: Send + 'static> Sink<T> for CollectPart<T> {
    fn write(&mut self, item: T) -> Result<(), SinkError> {
        self.local.push(item);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        let mut shared = self
            .items
            .lock()
            .map_err(|_| SinkError::Failed("collect sink lock poisoned".into()))?;
        shared.append(&mut self.local);
        Ok(())
    }
}
