//! An exactly-once file sink: each partition stages its output of an epoch in a
//! hidden directory and publishes it, by an atomic rename, only once the epoch is
//! complete.
//!
//! # Layout
//!
//! For an output directory `dir`:
//!
//! * `dir/part-<partition:05>-<epoch:020>.txt` is a committed part file: the lines a
//!   partition staged at the barrier of `epoch`. Zero padding makes the names of one
//!   partition sort in epoch order, which is commit order. Readers should only ever
//!   look at these files ([`read_committed`] does exactly that).
//! * `dir/.staging/part-<partition:05>-<epoch:020>.txt` is the same output before its
//!   epoch completed. Staging inside `dir` keeps it on the same file system, so
//!   publishing is one atomic `rename`.
//! * `dir/.staging/part-<partition:05>.open` holds the lines of the epoch in progress
//!   once they outgrew the in-memory buffer (the epoch number is only known at the
//!   barrier).
//!
//! # Protocol
//!
//! The sink is a [`TwoPhaseCommitSink`] whose action is [`PublishPart`].
//! [`pre_commit`](TwoPhaseCommitSink::pre_commit) writes out the buffer, syncs the
//! file, gives it its staged name, syncs the staging directory, and returns a
//! [`PublishPart`] for it and for every earlier staged file whose epoch is not yet
//! known complete (an abandoned epoch's file is published by a later epoch).
//! [`committed`](TwoPhaseCommitSink::committed) forgets the files up to the completed
//! epoch. The committer, [`PartPublisher`], commits an action by renaming the staged
//! file to its visible name (already done when the staged file is gone and the
//! visible one exists), and aborts one by deleting the staged file.
//! [`recover`](TwoPhaseCommitSinkFactory::recover), called after the engine redid the
//! restored epoch's actions and aborted those of later epochs it knew of, and before
//! any sink exists, deletes whatever is left in `.staging`: by then it can only
//! belong to epochs that never completed (a process that died left it).
//!
//! # Why a staged name can be reused safely
//!
//! The staged name of partition `p`'s output for epoch `e` is fixed by `(p, e)`, so a
//! replay after recovery may stage the same name again. That is correct, assuming (as
//! the engine guarantees) that epochs grow within a run and that a run restored from
//! epoch `R` numbers its epochs above `R`:
//!
//! * Within a run a sink stages each epoch at most once (it rejects an epoch that does
//!   not follow the last one it staged), so a live action never sees its file replaced.
//! * A crashed attempt may have staged `(p, e)` with `e > R`. No complete snapshot
//!   records an action for it (that would make an epoch `>= e` complete, so `R` would
//!   be later), so no redo will ever publish it, and `recover` deleted it before the
//!   replay's sink was created. Creating the file again with truncation therefore
//!   destroys nothing that could become visible; even a leftover that escaped
//!   deletion is stale output of an uncompleted epoch.
//! * The restored snapshot's actions name epochs `<= R` only, which the replay never
//!   stages again, so redoing them (again, after a later crash) can never rename the
//!   replay's data over committed output.
//!
//! A directory belongs to one sink of one job; two jobs writing to the same directory
//! would delete each other's staged output.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sink::{SinkError, SinkRecovery};
use super::two_phase::{Committer, TwoPhaseCommitSink, TwoPhaseCommitSinkFactory};

/// How many bytes of formatted lines a partition buffers before writing them out.
const FLUSH_AT: usize = 64 * 1024;

/// The hidden directory, inside the output directory, that holds staged files.
const STAGING: &str = ".staging";

/// A factory of exactly-once file sinks: every partition writes one part file per
/// non-empty epoch into one directory, visible only once the epoch is complete.
///
/// Records become lines through `format`, which appends one record's text (without the
/// line break) to a `String`, like the formatters of the other file sinks (e.g.
/// [`tab_separated`](super::sinks::tab_separated)). A record whose text contains line
/// breaks becomes several lines.
#[derive(Clone)]
pub struct TransactionalFileSink<F> {
    dir: PathBuf,
    format: F,
}

impl<F> TransactionalFileSink<F> {
    /// Output into directory `dir` (created if needed), lines made by `format`.
    pub fn new(dir: impl AsRef<Path>, format: F) -> Self {
        TransactionalFileSink {
            dir: dir.as_ref().to_path_buf(),
            format,
        }
    }

