//! The writer: one connection, owned by the group-commit thread, recycled after an error
//! and after a configurable number of commits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, Connection, ErrorCode};
use synclog_core::follow::CommitSignal;
use synclog_core::group::BatchWriter;
use synclog_core::retention::{PruneMarker, Pruned};
use synclog_core::run::{seal_group, Committed, Fetched, Keys, Planner};
use synclog_core::{
    CheckpointMode, CheckpointReport, Checksum, Durability, Error, ImportReport, LogId, LogRecord, NewLog,
    Result,
};

use crate::bulk::{Bulk, BULK_IMPORT_RECORDS};
use crate::connection::{self, map_err, BoundBusy, Deadline};
use crate::indexes::{index_attrs, unindex_attrs};
use crate::prune::MarkersKey;
use crate::SqliteOptions;

const INSERT: &str = "INSERT INTO logs (id, recorded_at, job, status, started_at, finished_at, \
    items_seen, items_written, items_failed, message, attrs, checksum, run_key, idempotency_key) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
const INSERT_IF_ABSENT: &str = "INSERT INTO logs (id, recorded_at, job, status, started_at, finished_at, \
    items_seen, items_written, items_failed, message, attrs, checksum, run_key, idempotency_key) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT(id) DO NOTHING";

/// Counters of the writer's connection life, for tests and operators.
#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    pub opens: AtomicU64,
    pub busy_retries: AtomicU64,
    pub bulk_imports: AtomicU64,
}

pub(crate) struct Writer {
    path: PathBuf,
    options: SqliteOptions,
    conn: Option<Connection>,
    commits_on_conn: u64,
    synchronous: Option<Durability>,
    counters: Arc<WriterCounters>,
    /// The largest id this writer assigned or imported; keeps ids from being reused if the
    /// newest rows are deleted behind the store's back while it is open.
    assigned: u64,
    /// Commits since the high-water mark was last stored.
    unsaved_commits: u64,
    /// Told the last id after every commit, import and repair that wrote a record.
    signal: CommitSignal,
    /// The ids the stored prune markers cover, as last read, and what identified the
    /// markers then (read again when another writer added one).
    pruned: Option<(MarkersKey, Arc<Pruned>)>,
}

/// How often (in commits and imports) the high-water mark is stored. It is also stored at
/// a clean close; storing it at every write would dirty one more page per transaction.
const SAVE_HIGH_WATER_EVERY: u64 = 1000;

impl Writer {
    pub(crate) fn new(
        path: PathBuf,
        options: SqliteOptions,
        counters: Arc<WriterCounters>,
        signal: CommitSignal,
    ) -> Self {
        Writer {
            path,
            options,
            conn: None,
            commits_on_conn: 0,
            synchronous: None,
            counters,
            assigned: 0,
            unsaved_commits: 0,
            signal,
            pruned: None,
        }
    }

    /// The open connection, opening (and checking) a fresh one if needed.
    pub(crate) fn connection(&mut self) -> Result<&mut Connection> {
        self.connection_by(Deadline::after(self.options.busy_timeout))
    }

    /// [`Writer::connection`], waiting for other connections' locks until `deadline`.
    fn connection_by(&mut self, deadline: Deadline) -> Result<&mut Connection> {
        if self.conn.is_none() {
            let (conn, _pragmas) = connection::open_writer(
                &self.path,
                deadline,
                self.options.busy_timeout,
                self.options.wal_autocheckpoint,
                Durability::PowerLoss,
            )?;
            self.counters.opens.fetch_add(1, Ordering::Relaxed);
            self.synchronous = Some(Durability::PowerLoss);
            self.commits_on_conn = 0;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| Error::Closed {
            store: format!("sqlite://{}", self.path.display()),
        })
    }

