//! Measurements behind `synclog bench` and the criterion benches: each synclog figure is
//! measured in the same run, on the same disk, next to its raw baseline.
//!
//! Every function takes a directory (the disk under test) and a size, does its setup
//! outside the timed part, and returns what it measured.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod child;
mod deploy;

pub use child::{run_timed, ChildRun, PEAK_RSS_ENV, PEAK_RSS_LINE};
pub use deploy::{Built, DeploymentPair};

use crate::{
    Durability, Error, GuardedOptions, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Result, Status,
};

/// How long `n` operations took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Operations (records) done.
    pub ops: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Timing {
    /// Nothing measured yet.
    pub const ZERO: Timing = Timing {
        ops: 0,
        elapsed: Duration::ZERO,
    };

    /// The sum of two measurements (rounds of one interleaved figure).
    pub fn plus(self, other: Timing) -> Timing {
        Timing {
            ops: self.ops + other.ops,
            elapsed: self.elapsed + other.elapsed,
        }
    }

    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }

    /// Microseconds per operation.
    pub fn micros_per_op(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.ops.max(1) as f64
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(what.to_string(), e)
}

/// Wraps an error of a library the measurements call directly (a raw baseline's, or a
/// task's) as [`Error::Backend`] of `engine`, saying what was being done.
fn backend<E>(engine: &'static str, what: &'static str) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |err| Error::Backend {
        engine,
        context: what.into(),
        source: Box::new(err),
    }
}

/// Log `i` of the query figures' store of `n` logs: one of 100 jobs, recorded evenly
/// over the year before `now` (log `n` at `now`), statuses 80% succeeded, 10% failed, 5%
/// partial, 3% skipped, 2% started, attributes `env` (3 values) and `tenant` (`t-0` to
/// `t-999`), spread by a hash of `i` so none of them line up.
pub fn query_log(i: u64, n: u64, now: crate::Timestamp) -> Result<LogRecord> {
    let h = spread(i);
    let year_us: i128 = 365 * 86_400 * 1_000_000;
    let back = ((n - i.min(n)) as i128 * year_us / n.max(1) as i128) as i64;
    let recorded = now - chrono::Duration::microseconds(back);
    let started = recorded - chrono::Duration::seconds((h % 3600) as i64);
    let status = match (h >> 8) % 100 {
        0..80 => Status::Succeeded,
        80..90 => Status::Failed,
        90..95 => Status::Partial,
        95..98 => Status::Skipped,
        _ => Status::Started,
    };
    let mut log = NewLog::new(format!("job-{:03}", (h >> 20) % 100), status)
        .started(started)
        .counts(1000 + h % 100, 990, h % 10)
        .message("synced 990 contacts, 10 rejected by the target")
        .attr("env", ["prod", "dev", "staging"][((h >> 32) % 3) as usize])
        .attr("tenant", format!("t-{}", (h >> 40) % 1000));
    if status.is_terminal() {
        log = log.finished(recorded);
    }
    LogRecord::seal(
        LogId::new(i).ok_or_else(|| Error::invalid("records", "ids start at 1"))?,
        recorded,
        log,
    )
}

/// Fills `store` with logs `1..=n` of [`query_log`] by imports (untimed setup), calling
/// `progress` every million.
pub async fn fill_query_store(
    store: &dyn LogStore,
    n: u64,
    now: crate::Timestamp,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let mut batch = Vec::with_capacity(20_000);
    for i in 1..=n {
        batch.push(query_log(i, n, now)?);
        if batch.len() == 20_000 || i == n {
            store
                .import(std::mem::take(&mut batch), Durability::Process)
                .await?;
            if i % 1_000_000 == 0 {
                progress(i);
            }
        }
    }
    store.sync(Durability::PowerLoss).await
}

