//! Reads: a small pool of read-only connections, row decoding, and the verification pass
//! on a connection of its own.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::DateTime;
use rusqlite::OptionalExtension;
use rusqlite::{Connection, Row};
use synclog_core::canonical::RecordView;
use synclog_core::run::RunEnds;
use synclog_core::verify::Verifier;
use synclog_core::{
    Attrs, Checksum, Error, LogId, LogRecord, Result, Run, RunScan, Status, Timestamp, VerifyOptions,
    VerifyReport,
};

use crate::connection::{self, map_err};

pub(crate) const COLUMNS: &str = "id, recorded_at, job, status, started_at, finished_at, \
    items_seen, items_written, items_failed, message, attrs, checksum, run_key, idempotency_key";

/// [`COLUMNS`] of a database of schema version 1 (before runs: no keys), which a read-only
/// handle reads as it is.
const COLUMNS_V1: &str = "id, recorded_at, job, status, started_at, finished_at, \
    items_seen, items_written, items_failed, message, attrs, checksum, NULL, NULL";

/// Whether `err` says the schema lacks what version 2 added (a version 1 database read
/// by a read-only handle).
fn is_version_1(err: &rusqlite::Error) -> bool {
    let text = err.to_string();
    text.contains("no such column: run_key")
        || text.contains("no such table: runs")
        || text.contains("no such table: idempotency_keys")
        || text.contains("no such column: idempotency_key")
}

/// Prepares `SELECT <COLUMNS> <rest>`, with the version 1 columns when the database is
/// still at version 1 (tried only when the current ones are refused).
pub(crate) fn prepare_select<'c>(
    conn: &'c Connection,
    path: &Path,
    rest: &str,
) -> Result<rusqlite::CachedStatement<'c>> {
    match conn.prepare_cached(&format!("SELECT {COLUMNS} {rest}")) {
        Ok(stmt) => Ok(stmt),
        Err(err) if is_version_1(&err) => conn
            .prepare_cached(&format!("SELECT {COLUMNS_V1} {rest}"))
            .map_err(|e| map_err(path, "preparing a read of", e)),
        Err(err) => Err(map_err(path, "preparing a read of", err)),
    }
}

/// Read-only connections, reused between calls. A connection that saw an error is dropped.
pub(crate) struct ReaderPool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReaderPool {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration, max_idle: usize) -> Self {
        ReaderPool {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// Runs `f` on a pooled reader connection.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Connection, &Path) -> Result<R>) -> Result<R> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => connection::open_reader(&self.path, self.busy_timeout)?,
        };
        let result = f(&conn, &self.path);
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
        result
    }

    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn ts(path: &Path, id: i64, field: &str, micros: i64) -> Result<Timestamp> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        Error::corrupt(
            format!("sqlite://{} log {id}", path.display()),
            format!("{field} {micros} is not a valid time"),
        )
    })
}

