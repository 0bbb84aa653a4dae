//! Opening connections: PRAGMAs set explicitly and read back, the schema, error mapping.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
pub(crate) use synclog_core::deadline::Deadline;
use synclog_core::{Durability, Error, Result};

/// The schema version this build writes, kept in `PRAGMA user_version`: 1 until runs and
/// idempotency keys, 2 with them ([`UPGRADE_TO_2`]), 3 with the query indexes
/// ([`crate::indexes::UPGRADE_TO_3`]), 4 with prune markers ([`crate::prune::UPGRADE_TO_4`]).
pub const SCHEMA_VERSION: i64 = 4;

/// synclog's `PRAGMA application_id` (`"SYNL"`), set on every database it creates, so
/// another application's database can be told from a synclog one before anything is
/// changed. (Databases made before it was set have 0 and are known by their schema.)
pub const APPLICATION_ID: i32 = 0x5359_4e4c;

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The schema synclog creates (version [`SCHEMA_VERSION`]); public so benchmarks can
/// give raw rusqlite the same table.
pub const SCHEMA: &str = "
CREATE TABLE logs (
    id            INTEGER PRIMARY KEY,   -- LogId, assigned densely by the writer
    recorded_at   INTEGER NOT NULL,      -- microseconds since the Unix epoch, UTC
    job           TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    items_seen    INTEGER NOT NULL,
    items_written INTEGER NOT NULL,
    items_failed  INTEGER NOT NULL,
    message       TEXT    NOT NULL,
    attrs         TEXT    NOT NULL,      -- canonical JSON text
    checksum      INTEGER NOT NULL       -- CRC-32C of the canonical encoding
);
CREATE INDEX logs_by_job ON logs(job, id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('high_water', 0), ('syncs', 0);
";

/// What version 2 adds to a version 1 database (a new one gets [`SCHEMA`] then this):
/// the run and idempotency keys of a record; `idempotency_keys` (key → id) and `runs`
/// (one row per run: its first and latest record), both kept by triggers on every insert
/// and delete of a keyed record, whoever writes it (commits, imports, repairs); an index of
/// each run's records. Rows written before have no keys, so nothing is backfilled: the
/// upgrade is one transaction of schema changes.
///
/// Keys are looked up through tables of their own rather than partial indexes of `logs`:
/// SQLite prepares a statement again each time a parameter that decides whether a partial
/// index applies changes, which cost more than the rest of a keyed append.
pub const UPGRADE_TO_2: &str = "
ALTER TABLE logs ADD COLUMN run_key TEXT;
ALTER TABLE logs ADD COLUMN idempotency_key TEXT;
CREATE INDEX logs_by_run ON logs(run_key, id) WHERE run_key IS NOT NULL;
CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER logs_into_idempotency_keys AFTER INSERT ON logs WHEN NEW.idempotency_key IS NOT NULL BEGIN
    INSERT OR IGNORE INTO idempotency_keys VALUES (NEW.idempotency_key, NEW.id);
    UPDATE idempotency_keys SET id = min(id, NEW.id) WHERE key = NEW.idempotency_key;
END;
CREATE TRIGGER logs_out_of_idempotency_keys AFTER DELETE ON logs WHEN OLD.idempotency_key IS NOT NULL BEGIN
    DELETE FROM idempotency_keys WHERE key = OLD.idempotency_key AND id = OLD.id;
END;
CREATE TABLE runs (
    run_key    TEXT PRIMARY KEY,
    job        TEXT    NOT NULL,      -- the first record's
    first_id   INTEGER NOT NULL,
    last_id    INTEGER NOT NULL,
    status     TEXT    NOT NULL,      -- the latest record's
    finished   INTEGER NOT NULL,      -- 1 when the latest record is terminal
    started_at INTEGER NOT NULL       -- the first record's
) WITHOUT ROWID;
CREATE INDEX runs_by_first ON runs(first_id);
CREATE INDEX runs_by_job ON runs(job, first_id);
CREATE INDEX runs_unfinished ON runs(first_id) WHERE finished = 0;
CREATE TRIGGER logs_into_runs AFTER INSERT ON logs WHEN NEW.run_key IS NOT NULL BEGIN
    INSERT OR IGNORE INTO runs VALUES (NEW.run_key, NEW.job, NEW.id, NEW.id, NEW.status,
        NEW.status NOT IN ('started', 'progress'), NEW.started_at);
    UPDATE runs SET
        job = CASE WHEN NEW.id < first_id THEN NEW.job ELSE job END,
        started_at = CASE WHEN NEW.id < first_id THEN NEW.started_at ELSE started_at END,
        first_id = min(first_id, NEW.id),
        status = CASE WHEN NEW.id > last_id THEN NEW.status ELSE status END,
        finished = CASE WHEN NEW.id > last_id THEN NEW.status NOT IN ('started', 'progress') ELSE finished END,
        last_id = max(last_id, NEW.id)
    WHERE run_key = NEW.run_key;
END;
CREATE TRIGGER logs_out_of_runs AFTER DELETE ON logs WHEN OLD.run_key IS NOT NULL BEGIN
    DELETE FROM runs WHERE run_key = OLD.run_key;
    INSERT INTO runs SELECT f.run_key, f.job, f.id, l.id, l.status,
            l.status NOT IN ('started', 'progress'), f.started_at
        FROM (SELECT run_key, job, id, started_at FROM logs WHERE run_key = OLD.run_key ORDER BY id LIMIT 1) AS f,
             (SELECT id, status FROM logs WHERE run_key = OLD.run_key ORDER BY id DESC LIMIT 1) AS l;
END;
";

/// The PRAGMA values a writer connection runs with, as read back from SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PragmaReport {
    /// `journal_mode`: always `wal`, or opening fails.
    pub journal_mode: String,
    /// `synchronous`: 1 (NORMAL) or 2 (FULL).
    pub synchronous: i64,
    /// `busy_timeout` in milliseconds.
    pub busy_timeout_ms: i64,
    /// `wal_autocheckpoint` in pages.
    pub wal_autocheckpoint: i64,
    /// `journal_size_limit` in bytes.
    pub journal_size_limit: i64,
    /// `user_version`: the schema version.
    pub user_version: i64,
}

