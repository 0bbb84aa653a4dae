//! Figures, not assertions: append throughput, and the operators' questions at 1M logs
//! next to the best hand-written SQL for each. Runs only with `SYNCLOG_PG_MEASURE=1` (and
//! `SYNCLOG_TEST_POSTGRES_URL`); `SYNCLOG_PG_MEASURE_LOGS` sets the size (default 1M).
//!
//! `SYNCLOG_PG_MEASURE=1 cargo test --release -p synclog-postgres --test measure -- --nocapture`

use std::time::{Duration, Instant};
use synclog_core::LogStoreExt;

use synclog_core::query::{summary_by_scanning, AttrEq, Filter, TimeRange};
use synclog_core::retention::{Policy, PruneMarker};
use synclog_core::{Durability, IdRange, LogId, LogStore, NewLog, Scan, Status};
use synclog_postgres::{PgOptions, PgStore};

mod common;

use common::{drop_schema, raw_client, schema, server};

fn enabled() -> Option<String> {
    let url = server()?;
    if std::env::var("SYNCLOG_PG_MEASURE").as_deref() != Ok("1") {
        eprintln!("notice: SYNCLOG_PG_MEASURE is not 1; skipping the measurements");
        return None;
    }
    Some(url)
}

/// The median of `n` runs of `f`.
async fn median<F, Fut, T>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut times = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(f().await);
        times.push(start.elapsed());
    }
    times.sort();
    times[n / 2]
}

fn opts(s: &str) -> PgOptions {
    PgOptions {
        schema: s.to_string(),
        pool_size: 4,
        ..PgOptions::default()
    }
}

/// Appends: one at a time (a round trip each) and 32 concurrent appenders (group commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_throughput() {
    let Some(url) = enabled() else { return };
    let s = schema("measure_append");
    let store = std::sync::Arc::new(PgStore::connect(&url, opts(&s)).await.unwrap());
    // An experiment's change to the schema (`{s}` is its name), to see what costs what.
    if let Ok(sql) = std::env::var("SYNCLOG_PG_MEASURE_SQL") {
        raw_client(&url)
            .await
            .batch_execute(&sql.replace("{s}", &s))
            .await
            .unwrap();
    }
    let log = || {
        NewLog::new("orders", Status::Succeeded)
            .counts(10, 9, 1)
            .attr("env", "prod")
            .attr("customer", "c-42")
    };
    for d in [Durability::Buffered, Durability::PowerLoss] {
        let n = 2000;
        let start = Instant::now();
        for _ in 0..n {
            store.commit(vec![log()], d).await.unwrap();
        }
        let one = n as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..200 {
                        store.commit(vec![log()], d).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let many = 6400.0 / start.elapsed().as_secs_f64();
        println!("append {d:?}: sequential {one:.0} logs/s, 32 concurrent {many:.0} logs/s");
    }
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}

