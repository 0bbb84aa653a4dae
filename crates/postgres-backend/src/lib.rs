//! # synclog-postgres
//!
//! A [`LogStore`] over PostgreSQL, for logs written by many app instances on many machines.
//!
//! - **Schema**: created on first use, in a schema whose name is configurable
//!   ([`PgOptions::schema`], or `?synclog_schema=NAME` in the URL), versioned in its
//!   `meta` table ([`SCHEMA_VERSION`]). An older version is upgraded in place at open, in
//!   one transaction under the store's lock (PostgreSQL's DDL is transactional: a crash
//!   leaves it as it was); rows keep their data and checksums. A newer version is refused
//!   with [`Error::Unsupported`] naming both versions, and nothing is changed.
//! - **Runs and idempotency keys** ([`synclog_core::run`]): stored in `logs.run_key` and
//!   `logs.idempotency_key`, with a unique index on the key and one on `(run_key, id)`.
//!   A commit whose logs carry a key looks them up inside its transaction, after taking
//!   the store's lock, so the rules hold across processes; a commit without keys looks
//!   nothing up. A `runs` table (one row per run: its first and latest record, latest
//!   status, whether it ended, when it started), kept by triggers on `logs` in the same
//!   transaction as every insert, delete or update of a record with a run key, answers
//!   [`LogStore::runs`] from its indexes (by first id, by job, unfinished runs by first id
//!   and by start time). Imports and repairs keep the keys; an imported record whose
//!   idempotency key is stored under another id refuses the import
//!   ([`Error::IdempotencyConflict`], nothing written).
//! - **Queries** ([`synclog_core::query`]): [`LogStore::scan`], [`LogStore::runs`],
//!   [`LogStore::count`] and [`LogStore::summary`] answer every [`Filter`] field in SQL
//!   (schema version 3): indexes on `(job, id)`, `(status, id)`, `recorded_at`,
//!   `started_at`, `finished_at` and `(run_key, id)`; attribute equality through the
//!   `attrs` table (key, the value's canonical JSON text computed in Rust, id), written in
//!   the statement that inserts each record, so `1` and `1.0` differ exactly as
//!   [`Filter::matches`] says; counts and summaries of jobs and statuses from `job_stats`,
//!   per-(job, status) aggregates kept by statement triggers on every insert, delete and
//!   update (commit, import, repair, or SQL outside synclog). Queries are sent unnamed, so
//!   each is planned with its values (no generic plan), and paged by id both ways.
//! - **Following** ([`LogStore::commit_watch`]): this process's commits reach followers
//!   with their records through a [`CommitSignal`]; other processes' through LISTEN/NOTIFY
//!   on a channel named after the schema. The insert statement itself calls `pg_notify`
//!   (no extra round trip; delivered at commit); a listening connection is opened by the
//!   first watch and closed by [`LogStore::close`], which also ends the writer's
//!   connection and the pool.
//! - **Ids**: `id` is an identity column. synclog assigns each group's ids inside its
//!   transaction, after taking a transaction-scoped advisory lock, as one more than the
//!   larger of the stored maximum and a high-water mark kept in `meta` (raised in the same
//!   transaction). So ids are dense, commit order is id order across processes and
//!   machines, and a rolled-back or killed transaction leaves no gap. (Drawing ids with
//!   `nextval` would leave one: sequences are not transactional, and verify would report
//!   never-acknowledged ids as missing; the crash test found exactly that.) The identity
//!   sequence is kept ahead of every id for rows inserted outside synclog.
//! - **Durability** (`SET LOCAL synchronous_commit`): [`Durability::PowerLoss`] → `on`
//!   (the commit record is flushed, and synchronous standbys confirm, before COMMIT
//!   returns); [`Durability::Process`] → `local` (flushed on the primary only);
//!   [`Durability::Buffered`] → `off` (COMMIT may return before the flush; a server crash
//!   can lose the last transactions, never corrupt).
//! - **Group commit**: concurrent appends from one process share a transaction and one
//!   `INSERT … SELECT FROM UNNEST(…)`; each caller is answered after COMMIT.
//! - **Waits**: writers of one schema, in any number of processes, take their turn for ids
//!   under the store's advisory lock; each operation waits for it (and for any other lock
//!   it needs) at most [`PgOptions::lock_wait`] in all, then fails with a retryable
//!   [`Error::Busy`]. A connection the server does not complete within
//!   [`PgOptions::connect_timeout`] fails as [`Error::Io`] (`TimedOut`) naming the server's
//!   host and port; a connection the server refuses (a wrong role, password or database)
//!   fails with the server's message and SQLSTATE, e.g. `role "nope" does not exist (28000)`.
//! - **Connections**: the writer has a connection of its own, dropped and reopened after
//!   any error. Reads and verification use a pool, so verification never reads through the
//!   writer's connection.
//! - **Import** keeps ids with `OVERRIDING SYSTEM VALUE`, then moves the sequence past the
//!   largest id.
//! - **Passwords** never appear in messages: stores describe themselves with
//!   [`synclog_core::redact_url`].
//!
//! TLS is not configured (`NoTls`): use it on a trusted network or through a local proxy.
#![deny(missing_docs)]

mod connect;
mod filters;
mod listen;
#[cfg(test)]
mod plans;
mod sql;
mod summary;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls, Row};

use synclog_core::follow::CommitSignal;
use synclog_core::group::Gathering;
use synclog_core::query::{Filter, Summary};
use synclog_core::retention::{check_marker, chunk_ranges, Applied, PruneMarker, Pruned};
use synclog_core::run::{seal_batch, Fetched, Planner, RunEnds};
use synclog_core::verify::Verifier;
use synclog_core::{
    redact_url, validate::validate_batch, validate::validate_records, Attrs, Capabilities, Checksum,
    Committed, Durability, Error, IdRange, ImportReport, LogId, LogRecord, LogStore, NewLog, Result, Run,
    RunScan, Scan, Status, VerifyOptions, VerifyReport,
};

use connect::{pg_err, server_of, Endpoint, LockTimeout};
use listen::Listener;
use sql::Sql;
use synclog_core::deadline::Deadline;

/// The schema version this build creates (and upgrades older ones to), kept in `meta`.
/// Version 2 added run and idempotency keys and the `runs` table; version 3 the indexes
/// of queries, the attribute table and per-job aggregates; version 4 the prune markers
/// (see the `sql` module).
pub const SCHEMA_VERSION: i64 = 4;

/// At most this many ids are deleted per transaction of a prune, so writers (of this
/// process and others) wait behind one chunk at most, not the whole prune.
pub const PRUNE_CHUNK_IDS: u64 = 50_000;

/// Tuning of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The schema holding synclog's tables: letters, digits and `_`, starting with a
    /// letter or `_`, at most 63 bytes.
    pub schema: String,
    /// Connections in the read pool.
    pub pool_size: usize,
    /// Most logs in one transaction.
    pub max_group_logs: usize,
    /// How long one operation (a commit, an import, a sync, creating the schema) waits in
    /// all for locks other writers hold (the store's advisory lock, table locks) before
    /// failing with a retryable [`Error::Busy`]. Writers of one schema take turns within it.
    pub lock_wait: Duration,
    /// How long opening a connection (TCP and the server's answer to the startup) may take
    /// before failing with an [`Error::Io`] of kind `TimedOut` naming the server.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "synclog".into(),
            pool_size: 8,
            max_group_logs: 8192,
            lock_wait: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

fn check_schema_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "schema",
            format!("{name:?} is not a plain identifier (letters, digits, _; at most 63 bytes)"),
        ))
    }
}

/// Splits `?synclog_schema=NAME` off a URL (libpq does not know the parameter).
pub fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut schema = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("synclog_schema=") {
            Some(v) => {
                schema = Some(v.to_string());
                false
            }
            None => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, schema)
}

