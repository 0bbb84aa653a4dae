//! `synclog bench`: every figure next to its baseline, measured in the same run on the
//! same disk, as a table or JSON. It measures every engine, so a build without all of
//! them answers with a clear error instead.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "json", feature = "sled", feature = "postgres")),
    allow(dead_code, unused_imports)
)]

mod deployment;
mod hidden;
#[cfg(all(feature = "sqlite", feature = "json", feature = "sled", feature = "postgres"))]
mod queries;
mod retention;
mod runs;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde::Serialize;
use synclog::bench::{self, Timing};
use synclog::{Error, LogStore, Result};

use std::io::Write as _;

use super::exit;
use super::out::{outln, Out};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory on the disk to measure (its bench files are replaced).
    #[arg(long, default_value = "synclog-data/bench")]
    dir: PathBuf,
    /// Appends for the one-writer figures.
    #[arg(long, default_value_t = 2_000)]
    n: u64,
    /// Appends per task for the 64-appender figures.
    #[arg(long, default_value_t = 200)]
    each: u64,
    /// Records for the verify and restore figures (the targets are stated for 1000000);
    /// at least 500, so that the run and query figures find runs to measure.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(500..))]
    records: u64,
    /// Print JSON (schema in README) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure PostgreSQL at this URL (scratch schemas are created and dropped).
    #[arg(long, env = "SYNCLOG_BENCH_POSTGRES_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Run only these figures: `deployment` (a large guarded pair, whole synclog
    /// processes; see the options below), `runs` (idempotency keys and run queries),
    /// `queries` (filters, counts, summaries, following), `retention` (pruning half of a
    /// guarded pair beside a reader and appenders) or `engines` (every other figure).
    #[arg(long, value_enum)]
    only: Option<Only>,
    #[command(flatten)]
    deploy: deployment::DeployArgs,
}

/// Which figures `--only` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// The deployment-scale figures.
    Deployment,
    /// The engine figures (every figure but the deployment-scale and runs ones).
    Engines,
    /// What idempotency keys cost, and run queries at `--records` logs.
    Runs,
    /// Filtered scans, counts and summaries at `--records` logs against hand-written SQL,
    /// and what following costs.
    Queries,
    /// Pruning half of a guarded pair of `--records` logs with an archive, beside a reader
    /// and 16 appenders.
    Retention,
}

pub use hidden::{fill, worker, FillArgs, WorkerArgs};

/// One figure of the report (this is the `--json` schema).
#[derive(Debug, Serialize)]
pub struct Figure {
    /// What was measured.
    name: String,
    /// The measurement.
    value: f64,
    /// Its unit.
    unit: &'static str,
    /// The baseline it is compared with, if any.
    baseline: Option<String>,
    /// value ÷ baseline value (for `ms per commit`, time ÷ time).
    ratio: Option<f64>,
    /// The target, as text (e.g. ">= 0.85 x baseline").
    target: Option<String>,
    /// Whether the target is met.
    met: Option<bool>,
    /// Why the figure could not be measured (`value` is then `null` and `met` false).
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    /// The large guarded pair of the deployment-scale figures, if they ran.
    deployment: Option<deployment::PairInfo>,
    figures: Vec<Figure>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    dir: String,
    records: u64,
}

/// Runs `n` records of a blocking raw baseline that stays open between rounds (`raw`),
/// off the async executor.
async fn run_raw<T: Send + 'static>(
    raw: &mut Option<T>,
    n: u64,
    run: fn(&mut T, u64) -> Result<Timing>,
) -> Result<Timing> {
    let mut baseline = raw
        .take()
        .ok_or_else(|| Error::corrupt("bench", "a raw baseline was lost by an earlier failure"))?;
    let (baseline, timing) = tokio::task::spawn_blocking(move || {
        let t = run(&mut baseline, n);
        (baseline, t)
    })
    .await
    .map_err(|e| Error::Backend {
        engine: "bench",
        context: "a raw baseline".into(),
        source: Box::new(e),
    })?;
    *raw = Some(baseline);
    timing
}

fn rate(name: &str, t: Timing) -> Figure {
    Figure {
        name: name.into(),
        value: t.rate(),
        unit: "records/s",
        baseline: None,
        ratio: None,
        target: None,
        met: None,
        error: None,
    }
}