    /// Drops the connection. After an error this is what keeps a failed fsync from ever
    /// being retried on the same handle.
    fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            // The error that brought us here is the one reported; a close error adds nothing.
            let _ = connection::close(conn, &self.path);
        }
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction at `durability`, committing at the end.
    ///
    /// SQLITE_BUSY is retried with bounded backoff, then reported as retryable
    /// [`Error::Busy`]. The whole call, retries and a reopened connection included, waits
    /// for other connections' locks at most `busy_timeout`: each attempt's busy handler is
    /// bounded by the time left. Any other error discards the connection.
    fn transact<R>(
        &mut self,
        durability: Durability,
        mut body: impl FnMut(&Connection) -> Result<R>,
    ) -> Result<R> {
        let deadline = Deadline::after(self.options.busy_timeout);
        let mut attempt = 0u32;
        let result = loop {
            match self.try_transact(durability, deadline, attempt > 0, &mut body) {
                Ok(r) => break Ok(r),
                Err(e)
                    if e.kind() == synclog_core::ErrorKind::Busy
                        && attempt < self.options.busy_retries
                        && !deadline.has_passed() =>
                {
                    attempt += 1;
                    self.counters.busy_retries.fetch_add(1, Ordering::Relaxed);
                    // Bounded exponential backoff between whole-transaction retries, never
                    // past the deadline.
                    std::thread::sleep(
                        Duration::from_millis(5u64 << attempt.min(6)).min(deadline.remaining()),
                    );
                }
                Err(e) => {
                    if e.kind() != synclog_core::ErrorKind::Busy {
                        self.discard();
                    }
                    break Err(e);
                }
            }
        };
        if attempt > 0 {
            // A retry bounded the busy handler by what was left: give it back its full wait,
            // or drop the connection (the next call opens a fresh one with the full wait).
            let full = connection::busy_timeout_of(self.options.busy_timeout);
            if self.conn.as_ref().is_some_and(|c| c.busy_timeout(full).is_err()) {
                self.discard();
            }
        }
        let r = result?;
        self.commits_on_conn += 1;
        let recycle = self.options.recycle_after_commits;
        if recycle > 0 && self.commits_on_conn >= recycle {
            if let Some(conn) = self.conn.take() {
                connection::close(conn, &self.path)?;
            }
        }
        Ok(r)
    }

    fn try_transact<R>(
        &mut self,
        durability: Durability,
        deadline: Deadline,
        retry: bool,
        body: &mut impl FnMut(&Connection) -> Result<R>,
    ) -> Result<R> {
        let path = self.path.clone();
        if self.synchronous != Some(durability) {
            let conn = self.connection_by(deadline)?;
            connection::set_synchronous(conn, &path, durability)?;
            self.synchronous = Some(durability);
        }
        let conn = self.connection_by(deadline)?;
        if retry {
            deadline
                .bound(conn)
                .map_err(|e| map_err(&path, "setting busy_timeout on", e))?;
        }
        // BEGIN and COMMIT through cached statements: rusqlite's `Transaction` prepares
        // them afresh each time, and every append runs one.
        run_cached(conn, "BEGIN IMMEDIATE")
            .map_err(|e| map_err(&path, "beginning a write transaction on", e))?;
        let done = body(conn).and_then(|r| {
            run_cached(conn, "COMMIT")
                .map(|()| r)
                .map_err(|e| map_err(&path, "committing to", e))
        });
        if done.is_err() && !conn.is_autocommit() {
            // Still inside the transaction: roll it back, or drop the connection.
            if run_cached(conn, "ROLLBACK").is_err() {
                self.discard();
            }
        }
        done
    }

    /// The next id: above every stored id, the stored high-water mark, and every id this
    /// writer assigned (another process may have written since: this runs inside the
    /// `BEGIN IMMEDIATE` transaction).
    fn next_id(tx: &Connection, path: &std::path::Path, assigned: u64) -> Result<u64> {
        // One cached statement: this runs in every write transaction.
        let (max, hw): (Option<i64>, i64) = tx
            .prepare_cached(
                "SELECT (SELECT max(id) FROM logs), (SELECT value FROM meta WHERE key = 'high_water')",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| map_err(path, "reading the last id and high-water mark of", e))?;
        Ok((max.unwrap_or(0).max(hw) as u64).max(assigned) + 1)
    }

    fn raise_high_water(tx: &Connection, path: &std::path::Path, last: u64) -> Result<()> {
        tx.prepare_cached("UPDATE meta SET value = max(value, ?1) WHERE key = 'high_water'")
            .and_then(|mut s| s.execute([last as i64]))
            .map_err(|e| map_err(path, "updating the high-water mark of", e))?;
        Ok(())
    }

    /// Imports records keeping their ids. See [`synclog_core::LogStoreExt::import`].
    pub(crate) fn import(&mut self, records: &[LogRecord], durability: Durability) -> Result<ImportReport> {
        let path = self.path.clone();
        let save = self.unsaved_commits + 1 >= SAVE_HIGH_WATER_EVERY;
        let assigned = self.assigned;
        let cached = self.pruned.clone();
        let in_bulk = records.len() >= BULK_IMPORT_RECORDS;
        let (report, max, pruned) = self.transact(durability, |tx| {
            let pruned = crate::prune::pruned(tx, &path, cached.as_ref())?;
            let mut report = ImportReport::default();
            // Set aside first: the insert statement then runs without them (SQLite prepares
            // a cached statement again at its first step after a schema change).
            let bulk = match in_bulk {
                true => Some(Bulk::begin(tx, &path)?),
                false => None,
            };
            let mut insert = tx
                .prepare_cached(INSERT_IF_ABSENT)
                .map_err(|e| map_err(&path, "preparing an import into", e))?;
            let mut existing = tx
                .prepare_cached("SELECT checksum FROM logs WHERE id = ?1")
                .map_err(|e| map_err(&path, "preparing an import into", e))?;
            let mut max = 0u64;
            for rec in records {
                if pruned.1.contains(rec.id) {
                    report.pruned += 1;
                    continue;
                }
                let n = insert_row(&mut insert, rec)
                    .map_err(|e| map_err(&path, &format!("importing log {} into", rec.id), e))?;
                if n == 1 {
                    if let Some(bulk) = &bulk {
                        bulk.inserted(tx, &path, rec.id)?;
                    }
                    index_attrs(tx, &path, rec.id, rec.attrs.as_str())?;
                    report.inserted += 1;
                    max = max.max(rec.id.get());
                    continue;
                }
                let stored: i64 = existing
                    .query_row([rec.id.get() as i64], |r| r.get(0))
                    .map_err(|e| map_err(&path, "reading a stored checksum of", e))?;
                report.note_existing(rec.id, Checksum(stored as u32), rec.checksum);
            }
            if let Some(bulk) = bulk {
                bulk.finish(tx, &path)?;
            }
            if save && max > 0 {
                Self::raise_high_water(tx, &path, max.max(assigned))?;
            }
            Ok((report, max, pruned))
        })?;
        self.pruned = Some(pruned);
        if in_bulk {
            self.counters.bulk_imports.fetch_add(1, Ordering::Relaxed);
        }
        // Like commits, imports keep the mark in memory and store it every
        // SAVE_HIGH_WATER_EVERY writes and at close (a guarded store imports every group).
        self.assigned = self.assigned.max(max);
        self.signal_committed(max);
        if report.inserted > 0 {
            self.unsaved_commits = if save { 0 } else { self.unsaved_commits + 1 };
        }
        Ok(report)
    }

    /// Imports records, replacing stored ones that are damaged. See
    /// [`synclog_core::LogStoreExt::repair`].
    pub(crate) fn repair(&mut self, records: &[LogRecord], durability: Durability) -> Result<ImportReport> {
        let path = self.path.clone();
        let cached = self.pruned.clone();
        let (report, max, pruned) = self.transact(durability, |tx| {
            let pruned = crate::prune::pruned(tx, &path, cached.as_ref())?;
            let mut report = ImportReport::default();
            let mut max = 0u64;
            for rec in records {
                if pruned.1.contains(rec.id) {
                    report.pruned += 1;
                    continue;
                }
                let damaged = match crate::reader::get(tx, &path, rec.id) {
                    Ok(None) => false,
                    Ok(Some(stored)) if stored.is_intact() => {
                        report.note_existing(rec.id, stored.checksum, rec.checksum);
                        continue;
                    }
                    // Damaged fields, or a row that does not even decode: replace it.
                    Ok(Some(_)) | Err(Error::Corrupt { .. }) => true,
                    Err(e) => return Err(e),
                };
                if damaged {
                    // The attribute index holds what the row held when it was written: the
                    // record's own attributes, unless they are what was damaged.
                    let stored: Option<String> = tx
                        .query_row(
                            "SELECT attrs FROM logs WHERE id = ?1",
                            [rec.id.get() as i64],
                            |r| r.get::<_, String>(0),
                        )
                        .ok();
                    let texts: Vec<&str> = stored
                        .iter()
                        .map(String::as_str)
                        .chain([rec.attrs.as_str()])
                        .collect();
                    unindex_attrs(tx, &path, rec.id, &texts)?;
                    tx.execute("DELETE FROM logs WHERE id = ?1", [rec.id.get() as i64])
                        .map_err(|e| map_err(&path, &format!("removing damaged log {} from", rec.id), e))?;
                    report.replaced += 1;
                } else {
                    report.inserted += 1;
                }
                let mut insert = tx
                    .prepare_cached(INSERT)
                    .map_err(|e| map_err(&path, "preparing a repair of", e))?;
                insert_row(&mut insert, rec)
                    .map_err(|e| map_err(&path, &format!("repairing log {} in", rec.id), e))?;
                index_attrs(tx, &path, rec.id, rec.attrs.as_str())?;
                max = max.max(rec.id.get());
            }
            Ok((report, max, pruned))
        })?;
        self.pruned = Some(pruned);
        self.assigned = self.assigned.max(max);
        if max > 0 {
            self.unsaved_commits += 1;
        }
        self.signal_committed(max);
        Ok(report)
    }

    /// One transaction of a prune (see [`crate::SqliteStore`]'s `apply_prune`): with
    /// `first`, stores `marker` unless a marker of its digest is stored (returned as
    /// `true`) and raises the high-water mark to its last id, so no id it covers is ever
    /// assigned again; then deletes the records of `ranges`. Returns how many it deleted.
    pub(crate) fn prune_chunk(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        ranges: &[(i64, i64)],
        durability: Durability,
    ) -> Result<(u64, bool)> {
        let path = self.path.clone();
        let top = marker.last_id().map_or(0, LogId::get);
        let done = self.transact(durability, |tx| {
            let mut already = false;
            if first {
                already = crate::prune::store_marker(tx, &path, marker)?;
                if top > 0 {
                    Self::raise_high_water(tx, &path, top)?;
                }
            }
            let deleted = crate::prune::delete_ranges(tx, &path, ranges)?;
            Ok((deleted, already))
        })?;
        self.assigned = self.assigned.max(top);
        Ok(done)
    }

    /// Deletes the records a stored marker covers that are still there (a prune cut off
    /// between its transactions), chunk by chunk as a prune does. Returns how many.
    pub(crate) fn finish_pending_prunes(&mut self) -> Result<u64> {
        let path = self.path.clone();
        let markers = crate::prune::markers(self.connection()?, &path)?;
        let mut deleted = 0;
        for marker in &markers {
            let conn = self.connection()?;
            let mut any = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM logs WHERE id BETWEEN ?1 AND ?2)")
                .map_err(|e| map_err(&path, "checking the prunes of", e))?;
            let mut pending = false;
            for r in &marker.ranges {
                let (first, last) = (r.first.get() as i64, r.last.get() as i64);
                if any
                    .query_row([first, last], |row| row.get::<_, bool>(0))
                    .map_err(|e| map_err(&path, "checking the prunes of", e))?
                {
                    pending = true;
                    break;
                }
            }
            drop(any);
            if !pending {
                continue;
            }
            let size = self.options.prune_chunk_ids.max(1);
            for chunk in crate::prune::chunks(&marker.ranges, size) {
                deleted += self.prune_chunk(marker, false, &chunk, Durability::PowerLoss)?.0;
            }
            tracing::warn!(path = %path.display(), marker = %marker.name(), "a prune cut off by a crash was finished");
        }
        Ok(deleted)
    }

    /// Gives back up to [`crate::prune::VACUUM_PAGES`] free pages to the file system, in one
    /// transaction, on a database created with `auto_vacuum = INCREMENTAL`. Returns whether
    /// free pages remain to give back (never on other databases: their free pages are
    /// reused by later writes).
    pub(crate) fn vacuum_step(&mut self) -> Result<bool> {
        let path = self.path.clone();
        let conn = self.connection()?;
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(|e| map_err(&path, "reading auto_vacuum of", e))?;
        if mode != 2 {
            return Ok(false);
        }
        let sql = format!("PRAGMA incremental_vacuum({})", crate::prune::VACUUM_PAGES);
        let left = self.transact(Durability::Process, |tx| {
            let step = || -> rusqlite::Result<i64> {
                let free =
                    |tx: &Connection| tx.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0));
                if free(tx)? == 0 {
                    return Ok(0);
                }
                let mut stmt = tx.prepare_cached(&sql)?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                drop(rows);
                free(tx)
            };
            step().map_err(|e| map_err(&path, "giving back the free pages of", e))
        })?;
        Ok(left > 0)
    }

    /// Stores the high-water mark if commits since the last save left it behind.
    fn save_high_water(&mut self) -> Result<()> {
        if self.unsaved_commits == 0 || self.assigned == 0 {
            return Ok(());
        }
        let (path, assigned) = (self.path.clone(), self.assigned);
        self.transact(Durability::PowerLoss, |tx| {
            Self::raise_high_water(tx, &path, assigned)
        })?;
        self.unsaved_commits = 0;
        Ok(())
    }

    /// The durability hook: a write at `level` whose WAL sync covers every earlier frame.
    pub(crate) fn sync(&mut self, level: Durability) -> Result<()> {
        let path = self.path.clone();
        self.transact(level, |tx| {
            tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'syncs'", [])
                .map_err(|e| map_err(&path, "syncing", e))?;
            Ok(())
        })
    }

    /// `PRAGMA wal_checkpoint(MODE)`, reporting SQLite's `(busy, log, checkpointed)` row.
    pub(crate) fn checkpoint(&mut self, mode: CheckpointMode) -> Result<CheckpointReport> {
        let path = self.path.clone();
        let sql = match mode {
            CheckpointMode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            CheckpointMode::Full => "PRAGMA wal_checkpoint(FULL)",
            CheckpointMode::Restart => "PRAGMA wal_checkpoint(RESTART)",
            CheckpointMode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        };
        let conn = self.connection()?;
        let row = conn.query_row(sql, [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match row {
            Ok((busy, log_frames, checkpointed)) => Ok(CheckpointReport {
                mode,
                busy: busy != 0,
                log_frames,
                checkpointed,
            }),
            // A concurrent checkpointer makes SQLite answer BUSY at once: that is "blocked".
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => Ok(CheckpointReport {
                mode,
                busy: true,
                log_frames: -1,
                checkpointed: -1,
            }),
            Err(e) => {
                let err = map_err(&path, "checkpointing", e);
                self.discard();
                Err(err)
            }
        }
    }
}

/// Runs a statement without parameters or rows through the connection's statement cache.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

/// Executes an insert statement of the 12 columns for `rec`.
fn insert_row(stmt: &mut rusqlite::CachedStatement<'_>, rec: &LogRecord) -> rusqlite::Result<usize> {
    stmt.execute(params![
        rec.id.get() as i64,
        rec.recorded_at.timestamp_micros(),
        rec.job,
        rec.status.as_str(),
        rec.started_at.timestamp_micros(),
        rec.finished_at.map(|t| t.timestamp_micros()),
        rec.items_seen as i64,
        rec.items_written as i64,
        rec.items_failed as i64,
        rec.message,
        rec.attrs.as_str(),
        rec.checksum.0 as i64,
        rec.run,
        rec.idempotency_key,
    ])
}

/// Every key of a group looked up inside its write transaction, at once: the idempotency
/// keys in one statement, the runs one by one (a group of 64 keyed appends asked 64
/// statements before).
fn fetch_keys(tx: &Connection, path: &std::path::Path, batches: &[&[NewLog]]) -> Result<Fetched> {
    let wanted = Planner::wanted(batches.iter().copied());
    let mut fetched = Fetched::default();
    for rec in crate::reader::find_idempotent_many(tx, path, &wanted.idempotent)? {
        if let Some(key) = rec.idempotency_key.clone() {
            fetched.idempotent.entry(key).or_insert(rec);
        }
    }
    for run in wanted.runs {
        if let Some(ends) = crate::reader::run_ends(tx, path, &run)? {
            fetched.runs.insert(run, ends);
        }
    }
    Ok(fetched)
}

impl BatchWriter for Writer {
    fn commit_group(
        &mut self,
        batches: &[&[NewLog]],
        durability: Durability,
    ) -> Result<Vec<Result<Committed>>> {
        let path = self.path.clone();
        let assigned = self.assigned;
        let save = self.unsaved_commits + 1 >= SAVE_HIGH_WATER_EVERY;
        let keyed = Planner::any_keys(batches.iter().copied());
        let (out, last) = self.transact(durability, |tx| {
            let mut next = Self::next_id(tx, &path, assigned)?;
            let now = Utc::now();
            let mut insert = tx
                .prepare_cached(INSERT)
                .map_err(|e| map_err(&path, "preparing an insert into", e))?;
            let mut seal = |log: &NewLog| -> Result<LogRecord> {
                let rec = LogRecord::seal_next("sqlite", &mut next, now, log)?;
                insert_row(&mut insert, &rec).map_err(|e| map_err(&path, "inserting into", e))?;
                index_attrs(tx, &path, rec.id, rec.attrs.as_str())?;
                Ok(rec)
            };
            // The rules of runs and keys run inside the write transaction: every other
            // writer (thread or process) waits for it, so they hold across processes.
            let mut keys = match keyed {
                true => Some(fetch_keys(tx, &path, batches)?),
                false => None,
            };
            let out = seal_group(batches, keys.as_mut().map(|k| k as &mut dyn Keys), &mut seal)?;
            if save {
                Self::raise_high_water(tx, &path, next - 1)?;
            }
            // A repeat is answered at this commit's durability: the record it repeats may
            // have been committed at a weaker one. A transaction that writes nothing is not
            // synced, so a group with repeats writes one row, and its commit syncs the WAL
            // up to here (the original record included).
            let repeats = out.iter().flatten().any(|c| c.repeats.iter().any(|r| *r));
            if repeats {
                tx.prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'syncs'")
                    .and_then(|mut s| s.execute([]))
                    .map_err(|e| map_err(&path, "recording a repeat in", e))?;
            }
            Ok((out, next - 1))
        })?;
        self.assigned = self.assigned.max(last);
        self.unsaved_commits = if save { 0 } else { self.unsaved_commits + 1 };
        // The group's new records, in id order, to this process's followers.
        self.signal
            .committed_records(out.iter().flatten().flat_map(Committed::new_records));
        Ok(out)
    }

    fn close(&mut self) -> Result<()> {
        self.save_high_water()?;
        match self.conn.take() {
            Some(conn) => connection::close(conn, &self.path),
            None => Ok(()),
        }
    }
}

impl Writer {
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Wakes followers: everything up to `last` (0: nothing was written) is committed.
    fn signal_committed(&self, last: u64) {
        if let Some(id) = LogId::new(last) {
            self.signal.committed(id);
        }
    }
}
