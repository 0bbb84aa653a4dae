//! # synclog-sqlite
//!
//! synclog's SQLite engine, through rusqlite (SQLite bundled):
//!
//! - **WAL mode**, every PRAGMA set explicitly and read back; opening fails if
//!   `journal_mode` does not come back `wal`.
//! - **Durability**: [`Durability::PowerLoss`] commits at `synchronous=FULL` (the WAL is
//!   synced at every commit); `Process` and `Buffered` at `NORMAL` (survives a killed
//!   process, not power loss). `OFF` is never used.
//! - **One writer connection behind group commit** ([`synclog_core::group`]): concurrent
//!   appends share one `BEGIN IMMEDIATE` transaction and one sync. `SQLITE_BUSY` is retried
//!   with bounded backoff until one deadline per operation ([`SqliteOptions::busy_timeout`]),
//!   then reported as a retryable [`Error::Busy`]. Several processes
//!   can write one file: `BEGIN IMMEDIATE` serialises them and ids are assigned inside it.
//! - **Connection recycling**: the writer reopens its connection after any error (so a
//!   failed fsync is never retried on the same handle) and after
//!   [`SqliteOptions::recycle_after_commits`] commits.
//! - **Separate readers**, and verification on a connection opened for it alone;
//!   `deep` verification adds `PRAGMA quick_check`.
//! - **Queries from indexes** (schema version 3, [`UPGRADE_TO_3`]): every
//!   [`synclog_core::query::Filter`] condition has an index (attributes through the
//!   `log_attrs` side table the writer fills in each write transaction), summaries of
//!   everything read per-job totals kept by triggers, and [`SqliteStore::query_plan`] shows
//!   what a query reads. A read-only handle on an older store reads it as it is, checking
//!   what it has no index for row by row; the first writer upgrades it.
//! - **Following** ([`LogStore::commit_watch`]): this handle's commits reach followers
//!   with their records at once; other connections' are noticed within [`WATCH_EVERY`]
//!   (`PRAGMA data_version`, asked by one task for all followers).
//! - **Checkpoints** in all four modes, reporting SQLite's `(busy, log, checkpointed)`.
//! - **Retention** (schema version 4, [`UPGRADE_TO_4`]): prune markers in a table of their
//!   own, stored in the first of the transactions that delete what they cover (at most
//!   [`SqliteOptions::prune_chunk_ids`] ids each); see [`LogStore::apply_prune`] on [`SqliteStore`] for the space.
//! - **Schema version** in `user_version`, and [`APPLICATION_ID`] in `application_id`; a
//!   newer schema is refused with a clear error. Another application's database, and a
//!   path that is not a regular file (a directory, a FIFO, a device), are refused before
//!   anything is changed or created ([`Error::InvalidInput`]).
//!
//! ```
//! use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synclog_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = synclog_sqlite::SqliteStore::open(dir.path().join("logs.db"))?;
//! let rec = store.append(NewLog::new("crm-sync", Status::Succeeded)).await?;
//! assert_eq!(store.get(rec.id).await?, Some(rec));
//! store.close().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod bulk;
mod connection;
mod indexes;
mod prune;
mod query;
mod reader;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use synclog_core::follow::{CommitSignal, CommitWatch, Probe};
use synclog_core::group::{GroupCommit, GroupOptions, GroupStats};
use synclog_core::query::{Filter, StatusCounts, Summary};
use synclog_core::retention::{Applied, PruneMarker};
use synclog_core::{
    Capabilities, CheckpointMode, CheckpointReport, Checksum, Committed, Durability, Error, ImportReport,
    LogId, LogRecord, LogStore, Result, Run, RunScan, Scan, ValidBatch, ValidRecords, VerifyOptions,
    VerifyReport,
};

pub use connection::{synchronous_for, PragmaReport, APPLICATION_ID, SCHEMA, SCHEMA_VERSION, UPGRADE_TO_2};
pub use indexes::UPGRADE_TO_3;
pub use prune::UPGRADE_TO_4;
pub use query::PlannedQuery;
use reader::ReaderPool;
use writer::{Writer, WriterCounters};

