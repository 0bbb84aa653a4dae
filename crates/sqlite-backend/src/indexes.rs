//! Schema version 3: what answers [`synclog_core::query::Filter`]s from indexes, and
//! keeping it true.
//!
//! - An index per filtered column: `recorded_at`, `started_at`, `finished_at`,
//!   `(status, id)` (newest records of a status, in id order), `(status, recorded_at)`
//!   (counts of a status over a time window, from the index alone). `(job, id)` and the
//!   run index came with versions 1 and 2.
//! - `log_attrs`: one row per top-level attribute of each record, `(key, canonical value
//!   text, id)`, written by the writer in the transaction that writes the record (commit,
//!   import, repair). SQLite cannot compute the canonical text synclog compares by, so no
//!   trigger could.
//! - `job_stats`: per job and status, the count, the sums of the counters, the earliest
//!   `started_at`, the latest `recorded_at` and the largest id: what a summary of every
//!   record reads instead of every record. Kept by triggers on every insert, delete and
//!   update of `logs`, whoever writes. Sums are kept as the sums of the high and low 32 bits
//!   of each counter: they never overflow SQLite's 64-bit integers (a trigger that failed
//!   would fail the commit), and the reader adds them up exactly.

use std::path::Path;

use rusqlite::Connection;
use synclog_core::query::attr_entries;
use synclog_core::{LogId, Result};

use crate::connection::map_err;

/// What version 3 adds to a version 2 database (see the module docs); the side tables are
/// then filled from the stored records in the same transaction.
pub const UPGRADE_TO_3: &str = "
CREATE INDEX logs_by_recorded ON logs(recorded_at);
CREATE INDEX logs_by_started ON logs(started_at);
CREATE INDEX logs_by_finished ON logs(finished_at);
CREATE INDEX logs_by_status ON logs(status, id);
CREATE INDEX logs_by_status_recorded ON logs(status, recorded_at);
CREATE TABLE log_attrs (
    key   TEXT    NOT NULL,
    value TEXT    NOT NULL,      -- the value's canonical JSON text
    id    INTEGER NOT NULL,
    PRIMARY KEY (key, value, id)
) WITHOUT ROWID;
CREATE TABLE job_stats (
    job          TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    n            INTEGER NOT NULL,
    seen_hi      INTEGER NOT NULL,   -- sum of items_seen >> 32
    seen_lo      INTEGER NOT NULL,   -- sum of items_seen & 0xffffffff
    written_hi   INTEGER NOT NULL,
    written_lo   INTEGER NOT NULL,
    failed_hi    INTEGER NOT NULL,
    failed_lo    INTEGER NOT NULL,
    min_started  INTEGER NOT NULL,
    max_recorded INTEGER NOT NULL,
    max_id       INTEGER NOT NULL,
    PRIMARY KEY (job, status)
) WITHOUT ROWID;
CREATE TRIGGER logs_into_job_stats AFTER INSERT ON logs BEGIN
    INSERT INTO job_stats VALUES (NEW.job, NEW.status, 1,
        NEW.items_seen >> 32, NEW.items_seen & 4294967295,
        NEW.items_written >> 32, NEW.items_written & 4294967295,
        NEW.items_failed >> 32, NEW.items_failed & 4294967295,
        NEW.started_at, NEW.recorded_at, NEW.id)
    ON CONFLICT (job, status) DO UPDATE SET
        n = n + 1,
        seen_hi = seen_hi + excluded.seen_hi, seen_lo = seen_lo + excluded.seen_lo,
        written_hi = written_hi + excluded.written_hi, written_lo = written_lo + excluded.written_lo,
        failed_hi = failed_hi + excluded.failed_hi, failed_lo = failed_lo + excluded.failed_lo,
        min_started = min(min_started, excluded.min_started),
        max_recorded = max(max_recorded, excluded.max_recorded),
        max_id = max(max_id, excluded.max_id);
END;
CREATE TRIGGER logs_out_of_job_stats AFTER DELETE ON logs BEGIN
    UPDATE job_stats SET
        n = n - 1,
        seen_hi = seen_hi - (OLD.items_seen >> 32), seen_lo = seen_lo - (OLD.items_seen & 4294967295),
        written_hi = written_hi - (OLD.items_written >> 32),
        written_lo = written_lo - (OLD.items_written & 4294967295),
        failed_hi = failed_hi - (OLD.items_failed >> 32), failed_lo = failed_lo - (OLD.items_failed & 4294967295),
        min_started = CASE WHEN OLD.started_at > min_started THEN min_started ELSE coalesce(
            (SELECT min(started_at) FROM logs WHERE job = OLD.job AND status = OLD.status), 0) END,
        max_recorded = CASE WHEN OLD.recorded_at < max_recorded THEN max_recorded ELSE coalesce(
            (SELECT max(recorded_at) FROM logs WHERE job = OLD.job AND status = OLD.status), 0) END,
        max_id = CASE WHEN OLD.id < max_id THEN max_id ELSE coalesce(
            (SELECT max(id) FROM logs WHERE job = OLD.job AND status = OLD.status), 0) END
    WHERE job = OLD.job AND status = OLD.status;
    DELETE FROM job_stats WHERE job = OLD.job AND status = OLD.status AND n <= 0;
