//! Filters answered in SQL: `scan`, `count` and `summary` from the indexes of schema
//! version 3 (see [`crate::indexes`]), and from the columns alone, checking attributes in
//! Rust, on an older schema a read-only handle reads as it is.
//!
//! Query shapes are chosen here, not left to the planner, where it matters: SQLite has no
//! statistics of a synclog database, and a scan newest-first with a limit must walk an
//! index that is in id order (`(run_key, id)`, `log_attrs (key, value, id)`, `(job, id)`,
//! `(status, id)`) rather than collect and sort a whole time range.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use synclog_core::query::{Filter, JobSummary, StatusCounts, Summary, SummaryBuilder};
use synclog_core::{Error, LogId, LogRecord, Result, Scan, Status};

use crate::connection::map_err;
use crate::reader::{decode, prepare_select};

/// The columns of a record, as [`crate::reader::COLUMNS`], from table alias `l`.
const L_COLUMNS: &str = "l.id, l.recorded_at, l.job, l.status, l.started_at, l.finished_at, \
    l.items_seen, l.items_written, l.items_failed, l.message, l.attrs, l.checksum, l.run_key, \
    l.idempotency_key";

/// The schema version of the database `conn` reads.
pub(crate) fn schema_version(conn: &Connection, path: &Path) -> Result<i64> {
    // A cached statement: every read asks.
    conn.prepare_cached("PRAGMA user_version")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| map_err(path, "reading the schema version of", e))
}

/// Conditions joined by `AND`, and their arguments in order.
#[derive(Default, Clone)]
struct Conds {
    parts: Vec<String>,
    args: Vec<SqlValue>,
}

impl Conds {
    fn push(&mut self, sql: impl Into<String>, args: impl IntoIterator<Item = SqlValue>) {
        self.parts.push(sql.into());
        self.args.extend(args);
    }

    /// ` AND a AND b …` (empty for none).
    fn and(&self) -> String {
        self.parts.iter().map(|p| format!(" AND {p}")).collect()
    }

    /// `column IN (?, …)` (or `= ?` for one value).
    fn one_of(&mut self, column: &str, values: &[String]) {
        if values.len() == 1 {
            self.push(format!("{column} = ?"), [SqlValue::Text(values[0].clone())]);
        } else {
            let marks = vec!["?"; values.len()].join(", ");
            self.push(
                format!("{column} IN ({marks})"),
                values.iter().cloned().map(SqlValue::Text),
            );
        }
    }

    /// `column >= from AND column < until`, for the ends given.
    fn range(&mut self, column: &str, range: &synclog_core::query::TimeRange) {
        let (from, until) = range.micros();
        if let Some(f) = from {
            self.push(format!("{column} >= ?"), [SqlValue::Integer(f)]);
        }
        if let Some(u) = until {
            self.push(format!("{column} < ?"), [SqlValue::Integer(u)]);
        }
    }

    /// `id > after AND id < before`.
    fn ids(&mut self, column: &str, after: Option<LogId>, before: Option<LogId>) {
        if let Some(a) = after {
            self.push(format!("{column} > ?"), [SqlValue::Integer(a.get() as i64)]);
        }
        if let Some(b) = before {
            self.push(format!("{column} < ?"), [SqlValue::Integer(b.get() as i64)]);
        }
    }
}

/// Which parts of a filter a query's conditions leave out (because the query is driven
/// by them, or, on an older schema, checked in Rust).
#[derive(Default, Clone, Copy)]
struct Skip {
    jobs: bool,
    statuses: bool,
    run: bool,
    /// Attribute conditions before this one are left out.
    attrs_from: usize,
    /// Every attribute condition is left out.
    attrs: bool,
    /// The status condition is written `+status`, so no index of `status` answers it.
    plain_status: bool,
}

/// Distinct jobs and statuses of `f` (a repeated value would repeat rows in a union).
fn jobs_of(f: &Filter) -> Vec<String> {
    let mut v = f.jobs.clone();
    v.sort();
    v.dedup();
    v
}

fn statuses_of(f: &Filter) -> Vec<String> {
    let mut v: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_string()).collect();
    v.sort();
    v.dedup();
    v
}

