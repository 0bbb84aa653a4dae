//! The SQL of a [`Filter`]: the conditions a scan, a count, a summary or a runs query adds
//! to its `WHERE` clause, each with its parameters. Every statement built here is sent
//! unnamed, so PostgreSQL plans it with its values (never a generic plan), and each
//! condition is one an index answers: `(job, id)`, `(status, id)`, `recorded_at`,
//! `started_at`, `finished_at`, `(run_key, id)`, and `attrs (key, value, id)`.

use chrono::{DateTime, Utc};
use synclog_core::query::{Filter, TimeRange};
use synclog_core::{Error, Result, RunScan, Scan, Status};
use tokio_postgres::types::ToSql;

use crate::sql::{Sql, COLUMNS};

/// Parameters of a query built at run time.
pub(crate) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// A query and its parameters (`$1`, `$2`, …), built a condition at a time.
pub(crate) struct Query {
    pub(crate) text: String,
    params: Params,
}

impl Query {
    /// `head`, which ends in a `WHERE` clause the conditions are `AND`ed to.
    pub(crate) fn new(head: impl Into<String>) -> Query {
        Query {
            text: head.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter; returns its placeholder.
    pub(crate) fn param<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    /// Adds `AND <condition>`.
    pub(crate) fn and(&mut self, condition: impl AsRef<str>) {
        self.text.push_str(" AND ");
        self.text.push_str(condition.as_ref());
    }

    /// Appends text as it is.
    pub(crate) fn push(&mut self, text: impl AsRef<str>) {
        self.text.push_str(text.as_ref());
    }

    /// `column` equal to one of `values` (nothing for none): `=` for one value, so the
    /// index on `(column, id)` also gives id order.
    fn any_of(&mut self, column: &str, values: Vec<String>) {
        match values.len() {
            0 => {}
            1 => {
                let p = self.param(values.into_iter().next().unwrap_or_default());
                self.and(format!("{column} = {p}"));
            }
            _ => {
                let p = self.param(values);
                self.and(format!("{column} = ANY({p}::text[])"));
            }
        }
    }

    /// `expr` inside `range` (nothing for an open one; a NULL is never inside a closed one).
    fn range(&mut self, expr: &str, range: &TimeRange) -> Result<()> {
        let (from, until) = range.micros();
        if let Some(f) = from {
            let p = self.param(instant(f)?);
            self.and(format!("{expr} >= {p}"));
        }
        if let Some(u) = until {
            let p = self.param(instant(u)?);
            self.and(format!("{expr} < {p}"));
        }
        Ok(())
    }

    /// Each attribute condition as a probe of `attrs (key, value, id)` for `id_expr`.
    fn attrs(&mut self, attrs_table: &str, id_expr: &str, filter: &Filter) {
        for cond in &filter.attrs {
            let k = self.param(cond.key.clone());
            let v = self.param(cond.value_text());
            self.and(format!(
                "EXISTS (SELECT 1 FROM {attrs_table} a WHERE a.key = {k} AND a.value = {v} AND a.id = {id_expr})"
            ));
        }
    }

    /// Orders by `column`, cuts to `limit`.
    pub(crate) fn order(&mut self, column: &str, descending: bool, limit: i64) {
        let p = self.param(limit);
        let dir = if descending { "DESC" } else { "ASC" };
        self.push(format!(" ORDER BY {column} {dir} LIMIT {p}"));
    }

    /// The parameters, as `query` takes them.
    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// The text and the parameters.
    #[cfg(test)]
    pub(crate) fn into_parts(self) -> (String, Params) {
        (self.text, self.params)
    }
}

/// Microseconds since the epoch as an instant.
fn instant(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        Error::invalid(
            "from",
            format!("{micros} µs is outside the instants PostgreSQL stores"),
        )
    })
}

fn status_texts(filter: &Filter) -> Vec<String> {
    filter.statuses.iter().map(|s| s.as_str().to_string()).collect()
}

/// Adds the conditions of `filter` on records of `logs l`.
pub(crate) fn records(q: &mut Query, sql: &Sql, filter: &Filter) -> Result<()> {
    q.any_of("l.job", filter.jobs.clone());
    q.any_of("l.status", status_texts(filter));
    q.range("l.started_at", &filter.started)?;
    q.range("l.finished_at", &filter.finished)?;
    q.range("l.recorded_at", &filter.recorded)?;
    if let Some(run) = &filter.run {
        let p = q.param(run.clone());
        q.and(format!("l.run_key = {p}"));
    }
    q.attrs(&sql.attrs, "l.id", filter);
    Ok(())
}

