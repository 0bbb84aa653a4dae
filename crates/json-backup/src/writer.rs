//! The writer: appends whole groups with one write and one fdatasync, keeps the index,
//! and after a failed write or sync drops its handle and cuts the file back to the last
//! acknowledged byte before writing again (a failed fsync is never retried on a handle).
//! It also rotates (seals the active file as a segment) and compacts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::Utc;
use synclog_core::group::BatchWriter;
use synclog_core::retention::{check_marker, Applied, Pruned};
use synclog_core::run::{seal_batch, Committed, Planner};
use synclog_core::{Durability, Error, ImportReport, LogId, LogRecord, NewLog, PruneMarker, Result};

use crate::book::{self, BookRef};
use crate::format;
use crate::fs::{AppendFile, FileId, FileSystem, LockError, LockGuard, ReadAt};
use crate::index::{Merged, StoreIndex};
use crate::load::{self, sibling, Entry, Loaded, MarkState, MAX_OFFSET};
use crate::mark;
use crate::sidefile::{self, DiskIndex, SkippedLine};

/// A file of the store, open for reading.
#[derive(Debug, Clone)]
pub(crate) struct OpenFile {
    pub path: PathBuf,
    pub reader: Arc<dyn ReadAt>,
    /// Where its last committed group ends. For the active file this is where it ended
    /// at open or rotation; [`Shared::end`] follows it as groups are written.
    pub end: u64,
    /// Lines up to `end` (for the active file, [`Shared::lines`] follows them).
    pub lines: u64,
}

/// The store's files by number: sealed segments, then the active file (the last).
pub(crate) type Files = BTreeMap<u16, OpenFile>;

/// What readers share with the writer. Only acknowledged records are in `index`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub index: StoreIndex,
    /// Replaced whole (never changed in place) when the files change, so a reader can
    /// hold a snapshot while the writer rotates.
    pub files: Arc<Files>,
    /// Bytes of the active file acknowledged so far (verification reads no further).
    pub end: u64,
    /// Lines of the active file up to `end`.
    pub lines: u64,
    /// The lines skipped at open (the writer adds none), for the side file.
    pub skipped: Vec<SkippedLine>,
    /// The high-water mark: the highest id handed out, kept up by the writer.
    pub mark: MarkState,
    /// The active file's identity and length when this process last caught up with it
    /// (see [`JsonWriter::catch_up`]): a read that finds either changed has the writer
    /// read what other processes appended.
    pub seen: (Option<FileId>, u64),
    /// The ids indexed since the key book (see [`crate::book`]) was last brought up to date
    /// that it has not noted: other processes' records read by a catch-up, imported
    /// records. `None` while no book is kept for this index (none built yet, files loaded
    /// afresh, or too many ids waited): the next use of the book builds it.
    pub behind: Option<Vec<u64>>,
    /// The store's prune markers, oldest first.
    pub prunes: Arc<Vec<PruneMarker>>,
    /// The ids they cover, merged: never read, imported or handed out again.
    pub pruned: Pruned,
    /// The markers file's identity and length as read (see [`crate::load::Loaded`]).
    pub prunes_seen: Option<(FileId, u64)>,
    /// Some indexed record is covered by a marker: a prune was cut off before it deleted
    /// all it marked. Reads skip such records; the writer deletes them at open.
    pub prune_pending: bool,
}

impl Shared {
    /// Opens a reader on every loaded file.
    pub(crate) fn open(fs: &dyn FileSystem, loaded: Loaded) -> Result<Shared> {
        let mut files = Files::new();
        let (mut end, mut lines) = (0, 0);
        let skipped = loaded
            .report
            .corrupt_lines
            .iter()
            .filter_map(|c| {
                let f = loaded.files.iter().find(|f| f.path == c.file)?;
                Some(SkippedLine::new(f.number, c))
            })
            .collect();
        for f in loaded.files {
            let reader = fs
                .open_read_at(&f.path)
                .map_err(|e| Error::io(format!("opening {} for reading", f.path.display()), e))?;
            (end, lines) = (f.end, f.lines);
            files.insert(
                f.number,
                OpenFile {
                    path: f.path,
                    reader: Arc::from(reader),
                    end: f.end,
                    lines: f.lines,
                },
            );
        }
        let pruned = Pruned::of(loaded.prunes.iter());
        let mut prune_pending = false;
        for r in pruned.ranges() {
            let ids = r.first.get()..r.last.get().saturating_add(1);
            if !loaded.index.take(ids, false, 1)?.is_empty() {
                prune_pending = true;
                break;
            }
        }
        let mut mark = loaded.mark;
        // Ids stay above every pruned one, even one this copy never held.
        mark.mark.high_water = mark.mark.high_water.max(pruned.last_id().map_or(0, LogId::get));
        Ok(Shared {
            index: loaded.index,
            files: Arc::new(files),
            end,
            lines,
            skipped,
            mark,
            seen: (None, 0),
            behind: None,
            prunes: Arc::new(loaded.prunes),
            pruned,
            prunes_seen: loaded.prunes_seen,
            prune_pending,
        })
    }

    /// Lists `ids` (just indexed) for the key book, if one is kept.
    fn note_behind(&mut self, ids: impl Iterator<Item = u64>) {
        if let Some(behind) = self.behind.as_mut() {
            behind.extend(ids);
            if behind.len() > book::MAX_BEHIND {
                self.behind = None;
            }
        }
    }

    /// The active file's number.
    pub(crate) fn active(&self) -> u16 {
        self.files.keys().next_back().copied().unwrap_or(1)
    }

    /// What a side file written now would cover: every file up to its acknowledged end,
    /// the entries, the lines skipped, and which file each path names now (the caller
    /// holds the store's locks). Each file's identity is read later, off the lock, and the
    /// job gives up if a path names another file by then (another process compacted or
    /// rotated it).
    fn fold_job(&self, fs: &dyn FileSystem) -> FoldJob {
        let active = self.active();
        FoldJob {
            files: self
                .files
                .iter()
                .map(|(&n, f)| match n == active {
                    true => (n, f.path.clone(), self.end, self.lines),
                    false => (n, f.path.clone(), f.end, f.lines),
                })
                .collect(),
            ids: self
                .files
                .values()
                .map(|f| fs.file_id(&f.path).ok().flatten())
                .collect(),
            disk: self.index.disk.clone(),
            mem: self.index.mem.items().to_vec(),
            skipped: self.skipped.clone(),
        }
    }

    /// Whether the entries added since the side file was written are worth writing it
    /// again for: as many as a 64th of those it holds (rewriting it costs 24 bytes a record
    /// it holds; reading and checking a line at open costs about 64 times that), or
    /// `fold_at`, or any when there is no side file.
    fn worth_folding(&self, fold_at: usize) -> bool {
        let mem = self.index.mem.len() as u64;
        let disk = self.index.disk.as_ref().map(|d| d.len());
        // `fold_at` alone would rewrite a 10M-record side file, under the store's locks,
        // at every close or rotation after 65k appends; the next open reads those lines.
        let cap = (fold_at.max(FOLD_CAP)) as u64;
        mem > 0 && disk.is_none_or(|d| mem * 64 >= d || mem >= cap)
    }

