//! [`synclog_core::LogStore::summary`] in SQL: one row per (job, status) with its count,
//! sums, earliest start, latest record time and largest id — read from `job_stats` (kept
//! by triggers) when the filter names only jobs and statuses, else aggregated over the
//! matching records — plus, per job, the failures after its latest success; then the
//! latest, latest finished and latest succeeded records by primary key. The answers are
//! [`synclog_core::query::SummaryBuilder`]'s.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use synclog_core::query::{Filter, JobSummary, Summary};
use synclog_core::{Error, LogId, LogRecord, Result, Status};
use tokio_postgres::{Row, Transaction};

use crate::connect::pg_err;
use crate::filters::{by_job_and_status_only, records, Query};
use crate::sql::{Sql, COLUMNS};

/// One (job, status) group.
struct Group {
    job: String,
    status: Status,
    n: u64,
    seen: u64,
    written: u64,
    failed: u64,
    first_started: DateTime<Utc>,
    last_recorded: DateTime<Utc>,
    last_id: i64,
    /// Records of the group newer than the job's latest matching success (aggregate path).
    after_success: Option<u64>,
}

/// A sum as the server gives it (numeric text), saturated as `u64::saturating_add` would.
fn saturated(text: &str) -> u64 {
    text.parse::<u128>()
        .map_or(u64::MAX, |v| u64::try_from(v).unwrap_or(u64::MAX))
}

fn group(row: &Row, store: &str) -> Result<Group> {
    let e = |err| pg_err(store, "decoding a summary of", err);
    let status: String = row.try_get(1).map_err(e)?;
    let status = status
        .parse::<Status>()
        .map_err(|_| Error::corrupt(store, format!("unknown status {status:?} in a summary")))?;
    let n: i64 = row.try_get(2).map_err(e)?;
    let text = |i: usize| -> Result<u64> { Ok(saturated(&row.try_get::<_, String>(i).map_err(e)?)) };
    Ok(Group {
        job: row.try_get(0).map_err(e)?,
        status,
        n: n.max(0) as u64,
        seen: text(3)?,
        written: text(4)?,
        failed: text(5)?,
        first_started: row.try_get(6).map_err(e)?,
        last_recorded: row.try_get(7).map_err(e)?,
        last_id: row.try_get(8).map_err(e)?,
        after_success: row
            .try_get::<_, Option<i64>>(9)
            .map_err(e)?
            .map(|v| v.max(0) as u64),
    })
}

/// The failed and abandoned statuses `filter` lets through.
fn failing(filter: &Filter) -> Vec<String> {
    [Status::Failed, Status::Abandoned]
        .into_iter()
        .filter(|s| filter.statuses.is_empty() || filter.statuses.contains(s))
        .map(|s| s.as_str().to_string())
        .collect()
}

/// The groups of `filter`.
async fn groups(client: &Transaction<'_>, sql: &Sql, store: &str, filter: &Filter) -> Result<Vec<Group>> {
    let cols = "count(*), sum(m.items_seen)::text, sum(m.items_written)::text, sum(m.items_failed)::text, \
                min(m.started_at), max(m.recorded_at), max(m.id)";
    let q = if by_job_and_status_only(filter) {
        let mut q = Query::new(format!(
            "SELECT job, status, n, items_seen::text, items_written::text, items_failed::text, \
                    first_started, last_recorded, last_id, NULL::bigint FROM {} l WHERE true",
            sql.job_stats
        ));
        if !filter.jobs.is_empty() {
            let p = q.param(filter.jobs.clone());
            q.and(format!("l.job = ANY({p}::text[])"));
        }
        if !filter.statuses.is_empty() {
            let s: Vec<String> = filter.statuses.iter().map(|s| s.as_str().to_string()).collect();
            let p = q.param(s);
            q.and(format!("l.status = ANY({p}::text[])"));
        }
        q
    } else {
        let mut q = Query::new(format!(
            "WITH m AS MATERIALIZED (SELECT l.id, l.job, l.status, l.items_seen, l.items_written, \
                 l.items_failed, l.started_at, l.recorded_at FROM {} l WHERE true",
            sql.table
        ));
        records(&mut q, sql, filter)?;
        q.push(format!(
            "), ok AS (SELECT job, max(id) AS ok FROM m WHERE status = 'succeeded' GROUP BY job) \
             SELECT m.job, m.status, {cols}, count(*) FILTER (WHERE m.id > coalesce(ok.ok, 0)) \
             FROM m LEFT JOIN ok USING (job) GROUP BY m.job, m.status"
        ));
        q
    };
    let rows = client
        .query(&q.text, &q.refs())
        .await
        .map_err(|e| pg_err(store, "summarising", e))?;
    rows.iter().map(|r| group(r, store)).collect()
}