/// How often the commit watch asks whether another connection committed.
pub const WATCH_EVERY: Duration = Duration::from_millis(25);

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long one operation (an open, a commit, an import, a sync) waits in all for
    /// other connections' locks before failing with a retryable [`Error::Busy`]. It is one
    /// deadline: SQLite's busy handler and every retry inside the operation share it.
    /// Also the busy timeout of every connection (at most `i32::MAX` milliseconds).
    pub busy_timeout: Duration,
    /// At most how many times a whole transaction is retried after SQLITE_BUSY, with
    /// backoff, within [`SqliteOptions::busy_timeout`].
    pub busy_retries: u32,
    /// Reopen the writer connection after this many commits (0: only after errors).
    pub recycle_after_commits: u64,
    /// `wal_autocheckpoint`, in pages.
    pub wal_autocheckpoint: u32,
    /// Most logs committed in one group.
    pub max_group_logs: usize,
    /// Whether a lone appender on a multi-thread tokio runtime commits on its own thread,
    /// inside `tokio::task::block_in_place`, instead of handing over to the writer thread
    /// and back ([`GroupOptions::inline_lone_commits`]). On by default.
    pub inline_lone_commits: bool,
    /// Idle reader connections kept open.
    pub readers: usize,
    /// Whether reads on a multi-thread tokio runtime run on the caller's thread, inside
    /// `tokio::task::block_in_place`, instead of handing over to a blocking thread and
    /// back: the hand-over costs about as much as a read of 50 records from an index
    /// (measured by `tests/query_bench.rs`). On by default.
    pub inline_reads: bool,
    /// At most how many ids one write transaction of a prune deletes
    /// ([`LogStore::apply_prune`]): appenders wait for one such transaction at most.
    pub prune_chunk_ids: u64,
    /// After a transaction of a prune, while appends are going on (some waited for the
    /// writer, or some were committed since the last transaction began), the writer is
    /// left to them for this many times as long as the transaction took before the next
    /// one starts (1.0: half of the writer's time; 0: the prune runs flat out). Without
    /// appends there is no pause. SQLite has one writer: without a pause, each group of
    /// appends would wait behind a chunk, and appenders that commit one group after
    /// another would get a small share of it.
    pub prune_pause: f64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            busy_retries: 8,
            recycle_after_commits: 100_000,
            wal_autocheckpoint: 1000,
            max_group_logs: 8192,
            inline_lone_commits: true,
            readers: 4,
            inline_reads: true,
            prune_chunk_ids: prune::CHUNK_IDS,
            prune_pause: 1.0,
        }
    }
}

/// Counters of a store's writer, for tests, benchmarks and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Group-commit counters: groups (transactions) versus logs.
    pub group: GroupStats,
    /// How many times the writer connection was opened (1 + recycles).
    pub connection_opens: u64,
    /// Whole-transaction retries after SQLITE_BUSY.
    pub busy_retries: u64,
    /// Imports committed in bulk: large enough (1,000 records or more) that the `logs`
    /// table's insert triggers were set aside for them and their work done once, over all
    /// the inserted rows.
    pub bulk_imports: u64,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    /// The writer; `None` in a handle opened with [`SqliteStore::open_read_only`].
    group: Option<GroupCommit<Writer>>,
    readers: ReaderPool,
    counters: Arc<WriterCounters>,
    closed: AtomicBool,
    /// Told of every commit, import and repair of this handle's writer.
    signal: CommitSignal,
    /// The connection the commit watch asks `PRAGMA data_version` on, opened at the first
    /// watch.
    watcher: Arc<Mutex<Option<rusqlite::Connection>>>,
}