    /// Every file with its path and acknowledged end, in number order.
    pub(crate) fn spans(&self) -> Vec<(u16, PathBuf, u64)> {
        let active = self.active();
        self.files
            .iter()
            .map(|(&n, f)| (n, f.path.clone(), if n == active { self.end } else { f.end }))
            .collect()
    }
}

pub(crate) type SharedRef = Arc<RwLock<Shared>>;

/// Entries in memory past which the side file is rewritten in the background whatever
/// the store's size (24 MiB of entries).
const FOLD_CAP: usize = 1 << 20;

/// Whether `mem` entries in memory are due to be folded into a side file holding `disk`:
/// at least `fold_at`, and a 16th of what it holds (each rewrite copies the whole side
/// file, so folding at a fixed count would make a writer rewrite a 10M-record store's
/// 240 MB side file every `fold_at` appends), or [`FOLD_CAP`]. Memory stays under
/// `max(fold_at, FOLD_CAP)` entries, and a record's entry is rewritten about 16 times
/// over its life until the store outgrows 16 × `FOLD_CAP` records.
fn fold_due(mem: usize, disk: Option<u64>, fold_at: usize) -> bool {
    mem >= fold_at && disk.is_none_or(|d| mem as u64 * 16 >= d || mem >= FOLD_CAP)
}

/// A side file to write: a snapshot of what it covers.
struct FoldJob {
    /// Number, path, end, lines.
    files: Vec<(u16, PathBuf, u64, u64)>,
    /// Which file each path named when the job was made.
    ids: Vec<Option<FileId>>,
    disk: Option<Arc<DiskIndex>>,
    mem: Vec<(u64, Entry)>,
    skipped: Vec<SkippedLine>,
}

impl FoldJob {
    /// Writes the side file, then swaps it in: the entries it took from memory leave it.
    /// Only the writer changes the index, and it runs no other fold meanwhile, so the
    /// entries in memory are still a superset of `mem`.
    fn run(self, fs: &dyn FileSystem, path: &Path, shared: &SharedRef) -> Result<()> {
        let covered = self
            .files
            .iter()
            .map(|(n, p, end, lines)| load::cover(fs, *n, p, *end, *lines))
            .collect::<Result<Vec<_>>>()?;
        for ((_, p, _, _), id) in self.files.iter().zip(&self.ids) {
            let now = fs
                .file_id(p)
                .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
            if now != *id {
                return Err(Error::Backend {
                    engine: "json",
                    context: format!("writing the side file of {}", path.display()),
                    source: format!("{} was replaced meanwhile (by another process)", p.display()).into(),
                });
            }
        }
        let entries = Merged::new(self.disk, &self.mem);
        let written = sidefile::write(fs, path, covered, entries, self.skipped)?;
        let mut s = write_shared(shared);
        s.index.disk = Some(Arc::new(written));
        s.index.mem.remove_sorted(&self.mem);
        Ok(())
    }
}

pub(crate) fn read_shared(s: &SharedRef) -> std::sync::RwLockReadGuard<'_, Shared> {
    s.read().unwrap_or_else(|p| p.into_inner())
}

/// A read-only handle whose side file was found damaged: loads the files whole (writing
/// nothing) and answers from that from now on.
pub(crate) fn reload_whole(fs: &dyn FileSystem, path: &Path, shared: &SharedRef) -> Result<()> {
    if !read_shared(shared).index.side_damaged() {
        return Ok(());
    }
    let fresh = Shared::open(fs, load::load_with(fs, path, false, false)?)?;
    *write_shared(shared) = fresh;
    Ok(())
}

pub(crate) fn write_shared(s: &SharedRef) -> std::sync::RwLockWriteGuard<'_, Shared> {
    s.write().unwrap_or_else(|p| p.into_inner())
}

/// What compaction did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CompactReport {
    /// Records in the store afterwards.
    pub records: u64,
    /// Records left out because a prune marker covers them (a prune deletes by
    /// compacting; a compaction finishes a prune that was cut off).
    pub pruned: u64,
    /// Sealed segments removed because a prune left nothing in them.
    pub segments_removed: u64,
    /// Files rewritten: the active file always, a sealed segment only if it held skipped lines.
    pub files_rewritten: u64,
    /// Bytes of lines skipped at open (corrupt, or repeating an id with another record),
    /// saved to `rejected_to`.
    pub rejected_bytes: u64,
    /// Lines saved to `rejected_to`.
    pub rejected_lines: u64,
    /// Lines dropped because they repeated a stored record identically.
    pub duplicates_dropped: u64,
    /// Where the skipped lines were saved (one file for each file that had any).
    pub rejected_to: Vec<PathBuf>,
    /// Bytes of all the store's files before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotateReport {
    /// The sealed segment the active file became.
    pub sealed: PathBuf,
    /// Records in it.
    pub records: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

pub(crate) struct JsonWriter {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    file: Option<Box<dyn AppendFile>>,
    unsynced: bool,
    next_id: u64,
    shared: SharedRef,
    buf: Vec<u8>,
    /// Rotate before a write once the active file reaches this many bytes.
    rotate_after: Option<u64>,
    /// A rotation started and did not finish: finish it before anything else touches
    /// the active file (which may be missing between the rotation's two renames).
    rotation_pending: bool,
    /// The lock on the active file itself; a file that replaces it (rotation,
    /// compaction) is locked before it is renamed into place.
    active_lock: Option<Box<dyn LockGuard>>,
    /// An uncommitted end the last catch-up could not move aside (its bytes): writes fail
    /// until one can.
    stuck_tail: Option<u64>,
    /// Entries in memory when the last background fold started.
    fold_started_at: usize,
    /// A side file being written in the background (once the entries in memory reach
    /// `fold_at`); joined before anything else writes one, and at close.
    fold: Option<std::thread::JoinHandle<()>>,
    fold_at: usize,
    /// `<file>.lock`, taken (with the active file's own lock) around every write.
    lock_path: PathBuf,
    lock_wait: std::time::Duration,
    /// `<file>.lock` while this writer holds the store's locks (inside
    /// [`JsonWriter::exclusive`]).
    name_lock: Option<Box<dyn LockGuard>>,
    /// The identity of the active file this writer has caught up with.
    active_id: Option<FileId>,
    /// A write of this writer that failed and could not be cut at once: how many bytes
    /// it wrote after `end` and their CRC-32C, so that the next locked catch-up cuts them
    /// only if they are still exactly those bytes.
    failed: Option<FailedWrite>,
    /// The store's keys (shared with the store's handle), for commits with keys.
    book: BookRef,
}

/// See [`JsonWriter::failed`].
#[derive(Debug, Clone, Copy)]
struct FailedWrite {
    bytes: u64,
    crc: u32,
}

impl Drop for JsonWriter {
    fn drop(&mut self) {
        self.join_fold();
    }
}

/// Locks a file about to be renamed over the active file, so that an opener through
/// another path (a hard link, another mount) that locks it finds it held.
pub(crate) fn lock_replacement(fs: &dyn FileSystem, path: &Path) -> Result<Box<dyn LockGuard>> {
    let name = path.display().to_string();
    fs.lock_file(path, std::time::Duration::ZERO)
        .map(|(guard, _)| guard)
        .map_err(|e| match e {
            LockError::Held { .. } => Error::Locked {
                resource: name,
                detail: "another process holds the file that was to replace the active file".into(),
                source: None,
            },
            LockError::Io(e) => Error::io(format!("locking {name}"), e),
        })
}