/// `synchronous` for a durability level. In WAL mode NORMAL survives a process crash but
/// not power loss; FULL syncs the WAL at every commit. OFF is never used: it can corrupt
/// the database on power loss, taking older, durable records with it.
pub fn synchronous_for(d: Durability) -> i64 {
    match d {
        Durability::Buffered | Durability::Process => 1,
        Durability::PowerLoss => 2,
    }
}

pub(crate) fn map_err(path: &Path, context: &str, e: rusqlite::Error) -> Error {
    let resource = format!("sqlite://{}", path.display());
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => Error::Busy {
            resource,
            detail: format!("{context}: another connection holds the lock"),
            source: Some(Box::new(e)),
        },
        Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => Error::Corrupt {
            location: resource,
            detail: format!("{context}: SQLite reports the file as damaged"),
            source: Some(Box::new(e)),
        },
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
            Error::io(
                format!("{context} {resource}"),
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()),
            )
        }
        Some(ErrorCode::SystemIoFailure) | Some(ErrorCode::DiskFull) => Error::io(
            format!("{context} {resource}"),
            std::io::Error::other(e.to_string()),
        ),
        _ => Error::Backend {
            engine: "sqlite",
            context: format!("{context} {resource}"),
            source: Box::new(e),
        },
    }
}

/// The most SQLite's busy handler can be given (its timeout is an `int` of milliseconds).
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// `wait` as a busy timeout SQLite can take: whole milliseconds, at most [`MAX_BUSY_TIMEOUT`].
pub(crate) fn busy_timeout_of(wait: Duration) -> Duration {
    Duration::from_millis(wait.min(MAX_BUSY_TIMEOUT).as_millis() as u64)
}

/// The least time opening waits for SQLite's own brief exclusive steps (WAL recovery by
/// the first connection after all were closed, another process switching a new file to
/// WAL), whatever the lock wait.
const OPEN_GRACE: Duration = Duration::from_millis(250);