/// Decodes one row of [`COLUMNS`]. Bad values are [`Error::Corrupt`]; the checksum is not
/// checked here (reads return what is stored; [`synclog_core::LogRecord::is_intact`] and
/// verify check it).
pub(crate) fn decode(row: &Row<'_>, path: &Path) -> Result<LogRecord> {
    // A stored value of the wrong type (a BLOB where text belongs, bytes that are not
    // UTF-8, an integer out of range) is damaged data, not a failure of SQLite: Corrupt,
    // so a repair replaces the row from the other copy.
    let e = |err: rusqlite::Error| match err {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::Utf8Error(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => Error::corrupt(
            format!("sqlite://{}", path.display()),
            format!("a row holds a value that does not decode: {err}"),
        ),
        other => map_err(path, "decoding a row of", other),
    };
    let id: i64 = row.get(0).map_err(e)?;
    let corrupt = |detail: String| Error::corrupt(format!("sqlite://{} log {id}", path.display()), detail);
    // Borrowed: a status is parsed, not kept as text.
    let status = row.get_ref(3).map_err(e)?;
    let status = status.as_str().map_err(|err| e(err.into()))?;
    let unsigned = |i: usize| -> Result<u64> {
        let v: i64 = row.get(i).map_err(e)?;
        u64::try_from(v).map_err(|_| corrupt(format!("counter {v} is negative")))
    };
    Ok(LogRecord {
        id: LogId::new(id as u64).ok_or_else(|| corrupt("invalid id".into()))?,
        recorded_at: ts(path, id, "recorded_at", row.get(1).map_err(e)?)?,
        job: row.get(2).map_err(e)?,
        status: status
            .parse::<Status>()
            .map_err(|_| corrupt(format!("unknown status {status:?}")))?,
        started_at: ts(path, id, "started_at", row.get(4).map_err(e)?)?,
        finished_at: match row.get::<_, Option<i64>>(5).map_err(e)? {
            None => None,
            Some(m) => Some(ts(path, id, "finished_at", m)?),
        },
        items_seen: unsigned(6)?,
        items_written: unsigned(7)?,
        items_failed: unsigned(8)?,
        message: row.get(9).map_err(e)?,
        attrs: Attrs::from_stored(row.get(10).map_err(e)?),
        checksum: Checksum(row.get::<_, i64>(11).map_err(e)? as u32),
        run: row.get(12).map_err(e)?,
        idempotency_key: row.get(13).map_err(e)?,
    })
}

pub(crate) fn get(conn: &Connection, path: &Path, id: LogId) -> Result<Option<LogRecord>> {
    let mut stmt = prepare_select(conn, path, "FROM logs WHERE id = ?1")?;
    let mut rows = stmt
        .query([id.get() as i64])
        .map_err(|e| map_err(path, "reading", e))?;
    match rows.next().map_err(|e| map_err(path, "reading", e))? {
        Some(row) => decode(row, path).map(Some),
        None => Ok(None),
    }
}

/// A query's filters and their arguments, added one at a time.
struct Filter {
    sql: String,
    args: Vec<rusqlite::types::Value>,
}

impl Filter {
    /// `head` (`FROM …` or `SELECT … FROM …`) with no condition yet.
    fn new(head: &str) -> Filter {
        Filter {
            sql: format!("{head} WHERE 1 = 1"),
            args: Vec::new(),
        }
    }

    /// Adds `condition` (one `?`) with `value`, when there is one.
    fn and(mut self, condition: &str, value: Option<impl Into<rusqlite::types::Value>>) -> Filter {
        if let Some(v) = value {
            self.sql.push_str(" AND ");
            self.sql.push_str(condition);
            self.args.push(v.into());
        }
        self
    }

    /// Adds `condition` (no parameter, or parameters the caller adds itself; one starting
    /// with ` AND ` is taken as it is) when `yes`.
    fn and_literal(mut self, condition: &str, yes: bool) -> Filter {
        if yes {
            if !condition.starts_with(" AND ") {
                self.sql.push_str(" AND ");
            }
            self.sql.push_str(condition);
        }
        self
    }

    /// The SQL, ordered by `column` and cut to `limit`, and its arguments.
    fn order(
        mut self,
        column: &str,
        descending: bool,
        limit: usize,
    ) -> (String, Vec<rusqlite::types::Value>) {
        let dir = if descending { " DESC" } else { "" };
        if column == "first_id" {
            // The key and the id paging goes on from.
            self.sql = self
                .sql
                .replacen("SELECT run_key FROM", "SELECT run_key, first_id FROM", 1);
        }
        self.sql.push_str(&format!(" ORDER BY {column}{dir} LIMIT ?"));
        self.args.push((limit as i64).into());
        (self.sql, self.args)
    }
}

pub(crate) fn last_id(conn: &Connection, path: &Path) -> Result<Option<LogId>> {
    let max: Option<i64> = conn
        .query_row("SELECT max(id) FROM logs", [], |r| r.get(0))
        .map_err(|e| map_err(path, "reading the last id of", e))?;
    Ok(max.and_then(|m| LogId::new(m as u64)))
}

/// The larger of the last id and the stored high-water mark (ids handed out or taken,
/// kept when their rows are gone).
pub(crate) fn high_water(conn: &Connection, path: &Path) -> Result<Option<LogId>> {
    let max: Option<i64> = conn
        .query_row(
            "SELECT max(coalesce((SELECT max(id) FROM logs), 0), \
             coalesce((SELECT value FROM meta WHERE key = 'high_water'), 0))",
            [],
            |r| r.get(0),
        )
        .map_err(|e| map_err(path, "reading the high-water mark of", e))?;
    Ok(max.and_then(|m| u64::try_from(m).ok()).and_then(LogId::new))
}

/// The verification pass, on a connection opened for it alone: the prune markers, then
/// every row, in one read transaction (so a prune committing meanwhile is seen whole or
/// not at all); every row's checksum is recomputed from the stored bytes (no JSON
/// parsing), and with `deep`, `PRAGMA quick_check`. A marker that does not decode is
/// reported corrupt, and the ids it covered as missing: the proof of their pruning is
/// damaged.
pub(crate) fn verify(path: &Path, busy_timeout: Duration, options: VerifyOptions) -> Result<VerifyReport> {
    let conn = connection::open_reader(path, busy_timeout)?;
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let mut v = Verifier::new();
    conn.execute_batch("BEGIN").map_err(e("verifying"))?;
    {
        let mut markers = Vec::new();
        for (seq, marker) in crate::prune::marker_rows(&conn, path)? {
            match marker {
                Ok(m) => markers.push(m),
                Err(err) => v.corrupt(None, format!("prune marker {seq}: {err}")),
            }
        }
        v.prunes(markers);
        let mut stmt = prepare_select(&conn, path, "FROM logs ORDER BY id")?;
        let mut rows = stmt.query([]).map_err(e("verifying"))?;
        while let Some(row) = rows.next().map_err(e("verifying"))? {
            check_row(row, &mut v);
        }
    }
    conn.execute_batch("COMMIT").map_err(e("verifying"))?;
    if options.deep {
        let mut stmt = conn
            .prepare("PRAGMA quick_check")
            .map_err(e("running quick_check on"))?;
        let mut rows = stmt.query([]).map_err(e("running quick_check on"))?;
        while let Some(row) = rows.next().map_err(e("running quick_check on"))? {
            let line: String = row.get(0).map_err(e("running quick_check on"))?;
            if line != "ok" {
                v.engine_problem(format!("quick_check: {line}"));
            }
        }
        v.deep_checked();
    }
    connection::close(conn, path)?;
    Ok(v.finish())
}

fn check_row(row: &Row<'_>, v: &mut Verifier) {
    use rusqlite::types::ValueRef;
    let id = row.get::<_, i64>(0).ok();
    let text = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
        _ => None,
    };
    let int = |i: usize| row.get::<_, i64>(i).ok();
    // A key column: NULL (no key) or text; anything else does not decode.
    let key = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Null) => Some(None),
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t).ok().map(Some),
        _ => None,
    };
    let status = text(3).and_then(|s| s.parse::<Status>().ok());
    let parts = (|| {
        Some((
            RecordView {
                id: id? as u64,
                recorded_at: int(1)?,
                job: text(2)?,
                status: status?.code(),
                started_at: int(4)?,
                finished_at: row.get::<_, Option<i64>>(5).ok()?,
                items_seen: u64::try_from(int(6)?).ok()?,
                items_written: u64::try_from(int(7)?).ok()?,
                items_failed: u64::try_from(int(8)?).ok()?,
                message: text(9)?,
                attrs: text(10)?,
                run: key(12)?,
                idempotency_key: key(13)?,
            },
            Checksum(int(11)? as u32),
        ))
    })();
    match parts {
        Some((view, stored)) => v.check(&view, stored, || format!("row id {}", view.id)),
        None => v.corrupt(
            id.and_then(|i| LogId::new(i as u64)),
            format!("row id {id:?}: a column has the wrong type or an unknown value"),
        ),
    }
}