/// The questions at 1M logs (100 jobs, 60 days, 5% failed, two attributes each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_at_a_million_logs() {
    let Some(url) = enabled() else { return };
    let n: i64 = std::env::var("SYNCLOG_PG_MEASURE_LOGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let s = schema("measure_q");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let admin = raw_client(&url).await;
    let fill = Instant::now();
    admin
        .batch_execute(&format!(
            "INSERT INTO {s}.logs (id, recorded_at, job, status, started_at, finished_at, items_seen,
                                   items_written, items_failed, message, attrs, checksum)
             OVERRIDING SYSTEM VALUE
             SELECT g, now() - interval '60 days' * (1 - g::float8 / {n}), 'job-' || (g % 100),
                    CASE WHEN g % 20 = 3 THEN 'failed' WHEN g % 10 = 1 THEN 'skipped'
                         WHEN g % 20 = 5 THEN 'partial' ELSE 'succeeded' END,
                    now() - interval '60 days' * (1 - g::float8 / {n}) - interval '5 minutes',
                    now() - interval '60 days' * (1 - g::float8 / {n}),
                    g % 1000, g % 900, g % 100, 'm',
                    '{{\"customer\":\"c-' || (g % 1000) || '\",\"env\":\"' || CASE WHEN g % 3 = 0 THEN 'prod' ELSE 'dev' END || '\"}}', 0
             FROM generate_series(1, {n}) g;
             INSERT INTO {s}.attrs (key, value, id)
             SELECT 'customer', '\"c-' || (g % 1000) || '\"', g FROM generate_series(1, {n}) g
             UNION ALL
             SELECT 'env', CASE WHEN g % 3 = 0 THEN '\"prod\"' ELSE '\"dev\"' END, g FROM generate_series(1, {n}) g;
             INSERT INTO {s}.meta (key, value) VALUES ('high_water', {n})
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
             SELECT setval(pg_get_serial_sequence('{s}.logs', 'id'), {n});"
        ))
        .await
        .unwrap();
    for t in ["logs", "attrs", "job_stats"] {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {s}.{t}"))
            .await
            .unwrap();
    }
    println!("filled {n} logs in {:?}", fill.elapsed());
    let now = chrono::Utc::now();
    let reps = 7;

    // 1. Newest 50 failed logs that started in the last 24 h.
    let f1 = Filter::status(Status::Failed).started(TimeRange::since(now - chrono::Duration::hours(24)));
    let scan1 = Scan {
        filter: f1,
        limit: 50,
        descending: true,
        ..Scan::default()
    };
    let t = median(reps, || store.scan(&scan1)).await;
    let sql1 = format!(
        "SELECT * FROM {s}.logs WHERE status = 'failed' AND started_at >= now() - interval '24 hours' \
         ORDER BY id DESC LIMIT 50"
    );
    let b = median(reps, || admin.query(&sql1, &[])).await;
    println!("newest 50 failed, started in 24 h: synclog {t:?}; hand-written {b:?}: {sql1}");

    // 2. Newest 50 logs with one attribute value (1 in 1000 logs).
    let scan2 = Scan {
        filter: Filter::default().attr(AttrEq::parse("customer=c-42").unwrap()),
        limit: 50,
        descending: true,
        ..Scan::default()
    };
    let t = median(reps, || store.scan(&scan2)).await;
    let sql2 = format!(
        "SELECT l.* FROM {s}.attrs a JOIN {s}.logs l ON l.id = a.id \
         WHERE a.key = 'customer' AND a.value = '\"c-42\"' ORDER BY a.id DESC LIMIT 50"
    );
    let b = median(reps, || admin.query(&sql2, &[])).await;
    let sql2j = format!(
        "SELECT * FROM {s}.logs WHERE attrs::jsonb @> '{{\"customer\":\"c-42\"}}' ORDER BY id DESC LIMIT 50"
    );
    let j = median(3, || admin.query(&sql2j, &[])).await;
    println!("newest 50 with customer=c-42: synclog {t:?}; hand-written {b:?}: {sql2}; unindexed jsonb {j:?}: {sql2j}");

    // 3. Count by status over the last week.
    let week = TimeRange::since(now - chrono::Duration::days(7));
    let start = Instant::now();
    for _ in 0..reps {
        for st in [
            Status::Succeeded,
            Status::Failed,
            Status::Skipped,
            Status::Partial,
        ] {
            store.count(&Filter::status(st).recorded(week)).await.unwrap();
        }
    }
    let t = start.elapsed() / reps as u32;
    let sql3 = format!(
        "SELECT status, count(*) FROM {s}.logs WHERE recorded_at >= now() - interval '7 days' GROUP BY status"
    );
    let b = median(reps, || admin.query(&sql3, &[])).await;
    println!("count by status over a week (4 counts): synclog {t:?}; hand-written {b:?}: {sql3}");

    // 4. Summary over 100 jobs, empty filter.
    let empty = Filter::default();
    let t = median(reps, || store.summary(&empty)).await;
    let sql4 = format!(
        "SELECT job, status, count(*), sum(items_seen), sum(items_written), sum(items_failed), \
         min(started_at), max(recorded_at), max(id) FROM {s}.logs GROUP BY job, status"
    );
    let b = median(3, || admin.query(&sql4, &[])).await;
    let sql4s = format!("SELECT * FROM {s}.job_stats");
    let bs = median(reps, || admin.query(&sql4s, &[])).await;
    let jobs = store.summary(&Filter::default()).await.unwrap().jobs.len();
    println!(
        "summary of {jobs} jobs, empty filter: synclog {t:?}; hand-written aggregate {b:?}: {sql4}; \
         reading the aggregates table alone {bs:?}"
    );
    // 4b. Summary with a filter (aggregated over the matching records).
    let f4 = Filter::default().recorded(week);
    let t = median(3, || store.summary(&f4)).await;
    println!("summary of the last week: synclog {t:?}");
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}