/// The conditions of `f` on table alias `t` (`l.` or empty), apart from `skip`.
fn conds(f: &Filter, t: &str, skip: Skip) -> Conds {
    let mut c = Conds::default();
    if !skip.jobs && !f.jobs.is_empty() {
        c.one_of(&format!("{t}job"), &jobs_of(f));
    }
    if !skip.statuses && !f.statuses.is_empty() {
        let plus = if skip.plain_status { "+" } else { "" };
        c.one_of(&format!("{plus}{t}status"), &statuses_of(f));
    }
    c.range(&format!("{t}started_at"), &f.started);
    c.range(&format!("{t}finished_at"), &f.finished);
    c.range(&format!("{t}recorded_at"), &f.recorded);
    if let (false, Some(run)) = (skip.run, &f.run) {
        c.push(format!("{t}run_key = ?"), [SqlValue::Text(run.clone())]);
    }
    if !skip.attrs {
        for a in f.attrs.iter().skip(skip.attrs_from) {
            c.push(
                format!(
                    "EXISTS (SELECT 1 FROM log_attrs x WHERE x.key = ? AND x.value = ? AND x.id = {t}id)"
                ),
                [SqlValue::Text(a.key.clone()), SqlValue::Text(a.value_text())],
            );
        }
    }
    c
}

/// Runs `sql` with `args` and decodes every row.
fn records(conn: &Connection, path: &Path, sql: &str, args: Vec<SqlValue>) -> Result<Vec<LogRecord>> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(|e| map_err(path, "preparing a scan of", e))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args))
        .map_err(|e| map_err(path, "scanning", e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map_err(path, "scanning", e))? {
        out.push(decode(row, path)?);
    }
    Ok(out)
}

/// The SQL of a scan of schema version 3 and its arguments (public to the crate so tests
/// of query plans can look at it).
pub(crate) fn scan_sql(scan: &Scan, limit: usize) -> (String, Vec<SqlValue>) {
    let f = &scan.filter;
    let dir = if scan.descending { "DESC" } else { "ASC" };
    let limit = SqlValue::Integer(limit as i64);
    if f.run.is_some() {
        // A run's records, from the run index.
        let mut c = Conds::default();
        c.ids("l.id", scan.after, scan.before);
        let rest = conds(f, "l.", Skip::default());
        let mut args = c.args.clone();
        args.extend(rest.args.clone());
        args.push(limit);
        let sql = format!(
            "SELECT {L_COLUMNS} FROM logs l INDEXED BY logs_by_run WHERE 1{}{} ORDER BY l.id {dir} LIMIT ?",
            c.and(),
            rest.and()
        );
        return (sql, args);
    }
    if let Some(first) = f.attrs.first() {
        // Driven by the first attribute condition, in id order from `log_attrs`.
        let mut c = Conds::default();
        c.push(
            "a.key = ? AND a.value = ?",
            [
                SqlValue::Text(first.key.clone()),
                SqlValue::Text(first.value_text()),
            ],
        );
        c.ids("a.id", scan.after, scan.before);
        let rest = conds(
            f,
            "l.",
            Skip {
                attrs_from: 1,
                ..Skip::default()
            },
        );
        let mut args = c.args.clone();
        args.extend(rest.args.clone());
        args.push(limit);
        let sql = format!(
            "SELECT {L_COLUMNS} FROM log_attrs a CROSS JOIN logs l ON l.id = a.id WHERE 1{}{} \
             ORDER BY a.id {dir} LIMIT ?",
            c.and(),
            rest.and()
        );
        return (sql, args);
    }
    if let Some(walk) = Walk::of(f) {
        // One walk of `(job, id)` or `(status, id)` per value, merged.
        return walk.sql(scan, limit, None);
    }
    range_sql(scan, limit)
}

/// `scan` driven by its time range's index (every condition checked on the rows), or by
/// the ids alone for a filter without a range.
fn range_sql(scan: &Scan, limit: SqlValue) -> (String, Vec<SqlValue>) {
    let f = &scan.filter;
    let dir = if scan.descending { "DESC" } else { "ASC" };
    let mut c = Conds::default();
    c.ids("l.id", scan.after, scan.before);
    let rest = conds(f, "l.", Skip::default());
    let mut args = c.args.clone();
    args.extend(rest.args.clone());
    args.push(limit);
    let ranges = [
        ("logs_by_recorded", &f.recorded),
        ("logs_by_started", &f.started),
        ("logs_by_finished", &f.finished),
    ];
    let mut given = ranges.iter().filter(|(_, r)| !r.is_open());
    let sql = match (given.next(), given.next()) {
        // Only time ranges: read the range from its index rather than walk every id
        // from one end until the range is reached (a range in the past would read most
        // of the table). With one range, the ids are chosen from the index alone.
        (Some((index, _)), None) => format!(
            "SELECT {L_COLUMNS} FROM logs l WHERE l.id IN (SELECT l.id FROM logs l INDEXED BY {index} \
             WHERE 1{}{} ORDER BY l.id {dir} LIMIT ?) ORDER BY l.id {dir}",
            c.and(),
            rest.and()
        ),
        (Some((index, _)), Some(_)) => format!(
            "SELECT {L_COLUMNS} FROM logs l INDEXED BY {index} WHERE 1{}{} ORDER BY l.id {dir} LIMIT ?",
            c.and(),
            rest.and()
        ),
        // The empty filter: every id in order.
        (None, _) => format!(
            "SELECT {L_COLUMNS} FROM logs l WHERE 1{}{} ORDER BY l.id {dir} LIMIT ?",
            c.and(),
            rest.and()
        ),
    };
    (sql, args)
}