    /// The output directory, where committed part files appear (read them with
    /// [`read_committed`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The commit action of a [`TransactionalFileSink`] partition for one epoch: publish
/// the staged part file `staged` as `visible`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublishPart {
    /// The staged file, written and synced before the barrier was acknowledged.
    pub staged: PathBuf,
    /// Its final name in the output directory.
    pub visible: PathBuf,
}

/// The committer of a [`TransactionalFileSink`]: publishes a part by an atomic
/// rename, aborts one by deleting its staged file. Every path it needs is in the
/// action.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartPublisher;

impl Committer for PartPublisher {
    type Action = PublishPart;

    /// Renames the staged file to its visible name and syncs the directory, unless
    /// that already happened (the staged file is gone and the visible one exists).
    fn commit(&self, action: &PublishPart) -> Result<(), SinkError> {
        publish(action)
    }

    /// Deletes the staged file (already gone is fine). The visible name is never
    /// touched: an aborted action's epoch never completed, so nothing published it.
    fn abort(&self, action: &PublishPart) -> Result<(), SinkError> {
        match fs::remove_file(&action.staged) {
            Ok(()) => match action.staged.parent() {
                Some(staging) => sync_dir(staging),
                None => Ok(()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("deleting aborted staged output", &action.staged)(e)),
        }
    }
}

/// Renames `action.staged` to `action.visible` and syncs the directory, unless that
/// already happened.
pub(crate) fn publish(action: &PublishPart) -> Result<(), SinkError> {
    let PublishPart { staged, visible } = action;
    if !staged.exists() {
        if visible.exists() {
            return Ok(());
        }
        return Err(SinkError::Failed(format!(
            "cannot publish {}: neither it nor its staged file {} exists",
            visible.display(),
            staged.display()
        )));
    }
    fs::rename(staged, visible).map_err(io_err("publishing", visible))?;
    match visible.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

impl<T, F> TwoPhaseCommitSinkFactory<T> for TransactionalFileSink<F>
where
    F: Fn(&T, &mut String) + Clone + Send + 'static,
{
    type Sink = TransactionalFilePart<F>;
    type Committer = PartPublisher;

    fn name(&self) -> String {
        format!("txn-file({})", self.dir.display())
    }

    fn create(&self, partition: u32, _parallelism: u32) -> Result<Self::Sink, SinkError> {
        let staging = self.dir.join(STAGING);
        // `recover` normally made it already; this keeps a sink usable without it.
        ensure_dir(&staging)?;
        Ok(TransactionalFilePart {
            open_path: staging.join(format!("part-{partition:05}.open")),
            dir: self.dir.clone(),
            staging,
            partition,
            format: self.format.clone(),
            buf: String::new(),
            open: None,
            pending: Vec::new(),
            last_staged: None,
            failed: false,
        })
    }

    fn committer(&self) -> PartPublisher {
        PartPublisher
    }

    /// Creates the output and staging directories if needed and deletes everything
    /// staged: the engine has redone the restored epoch's actions (and aborted those
    /// of later epochs it knew of), so what is still staged belongs to epochs that
    /// never completed. Published part files of epochs
    /// after `restored` are deleted too: the run restarts from an earlier point (a
    /// corrupt newest snapshot, or a fresh start when `restored` is `None`) and will
    /// publish that output again. Published parts up to `restored` stay.
    fn recover(&self, recovery: &SinkRecovery<'_>) -> Result<(), SinkError> {
        let restored = recovery.restored;
        let staging = self.dir.join(STAGING);
        ensure_dir(&staging)?;
        let mut retracted = false;
        for entry in fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            let Some((_, epoch)) = entry.file_name().to_str().and_then(parse_part_name) else {
                continue;
            };
            if restored.is_none_or(|r| epoch > r) {
                let path = entry.path();
                fs::remove_file(&path)
                    .map_err(io_err("retracting output of a rolled-back epoch", &path))?;
                retracted = true;
            }
        }
        if retracted {
            sync_dir(&self.dir)?;
        }
        let entries = fs::read_dir(&staging).map_err(io_err("listing", &staging))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &staging))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err("inspecting", &path))?;
            if kind.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .map_err(io_err("deleting stale staged output", &path))?;
            removed = true;
        }
        if removed {
            sync_dir(&staging)?;
        }
        Ok(())
    }
}

