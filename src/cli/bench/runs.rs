//! `synclog bench --only runs`: what runs and idempotency keys cost.
//!
//! - 64 appenders with an idempotency key each against 64 without, on SQLite and on the
//!   guarded pair, taking turns in rounds (A B A B …) so a drift of the disk weighs on both
//!   sides of the ratio. Target: keyed ≥ 1/1.2 of unkeyed (a key costs at most 1.2×).
//! - A SQLite store of `--records` logs in runs of three records (started, progress,
//!   terminal; one run in 100 left unfinished, started two days ago): the stale runs, and
//!   the newest page (50) of one job's runs with their latest state, each the median of 21
//!   queries. Target: ≤ 20 ms at 1M logs. Next to them, the same answers by reading every
//!   record (what an engine without an index does), once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use synclog::bench::{self, Timing};
use synclog::{Durability, Error, LogId, LogRecord, LogStore, LogStoreExt, Result, RunScan, Status};

use super::{against, rate, Figure};

/// Rounds of the keyed/unkeyed comparison.
const ROUNDS: u64 = 3;
/// Concurrent appenders.
const TASKS: u64 = 64;

/// Every figure of `--only runs`, measured in `dir`.
pub async fn figures(
    dir: &std::path::Path,
    each: u64,
    records: u64,
    say: &dyn Fn(&str),
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    say("idempotency keys: 64 appenders with a key against 64 without, SQLite and guarded, in rounds");
    let per = (each / ROUNDS).max(1);
    let sqlite = synclog::open_url(&format!("sqlite://{}/keys-alone.db", dir.display())).await?;
    let guarded: Arc<dyn LogStore> = Arc::new(bench::guarded_pair(dir, "keys").await?);
    let (mut plain, mut keyed, mut g_plain, mut g_keyed) =
        (Timing::ZERO, Timing::ZERO, Timing::ZERO, Timing::ZERO);
    for round in 0..ROUNDS {
        let base = round * TASKS * per;
        plain = plain.plus(appenders(sqlite.clone(), base, per, false).await?);
        keyed = keyed.plus(appenders(sqlite.clone(), base, per, true).await?);
        g_plain = g_plain.plus(appenders(guarded.clone(), base, per, false).await?);
        g_keyed = g_keyed.plus(appenders(guarded.clone(), base, per, true).await?);
    }
    sqlite.close().await?;
    guarded.close().await?;
    let target = Some(1.0 / 1.2);
    let sqlite_plain = rate("sqlite 64 appenders, no key", plain);
    let f = against(
        rate("sqlite 64 appenders, each with an idempotency key", keyed),
        &sqlite_plain,
        target,
    );
    figures.extend([sqlite_plain, f]);
    let guarded_plain = rate("guarded 64 appenders, no key", g_plain);
    let f = against(
        rate("guarded 64 appenders, each with an idempotency key", g_keyed),
        &guarded_plain,
        target,
    );
    figures.extend([guarded_plain, f]);

    say(&format!(
        "runs at {records} logs: filling a SQLite store by import (untimed)"
    ));
    let store = synclog::open_url(&format!("sqlite://{}/runs-alone.db", dir.display())).await?;
    let now = chrono::Utc::now();
    fill_runs(&*store, records, now).await?;
    // As `synclog runs --stale` asks (its default page of 50).
    let stale = RunScan {
        limit: 50,
        ..RunScan::stale(now - chrono::Duration::hours(24))
    };
    let page = RunScan {
        filter: synclog::Filter::job(job(7)),
        limit: 50,
        descending: true,
        ..RunScan::default()
    };
    say("runs: stale runs and a job's newest 50 runs, from the index (median of 21)");
    let (t_stale, n_stale) = median_query(&*store, &stale).await?;
    let (t_page, n_page) = median_query(&*store, &page).await?;
    say("runs: the same answers by reading every record (once)");
    let (t_stale_scan, n_stale_scan) = by_scanning(&*store, &stale).await?;
    let (t_page_scan, n_page_scan) = by_scanning(&*store, &page).await?;
    store.close().await?;
    if (n_stale, n_page) != (n_stale_scan, n_page_scan) {
        return Err(Error::corrupt(
            "bench",
            format!("the index answered {n_stale}/{n_page} runs, reading every record {n_stale_scan}/{n_page_scan}"),
        ));
    }
    for (name, t, scan_t, n) in [
        (
            format!("sqlite runs --stale (first 50) at {records} logs"),
            t_stale,
            t_stale_scan,
            n_stale,
        ),
        (
            format!("sqlite newest 50 runs of a job at {records} logs"),
            t_page,
            t_page_scan,
            n_page,
        ),
    ] {
        if n == 0 {
            return Err(Error::corrupt("bench", format!("{name}: no run found")));
        }
        let scan_fig = ms(&format!("{name}, reading every record"), scan_t, None);
        let mut f = ms(&name, t, Some(20.0));
        f.baseline = Some(scan_fig.name.clone());
        f.ratio = Some(f.value / scan_fig.value.max(1e-9));
        figures.extend([f, scan_fig]);
    }
    Ok(figures)
}