/// A well-spread 64-bit value of `n` (splitmix64): keys and fields that do not line up
/// with the order of ids.
pub fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A realistic log for benchmarks (about 250 bytes as JSON).
pub fn sample_log(n: u64) -> NewLog {
    NewLog::new(format!("sync-job-{:02}", n % 16), Status::Succeeded)
        .counts(1000 + n % 100, 990, n % 10)
        .message("synced 990 contacts, 10 rejected by the target")
        .attr("source", "hubspot")
        .attr("page", n % 40)
}

/// The physical limit of one writer: append a 250-byte record and `fdatasync`, `n` times,
/// to `dir/raw-fdatasync.log` (kept, so rounds continue the same file).
pub fn raw_fdatasync_loop(dir: &Path, n: u64) -> Result<Timing> {
    let path = dir.join("raw-fdatasync.log");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io("opening the raw file"))?;
    let record = [b'x'; 249].iter().copied().chain([b'\n']).collect::<Vec<u8>>();
    let start = Instant::now();
    for _ in 0..n {
        file.write_all(&record).map_err(io("writing the raw file"))?;
        file.sync_data().map_err(io("syncing the raw file"))?;
    }
    Ok(Timing {
        ops: n,
        elapsed: start.elapsed(),
    })
}

/// Raw rusqlite with synclog's PRAGMAs and schema, one row per `BEGIN IMMEDIATE`
/// transaction, on one connection kept open across runs (as synclog's writer is: closing
/// the last connection would checkpoint and delete the WAL, and a fresh, growing WAL
/// syncs slower).
#[cfg(feature = "sqlite")]
pub struct RawSqlite {
    conn: rusqlite::Connection,
    next: u64,
}

#[cfg(feature = "sqlite")]
fn raw_sqlite_err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    backend("sqlite", what)
}

#[cfg(feature = "sqlite")]
impl RawSqlite {
    /// Opens (creating) `dir/raw-rusqlite.db` with synclog's PRAGMAs and schema.
    pub fn open(dir: &Path) -> Result<RawSqlite> {
        let e = raw_sqlite_err;
        let conn = rusqlite::Connection::open(dir.join("raw-rusqlite.db")).map_err(e("opening"))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(e("journal_mode"))?;
        conn.pragma_update(None, "synchronous", 2)
            .map_err(e("synchronous"))?;
        conn.pragma_update(None, "wal_autocheckpoint", 1000)
            .map_err(e("wal_autocheckpoint"))?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024i64)
            .map_err(e("journal_size_limit"))?;
        let exists: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'logs'",
                [],
                |r| r.get(0),
            )
            .map_err(e("inspecting"))?;
        if exists == 0 {
            conn.execute_batch(synclog_sqlite::SCHEMA).map_err(e("schema"))?;
        }
        let next: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM logs", [], |r| r.get(0))
            .map_err(e("reading the last id"))?;
        Ok(RawSqlite {
            conn,
            next: next as u64,
        })
    }

    /// Commits `n` rows, one transaction each.
    pub fn run(&mut self, n: u64) -> Result<Timing> {
        let e = raw_sqlite_err;
        let now = chrono::Utc::now();
        let records: Vec<LogRecord> = (self.next..self.next + n)
            .map(|i| LogRecord::seal(LogId::new(i).unwrap_or(LogId::MIN), now, sample_log(i)))
            .collect::<Result<_>>()?;
        self.next += n;
        let start = Instant::now();
        for r in &records {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(e("begin"))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO logs (id, recorded_at, job, status, started_at, finished_at, items_seen, \
                         items_written, items_failed, message, attrs, checksum) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )
                    .map_err(e("prepare"))?;
                stmt.execute(rusqlite::params![
                    r.id.get() as i64,
                    r.recorded_at.timestamp_micros(),
                    r.job,
                    r.status.as_str(),
                    r.started_at.timestamp_micros(),
                    r.finished_at.map(|t| t.timestamp_micros()),
                    r.items_seen as i64,
                    r.items_written as i64,
                    r.items_failed as i64,
                    r.message,
                    r.attrs.as_str(),
                    r.checksum.0 as i64
                ])
                .map_err(e("insert"))?;
            }
            tx.commit().map_err(e("commit"))?;
        }
        Ok(Timing {
            ops: n,
            elapsed: start.elapsed(),
        })
    }
}