/// A file staged at an epoch barrier and not yet known to be published.
struct Staged {
    epoch: u64,
    action: PublishPart,
}

/// One partition of a [`TransactionalFileSink`]: buffers the lines of the epoch in
/// progress and stages them at each barrier.
pub struct TransactionalFilePart<F> {
    dir: PathBuf,
    staging: PathBuf,
    partition: u32,
    format: F,
    /// Formatted lines not yet written to a file.
    buf: String,
    /// Where the epoch in progress spills once `buf` grows past [`FLUSH_AT`].
    open_path: PathBuf,
    /// The spill file, once created in this epoch.
    open: Option<File>,
    /// Staged files whose epoch is not yet known complete, oldest first.
    pending: Vec<Staged>,
    /// The last epoch this sink staged a file for.
    last_staged: Option<u64>,
    /// An operation failed part way: the sink's files no longer match its state, so it
    /// refuses further work until recovery replaces it.
    failed: bool,
}

impl<F> TransactionalFilePart<F> {
    /// Fails if an earlier operation failed.
    fn check(&self) -> Result<(), SinkError> {
        if self.failed {
            return Err(SinkError::Failed(format!(
                "transactional file sink {} partition {}: an earlier write failed; \
                 the job must recover",
                self.dir.display(),
                self.partition
            )));
        }
        Ok(())
    }

    /// Runs `op`, marking the sink failed if it fails.
    fn guarded<R>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<R, SinkError>,
    ) -> Result<R, SinkError> {
        self.check()?;
        let result = op(self);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Appends the buffer to the spill file of the epoch in progress.
    fn spill(&mut self) -> Result<(), SinkError> {
        let file = match &mut self.open {
            Some(file) => file,
            None => {
                // Truncating is right: a file of this name is either the spill of a
                // crashed attempt (never referenced by any action) or, within this
                // run, already renamed to its staged name.
                let file = File::create(&self.open_path)
                    .map_err(io_err("creating spill file", &self.open_path))?;
                self.open.insert(file)
            }
        };
        file.write_all(self.buf.as_bytes())
            .map_err(io_err("writing", &self.open_path))?;
        self.buf.clear();
        Ok(())
    }

    /// Stages everything written since the last barrier as the output of `epoch`.
    fn stage(&mut self, epoch: u64) -> Result<(), SinkError> {
        if let Some(last) = self.last_staged {
            if epoch <= last {
                return Err(SinkError::Failed(format!(
                    "transactional file sink {} partition {}: pre_commit of epoch {epoch} \
                     after epoch {last} was staged (epochs must increase)",
                    self.dir.display(),
                    self.partition
                )));
            }
        }
        let name = part_name(self.partition, epoch);
        let staged = self.staging.join(&name);
        match self.open.take() {
            Some(mut file) => {
                file.write_all(self.buf.as_bytes())
                    .map_err(io_err("writing", &self.open_path))?;
                file.sync_all()
                    .map_err(io_err("syncing", &self.open_path))?;
                drop(file);
                fs::rename(&self.open_path, &staged).map_err(|source| SinkError::Io {
                    what: format!(
                        "renaming {} to {}",
                        self.open_path.display(),
                        staged.display()
                    ),
                    source,
                })?;
            }
            None => {
                // Truncating a leftover of the same name is safe: see the module docs.
                let mut file =
                    File::create(&staged).map_err(io_err("creating staged file", &staged))?;
                file.write_all(self.buf.as_bytes())
                    .map_err(io_err("writing", &staged))?;
                file.sync_all().map_err(io_err("syncing", &staged))?;
            }
        }
        // The action about to be recorded needs the staged name to survive a crash.
        sync_dir(&self.staging)?;
        self.buf.clear();
        self.pending.push(Staged {
            epoch,
            action: PublishPart {
                staged,
                visible: self.dir.join(name),
            },
        });
        self.last_staged = Some(epoch);
        Ok(())
    }
}

