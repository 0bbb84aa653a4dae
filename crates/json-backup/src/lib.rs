//! # synclog-json
//!
//! A [`LogStore`] over JSON-lines files: synclog's backup, and a store of its own. The
//! store is its active file (the path it is opened with) plus the sealed segments that
//! rotation leaves next to it.
//!
//! - **Format** ([`format`](mod@format)): a header line with the format version, then one record per
//!   line with its checksum (and its `run` and `idempotency_key` when it has them). Any
//!   JSON tool reads every line.
//! - **Format version** ([`STORE_FORMAT`], 3; a store never pruned stays 2, readable by
//!   the release before): kept in `<file>.format` (checksummed,
//!   replaced by write-then-rename), read before an open writes anything. A store of a
//!   later format is refused untouched ([`Error::Unsupported`] naming both versions). A
//!   store without the marker is the previous release's (format 1) and a writer's open
//!   upgrades it in place: the active file's header is rewritten to version 2 (a copy
//!   renamed over it), the store is loaded, and the marker is written last; a crash at any
//!   step leaves a store the next open finishes upgrading. A release of format 1 refuses
//!   an upgraded store untouched: the side file is of a version it ignores, so it reads
//!   the active file's header, whose version is above its own.
//! - **Runs and idempotency keys** ([`synclog_core::run`]): a group with keys is planned
//!   under the store's locks, after catching up with other processes, against a book of
//!   the store's keys in memory (idempotency key → id, run key → ids), so the rules hold
//!   across processes. The book is built the first time a key is committed or looked up,
//!   by reading every record once (not at open); then every record this process writes,
//!   imports or reads from another process is noted in it, and it is built again after
//!   the files were replaced (another process's rotation or compaction). A group without
//!   keys never touches it. [`LogStore::find_idempotent`], [`LogStore::run_records`] and
//!   [`LogStore::runs`] answer from it.
//! - **Durable appends**: concurrent appends share one group commit: one `write`, then
//!   `fdatasync`, then the acknowledgement. The directory is fsynced whenever a file is
//!   created or renamed.
//! - **Writers in several processes take turns per group**: every write (a group, an
//!   import, a rotation, a compaction, the close) takes an advisory lock on `<file>.lock`
//!   (holding the writer's pid) and a lock on the active file itself (its inode), so a
//!   store opened through a symlink (followed: the store's files are next to the real
//!   file), a hard link, `..` segments or another mount meets the same lock. Under the
//!   locks the writer first reads what other processes appended since it last looked,
//!   from where it left off (never the whole file; a file replaced by another process's
//!   rotation or compaction is loaded afresh), so ids stay unique and in file order. Reads
//!   check the active file's identity and length and catch up the same way. A file that
//!   replaces the active one (rotation, compaction) is locked before it is renamed into
//!   place, and a writer checks after locking that the path still names the file it
//!   locked (else it tries again). A writer waits up to [`JsonOptions::lock_wait`] for a
//!   holder, then gets [`Error::Locked`] naming the file (and the holder, when it wrote
//!   its pid). Opening takes both locks while it loads. A hard link names a file, not a
//!   store: after a rotation or a compaction it names the old, detached file.
//! - **Atomic groups**: each group (a group commit, an import) ends with a commit line.
//! - **Opening after a crash** ([`OpenReport`]): an uncommitted end (a torn last line, or
//!   a last group without its commit line) is moved aside whole to `<file>.torn-…` (never
//!   deleted) and reported, so a batch is never half there; a corrupt line in the middle
//!   is reported with its line number and skipped. On a full disk, where the end cannot
//!   be saved, it is left in place unindexed ([`OpenReport::tail_left_in_place`]): the
//!   store opens and reads, and the first write moves it aside first (failing while it
//!   cannot). No partial `.torn-…` file is ever left behind.
//! - **Ids are never handed out twice** ([`OpenReport::high_water`]): the next id is above
//!   every id in the store's files, in its moved-aside files and in its high-water mark
//!   `<file>.hwm` (saved at close, and at open when moved-aside files raise it; a failure
//!   to save it is a warning). Ids of records moved aside are not reported missing; ids
//!   handed out that are in no file (cut off behind the store's back) are.
//! - **Moved-aside records are the operator's to judge**: while a `<file>.torn-…` file
//!   holds whole, checksum-valid records the store does not hold (the same id with the
//!   same checksum), `verify` reports it (file and ids) and is not clean; remove or archive
//!   the file once its records are dealt with. A file whose every record the store holds,
//!   the same (a group torn in one copy of a guarded pair and restored from the other), is
//!   only a warning, as is a torn line with no whole record.
//! - **Line endings**: `\r\n` endings (a Windows checkout, `unix2dos`), or a mix of both,
//!   read as the same records; new lines are written with `\n`.
//! - **Rotation** ([`JsonStore::rotate`], or [`JsonOptions::rotate_after_bytes`]) seals the
//!   active file as `<file>.seg-000001`, `<file>.seg-000002`, … and starts a new one. The
//!   new file is written and synced first, and each step is a rename followed by a
//!   directory fsync, so a crash at any step is safe. Sealed records stay in the store
//!   (read, verified, counted by reconcile): rotation bounds file sizes, it never drops
//!   records. A record's id does not say which file holds it (restored records land in
//!   the active file), so tools that read the files should read them all.
//! - **Compaction** ([`JsonStore::compact`]) rewrites the active file (and any segment with
//!   skipped lines): a new file, synced, renamed over the old one; lines skipped at open
//!   are saved to `<file>.rejected-…` first.
//! - **Index side file** (`<file>.idx`): what opening already read and checked, so that the
//!   next open reads only what changed. For each file of the store it holds the prefix it
//!   covers (bytes and lines, up to the end of a committed group) and that prefix's
//!   identity (the file's inode, CRC-32C of its first and last 4 KiB); the index entries
//!   (id, file, offset, length, checksum), sorted by id in fixed 24-byte records checksummed
//!   by blocks of 1024; and the lines skipped in the covered prefixes, so that
//!   [`OpenReport`] and `verify` say exactly what a full read says. Opening checks its
//!   footer and its meta (which holds each block's checksum and first id), checks that
//!   every file it covers is still the same file (not shorter, same inode, same identity;
//!   every covered file but the last covered whole), and reads and checks only the bytes
//!   past what it covers: its cost does not grow with the history. Each block is checked
//!   when first read (checksum, first id, ids in order, entries inside the covered
//!   files). A missing, stale (a file compacted, replaced, truncated or restored from an
//!   older copy), damaged or other-version side file is ignored: the files are read
//!   whole, [`OpenReport::index_rebuilt`] says why, and a writer's open writes a new one;
//!   a block found damaged by a read makes the store read its files whole and answer that
//!   read again (a writer then replaces the side file). It is a cache, never trusted
//!   unchecked and never an error: it is written to `<file>.idx.tmp-<pid>-<n>`, synced and
//!   renamed into place, at open
//!   after a full read, at close and at rotation when the records added since are at least
//!   a 64th of those it holds, at compaction, and in the background once the entries in
//!   memory reach [`JsonOptions::index_fold_after`] and a 16th of those it holds (or about
//!   a million), never in an append's path.
//!   [`JsonStore::open_read_only`] and [`inspect`] use a valid one and write none.
//! - **Memory**: lookups in what the side file covers are binary searches by positioned
//!   reads of it (the first id and checksum of each block are kept in memory: 12 bytes per
//!   1024 records); only the entries added since it was written (appends, and imports of
//!   older ids) are in memory, 24 bytes a record: at least
//!   [`JsonOptions::index_fold_after`] and a 16th of what the side file holds, at most
//!   about a million (24 MiB), whatever the store's size, as long as the side file can be
//!   written (a fold that fails, on a full disk, is tried again `index_fold_after` entries
//!   later). Records are read from the files when asked for.
//!   Compaction still gathers the entries of the files it rewrites.
//! - **Retention** ([`LogStore::apply_prune`]): a prune's marker goes to `<file>.prunes`
//!   (the whole list replaced by write-then-rename, each marker checksummed) and the
//!   format marker becomes 3, both durable before anything is deleted; then a compaction
//!   leaves out every record a marker covers: a sealed segment it empties is removed, one
//!   it cuts into is rewritten, and the active file is always rewritten (write-then-rename),
//!   which is how other processes learn of the prune (they load the store afresh when the
//!   active file is replaced). A crash in between leaves covered records that reads skip
//!   and the next writer's open deletes. Ids stay above every marker's; imports skip
//!   covered ids; `verify` counts them as pruned. A markers file that does not check out
//!   fails the open ([`Error::Corrupt`]). A prune reads every file of the store once
//!   (the side file no longer matches the files it changed, and is written anew) and
//!   copies what stays of the files it touches.
//! - **Reads are by id order**; `job`/`status` filters read every record in the id range
//!   (this engine is a backup, not a query engine).
//!
//! All file I/O goes through [`fs::FileSystem`]; [`sim::SimFs`] simulates crashes.
//!
//! ```
//! use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synclog_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = synclog_json::JsonStore::open(dir.path().join("logs.jsonl"))?;
//! let rec = store.append(NewLog::new("crm-sync", Status::Succeeded)).await?;
//! assert_eq!(store.get(rec.id).await?, Some(rec));
//! store.close().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod book;
pub mod format;
pub mod fs;
mod index;
mod load;
mod mark;
mod prunes;
mod sidefile;
pub mod sim;
mod version;
mod writer;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use synclog_core::follow::{CommitSignal, CommitWatch, Probe};
use synclog_core::group::{GroupCommit, GroupOptions, GroupStats};
use synclog_core::verify::Verifier;
use synclog_core::{
    Capabilities, Checksum, Durability, Error, ImportReport, LogId, LogRecord, LogStore, Result, Scan,
    ValidBatch, ValidRecords, VerifyOptions, VerifyReport,
};