fn decode(row: &Row, store: &str) -> Result<LogRecord> {
    let e = |err| pg_err(store, "decoding a row of", err);
    let id: i64 = row.try_get(0).map_err(e)?;
    let bad = |what: String| Error::corrupt(format!("{store} log {id}"), what);
    let unsigned = |i: usize| -> Result<u64> {
        let v: i64 = row.try_get(i).map_err(e)?;
        u64::try_from(v).map_err(|_| bad(format!("negative counter {v}")))
    };
    let status: String = row.try_get(3).map_err(e)?;
    Ok(LogRecord {
        id: LogId::new(id as u64).ok_or_else(|| bad("invalid id".into()))?,
        recorded_at: row.try_get(1).map_err(e)?,
        job: row.try_get(2).map_err(e)?,
        status: status
            .parse::<Status>()
            .map_err(|_| bad(format!("unknown status {status:?}")))?,
        started_at: row.try_get(4).map_err(e)?,
        finished_at: row.try_get(5).map_err(e)?,
        items_seen: unsigned(6)?,
        items_written: unsigned(7)?,
        items_failed: unsigned(8)?,
        message: row.try_get(9).map_err(e)?,
        attrs: Attrs::from_stored(row.try_get(10).map_err(e)?),
        checksum: Checksum(row.try_get::<_, i64>(11).map_err(e)? as u32),
        run: row.try_get(12).map_err(e)?,
        idempotency_key: row.try_get(13).map_err(e)?,
    })
}

/// A row of a runs query (see `Sql::runs_head`) as [`Run::from_records`] would make it
/// from the run's records.
fn decode_run(row: &Row, store: &str) -> Result<Run> {
    let e = |err| pg_err(store, "decoding a run of", err);
    let key: String = row.try_get(0).map_err(e)?;
    let bad = |what: String| Error::corrupt(format!("{store} run {key:?}"), what);
    let unsigned = |i: usize| -> Result<u64> {
        let v: i64 = row.try_get(i).map_err(e)?;
        u64::try_from(v).map_err(|_| bad(format!("negative counter {v}")))
    };
    let status: String = row.try_get(2).map_err(e)?;
    let status = status
        .parse::<Status>()
        .map_err(|_| bad(format!("unknown status {status:?}")))?;
    let started_at: DateTime<Utc> = row.try_get(3).map_err(e)?;
    let finished = status.is_terminal();
    let finished_at = match finished {
        true => {
            let at: Option<DateTime<Utc>> = row.try_get(4).map_err(e)?;
            Some(match at {
                Some(at) => at,
                None => row.try_get(5).map_err(e)?,
            })
        }
        false => None,
    };
    let ids: Vec<i64> = row.try_get(10).map_err(e)?;
    let record_ids = ids
        .into_iter()
        .map(|i| LogId::new(i as u64).ok_or_else(|| bad(format!("invalid id {i}"))))
        .collect::<Result<Vec<_>>>()?;
    if record_ids.is_empty() {
        return Err(bad("no records".into()));
    }
    Ok(Run {
        job: row.try_get(1).map_err(e)?,
        status,
        finished,
        started_at,
        finished_at,
        duration_ms: finished_at.map(|f| (f - started_at).num_milliseconds()),
        items_seen: unsigned(6)?,
        items_written: unsigned(7)?,
        items_failed: unsigned(8)?,
        message: row.try_get(9).map_err(e)?,
        record_ids,
        key,
    })
}

/// The arrays of one `UNNEST` insert.
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    recorded_at: Vec<DateTime<Utc>>,
    job: Vec<String>,
    status: Vec<&'static str>,
    started_at: Vec<DateTime<Utc>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
    seen: Vec<i64>,
    written: Vec<i64>,
    failed: Vec<i64>,
    message: Vec<String>,
    attrs: Vec<String>,
    checksum: Vec<i64>,
    run: Vec<Option<String>>,
    idempotency_key: Vec<Option<String>>,
    /// The `attrs` rows of the records: id, key, canonical value text.
    attr_id: Vec<i64>,
    attr_key: Vec<String>,
    attr_value: Vec<String>,
}

impl Columns {
    fn of(records: &[LogRecord]) -> Columns {
        let mut c = Columns::default();
        for r in records {
            c.id.push(r.id.get() as i64);
            c.recorded_at.push(r.recorded_at);
            c.job.push(r.job.clone());
            c.status.push(r.status.as_str());
            c.started_at.push(r.started_at);
            c.finished_at.push(r.finished_at);
            c.seen.push(r.items_seen as i64);
            c.written.push(r.items_written as i64);
            c.failed.push(r.items_failed as i64);
            c.message.push(r.message.clone());
            c.attrs.push(r.attrs.as_str().to_string());
            c.checksum.push(r.checksum.0 as i64);
            c.run.push(r.run.clone());
            c.idempotency_key.push(r.idempotency_key.clone());
            for (k, v) in synclog_core::query::attr_entries(r.attrs.as_str()) {
                c.attr_id.push(r.id.get() as i64);
                c.attr_key.push(k);
                c.attr_value.push(v);
            }
        }
        c
    }

    /// The arrays of the `attrs` rows.
    fn attr_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 3] {
        [&self.attr_id, &self.attr_key, &self.attr_value]
    }

    /// Every parameter of the import statement: the columns, then the `attrs` rows.
    fn import_params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        let mut p = self.params().to_vec();
        p.extend(self.attr_params());
        p
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 14] {
        [
            &self.id,
            &self.recorded_at,
            &self.job,
            &self.status,
            &self.started_at,
            &self.finished_at,
            &self.seen,
            &self.written,
            &self.failed,
            &self.message,
            &self.attrs,
            &self.checksum,
            &self.run,
            &self.idempotency_key,
        ]
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Job {
    Commit {
        logs: Vec<NewLog>,
        durability: Durability,
        seq: u64,
        reply: Reply<Committed>,
    },
    Import {
        records: Vec<LogRecord>,
        durability: Durability,
        reply: Reply<ImportReport>,
    },
    Sync {
        level: Durability,
        reply: Reply<()>,
    },
    Repair {
        records: Vec<LogRecord>,
        durability: Durability,
        reply: Reply<ImportReport>,
    },
    /// One transaction of a prune: with `first`, the marker and the high-water mark;
    /// then the deletion of `ranges` (at most [`PRUNE_CHUNK_IDS`] ids).
    Prune {
        marker: Box<PruneMarker>,
        first: bool,
        ranges: Vec<IdRange>,
        durability: Durability,
        reply: Reply<Applied>,
    },
    /// Ends the writer: its connection is closed, later jobs are refused.
    Close {
        reply: Reply<()>,
    },
}

/// The writer task: one connection, one transaction per group.
struct Writer {
    endpoint: Endpoint,
    client: Option<Client>,
    sql: Arc<Sql>,
    store: String,
    lock_key: i64,
    /// How long one operation waits for other writers' locks.
    lock_wait: Duration,
    /// The id this writer expects to assign next (None: read it from the database).
    expected_next: Option<i64>,
    /// The group insert, prepared on the current connection.
    insert: Option<tokio_postgres::Statement>,
    /// The lookups of a keyed group, prepared on the current connection.
    lookups: Option<Lookups>,
    submitted: Arc<AtomicU64>,
    gathering: Gathering,
    max_group_logs: usize,
    stats: Arc<Stats>,
    /// Raised to the last id of each acknowledged commit, import and repair.
    signal: CommitSignal,
    /// The prune markers read so far (they are only ever added, under the store's lock)
    /// and the last sequence number read: what imports and repairs skip.
    markers: Markers,
}

/// The prune markers a writer has read, in sequence order.
#[derive(Default)]
struct Markers {
    seq: i64,
    markers: Vec<PruneMarker>,
    pruned: Pruned,
}

/// Decodes a row of `markers_after` (`seq`, `body`).
fn decode_marker(row: &Row, store: &str) -> Result<(i64, PruneMarker)> {
    let e = |err| pg_err(store, "decoding a prune marker of", err);
    let seq: i64 = row.try_get(0).map_err(e)?;
    let body: String = row.try_get(1).map_err(e)?;
    let marker = PruneMarker::decode(&body, &format!("{store} prune marker {seq}"))?;
    Ok((seq, marker))
}

/// The markers of rows of `markers_after`, each decoded or the reason it is not.
fn decode_markers(rows: &[Row], store: &str) -> Vec<Result<PruneMarker>> {
    rows.iter()
        .map(|r| decode_marker(r, store).map(|(_, m)| m))
        .collect()
}

/// What a group with run or idempotency keys reads under the store's lock, prepared.
#[derive(Clone)]
struct Lookups {
    next_id: tokio_postgres::Statement,
    by_idempotency_keys: tokio_postgres::Statement,
    run_ends: tokio_postgres::Statement,
}

/// What each batch of a group came to: its records, or the error of a batch the rules of
/// runs and idempotency keys refused (nothing of it written).
type Outcomes = Vec<Result<Committed>>;

/// Counters of a [`PgStore`].
#[derive(Debug, Default)]
struct Stats {
    groups: AtomicU64,
    logs: AtomicU64,
    connects: AtomicU64,
}

/// The most times the writer yields for answered callers to come back before a group.
const MAX_GATHER_YIELDS: u32 = 64;

/// The `synchronous_commit` setting a transaction at `d` runs with (see the crate docs).
pub fn synchronous_commit_for(d: Durability) -> &'static str {
    match d {
        Durability::PowerLoss => "on",
        Durability::Process => "local",
        Durability::Buffered => "off",
    }
}

