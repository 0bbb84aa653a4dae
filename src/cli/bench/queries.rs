//! `synclog bench --only queries`: the questions operators ask, at `--records` logs, next
//! to the same question hand-written in SQL against the same file with the best index for
//! it, and what following costs.
//!
//! The store: `--records` logs of [`synclog::bench::query_log`] (100 jobs, a year of
//! history, attributes `env` and `tenant`), imported untimed. Each question is the median
//! of 21 runs after one to warm up; its answer is checked against the baseline's.
//!
//! - newest 50 failed logs started in the last 24 h;
//! - newest 50 logs with `tenant = "t-7"`;
//! - the count of each status over the last week (`count_by_status` against one
//!   `GROUP BY`);
//! - the summary of 100 jobs over everything.
//!
//! Target: each ≤ 20 ms at 10M logs on SQLite, and ≤ 1.5× its baseline (both engines). The baselines
//! run after synclog's queries, with indexes made for them (`bench_*`) that synclog's own
//! queries never saw.
//!
//! Following: a follower's delay from an append's acknowledgement to its delivery, in one
//! process and across processes (`synclog tail -f --json` as a child), p99 of 200; and
//! what 100 idle followers cost 64 appenders (with and without them, in rounds; the
//! followers have started and made their first read before a round is timed). Targets:
//! p99 ≤ 50 ms in one process, ≤ 250 ms across processes; appends with the followers ≥
//! 0.95× without.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use synclog::bench::{self, Timing};
use synclog::follow::Follower;
use synclog::query::{AttrEq, TimeRange};
use synclog::{Error, Filter, LogRecord, LogStore, LogStoreExt, Result, Scan, Status, Timestamp};

use super::{against, rate, Figure};

/// The median of 21 timed runs of `f` (after one untimed), and the first answer.
async fn median<T, F, Fut>(mut f: F) -> Result<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let answer = f().await?;
    let mut times = Vec::with_capacity(21);
    for _ in 0..21 {
        let start = Instant::now();
        f().await?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[10], answer))
}

/// The four questions, as synclog is asked them.
struct Questions {
    failed_day: Scan,
    tenant: Scan,
    week: Filter,
}

impl Questions {
    fn new(now: Timestamp) -> Questions {
        let week = TimeRange::since(now - chrono::Duration::days(7));
        Questions {
            failed_day: Scan {
                filter: Filter::status(Status::Failed)
                    .started(TimeRange::since(now - chrono::Duration::hours(24))),
                limit: 50,
                descending: true,
                ..Scan::default()
            },
            tenant: Scan {
                filter: Filter::default().attr(AttrEq::new("tenant", "t-7")),
                limit: 50,
                descending: true,
                ..Scan::default()
            },
            week: Filter::default().recorded(week),
        }
    }
}

/// What synclog answered: the ids of the two pages, the week's counts by status (as
/// `status=count` text, zero counts left out), and each job's log count.
#[derive(Debug, PartialEq)]
struct Answers {
    failed_day: Vec<u64>,
    tenant: Vec<u64>,
    week: Vec<String>,
    jobs: Vec<(String, u64)>,
}

/// A question's figure and its baseline's; `max_ms` is the absolute target, if any (the
/// issue sets one for SQLite only).
fn figure(name: &str, ours: Duration, base: Duration, max_ms: Option<f64>) -> [Figure; 2] {
    let ms = |name: String, t: Duration| Figure {
        name,
        value: t.as_secs_f64() * 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        target: None,
        met: None,
        error: None,
    };
    let b = ms(format!("{name}, hand-written SQL"), base);
    let mut f = ms(name.to_string(), ours);
    let ratio = f.value / b.value.max(1e-9);
    f.baseline = Some(b.name.clone());
    f.ratio = Some(ratio);
    f.target = Some(match max_ms {
        Some(max) => format!("<= {max} ms and <= 1.5 x hand-written SQL"),
        None => "<= 1.5 x hand-written SQL".into(),
    });
    f.met = Some(max_ms.is_none_or(|max| f.value <= max) && ratio <= 1.5);
    [f, b]
}

async fn ours(store: &dyn LogStore, q: &Questions) -> Result<(Vec<Duration>, Answers)> {
    let (t1, failed_day) = median(|| async { store.scan(&q.failed_day).await }).await?;
    let (t2, tenant) = median(|| async { store.scan(&q.tenant).await }).await?;
    let (t3, week) = median(|| async {
        let counts = store.count_by_status(&q.week).await?;
        Ok(counts.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>())
    })
    .await?;
    let (t4, summary) = median(|| async { store.summary(&Filter::default()).await }).await?;
    let ids = |v: Vec<LogRecord>| v.into_iter().map(|r| r.id.get()).collect();
    Ok((
        vec![t1, t2, t3, t4],
        Answers {
            failed_day: ids(failed_day),
            tenant: ids(tenant),
            week: {
                let mut w = week;
                w.sort();
                w
            },
            jobs: summary.jobs.iter().map(|j| (j.job.clone(), j.total())).collect(),
        },
    ))
}