/// The summary of the records matching `filter` (checked by the caller), read through
/// `client`'s one snapshot.
pub(crate) async fn summary(
    client: &Transaction<'_>,
    sql: &Sql,
    store: &str,
    filter: &Filter,
) -> Result<Summary> {
    let groups = groups(client, sql, store, filter).await?;
    let mut by_job: BTreeMap<String, Vec<Group>> = BTreeMap::new();
    for g in groups {
        by_job.entry(g.job.clone()).or_default().push(g);
    }
    // Failures after the latest success, for jobs that have one, from `job_stats` rows:
    // a range of `logs_by_job` above that success.
    let failing = failing(filter);
    let mut after: HashMap<String, u64> = HashMap::new();
    if by_job_and_status_only(filter) && !failing.is_empty() {
        let (jobs, oks): (Vec<String>, Vec<i64>) = by_job
            .iter()
            .filter_map(|(job, gs)| {
                let ok = gs.iter().find(|g| g.status == Status::Succeeded)?;
                gs.iter()
                    .any(|g| matches!(g.status, Status::Failed | Status::Abandoned) && g.last_id > ok.last_id)
                    .then(|| (job.clone(), ok.last_id))
            })
            .unzip();
        if !jobs.is_empty() {
            let rows = client
                .query(
                    &format!(
                        // `status || ''`: the status indexes would read every failure of
                        // every job (the planner took them without statistics: 1 s at
                        // 10M); the job's id range above its success is what is small.
                        "SELECT j.job, (SELECT count(*) FROM {} l WHERE l.job = j.job AND l.id > j.ok \
                                        AND (l.status || '') = ANY($3::text[])) \
                         FROM unnest($1::text[], $2::bigint[]) j (job, ok)",
                        sql.table
                    ),
                    &[&jobs, &oks, &failing],
                )
                .await
                .map_err(|e| pg_err(store, "counting failures in", e))?;
            for r in rows {
                after.insert(r.get(0), r.get::<_, i64>(1).max(0) as u64);
            }
        }
    }
    // Each job's latest, latest finished and latest succeeded ids.
    let mut wanted = Vec::new();
    for gs in by_job.values() {
        wanted.extend(gs.iter().map(|g| g.last_id).max());
        wanted.extend(
            gs.iter()
                .filter(|g| g.status.is_terminal())
                .map(|g| g.last_id)
                .max(),
        );
        wanted.extend(
            gs.iter()
                .filter(|g| g.status == Status::Succeeded)
                .map(|g| g.last_id),
        );
    }
    wanted.sort_unstable();
    wanted.dedup();
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM {} WHERE id = ANY($1)", sql.table),
            &[&wanted],
        )
        .await
        .map_err(|e| pg_err(store, "reading the latest records of", e))?;
    let mut recs: HashMap<i64, LogRecord> = HashMap::new();
    for row in &rows {
        let rec = crate::decode(row, store)?;
        recs.insert(rec.id.get() as i64, rec);
    }
    let rec = |id: i64| -> Result<LogRecord> {
        recs.get(&id).cloned().ok_or_else(|| Error::NotFound {
            id: LogId::new(id as u64).unwrap_or(LogId::MIN),
        })
    };
    let mut out = Vec::with_capacity(by_job.len());
    for (job, gs) in by_job {
        let latest = gs.iter().map(|g| g.last_id).max().unwrap_or_default();
        let finished = gs
            .iter()
            .filter(|g| g.status.is_terminal())
            .map(|g| g.last_id)
            .max();
        let success = gs.iter().find(|g| g.status == Status::Succeeded);
        let fails = gs
            .iter()
            .filter(|g| matches!(g.status, Status::Failed | Status::Abandoned));
        let consecutive_failures = match success {
            None => fails.map(|g| g.n).sum(),
            Some(ok) => match gs.iter().any(|g| g.after_success.is_some()) {
                true => fails.filter_map(|g| g.after_success).sum(),
                false => match fails.clone().any(|g| g.last_id > ok.last_id) {
                    true => after.get(&job).copied().unwrap_or_default(),
                    false => 0,
                },
            },
        };
        let finished_groups = || gs.iter().filter(|g| g.status.is_terminal());
        out.push(JobSummary {
            latest: rec(latest)?,
            latest_finished: finished.map(&rec).transpose()?,
            latest_success: success.map(|g| rec(g.last_id)).transpose()?,
            consecutive_failures,
            counts: gs.iter().map(|g| (g.status, g.n)).collect(),
            // Over finished records only (see `JobSummary::items_seen`).
            items_seen: finished_groups().fold(0u64, |a, g| a.saturating_add(g.seen)),
            items_written: finished_groups().fold(0u64, |a, g| a.saturating_add(g.written)),
            items_failed: finished_groups().fold(0u64, |a, g| a.saturating_add(g.failed)),
            first_started_at: gs.iter().map(|g| g.first_started).min().unwrap_or_default(),
            last_recorded_at: gs.iter().map(|g| g.last_recorded).max().unwrap_or_default(),
            job,
        });
    }
    Ok(Summary { jobs: out })
}