impl Writer {
    async fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            let client = self.endpoint.connect("connecting the writer to").await?;
            self.stats.connects.fetch_add(1, Ordering::Relaxed);
            self.client = Some(client);
        }
        let store = self.store.clone();
        self.client.as_mut().ok_or(Error::Closed { store })
    }

    /// Runs `op` and drops the connection if it failed (the next call opens a fresh one).
    fn settle<R>(&mut self, result: Result<R>) -> Result<R> {
        if result.is_err() {
            self.client = None;
            self.insert = None;
            self.lookups = None;
            self.expected_next = None;
        }
        result
    }

    async fn commit_group(&mut self, batches: &[Vec<NewLog>], durability: Durability) -> Result<Outcomes> {
        let deadline = Deadline::after(self.lock_wait);
        let r = if Planner::any_keys(batches.iter().map(Vec::as_slice)) {
            self.insert_keyed_group(batches, durability, deadline).await
        } else {
            self.try_commit_group(batches, durability, deadline)
                .await
                .map(|out| out.into_iter().map(|recs| Ok(Committed::fresh(recs))).collect())
        };
        self.settle(r)
    }

    /// A group whose logs carry no run or idempotency key: every log is new, nothing is
    /// looked up.
    async fn try_commit_group(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        deadline: Deadline,
    ) -> Result<Vec<Vec<LogRecord>>> {
        // First with the next id this writer expects, pipelined into one round trip; if
        // another process wrote since, the guard inserts nothing and nothing is lost. (The
        // insert was prepared along with that id, inside a transaction bounded by its wait.)
        if let (Some(first), Some(_)) = (self.expected_next, &self.insert) {
            if let Some(out) = self.insert_group(batches, durability, first, deadline).await? {
                return Ok(out);
            }
        }
        // Then in turn with the other writers: the next id is read under the store's lock.
        self.insert_group_in_turn(batches, durability, deadline).await
    }

    /// The group insert, prepared on the current connection. Preparing it takes a lock on
    /// the table: do it inside a transaction whose lock_timeout bounds the wait.
    async fn prepared_insert(&mut self) -> Result<tokio_postgres::Statement> {
        if let Some(stmt) = &self.insert {
            return Ok(stmt.clone());
        }
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let stmt = self
            .client()
            .await?
            .prepare(&sql.insert)
            .await
            .map_err(|e| pg_err(&store, "preparing the insert on", e))?;
        self.insert = Some(stmt.clone());
        Ok(stmt)
    }

    /// The statements of a keyed group, prepared on the current connection (inside a
    /// transaction bounded by its wait, as preparing takes locks).
    async fn prepared_lookups(&mut self) -> Result<Lookups> {
        if let Some(l) = &self.lookups {
            return Ok(l.clone());
        }
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let client = self.client().await?;
        let prep = |text: &'static str, q: String| {
            let store = store.clone();
            let client = &*client;
            async move {
                client
                    .prepare(&q)
                    .await
                    .map_err(|e| pg_err(&store, &format!("preparing the {text} of"), e))
            }
        };
        let (next_id, by_keys, run_ends) = tokio::join!(
            prep("next id", sql.next_id.clone()),
            prep("idempotency lookup", sql.by_idempotency_keys.clone()),
            prep("run lookup", sql.run_ends.clone())
        );
        let l = Lookups {
            next_id: next_id?,
            by_idempotency_keys: by_keys?,
            run_ends: run_ends?,
        };
        self.lookups = Some(l.clone());
        Ok(l)
    }

    /// A group where some log carries a run or idempotency key, in one transaction: the
    /// store's lock (so the rules hold across processes), the next id and every key the
    /// group names looked up under it, each batch planned and sealed (a refused batch gets
    /// its error and spends no id), the new records inserted, commit.
    async fn insert_keyed_group(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        deadline: Deadline,
    ) -> Result<Outcomes> {
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let begin = self.begin_sql(durability, deadline);
        let wanted = Planner::wanted(batches.iter().map(Vec::as_slice));
        // Once the statements are prepared, the lock and the lookups go in one round trip
        // (the server runs them in order: the lookups see every commit made before the lock).
        let prepared = self.insert.is_some() && self.lookups.is_some();
        if !prepared {
            self.client()
                .await?
                .batch_execute(&begin)
                .await
                .map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        }
        let stmt = self.prepared_insert().await?;
        let lookups = self.prepared_lookups().await?;
        let client = self.client().await?;
        let (began, next, by_key, ends) = tokio::join!(
            async {
                match prepared {
                    true => client.batch_execute(&begin).await,
                    false => Ok(()),
                }
            },
            client.query_one(&lookups.next_id, &[]),
            async {
                match wanted.idempotent.is_empty() {
                    true => Ok(Vec::new()),
                    false => {
                        client
                            .query(&lookups.by_idempotency_keys, &[&wanted.idempotent])
                            .await
                    }
                }
            },
            async {
                match wanted.runs.is_empty() {
                    true => Ok(Vec::new()),
                    false => client.query(&lookups.run_ends, &[&wanted.runs]).await,
                }
            }
        );
        began.map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        let first: i64 = next
            .map_err(|e| pg_err(&store, "reading the next id of", e))?
            .get(0);
        let mut keys = Fetched::default();
        for row in by_key.map_err(|e| pg_err(&store, "looking up idempotency keys in", e))? {
            let rec = decode(&row, &store)?;
            if let Some(k) = rec.idempotency_key.clone() {
                keys.idempotent.insert(k, rec);
            }
        }
        for row in ends.map_err(|e| pg_err(&store, "looking up runs in", e))? {
            let rec = decode(&row, &store)?;
            let Some(run) = rec.run.clone() else { continue };
            match keys.runs.get_mut(&run) {
                Some(ends) if rec.id < ends.first.id => ends.first = rec,
                Some(ends) if rec.id > ends.last.id => ends.last = rec,
                Some(_) => {}
                None => {
                    keys.runs.insert(
                        run,
                        RunEnds {
                            first: rec.clone(),
                            last: rec,
                        },
                    );
                }
            }
        }
        let now = Utc::now();
        let mut next = first;
        let mut planner = Planner::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut all = Vec::new();
        for batch in batches {
            let outcome = seal_batch(&mut planner, batch, &mut keys, &mut |log| {
                let id = LogId::new(next as u64).ok_or_else(|| Error::corrupt(&store, "invalid next id"))?;
                next += 1;
                LogRecord::seal_ref(id, now, log)
            })?;
            if let Ok(done) = &outcome {
                all.extend(done.new_records().cloned());
            }
            outcomes.push(outcome);
        }
        if all.is_empty() {
            // Only repeats (or refusals): nothing to insert. A repeat answers for a record
            // another transaction committed, maybe at a weaker level: a write here makes
            // this commit's flush cover it.
            let repeats = outcomes
                .iter()
                .any(|o| o.as_ref().is_ok_and(|c| !c.records.is_empty()));
            if repeats && durability > Durability::Buffered {
                client
                    .execute(&sql.sync, &[])
                    .await
                    .map_err(|e| pg_err(&store, "syncing", e))?;
            }
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| pg_err(&store, "committing to", e))?;
            self.expected_next = Some(first);
            return Ok(outcomes);
        }
        insert_and_commit(client, &stmt, &all, first, &store).await?;
        self.expected_next = Some(next);
        Ok(outcomes)
    }

    /// `BEGIN` at `durability`, then the store's advisory lock, waited for until `deadline`.
    /// Read committed (whatever the server's default): each statement after the lock sees
    /// every transaction that held it before.
    fn begin_sql(&self, durability: Durability, deadline: Deadline) -> String {
        format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = {}; {}; \
             SELECT pg_advisory_xact_lock({})",
            synchronous_commit_for(durability),
            deadline.set_lock_timeout(),
            self.lock_key
        )
    }

    /// One transaction: lock, guarded insert of the group with ids from `first`, commit;
    /// sent as a pipeline. `None` when the guard found the ids taken (nothing written).
    async fn insert_group(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        first: i64,
        deadline: Deadline,
    ) -> Result<Option<Vec<Vec<LogRecord>>>> {
        let store = self.store.clone();
        let (out, all, next) = seal_group(batches, first, &store)?;
        let cols = Columns::of(&all);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols.params().to_vec();
        params.push(&first);
        params.extend(cols.attr_params());
        let begin = self.begin_sql(durability, deadline);
        let stmt = self
            .insert
            .clone()
            .ok_or_else(|| Error::Closed { store: store.clone() })?;
        let client = self.client().await?;
        let (began, inserted, committed) = tokio::join!(
            client.batch_execute(&begin),
            client.query_one(&stmt, &params),
            client.batch_execute("COMMIT")
        );
        began.map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        // If the insert failed, the pipelined COMMIT only ended an aborted transaction.
        let row = inserted.map_err(|e| pg_err(&store, "inserting into", e))?;
        committed.map_err(|e| pg_err(&store, "committing to", e))?;
        let n: i64 = row.get(0);
        if n == 0 {
            self.expected_next = None;
            return Ok(None);
        }
        if n as usize != all.len() {
            return Err(Error::corrupt(
                store,
                format!("inserted {n} of {} rows", all.len()),
            ));
        }
        self.expected_next = Some(next);
        Ok(Some(out))
    }

    /// One transaction that takes the store's lock first (waiting its turn until
    /// `deadline`), reads the next id under it, then inserts and commits: no other synclog
    /// writer can take those ids in between.
    async fn insert_group_in_turn(
        &mut self,
        batches: &[Vec<NewLog>],
        durability: Durability,
        deadline: Deadline,
    ) -> Result<Vec<Vec<LogRecord>>> {
        let (store, sql) = (self.store.clone(), self.sql.clone());
        let begin = self.begin_sql(durability, deadline);
        self.client()
            .await?
            .batch_execute(&begin)
            .await
            .map_err(|e| pg_err(&store, "waiting for the store's lock on", e))?;
        let stmt = self.prepared_insert().await?;
        let client = self.client().await?;
        let first: i64 = client
            .query_one(&sql.next_id, &[])
            .await
            .map_err(|e| pg_err(&store, "reading the next id of", e))?
            .get(0);
        let (out, all, next) = seal_group(batches, first, &store)?;
        insert_and_commit(client, &stmt, &all, first, &store).await?;
        self.expected_next = Some(next);
        Ok(out)
    }

    async fn import(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        let r = self.try_import(records, durability).await;
        self.settle(r)
    }

    async fn repair(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        let r = self.try_repair(records, durability).await;
        self.settle(r)
    }

    /// In one transaction under the store's lock: reads the stored rows of the offered ids,
    /// deletes those that are damaged (undecodable, or fields that no longer give their
    /// checksum), and inserts the offered records that are not stored intact.
    async fn try_repair(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.expected_next = None;
        offered_keys_are_unique(&records)?;
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        // Taken out while the connection is borrowed; an error leaves them to be read
        // again from the start.
        let mut markers = std::mem::take(&mut self.markers);
        let client = self.client().await?;
        let tx = begin(client, durability, lock, deadline, &store).await?;
        Self::refresh_markers(&mut markers, &tx, &sql, &store).await?;
        let pruned = &markers.pruned;
        let before = records.len();
        let records: Vec<LogRecord> = records.into_iter().filter(|r| !pruned.contains(r.id)).collect();
        let skipped = (before - records.len()) as u64;
        let ids: Vec<i64> = records.iter().map(|r| r.id.get() as i64).collect();
        let rows = tx
            .query(
                &format!("SELECT {} FROM {} WHERE id = ANY($1)", sql::COLUMNS, sql.table),
                &[&ids],
            )
            .await
            .map_err(|e| pg_err(&store, "reading the records to repair in", e))?;
        let mut intact: HashMap<i64, Checksum> = HashMap::new();
        let mut damaged: Vec<i64> = Vec::new();
        for row in &rows {
            let id: i64 = row.get(0);
            match decode(row, &store) {
                Ok(rec) if rec.is_intact() => {
                    intact.insert(id, rec.checksum);
                }
                _ => damaged.push(id),
            }
        }
        if !damaged.is_empty() {
            tx.execute(
                &format!("DELETE FROM {} WHERE id = ANY($1)", sql.table),
                &[&damaged],
            )
            .await
            .map_err(|e| pg_err(&store, "removing damaged records from", e))?;
        }
        let fresh: Vec<LogRecord> = records
            .iter()
            .filter(|r| !intact.contains_key(&(r.id.get() as i64)))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            let cols = Columns::of(&fresh);
            let inserted: HashSet<i64> = tx
                .query(&sql.import, &cols.import_params())
                .await
                .map_err(|e| pg_err(&store, "repairing", e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let left: Vec<&LogRecord> = fresh
                .iter()
                .filter(|r| !inserted.contains(&(r.id.get() as i64)))
                .collect();
            // Returning drops the transaction: nothing of the repair is written.
            key_held_elsewhere(&tx, &sql, &store, &left).await?;
        }
        let damaged: std::collections::HashSet<i64> = damaged.into_iter().collect();
        let mut report = ImportReport {
            pruned: skipped,
            ..ImportReport::default()
        };
        for rec in &records {
            let id = rec.id.get() as i64;
            match intact.get(&id) {
                Some(&stored) => report.note_existing(rec.id, stored, rec.checksum),
                None if damaged.contains(&id) => report.replaced += 1,
                None => report.inserted += 1,
            }
        }
        tx.commit()
            .await
            .map_err(|e| pg_err(&store, "committing to", e))?;
        self.markers = markers;
        if let Some(last) = records.iter().map(|r| r.id).max() {
            self.signal.committed(last);
        }
        Ok(report)
    }

    /// In one transaction under the store's lock: inserts the records whose ids are free,
    /// then compares the others' checksums with the stored ones. A record whose idempotency
    /// key is stored under another id refuses the whole import (nothing is written).
    async fn try_import(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.expected_next = None;
        offered_keys_are_unique(&records)?;
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        // Taken out while the connection is borrowed; an error leaves them to be read
        // again from the start.
        let mut markers = std::mem::take(&mut self.markers);
        let client = self.client().await?;
        let tx = begin(client, durability, lock, deadline, &store).await?;
        Self::refresh_markers(&mut markers, &tx, &sql, &store).await?;
        let pruned = &markers.pruned;
        let before = records.len();
        let records: Vec<LogRecord> = records.into_iter().filter(|r| !pruned.contains(r.id)).collect();
        let skipped = (before - records.len()) as u64;
        let cols = Columns::of(&records);
        let inserted: HashSet<i64> = tx
            .query(&sql.import, &cols.import_params())
            .await
            .map_err(|e| pg_err(&store, "importing into", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut report = ImportReport {
            inserted: inserted.len() as u64,
            pruned: skipped,
            ..ImportReport::default()
        };
        let others: Vec<i64> = records
            .iter()
            .map(|r| r.id.get() as i64)
            .filter(|i| !inserted.contains(i))
            .collect();
        if !others.is_empty() {
            let stored: HashMap<i64, i64> = tx
                .query(&sql.checksums_of, &[&others])
                .await
                .map_err(|e| pg_err(&store, "reading checksums of", e))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            // Neither inserted nor stored under its id: its idempotency key is stored under
            // another id (the only other unique index).
            let blocked: Vec<&LogRecord> = records
                .iter()
                .filter(|r| {
                    let id = r.id.get() as i64;
                    !inserted.contains(&id) && !stored.contains_key(&id)
                })
                .collect();
            key_held_elsewhere(&tx, &sql, &store, &blocked).await?;
            for rec in records
                .iter()
                .filter(|r| !inserted.contains(&(r.id.get() as i64)))
            {
                let stored = Checksum(stored.get(&(rec.id.get() as i64)).copied().unwrap_or(-1) as u32);
                report.note_existing(rec.id, stored, rec.checksum);
            }
        }
        tx.commit()
            .await
            .map_err(|e| pg_err(&store, "committing to", e))?;
        self.markers = markers;
        if let Some(last) = inserted.iter().max().and_then(|&i| LogId::new(i as u64)) {
            self.signal.committed(last);
        }
        Ok(report)
    }

    /// Reads the markers stored since the last read (inside `tx`, under the store's lock):
    /// the ids they cover.
    async fn refresh_markers(
        markers: &mut Markers,
        tx: &tokio_postgres::Transaction<'_>,
        sql: &Sql,
        store: &str,
    ) -> Result<()> {
        let rows = tx
            .query(&sql.markers_after, &[&markers.seq])
            .await
            .map_err(|e| pg_err(store, "reading the prune markers of", e))?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            let (seq, marker) = decode_marker(row, store)?;
            markers.seq = markers.seq.max(seq);
            markers.markers.push(marker);
        }
        markers.pruned = Pruned::of(&markers.markers);
        Ok(())
    }

    async fn apply_prune(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        ranges: &[IdRange],
        durability: Durability,
    ) -> Result<Applied> {
        let r = self.try_apply_prune(marker, first, ranges, durability).await;
        self.settle(r)
    }

    /// One transaction under the store's lock: with `first`, stores the marker unless a
    /// marker with its digest is stored and raises the high-water mark to its last id;
    /// then deletes the records of `ranges` (the triggers drop their `attrs` rows and make
    /// their `job_stats` and `runs` rows again).
    async fn try_apply_prune(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        ranges: &[IdRange],
        durability: Durability,
    ) -> Result<Applied> {
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        let client = self.client().await?;
        let tx = begin(client, durability, lock, deadline, &store).await?;
        let mut stored = 1;
        let top = marker.last_id().map(|l| l.get() as i64);
        if first {
            stored = tx
                .execute(&sql.marker_insert, &[&marker.digest, &marker.encode()])
                .await
                .map_err(|e| pg_err(&store, "storing a prune marker in", e))?;
            if let Some(top) = top {
                tx.query(&sql.raise_high_water, &[&top])
                    .await
                    .map_err(|e| pg_err(&store, "raising the high-water mark of", e))?;
            }
        }
        let firsts: Vec<i64> = ranges.iter().map(|r| r.first.get() as i64).collect();
        let lasts: Vec<i64> = ranges.iter().map(|r| r.last.get() as i64).collect();
        let deleted = tx
            .execute(&sql.prune_delete, &[&firsts, &lasts])
            .await
            .map_err(|e| pg_err(&store, "deleting pruned records from", e))?;
        tx.commit()
            .await
            .map_err(|e| pg_err(&store, "committing to", e))?;
        if let (Some(top), Some(next)) = (top, self.expected_next) {
            if next <= top {
                self.expected_next = None;
            }
        }
        Ok(Applied {
            deleted,
            already_marked: stored == 0,
        })
    }

    async fn sync(&mut self, level: Durability) -> Result<()> {
        let r = self.try_sync(level).await;
        self.settle(r)
    }

    /// A write transaction at `level`: its commit record's flush covers all earlier WAL.
    async fn try_sync(&mut self, level: Durability) -> Result<()> {
        let (store, sql, lock) = (self.store.clone(), self.sql.clone(), self.lock_key);
        let deadline = Deadline::after(self.lock_wait);
        let client = self.client().await?;
        let tx = begin(client, level, lock, deadline, &store).await?;
        tx.execute(&sql.sync, &[])
            .await
            .map_err(|e| pg_err(&store, "syncing", e))?;
        tx.commit().await.map_err(|e| pg_err(&store, "committing to", e))
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let mut deferred: Option<Job> = None;
        loop {
            let job = match deferred.take() {
                Some(j) => j,
                None => match rx.recv().await {
                    Some(j) => j,
                    None => return,
                },
            };
            match job {
                Job::Commit {
                    logs,
                    durability,
                    seq,
                    reply,
                } => {
                    self.gathering.start(seq);
                    let mut durability = durability;
                    let mut total = logs.len();
                    let mut group = vec![(logs, reply)];
                    let mut yields = 0;
                    while total < self.max_group_logs {
                        match rx.try_recv() {
                            Ok(Job::Commit {
                                logs,
                                durability: d,
                                seq,
                                reply,
                            }) => {
                                self.gathering.join(seq);
                                durability = durability.max(d);
                                total += logs.len();
                                group.push((logs, reply));
                            }
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) if self.gathering.waiting_for_more() && yields < MAX_GATHER_YIELDS => {
                                yields += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(_) => break,
                        }
                    }
                    let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                    let result = self.commit_group(&batches, durability).await;
                    self.gathering
                        .answering(replies.len(), self.submitted.load(Ordering::Relaxed));
                    match result {
                        Ok(outcomes) => {
                            let written: usize = outcomes
                                .iter()
                                .map(|o| o.as_ref().map_or(0, Committed::written))
                                .sum();
                            self.stats.groups.fetch_add(1, Ordering::Relaxed);
                            self.stats.logs.fetch_add(written as u64, Ordering::Relaxed);
                            self.signal.committed_records(
                                outcomes
                                    .iter()
                                    .filter_map(|o| o.as_ref().ok())
                                    .flat_map(Committed::new_records),
                            );
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(outcome);
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.replicate()));
                            }
                        }
                    }
                }
                Job::Import {
                    records,
                    durability,
                    reply,
                } => {
                    let _ = reply.send(self.import(records, durability).await);
                }
                Job::Sync { level, reply } => {
                    let _ = reply.send(self.sync(level).await);
                }
                Job::Repair {
                    records,
                    durability,
                    reply,
                } => {
                    let _ = reply.send(self.repair(records, durability).await);
                }
                Job::Prune {
                    marker,
                    first,
                    ranges,
                    durability,
                    reply,
                } => {
                    let _ = reply.send(self.apply_prune(&marker, first, &ranges, durability).await);
                }
                Job::Close { reply } => {
                    self.client = None;
                    let _ = reply.send(Ok(()));
                    return;
                }
            }
        }
    }
}