impl JsonWriter {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        path: PathBuf,
        shared: SharedRef,
        rotate_after: Option<u64>,
        lock_wait: std::time::Duration,
        fold_at: usize,
        book: BookRef,
    ) -> Self {
        let active_id = fs.file_id(&path).ok().flatten();
        let len = fs.len(&path).ok().flatten().unwrap_or(0);
        write_shared(&shared).seen = (active_id, len);
        // An uncommitted end opening had to leave in place (no space) is moved aside by
        // the first write's catch-up, which reads on from `end`.
        let next_id = {
            let s = read_shared(&shared);
            s.index.last_id().unwrap_or(0).max(s.mark.mark.high_water) + 1
        };
        JsonWriter {
            fs,
            file: None,
            unsynced: false,
            next_id,
            shared,
            buf: Vec::with_capacity(1 << 16),
            rotate_after,
            rotation_pending: false,
            active_lock: None,
            fold: None,
            stuck_tail: None,
            fold_started_at: 0,
            fold_at,
            lock_path: sibling(&path, ".lock"),
            lock_wait,
            name_lock: None,
            active_id,
            failed: None,
            book,
            path,
        }
    }

    /// Runs `f` holding the store's locks: `<file>.lock` (waiting up to the lock wait),
    /// then the active file's own (so a hard link or another mount meets it too), after
    /// catching up with what other processes wrote since this one last did. Writers in
    /// several processes thus take turns per group, not per lifetime. Nested calls run
    /// `f` under the locks already held.
    pub(crate) fn exclusive<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        // The locks live in `self` while held: if `f` panics, the writer is left still
        // holding them, never believing it holds them when it does not.
        if self.name_lock.is_some() {
            return f(self);
        }
        let name = self.name();
        let wait = self.lock_wait;
        let deadline = std::time::Instant::now() + wait;
        let name_lock = self
            .fs
            .lock(&self.lock_path, wait)
            .map_err(|e| crate::name_lock_error(&name, &self.lock_path, wait, e))?;
        let exists = self
            .fs
            .len(&self.path)
            .map_err(|e| Error::io(format!("reading {name}"), e))?
            .is_some();
        if exists {
            self.active_lock = Some(crate::lock_active(&*self.fs, &self.path, deadline, &name, wait)?);
        }
        self.name_lock = Some(name_lock);
        let result = self
            .cut_pending_failed_write()
            .and_then(|()| self.drop_damaged_side_file())
            .and_then(|()| self.catch_up())
            .and_then(|()| f(self));
        self.active_lock = None;
        self.name_lock = None;
        result
    }

    /// This writer's own failed write whose cut failed at the time: cut now if its bytes
    /// are still exactly what it wrote right after `end` (nobody came after them; anyone
    /// who did moved them aside or kept them as a committed group). Kept for the next try
    /// if the cut fails again.
    fn cut_pending_failed_write(&mut self) -> Result<()> {
        let Some(failed) = self.failed else {
            return Ok(());
        };
        let name = self.name();
        let end = read_shared(&self.shared).end;
        let same_file = self.fs.file_id(&self.path).ok().flatten() == self.active_id;
        let len = self.fs.len(&self.path).ok().flatten().unwrap_or(0);
        if same_file && len == end + failed.bytes && self.bytes_crc(end, failed.bytes)? == Some(failed.crc) {
            self.fs
                .truncate(&self.path, end)
                .map_err(|e| Error::io(format!("cutting a failed write off {name}"), e))?;
            self.file = None;
        }
        self.failed = None;
        Ok(())
    }

    /// Reads what other processes appended to the active file since this writer last
    /// looked, from where it left off (never the whole file), and indexes it; a file
    /// that was replaced (rotated or compacted by another process) is loaded afresh.
    /// Only under the store's locks (see [`JsonWriter::exclusive`]): no group is being
    /// written then, so an uncommitted end is a dead or failed writer's and is moved
    /// aside (as at open), and every group read is one its writer kept.
    fn catch_up(&mut self) -> Result<()> {
        debug_assert!(self.name_lock.is_some());
        let name = self.name();
        let io = |what: String| move |e| Error::io(what, e);
        // Another process's marker (it may have died before deleting anything, so the
        // active file need not have been replaced): loaded afresh, markers included.
        let prunes_at = crate::prunes::prunes_path(&self.path);
        let prunes = self
            .fs
            .stat(&prunes_at)
            .map_err(io(format!("reading {}", prunes_at.display())))?;
        if prunes != read_shared(&self.shared).prunes_seen {
            return self.reload(true);
        }
        let stat = self.fs.stat(&self.path).map_err(io(format!("reading {name}")))?;
        let (id, len) = match stat {
            Some((id, len)) if Some(id) == self.active_id => (Some(id), len),
            _ => return self.reload(true),
        };
        let (end, lines, active) = {
            let s = read_shared(&self.shared);
            (s.end, s.lines, s.active())
        };
        if len == end {
            write_shared(&self.shared).seen = (id, len);
            return Ok(());
        }
        if len < end {
            return self.reload(true);
        }
        self.stuck_tail = None;
        let grown = load::read_new(&*self.fs, &self.path, active, (end, lines), true)?;
        self.adopt(grown, active)?;
        // Only now: a catch-up that failed leaves the next read to try again.
        let len = self.fs.len(&self.path).ok().flatten().unwrap_or(0);
        write_shared(&self.shared).seen = (id, len);
        Ok(())
    }

    /// CRC-32C of `bytes` bytes of the active file from `at`, `None` if they cannot be read.
    fn bytes_crc(&self, at: u64, bytes: u64) -> Result<Option<u32>> {
        let reader = self
            .fs
            .open_read_at(&self.path)
            .map_err(|e| Error::io(format!("opening {}", self.name()), e))?;
        let mut buf = vec![0; bytes as usize];
        Ok(reader
            .read_exact_at(&mut buf, at)
            .ok()
            .map(|()| crc32c::crc32c(&buf)))
    }

    /// Indexes records other processes appended (a record whose id is indexed already
    /// keeps its first copy, as at open) and raises the next id past them and past any
    /// uncommitted end moved aside.
    fn adopt(&mut self, grown: load::Grown, active: u16) -> Result<()> {
        let mut aside_top = 0;
        let mut aside_ids: mark::Ranges = Vec::new();
        for tail in &grown.report.torn_tails {
            let aside = mark::read_aside(&*self.fs, &tail.moved_to)?;
            aside_top = aside_top.max(aside.max_id);
            aside_ids.extend_from_slice(&aside.whole);
            tracing::warn!(
                store = %self.name(),
                bytes = tail.bytes,
                moved_to = %tail.moved_to.display(),
                "an uncommitted end another process left (never acknowledged) was moved aside"
            );
        }
        let mut shared = write_shared(&self.shared);
        let mut seen = std::collections::HashSet::new();
        let mut fresh = Vec::with_capacity(grown.committed.len());
        for (id, entry) in grown.committed {
            if seen.insert(id) && shared.index.get(id)?.is_none() {
                fresh.push((id, entry));
            }
        }
        let top = fresh.iter().map(|(id, _)| *id).max().unwrap_or(0);
        let state = &mut shared.mark.mark;
        state.high_water = state.high_water.max(top).max(aside_top);
        mark::add_ranges(&mut state.skipped, &aside_ids);
        for c in &grown.report.corrupt_lines {
            shared.skipped.push(SkippedLine::new(active, c));
        }
        // For the key book, if one is kept: read when it is next used.
        shared.note_behind(fresh.iter().map(|(id, _)| *id));
        shared.index.insert_many(fresh);
        shared.end = grown.end;
        shared.lines = grown.lines;
        let next = shared
            .index
            .last_id()
            .unwrap_or(0)
            .max(shared.mark.mark.high_water)
            + 1;
        let in_place = grown.report.tail_left_in_place;
        drop(shared);
        self.next_id = self.next_id.max(next);
        self.stuck_tail = in_place;
        self.fold_if_due();
        Ok(())
    }

    /// Refuses to write while an uncommitted end past the last committed group could not
    /// be moved aside (a full disk): writing after it would bury it.
    fn check_tail(&self) -> Result<()> {
        match self.stuck_tail {
            None => Ok(()),
            Some(bytes) => Err(Error::io(
                format!("writing to {}", self.name()),
                std::io::Error::other(format!(
                    "an uncommitted end of {bytes} bytes (a dead or failed write) could not be moved aside (a full disk?)"
                )),
            )),
        }
    }

    /// A side file found damaged when a block of it was read: removed (under the locks)
    /// and the store loaded whole, which writes a new one.
    fn drop_damaged_side_file(&mut self) -> Result<()> {
        if !read_shared(&self.shared).index.side_damaged() {
            return Ok(());
        }
        self.join_fold();
        let side = sidefile::side_path(&self.path);
        if self.fs.len(&side).ok().flatten().is_some() {
            self.fs
                .remove_file(&side)
                .map_err(|e| Error::io(format!("removing the damaged {}", side.display()), e))?;
        }
        self.reload_with(true, false)
    }

    /// Loads the store afresh: another process replaced the active file (rotation,
    /// compaction) or cut it. `locked` as in [`JsonWriter::catch_up`].
    fn reload(&mut self, locked: bool) -> Result<()> {
        self.reload_with(locked, true)
    }

    fn reload_with(&mut self, locked: bool, use_side: bool) -> Result<()> {
        self.join_fold();
        // Groups written at a weaker level through the old handle: sync them before the
        // handle goes (the file may be a sealed segment now), so a later `sync` cannot
        // succeed on the new file while they are still unsynced.
        if self.unsynced {
            if let Some(file) = self.file.as_mut() {
                file.sync_data()
                    .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
                self.unsynced = false;
            }
        }
        let loaded = load::load_with(&*self.fs, &self.path, locked, use_side)?;
        self.stuck_tail = loaded.report.tail_left_in_place;
        crate::warn_about(&self.name(), &loaded.report);
        let mut fresh = Shared::open(&*self.fs, loaded)?;
        let kept = read_shared(&self.shared).mark.clone();
        let state = &mut fresh.mark.mark;
        state.high_water = state.high_water.max(kept.mark.high_water);
        mark::add_ranges(&mut state.skipped, &kept.mark.skipped);
        let id = self
            .fs
            .file_id(&self.path)
            .map_err(|e| Error::io(format!("reading {}", self.name()), e))?;
        let len = self.fs.len(&self.path).ok().flatten().unwrap_or(0);
        fresh.seen = (id, len);
        let next = fresh.index.last_id().unwrap_or(0).max(fresh.mark.mark.high_water) + 1;
        self.next_id = self.next_id.max(next);
        *write_shared(&self.shared) = fresh;
        self.active_id = id;
        self.file = None;
        self.failed = None;
        // Another process finished a rotation this one left half done.
        self.rotation_pending = false;
        Ok(())
    }

    /// Waits for a side file being written in the background.
    fn join_fold(&mut self) {
        if let Some(fold) = self.fold.take() {
            let _ = fold.join();
        }
    }

    /// Writes the side file now if it is worth it; a failure is a warning (it is a cache).
    fn fold_now(&mut self) {
        self.join_fold();
        let job = {
            let s = read_shared(&self.shared);
            if !s.worth_folding(self.fold_at) {
                return;
            }
            s.fold_job(&*self.fs)
        };
        if let Err(e) = job.run(&*self.fs, &self.path, &self.shared) {
            tracing::warn!(
                store = %self.name(),
                error = %e,
                "could not write the index side file; the next open reads what it lacks"
            );
        }
    }

    /// Starts writing the side file in the background once the entries in memory reach
    /// `fold_at`, so that memory does not grow with the store and appends do not wait.
    fn fold_if_due(&mut self) {
        if self.fold.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        let job = {
            let s = read_shared(&self.shared);
            let mem = s.index.mem.len();
            // A fold that succeeded took its entries out of memory; one that failed (a full
            // disk, a file replaced meanwhile) is tried again only `fold_at` entries later,
            // not at every group.
            if mem < self.fold_started_at {
                self.fold_started_at = 0;
            }
            if mem < self.fold_started_at + self.fold_at
                || !fold_due(mem, s.index.disk.as_ref().map(|d| d.len()), self.fold_at)
            {
                return;
            }
            self.fold_started_at = mem;
            s.fold_job(&*self.fs)
        };
        self.join_fold();
        let (fs, path, shared) = (self.fs.clone(), self.path.clone(), self.shared.clone());
        let spawned = std::thread::Builder::new()
            .name("synclog-json-index".into())
            .spawn(move || {
                if let Err(e) = job.run(&*fs, &path, &shared) {
                    tracing::warn!(
                        store = %path.display(),
                        error = %e,
                        "could not write the index side file; the next open reads what it lacks"
                    );
                }
            });
        match spawned {
            Ok(handle) => self.fold = Some(handle),
            Err(e) => {
                tracing::warn!(store = %self.name(), error = %e, "could not start writing the index side file")
            }
        }
    }

    /// Finishes a pending rotation, or rotates if the active file has grown past the limit.
    fn rotate_if_due(&mut self) -> Result<()> {
        let full = self
            .rotate_after
            .is_some_and(|max| read_shared(&self.shared).end >= max);
        if self.rotation_pending || full {
            self.rotate_locked()?;
        }
        Ok(())
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn file(&mut self) -> Result<&mut Box<dyn AppendFile>> {
        if self.file.is_none() {
            let f = self
                .fs
                .open_append(&self.path)
                .map_err(|e| Error::io(format!("opening {} for appending", self.name()), e))?;
            self.file = Some(f);
        }
        let name = self.name();
        self.file.as_mut().ok_or_else(|| Error::Closed { store: name })
    }

    /// Appends `self.buf` (whole lines for `records`) and the group's commit line at
    /// `durability`, then indexes the records.
    fn write_buffered(&mut self, records: &[LogRecord], durability: Durability) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        format::encode_commit(records.len(), &mut buf);
        let result = self.rotate_if_due().and_then(|()| {
            if read_shared(&self.shared).end + buf.len() as u64 > MAX_OFFSET {
                return Err(Error::Unsupported {
                    engine: "json",
                    what: format!(
                        "{}: files larger than {MAX_OFFSET} bytes (rotate sooner)",
                        self.name()
                    ),
                });
            }
            self.append_and_sync(&buf, durability)
        });
        if let Err(e) = result {
            // Drop the handle: the bytes may be half written, and a failed fsync must not
            // be retried on it. Cut them off now, holding the locks (no other process can
            // have read or written past `end` meanwhile); if the cut fails too, the next
            // locked catch-up cuts them, if they are still exactly these bytes.
            self.file = None;
            self.cut_failed_write(&buf);
            buf.clear();
            self.buf = buf;
            return Err(e);
        }
        let mut shared = write_shared(&self.shared);
        let file = shared.active();
        let mut offset = shared.end;
        let mut rest = &buf[..];
        let mut entries = Vec::with_capacity(records.len());
        for rec in records {
            let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let entry = Entry::new(file, offset, len as u32, rec.checksum);
            entries.push((rec.id.get(), entry));
            offset += len as u64 + 1;
            rest = rest.get(len + 1..).unwrap_or_default();
        }
        let top = entries.iter().map(|(id, _)| *id).max().unwrap_or(0);
        shared.mark.mark.high_water = shared.mark.mark.high_water.max(top);
        shared.index.insert_many(entries);
        shared.end += buf.len() as u64;
        shared.lines += records.len() as u64 + 1;
        shared.seen = (self.active_id, shared.end);
        drop(shared);
        buf.clear();
        self.buf = buf;
        self.fold_if_due();
        Ok(())
    }

    /// After a failed write of `buf` (whose bytes, whole or a prefix, may be past `end`).
    fn cut_failed_write(&mut self, buf: &[u8]) {
        let end = read_shared(&self.shared).end;
        let Ok(Some(len)) = self.fs.len(&self.path) else {
            return;
        };
        if len <= end {
            return;
        }
        if self.fs.truncate(&self.path, end).is_ok() {
            return;
        }
        let written = (len - end) as usize;
        self.failed = buf.get(..written).map(|part| FailedWrite {
            bytes: written as u64,
            crc: crc32c::crc32c(part),
        });
    }

    fn append_and_sync(&mut self, buf: &[u8], durability: Durability) -> Result<()> {
        let name = self.name();
        let file = self.file()?;
        file.append(buf)
            .map_err(|e| Error::io(format!("appending to {name}"), e))?;
        if durability == Durability::PowerLoss {
            file.sync_data()
                .map_err(|e| Error::io(format!("syncing {name}"), e))?;
            self.unsynced = false;
        } else {
            self.unsynced = true;
        }
        Ok(())
    }

    pub(crate) fn import(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.exclusive(|w| w.import_locked(records, durability))
    }

    /// As [`import`](Self::import), for records another copy holds intact. An offered id
    /// the index holds may be a damaged line: a load through the side file trusts it and
    /// reads no line, so the import would find the id present and write nothing. So when
    /// any offered id is held, the store is first loaded whole (the side file removed and
    /// written anew): damaged lines are set aside, their ids become absent, and the intact
    /// records are appended for them. This reads every line, once per repair.
    pub(crate) fn repair(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.exclusive(|w| {
            w.check_tail()?;
            let held = {
                let shared = read_shared(&w.shared);
                records
                    .iter()
                    .any(|r| !matches!(shared.index.get(r.id.get()), Ok(None)))
            };
            if held {
                w.join_fold();
                let side = sidefile::side_path(&w.path);
                if w.fs.len(&side).ok().flatten().is_some() {
                    w.fs.remove_file(&side).map_err(|e| {
                        Error::io(format!("removing {} to load the store whole", side.display()), e)
                    })?;
                }
                w.reload_with(true, false)?;
            }
            w.import_locked(records, durability)
        })
    }

    fn import_locked(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.check_tail()?;
        let mut report = ImportReport::default();
        let mut fresh: HashMap<u64, usize> = HashMap::new();
        let mut to_write: Vec<LogRecord> = Vec::new();
        {
            let shared = read_shared(&self.shared);
            for rec in records {
                if shared.pruned.contains(rec.id) {
                    report.pruned += 1;
                    continue;
                }
                let stored = shared
                    .index
                    .get(rec.id.get())?
                    .map(|e| e.checksum)
                    .or_else(|| fresh.get(&rec.id.get()).map(|&i| to_write[i].checksum));
                match stored {
                    Some(stored) => report.note_existing(rec.id, stored, rec.checksum),
                    None => {
                        fresh.insert(rec.id.get(), to_write.len());
                        to_write.push(rec);
                    }
                }
            }
        }
        if to_write.is_empty() {
            return Ok(report);
        }
        let mut buf = std::mem::take(&mut self.buf);
        for rec in &to_write {
            format::encode(rec, &mut buf)?;
        }
        self.buf = buf;
        self.write_buffered(&to_write, durability)?;
        // Their keys count as any record's: noted when the key book is next used.
        write_shared(&self.shared).note_behind(to_write.iter().map(|r| r.id.get()));
        let max = to_write.iter().map(|r| r.id.get()).max().unwrap_or(0);
        self.next_id = self.next_id.max(max + 1);
        report.inserted = to_write.len() as u64;
        Ok(report)
    }

    pub(crate) fn sync(&mut self, level: Durability) -> Result<()> {
        if self.rotation_pending {
            // Finishing the rotation syncs everything written before it.
            return self.exclusive(|w| w.rotate_locked()).map(drop);
        }
        self.sync_file(level)
    }

    fn sync_file(&mut self, level: Durability) -> Result<()> {
        if level == Durability::PowerLoss && self.unsynced {
            let name = self.name();
            let result = self.file()?.sync_data();
            if let Err(e) = result {
                // Never retried on this handle. Nothing past `end` is this writer's: the
                // groups it synced now were written (and indexed) already.
                self.file = None;
                return Err(Error::io(format!("syncing {name}"), e));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Seals the active file as the next segment (`<file>.seg-NNNNNN`) and starts a new,
    /// empty active file. Nothing leaves the store: its records are read from the segment.
    ///
    /// Steps: everything written is synced; `<file>.next` is written with the header and
    /// synced; `<file>` is renamed to the segment; `<file>.next` is renamed to `<file>`
    /// (each rename followed by a directory fsync). A crash between the renames leaves
    /// no `<file>` but a synced `<file>.next`, which opening (or the next write) renames
    /// into place. `None` if the active file holds no records.
    pub(crate) fn rotate(&mut self) -> Result<Option<RotateReport>> {
        self.exclusive(|w| w.rotate_locked())
    }

    fn rotate_locked(&mut self) -> Result<Option<RotateReport>> {
        self.check_tail()?;
        self.join_fold();
        let name = self.name();
        let io = |what: String| move |e| Error::io(what, e);
        let (active, end, lines) = {
            let s = read_shared(&self.shared);
            (s.active(), s.end, s.lines)
        };
        let next_number = active.checked_add(1).ok_or_else(|| Error::Unsupported {
            engine: "json",
            what: format!("more than {} segments of {name}", u16::MAX),
        })?;
        let seg = load::segment_path(&self.path, active);
        let next = load::next_path(&self.path);
        let header = format::header_line();
        let active_exists = self.fs.len(&self.path).map_err(io(format!("reading {name}")))?;
        if active_exists.is_some() {
            // Make every group durable, this writer's and other processes' written at a
            // weaker level: a segment is sealed whole.
            self.unsynced = true;
            self.file()?;
            self.sync_file(Durability::PowerLoss)?;
            if end <= header.len() as u64 {
                self.rotation_pending = false;
                return Ok(None);
            }
            if self
                .fs
                .len(&seg)
                .map_err(io(format!("reading {name}")))?
                .is_some()
            {
                return Err(Error::Corrupt {
                    location: seg.display().to_string(),
                    detail: "a segment with the number the active file was to get already exists; \
                             the store's files were changed outside it"
                        .into(),
                    source: None,
                });
            }
            self.prepare_next(&next, &header)?;
            self.rotation_pending = true;
            self.file = None;
            self.fs
                .rename(&self.path, &seg)
                .map_err(io(format!("sealing {name} as {}", seg.display())))?;
        } else if !self.rotation_pending {
            return Err(Error::io(
                format!("rotating {name}"),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the active file was removed while the store was open",
                ),
            ));
        } else {
            // Resuming a rotation cut off after sealing.
            if self
                .fs
                .len(&next)
                .map_err(io(format!("reading {name}")))?
                .is_none()
            {
                self.prepare_next(&next, &header)?;
            }
        }
        let lock = lock_replacement(&*self.fs, &next)?;
        self.fs
            .rename(&next, &self.path)
            .map_err(io(format!("renaming {} to {name}", next.display())))?;
        self.active_lock = Some(lock);
        self.active_id = self
            .fs
            .file_id(&self.path)
            .map_err(io(format!("reading {name}")))?;
        self.rotation_pending = false;
        let reader = self
            .fs
            .open_read_at(&self.path)
            .map_err(io(format!("opening {name} for reading")))?;
        // Counted under the read lock: only this writer changes the index.
        let records = read_shared(&self.shared).index.count_in(active);
        let mut shared = write_shared(&self.shared);
        let mut files = Files::clone(&shared.files);
        if let Some(f) = files.get_mut(&active) {
            f.path = seg.clone();
            f.end = end;
            f.lines = lines;
        }
        files.insert(
            next_number,
            OpenFile {
                path: self.path.clone(),
                reader: Arc::from(reader),
                end: header.len() as u64,
                lines: 1,
            },
        );
        shared.files = Arc::new(files);
        shared.end = header.len() as u64;
        shared.lines = 1;
        shared.seen = (self.active_id, shared.end);
        drop(shared);
        // The sealed segment's entries never change: a good time to write the side file.
        self.fold_now();
        Ok(Some(RotateReport {
            sealed: seg,
            records,
            bytes: end,
        }))
    }

    /// Writes `next` afresh with the header, synced, its name synced.
    fn prepare_next(&self, next: &Path, header: &[u8]) -> Result<()> {
        let io = |what: &str| {
            let what = format!("{what} {}", next.display());
            move |e| Error::io(what, e)
        };
        if self.fs.len(next).map_err(io("reading"))?.is_some() {
            // Left by a rotation cut off before sealing; it only ever holds a header.
            self.fs.truncate(next, 0).map_err(io("emptying"))?;
        }
        let mut file = self.fs.open_append(next).map_err(io("creating"))?;
        file.append(header).map_err(io("writing"))?;
        file.sync_data().map_err(io("syncing"))?;
        self.fs.sync_dir(next).map_err(io("syncing the directory of"))
    }

    /// Rewrites the active file, and every sealed segment that holds skipped lines, in id
    /// order without them: for each, a new file, synced, renamed over the old one,
    /// directory synced. Skipped lines are saved to `.rejected-…` files first. A crash at
    /// any step leaves each file whole, old or new.
    pub(crate) fn compact(&mut self) -> Result<CompactReport> {
        self.exclusive(|w| w.compact_locked())
    }

    fn compact_locked(&mut self) -> Result<CompactReport> {
        let result = self.compact_steps();
        if result.is_err() {
            // Some files may be rewritten or removed already: what this writer holds in
            // memory no longer describes them, so it loads the store afresh (a failure of
            // that too leaves the next group's catch-up to try).
            if let Err(e) = self.reload(true) {
                tracing::warn!(store = %self.name(), error = %e, "could not reload after a failed compaction");
            }
        }
        result
    }

    fn compact_steps(&mut self) -> Result<CompactReport> {
        self.check_tail()?;
        self.join_fold();
        if self.rotation_pending {
            self.rotate_locked()?;
        }
        self.file()?;
        self.sync_file(Durability::PowerLoss)?;
        // The writer is the index's only mutator, so a read lock gives a stable view. One
        // pass sorts the entries by file (in id order within each).
        // Records a prune marker covers are left out (a prune deletes this way).
        let (spans, files, active, mut by_file, mut covered) = {
            let s = read_shared(&self.shared);
            let mut by_file: BTreeMap<u16, Vec<Entry>> = BTreeMap::new();
            let mut covered: BTreeMap<u16, Vec<Entry>> = BTreeMap::new();
            for item in s.index.iter() {
                let (id, e) = item?;
                let pruned = LogId::new(id).is_some_and(|id| s.pruned.contains(id));
                let to = if pruned { &mut covered } else { &mut by_file };
                to.entry(e.file()).or_default().push(e);
            }
            (s.spans(), s.files.clone(), s.active(), by_file, covered)
        };
        let mut report = CompactReport::default();
        for (number, path, end) in spans {
            let Some(file) = files.get(&number) else { continue };
            let entries = by_file.remove(&number).unwrap_or_default();
            let gone = covered.remove(&number).unwrap_or_default();
            report.bytes_before += end;
            let skipped = match gone.is_empty() {
                true => self.save_rejected(&path, &entries, &*file.reader, end)?,
                false => {
                    let indexed: Vec<Entry> = entries.iter().chain(&gone).copied().collect();
                    self.save_rejected(&path, &indexed, &*file.reader, end)?
                }
            };
            report.rejected_bytes += skipped.bytes;
            report.rejected_lines += skipped.lines;
            report.duplicates_dropped += skipped.duplicates;
            report.rejected_to.extend(skipped.saved_to);
            report.pruned += gone.len() as u64;
            if number != active && skipped.bytes == 0 && skipped.duplicates == 0 && gone.is_empty() {
                continue;
            }
            if number != active && entries.is_empty() {
                // A sealed segment the prune emptied goes (what it held that was not a
                // record was saved aside just above).
                // Gone already (removed by an earlier try cut off before it reloaded): done.
                match self.fs.remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => self.fs.sync_dir(&path),
                }
                .map_err(|e| Error::io(format!("removing the pruned segment {}", path.display()), e))?;
                report.segments_removed += 1;
                continue;
            }
            if number == active {
                self.file = None;
            }
            let lock = rewrite(&*self.fs, &path, &entries, &*file.reader, number == active)?;
            if lock.is_some() {
                self.active_lock = lock;
            }
            report.files_rewritten += 1;
        }
        drop(files);
        let loaded = load::load(&*self.fs, &self.path, true)?;
        let mut fresh = Shared::open(&*self.fs, loaded)?;
        // The mark as this writer kept it (it may be ahead of the saved one).
        let kept = read_shared(&self.shared).mark.clone();
        if kept.mark.high_water >= fresh.mark.mark.high_water {
            fresh.mark = kept;
        }
        // The same records under the same ids (lines skipped at open were never indexed,
        // so never in the key book): the book stays valid, with what it has yet to note.
        // Unless records were pruned: the book is built again when next used, without them.
        let behind = write_shared(&self.shared).behind.take();
        if report.pruned == 0 {
            fresh.behind = behind;
        }
        report.bytes_after = fresh.spans().iter().map(|(_, _, end)| end).sum();
        report.records = fresh.index.len();
        self.active_id = self
            .fs
            .file_id(&self.path)
            .map_err(|e| Error::io(format!("reading {}", self.name()), e))?;
        fresh.seen = (self.active_id, fresh.end);
        *write_shared(&self.shared) = fresh;
        Ok(report)
    }
}

