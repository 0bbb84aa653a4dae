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
//!
//! ```no_run
//! use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
//! use synclog_postgres::{PgOptions, PgStore};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synclog_core::Result<()> {
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test", PgOptions::default()).await?;
//! let rec = store.append(NewLog::new("crm-sync", Status::Succeeded)).await?;
//! assert_eq!(store.get(rec.id).await?, Some(rec));
//! store.close().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod connect;
mod filters;
mod listen;
#[cfg(test)]
mod plans;
mod rows;
mod schema;
mod sql;
mod summary;
mod writer;

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
use synclog_core::query::{Filter, StatusCounts, Summary};
use synclog_core::retention::{check_marker, chunk_ranges, Applied, PruneMarker, Pruned};
use synclog_core::run::{seal_batch, Fetched, Planner, RunEnds};
use synclog_core::verify::Verifier;
use synclog_core::{
    redact_url, Attrs, Capabilities, Checksum, Committed, Durability, Error, IdRange, ImportReport, LogId,
    LogRecord, LogStore, NewLog, Result, Run, RunScan, Scan, Status, ValidBatch, ValidRecords, VerifyOptions,
    VerifyReport,
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
    /// Fail with [`Error::StoreNotFound`] instead of creating the schema's tables when the
    /// schema holds no synclog store (what a read-only open asks: nothing is created).
    pub must_exist: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "synclog".into(),
            pool_size: 8,
            max_group_logs: 8192,
            lock_wait: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            must_exist: false,
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

use rows::*;
use schema::*;
pub use writer::synchronous_commit_for;
use writer::*;

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
        synclog_core::runtime::current("connecting to PostgreSQL")?;
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
                options.must_exist,
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

    /// The rows of `q`, sent on a pooled connection (`doing` names the work in errors).
    async fn rows(&self, q: &filters::Query, doing: &str) -> Result<Vec<Row>> {
        let client = self.reader().await?;
        client
            .query(&q.text, &q.refs())
            .await
            .map_err(|e| pg_err(&self.store, doing, e))
    }

    /// A read-only, repeatable-read transaction on `client`: every statement in it sees
    /// one snapshot (`doing` names the work in errors).
    async fn snapshot<'a>(
        &self,
        client: &'a mut deadpool_postgres::Object,
        doing: &str,
    ) -> Result<deadpool_postgres::Transaction<'a>> {
        client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| pg_err(&self.store, doing, e))
    }

    async fn reader(&self) -> Result<deadpool_postgres::Object> {
        synclog_core::runtime::current("reading from PostgreSQL")?;
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

    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let seq = self.submitted.fetch_add(1, Ordering::Relaxed);
        self.ask(|reply| Job::Commit {
            logs: batch.into_inner(),
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
        let rows = self
            .rows(&filters::runs_query(&self.sql, scan)?, "listing the runs of")
            .await?;
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
        let rows = self
            .rows(&filters::scan_query(&self.sql, scan)?, "scanning")
            .await?;
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

    /// From `job_stats` when the filter names only jobs and statuses, else one
    /// `GROUP BY status` over what the filter's indexes find.
    async fn count_by_status(&self, filter: &Filter) -> Result<StatusCounts> {
        let q = filters::count_by_status_query(&self.sql, filter)?;
        let rows = self.rows(&q, "counting by status the records of").await?;
        let mut out = StatusCounts::new();
        for row in rows {
            let text: String = row.get(0);
            let status = text
                .parse::<Status>()
                .map_err(|_| Error::corrupt(self.store.clone(), format!("unknown status {text:?}")))?;
            let n: i64 = row.get(1);
            if n > 0 {
                *out.entry(status).or_default() += n as u64;
            }
        }
        Ok(out)
    }

    /// See the `summary` module: `job_stats` (at most 7 rows per job) when the filter names
    /// only jobs and statuses, else one aggregate over the matching records; then the
    /// latest records by primary key. Its statements share one snapshot (a read-only,
    /// repeatable-read transaction): a record a prune deleted between them would otherwise
    /// be named by the first and missing from the last.
    async fn summary(&self, filter: &Filter) -> Result<Summary> {
        filter.validate()?;
        let mut client = self.reader().await?;
        let tx = self.snapshot(&mut client, "starting a summary of").await?;
        let out = summary::summary(&tx, &self.sql, &self.store, filter).await?;
        // Nothing was written; ending the transaction only lets its snapshot go.
        tx.commit()
            .await
            .map_err(|e| pg_err(&self.store, "ending a summary of", e))?;
        Ok(out)
    }

    /// This process's commits reach followers with their records at once; other
    /// processes' through LISTEN/NOTIFY (the listener connection is opened by the first
    /// watch). One task for all followers also asks for the last id, every second as a
    /// safety net, or every 50 ms while the listener cannot connect.
    async fn commit_watch(&self) -> Result<synclog_core::follow::CommitWatch> {
        synclog_core::runtime::current("watching a PostgreSQL store")?;
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

    /// The larger of the last id and the `high_water` row of `meta`.
    async fn high_water(&self) -> Result<Option<LogId>> {
        let client = self.reader().await?;
        let next: i64 = client
            .query_one(&self.sql.next_id, &[])
            .await
            .map_err(|e| pg_err(&self.store, "reading the high-water mark of", e))?
            .get(0);
        Ok(LogId::new((next - 1).max(0) as u64))
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
        let tx = self.snapshot(&mut client, "beginning verification of").await?;
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

    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        self.ask(|reply| Job::Import {
            records: records.into_inner(),
            durability,
            reply,
        })
        .await
    }

    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        self.ask(|reply| Job::Repair {
            records: records.into_inner(),
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
        synclog_core::runtime::current("pruning a PostgreSQL store")?;
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
        synclog_core::runtime::current("closing a PostgreSQL store")?;
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
