//! Schema version 4: prune markers, and deleting what they cover (see
//! [`synclog_core::retention`]).
//!
//! - `prune_markers`: one row per marker, `(seq, digest, body)`, `body` being
//!   [`PruneMarker::encode`]; oldest first by `seq`, one per digest.
//! - `log_attrs_by_id`: the attribute index by record id, so deleting a range of records
//!   deletes their attribute entries by range too.
//! - `logs_out_of_job_stats` is skipped while a prune deletes (a `pruning` row of `meta`
//!   exists only inside its transaction): the trigger recomputes a job's earliest start by
//!   reading its rows whenever the row deleted held it, which a prune of old records hits
//!   for nearly every row. The prune subtracts what it deleted from `job_stats` itself and
//!   recomputes each extreme at most once per transaction.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use synclog_core::retention::{PruneMarker, Pruned};
use synclog_core::{Error, IdRange, Result};

use crate::connection::map_err;

/// What version 4 adds to a version 3 database (see the module docs).
pub const UPGRADE_TO_4: &str = "
CREATE TABLE prune_markers (
    seq    INTEGER PRIMARY KEY,
    digest TEXT    NOT NULL UNIQUE,   -- the marker's digest: one marker per pruned set
    body   TEXT    NOT NULL           -- PruneMarker::encode()
);
CREATE INDEX log_attrs_by_id ON log_attrs(id);
DROP TRIGGER logs_out_of_job_stats;
CREATE TRIGGER logs_out_of_job_stats AFTER DELETE ON logs
        WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'pruning') BEGIN
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
";

/// At most this many ids are deleted per write transaction, so appenders (of this process
/// and others) wait a fraction of a second at most behind a large prune.
pub(crate) const CHUNK_IDS: u64 = 20_000;

/// The most ids one `DELETE` statement of a prune covers: its statement journal (in
/// memory, see `connection::open_writer`) holds every page it changes.
pub(crate) const DELETE_STATEMENT_IDS: i64 = 5_000;

/// Pages given back per `PRAGMA incremental_vacuum` transaction.
pub(crate) const VACUUM_PAGES: u32 = 1000;

/// [`synclog_core::retention::chunk_ranges`] as `(first, last)` pairs for SQL.
pub(crate) fn chunks(ranges: &[IdRange], size: u64) -> Vec<Vec<(i64, i64)>> {
    synclog_core::retention::chunk_ranges(ranges, size)
        .into_iter()
        .map(|c| {
            c.iter()
                .map(|r| (r.first.get() as i64, r.last.get() as i64))
                .collect()
        })
        .collect()
}

fn no_table(err: &rusqlite::Error) -> bool {
    err.to_string().contains("no such table: prune_markers")
}

/// Each stored marker row, oldest first: its sequence number and the marker, or the error
/// of decoding it. Empty on a database of an earlier schema (read-only handles read those).
pub(crate) fn marker_rows(conn: &Connection, path: &Path) -> Result<Vec<(i64, Result<PruneMarker>)>> {
    let e = |err| map_err(path, "reading the prune markers of", err);
    let mut stmt = match conn.prepare_cached("SELECT seq, body FROM prune_markers ORDER BY seq") {
        Ok(stmt) => stmt,
        Err(err) if no_table(&err) => return Ok(Vec::new()),
        Err(err) => return Err(e(err)),
    };
    let mut rows = stmt.query([]).map_err(e)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(e)? {
        let seq: i64 = row.get(0).map_err(e)?;
        let location = format!("sqlite://{} prune marker {seq}", path.display());
        let marker = match row.get_ref(1).map_err(e)? {
            rusqlite::types::ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(text) => PruneMarker::decode(text, &location),
                Err(err) => Err(Error::corrupt(
                    location,
                    format!("a prune marker is not UTF-8: {err}"),
                )),
            },
            other => Err(Error::corrupt(
                location,
                format!("a prune marker is stored as {:?}, not text", other.data_type()),
            )),
        };
        out.push((seq, marker));
    }
    Ok(out)
}

/// The stored markers, oldest first; a damaged one is [`Error::Corrupt`].
pub(crate) fn markers(conn: &Connection, path: &Path) -> Result<Vec<PruneMarker>> {
    marker_rows(conn, path)?.into_iter().map(|(_, m)| m).collect()
}

/// What identifies the stored set of markers cheaply: their count and largest `seq`
/// (markers are only ever added).
pub(crate) type MarkersKey = (i64, i64);