pub(crate) fn id_checksums(
    conn: &Connection,
    path: &Path,
    after: Option<LogId>,
    limit: usize,
) -> Result<Vec<(LogId, Checksum)>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, checksum FROM logs WHERE id > ?1 ORDER BY id LIMIT ?2")
        .map_err(|e| map_err(path, "preparing a listing of", e))?;
    let mut rows = stmt
        .query([after.map_or(0, |a| a.get() as i64), limit as i64])
        .map_err(|e| map_err(path, "listing", e))?;
    let mut out = Vec::with_capacity(limit.min(100_000));
    while let Some(row) = rows.next().map_err(|e| map_err(path, "listing", e))? {
        let id: i64 = row.get(0).map_err(|e| map_err(path, "listing", e))?;
        let sum: i64 = row.get(1).map_err(|e| map_err(path, "listing", e))?;
        let id = LogId::new(id as u64).ok_or_else(|| {
            Error::corrupt(format!("sqlite://{}", path.display()), format!("invalid id {id}"))
        })?;
        out.push((id, Checksum(sum as u32)));
    }
    Ok(out)
}

/// Runs `SELECT <COLUMNS> FROM logs <rest>` with `param` and decodes every row: the
/// lookups by run or idempotency key. A version 1 database (read by a read-only handle)
/// holds no keys, so it answers none.
fn by_key(conn: &Connection, path: &Path, rest: &str, param: &str, doing: &str) -> Result<Vec<LogRecord>> {
    let mut stmt = match conn.prepare_cached(&format!("SELECT {COLUMNS} FROM logs {rest}")) {
        Ok(stmt) => stmt,
        Err(e) if is_version_1(&e) => return Ok(Vec::new()),
        Err(e) => return Err(map_err(path, doing, e)),
    };
    let mut rows = stmt.query([param]).map_err(|e| map_err(path, doing, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map_err(path, doing, e))? {
        out.push(decode(row, path)?);
    }
    Ok(out)
}

/// The record stored under idempotency key `key` (the first, should there be several).
pub(crate) fn find_idempotent(conn: &Connection, path: &Path, key: &str) -> Result<Option<LogRecord>> {
    let found = by_key(
        conn,
        path,
        "WHERE id = (SELECT id FROM idempotency_keys WHERE key = ?1)",
        key,
        "looking up an idempotency key in",
    )?;
    Ok(found.into_iter().next())
}

/// The records stored under each of `keys` (those stored), in one statement: the keys
/// go in as one JSON array, and each is looked up in `idempotency_keys` by its primary key.
pub(crate) fn find_idempotent_many(
    conn: &Connection,
    path: &Path,
    keys: &[String],
) -> Result<Vec<LogRecord>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(keys).map_err(|e| {
        Error::corrupt(
            format!("sqlite://{}", path.display()),
            format!("listing keys: {e}"),
        )
    })?;
    by_key(
        conn,
        path,
        "WHERE id IN (SELECT id FROM idempotency_keys WHERE key IN (SELECT value FROM json_each(?1)))",
        &list,
        "looking up idempotency keys in",
    )
}