/// A prune of 1M logs (of 1.2M; 100 jobs, two attributes each, a third of them in runs of
/// about 100 records): the transaction that deletes them (with their attributes, and the
/// triggers' `job_stats` and `runs` rows), then the `VACUUM` after it. Prints both rates
/// and the schema's size before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_a_million_logs() {
    let Some(url) = enabled() else { return };
    let gone: i64 = std::env::var("SYNCLOG_PG_MEASURE_LOGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let n = gone + gone / 5;
    let s = schema("measure_prune");
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let admin = raw_client(&url).await;
    let fill = Instant::now();
    admin
        .batch_execute(&format!(
            "INSERT INTO {s}.logs (id, recorded_at, job, status, started_at, finished_at, items_seen,
                                   items_written, items_failed, message, attrs, checksum, run_key)
             OVERRIDING SYSTEM VALUE
             SELECT g, now() - interval '60 days' * (1 - g::float8 / {n}), 'job-' || (g % 100),
                    CASE WHEN g % 20 = 3 THEN 'failed' WHEN g % 10 = 1 THEN 'skipped'
                         WHEN g % 20 = 5 THEN 'partial' ELSE 'succeeded' END,
                    now() - interval '60 days' * (1 - g::float8 / {n}) - interval '5 minutes',
                    now() - interval '60 days' * (1 - g::float8 / {n}),
                    g % 1000, g % 900, g % 100, 'm',
                    '{{\"customer\":\"c-' || (g % 1000) || '\",\"env\":\"' || CASE WHEN g % 3 = 0 THEN 'prod' ELSE 'dev' END || '\"}}', 0,
                    CASE WHEN g % 3 = 0 THEN 'run-' || (g % 100) || '-' || (g / 30000) END
             FROM generate_series(1, {n}) g;
             INSERT INTO {s}.attrs (key, value, id)
             SELECT 'customer', '\"c-' || (g % 1000) || '\"', g FROM generate_series(1, {n}) g
             UNION ALL
             SELECT 'env', CASE WHEN g % 3 = 0 THEN '\"prod\"' ELSE '\"dev\"' END, g FROM generate_series(1, {n}) g;
             INSERT INTO {s}.meta (key, value) VALUES ('high_water', {n})
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
             SELECT setval(pg_get_serial_sequence('{s}.logs', 'id'), {n});"
        ))
        .await
        .unwrap();
    for t in ["logs", "attrs", "job_stats", "runs"] {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {s}.{t}"))
            .await
            .unwrap();
    }
    println!("filled {n} logs in {:?}", fill.elapsed());
    let before = store.storage_bytes().await.unwrap().unwrap();
    let id = |i: i64| LogId::new(i as u64).unwrap();
    let marker = PruneMarker::new(
        chrono::Utc::now(),
        Policy::default().before_id(id(gone + 1)),
        vec![IdRange::new(id(1), id(gone)).unwrap()],
        "0".repeat(64),
        None,
    );
    // When the VACUUM after the deletion starts, seen from another connection.
    let watcher = raw_client(&url).await;
    let start = Instant::now();
    let pattern = format!("VACUUM %{s}%");
    let watch = tokio::spawn(async move {
        loop {
            let n: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active'",
                    &[&pattern],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let applied = store.apply_prune(&marker, Durability::PowerLoss).await.unwrap();
    let total = start.elapsed();
    let deleting = tokio::time::timeout(Duration::from_millis(100), watch)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(total);
    assert_eq!(applied.deleted, gone as u64);
    let after = store.storage_bytes().await.unwrap().unwrap();
    let again = Instant::now();
    admin
        .batch_execute(&format!("VACUUM {s}.logs, {s}.attrs, {s}.job_stats, {s}.runs"))
        .await
        .unwrap();
    let idle_vacuum = again.elapsed();
    println!(
        "prune of {gone} logs: the deleting transaction {deleting:?} ({:.0} logs/s); with the VACUUM after it \
         {total:?} ({:.0} logs/s); a VACUUM with nothing left to do takes {idle_vacuum:?}; \
         {before} bytes before, {after} after",
        gone as f64 / deleting.as_secs_f64(),
        gone as f64 / total.as_secs_f64()
    );
    assert_eq!(
        store.summary(&Filter::default()).await.unwrap(),
        summary_by_scanning(&store, &Filter::default()).await.unwrap()
    );
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}