/// The query [`synclog_core::LogStore::scan`] sends for `scan`.
pub(crate) fn scan_query(sql: &Sql, scan: &Scan) -> Result<Query> {
    let limit = scan.effective_limit()? as i64;
    let mut q = Query::new(format!("SELECT {COLUMNS} FROM {} l WHERE true", sql.table));
    if let Some(a) = scan.after {
        let p = q.param(a.get() as i64);
        q.and(format!("l.id > {p}"));
    }
    if let Some(b) = scan.before {
        let p = q.param(b.get() as i64);
        q.and(format!("l.id < {p}"));
    }
    records(&mut q, sql, &scan.filter)?;
    q.order("l.id", scan.descending, limit);
    Ok(q)
}

/// Whether `filter` names only jobs and statuses: `job_stats` answers counts and
/// summaries of it.
pub(crate) fn by_job_and_status_only(filter: &Filter) -> bool {
    filter.started.is_open()
        && filter.finished.is_open()
        && filter.recorded.is_open()
        && filter.attrs.is_empty()
        && filter.run.is_none()
}

/// The count of `filter`: from `job_stats` when it names only jobs and statuses, else
/// `count(*)` over the records the indexes find.
pub(crate) fn count_query(sql: &Sql, filter: &Filter) -> Result<Query> {
    filter.validate()?;
    if by_job_and_status_only(filter) {
        let mut q = Query::new(format!(
            "SELECT coalesce(sum(n), 0)::bigint FROM {} l WHERE true",
            sql.job_stats
        ));
        q.any_of("l.job", filter.jobs.clone());
        q.any_of("l.status", status_texts(filter));
        return Ok(q);
    }
    let mut q = Query::new(format!("SELECT count(*) FROM {} l WHERE true", sql.table));
    records(&mut q, sql, filter)?;
    Ok(q)
}

/// The counts by status of `filter` (rows of status text and count): from `job_stats`
/// when it names only jobs and statuses, else one `GROUP BY status` over the records the
/// indexes find.
pub(crate) fn count_by_status_query(sql: &Sql, filter: &Filter) -> Result<Query> {
    filter.validate()?;
    let mut q;
    if by_job_and_status_only(filter) {
        q = Query::new(format!(
            "SELECT l.status, sum(l.n)::bigint FROM {} l WHERE true",
            sql.job_stats
        ));
        q.any_of("l.job", filter.jobs.clone());
        q.any_of("l.status", status_texts(filter));
    } else {
        q = Query::new(format!(
            "SELECT l.status, count(*) FROM {} l WHERE true",
            sql.table
        ));
        records(&mut q, sql, filter)?;
        if filter.statuses.is_empty() && !filter.recorded.is_open() {
            // Every status, named: lets the planner answer from `(status, recorded_at)`
            // alone (an index-only scan where the pages are all-visible); where they are
            // not, it reads the `recorded_at` range as it would without this.
            let all: Vec<String> = Status::ALL.iter().map(|s| s.as_str().to_string()).collect();
            let p = q.param(all);
            q.and(format!("l.status = ANY({p}::text[])"));
        }
    }
    q.push(" GROUP BY l.status");
    Ok(q)
}

/// The query `PgStore::runs` sends for `scan`.
pub(crate) fn runs_query(sql: &Sql, scan: &RunScan) -> Result<Query> {
    let limit = scan.effective_limit()? as i64;
    let f = &scan.filter;
    let mut q = Query::new(sql.runs_head.clone());
    if let Some(a) = scan.after {
        let p = q.param(a.get() as i64);
        q.and(format!("r.first_id > {p}"));
    }
    if let Some(b) = scan.before {
        let p = q.param(b.get() as i64);
        q.and(format!("r.first_id < {p}"));
    }
    q.any_of("r.job", f.jobs.clone());
    q.any_of("r.status", status_texts(f));
    q.range("r.started_at", &f.started)?;
    if !f.finished.is_open() {
        // A run's end: its terminal record's finished_at, or when that was recorded.
        q.and("r.finished");
        q.range("coalesce(l.finished_at, l.recorded_at)", &f.finished)?;
    }
    q.range("l.recorded_at", &f.recorded)?;
    if let Some(run) = &f.run {
        let p = q.param(run.clone());
        q.and(format!("r.run_key = {p}"));
    }
    q.attrs(&sql.attrs, "r.first_id", f);
    if let Some(c) = scan.started_before {
        let p = q.param(c);
        q.and(format!("r.started_at < {p}"));
    }
    if scan.only_unfinished() {
        q.and("NOT r.finished");
    }
    q.order("r.first_id", scan.descending, limit);
    Ok(q)
}
