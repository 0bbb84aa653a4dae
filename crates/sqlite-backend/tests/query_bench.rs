//! A throwaway measurement, not a timed assertion: builds a store of
//! `SYNCLOG_QUERY_BENCH` logs (e.g. 1000000) and times the target queries against
//! hand-written SQL for the same question. Skipped unless the variable is set:
//!
//! `SYNCLOG_QUERY_BENCH=1000000 cargo test --release -p synclog-sqlite --test query_bench -- --nocapture`

use std::time::{Duration, Instant};
use synclog_core::LogStoreExt;

use chrono::{DateTime, Utc};
use synclog_core::query::{AttrEq, Filter, TimeRange};
use synclog_core::{Durability, LogId, LogRecord, LogStore, NewLog, Scan, Status};
use synclog_sqlite::SqliteStore;

mod common;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

async fn time_async<F, Fut, T>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    f().await;
    let mut runs = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        f().await;
        runs.push(t.elapsed());
    }
    median(runs)
}

fn time_sql(conn: &rusqlite::Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> (Duration, usize) {
    let mut stmt = conn.prepare(sql).unwrap();
    let mut n = 0;
    let mut runs = Vec::new();
    for _ in 0..22 {
        let t = Instant::now();
        let mut rows = stmt.query(args).unwrap();
        n = 0;
        while let Some(row) = rows.next().unwrap() {
            // Every column into an owned value, as an application's decoding would.
            let values: Vec<rusqlite::types::Value> = (0..row.as_ref().column_count())
                .map(|i| row.get(i).unwrap())
                .collect();
            std::hint::black_box(values);
            n += 1;
        }
        runs.push(t.elapsed());
    }
    runs.remove(0);
    (median(runs), n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_target_queries() {
    let Some(n) = std::env::var("SYNCLOG_QUERY_BENCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        println!("SYNCLOG_QUERY_BENCH not set: nothing measured");
        return;
    };
    let dir = std::env::var("SYNCLOG_QUERY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let db = dir.join(format!("synclog-query-bench-{n}.db"));
    let now: DateTime<Utc> = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
    let span = chrono::Duration::days(365);
    let step = span.num_microseconds().unwrap() / n as i64;
    let statuses = [
        (Status::Succeeded, 70),
        (Status::Failed, 10),
        (Status::Partial, 5),
        (Status::Skipped, 5),
        (Status::Started, 10),
    ];
    if !db.exists() {
        let store = SqliteStore::open(&db).unwrap();
        let t = Instant::now();
        let mut rng = common::Rng::new(1);
        let mut batch = Vec::with_capacity(10_000);
        for i in 1..=n {
            let started = now - span + chrono::Duration::microseconds(step * i as i64);
            let mut roll = rng.below(100);
            let status = statuses
                .iter()
                .find(|(_, p)| {
                    let hit = roll < *p;
                    if !hit {
                        roll -= p;
                    }
                    hit
                })
                .map(|s| s.0)
                .unwrap_or(Status::Succeeded);
            let log = NewLog::new(format!("job-{:03}", rng.below(100)), status)
                .started(started)
                .finished(started + chrono::Duration::seconds(30))
                .counts(rng.below(1000), rng.below(1000), rng.below(10))
                .attr("env", *rng.pick(&["prod", "staging", "dev"]))
                .attr("customer", format!("c{}", rng.below(1000)))
                .attr("region", *rng.pick(&["eu", "us", "ap"]));
            let rec = LogRecord::seal(
                LogId::new(i).unwrap(),
                started + chrono::Duration::seconds(31),
                log,
            )
            .unwrap();
            batch.push(rec);
            if batch.len() == 10_000 {
                store
                    .import(std::mem::take(&mut batch), Durability::Buffered)
                    .await
                    .unwrap();
            }
        }
        if !batch.is_empty() {
            store.import(batch, Durability::Buffered).await.unwrap();
        }
        store
            .checkpoint(synclog_core::CheckpointMode::Truncate)
            .await
            .unwrap();
        store.close().await.unwrap();
        println!("built {n} logs in {:?}", t.elapsed());
    }
    let store = SqliteStore::open_read_only(&db, Duration::from_secs(5)).unwrap();
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let cols = "id, recorded_at, job, status, started_at, finished_at, items_seen, items_written, items_failed, message, attrs, checksum, run_key, idempotency_key";
    let last = store.last_id().await.unwrap();
    let floor = time_async(|| store.get(last.unwrap())).await;
    println!("0 floor of the async API (get one record by id): {floor:?}");
    let day_ago = now - chrono::Duration::hours(24);
    let week = (now - chrono::Duration::days(30), now - chrono::Duration::days(23));

    // --- 1: newest 50 failed logs started in the last 24 h
    let f1 = Filter::status(Status::Failed).started(TimeRange::since(day_ago));
    let s1 = Scan {
        descending: true,
        ..Scan::filtered(f1.clone(), 50)
    };
    let ours = time_async(|| store.scan(&s1)).await;
    let (hand, rows) = time_sql(&conn, &format!("SELECT {cols} FROM logs INDEXED BY logs_by_status WHERE status = 'failed' AND started_at >= ?1 ORDER BY id DESC LIMIT 50"), &[&day_ago.timestamp_micros()]);
    println!("1 failed+started 24h, newest 50: ours {ours:?}, hand {hand:?} ({rows} rows)");

    // --- 2: newest 50 logs with one attribute value
    let f2 = Filter::default().attr(AttrEq::parse("customer=c123").unwrap());
    let s2 = Scan {
        descending: true,
        ..Scan::filtered(f2.clone(), 50)
    };
    let ours = time_async(|| store.scan(&s2)).await;
    let lcols = cols
        .split(", ")
        .map(|c| format!("l.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (hand, rows) = time_sql(&conn, &format!("SELECT {lcols} FROM log_attrs a JOIN logs l ON l.id = a.id WHERE a.key = 'customer' AND a.value = '\"c123\"' ORDER BY a.id DESC LIMIT 50"), &[]);
    println!("2 attr customer=c123, newest 50: ours {ours:?}, hand (side table) {hand:?} ({rows} rows)");

    // --- 3: count by status over a week (recorded_at)
    let range = TimeRange::between(week.0, week.1);
    let f3 = Filter::status(Status::Failed).recorded(range);
    let ours = time_async(|| store.count(&f3)).await;
    let (hand, _) = time_sql(
        &conn,
        "SELECT count(*) FROM logs WHERE status = 'failed' AND recorded_at >= ?1 AND recorded_at < ?2",
        &[&week.0.timestamp_micros(), &week.1.timestamp_micros()],
    );
    println!(
        "3a count failed over a week: ours {ours:?} = {}, hand {hand:?}",
        store.count(&f3).await.unwrap()
    );
    let all7 = time_async(|| async {
        for s in Status::ALL {
            store.count(&Filter::status(s).recorded(range)).await.unwrap();
        }
    })
    .await;
    let (hand, _) = time_sql(
        &conn,
        "SELECT status, count(*) FROM logs WHERE recorded_at >= ?1 AND recorded_at < ?2 GROUP BY status",
        &[&week.0.timestamp_micros(), &week.1.timestamp_micros()],
    );
    println!(
        "3b count of each of the 7 statuses over a week: ours (7 counts) {all7:?}, hand GROUP BY {hand:?}"
    );

    // --- 4: summary over 100 jobs, empty filter
    let empty = Filter::default();
    let ours = time_async(|| store.summary(&empty)).await;
    let (hand, rows) = time_sql(&conn, "WITH s AS (SELECT job, max(max_id) AS latest, \
        max(CASE WHEN status NOT IN ('started','progress') THEN max_id END) AS fin, \
        max(CASE WHEN status = 'succeeded' THEN max_id END) AS succ, sum(n), sum(seen_hi), sum(seen_lo), \
        sum(written_hi), sum(written_lo), sum(failed_hi), sum(failed_lo), min(min_started), max(max_recorded) \
        FROM job_stats GROUP BY job) \
        SELECT s.*, (SELECT count(*) FROM logs INDEXED BY logs_by_job WHERE job = s.job AND id > s.succ AND status IN ('failed','abandoned')), \
        l1.*, l2.*, l3.* FROM s JOIN logs l1 ON l1.id = s.latest LEFT JOIN logs l2 ON l2.id = s.fin LEFT JOIN logs l3 ON l3.id = s.succ ORDER BY s.job", &[]);
    println!("4 summary, 100 jobs, empty filter: ours {ours:?}, hand (job_stats) {hand:?} ({rows} jobs)");
    let t = Instant::now();
    let (scan_all, _) = {
        let mut stmt = conn.prepare("SELECT job, status, count(*), sum(items_seen), min(started_at), max(recorded_at), max(id) FROM logs GROUP BY job, status").unwrap();
        let n = stmt.query_map([], |_| Ok(())).unwrap().count();
        (t.elapsed(), n)
    };
    println!("4 (for scale) GROUP BY over every row, no aggregate table: {scan_all:?}");

    // --- 2': the best hand-written SQL for one known key: an expression index on it
    let rw = rusqlite::Connection::open(&db).unwrap();
    rw.execute_batch(
        "CREATE INDEX IF NOT EXISTS bench_customer ON logs(json_extract(attrs, '$.customer'), id)",
    )
    .unwrap();
    let (hand, rows) = time_sql(&conn, &format!("SELECT {cols} FROM logs WHERE json_extract(attrs, '$.customer') = 'c123' ORDER BY id DESC LIMIT 50"), &[]);
    println!("2' attr customer=c123 via an expression index on that key: hand {hand:?} ({rows} rows)");
    rw.execute_batch("DROP INDEX bench_customer").unwrap();
}

/// How long the first writer's open takes to upgrade a version 2 store of the bench's
/// size (the copy of the store `measure_target_queries` built, taken back to version 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_the_upgrade_to_version_3() {
    let Some(n) = std::env::var("SYNCLOG_QUERY_BENCH_UPGRADE").ok() else {
        println!("SYNCLOG_QUERY_BENCH_UPGRADE not set: nothing measured");
        return;
    };
    let dir = std::env::var("SYNCLOG_QUERY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let built = dir.join(format!("synclog-query-bench-{n}.db"));
    let db = dir.join(format!("synclog-upgrade-bench-{n}.db"));
    std::fs::copy(&built, &db).unwrap();
    let _ = std::fs::remove_file(dir.join(format!("synclog-upgrade-bench-{n}.db-wal")));
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DROP TRIGGER logs_into_job_stats; DROP TRIGGER logs_out_of_job_stats;
             DROP TRIGGER logs_update_job_stats; DROP TABLE job_stats; DROP TABLE log_attrs;
             DROP TABLE prune_markers;
             DROP INDEX logs_by_recorded; DROP INDEX logs_by_started; DROP INDEX logs_by_finished;
             DROP INDEX logs_by_status; DROP INDEX logs_by_status_recorded;
             PRAGMA user_version = 2; VACUUM;",
        )
        .unwrap();
    }
    let t = Instant::now();
    let store = SqliteStore::open(&db).unwrap();
    println!("upgrading {n} logs from version 2 to 3 took {:?}", t.elapsed());
    store.close().await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("synclog-upgrade-bench-{n}.db{suffix}")));
    }
}