impl<T, F> TwoPhaseCommitSink<T> for TransactionalFilePart<F>
where
    F: Fn(&T, &mut String) + Send + 'static,
{
    type Action = PublishPart;

    fn write(&mut self, item: T) -> Result<(), SinkError> {
        self.check()?;
        (self.format)(&item, &mut self.buf);
        self.buf.push('\n');
        if self.buf.len() >= FLUSH_AT {
            self.guarded(Self::spill)?;
        }
        Ok(())
    }

    /// Nothing to write out: the final
    /// [`pre_commit`](TwoPhaseCommitSink::pre_commit) stages what is buffered, and only
    /// staged output can become visible.
    fn finish(&mut self) -> Result<(), SinkError> {
        self.check()
    }

    /// Stages the epoch's output (if any) and returns the actions publishing every
    /// staged file not yet known complete.
    fn pre_commit(&mut self, epoch: u64) -> Result<Vec<PublishPart>, SinkError> {
        if self.open.is_some() || !self.buf.is_empty() {
            self.guarded(|sink| sink.stage(epoch))?;
        } else {
            self.check()?;
        }
        Ok(self.pending.iter().map(|s| s.action.clone()).collect())
    }

    fn committed(&mut self, epoch: u64) {
        self.pending.retain(|s| s.epoch > epoch);
    }
}