/// Raw sled: insert one 250-byte value under a big-endian key, then `flush()`, one
/// record at a time, in `dir/raw-sled`. Kept open between runs, like [`RawSqlite`], so
/// that sled's open and close (its threads start and stop) stay out of the rounds.
#[cfg(feature = "sled")]
pub struct RawSled {
    db: sled_crate::Db,
    next: u64,
    /// sled's data file, for the power-safe variant ([`RawSled::run_synced`]).
    data: std::fs::File,
}

#[cfg(feature = "sled")]
fn raw_sled_err(what: &'static str) -> impl FnOnce(sled_crate::Error) -> Error {
    backend("sled", what)
}

#[cfg(feature = "sled")]
impl RawSled {
    /// Opens (creating) `dir/raw-sled`.
    pub fn open(dir: &Path) -> Result<RawSled> {
        let db = sled_crate::open(dir.join("raw-sled")).map_err(raw_sled_err("opening"))?;
        let next = db.len() as u64;
        let data = std::fs::File::open(dir.join("raw-sled").join("db"))
            .map_err(|e| Error::io("opening raw sled's data file", e))?;
        Ok(RawSled { db, next, data })
    }

    /// `n` inserts, each followed by a flush (what sled's docs offer; not power-safe:
    /// sled syncs with `sync_file_range`).
    pub fn run(&mut self, n: u64) -> Result<Timing> {
        self.run_with(n, false)
    }

    /// `n` inserts, each followed by a flush and an `fdatasync` of sled's data file: what
    /// surviving a power cut takes, as the sled engine does at `PowerLoss`.
    pub fn run_synced(&mut self, n: u64) -> Result<Timing> {
        self.run_with(n, true)
    }

    fn run_with(&mut self, n: u64, synced: bool) -> Result<Timing> {
        let value = vec![b'x'; 250];
        let start = Instant::now();
        for i in self.next..self.next + n {
            self.db
                .insert(i.to_be_bytes(), value.as_slice())
                .map_err(raw_sled_err("insert"))?;
            self.db.flush().map_err(raw_sled_err("flush"))?;
            if synced {
                self.data
                    .sync_data()
                    .map_err(|e| Error::io("syncing raw sled's data file", e))?;
            }
        }
        self.next += n;
        Ok(Timing {
            ops: n,
            elapsed: start.elapsed(),
        })
    }
}