impl JsonWriter {
    /// Stores `marker` (unless stored already) and deletes the records it covers, under
    /// the store's locks. The marker and the format marker are durable before anything is
    /// deleted; the deletion is a compaction that leaves out every record a marker covers
    /// (sealed segments it empties are removed, the others rewritten, the active file
    /// rewritten by write-then-rename). A crash in between leaves covered records that
    /// reads skip and the next writer's open (or this call, made again) deletes.
    pub(crate) fn apply_prune(&mut self, marker: PruneMarker) -> Result<Applied> {
        check_marker(&marker)?;
        self.exclusive(|w| w.apply_prune_locked(marker))
    }

    fn apply_prune_locked(&mut self, marker: PruneMarker) -> Result<Applied> {
        self.check_tail()?;
        // The markers as stored now (under the locks, so no other process is writing
        // them): none another process stored is ever dropped by this write.
        let mut all = crate::prunes::read(&*self.fs, &self.path)?;
        for known in read_shared(&self.shared).prunes.iter() {
            if !all.contains(known) {
                all.push(known.clone());
            }
        }
        let already_marked = all.contains(&marker);
        if !already_marked {
            all.push(marker.clone());
            // The format first (a release that cannot read markers refuses the store from
            // now on), then the markers, then the deletion.
            crate::version::write(&*self.fs, &self.path, crate::version::PRUNES_FORMAT)?;
            crate::prunes::write(&*self.fs, &self.path, &all)?;
            let top = marker.last_id().map_or(0, LogId::get);
            let seen = self
                .fs
                .stat(&crate::prunes::prunes_path(&self.path))
                .map_err(|e| Error::io(format!("reading the prune markers of {}", self.name()), e))?;
            let mut s = write_shared(&self.shared);
            s.pruned = Pruned::of(all.iter());
            s.prunes = Arc::new(all);
            s.prunes_seen = seen;
            // Always compacted, even when nothing here is covered: the active file is
            // then replaced, which is how other processes learn of the marker (a
            // replaced active file makes them load the store afresh, markers included).
            s.prune_pending = true;
            s.mark.mark.high_water = s.mark.mark.high_water.max(top);
            drop(s);
            self.next_id = self.next_id.max(top + 1);
        }
        let deleted = self.finish_prunes()?;
        Ok(Applied {
            deleted,
            already_marked,
        })
    }