pub use load::{CorruptLine, LineProblem, OpenReport, TornTail};
pub use version::STORE_FORMAT;
pub use writer::{CompactReport, RotateReport};

use book::BookRef;
use fs::{FileSystem, LockError, LockGuard, RealFs};
use load::sibling;
use synclog_core::{Committed, Run, RunScan};
use writer::{read_shared, JsonWriter, Shared, SharedRef};

/// Tuning of a [`JsonStore`].
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// How long to wait for another process's lock before failing with [`Error::Locked`].
    pub lock_wait: Duration,
    /// Most logs in one group commit.
    pub max_group_logs: usize,
    /// Whether a lone appender on a multi-thread tokio runtime commits on its own thread,
    /// inside `tokio::task::block_in_place`, instead of handing over to the writer thread
    /// and back ([`GroupOptions::inline_lone_commits`]). On by default.
    pub inline_lone_commits: bool,
    /// Rotate before a write once the active file has reached this many bytes. `None`
    /// (the default) rotates only when [`JsonStore::rotate`] is called.
    pub rotate_after_bytes: Option<u64>,
    /// Index entries the writer keeps in memory (records added since the index side file
    /// was written) at least before it writes the side file again, in the background; it
    /// also waits for a 16th of what the side file holds, up to about a million entries
    /// (see the crate docs). Bounds the index's memory whatever the size of the store.
    pub index_fold_after: usize,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            lock_wait: Duration::from_secs(10),
            max_group_logs: 8192,
            inline_lone_commits: true,
            rotate_after_bytes: None,
            index_fold_after: load::FOLD_AT,
        }
    }
}