/// Every record of run `run`, in id order (from the `logs_by_run` index).
pub(crate) fn run_records(conn: &Connection, path: &Path, run: &str) -> Result<Vec<LogRecord>> {
    by_key(
        conn,
        path,
        "WHERE run_key = ?1 ORDER BY id",
        run,
        "reading a run of",
    )
}

/// The first and latest record of run `run`, from the `runs` table.
pub(crate) fn run_ends(conn: &Connection, path: &Path, run: &str) -> Result<Option<RunEnds>> {
    let ids: Option<(i64, i64)> = match conn
        .prepare_cached("SELECT first_id, last_id FROM runs WHERE run_key = ?1")
        .and_then(|mut s| s.query_row([run], |r| Ok((r.get(0)?, r.get(1)?))).optional())
    {
        Ok(ids) => ids,
        Err(e) if is_version_1(&e) => None,
        Err(e) => return Err(map_err(path, "looking up a run in", e)),
    };
    let Some((first, last)) = ids else { return Ok(None) };
    let id = |n: i64| {
        LogId::new(n as u64).ok_or_else(|| {
            Error::corrupt(
                format!("sqlite://{}", path.display()),
                format!("runs table: invalid id {n}"),
            )
        })
    };
    match (get(conn, path, id(first)?)?, get(conn, path, id(last)?)?) {
        (Some(first), Some(last)) => Ok(Some(RunEnds { first, last })),
        _ => Ok(None),
    }
}