    /// Deletes the records a stored marker covers, if any is still there: how many.
    pub(crate) fn finish_prunes(&mut self) -> Result<u64> {
        if !read_shared(&self.shared).prune_pending {
            return Ok(0);
        }
        let report = self.compact_locked()?;
        Ok(report.pruned)
    }

    /// Runs `f` under the locks the open took (it loaded the store under them), then lets
    /// them go: for what the open must finish before other processes write.
    pub(crate) fn with_open_locks<R>(
        &mut self,
        name_lock: Box<dyn LockGuard>,
        active_lock: Option<Box<dyn LockGuard>>,
        f: impl FnOnce(&mut Self) -> Result<R>,
    ) -> Result<R> {
        self.name_lock = Some(name_lock);
        self.active_lock = active_lock;
        let result = f(self);
        self.active_lock = None;
        self.name_lock = None;
        result
    }
}

/// Writes `entries` (lines of the file at `path`, read through `reader`) to a new file
/// after the header, in commit groups of about 1 MiB, syncs it and renames it over `path`.
/// With `lock` (the active file), the new file is locked before the rename and its lock
/// returned.
fn rewrite(
    fs: &dyn FileSystem,
    path: &Path,
    entries: &[Entry],
    reader: &dyn ReadAt,
    lock: bool,
) -> Result<Option<Box<dyn LockGuard>>> {
    let name = path.display().to_string();
    let tmp = sibling(path, ".compact.tmp");
    let io = |what: &str| {
        let what = format!("{what} {}", tmp.display());
        move |e| Error::io(what, e)
    };
    if fs.len(&tmp).map_err(io("checking"))?.is_some() {
        // Left by a crash during an earlier compaction; the original is intact.
        fs.truncate(&tmp, 0)
            .and_then(|_| fs.rename(&tmp, &sibling(path, ".compact.abandoned")))
            .map_err(io("setting aside"))?;
    }
    let mut out = fs.create_new(&tmp).map_err(io("creating"))?;
    let mut chunk = format::header_line();
    let mut in_chunk = 0;
    for e in entries {
        let start = chunk.len();
        chunk.resize(start + e.len as usize, 0);
        reader
            .read_exact_at(&mut chunk[start..], e.offset())
            .map_err(|err| Error::io(format!("reading {name}"), err))?;
        chunk.push(b'\n');
        in_chunk += 1;
        if chunk.len() > 1 << 20 {
            format::encode_commit(in_chunk, &mut chunk);
            out.append(&chunk).map_err(io("writing"))?;
            chunk.clear();
            in_chunk = 0;
        }
    }
    if in_chunk > 0 {
        format::encode_commit(in_chunk, &mut chunk);
    }
    out.append(&chunk).map_err(io("writing"))?;
    out.sync_data().map_err(io("syncing"))?;
    drop(out);
    fs.sync_dir(&tmp).map_err(io("syncing the directory of"))?;
    let guard = match lock {
        true => Some(lock_replacement(fs, &tmp)?),
        false => None,
    };
    fs.rename(&tmp, path)
        .map_err(|e| Error::io(format!("renaming {} over {name}", tmp.display()), e))?;
    Ok(guard)
}