/// A deadline bounds a connection's busy handler by the time it has left.
pub(crate) trait BoundBusy {
    /// Sets `conn`'s busy timeout to the time left, so one more wait cannot overrun it.
    fn bound(&self, conn: &Connection) -> rusqlite::Result<()>;
}

impl BoundBusy for Deadline {
    fn bound(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.busy_timeout(busy_timeout_of(self.remaining()))
    }
}

/// Opens the writer connection: every PRAGMA set and read back, the schema created on
/// first open, a newer schema refused. Waits for other connections' locks until
/// `deadline`; the connection keeps `busy_timeout` as its busy timeout afterwards.
pub(crate) fn open_writer(
    path: &Path,
    deadline: Deadline,
    busy_timeout: Duration,
    wal_autocheckpoint: u32,
    durability: Durability,
) -> Result<(Connection, PragmaReport)> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    check_regular_file(path)?;
    inspect(path, busy_timeout, true)?;
    let busy_timeout = busy_timeout_of(busy_timeout);
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // A database created now gives freed pages back to the file system after a prune
    // (`PRAGMA incremental_vacuum`): auto_vacuum can only be chosen before the first page is
    // written, and the switch to WAL below writes it.
    let new_file = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let mut conn = Connection::open_with_flags(path, flags).map_err(e("opening"))?;
    stable_plans(&conn, path)?;
    let grace = || match deadline.remaining() < OPEN_GRACE {
        true => Deadline::after(OPEN_GRACE),
        false => deadline,
    };
    if new_file {
        retry_busy(&conn, grace(), |c| {
            c.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
        })
        .map_err(e("setting auto_vacuum on"))?;
    }
    // Switching to WAL needs an exclusive lock, and SQLite answers BUSY at once, without
    // its busy handler, when another process is opening the same new file. The first
    // connection after all were closed (a reader's too) runs WAL recovery, holding locks
    // for a moment: that is SQLite's housekeeping, not another writer, so it is waited
    // out for at least `OPEN_GRACE` even with no lock wait at all.
    let switch = grace();
    let mode: String = retry_busy(&conn, switch, |c| {
        c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
    })
    .map_err(e("setting journal_mode on"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Unsupported {
            engine: "sqlite",
            what: format!(
                "WAL mode on {} (journal_mode came back {mode:?}; is it on a network file system?)",
                path.display()
            ),
        });
    }
    // What the WAL switch left of the wait is all creating the schema may take.
    deadline.bound(&conn).map_err(e("setting busy_timeout on"))?;
    conn.pragma_update(None, "wal_autocheckpoint", wal_autocheckpoint)
        .map_err(e("setting wal_autocheckpoint on"))?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024i64)
        .map_err(e("setting journal_size_limit on"))?;
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(e("setting foreign_keys on"))?;
    set_synchronous(&conn, path, durability)?;
    ensure_schema(&mut conn, path)?;
    // The logs table has triggers (run and key bookkeeping, job statistics), so every
    // insert of a multi-record commit or an import writes a statement journal: about 17
    // pages a record. In a file (SQLite's default past 64 KiB) that was 3.5M pwrites for
    // a 200,000-record restore and two thirds of its time; in memory it is a copy. Set
    // after the schema, so an upgrade's index builds still sort in temporary files. A
    // statement journal holds the pages one statement changes: an insert's are few, and
    // a prune deletes in statements of at most `prune::DELETE_STATEMENT_IDS` ids.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(e("setting temp_store on"))?;
    conn.busy_timeout(busy_timeout)
        .map_err(e("setting busy_timeout on"))?;
    let report = read_pragmas(&conn, path)?;
    let expect = |name: &str, got: i64, want: i64| {
        if got == want {
            Ok(())
        } else {
            Err(Error::Backend {
                engine: "sqlite",
                context: format!(
                    "PRAGMA {name} on {} came back {got}, expected {want}",
                    path.display()
                ),
                source: "pragma not applied".into(),
            })
        }
    };
    expect(
        "busy_timeout",
        report.busy_timeout_ms,
        busy_timeout.as_millis() as i64,
    )?;
    expect(
        "wal_autocheckpoint",
        report.wal_autocheckpoint,
        wal_autocheckpoint as i64,
    )?;
    expect("journal_size_limit", report.journal_size_limit, 64 * 1024 * 1024)?;
    let temp_store: i64 = conn
        .query_row("PRAGMA temp_store", [], |r| r.get(0))
        .map_err(e("reading a PRAGMA of"))?;
    expect("temp_store", temp_store, 2)?;
    Ok((conn, report))
}

