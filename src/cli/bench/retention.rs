//! `synclog bench --only retention`: pruning half of a guarded pair of `--records` logs
//! (SQLite + JSON lines, the default store), archiving what goes into a JSON-lines file
//! first: the oldest quarter alone, then the next quarter while a reader pages the newest
//! 20 and 16 appenders go on.
//!
//! - End to end (plan, archive, sync and read-back of the archive, marker and deletion in
//!   both copies, space given back), alone and beside the load: target ≥ 200,000 logs/s
//!   at 2M logs.
//! - A reader's newest page of 20 (as `synclog list --limit 20 --desc` asks, on a
//!   read-only open of the pair beside the writer) during the prune: p99 ≤ 100 ms; next to
//!   it the same reader with the appenders alone.
//! - 16 appenders during the prune against the same 16 appenders before it, for as long:
//!   target ≥ 0.5×.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synclog::bench::{self, Timing};
use synclog::retention::{self, Policy, PruneOptions};
use synclog::{Durability, Error, GuardedOptions, LogStore, LogStoreExt, OpenOptions, Result, Scan};

use super::deployment::{at_most, figure, quantile};
use super::{against, at_least, rate, Figure};

/// Concurrent appenders beside the prune.
const APPENDERS: u64 = 16;

/// Every figure of `--only retention`, measured in `dir`.
pub async fn figures(dir: &std::path::Path, records: u64, say: &dyn Fn(&str)) -> Result<Vec<Figure>> {
    let primary = format!("sqlite://{}/retain.db", dir.display());
    let backup = format!("json://{}/retain.jsonl", dir.display());
    let archive_url = format!("json://{}/archive.jsonl", dir.display());
    say(&format!(
        "retention: filling a guarded pair with {records} logs over a year (untimed)"
    ));
    let pair: Arc<dyn LogStore> =
        Arc::new(synclog::open_guarded(&primary, &backup, GuardedOptions::default()).await?);
    let now = chrono::Utc::now();
    bench::fill_query_store(&*pair, records, now, &|n| say(&format!("  {n} logs"))).await?;
    let reader: Arc<dyn LogStore> = Arc::new(
        synclog::open_guarded_with(
            &primary,
            &backup,
            GuardedOptions::default(),
            &OpenOptions {
                read_only: true,
                ..OpenOptions::default()
            },
        )
        .await?,
    );

    // Logs are recorded evenly over the year before `now`: the oldest quarter goes alone
    // (the prune's own speed), the next quarter beside the load.
    let day = 86_400;
    let alone_policy = Policy::default().older_than(Duration::from_secs(273 * day));
    let policy = Policy::default().older_than(Duration::from_secs(182 * day));
    say("retention: planning alone (a dry run)");
    let start = Instant::now();
    let plan = retention::plan_prune(&*pair, &alone_policy, chrono::Utc::now()).await?;
    let planned = Timing {
        ops: plan.count,
        elapsed: start.elapsed(),
    };
    say(&format!(
        "retention: pruning the oldest {} logs with an archive, alone",
        plan.count
    ));
    let archive = synclog::open_url(&format!("json://{}/archive-alone.jsonl", dir.display())).await?;
    let start = Instant::now();
    let first = retention::prune(
        &*pair,
        &alone_policy,
        &PruneOptions {
            archive: Some(archive.clone()),
            durability: Durability::PowerLoss,
            ..PruneOptions::default()
        },
    )
    .await?;
    let by_itself = Timing {
        ops: first.deleted,
        elapsed: start.elapsed(),
    };
    archive.close().await?;
    let plan = retention::plan_prune(&*pair, &policy, chrono::Utc::now()).await?;

    say("retention: 16 appenders and a reader, without a prune (baseline)");
    let baseline_len = by_itself
        .elapsed
        .clamp(Duration::from_secs(2), Duration::from_secs(20));
    let stop = Arc::new(AtomicBool::new(false));
    let load = Load::start(pair.clone(), reader.clone(), stop.clone(), 0);
    tokio::time::sleep(baseline_len).await;
    stop.store(true, Ordering::Release);
    let (alone, alone_reads) = load.finish().await?;

    say(&format!(
        "retention: pruning {} logs with an archive, beside the same load",
        plan.count
    ));
    let archive = synclog::open_url(&archive_url).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = Load::start(pair.clone(), reader.clone(), stop.clone(), 1 << 40);
    let start = Instant::now();
    let pruned = retention::prune(
        &*pair,
        &policy,
        &PruneOptions {
            archive: Some(archive.clone()),
            durability: Durability::PowerLoss,
            ..PruneOptions::default()
        },
    )
    .await;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Release);
    let (during, during_reads) = load.finish().await?;
    let pruned = pruned?;
    archive.close().await?;
    let verified = pair.verify(synclog::VerifyOptions::default()).await?;
    reader.close().await?;
    pair.close().await?;
    if !verified.is_clean() {
        return Err(Error::corrupt(
            pair.describe(),
            format!("the pruned pair does not verify: {verified:?}"),
        ));
    }

    let mut figures = Vec::new();
    figures.push(at_least(
        rate(
            &format!("prune the oldest quarter of {records} alone (archive to JSON lines first), end to end"),
            by_itself,
        ),
        200_000.0,
    ));
    figures.push(rate("  of which planning (a dry run)", planned));
    let mb = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64);
    figures.push(figure(
        "  storage of the pair before".into(),
        mb(first.bytes_before),
        "MiB",
    ));
    figures.push(figure(
        "  storage of the pair after".into(),
        mb(first.bytes_after),
        "MiB",
    ));
    let whole = Timing {
        ops: pruned.deleted,
        elapsed,
    };
    figures.push(at_least(
        rate(
            "prune the next quarter beside 16 appenders and a reader, end to end",
            whole,
        ),
        200_000.0,
    ));
    figures.push(figure(
        "  storage of the pair after (with what was appended meanwhile)".into(),
        mb(pruned.bytes_after),
        "MiB",
    ));
    let base = rate("16 appenders, no prune", alone);
    let beside = against(rate("16 appenders during the prune", during), &base, Some(0.5));
    figures.extend([base, beside]);
    let reads = |v: &[f64]| quantile(v, 0.99);
    figures.push(figure(
        "reader newest 20, no prune, p99".into(),
        reads(&alone_reads),
        "ms",
    ));
    figures.push(at_most(
        figure(
            "reader newest 20 during the prune, p99".into(),
            reads(&during_reads),
            "ms",
        ),
        100.0,
    ));
    Ok(figures)
}