impl JsonWriter {
    /// Saves every line of the file at `path` (whose indexed records are `entries`) that
    /// is neither the header, an indexed record nor a commit line (the lines skipped at
    /// open) to a `.rejected-…` file next to it, so compaction deletes nothing unseen.
    ///
    /// A line that repeats a stored record identically (same id, same checksum) is
    /// dropped, not saved: the store keeps that record.
    fn save_rejected(
        &self,
        path: &Path,
        entries: &[Entry],
        reader: &dyn ReadAt,
        end: u64,
    ) -> Result<Skipped> {
        let mut spans: Vec<(u64, u64)> = entries.iter().map(|e| (e.offset(), e.end())).collect();
        spans.sort_unstable();
        let mut gaps = Vec::new();
        let mut at = format::header_line().len() as u64;
        for (start, stop) in spans.into_iter().chain([(end, end)]) {
            if start > at {
                gaps.push((at, start));
            }
            at = at.max(stop);
        }
        let mut skipped = Skipped::default();
        if gaps.is_empty() {
            return Ok(skipped);
        }
        let mut bytes = Vec::new();
        let mut gap = Vec::new();
        for (start, stop) in gaps {
            gap.resize((stop - start) as usize, 0);
            reader
                .read_exact_at(&mut gap, start)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            // Commit lines (and the `\r\n` endings after indexed lines, which a record's span
            // does not cover) are framing, not rejected data.
            for line in gap.split_inclusive(|&b| b == b'\n') {
                let (body, _) = format::split_ending(line);
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                if body.is_empty() || format::commit_count(body).is_some() {
                    continue;
                }
                let duplicate = match format::check(body) {
                    Ok((id, sum)) => read_shared(&self.shared)
                        .index
                        .get(id.get())?
                        .is_some_and(|e| e.checksum == sum),
                    Err(_) => false,
                };
                if duplicate {
                    skipped.duplicates += 1;
                } else {
                    skipped.lines += 1;
                    bytes.extend_from_slice(line);
                }
            }
        }
        if bytes.is_empty() {
            return Ok(skipped);
        }
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let to = sibling(path, &format!(".rejected-{stamp}"));
        self.fs
            .write_new(&to, &bytes)
            .map_err(|e| Error::io(format!("saving rejected lines to {}", to.display()), e))?;
        skipped.bytes = bytes.len() as u64;
        skipped.saved_to = Some(to);
        Ok(skipped)
    }
}