fn job(n: u64) -> String {
    format!("sync-job-{:02}", n % 16)
}

/// `TASKS` appenders, `per` appends each, with or without an idempotency key.
async fn appenders(store: Arc<dyn LogStore>, base: u64, per: u64, keyed: bool) -> Result<Timing> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let n = base + t * per + i;
                    let mut log = bench::sample_log(n);
                    if keyed {
                        // Keys as apps make them: unrelated to the order of commits.
                        log.idempotency_key = Some(format!("{:016x}-{n}", bench::spread(n)));
                    }
                    let done = store.append_report(log, Durability::PowerLoss).await?;
                    if done.repeat {
                        return Err(Error::corrupt(
                            "bench",
                            format!("key bench-{n} came back as a repeat"),
                        ));
                    }
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| Error::Backend {
            engine: "bench",
            context: "an appender task".into(),
            source: Box::new(e),
        })??;
    }
    Ok(Timing {
        ops: TASKS * per,
        elapsed: start.elapsed(),
    })
}

/// `n` logs in runs of three (started, progress, terminal), imported in big groups; one
/// run in 100 stops after its start, two days before `now`.
async fn fill_runs(store: &dyn LogStore, n: u64, now: synclog::Timestamp) -> Result<()> {
    let mut batch = Vec::with_capacity(10_000);
    for i in 1..=n {
        let (run, step) = ((i - 1) / 3, (i - 1) % 3);
        let unfinished = run % 100 == 42;
        if unfinished && step > 0 {
            // An id no run uses: a plain log keeps the ids dense.
            batch.push(seal(i, bench::sample_log(i), now)?);
        } else {
            let status = [Status::Started, Status::Progress, Status::Succeeded][step as usize];
            let mut log = bench::sample_log(run);
            log.status = status;
            log.run = Some(format!("run-{run}"));
            if unfinished {
                log.started_at = now - chrono::Duration::hours(48);
            }
            batch.push(seal(i, log, now)?);
        }
        if batch.len() == 10_000 || i == n {
            store
                .import(std::mem::take(&mut batch), Durability::Process)
                .await?;
        }
    }
    store.sync(Durability::PowerLoss).await
}

fn seal(id: u64, log: synclog::NewLog, now: synclog::Timestamp) -> Result<LogRecord> {
    LogRecord::seal(
        LogId::new(id).ok_or_else(|| Error::invalid("records", "too many"))?,
        now,
        log,
    )
}

/// The median time of 21 runs of `scan` (after one to warm up), and how many runs it found.
async fn median_query(store: &dyn LogStore, scan: &RunScan) -> Result<(Duration, usize)> {
    let found = store.runs(scan).await?.len();
    let mut times = Vec::with_capacity(21);
    for _ in 0..21 {
        let start = Instant::now();
        store.runs(scan).await?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[10], found))
}

/// The answer to `scan` by reading every record, as an engine without an index gives it.
async fn by_scanning(store: &dyn LogStore, scan: &RunScan) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let runs = synclog::run::runs_by_scanning(store, scan).await?;
    Ok((start.elapsed(), runs.len()))
}

fn ms(name: &str, t: Duration, max: Option<f64>) -> Figure {
    let value = t.as_secs_f64() * 1000.0;
    Figure {
        name: name.into(),
        value,
        unit: "ms",
        baseline: None,
        ratio: None,
        target: max.map(|m| format!("<= {m} ms at 1000000 logs")),
        met: max.map(|m| value <= m),
        error: None,
    }
}