/// How many entries of each job's or status's index the first try of a scan that also has
/// a time range walks (see [`scan`]).
const WALK_CAP: i64 = 250;

/// A scan driven by one index walk per job or per status (whichever has fewer values),
/// merged.
struct Walk {
    by_jobs: bool,
    index: &'static str,
    column: &'static str,
    values: Vec<String>,
}

impl Walk {
    /// The walk for `f`, when it names jobs or statuses.
    fn of(f: &Filter) -> Option<Walk> {
        let (jobs, statuses) = (jobs_of(f), statuses_of(f));
        let by_jobs = !jobs.is_empty() && (statuses.is_empty() || jobs.len() <= statuses.len());
        if !by_jobs && statuses.is_empty() {
            return None;
        }
        let (index, column, values) = match by_jobs {
            true => ("logs_by_job", "job", jobs),
            false => ("logs_by_status", "status", statuses),
        };
        Some(Walk {
            by_jobs,
            index,
            column,
            values,
        })
    }

    /// The walks' SQL: each value's index in id order, checked against the rest of the
    /// filter; with `cap`, only the first `cap` entries of each (see [`scan`]).
    fn sql(&self, scan: &Scan, limit: SqlValue, cap: Option<i64>) -> (String, Vec<SqlValue>) {
        let f = &scan.filter;
        let dir = if scan.descending { "DESC" } else { "ASC" };
        let (index, column) = (self.index, self.column);
        let rest = conds(
            f,
            "l.",
            Skip {
                jobs: self.by_jobs,
                statuses: !self.by_jobs,
                ..Skip::default()
            },
        );
        let mut ids = Conds::default();
        ids.ids("l.id", scan.after, scan.before);
        let mut walked = Conds::default();
        walked.ids("w.id", scan.after, scan.before);
        let mut parts = Vec::new();
        let mut args = Vec::new();
        for v in &self.values {
            args.push(SqlValue::Text(v.clone()));
            parts.push(match cap {
                None => {
                    args.extend(ids.args.clone());
                    format!(
                        "SELECT * FROM (SELECT {L_COLUMNS} FROM logs l INDEXED BY {index} WHERE l.{column} = ?{}{} \
                         ORDER BY l.id {dir} LIMIT ?)",
                        ids.and(),
                        rest.and()
                    )
                }
                // With a cap: the value's first `cap` index entries, produced one at a
                // time (a co-routine, already in id order, so nothing is sorted) and each
                // looked up in `logs` until the page is full.
                Some(cap) => {
                    args.extend(walked.args.clone());
                    args.push(SqlValue::Integer(cap));
                    format!(
                        "SELECT * FROM (SELECT {L_COLUMNS} FROM (SELECT w.id FROM logs w INDEXED BY {index} \
                         WHERE w.{column} = ?{} ORDER BY w.id {dir} LIMIT ?) AS s CROSS JOIN logs l ON l.id = s.id \
                         WHERE 1{} ORDER BY s.id {dir} LIMIT ?)",
                        walked.and(),
                        rest.and()
                    )
                }
            });
            args.extend(rest.args.clone());
            args.push(limit.clone());
        }
        if parts.len() == 1 {
            return (parts.remove(0), args);
        }
        args.push(limit);
        (
            format!("{} ORDER BY 1 {dir} LIMIT ?", parts.join(" UNION ALL ")),
            args,
        )
    }