END;
CREATE TRIGGER logs_update_job_stats AFTER UPDATE OF job, status, items_seen, items_written,
        items_failed, started_at, recorded_at ON logs BEGIN
    UPDATE job_stats SET
        n = n - 1,
        seen_hi = seen_hi - (OLD.items_seen >> 32), seen_lo = seen_lo - (OLD.items_seen & 4294967295),
        written_hi = written_hi - (OLD.items_written >> 32),
        written_lo = written_lo - (OLD.items_written & 4294967295),
        failed_hi = failed_hi - (OLD.items_failed >> 32), failed_lo = failed_lo - (OLD.items_failed & 4294967295),
        min_started = coalesce((SELECT min(started_at) FROM logs WHERE job = OLD.job AND status = OLD.status), 0),
        max_recorded = coalesce((SELECT max(recorded_at) FROM logs WHERE job = OLD.job AND status = OLD.status), 0),
        max_id = coalesce((SELECT max(id) FROM logs WHERE job = OLD.job AND status = OLD.status), 0)
    WHERE job = OLD.job AND status = OLD.status;
    DELETE FROM job_stats WHERE job = OLD.job AND status = OLD.status AND n <= 0;
    INSERT INTO job_stats VALUES (NEW.job, NEW.status, 1,
        NEW.items_seen >> 32, NEW.items_seen & 4294967295,
        NEW.items_written >> 32, NEW.items_written & 4294967295,
        NEW.items_failed >> 32, NEW.items_failed & 4294967295,
        NEW.started_at, NEW.recorded_at, NEW.id)
    ON CONFLICT (job, status) DO UPDATE SET
        n = n + 1,
        seen_hi = seen_hi + excluded.seen_hi, seen_lo = seen_lo + excluded.seen_lo,
        written_hi = written_hi + excluded.written_hi, written_lo = written_lo + excluded.written_lo,
        failed_hi = failed_hi + excluded.failed_hi, failed_lo = failed_lo + excluded.failed_lo,
        min_started = min(min_started, excluded.min_started),
        max_recorded = max(max_recorded, excluded.max_recorded),
        max_id = max(max_id, excluded.max_id);
END;
";

/// Fills `log_attrs` and `job_stats` from the rows already in `logs` (inside the upgrade's
/// transaction). Rows whose counters are not integers (a damaged row) count as zero in the
/// sums; `verify` reports them.
pub(crate) fn backfill(tx: &Connection, path: &Path) -> Result<()> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    tx.execute_batch(
        "INSERT INTO job_stats
            SELECT job, status, count(*),
                sum(items_seen >> 32), sum(items_seen & 4294967295),
                sum(items_written >> 32), sum(items_written & 4294967295),
                sum(items_failed >> 32), sum(items_failed & 4294967295),
                min(started_at), max(recorded_at), max(id)
            FROM logs GROUP BY job, status;",
    )
    .map_err(e("summing the records of"))?;
    let mut read = tx
        .prepare("SELECT id, attrs FROM logs WHERE attrs <> '{}' ORDER BY id")
        .map_err(e("reading the attributes of"))?;
    let mut insert = tx
        .prepare_cached(INSERT_ATTR)
        .map_err(e("preparing the attribute index of"))?;
    let mut rows = read.query([]).map_err(e("reading the attributes of"))?;
    while let Some(row) = rows.next().map_err(e("reading the attributes of"))? {
        let id: i64 = row.get(0).map_err(e("reading the attributes of"))?;
        // A damaged row whose attrs are not text is indexed as having none.
        let Ok(attrs) = row.get::<_, String>(1) else {
            continue;
        };
        for (key, value) in attr_entries(&attrs) {
            insert
                .execute(rusqlite::params![key, value, id])
                .map_err(e("filling the attribute index of"))?;
        }
    }
    Ok(())
}

const INSERT_ATTR: &str = "INSERT OR IGNORE INTO log_attrs (key, value, id) VALUES (?1, ?2, ?3)";
const DELETE_ATTR: &str = "DELETE FROM log_attrs WHERE key = ?1 AND value = ?2 AND id = ?3";

/// Indexes the attributes `attrs` (canonical text) of record `id`, inside the transaction
/// that writes it.
pub(crate) fn index_attrs(tx: &Connection, path: &Path, id: LogId, attrs: &str) -> Result<()> {
    if attrs == "{}" {
        return Ok(());
    }
    let mut insert = tx
        .prepare_cached(INSERT_ATTR)
        .map_err(|e| map_err(path, "preparing the attribute index of", e))?;
    for (key, value) in attr_entries(attrs) {
        insert
            .execute(rusqlite::params![key, value, id.get() as i64])
            .map_err(|e| map_err(path, &format!("indexing the attributes of log {id} in"), e))?;
    }
    Ok(())
}

/// Removes record `id`'s entries for each attribute text in `texts` (what the row held
/// when it was indexed, and what it holds now), inside the transaction that deletes it.
pub(crate) fn unindex_attrs(tx: &Connection, path: &Path, id: LogId, texts: &[&str]) -> Result<()> {
    let mut delete = tx
        .prepare_cached(DELETE_ATTR)
        .map_err(|e| map_err(path, "preparing the attribute index of", e))?;
    for text in texts {
        for (key, value) in attr_entries(text) {
            delete
                .execute(rusqlite::params![key, value, id.get() as i64])
                .map_err(|e| map_err(path, &format!("unindexing the attributes of log {id} in"), e))?;
        }
    }
    Ok(())
}