/// Runs matching `scan`: candidates from the `runs` table and its indexes (by first id,
/// by job and first id, the unfinished ones) under the conditions it holds (job, latest
/// status, start, key, and on schema version 3 the first record's attributes from
/// `log_attrs`), each assembled from its records and checked with [`RunScan::matches`],
/// a page of candidates at a time until `limit` runs match.
pub(crate) fn runs(conn: &Connection, path: &Path, scan: &RunScan) -> Result<Vec<Run>> {
    let limit = scan.effective_limit()?;
    let version = crate::query::schema_version(conn, path)?;
    if version < 2 {
        return Ok(Vec::new()); // version 1 records have no run keys
    }
    let f = &scan.filter;
    let (from, until) = f.started.micros();
    let mut jobs = f.jobs.clone();
    jobs.sort();
    jobs.dedup();
    let mut statuses: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_string()).collect();
    statuses.sort();
    statuses.dedup();
    let list = |column: &str, n: usize| match n {
        0 => String::new(),
        n => format!(" AND {column} IN ({})", vec!["?"; n].join(", ")),
    };
    let attrs = match version {
        3.. => f.attrs.as_slice(),
        _ => &[],
    };
    let (mut after, mut before) = (scan.after, scan.before);
    let mut out = Vec::new();
    loop {
        let (sql, mut args) = Filter::new("SELECT run_key FROM runs")
            .and("first_id > ?", after.map(|a| a.get() as i64))
            .and("first_id < ?", before.map(|b| b.get() as i64))
            // A literal, not a parameter: only then can SQLite use the partial index of
            // unfinished runs without preparing the statement again for each value.
            .and_literal("finished = 0", scan.only_unfinished())
            .and(
                "started_at < ?",
                scan.started_before.map(|c| c.timestamp_micros()),
            )
            .and("started_at >= ?", from)
            .and("started_at < ?", until)
            .and("run_key = ?", f.run.clone())
            .and_literal(&list("job", jobs.len()), !jobs.is_empty())
            .and_literal(&list("status", statuses.len()), !statuses.is_empty())
            .and_literal(
                &" AND first_id IN (SELECT id FROM log_attrs WHERE key = ? AND value = ?)"
                    .repeat(attrs.len()),
                !attrs.is_empty(),
            )
            .order("first_id", scan.descending, limit);
        // The lists' values go before the limit, after the other arguments.
        let limit_arg = args.pop();
        args.extend(jobs.iter().cloned().map(rusqlite::types::Value::Text));
        args.extend(statuses.iter().cloned().map(rusqlite::types::Value::Text));
        for a in attrs {
            args.push(rusqlite::types::Value::Text(a.key.clone()));
            args.push(rusqlite::types::Value::Text(a.value_text()));
        }
        args.extend(limit_arg);
        let keys: Vec<(String, i64)> = {
            let mut stmt = conn
                .prepare_cached(&sql)
                .map_err(|e| map_err(path, "preparing a scan of runs in", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| map_err(path, "scanning runs in", e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| map_err(path, "scanning runs in", e))?
        };
        for (key, first) in &keys {
            let records = run_records(conn, path, key)?;
            if let Some(run) = Run::from_records(key, &records) {
                if scan.matches(&run, &records) {
                    out.push(run);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            let first = LogId::new(*first as u64);
            match scan.descending {
                true => before = first,
                false => after = first,
            }
        }
        if keys.len() < limit {
            return Ok(out);
        }
    }
}