/// Begins a transaction at `durability` holding the store's advisory lock, waiting for it
/// (and for every lock the transaction takes) until `deadline`.
async fn begin<'a>(
    client: &'a mut Client,
    durability: Durability,
    lock: i64,
    deadline: Deadline,
    store: &str,
) -> Result<tokio_postgres::Transaction<'a>> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(|e| pg_err(store, "beginning a transaction on", e))?;
    tx.batch_execute(&format!(
        "SET LOCAL synchronous_commit = {}; {}; SELECT pg_advisory_xact_lock({lock})",
        synchronous_commit_for(durability),
        deadline.set_lock_timeout()
    ))
    .await
    .map_err(|e| pg_err(store, "waiting for the store's lock on", e))?;
    Ok(tx)
}

/// Refuses records offered for import that give one idempotency key to different ids
/// (the store keeps each key once).
fn offered_keys_are_unique(records: &[LogRecord]) -> Result<()> {
    let mut seen: HashMap<&str, LogId> = HashMap::new();
    for (i, rec) in records.iter().enumerate() {
        let Some(key) = rec.idempotency_key.as_deref() else {
            continue;
        };
        match seen.insert(key, rec.id) {
            Some(other) if other != rec.id => {
                return Err(Error::invalid(
                    "idempotency_key",
                    format!("{key:?} is given to logs {other} and {}", rec.id),
                )
                .at_index(i))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error for the first of `records` (offered, not inserted) whose idempotency key is
/// stored under another id, if any.
async fn key_held_elsewhere(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &Sql,
    store: &str,
    records: &[&LogRecord],
) -> Result<()> {
    for rec in records {
        let Some(key) = &rec.idempotency_key else { continue };
        let holder = tx
            .query_opt(&sql.by_idempotency_key, &[key])
            .await
            .map_err(|e| pg_err(store, "looking up an idempotency key in", e))?;
        if let Some(row) = holder {
            let stored = decode(&row, store)?.id;
            if stored != rec.id {
                return Err(Error::IdempotencyConflict {
                    key: key.clone(),
                    stored,
                });
            }
        }
    }
    Ok(())
}

/// Seals a group's logs with ids from `first`: the records per batch, all of them, and the
/// id after the last.
/// Inserts `all` (ids from `first` on) and commits, in one round trip, inside a
/// transaction that holds the store's lock. Fewer rows than offered means that a writer
/// that does not take the lock (not synclog) took some of those ids: the transaction wrote
/// nothing, and the error is retryable.
async fn insert_and_commit(
    client: &Client,
    stmt: &tokio_postgres::Statement,
    all: &[LogRecord],
    first: i64,
    store: &str,
) -> Result<()> {
    let cols = Columns::of(all);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols.params().to_vec();
    params.push(&first);
    params.extend(cols.attr_params());
    let (inserted, committed) = tokio::join!(client.query_one(stmt, &params), client.batch_execute("COMMIT"));
    let row = inserted.map_err(|e| pg_err(store, "inserting into", e))?;
    committed.map_err(|e| pg_err(store, "committing to", e))?;
    let n: i64 = row.get(0);
    if n as usize != all.len() {
        return Err(Error::Busy {
            resource: store.to_string(),
            detail: format!(
                "inserted {n} of {} rows: something that does not take synclog's lock wrote ids \
                 from {first} on; retry",
                all.len()
            ),
            source: None,
        });
    }
    Ok(())
}

fn seal_group(
    batches: &[Vec<NewLog>],
    first: i64,
    store: &str,
) -> Result<(Vec<Vec<LogRecord>>, Vec<LogRecord>, i64)> {
    let now = Utc::now();
    let mut next = first;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut recs = Vec::with_capacity(batch.len());
        for log in batch {
            let id = LogId::new(next as u64).ok_or_else(|| Error::corrupt(store, "invalid next id"))?;
            recs.push(LogRecord::seal_ref(id, now, log)?);
            next += 1;
        }
        out.push(recs);
    }
    let all = out.iter().flatten().cloned().collect();
    Ok((out, all, next))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction under the store's lock: made
/// from nothing (the version 1 DDL and every step after it), upgraded in place from an
/// older version (each step in turn; existing rows keep their data and checksums), or left
/// as it is. A newer version is refused with [`Error::Unsupported`] and nothing is changed.
/// PostgreSQL's DDL is transactional: a failure or a crash anywhere leaves the schema as
/// it was.
async fn prepare_schema(
    client: &mut Client,
    sql: &Sql,
    store: &str,
    lock_key: i64,
    deadline: Deadline,
) -> Result<()> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(|e| pg_err(store, "beginning schema creation on", e))?;
    tx.batch_execute(&format!(
        "{}; SELECT pg_advisory_xact_lock({lock_key})",
        deadline.set_lock_timeout()
    ))
    .await
    .map_err(|e| pg_err(store, "waiting for the store's lock on", e))?;
    let has_meta: bool = tx
        .query_one(&sql.meta_exists, &[&sql.meta_name])
        .await
        .map_err(|e| pg_err(store, "looking for the schema of", e))?
        .get(0);
    let version: Option<i64> = match has_meta {
        false => None,
        true => tx
            .query_opt(&sql.version, &[])
            .await
            .map_err(|e| pg_err(store, "reading the schema version of", e))?
            .map(|r| r.get(0)),
    };
    let from = match version {
        Some(SCHEMA_VERSION) => return Ok(()),
        Some(v) if v > SCHEMA_VERSION => {
            // Dropping the transaction rolls it back: nothing was changed.
            return Err(Error::Unsupported {
                engine: "postgres",
                what: format!(
                    "schema version {v} of {store}: this synclog knows schema version {SCHEMA_VERSION} and \
                     older; upgrade synclog (the schema was not changed)"
                ),
            });
        }
        Some(v) if v >= 1 => v,
        Some(v) => return Err(Error::corrupt(store, format!("unknown schema version {v}"))),
        None => {
            tx.batch_execute(&sql.create_v1)
                .await
                .map_err(|e| pg_err(store, "creating the schema of", e))?;
            1
        }
    };
    for (to, step) in sql.upgrades.iter().filter(|(to, _)| *to > from) {
        tx.batch_execute(step)
            .await
            .map_err(|e| pg_err(store, &format!("upgrading to version {to} the schema of"), e))?;
        if *to == 3 {
            backfill_attrs(&tx, sql, store).await?;
        }
    }
    tx.execute(&sql.set_version, &[&SCHEMA_VERSION])
        .await
        .map_err(|e| pg_err(store, "versioning the schema of", e))?;
    tx.commit()
        .await
        .map_err(|e| pg_err(store, "committing the schema of", e))
}

/// Version 3's attribute table filled from the stored records, a page at a time, inside
/// the upgrade's transaction: the canonical value text is computed here, in Rust, as for
/// every record written later.
async fn backfill_attrs(tx: &tokio_postgres::Transaction<'_>, sql: &Sql, store: &str) -> Result<()> {
    const PAGE: i64 = 10_000;
    let mut from = 0i64;
    loop {
        let rows = tx
            .query(&sql.attrs_page, &[&from, &PAGE])
            .await
            .map_err(|e| pg_err(store, "reading attributes to index in", e))?;
        let Some(last) = rows.last() else { return Ok(()) };
        from = last.get::<_, i64>(0) + 1;
        let (mut ids, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let id: i64 = row.get(0);
            let attrs: String = row.get(1);
            for (k, v) in synclog_core::query::attr_entries(&attrs) {
                ids.push(id);
                keys.push(k);
                values.push(v);
            }
        }
        tx.execute(&sql.attrs_insert, &[&ids, &keys, &values])
            .await
            .map_err(|e| pg_err(store, "indexing attributes in", e))?;
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// A [`LogStore`] over a PostgreSQL schema.
pub struct PgStore {
    store: String,
    endpoint: Endpoint,
    sql: Arc<Sql>,
    pool: Pool,
    tx: mpsc::UnboundedSender<Job>,
    submitted: Arc<AtomicU64>,
    stats: Arc<Stats>,
    closed: AtomicBool,
    /// Raised by this process's writer and by the listener (other processes' commits).
    signal: CommitSignal,
    listener: Listener,
    /// How long the vacuum after a prune waits for its lock.
    lock_wait: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("store", &self.store).finish()
    }
}

impl PgStore {
    /// Connects to `url` (a libpq URL; `?synclog_schema=NAME` picks the schema, overriding
    /// `options.schema`), creates the schema on first use, and starts the writer.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore> {
        let (url, from_url) = split_schema(url);
        let schema = from_url.unwrap_or(options.schema.clone());
        check_schema_name(&schema)?;
        let store = format!("{}#{schema}", redact_url(&url));
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Error::invalid(
                "url",
                format!("{} is not a PostgreSQL URL: {e}", redact_url(&url)),
            )
        })?;
        let sql = Arc::new(Sql::new(&schema));
        let endpoint = Endpoint {
            server: server_of(&config),
            config: config.clone(),
            store: store.clone(),
            connect_timeout: options.connect_timeout,
        };
        let mut reader_config = config.clone();
        reader_config.application_name(format!("synclog-reader:{schema}"));
        let manager = Manager::from_config(
            reader_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| Error::Backend {
                engine: "postgres",
                context: format!("building the pool for {store}"),
                source: Box::new(e),
            })?;
        let lock_key = (crc32c::crc32c(format!("synclog:{schema}").as_bytes()) as i64) | (0x5359_4e43 << 32);
        // Create or upgrade the schema once, under the store's lock, so concurrent first
        // users agree.
        {
            let mut client = pool.get().await.map_err(|e| endpoint.pool_err(e))?;
            prepare_schema(
                &mut client,
                &sql,
                &store,
                lock_key,
                Deadline::after(options.lock_wait),
            )
            .await?;
        }
        let submitted = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(Stats::default());
        let signal = CommitSignal::new();
        let listener = Listener::new(endpoint.clone(), sql.channel.clone(), signal.clone());
        // The writer's connection names its schema, so operators see it in pg_stat_activity.
        let mut writer_endpoint = endpoint.clone();
        writer_endpoint
            .config
            .application_name(format!("synclog-writer:{schema}"));
        let writer = Writer {
            endpoint: writer_endpoint,
            client: None,
            sql: sql.clone(),
            store: store.clone(),
            lock_key,
            lock_wait: options.lock_wait,
            expected_next: None,
            insert: None,
            lookups: None,
            submitted: submitted.clone(),
            gathering: Gathering::default(),
            max_group_logs: options.max_group_logs.max(1),
            stats: stats.clone(),
            signal: signal.clone(),
            markers: Markers::default(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer.run(rx));
        let opened = PgStore {
            store,
            endpoint,
            sql,
            pool,
            tx,
            submitted,
            stats,
            closed: AtomicBool::new(false),
            signal,
            listener,
            lock_wait: options.lock_wait,
        };
        opened.finish_cut_off_prunes().await?;
        Ok(opened)
    }

    /// Deletes what a stored marker covers and is still there (a prune cut off between
    /// its transactions, by a crash or a lost connection), as a prune does. Returns how
    /// many records went.
    async fn finish_cut_off_prunes(&self) -> Result<u64> {
        let mut deleted = 0;
        for marker in self.prune_markers().await? {
            let firsts: Vec<i64> = marker.ranges.iter().map(|r| r.first.get() as i64).collect();
            let lasts: Vec<i64> = marker.ranges.iter().map(|r| r.last.get() as i64).collect();
            let left: bool = self
                .reader()
                .await?
                .query_one(&self.sql.prune_left, &[&firsts, &lasts])
                .await
                .map_err(|e| pg_err(&self.store, "checking the prunes of", e))?
                .get(0);
            if left {
                let done = self.apply_prune(&marker, Durability::PowerLoss).await?;
                tracing::warn!(store = %self.store, marker = %marker.name(), deleted = done.deleted,
                    "a prune cut off between its transactions was finished");
                deleted += done.deleted;
            }
        }
        Ok(deleted)
    }

    /// Transactions committed, logs committed, writer connections opened (1 plus one per
    /// reconnection after an error).
    pub fn stats(&self) -> (u64, u64, u64) {
        (
            self.stats.groups.load(Ordering::Relaxed),
            self.stats.logs.load(Ordering::Relaxed),
            self.stats.connects.load(Ordering::Relaxed),
        )
    }

    fn closed(&self) -> Error {
        Error::Closed {
            store: self.store.clone(),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed());
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    async fn reader(&self) -> Result<deadpool_postgres::Object> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed());
        }
        self.pool.get().await.map_err(|e| self.endpoint.pool_err(e))
    }
}