struct Inner {
    /// The active file (symlinks followed).
    path: PathBuf,
    /// The path the store was opened with, for messages.
    given: PathBuf,
    fs: Arc<dyn FileSystem>,
    /// The writer; `None` in a handle opened with [`JsonStore::open_read_only`].
    group: Option<GroupCommit<JsonWriter>>,
    shared: SharedRef,
    report: OpenReport,
    closed: AtomicBool,
    /// The store's keys, built when first needed (see [`book`]); shared with the writer.
    book: BookRef,
    /// Wakes this process's followers after each commit and import.
    signal: CommitSignal,
}

/// A [`LogStore`] over one JSON-lines file. Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct JsonStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JsonStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonStore")
            .field("path", &self.inner.given)
            .finish()
    }
}

impl JsonStore {
    /// Opens (creating if needed) the file at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<JsonStore> {
        Self::open_with(path, JsonOptions::default(), Arc::new(RealFs))
    }

    /// Opens the file at `path` over `fs`: takes the lock, loads the index (moving a torn
    /// tail aside), and starts the writer.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: JsonOptions,
        fs: Arc<dyn FileSystem>,
    ) -> Result<JsonStore> {
        let given = path.as_ref().to_path_buf();
        let name = given.display().to_string();
        // The store's files are next to the real file, wherever a symlink points from.
        let path = fs
            .resolve(&given)
            .map_err(|e| Error::io(format!("resolving {name}"), e))?;
        // Before anything is written, the lock file included: a later release's store is
        // refused untouched. Read again under the locks (another process may have changed
        // it meanwhile).
        if version::read(&*fs, &path)?.is_none() {
            version::check_active_header(&*fs, &path)?;
        }
        let deadline = Instant::now() + options.lock_wait;
        let lock_path = sibling(&path, ".lock");
        let lock = fs
            .lock(&lock_path, options.lock_wait)
            .map_err(|e| name_lock_error(&name, &lock_path, options.lock_wait, e))?;
        // The active file's own lock: a hard link or another mount reaches the same file
        // by another name, hence another `.lock`. A new file is locked once created.
        let exists = fs
            .len(&path)
            .map_err(|e| Error::io(format!("reading {name}"), e))?
            .is_some();
        let mut active_lock = match exists {
            true => Some(lock_active(&*fs, &path, deadline, &name, options.lock_wait)?),
            false => None,
        };
        let marked = version::read(&*fs, &path)?;
        let upgrade = marked.is_none_or(|v| v < version::KEYS_FORMAT);
        if upgrade {
            // A store of the previous release (or a new one): its active file's header
            // first, then the load, then, last, the marker (see `version`).
            if let Some(replaced) = version::upgrade_header(&*fs, &path)? {
                active_lock = Some(replaced);
            }
        }
        let mut loaded = load::load(&*fs, &path, true)?;
        // A pruned store is format 3 (its marker is written before its markers file; one
        // removed by hand is written again), any other format 2.
        let format = match loaded.prunes_seen.is_some() {
            true => version::PRUNES_FORMAT,
            false => version::KEYS_FORMAT,
        };
        if marked.is_none_or(|v| v < format) {
            version::write(&*fs, &path, format)?;
        }
        if upgrade && !loaded.report.created {
            loaded.report.format_upgraded = Some(marked.unwrap_or(1));
        }
        if active_lock.is_none() {
            active_lock = Some(lock_active(
                &*fs,
                &path,
                Instant::now(),
                &name,
                options.lock_wait,
            )?);
        }
        let report = loaded.report.clone();
        warn_about(&name, &report);
        let shared = Arc::new(RwLock::new(Shared::open(&*fs, loaded)?));
        let book = BookRef::default();
        let mut writer = JsonWriter::new(
            fs.clone(),
            path.clone(),
            shared.clone(),
            options.rotate_after_bytes,
            options.lock_wait,
            options.index_fold_after.max(1),
            book.clone(),
        );
        // A prune cut off after its marker was stored: its deletion is finished before
        // anything else is written. Then opening is done: other processes may write
        // between this one's groups (each group takes the locks again, see
        // `JsonWriter::exclusive`).
        writer.with_open_locks(lock, active_lock, |w| w.finish_prunes().map(drop))?;
        let group = GroupCommit::spawn(
            writer,
            GroupOptions {
                thread_name: "synclog-json-writer".into(),
                max_group_logs: options.max_group_logs,
                inline_lone_commits: options.inline_lone_commits,
                ..GroupOptions::default()
            },
        )?;
        Ok(JsonStore {
            inner: Arc::new(Inner {
                path,
                given,
                fs,
                group: Some(group),
                shared,
                report,
                closed: AtomicBool::new(false),
                book,
                signal: CommitSignal::new(),
            }),
        })
    }

    /// Opens the existing store at `path` over `fs` for reading only. It takes no lock
    /// (neither `<file>.lock` nor the file's own), so it never waits for a writer and never
    /// makes one wait; it writes nothing: no header, no `.hwm` mark, no torn end moved
    /// aside, no cut-off rotation finished.
    ///
    /// It reads every committed group (up to the last commit line) as the files stand when
    /// it opens: every group acknowledged before then. An uncommitted or torn end (a group
    /// being written now, or one cut off by a crash) is not read and not reported in
    /// [`OpenReport::torn_tails`]. Groups committed after the open are not seen; open again
    /// to see them. A missing active file is [`Error::StoreNotFound`], and nothing is
    /// created. Writes through the handle (`commit`, `import`, `repair`, `sync`, `rotate`,
    /// `compact`) fail with [`Error::Unsupported`] and write nothing.
    pub fn open_read_only(path: impl AsRef<Path>, fs: Arc<dyn FileSystem>) -> Result<JsonStore> {
        let given = path.as_ref().to_path_buf();
        let name = given.display().to_string();
        let path = match fs.resolve(&given) {
            Ok(path) => path,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(store_not_found(&name)),
            Err(e) => return Err(Error::io(format!("resolving {name}"), e)),
        };
        let exists = fs
            .len(&path)
            .map_err(|e| Error::io(format!("reading {name}"), e))?
            .is_some();
        if !exists {
            return Err(store_not_found(&name));
        }
        if version::read(&*fs, &path)?.is_none() {
            version::check_active_header(&*fs, &path)?;
        }
        let loaded = load::load(&*fs, &path, false)?;
        let report = loaded.report.clone();
        warn_about(&name, &report);
        let shared = Arc::new(RwLock::new(Shared::open(&*fs, loaded)?));
        Ok(JsonStore {
            inner: Arc::new(Inner {
                path,
                given,
                fs,
                group: None,
                shared,
                report,
                closed: AtomicBool::new(false),
                book: BookRef::default(),
                signal: CommitSignal::new(),
            }),
        })
    }

    /// Whether this handle was opened with [`JsonStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.group.is_none()
    }

    /// The writer, or the error of a write (`what`) through a read-only handle.
    fn writer(&self, what: &str) -> Result<&GroupCommit<JsonWriter>> {
        self.check_open()?;
        self.inner
            .group
            .as_ref()
            .ok_or_else(|| Error::read_only("json", &self.describe(), what))
    }

    /// What opening the store found: records, segments, skipped lines, torn tails moved aside.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The active file (with a symbolic link in the path it was opened with followed).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Group-commit counters.
    pub fn group_stats(&self) -> GroupStats {
        self.inner.group.as_ref().map(|g| g.stats()).unwrap_or_default()
    }

    /// Rewrites the active file (and any segment with skipped lines) in id order without
    /// skipped lines; see the crate docs.
    pub async fn compact(&self) -> Result<CompactReport> {
        self.writer("compact")?.with_writer(|w| w.compact()).await?
    }

    /// Seals the active file as the next segment and starts a new one, between groups;
    /// see the crate docs. `None` if the active file holds no records.
    pub async fn rotate(&self) -> Result<Option<RotateReport>> {
        self.writer("rotate")?.with_writer(|w| w.rotate()).await?
    }

    /// The store's files: sealed segments in order, then the active file.
    pub fn files(&self) -> Vec<PathBuf> {
        self.inner.files_now()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                store: self.describe(),
            });
        }
        Ok(())
    }

    /// Before a read: if another process appended to the active file or replaced it
    /// since this one last looked, has the writer read what is new (from where it left
    /// off, taking the store's locks for that moment), so reads see every group committed
    /// before them. A read-only handle reads the store as it was when it opened.
    async fn refresh(&self) -> Result<()> {
        let Some(group) = &self.inner.group else {
            return Ok(());
        };
        let now = match self.inner.fs.stat(&self.inner.path).ok().flatten() {
            Some((id, len)) => (Some(id), len),
            None => (None, 0),
        };
        if read_shared(&self.inner.shared).seen == now {
            return Ok(());
        }
        // Under the store's locks, like a write: every group read is one its writer kept
        // (a failed write is cut before its writer lets go), and a file another process is
        // replacing is never read half way.
        self.retrying(|| async { group.with_writer(|w| w.exclusive(|_| Ok(()))).await? })
            .await
    }

    /// Writes records that keep their ids through the writer (`op`: an import or a
    /// repair), retried as every write is, and wakes followers when any was written.
    async fn write_records(
        &self,
        what: &str,
        records: ValidRecords,
        op: impl Fn(&mut JsonWriter, Vec<LogRecord>) -> Result<ImportReport> + Clone + Send + 'static,
    ) -> Result<ImportReport> {
        let group = self.writer(what)?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        let top = records.iter().map(|r| r.id).max();
        let report = self
            .retrying(|| async {
                let (records, op) = (records.clone(), op.clone());
                group.with_writer(move |w| op(w, records.into_inner())).await?
            })
            .await?;
        if let Some(top) = top.filter(|_| report.inserted > 0) {
            self.inner.signal.committed(top);
        }
        Ok(report)
    }

    async fn get_once(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.blocking(move |inner| {
            let (entry, files) = {
                let shared = read_shared(&inner.shared);
                if shared.pruned.contains(id) {
                    // Still in a file only when a prune was cut off: never read again.
                    return Ok(None);
                }
                match shared.index.get(id.get())? {
                    None => return Ok(None),
                    Some(e) => (e, shared.files.clone()),
                }
            };
            Ok(book::read_records(&files, &[(id.get(), entry)], &inner.name())?.pop())
        })
        .await
    }

    /// Stops using a side file a read found damaged: a writer removes it and loads the
    /// files whole (writing a new one); a read-only handle loads them whole.
    async fn drop_damaged_side_file(&self) -> Result<()> {
        match &self.inner.group {
            Some(group) => group.with_writer(|w| w.exclusive(|_| Ok(()))).await?,
            None => {
                self.blocking(|inner| writer::reload_whole(&*inner.fs, &inner.path, &inner.shared))
                    .await
            }
        }
    }

    /// Runs `op`; if it failed on a damaged block of the side file, loads the store whole
    /// (see [`JsonStore::drop_damaged_side_file`]) and runs it again, so a damaged side
    /// file changes no answer. Safe for writes too: the index is read before anything is
    /// written.
    async fn retrying<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        match op().await {
            // Only the error of a damaged block, which comes before anything is written;
            // never another failure that merely meets the flag set by someone else.
            Err(e) if sidefile::is_damage(&e) => {
                self.drop_damaged_side_file().await?;
                op().await
            }
            other => other,
        }
    }

    /// A read after catching up with other processes' appends: `f` runs on the blocking
    /// pool, once more if it met a damaged side file (see [`retrying`](Self::retrying)).
    async fn read_fresh<R: Send + 'static>(
        &self,
        f: impl Fn(&Inner) -> Result<R> + Clone + Send + 'static,
    ) -> Result<R> {
        self.check_open()?;
        self.refresh().await?;
        self.retrying(|| {
            let f = f.clone();
            self.blocking(move |inner| f(inner))
        })
        .await
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.check_open()?;
        let inner = self.inner.clone();
        synclog_core::runtime::current("reading a JSON-lines store")?
            .spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Backend {
                engine: "json",
                context: "a read task failed".into(),
                source: Box::new(e),
            })?
    }
}