/// One look of the commit watch: `PRAGMA data_version` on the watcher connection (opened
/// on first use, dropped after an error), and the last id when the version differs from
/// the one in `state` (which keeps the version and the id it last saw).
fn look(inner: &Inner, state: &mut Option<(i64, Option<LogId>)>) -> Result<Option<LogId>> {
    if inner.closed.load(Ordering::Acquire) {
        return Err(Error::Closed {
            store: format!("sqlite://{}", inner.path.display()),
        });
    }
    let mut watcher = inner.watcher.lock().unwrap_or_else(|p| p.into_inner());
    if watcher.is_none() {
        *watcher = Some(connection::open_reader(&inner.path, inner.options.busy_timeout)?);
    }
    let Some(conn) = watcher.as_ref() else {
        return Ok(None);
    };
    let looked = conn
        .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
        .and_then(|version| match *state {
            Some((v, id)) if v == version => Ok((version, id)),
            _ => conn
                .query_row("SELECT max(id) FROM logs", [], |r| r.get::<_, Option<i64>>(0))
                .map(|max| (version, max.and_then(|m| LogId::new(m as u64)))),
        });
    match looked {
        Ok((version, id)) => {
            *state = Some((version, id));
            Ok(id)
        }
        Err(e) => {
            *watcher = None;
            Err(connection::map_err(&inner.path, "watching for commits to", e))
        }
    }
}

/// A read task that panicked or was cancelled, as an error.
fn read_task_failed(e: tokio::task::JoinError) -> Error {
    Error::Backend {
        engine: "sqlite",
        context: "a read task failed".into(),
        source: Box::new(e),
    }
}