#[async_trait]
impl LogStore for PgStore {
    fn describe(&self) -> String {
        self.store.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: "postgres",
            multi_process: true,
            persistent: true,
            checkpoint: false,
            deep_verify: false,
            repair: true,
            prune: true,
            durability: Durability::ALL.to_vec(),
        }
    }

    async fn commit_report(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Committed> {
        validate_batch(&batch)?;
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let seq = self.submitted.fetch_add(1, Ordering::Relaxed);
        self.ask(|reply| Job::Commit {
            logs: batch,
            durability,
            seq,
            reply,
        })
        .await
    }

    /// One probe of `logs_by_idempotency_key`.
    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let client = self.reader().await?;
        let row = client
            .query_opt(&self.sql.by_idempotency_key, &[&key])
            .await
            .map_err(|e| pg_err(&self.store, "looking up an idempotency key in", e))?;
        row.map(|r| decode(&r, &self.store)).transpose()
    }

    /// A range of `logs_by_run`.
    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let client = self.reader().await?;
        let rows = client
            .query(&self.sql.run_records, &[&run])
            .await
            .map_err(|e| pg_err(&self.store, "reading a run of", e))?;
        rows.iter().map(|r| decode(r, &self.store)).collect()
    }

    /// One query over `runs`, walked in first-id order by `runs_by_first_id`, by
    /// `runs_by_job` for a job, by `runs_open_by_first_id` for unfinished runs, or through
    /// `runs_open_by_start` for stale ones; each run of the page joins its latest record
    /// (primary key) and its record ids (`logs_by_run`). The answers are the default
    /// implementation's ([`RunScan::matches`]).
    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        let q = filters::runs_query(&self.sql, scan)?;
        let client = self.reader().await?;
        let rows = client
            .query(&q.text, &q.refs())
            .await
            .map_err(|e| pg_err(&self.store, "listing the runs of", e))?;
        rows.iter().map(|r| decode_run(r, &self.store)).collect()
    }

    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        let client = self.reader().await?;
        let row = client
            .query_opt(&self.sql.get, &[&(id.get() as i64)])
            .await
            .map_err(|e| pg_err(&self.store, "reading", e))?;
        row.map(|r| decode(&r, &self.store)).transpose()
    }

    /// One query, planned with its values: the conditions of the filter (see the
    /// `filters` module) on the index that suits them, in id order.
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        let q = filters::scan_query(&self.sql, scan)?;
        let client = self.reader().await?;
        let rows = client
            .query(&q.text, &q.refs())
            .await
            .map_err(|e| pg_err(&self.store, "scanning", e))?;
        rows.iter().map(|r| decode(r, &self.store)).collect()
    }

    /// From `job_stats` when the filter names only jobs and statuses, else one
    /// `count(*)` over what the filter's indexes find.
    async fn count(&self, filter: &Filter) -> Result<u64> {
        let q = filters::count_query(&self.sql, filter)?;
        let client = self.reader().await?;
        let n: i64 = client
            .query_one(&q.text, &q.refs())
            .await
            .map_err(|e| pg_err(&self.store, "counting the records of", e))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    /// See the `summary` module: `job_stats` (at most 7 rows per job) when the filter names
    /// only jobs and statuses, else one aggregate over the matching records; then the
    /// latest records by primary key.
    async fn summary(&self, filter: &Filter) -> Result<Summary> {
        let client = self.reader().await?;
        summary::summary(&client, &self.sql, &self.store, filter).await
    }

    /// This process's commits reach followers with their records at once; other
    /// processes' through LISTEN/NOTIFY (the listener connection is opened by the first
    /// watch). One task for all followers also asks for the last id, every second as a
    /// safety net, or every 50 ms while the listener cannot connect.
    async fn commit_watch(&self) -> Result<synclog_core::follow::CommitWatch> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed());
        }
        let listening = matches!(
            tokio::time::timeout(self.endpoint.connect_timeout, self.listener.ensure()).await,
            Ok(Ok(()))
        );
        let every = if listening {
            Duration::from_secs(1)
        } else {
            synclog_core::follow::POLL
        };
        let (pool, sql, endpoint, store) = (
            self.pool.clone(),
            self.sql.clone(),
            self.endpoint.clone(),
            self.store.clone(),
        );
        let probe: synclog_core::follow::Probe = Box::new(move || {
            let (pool, sql, endpoint, store) = (pool.clone(), sql.clone(), endpoint.clone(), store.clone());
            Box::pin(async move {
                let client = pool.get().await.map_err(|e| endpoint.pool_err(e))?;
                let max: Option<i64> = client
                    .query_one(&sql.last_id, &[])
                    .await
                    .map_err(|e| pg_err(&store, "reading the last id of", e))?
                    .get(0);
                Ok(max.and_then(|m| LogId::new(m as u64)))
            })
        });
        self.signal.watch(Some((every, probe))).await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        let client = self.reader().await?;
        let max: Option<i64> = client
            .query_one(&self.sql.last_id, &[])
            .await
            .map_err(|e| pg_err(&self.store, "reading the last id of", e))?
            .get(0);
        Ok(max.and_then(|m| LogId::new(m as u64)))
    }

    async fn id_checksums(&self, after: Option<LogId>, limit: usize) -> Result<Vec<(LogId, Checksum)>> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &self.sql.id_checksums,
                &[&after.map_or(0, |a| a.get() as i64), &(limit as i64)],
            )
            .await
            .map_err(|e| pg_err(&self.store, "listing", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                LogId::new(r.get::<_, i64>(0) as u64).map(|id| (id, Checksum(r.get::<_, i64>(1) as u32)))
            })
            .collect())
    }

    async fn sync(&self, level: Durability) -> Result<()> {
        self.ask(|reply| Job::Sync { level, reply }).await
    }

    /// Pages through every row on a pooled connection (never the writer's), recomputing
    /// each checksum from the stored values.
    /// The markers and the records are read in one snapshot (a read-only repeatable-read
    /// transaction), so a prune committed meanwhile is seen whole or not at all.
    async fn verify(&self, _options: VerifyOptions) -> Result<VerifyReport> {
        let mut client = self.reader().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| pg_err(&self.store, "beginning verification of", e))?;
        let mut v = Verifier::new();
        let mut markers = Vec::new();
        let mut damaged = Vec::new();
        let rows = tx
            .query(&self.sql.markers_after, &[&0i64])
            .await
            .map_err(|e| pg_err(&self.store, "reading the prune markers of", e))?;
        for m in decode_markers(&rows, &self.store) {
            match m {
                Ok(m) => markers.push(m),
                Err(e) => damaged.push(e.to_string()),
            }
        }
        v.prunes(markers);
        for detail in damaged {
            v.corrupt(None, detail);
        }
        let mut after = 0i64;
        loop {
            let rows = tx
                .query(&self.sql.page, &[&after, &10_000i64])
                .await
                .map_err(|e| pg_err(&self.store, "verifying", e))?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            for row in &rows {
                match decode(row, &self.store) {
                    Ok(rec) => v.check(&rec.view(), rec.checksum, || format!("row {}", rec.id)),
                    Err(e) => {
                        let id = row.try_get::<_, i64>(0).ok().and_then(|i| LogId::new(i as u64));
                        v.corrupt(id, e.to_string())
                    }
                }
            }
            if rows.len() < 10_000 {
                break;
            }
        }
        tx.commit()
            .await
            .map_err(|e| pg_err(&self.store, "ending verification of", e))?;
        Ok(v.finish())
    }

    async fn import(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        validate_records(&records)?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        self.ask(|reply| Job::Import {
            records,
            durability,
            reply,
        })
        .await
    }

    async fn repair(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        validate_records(&records)?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        self.ask(|reply| Job::Repair {
            records,
            durability,
            reply,
        })
        .await
    }

    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        let client = self.reader().await?;
        let rows = client
            .query(&self.sql.markers_after, &[&0i64])
            .await
            .map_err(|e| pg_err(&self.store, "reading the prune markers of", e))?;
        decode_markers(&rows, &self.store).into_iter().collect()
    }

    /// Transactions under the store's lock of at most [`PRUNE_CHUNK_IDS`] ids each,
    /// through the writer (appends of every process go on between them): the first stores
    /// the marker (unless one of its digest is stored: [`Applied::already_marked`]) and
    /// raises the high-water mark to its last id, so every record is always present or
    /// covered by a stored marker; each deletes its ranges with their `attrs`, `job_stats`
    /// and `runs` rows. A prune cut off between them is finished by the next
    /// [`PgStore::connect`] (or by applying the marker again). Then, when records were
    /// deleted, `VACUUM` of the tables on a pooled connection (the writer goes on
    /// meanwhile), so their space is reused; a vacuum that cannot run (its lock wait,
    /// another vacuum) is left to autovacuum.
    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        check_marker(marker)?;
        let mut applied = Applied::default();
        for (i, ranges) in chunk_ranges(&marker.ranges, PRUNE_CHUNK_IDS)
            .into_iter()
            .enumerate()
        {
            let marker = Box::new(marker.clone());
            let done = self
                .ask(|reply| Job::Prune {
                    marker,
                    first: i == 0,
                    ranges,
                    durability,
                    reply,
                })
                .await?;
            applied.deleted += done.deleted;
            applied.already_marked |= i == 0 && done.already_marked;
        }
        if applied.deleted > 0 {
            if let Ok(client) = self.reader().await {
                let ms = self.lock_wait.as_millis().clamp(1, i32::MAX as u128);
                // VACUUM runs only outside a transaction block: one statement per query.
                let wait = format!("SET lock_timeout = {ms}");
                if client.batch_execute(&wait).await.is_ok() {
                    let _ = client.batch_execute(&self.sql.vacuum).await;
                    let _ = client.batch_execute("RESET lock_timeout").await;
                }
            }
        }
        Ok(applied)
    }

    /// `pg_total_relation_size` of every table of the schema (indexes and TOAST included).
    async fn storage_bytes(&self) -> Result<Option<u64>> {
        let client = self.reader().await?;
        let n: i64 = client
            .query_one(&self.sql.storage_bytes, &[&self.sql.channel])
            .await
            .map_err(|e| pg_err(&self.store, "measuring", e))?
            .get(0);
        Ok(Some(n.max(0) as u64))
    }

    /// Releases every connection: the pool's, the writer's (after the jobs queued before
    /// the close) and the listener's.
    async fn close(&self) -> Result<()> {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        self.pool.close();
        self.listener.close().await;
        if first {
            let (reply, rx) = oneshot::channel();
            if self.tx.send(Job::Close { reply }).is_ok() {
                let _ = rx.await;
            }
        }
        Ok(())
    }
}