/// The ids the stored markers cover, read again only when the markers changed since
/// `cached` was read. A damaged marker is [`Error::Corrupt`]: what it covered is unknown,
/// so nothing is imported past it.
pub(crate) fn pruned(
    conn: &Connection,
    path: &Path,
    cached: Option<&(MarkersKey, std::sync::Arc<Pruned>)>,
) -> Result<(MarkersKey, std::sync::Arc<Pruned>)> {
    let key: MarkersKey = conn
        .prepare_cached("SELECT count(*), coalesce(max(seq), 0) FROM prune_markers")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(|e| map_err(path, "reading the prune markers of", e))?;
    if let Some((k, p)) = cached {
        if *k == key {
            return Ok((key, p.clone()));
        }
    }
    let list = markers(conn, path)?;
    Ok((key, std::sync::Arc::new(Pruned::of(&list))))
}

/// Stores `marker` unless a marker of its digest is stored; returns whether it was.
pub(crate) fn store_marker(tx: &Connection, path: &Path, marker: &PruneMarker) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO prune_markers (digest, body) VALUES (?1, ?2) ON CONFLICT (digest) DO NOTHING",
        )
        .and_then(|mut s| s.execute(rusqlite::params![marker.digest, marker.encode()]))
        .map_err(|e| map_err(path, "storing a prune marker in", e))?;
    Ok(n == 0)
}

/// What the deleted rows of one `(job, status)` held: `job_stats`' columns.
#[derive(Default)]
struct Gone {
    n: i64,
    /// seen_hi, seen_lo, written_hi, written_lo, failed_hi, failed_lo.
    halves: [i64; 6],
    /// Whether a deleted row may have held the group's earliest start, latest recording or
    /// largest id (decided against `job_stats` once all are deleted).
    min_started: Option<Value>,
    max_recorded: Option<Value>,
    max_id: Option<Value>,
}

/// SQLite's order of values (what `min`, `max` and indexes sort by): NULL, numbers, text,
/// blobs.
fn cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let class = |v: &Value| match v {
        Value::Null => 0,
        Value::Integer(_) | Value::Real(_) => 1,
        Value::Text(_) => 2,
        Value::Blob(_) => 3,
    };
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Real(y)) => (*x as f64).partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Real(x), Value::Integer(y)) => x.partial_cmp(&(*y as f64)).unwrap_or(Ordering::Equal),
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => class(a).cmp(&class(b)),
    }
}

fn keep(slot: &mut Option<Value>, v: Value, want: std::cmp::Ordering) {
    match slot {
        Some(cur) if cmp(&v, cur) != want => {}
        _ => *slot = Some(v),
    }
}

/// A stored value as a map key (`job` and `status` are text, unless damaged).
#[derive(Debug, Clone)]
struct K(Value);

impl PartialEq for K {
    fn eq(&self, other: &K) -> bool {
        match (&self.0, &other.0) {
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b,
        }
    }
}

impl Eq for K {}

impl std::hash::Hash for K {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match &self.0 {
            Value::Null => 0u8.hash(h),
            Value::Integer(i) => (1u8, i).hash(h),
            Value::Real(f) => (2u8, f.to_bits()).hash(h),
            Value::Text(t) => (3u8, t).hash(h),
            Value::Blob(b) => (4u8, b).hash(h),
        }
    }
}

impl rusqlite::types::FromSql for K {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<K> {
        Value::column_result(v).map(K)
    }
}

impl rusqlite::ToSql for K {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

/// A `(job, status)` group of `job_stats`.
type Group = (K, K);

/// Rows of the index-ordered scans that settle extremes for many groups at once, before
/// each group left is read on its own.
const SHARED_SCAN_ROWS: i64 = 10_000;

/// Deletes the records of `ranges` (one statement per range, by the primary key) and their
/// attribute entries (by `log_attrs_by_id`), inside the caller's write transaction; keeps
/// `job_stats` equal to what the remaining records add up to. The run and key tables follow
/// by their triggers. Returns how many records were deleted.
pub(crate) fn delete_ranges(tx: &Connection, path: &Path, ranges: &[(i64, i64)]) -> Result<u64> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    if ranges.is_empty() {
        return Ok(0);
    }
    tx.prepare_cached("INSERT INTO meta (key, value) VALUES ('pruning', 1)")
        .and_then(|mut s| s.execute([]))
        .map_err(e("starting a prune of"))?;
    let mut groups: HashMap<Group, Gone> = HashMap::new();
    let mut deleted = 0u64;
    {
        let mut delete = tx
            .prepare_cached(
                "DELETE FROM logs WHERE id BETWEEN ?1 AND ?2 RETURNING job, status, \
                 items_seen >> 32, items_seen & 4294967295, items_written >> 32, \
                 items_written & 4294967295, items_failed >> 32, items_failed & 4294967295, \
                 started_at, recorded_at, id",
            )
            .map_err(e("preparing a prune of"))?;
        let mut unindex = tx
            .prepare_cached("DELETE FROM log_attrs WHERE id BETWEEN ?1 AND ?2")
            .map_err(e("preparing a prune of"))?;
        let statements = ranges.iter().flat_map(|&(first, last)| {
            (first..=last)
                .step_by(DELETE_STATEMENT_IDS as usize)
                .map(move |lo| (lo, last.min(lo.saturating_add(DELETE_STATEMENT_IDS - 1))))
        });
        for (first, last) in statements {
            let mut rows = delete.query([first, last]).map_err(e("pruning"))?;
            while let Some(row) = rows.next().map_err(e("pruning"))? {
                let get = |i: usize| row.get::<_, Value>(i).map_err(e("pruning"));
                let key = (K(get(0)?), K(get(1)?));
                let g = groups.entry(key).or_default();
                g.n += 1;
                for (k, half) in g.halves.iter_mut().enumerate() {
                    *half += row.get::<_, i64>(2 + k).map_err(e("pruning"))?;
                }
                use std::cmp::Ordering::{Greater, Less};
                keep(&mut g.min_started, get(8)?, Less);
                keep(&mut g.max_recorded, get(9)?, Greater);
                keep(&mut g.max_id, get(10)?, Greater);
                deleted += 1;
            }
            drop(rows);
            unindex.execute([first, last]).map_err(e("pruning"))?;
        }
    }
    update_job_stats(tx, path, groups)?;
    tx.prepare_cached("DELETE FROM meta WHERE key = 'pruning'")
        .and_then(|mut s| s.execute([]))
        .map_err(e("finishing a prune of"))?;
    Ok(deleted)
}