/// Refuses a path that exists (symlinks followed) and is not a regular file: a directory,
/// a FIFO, a device (`/dev/null`), a socket. Runs before SQLite opens it, so nothing
/// (`-wal`, `-shm`, `-journal`) is created next to it.
pub(crate) fn check_regular_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Error::invalid(
            "path",
            format!(
                "{} is not a regular file (a directory, FIFO, device or socket); a SQLite store needs a file or a path that does not exist yet",
                path.display()
            ),
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => Err(Error::invalid(
            "path",
            format!(
                "{}: a part of the path before the last is not a directory",
                path.display()
            ),
        )),
        Err(err) => Err(Error::io(format!("inspecting {}", path.display()), err)),
    }
}

/// Looks at an existing file before anything changes it, and refuses another
/// application's database untouched ([`Error::InvalidInput`]); a file that is not a
/// SQLite database at all is [`Error::Corrupt`], untouched too.
///
/// The header tells most: synclog's [`APPLICATION_ID`], another one, and the journal
/// mode. A database in WAL mode is left to [`ensure_schema`], which refuses a foreign one
/// before writing (opening it changes no byte of it). One in rollback-journal mode, which
/// synclog never leaves a database in, would be switched to WAL by opening it: its
/// schema is read first, on a read-only connection.
///
/// One file is changed: a database whose creation a crash cut off (the file was empty
/// when the transaction began, and its hot journal says so). Its journal is rolled back,
/// which leaves the empty file it was, and the writer's open (`may_write`) creates the
/// database; a read-only open reports it as not yet created. Any other hot journal
/// belongs to data someone committed: the file is refused untouched.
fn inspect(path: &Path, busy_timeout: Duration, may_write: bool) -> Result<()> {
    inspect_once(path, busy_timeout, may_write, false)
}

/// [`inspect`]; `rolled_back`: a cut-off creation was rolled back already (it is not tried
/// twice).
fn inspect_once(path: &Path, busy_timeout: Duration, may_write: bool, rolled_back: bool) -> Result<()> {
    use std::io::Read;
    let resource = || format!("sqlite://{}", path.display());
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io(format!("reading the header of {}", resource()), err)),
    };
    let mut header = Vec::with_capacity(100);
    file.take(100)
        .read_to_end(&mut header)
        .map_err(|err| Error::io(format!("reading the header of {}", resource()), err))?;
    if header.is_empty() {
        return Ok(()); // a new, empty file: SQLite makes it a database
    }
    if header.len() < 100 || &header[..16] != SQLITE_MAGIC {
        // A creation cut off before its first page was written: nothing but zeros yet.
        if !rolled_back && header.iter().all(|&b| b == 0) && creation_journal(path) {
            return finish_cut_off_creation(path, busy_timeout, may_write);
        }
        return Err(Error::corrupt(
            resource(),
            "the file is not a SQLite database (its header is not SQLite's); synclog left it untouched",
        ));
    }
    let be32 = |at: usize| i32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let application_id = be32(68);
    if application_id == APPLICATION_ID {
        return Ok(());
    }
    if application_id != 0 {
        return Err(foreign(path, &format!("application_id {application_id:#x}")));
    }
    let wal_mode = header[18] == 2 && header[19] == 2;
    if wal_mode {
        return Ok(());
    }
    let (tables, version) = match read_schema(path, busy_timeout) {
        Ok(schema) => schema,
        Err(err) if hot_journal(&err) && !rolled_back && creation_journal(path) => {
            // Killed while the new file switched to WAL, for one.
            return finish_cut_off_creation(path, busy_timeout, may_write);
        }
        Err(err) if hot_journal(&err) => {
            return Err(Error::invalid(
                "path",
                format!(
                    "sqlite://{} has a hot journal: a transaction of data already committed there was cut off by \
                     a crash, and it is not a synclog database in WAL mode; synclog left it untouched (recover it \
                     with the application that wrote it, or the sqlite3 shell)",
                    path.display()
                ),
            ))
        }
        Err(err) => return Err(map_err(path, "inspecting", err)),
    };
    match version {
        0 if tables.is_empty() => Ok(()), // an empty database: synclog sets it up
        1..=SCHEMA_VERSION if has_synclog_tables(&tables) => Ok(()),
        _ => Err(foreign(
            path,
            &format!("{} tables, user_version {version}", tables.len()),
        )),
    }
}