/// The error of a read-only open of a store whose active file does not exist.
fn store_not_found(name: &str) -> Error {
    Error::StoreNotFound {
        store: format!("json://{name}"),
        detail: "a read-only open creates nothing; check the path, or append to create the store".into(),
    }
}

/// The error of `<file>.lock` not taken within `wait`.
pub(crate) fn name_lock_error(name: &str, lock_path: &Path, wait: Duration, e: LockError) -> Error {
    match e {
        LockError::Held { holder } => Error::Locked {
            resource: name.to_string(),
            detail: format!(
                "held by another process{} for more than {wait:?}; stop it, or give this one another file",
                holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            ),
            source: None,
        },
        LockError::Io(e) => Error::io(format!("locking {}", lock_path.display()), e),
    }
}

/// Locks the active file itself, then checks `path` still names the file locked (a
/// rotation or compaction replaces it by rename while another opener waits); if not,
/// tries again on the file it names now, until `deadline`.
pub(crate) fn lock_active(
    fs: &dyn FileSystem,
    path: &Path,
    deadline: Instant,
    name: &str,
    lock_wait: Duration,
) -> Result<Box<dyn LockGuard>> {
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (guard, id) = fs.lock_file(path, wait).map_err(|e| match e {
            LockError::Held { .. } => Error::Locked {
                resource: name.to_string(),
                detail: format!(
                    "the file is held by another process (through another path: a hard link or \
                     another mount) for more than {lock_wait:?}; stop it, or give this one another file"
                ),
                source: None,
            },
            LockError::Io(e) => Error::io(format!("locking {name}"), e),
        })?;
        let now = fs
            .file_id(path)
            .map_err(|e| Error::io(format!("reading {name}"), e))?;
        if now == Some(id) {
            return Ok(guard);
        }
        drop(guard);
        if Instant::now() >= deadline {
            return Err(Error::Locked {
                resource: name.to_string(),
                detail: format!(
                    "the file was replaced (rotated or compacted) by another process for more than {lock_wait:?}"
                ),
                source: None,
            });
        }
    }
}