/// 16 appenders and one reader running until `stop`.
struct Load {
    appenders: Vec<tokio::task::JoinHandle<Result<u64>>>,
    reader: tokio::task::JoinHandle<Result<Vec<f64>>>,
    start: Instant,
}

impl Load {
    fn start(pair: Arc<dyn LogStore>, reader: Arc<dyn LogStore>, stop: Arc<AtomicBool>, base: u64) -> Load {
        let appenders = (0..APPENDERS)
            .map(|t| {
                let (pair, stop) = (pair.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Acquire) {
                        pair.append(bench::sample_log(base + t * 1_000_000 + i)).await?;
                        i += 1;
                    }
                    Ok(i)
                })
            })
            .collect();
        let reader = tokio::spawn(async move {
            let mut times = Vec::new();
            let page = Scan {
                limit: 20,
                descending: true,
                ..Scan::default()
            };
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                reader.scan(&page).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(times)
        });
        Load {
            appenders,
            reader,
            start: Instant::now(),
        }
    }

    /// The appenders' timing (appends done while they ran) and the reader's latencies.
    async fn finish(self) -> Result<(Timing, Vec<f64>)> {
        let mut ops = 0;
        for a in self.appenders {
            ops += a.await.map_err(|e| Error::Backend {
                engine: "bench",
                context: "an appender task failed".into(),
                source: Box::new(e),
            })??;
        }
        let elapsed = self.start.elapsed();
        let reads = self.reader.await.map_err(|e| Error::Backend {
            engine: "bench",
            context: "the reader task failed".into(),
            source: Box::new(e),
        })??;
        Ok((Timing { ops, elapsed }, reads))
    }
}