/// The table names and `user_version` of a rollback-journal database, read on a
/// read-only connection.
fn read_schema(path: &Path, busy_timeout: Duration) -> rusqlite::Result<(Vec<String>, i64)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    let tables = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok((tables, version))
}

/// Whether `<path>-journal` is a SQLite rollback journal whose rollback leaves an empty
/// database: the transaction began on an empty file (the header's initial size, bytes
/// 16..20, is 0 pages), or on a one-page database whose saved page 1 (the first record
/// after the header's sector) holds an empty schema (a leaf table b-tree page without
/// cells). That is what a creation cut off by a crash leaves (SQLite writes page 1, then
/// switches it to WAL); rolling it back loses nothing anyone committed.
fn creation_journal(path: &Path) -> bool {
    const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
    let Ok(journal) = std::fs::read(format!("{}-journal", path.display())) else {
        return false;
    };
    let be32 =
        |at: usize| -> Option<u32> { Some(u32::from_be_bytes(journal.get(at..at + 4)?.try_into().ok()?)) };
    if journal.get(..8) != Some(&JOURNAL_MAGIC[..]) {
        return false;
    }
    match be32(16) {
        Some(0) => true,
        Some(1) => {
            let (Some(sector), Some(page_size)) = (be32(20), be32(24)) else {
                return false;
            };
            let (sector, page_size) = (sector as usize, page_size as usize);
            let Some(page) = journal.get(sector + 4..sector + 4 + page_size) else {
                return false;
            };
            be32(sector) == Some(1) && page.len() > 105 && page[100] == 0x0D && page[103..105] == [0, 0]
        }
        _ => false,
    }
}

/// A creation a crash cut off: a writer rolls its journal back (the file is empty again)
/// and inspects it afresh; a reader changes nothing and reports the store as not created.
fn finish_cut_off_creation(path: &Path, busy_timeout: Duration, may_write: bool) -> Result<()> {
    if !may_write {
        return Err(Error::StoreNotFound {
            store: format!("sqlite://{}", path.display()),
            detail: "its creation was cut off by a crash; the next writer's open creates it".into(),
        });
    }
    roll_back_hot_journal(path, busy_timeout)?;
    inspect_once(path, busy_timeout, may_write, true)
}

/// Whether a read-only connection failed because the database has a hot journal it may
/// not roll back (`SQLITE_READONLY_ROLLBACK`).
fn hot_journal(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if e.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK)
}

/// Lets SQLite roll back the hot journal of `path`: a read-write connection (creating
/// nothing) reads the schema, which rolls it back first.
fn roll_back_hot_journal(path: &Path, busy_timeout: Duration) -> Result<()> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(e("opening to roll back a hot journal of"))?;
    conn.busy_timeout(busy_timeout)
        .map_err(e("setting busy_timeout on"))?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
        .map_err(e("rolling back a hot journal of"))?;
    close(conn, path)
}

/// The error for another application's database.
fn foreign(path: &Path, what: &str) -> Error {
    Error::invalid(
        "path",
        format!(
            "sqlite://{} is another application's SQLite database ({what}); synclog left it untouched: pick another path",
            path.display()
        ),
    )
}

fn table_names(conn: &Connection, path: &Path) -> Result<Vec<String>> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .map_err(e("inspecting"))?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(e("inspecting"))?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(e("inspecting"));
    names
}

fn has_synclog_tables(tables: &[String]) -> bool {
    ["logs", "meta"].iter().all(|t| tables.iter().any(|n| n == t))
}

