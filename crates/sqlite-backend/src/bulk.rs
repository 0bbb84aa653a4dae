//! Large imports without the per-row triggers.
//!
//! The `logs` table's AFTER INSERT triggers keep `job_stats`, `runs` and
//! `idempotency_keys` exact, one row at a time, and make SQLite keep a statement journal
//! for every insert. An import of many records (a restore, a copy) instead drops those
//! triggers inside its transaction, inserts, brings the three tables up to date with one
//! set-based statement each over the rows it inserted, and creates the triggers again,
//! from the text SQLite stored for them, before it commits. It is one transaction: a
//! crash anywhere in it leaves the store as it was, triggers included; other connections
//! see the new rows, the updated tables and the same triggers at once.
//!
//! Each statement below does for a set of new rows what the trigger does for one, and
//! the result does not depend on the order the rows arrive in (sums, a minimum and a
//! maximum; a run's first and latest record), so the tables end up as the triggers would
//! have left them. `tests/bulk_import.rs` checks that against the trigger path.

use std::path::Path;

use rusqlite::Connection;
use synclog_core::{LogId, Result};

use crate::connection::map_err;

/// Imports of at least this many records take the bulk path; smaller ones (every group a
/// guarded pair writes) keep the triggers, as a schema change costs each connection a
/// fresh parse of the schema.
pub(crate) const BULK_IMPORT_RECORDS: usize = 1000;

/// `job_stats` for the rows in `temp.bulk_imported`, as `logs_into_job_stats` adds one.
const JOB_STATS: &str = "INSERT INTO job_stats
    SELECT job, status, count(*),
        sum(items_seen >> 32), sum(items_seen & 4294967295),
        sum(items_written >> 32), sum(items_written & 4294967295),
        sum(items_failed >> 32), sum(items_failed & 4294967295),
        min(started_at), max(recorded_at), max(id)
    FROM logs WHERE id IN (SELECT id FROM temp.bulk_imported) GROUP BY job, status
    ON CONFLICT (job, status) DO UPDATE SET
        n = n + excluded.n,
        seen_hi = seen_hi + excluded.seen_hi, seen_lo = seen_lo + excluded.seen_lo,
        written_hi = written_hi + excluded.written_hi, written_lo = written_lo + excluded.written_lo,
        failed_hi = failed_hi + excluded.failed_hi, failed_lo = failed_lo + excluded.failed_lo,
        min_started = min(min_started, excluded.min_started),
        max_recorded = max(max_recorded, excluded.max_recorded),
        max_id = max(max_id, excluded.max_id)";

/// `runs` for the new rows, as `logs_into_runs` applied to each run's first and latest new
/// record (the records between them change nothing the trigger keeps).
const RUNS: &str = "INSERT INTO runs
    SELECT e.run_key, f.job, e.first_id, e.last_id, l.status,
        l.status NOT IN ('started', 'progress'), f.started_at
    FROM (SELECT run_key, min(id) AS first_id, max(id) AS last_id FROM logs
          WHERE id IN (SELECT id FROM temp.bulk_imported) AND run_key IS NOT NULL
          GROUP BY run_key) AS e
    JOIN logs AS f ON f.id = e.first_id
    JOIN logs AS l ON l.id = e.last_id
    WHERE true
    ON CONFLICT (run_key) DO UPDATE SET
        job = CASE WHEN excluded.first_id < first_id THEN excluded.job ELSE job END,
        started_at = CASE WHEN excluded.first_id < first_id THEN excluded.started_at ELSE started_at END,
        first_id = min(first_id, excluded.first_id),
        status = CASE WHEN excluded.last_id > last_id THEN excluded.status ELSE status END,
        finished = CASE WHEN excluded.last_id > last_id THEN excluded.finished ELSE finished END,
        last_id = max(last_id, excluded.last_id)";

/// `idempotency_keys` for the new rows: each key names its smallest id, as
/// `logs_into_idempotency_keys` keeps it.
const KEYS: &str = "INSERT INTO idempotency_keys
    SELECT idempotency_key, min(id) FROM logs
    WHERE id IN (SELECT id FROM temp.bulk_imported) AND idempotency_key IS NOT NULL
    GROUP BY idempotency_key
    ON CONFLICT (key) DO UPDATE SET id = min(id, excluded.id)";

/// The AFTER INSERT triggers of `logs` the bulk path stands in for, each with the
/// statement that does its work for all new rows at once.
const TRIGGERS: [(&str, &str); 3] = [
    ("logs_into_job_stats", JOB_STATS),
    ("logs_into_runs", RUNS),
    ("logs_into_idempotency_keys", KEYS),
];

/// The triggers set aside for one bulk import, to be restored by [`Bulk::finish`].
pub(crate) struct Bulk {
    /// Each dropped trigger's `CREATE TRIGGER` text, as SQLite stored it, and the statement
    /// that stands in for it.
    saved: Vec<(String, &'static str)>,
}

impl Bulk {
    /// Drops the insert triggers (inside the caller's transaction) and makes the empty
    /// list of imported ids.
    pub(crate) fn begin(tx: &Connection, path: &Path) -> Result<Bulk> {
        let fail = |e| map_err(path, "setting the insert triggers aside for an import into", e);
        let mut saved = Vec::with_capacity(TRIGGERS.len());
        for (name, instead) in TRIGGERS {
            let sql: Option<String> = tx
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_or_else(
                    |e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    },
                    |s| Ok(Some(s)),
                )
                .map_err(fail)?;
            if let Some(sql) = sql {
                tx.execute_batch(&format!("DROP TRIGGER {name}")).map_err(fail)?;
                saved.push((sql, instead));
            }
        }
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS bulk_imported (id INTEGER PRIMARY KEY);
             DELETE FROM temp.bulk_imported;",
        )
        .map_err(fail)?;
        Ok(Bulk { saved })
    }

    /// Notes a row the import inserted.
    pub(crate) fn inserted(&self, tx: &Connection, path: &Path, id: LogId) -> Result<()> {
        tx.prepare_cached("INSERT INTO temp.bulk_imported (id) VALUES (?1)")
            .and_then(|mut s| s.execute([id.get() as i64]))
            .map_err(|e| map_err(path, "noting an imported row of", e))?;
        Ok(())
    }

    /// Brings `job_stats`, `runs` and `idempotency_keys` up to date with the inserted rows
    /// and creates the triggers again. The caller commits afterwards.
    pub(crate) fn finish(self, tx: &Connection, path: &Path) -> Result<()> {
        let fail = |e| map_err(path, "indexing the imported rows of", e);
        for (_, instead) in &self.saved {
            tx.execute(instead, []).map_err(fail)?;
        }
        tx.execute("DELETE FROM temp.bulk_imported", []).map_err(fail)?;
        for (trigger, _) in &self.saved {
            tx.execute_batch(trigger).map_err(fail)?;
        }
        Ok(())
    }
}