/// What [`JsonWriter::save_rejected`] found in a file's skipped lines.
#[derive(Debug, Default)]
struct Skipped {
    /// Bytes and lines saved aside.
    bytes: u64,
    lines: u64,
    /// Identical repeats dropped.
    duplicates: u64,
    saved_to: Option<PathBuf>,
}

impl BatchWriter for JsonWriter {
    /// A group without keys is written as it always was: the key book is not touched. A
    /// group with keys is planned ([`Planner`]) under the store's locks, after the
    /// catch-up, against the key book; the book is built (if need be) before the locks are
    /// taken, so that other processes do not wait for the first build.
    fn commit_group(
        &mut self,
        batches: &[&[NewLog]],
        durability: Durability,
    ) -> Result<Vec<Result<Committed>>> {
        if !Planner::any_keys(batches.iter().copied()) {
            let groups = self.exclusive(|w| w.commit_group_locked(batches, durability))?;
            return Ok(groups
                .into_iter()
                .map(|recs| Ok(Committed::fresh(recs)))
                .collect());
        }
        drop(book::ready(&self.book, &self.shared, &self.name())?);
        self.exclusive(|w| w.commit_keyed_locked(batches, durability))
    }

    /// Syncs, then saves the high-water mark if it rose. The records are durable before
    /// the mark is saved, so a failure to save it (a full disk) is a warning, not an error.
    fn close(&mut self) -> Result<()> {
        self.exclusive(|w| w.close_locked())
    }
}