/// Runs `f` on `conn` again while it fails with SQLITE_BUSY, with bounded backoff, until
/// `deadline`; each attempt's busy handler is bounded by the time left.
fn retry_busy<T>(
    conn: &Connection,
    deadline: Deadline,
    mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut pause = Duration::from_millis(1);
    loop {
        deadline.bound(conn)?;
        match f(conn) {
            Err(err)
                if err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && deadline.remaining() > pause =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Sets `synchronous` for `d` and reads it back.
pub(crate) fn set_synchronous(conn: &Connection, path: &Path, d: Durability) -> Result<()> {
    let want = synchronous_for(d);
    conn.pragma_update(None, "synchronous", want)
        .map_err(|err| map_err(path, "setting synchronous on", err))?;
    let got: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .map_err(|err| map_err(path, "reading synchronous of", err))?;
    if got != want {
        return Err(Error::Backend {
            engine: "sqlite",
            context: format!(
                "PRAGMA synchronous on {} came back {got}, expected {want}",
                path.display()
            ),
            source: "pragma not applied".into(),
        });
    }
    Ok(())
}

/// Reads back the PRAGMAs synclog sets.
pub fn read_pragmas(conn: &Connection, path: &Path) -> Result<PragmaReport> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let int = |name: &'static str| -> Result<i64> {
        conn.pragma_query_value(None, name, |r| r.get(0))
            .map_err(e("reading a PRAGMA of"))
    };
    Ok(PragmaReport {
        journal_mode: conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(e("reading journal_mode of"))?,
        synchronous: int("synchronous")?,
        busy_timeout_ms: int("busy_timeout")?,
        wal_autocheckpoint: int("wal_autocheckpoint")?,
        journal_size_limit: int("journal_size_limit")?,
        user_version: int("user_version")?,
    })
}

fn ensure_schema(conn: &mut Connection, path: &Path) -> Result<()> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    // Whether the synclog schema is there (`false`: an empty database to set up); a newer
    // synclog's is refused, another application's is refused before anything is written.
    let check = |c: &Connection| -> Result<bool> {
        let int = |name: &'static str| -> Result<i64> {
            c.pragma_query_value(None, name, |r| r.get(0))
                .map_err(e("reading a PRAGMA of"))
        };
        let (version, app) = (int("user_version")?, int("application_id")?);
        if app != 0 && app != i64::from(APPLICATION_ID) {
            return Err(foreign(path, &format!("application_id {app:#x}")));
        }
        let tables = table_names(c, path)?;
        match version {
            0 if tables.is_empty() => Ok(false),
            0 => Err(foreign(
                path,
                &format!("{} tables and no synclog schema version", tables.len()),
            )),
            SCHEMA_VERSION if app != 0 || has_synclog_tables(&tables) => Ok(true),
            // A store of an earlier release: upgraded below, under the write lock.
            1..SCHEMA_VERSION if app != 0 || has_synclog_tables(&tables) => Ok(false),
            v if v > SCHEMA_VERSION && app != 0 => Err(Error::Unsupported {
                engine: "sqlite",
                what: format!(
                    "schema version {v} of {} (this synclog knows {SCHEMA_VERSION}); upgrade synclog",
                    path.display()
                ),
            }),
            v if v > 0 => Err(foreign(path, &format!("user_version {v}"))),
            v => Err(Error::corrupt(
                format!("sqlite://{}", path.display()),
                format!("unknown schema version {v}"),
            )),
        }
    };
    if check(conn)? {
        return Ok(());
    }
    // Another process may create the schema at the same time: decide under the write lock.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(e("locking for schema creation"))?;
    if !check(&tx)? {
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(e("reading user_version of"))?;
        if version == 0 {
            tx.execute_batch(SCHEMA).map_err(e("creating the schema in"))?;
        } else {
            tracing::info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "upgrading the schema");
        }
        // One transaction: a crash leaves the old version or the new one, never half of it.
        if version < 2 {
            tx.execute_batch(UPGRADE_TO_2)
                .map_err(e("upgrading the schema of"))?;
        }
        if version < 3 {
            tx.execute_batch(crate::indexes::UPGRADE_TO_3)
                .map_err(e("upgrading the schema of"))?;
            crate::indexes::backfill(&tx, path)?;
        }
        tx.execute_batch(crate::prune::UPGRADE_TO_4)
            .map_err(e("upgrading the schema of"))?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(e("setting application_id of"))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(e("setting user_version of"))?;
    }
    tx.commit().map_err(e("committing the schema of"))
}