/// Which extreme of a group is recomputed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Extreme {
    MinStarted,
    MaxRecorded,
    MaxId,
}

impl Extreme {
    const ALL: [Extreme; 3] = [Extreme::MinStarted, Extreme::MaxRecorded, Extreme::MaxId];

    fn column(self) -> &'static str {
        match self {
            Extreme::MinStarted => "min_started",
            Extreme::MaxRecorded => "max_recorded",
            Extreme::MaxId => "max_id",
        }
    }

    /// The aggregate over the remaining rows of one group.
    fn aggregate(self) -> &'static str {
        match self {
            Extreme::MinStarted => "min(started_at)",
            Extreme::MaxRecorded => "max(recorded_at)",
            Extreme::MaxId => "max(id)",
        }
    }

    /// Rows in the order that meets each group's extreme first (a bounded scan of an index).
    fn scan(self) -> &'static str {
        match self {
            Extreme::MinStarted => {
                "SELECT job, status, started_at FROM logs INDEXED BY logs_by_started \
                 ORDER BY started_at LIMIT ?1"
            }
            Extreme::MaxRecorded => {
                "SELECT job, status, recorded_at FROM logs INDEXED BY logs_by_recorded \
                 ORDER BY recorded_at DESC LIMIT ?1"
            }
            Extreme::MaxId => "SELECT job, status, id FROM logs ORDER BY id DESC LIMIT ?1",
        }
    }
}

/// Subtracts what was deleted from `job_stats`, drops the groups left empty, and recomputes
/// the extremes a deleted row may have held.
fn update_job_stats(tx: &Connection, path: &Path, groups: HashMap<Group, Gone>) -> Result<()> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let mut read = tx
        .prepare_cached(
            "SELECT n, min_started, max_recorded, max_id FROM job_stats WHERE job = ?1 AND status = ?2",
        )
        .map_err(e("reading the job totals of"))?;
    let mut subtract = tx
        .prepare_cached(
            "UPDATE job_stats SET n = n - ?3, seen_hi = seen_hi - ?4, seen_lo = seen_lo - ?5, \
             written_hi = written_hi - ?6, written_lo = written_lo - ?7, \
             failed_hi = failed_hi - ?8, failed_lo = failed_lo - ?9 \
             WHERE job = ?1 AND status = ?2",
        )
        .map_err(e("updating the job totals of"))?;
    let mut drop_group = tx
        .prepare_cached("DELETE FROM job_stats WHERE job = ?1 AND status = ?2")
        .map_err(e("updating the job totals of"))?;
    // The groups (still holding records) whose extremes must be read again.
    let mut stale: HashMap<Extreme, Vec<Group>> = HashMap::new();
    for (key, gone) in groups {
        let stored: Option<(i64, Value, Value, Value)> = read
            .query_row([&key.0, &key.1], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(e("reading the job totals of"))?;
        // No row: the totals were already off (rows deleted behind the store's back with
        // the triggers dropped); nothing to subtract from.
        let Some((n, min_started, max_recorded, max_id)) = stored else {
            continue;
        };
        if n - gone.n <= 0 {
            drop_group
                .execute([&key.0, &key.1])
                .map_err(e("updating the job totals of"))?;
            continue;
        }
        let h = gone.halves;
        subtract
            .execute(rusqlite::params![
                key.0, key.1, gone.n, h[0], h[1], h[2], h[3], h[4], h[5]
            ])
            .map_err(e("updating the job totals of"))?;
        use std::cmp::Ordering::{Greater, Less};
        let touched = |deleted: &Option<Value>, stored: &Value, beyond: std::cmp::Ordering| {
            deleted
                .as_ref()
                .is_some_and(|d| cmp(d, stored) != beyond.reverse() || !matches!(stored, Value::Integer(_)))
        };
        if touched(&gone.min_started, &min_started, Less) {
            stale.entry(Extreme::MinStarted).or_default().push(key.clone());
        }
        if touched(&gone.max_recorded, &max_recorded, Greater) {
            stale.entry(Extreme::MaxRecorded).or_default().push(key.clone());
        }
        if touched(&gone.max_id, &max_id, Greater) {
            stale.entry(Extreme::MaxId).or_default().push(key);
        }
    }
    for extreme in Extreme::ALL {
        let Some(list) = stale.remove(&extreme) else {
            continue;
        };
        let found = recompute(tx, path, extreme, list)?;
        let mut set = tx
            .prepare_cached(&format!(
                "UPDATE job_stats SET {} = coalesce(?3, 0) WHERE job = ?1 AND status = ?2",
                extreme.column()
            ))
            .map_err(e("updating the job totals of"))?;
        for (key, value) in found {
            set.execute(rusqlite::params![key.0, key.1, value])
                .map_err(e("updating the job totals of"))?;
        }
    }
    Ok(())
}