/// Raw tokio-postgres: `n` single-row INSERTs on one connection in autocommit (each its
/// own transaction, `synchronous_commit = on`), into a scratch schema dropped afterwards.
#[cfg(feature = "postgres")]
pub async fn raw_postgres_loop(url: &str, n: u64) -> Result<Timing> {
    let e = |what| backend::<tokio_postgres::Error>("postgres", what);
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(e("connecting"))?;
    tokio::spawn(conn);
    let schema = format!("synclog_bench_raw_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.logs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 recorded_at timestamptz NOT NULL, job text NOT NULL, status text NOT NULL,
                 items_seen bigint NOT NULL, message text NOT NULL, attrs text NOT NULL, checksum bigint NOT NULL);
             SET synchronous_commit = on;"
        ))
        .await
        .map_err(e("creating the raw table"))?;
    let stmt = client
        .prepare(&format!(
            "INSERT INTO {schema}.logs (recorded_at, job, status, items_seen, message, attrs, checksum) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .await
        .map_err(e("preparing"))?;
    let now = chrono::Utc::now();
    let start = Instant::now();
    for i in 0..n {
        let log = sample_log(i);
        client
            .execute(
                &stmt,
                &[
                    &now,
                    &log.job,
                    &"succeeded",
                    &(i as i64),
                    &log.message,
                    &"{}",
                    &(i as i64),
                ],
            )
            .await
            .map_err(e("inserting"))?;
    }
    let elapsed = start.elapsed();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .map_err(e("dropping the raw table"))?;
    Ok(Timing { ops: n, elapsed })
}

/// Drops a PostgreSQL schema (benchmark clean-up).
#[cfg(feature = "postgres")]
pub async fn drop_postgres_schema(url: &str, schema: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(backend("postgres", "connecting"))?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .map_err(backend("postgres", "dropping a schema"))
}

/// `n` appends, one after the other, at power-loss durability.
pub async fn one_appender(store: &dyn LogStore, n: u64) -> Result<Timing> {
    let start = Instant::now();
    for i in 0..n {
        store.append(sample_log(i)).await?;
    }
    Ok(Timing {
        ops: n,
        elapsed: start.elapsed(),
    })
}

/// `tasks` concurrent appenders, `each` appends apiece, at power-loss durability.
pub async fn concurrent_appenders(store: Arc<dyn LogStore>, tasks: u64, each: u64) -> Result<Timing> {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    store.append(sample_log(t * each + i)).await?;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for h in handles {
        h.await.map_err(backend("bench", "an appender task failed"))??;
    }
    Ok(Timing {
        ops: tasks * each,
        elapsed: start.elapsed(),
    })
}

/// Fills `store` with `n` records by import, in batches, then syncs (setup, untimed by callers).
pub async fn fill(store: &dyn LogStore, n: u64) -> Result<()> {
    let now = chrono::Utc::now();
    let mut next = 1;
    while next <= n {
        let end = (next + 10_000).min(n + 1);
        let batch: Vec<LogRecord> = (next..end)
            .map(|i| LogRecord::seal(LogId::new(i).unwrap_or(LogId::MIN), now, sample_log(i)))
            .collect::<Result<_>>()?;
        store.import(batch, Durability::Process).await?;
        next = end;
    }
    store.sync(Durability::PowerLoss).await
}

/// Verifies `store` (which holds `n` records) and checks the report is clean.
pub async fn verify_all(store: &dyn LogStore, n: u64) -> Result<Timing> {
    let start = Instant::now();
    let report = store.verify(crate::VerifyOptions::default()).await?;
    let elapsed = start.elapsed();
    if !report.is_clean() || report.checked != n {
        return Err(Error::corrupt(
            store.describe(),
            format!("benchmark data did not verify: {report:?}"),
        ));
    }
    Ok(Timing { ops: n, elapsed })
}

/// Copies every record of `src` (holding `n`) into `dst`, as `synclog restore` does.
pub async fn restore_all(src: &dyn LogStore, dst: &dyn LogStore, n: u64) -> Result<Timing> {
    let start = Instant::now();
    // The page size `synclog restore` uses.
    let report = src.copy_to(dst, 5_000, Durability::PowerLoss).await?;
    let elapsed = start.elapsed();
    if report.inserted != n {
        return Err(Error::corrupt(
            dst.describe(),
            format!("restored {} of {n}", report.inserted),
        ));
    }
    Ok(Timing { ops: n, elapsed })
}

/// The largest peak resident memory, in bytes, of any child process this process has
/// waited for (`getrusage(RUSAGE_CHILDREN)`), if the platform reports it.
pub fn children_peak_rss() -> Option<u64> {
    // SAFETY: getrusage only writes into the zeroed struct we pass it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (rc == 0 && usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024)
}

/// Opens a guarded SQLite + JSON pair in `dir`.
pub async fn guarded_pair(dir: &Path, name: &str) -> Result<crate::Guarded> {
    crate::open_guarded(
        &format!("sqlite://{}/{name}.db", dir.display()),
        &format!("json://{}/{name}.jsonl", dir.display()),
        GuardedOptions::default(),
    )
    .await
}