/// Checks, without writing or creating anything, that `path` holds a synclog database a
/// read-only handle can read: see [`crate::SqliteStore::open_read_only`].
pub(crate) fn check_read_only(path: &Path, busy_timeout: Duration) -> Result<()> {
    let missing = |detail: &str| Error::StoreNotFound {
        store: format!("sqlite://{}", path.display()),
        detail: detail.to_string(),
    };
    check_regular_file(path)?;
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(missing(
                "a read-only open creates nothing; check the path, or append to create the store",
            ))
        }
        Err(err) => return Err(Error::io(format!("inspecting {}", path.display()), err)),
    }
    inspect(path, busy_timeout, false)?;
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let conn = open_reader(path, busy_timeout)?;
    let int = |name: &'static str| -> Result<i64> {
        conn.pragma_query_value(None, name, |r| r.get(0))
            .map_err(e("reading a PRAGMA of"))
    };
    let (version, app) = (int("user_version")?, int("application_id")?);
    let tables = table_names(&conn, path)?;
    close(conn, path)?;
    if app != 0 && app != i64::from(APPLICATION_ID) {
        return Err(foreign(path, &format!("application_id {app:#x}")));
    }
    match version {
        0 if tables.is_empty() => Err(missing(
            "the file holds no synclog store yet (a writer has not set it up); nothing was changed",
        )),
        SCHEMA_VERSION if has_synclog_tables(&tables) => Ok(()),
        // An earlier release's: read as it is (version 1 records have no keys, neither
        // has the query indexes, none has prune markers); the first writer to open it
        // upgrades it.
        1..SCHEMA_VERSION if has_synclog_tables(&tables) => Ok(()),
        v if v > SCHEMA_VERSION && app != 0 => Err(Error::Unsupported {
            engine: "sqlite",
            what: format!(
                "schema version {v} of {} (this synclog knows {SCHEMA_VERSION}); upgrade synclog",
                path.display()
            ),
        }),
        v => Err(foreign(
            path,
            &format!("{} tables, user_version {v}", tables.len()),
        )),
    }
}

/// Opens a read-only connection, independent of the writer.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(e("opening a reader on"))?;
    conn.busy_timeout(busy_timeout_of(busy_timeout))
        .map_err(e("setting busy_timeout on"))?;
    stable_plans(&conn, path)?;
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`): a
/// statement's plan no longer depends on the values bound to it.
///
/// Without it, SQLite marks a bound parameter whose value might change the plan as
/// "re-prepare on every new binding" (for STAT4 statistics, or when the planner compares it
/// with the terms of a partial or expression index), and a cached statement is then parsed
/// and planned again on each run. The scan "newest 50 failed in 24 h" was one (`status =
/// ?`; see `query::tests::a_scan_asked_with_another_status_is_not_prepared_again`).
/// synclog pins its plans (`INDEXED BY`, `CROSS JOIN`) and runs no `ANALYZE`, so a plan
/// chosen per value gains it nothing.
pub(crate) fn stable_plans(conn: &Connection, path: &Path) -> Result<()> {
    let on = conn
        .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|err| map_err(path, "enabling stable query plans on", err))?;
    match on {
        true => Ok(()),
        false => Err(Error::Backend {
            engine: "sqlite",
            context: format!("SQLITE_DBCONFIG_ENABLE_QPSG on {}", path.display()),
            source: "the setting did not take".into(),
        }),
    }
}

/// Closes a connection and reports what `Drop` would have swallowed.
pub(crate) fn close(conn: Connection, path: &Path) -> Result<()> {
    conn.close().map_err(|(_, err)| map_err(path, "closing", err))
}