    /// Whether a walk capped at [`WALK_CAP`] stopped at the cap for some value (it may
    /// then have missed older matches).
    fn capped(&self, conn: &Connection, path: &Path, scan: &Scan) -> Result<bool> {
        for v in &self.values {
            let (sql, args) = self.capped_sql(scan, v);
            let n: i64 = conn
                .prepare_cached(&sql)
                .map_err(|e| map_err(path, "preparing a scan of", e))?
                .query_row(rusqlite::params_from_iter(args), |r| r.get(0))
                .map_err(|e| map_err(path, "scanning", e))?;
            if n >= WALK_CAP {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The SQL of [`Walk::capped`] for one value: how many of its entries (at most
    /// [`WALK_CAP`]) the walk had, from its index alone.
    fn capped_sql(&self, scan: &Scan, value: &str) -> (String, Vec<SqlValue>) {
        let mut ids = Conds::default();
        ids.ids("w.id", scan.after, scan.before);
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM logs w INDEXED BY {} WHERE w.{} = ?{} LIMIT ?)",
            self.index,
            self.column,
            ids.and()
        );
        let mut args = vec![SqlValue::Text(value.to_string())];
        args.extend(ids.args);
        args.push(SqlValue::Integer(WALK_CAP));
        (sql, args)
    }

    /// The walk a scan of jobs or statuses with a time range (and no run or attribute)
    /// tries first, capped at [`WALK_CAP`] entries a value (see [`scan`]).
    fn capped_first(scan: &Scan) -> Option<Walk> {
        let f = &scan.filter;
        let ranged = !(f.started.is_open() && f.finished.is_open() && f.recorded.is_open());
        match (ranged, &f.run, f.attrs.is_empty()) {
            (true, None, true) => Walk::of(f),
            _ => None,
        }
    }
}

/// The records `scan` asks for.
pub(crate) fn scan(conn: &Connection, path: &Path, scan: &Scan) -> Result<Vec<LogRecord>> {
    let limit = scan.effective_limit()?;
    let version = schema_version(conn, path)?;
    if version < 3 {
        return scan_old(conn, path, scan, limit, version);
    }
    if let Some(walk) = Walk::capped_first(scan) {
        // Jobs or statuses and a time range, and no statistics to say which is narrower:
        // walk the newest WALK_CAP entries of each value first (enough when matches are
        // common), and only when that settled no page read the time range from its index
        // (rare matches: "failed in the last 24 h"). With several values, a value whose
        // walk stopped at the cap may have older matches that belong in the merged page,
        // so only a walk of one value that filled the page, or walks that all ended
        // before the cap, answer alone.
        let lim = SqlValue::Integer(limit as i64);
        let (sql, args) = walk.sql(scan, lim.clone(), Some(WALK_CAP));
        let got = records(conn, path, &sql, args)?;
        if (walk.values.len() == 1 && got.len() == limit) || !walk.capped(conn, path, scan)? {
            return Ok(got);
        }
        let (sql, args) = range_sql(scan, lim);
        return records(conn, path, &sql, args);
    }
    let (sql, args) = scan_sql(scan, limit);
    records(conn, path, &sql, args)
}

/// How many rows a read of an older schema takes at a time.
const OLD_PAGE: usize = 1000;

/// A scan of a database of schema version 1 or 2 (read-only handle): every condition but
/// the attributes in SQL, the attributes checked in Rust, paging until `limit` match.
fn scan_old(
    conn: &Connection,
    path: &Path,
    scan: &Scan,
    limit: usize,
    version: i64,
) -> Result<Vec<LogRecord>> {
    let f = &scan.filter;
    if version < 2 && f.run.is_some() {
        return Ok(Vec::new()); // version 1 records have no run keys
    }
    let rest = conds(
        f,
        "",
        Skip {
            attrs: true,
            ..Skip::default()
        },
    );
    let dir = if scan.descending { "DESC" } else { "ASC" };
    let (mut after, mut before) = (scan.after, scan.before);
    let mut out = Vec::new();
    loop {
        let mut c = Conds::default();
        c.ids("id", after, before);
        let sql = format!(
            "FROM logs WHERE 1{}{} ORDER BY id {dir} LIMIT ?",
            c.and(),
            rest.and()
        );
        let mut args = c.args;
        args.extend(rest.args.clone());
        args.push(SqlValue::Integer(OLD_PAGE as i64));
        let mut stmt = prepare_select(conn, path, &sql)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(|e| map_err(path, "scanning", e))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(|e| map_err(path, "scanning", e))? {
            let rec = decode(row, path)?;
            n += 1;
            match scan.descending {
                true => before = Some(rec.id),
                false => after = Some(rec.id),
            }
            if f.attrs_match(rec.attrs.as_str()) {
                out.push(rec);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if n < OLD_PAGE {
            return Ok(out);
        }
    }
}

/// Every record matching `f`, in id order, a page at a time (for counts and summaries of
/// an older schema).
fn each_old(
    conn: &Connection,
    path: &Path,
    f: &Filter,
    version: i64,
    mut each: impl FnMut(&LogRecord),
) -> Result<()> {
    let mut s = Scan::filtered(f.clone(), OLD_PAGE);
    loop {
        let page = scan_old(conn, path, &s, OLD_PAGE, version)?;
        page.iter().for_each(&mut each);
        match page.last() {
            Some(last) if page.len() == OLD_PAGE => s.after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

/// `FROM …` and the conditions of a count or summary of the records matching `f`: driven by
/// the first attribute condition when there is one and no run, else left to the planner.
fn from_where(f: &Filter) -> (String, Conds) {
    if let (Some(first), None) = (f.attrs.first(), &f.run) {
        let mut c = Conds::default();
        c.push(
            "a.key = ? AND a.value = ?",
            [
                SqlValue::Text(first.key.clone()),
                SqlValue::Text(first.value_text()),
            ],
        );
        let rest = conds(
            f,
            "l.",
            Skip {
                attrs_from: 1,
                ..Skip::default()
            },
        );
        c.parts.extend(rest.parts);
        c.args.extend(rest.args);
        return ("FROM log_attrs a CROSS JOIN logs l ON l.id = a.id".into(), c);
    }
    // A status is a large slice of the whole history; a `started` or `finished` window
    // is usually a small recent one, and without statistics SQLite would walk every
    // record of the status (a `recorded` window has the `(status, recorded_at)` index).
    let plain_status = f.recorded.is_open() && !(f.started.is_open() && f.finished.is_open());
    (
        "FROM logs l".into(),
        conds(
            f,
            "l.",
            Skip {
                plain_status,
                ..Skip::default()
            },
        ),
    )
}

/// The SQL of a count (see [`count`]).
pub(crate) fn count_sql(f: &Filter) -> (String, Vec<SqlValue>) {
    if let ([only], true) = (
        f.attrs.as_slice(),
        Filter {
            attrs: Vec::new(),
            ..f.clone()
        }
        .is_empty(),
    ) {
        // The side table alone: every entry stands for a stored record.
        return (
            "SELECT count(*) FROM log_attrs WHERE key = ? AND value = ?".into(),
            vec![
                SqlValue::Text(only.key.clone()),
                SqlValue::Text(only.value_text()),
            ],
        );
    }
    let (from, c) = from_where(f);
    (format!("SELECT count(*) {from} WHERE 1{}", c.and()), c.args)
}

/// How many records match `f`.
pub(crate) fn count(conn: &Connection, path: &Path, f: &Filter) -> Result<u64> {
    f.validate()?;
    let version = schema_version(conn, path)?;
    if version < 3 {
        let mut n = 0u64;
        each_old(conn, path, f, version, |_| n += 1)?;
        return Ok(n);
    }
    let (sql, args) = count_sql(f);
    let n: i64 = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
        .map_err(|e| map_err(path, "counting in", e))?;
    Ok(n as u64)
}

/// How many records match `f` for each status:
/// - jobs and statuses only: from `job_stats`, a few rows per job;
/// - a `recorded` range (with jobs or statuses at most): one count per status, each a walk
///   of `(status, recorded_at)` (seven short walks of one index cost less than reading
///   every row of the range to group it);
/// - else one `GROUP BY status` over what the indexes find.
pub(crate) fn count_by_status(conn: &Connection, path: &Path, f: &Filter) -> Result<StatusCounts> {
    f.validate()?;
    let version = schema_version(conn, path)?;
    let mut out = StatusCounts::new();
    if version < 3 {
        each_old(conn, path, f, version, |r| *out.entry(r.status).or_default() += 1)?;
        return Ok(out);
    }
    if let Some(each) = per_status(f) {
        // One read transaction: every status counted in the same snapshot, so that the
        // counts add up to one `count` even while others commit.
        let e = |err| map_err(path, "counting by status in", err);
        let tx = conn.unchecked_transaction().map_err(e)?;
        for one in each {
            let (sql, args) = count_sql(&one);
            let n: i64 = tx
                .prepare_cached(&sql)
                .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
                .map_err(e)?;
            if n > 0 {
                out.insert(one.statuses[0], n as u64);
            }
        }
        tx.commit().map_err(e)?;
        return Ok(out);
    }
    let (sql, args) = count_by_status_sql(f);
    let e = |err| map_err(path, "counting by status in", err);
    let mut stmt = conn.prepare_cached(&sql).map_err(e)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(e)?;
    while let Some(r) = rows.next().map_err(e)? {
        let status: String = r.get(0).map_err(e)?;
        let status = status.parse::<Status>().map_err(|_| {
            Error::corrupt(
                format!("sqlite://{}", path.display()),
                format!("unknown status {status:?}"),
            )
        })?;
        let n: i64 = r.get(1).map_err(e)?;
        if n > 0 {
            *out.entry(status).or_default() += n as u64;
        }
    }
    Ok(out)
}

/// The one-status filters a [`count_by_status`] of `f` counts one by one: when `f` has a
/// `recorded` range, which `(status, recorded_at)` answers for each status, and no other
/// range, attribute or run (`None` otherwise: one walk of what the indexes find, grouped).
fn per_status(f: &Filter) -> Option<Vec<Filter>> {
    let plain = f.attrs.is_empty() && f.run.is_none() && f.started.is_open() && f.finished.is_open();
    (plain && !f.recorded.is_open()).then(|| {
        Status::ALL
            .into_iter()
            .filter(|s| f.statuses.is_empty() || f.statuses.contains(s))
            .map(|s| Filter {
                statuses: vec![s],
                ..f.clone()
            })
            .collect()
    })
}

/// The SQL of a [`count_by_status`] that groups: from `job_stats` when `f` names only jobs
/// and statuses, else over the rows [`from_where`] finds.
pub(crate) fn count_by_status_sql(f: &Filter) -> (String, Vec<SqlValue>) {
    let only_jobs_and_statuses = Filter {
        jobs: Vec::new(),
        statuses: Vec::new(),
        ..f.clone()
    }
    .is_empty();
    if only_jobs_and_statuses {
        let mut c = Conds::default();
        if !f.jobs.is_empty() {
            c.one_of("job", &f.jobs);
        }
        if !f.statuses.is_empty() {
            let texts: Vec<String> = f.statuses.iter().map(|s| s.to_string()).collect();
            c.one_of("status", &texts);
        }
        return (
            format!(
                "SELECT status, sum(n) FROM job_stats WHERE 1{} GROUP BY status",
                c.and()
            ),
            c.args,
        );
    }
    let (from, c) = from_where(f);
    (
        format!(
            "SELECT l.status, count(*) {from} WHERE 1{} GROUP BY +l.status",
            c.and()
        ),
        c.args,
    )
}

/// One `(job, status)` group of matching records.
struct Group {
    job: String,
    status: Status,
    n: u64,
    sums: [u128; 3],
    min_started: i64,
    max_recorded: i64,
    max_id: i64,
}

/// Reads groups from rows of `job, status, n, six half sums, min started, max recorded,
/// max id`.
fn groups(conn: &Connection, path: &Path, sql: &str, args: Vec<SqlValue>) -> Result<Vec<Group>> {
    let e = |err| map_err(path, "summing the records of", err);
    let mut stmt = conn.prepare_cached(sql).map_err(e)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(e)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(e)? {
        let status: String = r.get(1).map_err(e)?;
        let half = |i: usize| -> Result<u128> {
            let v: i64 = r.get(i).map_err(e)?;
            u128::try_from(v).map_err(|_| {
                Error::corrupt(
                    format!("sqlite://{}", path.display()),
                    format!("a counter sum of status {status} is negative"),
                )
            })
        };
        let sum = |hi: usize| -> Result<u128> { Ok((half(hi)? << 32) + half(hi + 1)?) };
        out.push(Group {
            job: r.get(0).map_err(e)?,
            status: status.parse::<Status>().map_err(|_| {
                Error::corrupt(
                    format!("sqlite://{}", path.display()),
                    format!("unknown status {status:?}"),
                )
            })?,
            n: r.get::<_, i64>(2).map_err(e)? as u64,
            sums: [sum(3)?, sum(5)?, sum(7)?],
            min_started: r.get(9).map_err(e)?,
            max_recorded: r.get(10).map_err(e)?,
            max_id: r.get(11).map_err(e)?,
        });
    }
    Ok(out)
}

/// The SQL of the per-`(job, status)` groups of a summary (see [`summary`]).
pub(crate) fn summary_sql(f: &Filter) -> (String, Vec<SqlValue>) {
    if f.is_empty() {
        return (
            "SELECT job, status, n, seen_hi, seen_lo, written_hi, written_lo, failed_hi, failed_lo, \
             min_started, max_recorded, max_id FROM job_stats"
                .into(),
            Vec::new(),
        );
    }
    // `+`: grouping must not tempt SQLite into reading all of `(job, id)` in job order
    // rather than searching the index the conditions allow, then sorting what matched.
    let (from, c) = from_where(f);
    let sql = format!(
        "SELECT l.job, l.status, count(*), \
         sum(l.items_seen >> 32), sum(l.items_seen & 4294967295), \
         sum(l.items_written >> 32), sum(l.items_written & 4294967295), \
         sum(l.items_failed >> 32), sum(l.items_failed & 4294967295), \
         min(l.started_at), max(l.recorded_at), max(l.id) {from} WHERE 1{} GROUP BY +l.job, +l.status",
        c.and()
    );
    (sql, c.args)
}

/// The summary of the records matching `f`.
pub(crate) fn summary(conn: &Connection, path: &Path, f: &Filter) -> Result<Summary> {
    f.validate()?;
    let version = schema_version(conn, path)?;
    if version < 3 {
        let mut b = SummaryBuilder::default();
        each_old(conn, path, f, version, |r| b.add(r))?;
        return Ok(b.finish());
    }
    // One read transaction: the groups, the newest records and the failures since a
    // success are read from one snapshot (a prune committing between them would leave a
    // counted record unreadable, and the summary would call the store damaged).
    let tx = conn
        .unchecked_transaction()
        .map_err(|e| map_err(path, "summing the records of", e))?;
    let (sql, args) = summary_sql(f);
    let mut by_job = BTreeMap::<String, Vec<Group>>::new();
    for g in groups(conn, path, &sql, args)? {
        by_job.entry(g.job.clone()).or_default().push(g);
    }
    // Every job's newest records in one statement.
    let mut wanted = Vec::new();
    for groups in by_job.values() {
        let newest = Newest::of(groups);
        wanted.extend(
            [Some(newest.latest), newest.finished, newest.success]
                .into_iter()
                .flatten(),
        );
    }
    let records = by_ids(conn, path, &wanted)?;
    let mut out = Summary::default();
    for (job, groups) in by_job {
        out.jobs.push(job_summary(conn, path, f, job, &groups, &records)?);
    }
    tx.commit()
        .map_err(|e| map_err(path, "summing the records of", e))?;
    Ok(out)
}

/// The ids of a job's newest records, from its groups.
struct Newest {
    latest: i64,
    finished: Option<i64>,
    success: Option<i64>,
    failure: Option<i64>,
}

impl Newest {
    fn of(groups: &[Group]) -> Newest {
        let newest =
            |keep: &dyn Fn(Status) -> bool| groups.iter().filter(|g| keep(g.status)).map(|g| g.max_id).max();
        Newest {
            latest: newest(&|_| true).unwrap_or(0),
            finished: newest(&Status::is_terminal),
            success: newest(&|s| s == Status::Succeeded),
            failure: newest(&failing),
        }
    }
}

fn failing(s: Status) -> bool {
    matches!(s, Status::Failed | Status::Abandoned)
}

/// The records with ids `ids`, by id, read in one statement.
fn by_ids(conn: &Connection, path: &Path, ids: &[i64]) -> Result<BTreeMap<i64, LogRecord>> {
    let list = format!(
        "[{}]",
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    let sql = format!("SELECT {L_COLUMNS} FROM logs l WHERE l.id IN (SELECT value FROM json_each(?1))");
    let found = records(conn, path, &sql, vec![SqlValue::Text(list)])?;
    Ok(found.into_iter().map(|r| (r.id.get() as i64, r)).collect())
}

/// One job's summary from its groups.
fn job_summary(
    conn: &Connection,
    path: &Path,
    f: &Filter,
    job: String,
    groups: &[Group],
    records: &BTreeMap<i64, LogRecord>,
) -> Result<JobSummary> {
    let newest = Newest::of(groups);
    let record = |id: i64| -> Result<LogRecord> {
        let missing = || {
            Error::corrupt(
                format!("sqlite://{}", path.display()),
                format!("log {id} of job {job:?} is counted but cannot be read"),
            )
        };
        records.get(&id).cloned().ok_or_else(missing)
    };
    let latest = record(newest.latest)?;
    let latest_finished = newest.finished.map(record).transpose()?;
    let latest_success = newest.success.map(record).transpose()?;
    let consecutive_failures = match newest.success {
        None => groups.iter().filter(|g| failing(g.status)).map(|g| g.n).sum(),
        Some(s) if newest.failure.is_none_or(|n| n < s) => 0,
        Some(s) => failures_after(conn, path, f, &job, s)?,
    };
    // Over finished records only (see `JobSummary::items_seen`).
    let sum = |i: usize| {
        let total = groups
            .iter()
            .filter(|g| g.status.is_terminal())
            .map(|g| g.sums[i])
            .sum::<u128>();
        u64::try_from(total).unwrap_or(u64::MAX)
    };
    let ts = |m: i64, field: &str| {
        chrono::DateTime::from_timestamp_micros(m).ok_or_else(|| {
            Error::corrupt(
                format!("sqlite://{}", path.display()),
                format!("{field} {m} of job {job:?} is not a valid time"),
            )
        })
    };
    Ok(JobSummary {
        latest,
        latest_finished,
        latest_success,
        consecutive_failures,
        counts: groups.iter().map(|g| (g.status, g.n)).collect(),
        items_seen: sum(0),
        items_written: sum(1),
        items_failed: sum(2),
        first_started_at: ts(
            groups.iter().map(|g| g.min_started).min().unwrap_or(0),
            "started_at",
        )?,
        last_recorded_at: ts(
            groups.iter().map(|g| g.max_recorded).max().unwrap_or(0),
            "recorded_at",
        )?,
        job,
    })
}

/// The SQL of the count of `job`'s failed and abandoned records matching `f` after id
/// `after` (see [`summary`]).
pub(crate) fn failures_sql(f: &Filter, job: &str, after: i64) -> (String, Vec<SqlValue>) {
    let (from, mut c) = match f.attrs.is_empty() && f.run.is_none() {
        // Walks the job's records after its latest success, newest last.
        true => (
            "FROM logs l INDEXED BY logs_by_job".to_string(),
            conds(f, "l.", Skip::default()),
        ),
        false => from_where(f),
    };
    c.push(
        "l.job = ? AND l.id > ?",
        [SqlValue::Text(job.into()), SqlValue::Integer(after)],
    );
    c.push("l.status IN ('failed', 'abandoned')", []);
    (format!("SELECT count(*) {from} WHERE 1{}", c.and()), c.args)
}

fn failures_after(conn: &Connection, path: &Path, f: &Filter, job: &str, after: i64) -> Result<u64> {
    let (sql, args) = failures_sql(f, job, after);
    let n: i64 = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
        .map_err(|e| map_err(path, "counting failures in", e))?;
    Ok(n as u64)
}

/// A query whose plan [`crate::SqliteStore::query_plan`] shows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PlannedQuery {
    /// A [`crate::LogStore::scan`].
    Scan(Scan),
    /// A [`crate::LogStore::count`].
    Count(Filter),
    /// A [`crate::LogStore::count_by_status`] (one statement per status, or one that
    /// groups).
    CountByStatus(Filter),
    /// A [`crate::LogStore::summary`] (its grouping statement, and the count of a job's
    /// failures since its latest success).
    Summary(Filter),
}

/// `EXPLAIN QUERY PLAN` of the statements answering `query`: one line per step.
pub(crate) fn plan(conn: &Connection, path: &Path, query: &PlannedQuery) -> Result<Vec<String>> {
    let version = schema_version(conn, path)?;
    if version < 3 {
        return Err(Error::Unsupported {
            engine: "sqlite",
            what: format!(
                "query plans of schema version {version} (read as it is, without the query indexes; a writer's open upgrades it)"
            ),
        });
    }
    // A scan's filter is checked with its limit below.
    if let PlannedQuery::Count(f) | PlannedQuery::CountByStatus(f) | PlannedQuery::Summary(f) = query {
        f.validate()?;
    }
    let statements = match query {
        PlannedQuery::Scan(s) => {
            let limit = s.effective_limit()?;
            match Walk::capped_first(s) {
                // Every statement `scan` may run, in its order.
                Some(walk) => {
                    let lim = SqlValue::Integer(limit as i64);
                    let mut all = vec![walk.sql(s, lim.clone(), Some(WALK_CAP))];
                    all.extend(walk.values.iter().map(|v| walk.capped_sql(s, v)));
                    all.push(range_sql(s, lim));
                    all
                }
                None => vec![scan_sql(s, limit)],
            }
        }
        PlannedQuery::Count(f) => vec![count_sql(f)],
        PlannedQuery::CountByStatus(f) => match per_status(f) {
            Some(each) => each.iter().map(count_sql).collect(),
            None => vec![count_by_status_sql(f)],
        },
        PlannedQuery::Summary(f) => vec![summary_sql(f), failures_sql(f, "", 0)],
    };
    let mut out = Vec::new();
    for (sql, args) in statements {
        let e = |err| map_err(path, "explaining a query on", err);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).map_err(e)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            out.push(row.get::<_, String>(3).map_err(e)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::StatementStatus;
    use synclog_core::query::TimeRange;
    use synclog_core::Durability;

    use super::*;
    use crate::connection::{open_reader, open_writer, Deadline};

    /// A scan asked again with another status runs its cached statement as it was
    /// prepared: SQLite does not parse and plan it again for the new value.
    #[test]
    fn a_scan_asked_with_another_status_is_not_prepared_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let wait = Duration::from_secs(5);
        let (writer, _) = open_writer(&path, Deadline::after(wait), wait, 1000, Durability::Process).unwrap();
        let reader = open_reader(&path, wait).unwrap();
        let day = TimeRange::since(chrono::Utc::now() - chrono::Duration::hours(24));
        let scan_of = |status| Scan {
            filter: Filter::status(status).started(day),
            limit: 50,
            descending: true,
            ..Scan::default()
        };
        let statuses = [Status::Failed, Status::Succeeded, Status::Partial];
        for conn in [&writer, &reader] {
            for status in statuses.iter().cycle().take(9) {
                scan(conn, &path, &scan_of(*status)).unwrap();
            }
            // The capped walk every one of those scans ran first (see `scan`).
            let f = scan_of(Status::Failed);
            let (sql, _) = Walk::of(&f.filter)
                .unwrap()
                .sql(&f, SqlValue::Integer(50), Some(WALK_CAP));
            let stmt = conn.prepare_cached(&sql).unwrap();
            assert_eq!(
                stmt.get_status(StatementStatus::Run),
                9,
                "the cached statement ran"
            );
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
        }
    }
}