/// A [`LogStore`] over one SQLite database file. Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the database at `path`. The writer connection is opened
    /// and checked here, so a bad file or setting fails now, not at the first append.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let counters = Arc::new(WriterCounters::default());
        let signal = CommitSignal::new();
        let mut writer = Writer::new(path.clone(), options.clone(), counters.clone(), signal.clone());
        writer.connection()?;
        // A prune cut off between its transactions (its marker stored, records it covers
        // left): finished before anything else is written.
        writer.finish_pending_prunes()?;
        let group = GroupCommit::spawn(
            writer,
            GroupOptions {
                thread_name: "synclog-sqlite-writer".into(),
                max_group_logs: options.max_group_logs,
                inline_lone_commits: options.inline_lone_commits,
                ..GroupOptions::default()
            },
        )?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                readers: ReaderPool::new(path.clone(), options.busy_timeout, options.readers),
                path,
                options,
                group: Some(group),
                counters,
                closed: AtomicBool::new(false),
                signal,
                watcher: Arc::default(),
            }),
        })
    }

    /// Opens the existing database at `path` for reading only: no writer connection, no
    /// schema creation, no WAL switch, no lock that makes a writer wait. Readers are
    /// `SQLITE_OPEN_READ_ONLY` connections; in WAL mode they never block a writer and a
    /// writer never blocks them, and each read sees every transaction committed before it
    /// began. `busy_timeout` bounds the rare waits SQLite itself has (a WAL being recovered).
    ///
    /// A missing file is [`Error::StoreNotFound`] (nothing is created), as is a file that
    /// holds no synclog schema yet; another application's database is
    /// [`Error::InvalidInput`]; a newer schema [`Error::Unsupported`]. Writes through the
    /// handle (`commit`, `import`, `repair`, `sync`, `checkpoint`) fail with
    /// [`Error::Unsupported`] and write nothing.
    ///
    /// What SQLite needs beside the file: a read-only connection to a WAL database uses
    /// its `-shm` and `-wal` files, and creates them if they are absent and the directory
    /// is writable (SQLite 3.22+); the database file itself is never created or changed.
    pub fn open_read_only(path: impl AsRef<Path>, busy_timeout: Duration) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        connection::check_read_only(&path, busy_timeout)?;
        let options = SqliteOptions {
            busy_timeout,
            ..SqliteOptions::default()
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                readers: ReaderPool::new(path.clone(), busy_timeout, options.readers),
                path,
                options,
                group: None,
                counters: Arc::new(WriterCounters::default()),
                closed: AtomicBool::new(false),
                signal: CommitSignal::new(),
                watcher: Arc::default(),
            }),
        })
    }

    /// After a prune: free pages back to the file system (see `apply_prune`), one step per
    /// writer turn so appends go on between them, then the write-ahead log truncated. A
    /// checkpoint that readers keep from finishing is left to later ones.
    async fn give_back_space(&self) -> Result<()> {
        let group = self.writer("prune")?;
        while group.with_writer(|w| w.vacuum_step()).await?? {}
        let report = group
            .with_writer(|w| w.checkpoint(CheckpointMode::Truncate))
            .await??;
        if report.busy {
            let passive = group
                .with_writer(|w| w.checkpoint(CheckpointMode::Passive))
                .await??;
            tracing::debug!(path = %self.inner.path.display(), busy = passive.busy,
                "the write-ahead log was not truncated after a prune: readers are in the way");
        }
        Ok(())
    }

    /// Whether this handle was opened with [`SqliteStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.group.is_none()
    }

    /// The writer, or the error of a write (`what`) through a read-only handle.
    fn writer(&self, what: &str) -> Result<&GroupCommit<Writer>> {
        self.check_open()?;
        self.inner
            .group
            .as_ref()
            .ok_or_else(|| Error::read_only("sqlite", &self.describe(), what))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writer counters.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            group: self.inner.group.as_ref().map(|g| g.stats()).unwrap_or_default(),
            connection_opens: self.inner.counters.opens.load(Ordering::Relaxed),
            busy_retries: self.inner.counters.busy_retries.load(Ordering::Relaxed),
            bulk_imports: self.inner.counters.bulk_imports.load(Ordering::Relaxed),
        }
    }

    /// The PRAGMAs of the writer connection, read back from SQLite now.
    pub async fn pragmas(&self) -> Result<PragmaReport> {
        self.writer("reading the writer's PRAGMAs")?
            .with_writer(|w| {
                let path = w.path().to_path_buf();
                connection::read_pragmas(w.connection()?, &path)
            })
            .await?
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                store: self.describe(),
            });
        }
        Ok(())
    }

    /// SQLite's `EXPLAIN QUERY PLAN` of the statements that answer `query`, one line per
    /// step (its `detail` column: each table step names the index it reads): for operators
    /// asking why a query is slow, and for tests.
    ///
    /// Errors: [`Error::Unsupported`] on a database of an older schema read by a read-only
    /// handle (it has no query indexes); [`Error::InvalidInput`] for a bad filter.
    pub async fn query_plan(&self, query: PlannedQuery) -> Result<Vec<String>> {
        self.read(move |c, p| query::plan(c, p, &query)).await
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection, &Path) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.check_open()?;
        let inner = self.inner.clone();
        if self.inner.options.inline_reads
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            return tokio::task::block_in_place(move || inner.readers.with(f));
        }
        synclog_core::runtime::current("reading an SQLite store")?
            .spawn_blocking(move || inner.readers.with(f))
            .await
            .map_err(read_task_failed)?
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.inner.path.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: "sqlite",
            multi_process: true,
            persistent: true,
            checkpoint: true,
            deep_verify: true,
            repair: true,
            prune: true,
            durability: Durability::ALL.to_vec(),
        }
    }

    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        let group = self.writer("commit")?;
        group.commit(batch, durability).await
    }

    /// From the `idempotency_keys` table, by its primary key.
    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let key = key.to_string();
        self.read(move |c, p| reader::find_idempotent(c, p, &key)).await
    }

    /// From the `idempotency_keys` table: one statement on one reader connection for the whole list.
    async fn find_idempotent_many(&self, keys: &[String]) -> Result<Vec<LogRecord>> {
        let keys = keys.to_vec();
        self.read(move |c, p| reader::find_idempotent_many(c, p, &keys))
            .await
    }

    /// From the `logs_by_run` index.
    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let run = run.to_string();
        self.read(move |c, p| reader::run_records(c, p, &run)).await
    }

    /// From the `runs` table (kept by triggers) and its indexes.
    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        let scan = scan.clone();
        self.read(move |c, p| reader::runs(c, p, &scan)).await
    }

    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.read(move |c, p| reader::get(c, p, id)).await
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        scan.effective_limit()?;
        let scan = scan.clone();
        self.read(move |c, p| query::scan(c, p, &scan)).await
    }

    /// From the indexes (schema version 3): one `count(*)` over the narrowest index the
    /// filter allows, or `log_attrs` alone for one attribute condition. An older schema
    /// read by a read-only handle is counted row by row.
    ///
    /// Errors: [`Error::InvalidInput`] for a filter [`Filter::validate`] refuses.
    async fn count(&self, filter: &Filter) -> Result<u64> {
        filter.validate()?;
        let filter = filter.clone();
        self.read(move |c, p| query::count(c, p, &filter)).await
    }

    /// From `job_stats` for jobs and statuses alone, one index count per status for a
    /// `recorded` range, else one `GROUP BY status` (see `query::count_by_status`). An
    /// older schema read by a read-only handle is counted row by row.
    ///
    /// Errors: [`Error::InvalidInput`] for a filter [`Filter::validate`] refuses.
    async fn count_by_status(&self, filter: &Filter) -> Result<StatusCounts> {
        filter.validate()?;
        let filter = filter.clone();
        self.read(move |c, p| query::count_by_status(c, p, &filter)).await
    }

    /// From `job_stats` (kept by triggers) for an empty filter, else one `GROUP BY job,
    /// status` over the matching rows; then each job's newest records by id, and its
    /// failures since its latest success from the `(job, id)` index.
    ///
    /// Errors: [`Error::InvalidInput`] for a filter [`Filter::validate`] refuses.
    async fn summary(&self, filter: &Filter) -> Result<Summary> {
        filter.validate()?;
        let filter = filter.clone();
        self.read(move |c, p| query::summary(c, p, &filter)).await
    }

    /// This handle's commits reach followers with their records, at once (no polling);
    /// other handles' and processes' are seen by `PRAGMA data_version` of a connection kept
    /// for it, asked every [`WATCH_EVERY`] by one task for all followers while any waits
    /// (the last id is read only when the version changed).
    ///
    /// Errors: [`Error::Closed`] after `close`; errors of reading the database.
    async fn commit_watch(&self) -> Result<CommitWatch> {
        synclog_core::runtime::current("watching an SQLite store")?;
        self.check_open()?;
        let inner = self.inner.clone();
        let state = Arc::new(Mutex::new(None));
        let probe: Probe = Box::new(move || {
            let (inner, state) = (inner.clone(), state.clone());
            Box::pin(async move {
                tokio::task::spawn_blocking(move || {
                    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                    look(&inner, &mut state)
                })
                .await
                .map_err(read_task_failed)?
            })
        });
        self.inner.signal.watch(Some((WATCH_EVERY, probe))).await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        self.read(reader::last_id).await
    }

    /// The larger of the last id and the `high_water` row of `meta`. The row is raised by
    /// imports and at every batch of commits the writer saves it (and at close), so after a
    /// crash it may lag the ids of the last commits; those are stored rows, which
    /// `last_id` covers unless they were deleted behind the store's back as well.
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.read(reader::high_water).await
    }

    async fn id_checksums(&self, after: Option<LogId>, limit: usize) -> Result<Vec<(LogId, Checksum)>> {
        self.read(move |c, p| reader::id_checksums(c, p, after, limit))
            .await
    }

    async fn sync(&self, level: Durability) -> Result<()> {
        self.writer("sync")?.with_writer(move |w| w.sync(level)).await?
    }

    async fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointReport> {
        self.writer("checkpoint")?
            .with_writer(move |w| w.checkpoint(mode))
            .await?
    }

    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.check_open()?;
        let path = self.inner.path.clone();
        let timeout = self.inner.options.busy_timeout;
        synclog_core::runtime::current("verifying an SQLite store")?
            .spawn_blocking(move || reader::verify(&path, timeout, options))
            .await
            .map_err(|e| Error::Backend {
                engine: "sqlite",
                context: "the verify task failed".into(),
                source: Box::new(e),
            })?
    }

    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        let group = self.writer("import")?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        group.with_writer(move |w| w.import(&records, durability)).await?
    }

    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        let group = self.writer("repair")?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        group.with_writer(move |w| w.repair(&records, durability)).await?
    }

    /// From the `prune_markers` table, oldest first (none on a database of an older schema
    /// read by a read-only handle).
    ///
    /// Errors: [`Error::Corrupt`] for a stored marker that does not decode or match its
    /// checksum.
    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        self.read(prune::markers).await
    }

    /// Stores `marker` and deletes the records it covers, through the writer (between
    /// groups of appends), in write transactions of at most
    /// [`SqliteOptions::prune_chunk_ids`] ids each (20,000 by default): the first one
    /// stores the marker (unless a marker of its digest is stored: then
    /// [`Applied::already_marked`]) and raises the high-water mark to its last id, so at
    /// every moment each record is present or covered by a stored marker, and ids are
    /// never reused. Appenders wait for one of them at most, never for the whole prune; a
    /// prune interrupted between them is finished by applying the marker again. Each
    /// deletes its ranges by the primary key, one statement per range, with their attribute
    /// entries, run rows and keys, and keeps the per-job totals exact.
    ///
    /// Space: a database created by this version (`auto_vacuum = INCREMENTAL`) gives the
    /// freed pages back to the file system afterwards, 1,000 pages per transaction,
    /// then truncates the write-ahead log (a checkpoint `TRUNCATE`, or
    /// `PASSIVE` when readers are in the way); neither needs more free disk than the
    /// deletion did. A database created before (`auto_vacuum = NONE`, which only a `VACUUM`
    /// can change) keeps its size: its freed pages are reused by later appends. Run
    /// `VACUUM` on it by hand to shrink it, knowing that it needs as much free disk as the
    /// database takes, and locks out writers while it runs; it is never run automatically.
    ///
    /// Errors: [`Error::Corrupt`] for a marker that does not match its checksum (nothing
    /// written); [`Error::Unsupported`] through a read-only handle; [`Error::Busy`] when
    /// another process held the lock too long (applying the marker again finishes).
    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        synclog_core::runtime::current("pruning an SQLite store")?;
        let group = self.writer("prune")?;
        synclog_core::retention::check_marker(marker)?;
        let marker = Arc::new(marker.clone());
        let mut applied = Applied::default();
        let mut spent = Duration::ZERO;
        let size = self.inner.options.prune_chunk_ids.max(1);
        let pause = self.inner.options.prune_pause;
        let pause = if pause.is_finite() {
            pause.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let mut batches = group.stats().batches;
        for (i, chunk) in prune::chunks(&marker.ranges, size).into_iter().enumerate() {
            let appending = group.in_flight() > 0 || group.stats().batches != batches;
            if i > 0 && pause > 0.0 && appending {
                // Not a wait for the disk: the writer's time between two chunks, for appends.
                tokio::time::sleep(spent.mul_f64(pause)).await;
            }
            batches = group.stats().batches;
            let m = marker.clone();
            let started = std::time::Instant::now();
            let (deleted, already) = group
                .with_writer(move |w| w.prune_chunk(&m, i == 0, &chunk, durability))
                .await??;
            spent = started.elapsed();
            applied.deleted += deleted;
            applied.already_marked |= already;
        }
        // Also when nothing was deleted now: an earlier give-back may have been cut off.
        // The prune is done whatever happens here: a failure is a warning, not its error.
        if let Err(e) = self.give_back_space().await {
            tracing::warn!(path = %self.inner.path.display(), error = %e,
                "the prune is done, but its freed pages were not all given back; the next prune tries again");
        }
        Ok(applied)
    }

    /// The database file and its write-ahead log.
    async fn storage_bytes(&self) -> Result<Option<u64>> {
        self.check_open()?;
        let mut total = 0;
        for suffix in ["", "-wal"] {
            let mut name = self.inner.path.clone().into_os_string();
            name.push(suffix);
            match std::fs::metadata(&name) {
                Ok(meta) => total += meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("measuring {}", PathBuf::from(name).display()),
                        e,
                    ))
                }
            }
        }
        Ok(Some(total))
    }

    async fn close(&self) -> Result<()> {
        let runtime = synclog_core::runtime::current("closing an SQLite store")?;
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.readers.clear();
        self.inner
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let inner = self.inner.clone();
        runtime
            .spawn_blocking(move || match &inner.group {
                Some(group) => group.shutdown(),
                None => Ok(()),
            })
            .await
            .map_err(|e| Error::Backend {
                engine: "sqlite",
                context: "closing".into(),
                source: Box::new(e),
            })?
    }
}