fn against(mut f: Figure, base: &Figure, min_ratio: Option<f64>) -> Figure {
    let ratio = f.value / base.value.max(1e-12);
    f.baseline = Some(base.name.clone());
    f.ratio = Some(ratio);
    if let Some(min) = min_ratio {
        f.target = Some(format!(">= {min} x {}", base.name));
        f.met = Some(ratio >= min);
    }
    f
}

fn at_least(mut f: Figure, min: f64) -> Figure {
    f.target = Some(format!(">= {min:.0} {}", f.unit));
    f.met = Some(f.value >= min);
    f
}

/// `bench` in a build without every engine.
#[cfg(not(all(feature = "sqlite", feature = "json", feature = "sled", feature = "postgres")))]
pub async fn run(_args: BenchArgs, _out: &mut Out) -> Result<u8> {
    Err(Error::Unsupported {
        engine: "synclog",
        what: "`bench` in this build: it measures every engine; build with the default features".into(),
    })
}

#[cfg(all(feature = "sqlite", feature = "json", feature = "sled", feature = "postgres"))]
pub async fn run(args: BenchArgs, out: &mut Out) -> Result<u8> {
    let dir = args.dir.clone();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("clearing {}", dir.display()), e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let say = |s: &str| {
        if !args.json {
            // A progress note: if stderr cannot take it, there is nowhere to say so.
            let _ = writeln!(std::io::stderr(), "--- {s}");
        }
    };
    let mut figures = Vec::new();
    let all = args.only.is_none();
    if all || args.only == Some(Only::Engines) {
        figures = engines(&args, &dir, &say).await?;
    }
    if all || args.only == Some(Only::Runs) {
        figures.extend(runs::figures(&dir, args.each, args.records, &say).await?);
    }
    if all || args.only == Some(Only::Queries) {
        figures
            .extend(queries::figures(&dir, args.records, args.each, args.postgres.as_deref(), &say).await?);
    }
    if all || args.only == Some(Only::Retention) {
        figures.extend(retention::figures(&dir, args.records, &say).await?);
    }
    let mut deployment = None;
    if all || args.only == Some(Only::Deployment) {
        let (figs, pair) = deployment::figures(&args.deploy, &dir, &say).await?;
        figures.extend(figs);
        deployment = Some(pair);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let report = Report {
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            dir: args.dir.display().to_string(),
            records: args.records,
        },
        deployment,
        figures,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Backend {
            engine: "bench",
            context: "encoding JSON".into(),
            source: Box::new(e),
        })?;
        out.json(&text);
    } else {
        if let Some(pair) = &report.deployment {
            outln!(out, "{}", pair.describe());
            outln!(out, "");
        }
        print_table(&report.figures, out);
    }
    Ok(exit::OK)
}