/// Tells the operator (through `tracing`, at `warn`) what opening found and did: data
/// moved aside, lines skipped, a rotation finished. The same is in [`JsonStore::open_report`].
pub(crate) fn warn_about(name: &str, report: &OpenReport) {
    for tail in &report.torn_tails {
        let sealed = tail
            .moved_to
            .file_name()
            .is_some_and(|f| f.to_string_lossy().contains(".seg-"));
        if sealed {
            // A sealed segment was complete when sealed: what follows its cut was
            // acknowledged, and verify reports the moved file while it holds records.
            tracing::warn!(
                store = name,
                bytes = tail.bytes,
                moved_to = %tail.moved_to.display(),
                "a sealed segment was cut behind the store's back; its end, acknowledged records, was moved aside (a guarded pair restores them from the other copy)"
            );
        } else {
            tracing::warn!(
                store = name,
                bytes = tail.bytes,
                moved_to = %tail.moved_to.display(),
                "an uncommitted end (never acknowledged) was moved aside"
            );
        }
    }
    if let Some(first) = report.corrupt_lines.first() {
        tracing::warn!(
            store = name,
            skipped = report.corrupt_lines.len(),
            first = %format!("{} line {}: {}", first.file.display(), first.line, first.detail),
            "lines that do not check out were skipped; `synclog compact` drops repeated lines and saves the others aside"
        );
    }
    if report.finished_rotation {
        tracing::warn!(store = name, "a rotation cut off by a crash was finished");
    }
    if let (Some(why), true) = (&report.index_rebuilt, report.records > 0) {
        tracing::warn!(
            store = name,
            why = %why,
            "the index side file was not used: every file was read and checked"
        );
    }
}