/// The same questions in SQL on the SQLite file, with an index made for each.
fn sqlite_baselines(path: &std::path::Path, now: Timestamp) -> Result<(Vec<Duration>, Answers)> {
    use rusqlite::Connection;
    let e = |ctx: &'static str| {
        move |err: rusqlite::Error| Error::Backend {
            engine: "bench",
            context: format!("sqlite baseline: {ctx}"),
            source: Box::new(err),
        }
    };
    let conn = Connection::open(path).map_err(e("opening"))?;
    // As synclog's connections: without the planner's stability guarantee, SQLite (built
    // with STAT4, and with the statistics of the ANALYZE below) would parse and plan each
    // of these statements again at every run, for its new bound value.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(e("enabling stable query plans"))?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS bench_status_started ON logs(status, started_at);
         CREATE INDEX IF NOT EXISTS bench_tenant ON logs(json_extract(attrs, '$.tenant'), id);
         CREATE INDEX IF NOT EXISTS bench_recorded_status ON logs(recorded_at, status);
         CREATE INDEX IF NOT EXISTS bench_summary ON logs(job, status, items_seen, items_written, items_failed, started_at, recorded_at);
         ANALYZE;",
    )
    .map_err(e("making the baseline indexes"))?;
    let day = (now - chrono::Duration::hours(24)).timestamp_micros();
    let week = (now - chrono::Duration::days(7)).timestamp_micros();
    let page = |sql: &str, arg: rusqlite::types::Value| -> Result<Vec<u64>> {
        let mut stmt = conn.prepare_cached(sql).map_err(e("preparing"))?;
        let mut rows = stmt.query([arg]).map_err(e("querying"))?;
        let mut ids = Vec::new();
        while let Some(row) = rows.next().map_err(e("reading"))? {
            // Read every column, as synclog does.
            let id: i64 = row.get(0).map_err(e("reading"))?;
            for i in 1..row.as_ref().column_count() {
                let _ = row.get_ref(i).map_err(e("reading"))?;
            }
            ids.push(id as u64);
        }
        Ok(ids)
    };
    let timed = |f: &dyn Fn() -> Result<()>| -> Result<Duration> {
        f()?;
        let mut times = Vec::with_capacity(21);
        for _ in 0..21 {
            let start = Instant::now();
            f()?;
            times.push(start.elapsed());
        }
        times.sort();
        Ok(times[10])
    };
    let q1 = "SELECT * FROM logs WHERE status = 'failed' AND started_at >= ?1 ORDER BY id DESC LIMIT 50";
    let q2 = "SELECT * FROM logs WHERE json_extract(attrs, '$.tenant') = ?1 ORDER BY id DESC LIMIT 50";
    let q3 = "SELECT status, count(*) FROM logs WHERE recorded_at >= ?1 GROUP BY status";
    let q4 = "SELECT job, status, count(*), sum(items_seen), sum(items_written), sum(items_failed), \
              min(started_at), max(recorded_at) FROM logs GROUP BY job, status";
    let week_counts = || -> Result<Vec<String>> {
        let mut stmt = conn.prepare_cached(q3).map_err(e("preparing"))?;
        let rows = stmt
            .query_map([week], |r| {
                Ok(format!("{}={}", r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(e("querying"))?;
        let mut out = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(e("reading"))?;
        out.sort();
        Ok(out)
    };
    let jobs = || -> Result<Vec<(String, u64)>> {
        let mut stmt = conn.prepare_cached(q4).map_err(e("preparing"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(2)? as u64)))
            .map_err(e("querying"))?;
        let mut per: std::collections::BTreeMap<String, u64> = Default::default();
        for row in rows {
            let (job, n) = row.map_err(e("reading"))?;
            *per.entry(job).or_default() += n;
        }
        Ok(per.into_iter().collect())
    };
    let answers = Answers {
        failed_day: page(q1, day.into())?,
        tenant: page(q2, "t-7".to_string().into())?,
        week: week_counts()?,
        jobs: jobs()?,
    };
    let times = vec![
        timed(&|| page(q1, day.into()).map(drop))?,
        timed(&|| page(q2, "t-7".to_string().into()).map(drop))?,
        timed(&|| week_counts().map(drop))?,
        timed(&|| jobs().map(drop))?,
    ];
    Ok((times, answers))
}

/// The same questions in SQL on the PostgreSQL schema, with an index made for each.
async fn postgres_baselines(url: &str, schema: &str, now: Timestamp) -> Result<(Vec<Duration>, Answers)> {
    let e = |ctx: &'static str| {
        move |err: tokio_postgres::Error| Error::Backend {
            engine: "bench",
            context: format!("postgres baseline: {ctx}"),
            source: Box::new(err),
        }
    };
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(e("connecting"))?;
    tokio::spawn(conn);
    let s = format!("\"{schema}\"");
    client
        .batch_execute(&format!(
            "CREATE INDEX bench_status_started ON {s}.logs (status, started_at);
             CREATE INDEX bench_tenant ON {s}.logs ((attrs::jsonb ->> 'tenant'), id);
             CREATE INDEX bench_recorded_status ON {s}.logs (recorded_at, status);
             CREATE INDEX bench_summary ON {s}.logs (job, status, items_seen, items_written, items_failed, started_at, recorded_at);"
        ))
        .await
        .map_err(e("making the baseline indexes"))?;
    // Its own statement: VACUUM cannot run inside the implicit transaction of a batch.
    client
        .batch_execute(&format!("VACUUM ANALYZE {s}.logs"))
        .await
        .map_err(e("vacuuming"))?;
    let day = (now - chrono::Duration::hours(24)).to_rfc3339();
    let week = (now - chrono::Duration::days(7)).to_rfc3339();
    let q1 = format!(
        "SELECT * FROM {s}.logs WHERE status = 'failed' AND started_at >= '{day}'::timestamptz ORDER BY id DESC LIMIT 50"
    );
    let q2 =
        format!("SELECT * FROM {s}.logs WHERE (attrs::jsonb ->> 'tenant') = 't-7' ORDER BY id DESC LIMIT 50");
    let q3 = format!(
        "SELECT status, count(*) FROM {s}.logs WHERE recorded_at >= '{week}'::timestamptz GROUP BY status"
    );
    let q4 = format!(
        "SELECT job, status, count(*), sum(items_seen), sum(items_written), sum(items_failed), \
         min(started_at), max(recorded_at) FROM {s}.logs GROUP BY job, status"
    );
    let page = |sql: String| {
        let client = &client;
        async move {
            let rows = client.query(&sql, &[]).await.map_err(e("querying"))?;
            Ok::<Vec<u64>, Error>(rows.iter().map(|r| r.get::<_, i64>("id") as u64).collect())
        }
    };
    let week_counts = || async {
        let rows = client.query(&q3, &[]).await.map_err(e("querying"))?;
        let mut out: Vec<String> = rows
            .iter()
            .map(|r| format!("{}={}", r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        out.sort();
        Ok::<_, Error>(out)
    };
    let jobs = || async {
        let rows = client.query(&q4, &[]).await.map_err(e("querying"))?;
        let mut per: std::collections::BTreeMap<String, u64> = Default::default();
        for r in &rows {
            *per.entry(r.get::<_, String>(0)).or_default() += r.get::<_, i64>(2) as u64;
        }
        Ok::<_, Error>(per.into_iter().collect::<Vec<_>>())
    };
    let (t1, failed_day) = median(|| page(q1.clone())).await?;
    let (t2, tenant) = median(|| page(q2.clone())).await?;
    let (t3, week) = median(week_counts).await?;
    let (t4, jobs) = median(jobs).await?;
    Ok((
        vec![t1, t2, t3, t4],
        Answers {
            failed_day,
            tenant,
            week,
            jobs,
        },
    ))
}

/// `VACUUM ANALYZE` of every table in `schema`: statistics for the planner, and the
/// visibility map that lets an index answer alone, as the baselines get them.
async fn analyze(url: &str, schema: &str) -> Result<()> {
    let e = |err: tokio_postgres::Error| Error::Backend {
        engine: "bench",
        context: "postgres: vacuuming and analyzing the filled schema".into(),
        source: Box::new(err),
    };
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(e)?;
    tokio::spawn(conn);
    let tables = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .map_err(e)?;
    for t in tables {
        let name: String = t.get(0);
        client
            .batch_execute(&format!("VACUUM ANALYZE \"{schema}\".\"{name}\""))
            .await
            .map_err(e)?;
    }
    Ok(())
}

/// The four questions on `store` and in SQL, checked to agree, as figures named `engine …`.
fn compare(
    engine: &str,
    records: u64,
    ours: (Vec<Duration>, Answers),
    base: (Vec<Duration>, Answers),
) -> Result<Vec<Figure>> {
    if ours.1 != base.1 {
        return Err(Error::corrupt(
            "bench",
            format!(
                "{engine}: synclog and the SQL baseline disagree:\n{:?}\n{:?}",
                ours.1, base.1
            ),
        ));
    }
    Ok(NAMES
        .iter()
        .enumerate()
        .flat_map(|(i, name)| {
            let max_ms = (engine == "sqlite").then_some(20.0);
            figure(
                &format!("{engine} {name} at {records} logs"),
                ours.0[i],
                base.0[i],
                max_ms,
            )
        })
        .collect())
}

const NAMES: [&str; 4] = [
    "newest 50 failed logs started in the last 24 h",
    "newest 50 logs with one attribute value",
    "count by status over the last week",
    "summary of 100 jobs",
];

/// Rounds of the idle-followers comparison (each appender appends `--each` logs a round).
const ROUNDS: u64 = 5;

/// Every figure of `--only queries`.
pub async fn figures(
    dir: &std::path::Path,
    records: u64,
    each: u64,
    postgres: Option<&str>,
    say: &dyn Fn(&str),
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let path = dir.join("queries.db");
    let url = format!("sqlite://{}", path.display());
    let now = Utc::now();
    say(&format!(
        "queries: filling a SQLite store with {records} logs (untimed)"
    ));
    let store = synclog::open_url(&url).await?;
    bench::fill_query_store(&*store, records, now, &|i| say(&format!("  {i} logs"))).await?;
    let q = Questions::new(now);
    say("queries: synclog's answers (median of 21 each)");
    let ours_sqlite = ours(&*store, &q).await?;
    store.close().await?;
    say("queries: the same in hand-written SQL with an index made for each (median of 21 each)");
    let base = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || sqlite_baselines(&path, now))
            .await
            .map_err(|e| Error::Backend {
                engine: "bench",
                context: "the SQL baselines".into(),
                source: Box::new(e),
            })??
    };
    figures.extend(compare("sqlite", records, ours_sqlite, base)?);
    std::fs::remove_file(&path).ok();

    if let Some(url) = postgres {
        let schema = format!("synclog_bench_q_{}", std::process::id());
        let sep = if url.contains('?') { '&' } else { '?' };
        say(&format!(
            "queries: filling a PostgreSQL schema with {records} logs (untimed)"
        ));
        let store = synclog::open_url(&format!("{url}{sep}synclog_schema={schema}")).await?;
        let result = async {
            bench::fill_query_store(&*store, records, now, &|i| say(&format!("  {i} logs"))).await?;
            // What autovacuum would have done by the time anyone asks: statistics for the
            // planner and the visibility map (untimed; the baselines get theirs again
            // after their own indexes).
            analyze(url, &schema).await?;
            say("queries: postgres, synclog's answers, then hand-written SQL (median of 21 each)");
            let ours_pg = ours(&*store, &q).await?;
            let base = postgres_baselines(url, &schema, now).await?;
            compare("postgres", records, ours_pg, base)
        }
        .await;
        store.close().await?;
        bench::drop_postgres_schema(url, &schema).await?;
        figures.extend(result?);
    }

    say("follow: delay from acknowledgement to delivery, in one process and across processes");
    let follow_url = format!("sqlite://{}/follow.db", dir.display());
    let store = synclog::open_url(&follow_url).await?;
    figures.push(latency_figure(
        "follower delay, one process, p99 of 200",
        in_process_delays(store.clone()).await?,
        50.0,
    ));
    figures.push(latency_figure(
        "follower delay, another process (synclog tail -f), p99 of 200",
        cross_process_delays(store.clone(), &follow_url).await?,
        250.0,
    ));
    store.close().await?;

    say("follow: 64 appenders with and without 100 idle followers, in 5 rounds of --each appends per appender");
    let store = synclog::open_url(&format!("sqlite://{}/idle.db", dir.display())).await?;
    let (mut without, mut with) = (Timing::ZERO, Timing::ZERO);
    let per = each.max(1);
    for _ in 0..ROUNDS {
        without = without.plus(bench::concurrent_appenders(store.clone(), 64, per).await?);
        let stop = Arc::new(tokio::sync::Notify::new());
        // Idle: each has started watching and made its first read before the round is
        // timed (their start-up is not what an idle follower costs).
        let ready = Arc::new(tokio::sync::Barrier::new(101));
        let followers: Vec<_> = (0..100)
            .map(|_| {
                let store = store.clone();
                let (stop, ready) = (stop.clone(), ready.clone());
                tokio::spawn(async move {
                    let started = async {
                        let after = store.last_id().await?;
                        let mut f = Follower::new(store, Filter::job("nobody-writes-this"), after)?;
                        f.try_next_batch().await?;
                        Ok::<_, Error>(f)
                    }
                    .await;
                    ready.wait().await;
                    let mut f = started?;
                    tokio::select! {
                        got = f.next() => got.map(drop),
                        _ = stop.notified() => Ok(()),
                    }
                })
            })
            .collect();
        ready.wait().await;
        with = with.plus(bench::concurrent_appenders(store.clone(), 64, per).await?);
        stop.notify_waiters();
        for f in followers {
            f.await.map_err(|e| Error::Backend {
                engine: "bench",
                context: "a follower task".into(),
                source: Box::new(e),
            })??;
        }
    }
    store.close().await?;
    let base = rate("sqlite 64 appenders", without);
    let f = against(
        rate("sqlite 64 appenders beside 100 idle followers", with),
        &base,
        Some(0.95),
    );
    figures.extend([base, f]);
    Ok(figures)
}

fn latency_figure(name: &str, mut delays: Vec<Duration>, max_ms: f64) -> Figure {
    delays.sort();
    let p99 = delays[(delays.len() * 99 / 100).min(delays.len() - 1)];
    let value = p99.as_secs_f64() * 1000.0;
    Figure {
        name: name.into(),
        value,
        unit: "ms",
        baseline: None,
        ratio: None,
        target: Some(format!("<= {max_ms} ms")),
        met: Some(value <= max_ms),
        error: None,
    }
}

/// 200 appends, one at a time; a follower task notes when each arrives.
async fn in_process_delays(store: Arc<dyn LogStore>) -> Result<Vec<Duration>> {
    let after = store.last_id().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut f = Follower::new(store, Filter::default(), after)?;
            for _ in 0..200 {
                let rec = f.next().await?;
                if tx.send((rec.id, Instant::now())).is_err() {
                    break;
                }
            }
            Ok::<(), Error>(())
        })
    };
    let mut delays = Vec::with_capacity(200);
    for n in 0..200 {
        let rec = store.append(bench::sample_log(n)).await?;
        let acked = Instant::now();
        let (id, seen) = rx
            .recv()
            .await
            .ok_or_else(|| Error::corrupt("bench", "the follower stopped"))?;
        if id != rec.id {
            return Err(Error::corrupt(
                "bench",
                format!("followed {id}, appended {}", rec.id),
            ));
        }
        delays.push(seen.saturating_duration_since(acked));
        // Spread the appends, so each is waited for on its own.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1..10))).await;
    }
    follower.await.map_err(|e| Error::Backend {
        engine: "bench",
        context: "the follower task".into(),
        source: Box::new(e),
    })??;
    Ok(delays)
}