impl JsonWriter {
    fn commit_group_locked(
        &mut self,
        batches: &[&[NewLog]],
        durability: Durability,
    ) -> Result<Vec<Vec<LogRecord>>> {
        self.check_tail()?;
        let now = Utc::now();
        let mut next = self.next_id;
        let mut out = Vec::with_capacity(batches.len());
        let mut all = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        for batch in batches {
            let mut recs = Vec::with_capacity(batch.len());
            for log in batch.iter() {
                let rec = LogRecord::seal_next("json", &mut next, now, log)?;
                format::encode(&rec, &mut buf)?;
                recs.push(rec);
            }
            all.extend(recs.iter().cloned());
            out.push(recs);
        }
        self.buf = buf;
        self.write_buffered(&all, durability)?;
        self.next_id = next;
        Ok(out)
    }

    /// [`JsonWriter::commit_group_locked`] for a group with keys: each batch is planned
    /// with [`seal_batch`] against the key book (up to date with what the catch-up read)
    /// and the batches sealed before it; a refused batch writes nothing and takes no id.
    /// The records written are noted in the book, which is held from planning to noting.
    fn commit_keyed_locked(
        &mut self,
        batches: &[&[NewLog]],
        durability: Durability,
    ) -> Result<Vec<Result<Committed>>> {
        self.check_tail()?;
        let name = self.name();
        let (book_ref, shared) = (self.book.clone(), self.shared.clone());
        let mut book = book::ready(&book_ref, &shared, &name)?;
        let now = Utc::now();
        let mut next = self.next_id;
        let mut planner = Planner::new();
        let mut out = Vec::with_capacity(batches.len());
        let mut written: Vec<LogRecord> = Vec::new();
        let mut repeats = false;
        let mut buf = std::mem::take(&mut self.buf);
        {
            let mut keys = book.keys().keys(|id| book::get(&shared, &name, id));
            for batch in batches {
                let done = seal_batch(&mut planner, batch, &mut keys, &mut |log| {
                    let rec = LogRecord::seal_next("json", &mut next, now, log)?;
                    format::encode(&rec, &mut buf)?;
                    Ok(rec)
                })?;
                if let Ok(done) = &done {
                    written.extend(done.new_records().cloned());
                    repeats |= done.repeats.contains(&true);
                }
                out.push(done);
            }
        }
        self.buf = buf;
        if written.is_empty() {
            // Only repeats (and refusals): nothing to write, but a repeat is answered at
            // the durability asked for, whoever wrote it and at whatever level.
            if repeats && durability == Durability::PowerLoss {
                self.unsynced = true;
                self.sync_file(Durability::PowerLoss)?;
            }
            return Ok(out);
        }
        self.write_buffered(&written, durability)?;
        self.next_id = next;
        for rec in &written {
            book.note(rec);
        }
        Ok(out)
    }

    fn close_locked(&mut self) -> Result<()> {
        self.sync(Durability::PowerLoss)?;
        self.fold_now();
        let mut state = read_shared(&self.shared).mark.clone();
        // Another process may have saved ids this one did not see (ends it moved aside).
        if let Ok(Ok(Some(saved))) = mark::read(&*self.fs, &self.path) {
            state.mark.high_water = state.mark.high_water.max(saved.high_water);
            mark::add_ranges(&mut state.mark.skipped, &saved.skipped);
            state.saved = state.saved.min(saved.high_water);
        }
        if state.mark.high_water > state.saved {
            match mark::save(&*self.fs, &self.path, &state.mark) {
                Ok(()) => write_shared(&self.shared).mark.saved = state.mark.high_water,
                Err(e) => tracing::warn!(
                    store = %self.name(),
                    error = %e,
                    "could not save the high-water mark at close; the records themselves are durable"
                ),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_side_file_is_rewritten_when_memory_holds_a_sixteenth_of_it_or_a_million() {
        assert!(fold_due(10, None, 10), "no side file yet");
        assert!(!fold_due(9, None, 10));
        assert!(
            !fold_due(65_536, Some(10_000_000), 65_536),
            "a 240 MB rewrite for 65k entries"
        );
        assert!(fold_due(625_000, Some(10_000_000), 65_536));
        assert!(
            fold_due(FOLD_CAP, Some(100_000_000), 65_536),
            "memory stays bounded"
        );
        assert!(!fold_due(FOLD_CAP - 1, Some(100_000_000), 65_536));
        assert!(fold_due(65_536, Some(65_536), 65_536));
    }
}