/// Every line of the committed part files in `dir`, file by file in name order (so
/// each partition's lines come in commit order, partitions one after another).
/// Staged output is not read. Tests and examples use it to compare the output of runs
/// record for record.
pub fn read_committed(dir: impl AsRef<Path>) -> io::Result<Vec<String>> {
    let dir = dir.as_ref();
    let context = |path: &Path| {
        let path = path.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("{path}: {e}"))
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(context(dir))? {
        let entry = entry.map_err(context(dir))?;
        let path = entry.path();
        if !entry.file_type().map_err(context(&path))?.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            if parse_part_name(name).is_some() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    let mut lines = Vec::new();
    for name in names {
        let path = dir.join(name);
        let text = fs::read_to_string(&path).map_err(context(&path))?;
        lines.extend(text.split_terminator('\n').map(str::to_owned));
    }
    Ok(lines)
}

/// The file name of `partition`'s output staged at the barrier of `epoch`.
fn part_name(partition: u32, epoch: u64) -> String {
    format!("part-{partition:05}-{epoch:020}.txt")
}

/// The partition and epoch of a part file name, if it is one.
fn parse_part_name(name: &str) -> Option<(u32, u64)> {
    let (partition, epoch) = name
        .strip_prefix("part-")?
        .strip_suffix(".txt")?
        .split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(partition) || !digits(epoch) {
        return None;
    }
    Some((partition.parse().ok()?, epoch.parse().ok()?))
}

/// Maps an I/O error to a [`SinkError`] naming the operation and the file.
fn io_err(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SinkError {
    let what = format!("{doing} {}", path.display());
    move |source| SinkError::Io { what, source }
}

/// Syncs a directory, so that names created, renamed or deleted in it are durable.
fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` and its missing ancestors, syncing the parent of each directory it
/// creates so that the new directories survive a crash.
fn ensure_dir(dir: &Path) -> Result<(), SinkError> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(path) = next {
        // When existence cannot be told, stop here and let `create_dir_all` report.
        if path.as_os_str().is_empty() || path.try_exists().unwrap_or(true) {
            break;
        }
        missing.push(path);
        next = path.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
    for created in missing {
        match created.parent() {
            Some(parent) if parent.as_os_str().is_empty() => sync_dir(Path::new("."))?,
            Some(parent) => sync_dir(parent)?,
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn number(x: &u64, out: &mut String) {
        let _ = write!(out, "{x}");
    }

    type Factory = TransactionalFileSink<fn(&u64, &mut String)>;
    type Part = TransactionalFilePart<fn(&u64, &mut String)>;

    fn factory(dir: &Path) -> Factory {
        TransactionalFileSink::new(dir, number as fn(&u64, &mut String))
    }

    /// The recovery of a run restoring `restored`, keeping no state directory.
    fn restoring(restored: Option<u64>) -> SinkRecovery<'static> {
        SinkRecovery {
            restored,
            state_dir: None,
        }
    }

    /// Recovery that keeps every published part (restoring the newest epoch).
    fn recover(f: &Factory) {
        TwoPhaseCommitSinkFactory::<u64>::recover(f, &restoring(Some(u64::MAX))).unwrap();
    }

    /// A factory on `dir` after recovery, and its partition 0.
    fn recovered(dir: &Path) -> (Factory, Part) {
        let f = factory(dir);
        recover(&f);
        let sink = open(&f, 0);
        (f, sink)
    }

    #[test]
    fn recovery_to_an_earlier_epoch_retracts_parts_published_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (f, mut sink) = recovered(dir.path());
        for epoch in 1..=3 {
            write_all(&mut sink, &[epoch]);
            apply(&pre_commit(&mut sink, epoch));
        }
        TwoPhaseCommitSinkFactory::<u64>::recover(&f, &restoring(Some(2))).unwrap();
        assert_eq!(read_committed(dir.path()).unwrap(), ["1", "2"]);
        TwoPhaseCommitSinkFactory::<u64>::recover(&f, &restoring(None)).unwrap();
        assert!(
            read_committed(dir.path()).unwrap().is_empty(),
            "a fresh start retracts all"
        );
    }

    fn open(f: &Factory, partition: u32) -> Part {
        TwoPhaseCommitSinkFactory::<u64>::create(f, partition, 2).unwrap()
    }

    fn write_all(sink: &mut Part, items: &[u64]) {
        for &x in items {
            sink.write(x).unwrap();
        }
    }

    fn pre_commit(sink: &mut Part, epoch: u64) -> Vec<PublishPart> {
        TwoPhaseCommitSink::<u64>::pre_commit(sink, epoch).unwrap()
    }

    fn apply(actions: &[PublishPart]) {
        for a in actions {
            PartPublisher.commit(a).unwrap();
        }
    }

    fn lines(items: impl IntoIterator<Item = u64>) -> Vec<String> {
        items.into_iter().map(|x| x.to_string()).collect()
    }

    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn output_becomes_visible_only_when_its_epoch_is_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let f = factory(&dir);
        recover(&f);
        let mut sink = open(&f, 0);

        write_all(&mut sink, &[1, 2]);
        let actions = pre_commit(&mut sink, 1);
        assert_eq!(actions.len(), 1);
        assert!(read_committed(&dir).unwrap().is_empty());
        apply(&actions);
        sink.committed(1);
        assert_eq!(read_committed(&dir).unwrap(), lines([1, 2]));

        // An empty epoch stages nothing and publishes nothing.
        assert!(pre_commit(&mut sink, 2).is_empty());
        sink.committed(2);

        write_all(&mut sink, &[3]);
        sink.finish().unwrap();
        let actions = pre_commit(&mut sink, 4);
        assert_eq!(actions.len(), 1);
        apply(&actions);
        sink.committed(4);
        assert_eq!(read_committed(&dir).unwrap(), lines([1, 2, 3]));
        assert_eq!(
            file_names(&dir),
            vec![part_name(0, 1), part_name(0, 4)],
            "no file for the empty epoch"
        );
        assert!(file_names(&dir.join(STAGING)).is_empty());
    }

    #[test]
    fn an_abandoned_epoch_is_published_by_a_later_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (_f, mut sink) = recovered(tmp.path());

        write_all(&mut sink, &[1]);
        let first = pre_commit(&mut sink, 1);
        // Epoch 1 never completes; epoch 2 carries its file too.
        write_all(&mut sink, &[2]);
        let second = pre_commit(&mut sink, 2);
        assert_eq!(second.len(), 2);
        assert_eq!(second[0], first[0]);
        apply(&second);
        sink.committed(2);
        assert_eq!(read_committed(tmp.path()).unwrap(), lines([1, 2]));
        assert!(pre_commit(&mut sink, 3).is_empty());
    }

    #[test]
    fn committed_forgets_only_epochs_up_to_the_completed_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (_f, mut sink) = recovered(tmp.path());
        write_all(&mut sink, &[1]);
        let first = pre_commit(&mut sink, 1);
        write_all(&mut sink, &[2]);
        let both = pre_commit(&mut sink, 2);
        // Epoch 1 completes while epoch 2 is still in flight.
        apply(&first);
        sink.committed(1);
        write_all(&mut sink, &[3]);
        let later = pre_commit(&mut sink, 3);
        assert_eq!(later.len(), 2);
        assert_eq!(later[0], both[1]);
        apply(&later);
        assert_eq!(read_committed(tmp.path()).unwrap(), lines([1, 2, 3]));
    }

    #[test]
    fn applying_actions_again_is_harmless() {
        let tmp = tempfile::tempdir().unwrap();
        let f = factory(tmp.path());
        recover(&f);
        let mut sink = open(&f, 1);
        write_all(&mut sink, &[7, 8]);
        let actions = pre_commit(&mut sink, 5);
        apply(&actions);
        apply(&actions);
        sink.committed(5);
        // A redo after recovery, with the staging directory cleaned meanwhile.
        recover(&f);
        apply(&actions);
        assert_eq!(read_committed(tmp.path()).unwrap(), lines([7, 8]));
        assert_eq!(file_names(tmp.path()), vec![part_name(1, 5)]);
    }

    #[test]
    fn recover_creates_a_missing_directory_and_clears_only_staging() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b").join("out");
        let f = factory(&dir);
        recover(&f);
        assert!(dir.join(STAGING).is_dir());
        recover(&f);

        fs::write(dir.join(part_name(0, 1)), "kept\n").unwrap();
        fs::write(dir.join(STAGING).join(part_name(0, 2)), "stale\n").unwrap();
        fs::write(dir.join(STAGING).join("part-00000.open"), "stale\n").unwrap();
        recover(&f);
        assert!(file_names(&dir.join(STAGING)).is_empty());
        assert_eq!(read_committed(&dir).unwrap(), vec!["kept".to_string()]);
    }

    #[test]
    fn part_names_sort_in_epoch_order() {
        let epochs = [3, 9, 10, 99, 100, 12_345_678_901, u64::MAX];
        let mut names: Vec<String> = epochs.iter().rev().map(|&e| part_name(7, e)).collect();
        names.sort();
        let parsed: Vec<u64> = names
            .iter()
            .map(|n| parse_part_name(n).unwrap())
            .inspect(|&(p, _)| assert_eq!(p, 7))
            .map(|(_, e)| e)
            .collect();
        assert_eq!(parsed, epochs);
        assert_eq!(parse_part_name("part-00001-x.txt"), None);
        assert_eq!(parse_part_name("part-00001.open"), None);

        // And on disk: read_committed returns the epochs' lines in epoch order.
        let tmp = tempfile::tempdir().unwrap();
        let f = factory(tmp.path());
        recover(&f);
        let mut sink = open(&f, 7);
        for &e in &epochs {
            write_all(&mut sink, &[e]);
            apply(&pre_commit(&mut sink, e));
            sink.committed(e);
        }
        assert_eq!(read_committed(tmp.path()).unwrap(), lines(epochs));
    }

    #[test]
    fn epochs_must_increase_and_a_failed_sink_stays_failed() {
        let tmp = tempfile::tempdir().unwrap();
        let (f, mut sink) = recovered(tmp.path());
        write_all(&mut sink, &[1]);
        pre_commit(&mut sink, 5);
        write_all(&mut sink, &[2]);
        assert!(TwoPhaseCommitSink::<u64>::pre_commit(&mut sink, 5).is_err());
        assert!(sink.write(3).is_err());
        assert!(TwoPhaseCommitSink::<u64>::pre_commit(&mut sink, 6).is_err());
        // An empty epoch repeated is no conflict for a healthy sink.
        let mut other = open(&f, 1);
        write_all(&mut other, &[1]);
        let actions = pre_commit(&mut other, 5);
        assert_eq!(pre_commit(&mut other, 5), actions);
    }

    #[test]
    fn an_aborted_part_is_never_published_and_a_second_abort_is_harmless() {
        let tmp = tempfile::tempdir().unwrap();
        let (_f, mut sink) = recovered(tmp.path());
        write_all(&mut sink, &[1]);
        let first = pre_commit(&mut sink, 1);
        apply(&first);
        sink.committed(1);
        write_all(&mut sink, &[2]);
        let second = pre_commit(&mut sink, 2);
        assert_eq!(second.len(), 1);
        // Epoch 2 never completes: the rollback aborts its action.
        PartPublisher.abort(&second[0]).unwrap();
        PartPublisher.abort(&second[0]).unwrap();
        assert!(!second[0].staged.exists());
        assert!(file_names(&tmp.path().join(STAGING)).is_empty());
        assert_eq!(read_committed(tmp.path()).unwrap(), lines([1]));
        // Aborting a published part's action leaves the part alone.
        PartPublisher.abort(&first[0]).unwrap();
        assert_eq!(read_committed(tmp.path()).unwrap(), lines([1]));
        // Committing an aborted action is refused, naming the file.
        let err = PartPublisher.commit(&second[0]).unwrap_err().to_string();
        assert!(err.contains(&part_name(0, 2)), "{err}");
    }

    #[test]
    fn io_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (_f, mut sink) = recovered(tmp.path());
        fs::remove_dir_all(tmp.path().join(STAGING)).unwrap();
        write_all(&mut sink, &[1]);
        let err = TwoPhaseCommitSink::<u64>::pre_commit(&mut sink, 1).unwrap_err();
        assert!(err.to_string().contains(STAGING), "{err}");
    }

    /// The records of each epoch of a two-partition job; epoch 3 is large enough to
    /// spill to disk before its barrier.
    fn epochs() -> Vec<(u64, Vec<u64>)> {
        vec![
            (1, (0..10).collect()),
            (2, (10..25).collect()),
            (3, (25..30_000).collect()),
            (4, (30_000..30_100).collect()),
            (5, (30_100..60_000).collect()),
        ]
    }

    fn write_epoch(sinks: &mut [Part], items: &[u64]) {
        for &x in items {
            sinks[(x % 2) as usize].write(x).unwrap();
        }
    }

    /// Runs the epochs from `epochs()[from..]` through fresh sinks and completes each.
    fn run_to_end(f: &Factory, from: usize) {
        let mut sinks = vec![open(f, 0), open(f, 1)];
        for (epoch, items) in &epochs()[from..] {
            write_epoch(&mut sinks, items);
            let actions: Vec<_> = sinks.iter_mut().map(|s| pre_commit(s, *epoch)).collect();
            for a in &actions {
                apply(a);
            }
            for s in &mut sinks {
                s.committed(*epoch);
            }
        }
        for s in &mut sinks {
            s.finish().unwrap();
            apply(&pre_commit(s, 100));
        }
    }

    #[test]
    fn a_crash_and_replay_gives_the_output_of_a_run_without_crash() {
        let tmp = tempfile::tempdir().unwrap();
        let clean_dir = tmp.path().join("clean");
        let clean = factory(&clean_dir);
        recover(&clean);
        run_to_end(&clean, 0);

        let dir = tmp.path().join("crashed");
        let f = factory(&dir);
        recover(&f);
        let mut sinks = vec![open(&f, 0), open(&f, 1)];
        let input = epochs();
        // Epoch 1 completes.
        write_epoch(&mut sinks, &input[0].1);
        for s in &mut sinks {
            apply(&pre_commit(s, 1));
            s.committed(1);
        }
        // Epochs 2 and 3 are staged; epoch 4 is half written (and spilled).
        write_epoch(&mut sinks, &input[1].1);
        let snapshot2: Vec<_> = sinks.iter_mut().map(|s| pre_commit(s, 2)).collect();
        write_epoch(&mut sinks, &input[2].1);
        let staged3: Vec<_> = sinks.iter_mut().map(|s| pre_commit(s, 3)).collect();
        assert_eq!(staged3[0].len(), 2, "epoch 2 not yet committed");
        write_epoch(&mut sinks, &input[3].1[..50]);
        write_epoch(&mut sinks, &input[4].1);
        assert!(dir.join(STAGING).join("part-00000.open").exists());
        // Epoch 2 completes; the crash comes after partition 0 published its file.
        apply(&snapshot2[0]);
        drop(sinks);

        // Recovery: redo the restored epoch's actions, recover, replay after epoch 2.
        for a in &snapshot2 {
            apply(a);
        }
        recover(&f);
        assert!(file_names(&dir.join(STAGING)).is_empty());
        assert_eq!(
            read_committed(&dir).unwrap(),
            lines(
                (0..25)
                    .filter(|x| x % 2 == 0)
                    .chain((0..25).filter(|x| x % 2 == 1))
            )
        );
        run_to_end(&f, 2);

        assert_eq!(
            read_committed(&dir).unwrap(),
            read_committed(&clean_dir).unwrap()
        );
        assert_eq!(file_names(&dir), file_names(&clean_dir));
        assert_eq!(read_committed(&dir).unwrap().len(), 60_000);
        // A later crash that restores epoch 2 again redoes its actions harmlessly.
        for a in &snapshot2 {
            apply(a);
        }
        assert_eq!(
            read_committed(&dir).unwrap(),
            read_committed(&clean_dir).unwrap()
        );
    }
}