/// 200 appends, one at a time, while `synclog tail -f --json` follows in another process.
async fn cross_process_delays(store: Arc<dyn LogStore>, url: &str) -> Result<Vec<Duration>> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the synclog binary", e))?;
    let mut child = Command::new(exe)
        .args(["--no-backup", "--store", url, "tail", "-f", "-n", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io("starting synclog tail -f", e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::corrupt("bench", "no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send((line, Instant::now())).is_err() {
                break;
            }
        }
    });
    let result = async {
        // Until the child follows, appends may land before its start: append one every
        // 300 ms until it prints a line.
        let mut warmed = false;
        for n in 0..100 {
            store.append(bench::sample_log(1_000_000 + n)).await?;
            if rx.recv_timeout(Duration::from_millis(300)).is_ok() {
                warmed = true;
                break;
            }
        }
        if !warmed {
            return Err(Error::corrupt(
                "bench",
                "synclog tail -f printed nothing for 30 s",
            ));
        }
        let mut delays = Vec::with_capacity(200);
        for n in 1..=200 {
            let rec = store.append(bench::sample_log(n)).await?;
            let acked = Instant::now();
            let want = format!("{{\"id\":{},", rec.id);
            // Lines of the warm-up appends may still come first.
            let seen = loop {
                let (line, seen) = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
                    Error::corrupt("bench", format!("synclog tail -f did not print log {}", rec.id))
                })?;
                if line.starts_with(&want) {
                    break seen;
                }
            };
            delays.push(seen.saturating_duration_since(acked));
            tokio::time::sleep(Duration::from_millis(fastrand::u64(1..10))).await;
        }
        Ok(delays)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