/// What opening the store at `path` would find, read without writing anything and without
/// taking its lock (so it works while another process has the store open): records, the
/// skipped lines ([`OpenReport::duplicate_lines`], [`OpenReport::corrupt_line_count`]),
/// segments, the high-water mark. An uncommitted end is left where it is and not listed in
/// `torn_tails` (the next open moves it aside). For `check` and other read-only tools.
pub fn inspect(path: impl AsRef<Path>) -> Result<OpenReport> {
    let given = path.as_ref();
    let path = RealFs
        .resolve(given)
        .map_err(|e| Error::io(format!("resolving {}", given.display()), e))?;
    if version::read(&RealFs, &path)?.is_none() {
        version::check_active_header(&RealFs, &path)?;
    }
    Ok(load::load(&RealFs, &path, false)?.report)
}

/// The files of the store at `path` as they are on disk now: its sealed segments in order,
/// then the active file if it exists. For tools that read, copy or remove a store's files
/// while it is closed (an open store has [`JsonStore::files`]).
pub fn store_files(path: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let path = path.as_ref();
    let mut files: Vec<PathBuf> = load::segments(&RealFs, path)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let active = RealFs
        .len(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if active.is_some() {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

/// `(first, last)` pairs as id ranges (pairs with an id of 0 dropped).
fn to_id_ranges(ranges: &mark::Ranges) -> Vec<synclog_core::IdRange> {
    ranges
        .iter()
        .filter_map(|&(a, b)| synclog_core::IdRange::new(LogId::new(a)?, LogId::new(b)?))
        .collect()
}

impl Inner {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The paths of the store's files as this handle knows them.
    fn files_now(&self) -> Vec<PathBuf> {
        read_shared(&self.shared)
            .files
            .values()
            .map(|f| f.path.clone())
            .collect()
    }

    /// The record stored under idempotency key `key`.
    fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let name = self.name();
        let id = book::ready(&self.book, &self.shared, &name)?
            .keys()
            .idempotent(key);
        match id {
            Some(id) => book::get(&self.shared, &name, id),
            None => Ok(None),
        }
    }

    /// The records stored under each of `keys` (those stored), read in one pass.
    fn find_idempotent_many(&self, keys: &[String]) -> Result<Vec<LogRecord>> {
        let name = self.name();
        let mut ids: Vec<LogId> = {
            let book = book::ready(&self.book, &self.shared, &name)?;
            let keys_book = book.keys();
            keys.iter().filter_map(|k| keys_book.idempotent(k)).collect()
        };
        // A key listed twice is answered once.
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        book::get_many(&self.shared, &name, &ids)
    }

    /// The records of run `run`, in id order.
    fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let name = self.name();
        let ids = book::ready(&self.book, &self.shared, &name)?
            .keys()
            .run_ids(run)
            .to_vec();
        book::get_many(&self.shared, &name, &ids)
    }

    /// Runs matching `scan`, at most `limit`.
    fn runs(&self, scan: &RunScan, limit: usize) -> Result<Vec<Run>> {
        let name = self.name();
        let book = book::ready(&self.book, &self.shared, &name)?;
        book.keys()
            .select_runs(scan, limit, |id| book::get(&self.shared, &name, id))
    }

    fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        let limit = scan.effective_limit()?;
        let lo = scan.after.map_or(0, |a| a.get() + 1);
        let hi = scan.before.map_or(u64::MAX, |b| b.get());
        if lo >= hi {
            return Ok(Vec::new());
        }
        let pruned = read_shared(&self.shared).pruned.clone();
        let filtered = !scan.filter.is_empty() || !pruned.is_empty();
        let mut out = Vec::new();
        let mut cursor: Option<u64> = None;
        loop {
            let (entries, files) = {
                let shared = read_shared(&self.shared);
                let range = match (cursor, scan.descending) {
                    (None, _) => lo..hi,
                    (Some(c), false) => c + 1..hi,
                    (Some(c), true) => lo..c,
                };
                if range.is_empty() {
                    break;
                }
                let want = if filtered { 512 } else { limit - out.len() };
                let entries = shared.index.take(range, scan.descending, want)?;
                (entries, shared.files.clone())
            };
            let Some(last) = entries.last() else { break };
            cursor = Some(last.0);
            let mut sorted = entries.clone();
            sorted.sort_by_key(|(_, e)| (e.file(), e.offset()));
            let mut recs = book::read_records(&files, &sorted, &self.name())?;
            recs.sort_by_key(|r| r.id);
            if scan.descending {
                recs.reverse();
            }
            for rec in recs
                .into_iter()
                .filter(|r| scan.matches(r) && !pruned.contains(r.id))
            {
                out.push(rec);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Reads every file of the store from the start on a handle of its own, up to its
    /// acknowledged end, checking every line.
    ///
    /// Also reported, as problems: a moved-aside file (`<file>.torn-…`) holding whole,
    /// checksum-valid records the store does not hold (the same id with the same checksum),
    /// until the operator removes or archives it; ids handed out that are in none of the
    /// files (cut off behind the store's back); a high-water mark that does not read. Ids moved aside (never acknowledged) are not reported missing.
    fn verify(&self) -> Result<VerifyReport> {
        let (spans, last, high_water, skipped, mark_problem, prunes) = {
            let s = read_shared(&self.shared);
            (
                s.spans(),
                s.index.last_id().unwrap_or(0),
                s.mark.mark.high_water,
                s.mark.mark.skipped.clone(),
                s.mark.problem.clone(),
                s.prunes.clone(),
            )
        };
        let pruned = synclog_core::retention::Pruned::of(prunes.iter());
        let mut v = Verifier::unordered();
        v.prunes(Vec::clone(&prunes));
        for (_, path, end) in spans {
            Self::verify_file(&*self.fs, &path, end, &mut v)?;
        }
        for file in mark::aside_files(&*self.fs, &self.path, false)? {
            let aside = mark::read_aside(&*self.fs, &file)?;
            // A guarded pair restores a group torn in one copy from the other: the file
            // then holds nothing the store lacks, and is no problem.
            let mut unheld = Vec::new();
            {
                let s = read_shared(&self.shared);
                for &(id, checksum) in &aside.whole_records {
                    let held = !s.pruned.contains(id)
                        && s.index.get(id.get())?.is_some_and(|e| e.checksum == checksum);
                    if !held {
                        unheld.push(id.get());
                    }
                }
            }
            if !unheld.is_empty() {
                let mut ids: mark::Ranges = Vec::new();
                mark::add_ids(&mut ids, unheld.clone());
                v.engine_problem(format!(
                    "{} holds {} whole record(s) (logs {}) moved aside at open that the store does not hold; \
                     inspect it, then remove or archive it",
                    file.display(),
                    unheld.len(),
                    mark::describe(&ids)
                ));
            } else if aside.whole_count > 0 {
                tracing::warn!(
                    file = %file.display(),
                    records = aside.whole_count,
                    "a file moved aside at open holds only records the store holds, the same (restored from \
                     the other copy of a pair); it may be removed"
                );
            } else {
                tracing::warn!(file = %file.display(), "a torn line moved aside at open (no whole record)");
            }
        }
        if let Some(problem) = mark_problem {
            v.engine_problem(problem);
        }
        let mut report = v.finish();
        report.missing = mark::subtract(&report.missing, &skipped);
        if high_water > last {
            let mut gone: mark::Ranges = Vec::new();
            let mut from = last + 1;
            for &(a, b) in skipped.iter().filter(|&&(_, b)| b > last) {
                if a > from {
                    gone.push((from, a - 1));
                }
                from = from.max(b.saturating_add(1));
            }
            if from <= high_water {
                gone.push((from, high_water));
            }
            // Ids a marker covers above the last record (one applied from another copy)
            // were pruned, not lost.
            let gone: mark::Ranges = pruned
                .subtract(&to_id_ranges(&gone))
                .iter()
                .map(|r| (r.first.get(), r.last.get()))
                .collect();
            if !gone.is_empty() {
                report.engine_problems.push(format!(
                    "logs {} were handed out but are in none of the store's files (cut off behind its back?); \
                     their ids will not be handed out again",
                    mark::describe(&gone)
                ));
            }
        }
        Ok(report)
    }

    fn verify_file(fs: &dyn FileSystem, path: &Path, end: u64, v: &mut Verifier) -> Result<()> {
        let name = path.display().to_string();
        let mut stream = fs
            .open_stream(path)
            .map_err(|e| Error::io(format!("opening {name} for verification"), e))?;
        let mut line = Vec::with_capacity(512);
        let (mut at, mut line_no) = (0u64, 0u64);
        while at < end {
            line.clear();
            let n = stream
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(format!("verifying {name}"), e))?;
            if n == 0 {
                v.corrupt(
                    None,
                    format!("{name}: ends at byte {at}, before the acknowledged {end}"),
                );
                break;
            }
            line_no += 1;
            at += n as u64;
            let (body, _) = format::split_ending(&line);
            if line_no == 1 {
                if let Err(e) = format::check_header(body, &name) {
                    v.corrupt(None, e.to_string());
                }
                continue;
            }
            if format::commit_count(body).is_some() {
                continue;
            }
            match format::decode(body) {
                Ok(rec) => v.check(&rec.view(), rec.checksum, || format!("{name} line {line_no}")),
                Err(e) => v.corrupt(None, format!("{name} line {line_no}: {e}")),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl LogStore for JsonStore {
    fn describe(&self) -> String {
        format!("json://{}", self.inner.given.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: "json",
            multi_process: true,
            persistent: true,
            checkpoint: false,
            deep_verify: false,
            repair: true,
            prune: true,
            durability: Durability::ALL.to_vec(),
        }
    }

    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        let group = self.writer("commit")?;
        let done = self.retrying(|| group.commit(batch.clone(), durability)).await?;
        self.inner.signal.committed_records(done.new_records());
        Ok(done)
    }

    /// From the key book (built the first time it is needed, by reading every record
    /// once), after catching up with other processes' appends as every read does.
    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let key = key.to_string();
        self.read_fresh(move |inner| inner.find_idempotent(&key)).await
    }

    /// From the key book, as [`JsonStore::find_idempotent`]: one catch-up and one pass
    /// for the whole list (a guarded pair asks this for every group that carries keys).
    async fn find_idempotent_many(&self, keys: &[String]) -> Result<Vec<LogRecord>> {
        self.check_open()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        self.read_fresh(move |inner| inner.find_idempotent_many(&keys))
            .await
    }

    /// From the key book, as [`JsonStore::find_idempotent`].
    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let run = run.to_string();
        self.read_fresh(move |inner| inner.run_records(&run)).await
    }

    /// From the key book, as [`JsonStore::find_idempotent`].
    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        let limit = scan.effective_limit()?;
        let scan = scan.clone();
        self.read_fresh(move |inner| inner.runs(&scan, limit)).await
    }

    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.check_open()?;
        self.refresh().await?;
        self.retrying(|| self.get_once(id)).await
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        self.check_open()?;
        self.refresh().await?;
        scan.effective_limit()?;
        self.retrying(|| {
            let scan = scan.clone();
            self.blocking(move |inner| inner.scan(&scan))
        })
        .await
    }

    /// This process's commits reach followers with their records at once; another
    /// process's are seen by the file's size and identity changing (one `stat`, and a read
    /// of what was added), asked every 25 ms by one task for all followers while any waits.
    async fn commit_watch(&self) -> Result<CommitWatch> {
        self.check_open()?;
        let me = self.clone();
        let probe: Probe = Box::new(move || {
            let me = me.clone();
            Box::pin(async move { me.last_id().await })
        });
        self.inner
            .signal
            .watch(Some((std::time::Duration::from_millis(25), probe)))
            .await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        self.check_open()?;
        self.refresh().await?;
        self.check_open()?;
        let shared = read_shared(&self.inner.shared);
        Ok(shared.index.last_id().and_then(LogId::new))
    }

    /// The larger of the last id and the store's high-water mark (the `.hwm` side file:
    /// ids handed out or taken, kept when their lines are gone).
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.check_open()?;
        self.refresh().await?;
        self.check_open()?;
        let shared = read_shared(&self.inner.shared);
        let last = shared.index.last_id().unwrap_or(0);
        // A mark beyond any id (a damaged side file) must not hide the last id.
        let mark = shared.mark.mark.high_water;
        Ok(LogId::new(last.max(mark)).or(LogId::new(last)))
    }

    async fn id_checksums(&self, after: Option<LogId>, limit: usize) -> Result<Vec<(LogId, Checksum)>> {
        self.check_open()?;
        self.refresh().await?;
        self.check_open()?;
        self.retrying(|| async {
            let shared = read_shared(&self.inner.shared);
            let from = after.map_or(0, |a| a.get() + 1);
            let mut out: Vec<(LogId, Checksum)> = Vec::new();
            let mut cursor = from;
            // Records a cut-off prune left are skipped (rarely any: a writer's open
            // deletes them).
            while out.len() < limit {
                let got = shared.index.take(cursor..u64::MAX, false, limit - out.len())?;
                let Some(&(last, _)) = got.last() else { break };
                out.extend(
                    got.into_iter()
                        .filter_map(|(k, e)| LogId::new(k).map(|id| (id, e.checksum)))
                        .filter(|(id, _)| !shared.pruned.contains(*id)),
                );
                cursor = last + 1;
            }
            Ok(out)
        })
        .await
    }

    async fn sync(&self, level: Durability) -> Result<()> {
        self.writer("sync")?.with_writer(move |w| w.sync(level)).await?
    }

    async fn verify(&self, _options: VerifyOptions) -> Result<VerifyReport> {
        self.check_open()?;
        self.refresh().await?;
        self.retrying(|| self.blocking(|inner| inner.verify())).await
    }

    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.write_records("import", records, move |w, r| w.import(r, durability))
            .await
    }

    /// A damaged line (bad JSON, or fields that no longer give its checksum) is set aside
    /// when the file is loaded whole, so its id is absent: repairing it appends the intact
    /// record (counted as inserted). A store opened through its index side file has not
    /// read its lines, so a repair that offers an id the index holds loads the store whole
    /// first. The damaged line stays in the file until `compact`.
    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.write_records("repair", records, move |w, r| w.repair(r, durability))
            .await
    }

    async fn prune_markers(&self) -> Result<Vec<synclog_core::PruneMarker>> {
        self.check_open()?;
        self.refresh().await?;
        Ok(Vec::clone(&read_shared(&self.inner.shared).prunes))
    }

    /// The marker goes to `<file>.prunes` (and the format marker to 3) before anything
    /// is deleted; then a compaction leaves out what it covers: sealed segments it empties
    /// are removed, others it touches and the active file are rewritten by
    /// write-then-rename. Durable at every level (each step is synced).
    async fn apply_prune(
        &self,
        marker: &synclog_core::PruneMarker,
        _durability: Durability,
    ) -> Result<synclog_core::retention::Applied> {
        let group = self.writer("prune")?;
        synclog_core::retention::check_marker(marker)?;
        self.retrying(|| {
            let marker = marker.clone();
            async move { group.with_writer(move |w| w.apply_prune(marker)).await? }
        })
        .await
    }

    /// Bytes of the store's files (segments, active file), its index side file and its
    /// markers.
    async fn storage_bytes(&self) -> Result<Option<u64>> {
        self.check_open()?;
        self.refresh().await?;
        self.blocking(|inner| {
            let mut paths = inner.files_now();
            paths.push(sidefile::side_path(&inner.path));
            paths.push(prunes::prunes_path(&inner.path));
            let mut total = 0;
            for p in paths {
                total += inner
                    .fs
                    .len(&p)
                    .map_err(|e| Error::io(format!("reading {}", p.display()), e))?
                    .unwrap_or(0);
            }
            Ok(Some(total))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let runtime = synclog_core::runtime::current("closing a JSON-lines store")?;
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let inner = self.inner.clone();
        let result = runtime
            .spawn_blocking(move || match &inner.group {
                Some(group) => group.shutdown(),
                None => Ok(()),
            })
            .await
            .map_err(|e| Error::Backend {
                engine: "json",
                context: "closing".into(),
                source: Box::new(e),
            })?;
        result
    }
}