/// Every engine figure (all but the deployment-scale ones), measured in `dir`.
#[cfg(all(feature = "sqlite", feature = "json", feature = "sled", feature = "postgres"))]
async fn engines(args: &BenchArgs, dir: &std::path::Path, say: &dyn Fn(&str)) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();

    // One writer: the raw loops and the engines take turns in short rounds, so a drift in
    // the disk's sync latency during the run weighs on both sides of every ratio.
    say("one writer: raw loops and synclog engines, interleaved in rounds");
    const ROUNDS: u64 = 5;
    let per = (args.n / ROUNDS).max(1);
    let sqlite_one = synclog::open_url(&format!("sqlite://{}/one.db", dir.display())).await?;
    let json_one_store = synclog::open_url(&format!("json://{}/one.jsonl", dir.display())).await?;
    let sled_one_store = synclog::open_url(&format!("sled://{}/one.sled", dir.display())).await?;
    let (mut t_raw, mut t_raw_sqlite, mut t_raw_sled) = (Timing::ZERO, Timing::ZERO, Timing::ZERO);
    let mut t_raw_sled_synced = Timing::ZERO;
    let (mut one, mut json_one, mut sled_one) = (Timing::ZERO, Timing::ZERO, Timing::ZERO);
    let mut raw_sqlite_conn = Some(bench::RawSqlite::open(dir)?);
    let mut raw_sled_db = Some(bench::RawSled::open(dir)?);
    for _ in 0..ROUNDS {
        t_raw = t_raw.plus(bench::raw_fdatasync_loop(dir, per)?);
        t_raw_sqlite = t_raw_sqlite.plus(run_raw(&mut raw_sqlite_conn, per, bench::RawSqlite::run).await?);
        one = one.plus(bench::one_appender(&*sqlite_one, per).await?);
        json_one = json_one.plus(bench::one_appender(&*json_one_store, per).await?);
        t_raw_sled = t_raw_sled.plus(run_raw(&mut raw_sled_db, per, bench::RawSled::run).await?);
        t_raw_sled_synced =
            t_raw_sled_synced.plus(run_raw(&mut raw_sled_db, per, bench::RawSled::run_synced).await?);
        sled_one = sled_one.plus(bench::one_appender(&*sled_one_store, per).await?);
    }
    for store in [&sqlite_one, &json_one_store, &sled_one_store] {
        store.close().await?;
    }
    drop((sqlite_one, json_one_store, sled_one_store, raw_sled_db));
    let raw = rate("raw fdatasync loop, 1 writer", t_raw);
    let raw_sqlite = rate("raw rusqlite 1 row/tx, same PRAGMAs", t_raw_sqlite);
    let raw_sled = rate("raw sled insert + flush, 1 writer", t_raw_sled);
    let raw_sled_synced = rate("raw sled insert + flush + fdatasync, 1 writer", t_raw_sled_synced);
    let one_fig = rate("sqlite, 1 appender", one);
    let mut commit_time = Figure {
        name: "sqlite one-row commit time".into(),
        value: one.micros_per_op(),
        unit: "µs/commit",
        baseline: Some(raw_sqlite.name.clone()),
        ratio: Some(raw_sqlite.value / one_fig.value),
        target: Some("<= 1.15 x raw rusqlite".into()),
        met: None,
        error: None,
    };
    commit_time.met = commit_time.ratio.map(|r| r <= 1.15);

    say("synclog sqlite, 64 appenders");
    let store = synclog::open_url(&format!("sqlite://{}/many.db", dir.display())).await?;
    let many = bench::concurrent_appenders(store.clone(), 64, args.each).await?;
    store.close().await?;
    let many_fig = at_least(rate("sqlite, 64 appenders", many), 200_000.0);
    let many_vs_raw = against(rate("sqlite, 64 appenders vs raw", many), &raw, Some(25.0));

    say("synclog json, 64 appenders");
    let store = synclog::open_url(&format!("json://{}/many.jsonl", dir.display())).await?;
    let json_many = bench::concurrent_appenders(store.clone(), 64, args.each).await?;
    store.close().await?;

    say("synclog sled, 64 appenders");
    let store = synclog::open_url(&format!("sled://{}/many.sled", dir.display())).await?;
    let sled_many = bench::concurrent_appenders(store.clone(), 64, args.each).await?;
    store.close().await?;
    drop(store);

    say("guarded sqlite + json, 64 appenders, verification on");
    let guarded: Arc<dyn LogStore> = Arc::new(bench::guarded_pair(dir, "guarded").await?);
    let g = bench::concurrent_appenders(guarded.clone(), 64, args.each).await?;
    guarded.close().await?;

    say(&format!("verify {} records", args.records));
    let store = synclog::open_url(&format!("sqlite://{}/verify.db", dir.display())).await?;
    bench::fill(&*store, args.records).await?;
    let v = bench::verify_all(&*store, args.records).await?;
    store.close().await?;

    say(&format!(
        "restore {} records from JSON into an empty SQLite store",
        args.records
    ));
    let src = synclog::open_url(&format!("json://{}/restore-src.jsonl", dir.display())).await?;
    bench::fill(&*src, args.records).await?;
    src.close().await?;
    drop(src);
    let src = synclog::open_url(&format!("json://{}/restore-src.jsonl", dir.display())).await?;
    let dst = synclog::open_url(&format!("sqlite://{}/restored.db", dir.display())).await?;
    let r = bench::restore_all(&*src, &*dst, args.records).await?;
    src.close().await?;
    dst.close().await?;
    // Peak memory is measured on a real `synclog restore` process: this one still holds
    // what earlier phases allocated.
    say("peak memory of `synclog restore` of the same file, in a process of its own");
    let exe = std::env::current_exe().map_err(|e| Error::io("finding this executable", e))?;
    let child = std::process::Command::new(exe)
        .args(["--no-backup", "--store"])
        .arg(format!("sqlite://{}/restored-child.db", dir.display()))
        .args(["restore", "--from"])
        .arg(format!("json://{}/restore-src.jsonl", dir.display()))
        .output()
        .map_err(|e| Error::io("running synclog restore", e))?;
    if !child.status.success() {
        return Err(Error::Backend {
            engine: "bench",
            context: "synclog restore in a child process".into(),
            source: String::from_utf8_lossy(&child.stderr).into_owned().into(),
        });
    }
    let peak = bench::children_peak_rss();

    if let Some(url) = &args.postgres {
        say("raw tokio-postgres single-row autocommit loop, and synclog postgres with 64 appenders");
        let raw_pg = rate(
            "raw tokio-postgres 1 row/tx, 1 connection",
            bench::raw_postgres_loop(url, args.n).await?,
        );
        let schema = format!("synclog_bench_{}", std::process::id());
        let sep = if url.contains('?') { '&' } else { '?' };
        let store = synclog::open_url(&format!("{url}{sep}synclog_schema={schema}")).await?;
        let pg_many = bench::concurrent_appenders(store.clone(), 64, args.each).await?;
        store.close().await?;
        bench::drop_postgres_schema(url, &schema).await?;
        figures.push(raw_pg.clone_fig());
        figures.push(against(
            rate("postgres, 64 appenders", pg_many),
            &raw_pg,
            Some(10.0),
        ));
    }

    figures.push(raw.clone_fig());
    figures.push(raw_sqlite.clone_fig());
    figures.push(against(one_fig, &raw, Some(0.85)));
    figures.push(commit_time);
    figures.push(many_fig);
    figures.push(many_vs_raw);
    figures.push(raw_sled.clone_fig());
    figures.push(against(rate("sled, 1 appender", sled_one), &raw_sled, Some(0.85)));
    // sled's flush alone is not power-safe (crates/sled-backend/src/flush.rs): the engine
    // also fdatasyncs at PowerLoss, so this is the like-for-like baseline.
    figures.push(raw_sled_synced.clone_fig());
    figures.push(against(
        rate("sled, 1 appender (vs power-safe raw)", sled_one),
        &raw_sled_synced,
        None,
    ));
    figures.push(against(rate("sled, 64 appenders", sled_many), &raw_sled, None));
    figures.push(against(rate("json, 1 appender", json_one), &raw, None));
    figures.push(against(rate("json, 64 appenders", json_many), &raw, None));
    figures.push(at_least(
        rate("guarded sqlite+json, 64 appenders, verified", g),
        100_000.0,
    ));
    figures.push(at_least(
        rate(&format!("verify {} records (sqlite)", args.records), v),
        1_000_000.0,
    ));
    figures.push(at_least(
        rate(&format!("restore {} records json -> sqlite", args.records), r),
        500_000.0,
    ));
    if let Some(peak) = peak {
        let mib = peak as f64 / (1024.0 * 1024.0);
        figures.push(Figure {
            name: format!("`synclog restore` of {} records, peak RSS", args.records),
            value: mib,
            unit: "MiB",
            baseline: None,
            ratio: None,
            target: Some("<= 100 MiB".into()),
            met: Some(mib <= 100.0),
            error: None,
        });
    }
    Ok(figures)
}

impl Figure {
    fn clone_fig(&self) -> Figure {
        Figure {
            name: self.name.clone(),
            value: self.value,
            unit: self.unit,
            baseline: self.baseline.clone(),
            ratio: self.ratio,
            target: self.target.clone(),
            met: self.met,
            error: self.error.clone(),
        }
    }
}

fn print_table(figures: &[Figure], out: &mut Out) {
    outln!(out, "| figure | value | baseline | ratio | target | met |");
    outln!(out, "|---|---:|---|---:|---|---|");
    for f in figures {
        let value = match &f.error {
            Some(e) if f.value.is_nan() => format!("not measured: {e}"),
            _ if f.unit == "ms" && f.value < 1.0 => format!("{:.3} {}", f.value, f.unit),
            _ if f.unit == "ms" => format!("{:.1} {}", f.value, f.unit),
            _ => format!("{:.0} {}", f.value, f.unit),
        };
        outln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            f.name,
            value,
            f.baseline.as_deref().unwrap_or("—"),
            f.ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "—".into()),
            f.target.as_deref().unwrap_or("—"),
            match f.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        );
    }
}