/// The extreme of each group of `list` over the remaining records. First one bounded scan
/// of the index that meets the extremes first settles the groups common there; each group
/// left is read on its own, through the job's or the status's index, whichever holds fewer
/// records (their counts are in `job_stats`).
fn recompute(
    tx: &Connection,
    path: &Path,
    extreme: Extreme,
    list: Vec<Group>,
) -> Result<Vec<(Group, Value)>> {
    let e = |ctx: &'static str| move |err| map_err(path, ctx, err);
    let mut left: std::collections::HashSet<Group> = list.into_iter().collect();
    let mut found = Vec::with_capacity(left.len());
    {
        let mut scan = tx
            .prepare_cached(extreme.scan())
            .map_err(e("reading the job totals of"))?;
        let mut rows = scan
            .query([SHARED_SCAN_ROWS])
            .map_err(e("reading the job totals of"))?;
        while let Some(row) = rows.next().map_err(e("reading the job totals of"))? {
            let key: Group = (
                row.get(0).map_err(e("reading the job totals of"))?,
                row.get(1).map_err(e("reading the job totals of"))?,
            );
            if left.remove(&key) {
                found.push((key, row.get(2).map_err(e("reading the job totals of"))?));
                if left.is_empty() {
                    break;
                }
            }
        }
    }
    // Each group left is read through the job's or the status's index, whichever holds
    // fewer records; the groups sharing a job (or a status) are read in one pass of it.
    let mut by_job: HashMap<K, Vec<K>> = HashMap::new();
    let mut by_status: HashMap<K, Vec<K>> = HashMap::new();
    for (job, status) in left {
        let count = |column: &str, value: &K| -> Result<i64> {
            tx.prepare_cached(&format!(
                "SELECT coalesce(sum(n), 0) FROM job_stats WHERE {column} = ?1"
            ))
            .and_then(|mut s| s.query_row([value], |r| r.get(0)))
            .map_err(e("reading the job totals of"))
        };
        match count("job", &job)? <= count("status", &status)? {
            true => by_job.entry(job).or_default().push(status),
            false => by_status.entry(status).or_default().push(job),
        }
    }
    let passes = [
        ("logs_by_job", "job", "status", by_job, true),
        ("logs_by_status", "status", "job", by_status, false),
    ];
    for (index, fixed, other, buckets, job_first) in passes {
        let sql = format!(
            "SELECT {other}, {} FROM logs INDEXED BY {index} WHERE {fixed} = ?1 GROUP BY {other}",
            extreme.aggregate()
        );
        for (value, wanted) in buckets {
            let mut values: HashMap<K, Value> = HashMap::with_capacity(wanted.len());
            {
                let mut stmt = tx.prepare_cached(&sql).map_err(e("reading the job totals of"))?;
                let mut rows = stmt.query([&value]).map_err(e("reading the job totals of"))?;
                while let Some(row) = rows.next().map_err(e("reading the job totals of"))? {
                    values.insert(
                        row.get(0).map_err(e("reading the job totals of"))?,
                        row.get(1).map_err(e("reading the job totals of"))?,
                    );
                }
            }
            for w in wanted {
                // No row left: NULL, as the aggregate over no rows.
                let got = values.remove(&w).unwrap_or(Value::Null);
                let key = match job_first {
                    true => (value.clone(), w),
                    false => (w, value.clone()),
                };
                found.push((key, got));
            }
        }
    }
    Ok(found)
}
