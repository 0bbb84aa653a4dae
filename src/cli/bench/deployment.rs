//! The deployment-scale figures of `synclog bench` (issue 14): a whole `synclog` process
//! opening a large guarded pair and reading its newest 20 records, next to the same
//! command on the SQLite copy alone; its peak memory; a writing command; a reader beside
//! 64 running appenders; and 4 writer processes against 1 on one pair.
//!
//! Every command is a child process of this executable, bounded by `--child-timeout`
//! and killed at it, so nothing here can hang.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use synclog::bench::{self, ChildRun, DeploymentPair};
use synclog::{Error, LogStore, LogStoreExt, Result};

use super::hidden::WorkerReport;
use super::Figure;

/// The deployment-scale figures' options.
#[derive(Debug, Args)]
#[command(next_help_heading = "Deployment-scale figures (a large guarded pair, whole synclog processes)")]
pub struct DeployArgs {
    /// Records in the large guarded pair (the targets are stated for 1000000 and 10000000).
    #[arg(long, default_value_t = 200_000)]
    pub open_records: u64,
    /// Where the large pair is kept between runs (x.db, x.jsonl, alone.db); a pair
    /// already built there with as many records is reused.
    #[arg(long, default_value = "synclog-data/bench-open")]
    pub open_dir: PathBuf,
    /// Runs of each command, alternating guarded and SQLite alone (after one warm-up each).
    #[arg(long, default_value_t = 7)]
    pub open_runs: u32,
    /// `list` runs beside the 64 appenders (also bounded to 60 s).
    #[arg(long, default_value_t = 50)]
    pub reader_runs: u32,
    /// Appends per task in the 4 processes x 16 vs 1 process x 64 figure.
    #[arg(long, default_value_t = 500)]
    pub worker_each: u64,
    /// Seconds after which a child process is killed and its figure reported as failed.
    #[arg(long, default_value_t = 120.0, value_parser = super::super::parse_seconds)]
    pub child_timeout: f64,
}

/// The large pair, as reported next to the figures.
#[derive(Debug, Serialize)]
pub struct PairInfo {
    dir: String,
    built_with: u64,
    holds: u64,
    reused: bool,
    build_seconds: Option<f64>,
}

impl PairInfo {
    pub fn new(dir: &Path, n: u64, built: bench::Built) -> PairInfo {
        PairInfo {
            dir: dir.display().to_string(),
            built_with: n,
            holds: built.holds,
            reused: built.reused,
            build_seconds: (!built.reused).then_some(built.elapsed.as_secs_f64()),
        }
    }

    pub fn describe(&self) -> String {
        match self.build_seconds {
            Some(s) => format!(
                "guarded pair in {}: built with {} records in {s:.1} s",
                self.dir, self.built_with
            ),
            None => format!(
                "guarded pair in {}: reused, built with {} records by an earlier run (holds {})",
                self.dir, self.built_with, self.holds
            ),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The `q` quantile (0..=1) of `v`, nearest rank.
pub(super) fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len().max(1));
    s.get(rank - 1).copied().unwrap_or(f64::NAN)
}

pub(super) fn figure(name: String, value: f64, unit: &'static str) -> Figure {
    Figure {
        name,
        value,
        unit,
        baseline: None,
        ratio: None,
        target: None,
        met: None,
        error: None,
    }
}

pub(super) fn at_most(mut f: Figure, max: f64) -> Figure {
    f.target = Some(format!("<= {max} {}", f.unit));
    f.met = Some(f.value <= max);
    f
}

/// `f` against `base` with a ratio target `<= max` (for times: lower is better).
fn ratio_at_most(mut f: Figure, base: &Figure, max: f64) -> Figure {
    f = super::against(f, base, None);
    f.target = Some(format!("<= {max} x {}", base.name));
    f.met = f.ratio.map(|r| r <= max);
    f
}

/// A figure that could not be measured: no value, the reason, target not met.
fn not_measured(name: String, unit: &'static str, target: String, why: String) -> Figure {
    Figure {
        target: Some(target),
        met: Some(false),
        error: Some(why),
        ..figure(name, f64::NAN, unit)
    }
}

struct Ctx {
    exe: PathBuf,
    timeout: Duration,
}

impl Ctx {
    /// Starts this executable with `args` on a blocking thread, its output captured,
    /// bounded by the timeout.
    fn start(&self, args: Vec<String>) -> tokio::task::JoinHandle<Result<ChildRun>> {
        let (exe, timeout) = (self.exe.clone(), self.timeout);
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(exe);
            cmd.args(args)
                .env_remove("SYNCLOG_STORE")
                .env_remove("SYNCLOG_BACKUP");
            bench::run_timed(&mut cmd, timeout)
        })
    }

    /// Runs every argument list at once; their runs, in order.
    async fn run_all(&self, all: Vec<Vec<String>>) -> Result<Vec<ChildRun>> {
        let handles: Vec<_> = all.into_iter().map(|args| self.start(args)).collect();
        let mut runs = Vec::new();
        for h in handles {
            runs.push(h.await.map_err(|e| Error::Backend {
                engine: "bench",
                context: "a child process's waiter".into(),
                source: Box::new(e),
            })??);
        }
        Ok(runs)
    }

    /// Runs this executable with `args`.
    async fn run(&self, args: Vec<String>) -> Result<ChildRun> {
        let mut runs = self.run_all(vec![args]).await?;
        runs.pop()
            .ok_or_else(|| Error::corrupt("bench", "a child process's run was lost"))
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Runs every deployment-scale figure; `scratch` is the bench's directory (emptied by the
/// caller), for copies of the pair that the figures write to.
pub async fn figures(
    args: &DeployArgs,
    scratch: &Path,
    say: &dyn Fn(&str),
) -> Result<(Vec<Figure>, PairInfo)> {
    let n = args.open_records;
    let pair = DeploymentPair::new(&args.open_dir);
    say(&format!(
        "building (or reusing) a guarded pair of {n} records in {}",
        args.open_dir.display()
    ));
    let built = pair.build(n).await?;
    let info = PairInfo::new(&args.open_dir, n, built);
    say(&info.describe());
    let ctx = Ctx {
        exe: std::env::current_exe().map_err(|e| Error::io("finding this executable", e))?,
        timeout: Duration::from_secs_f64(args.child_timeout),
    };
    let mut figs = Vec::new();
    if let Some(s) = info.build_seconds {
        let mut f = figure(
            format!("build a guarded pair of {n} records by 10000-record imports"),
            n as f64 / s.max(1e-9),
            "records/s",
        );
        f.target = Some(">= 33333 records/s (1M in 30 s)".into());
        f.met = Some(f.value >= 1_000_000.0 / 30.0);
        figs.push(f);
    }

    let (p, b, alone) = (pair.primary_url(), pair.backup_url(), pair.alone_url());
    say(&format!(
        "guarded open + newest 20, against the SQLite copy alone, {} runs each, alternating",
        args.open_runs
    ));
    let list = ["list", "--limit", "20", "--desc"];
    let guarded = |cmd: &[&str]| [strings(&["--store", &p, "--backup", &b]), strings(cmd)].concat();
    let single = |url: &str, cmd: &[&str]| [strings(&["--no-backup", "--store", url]), strings(cmd)].concat();
    let target_ms = if n <= 1_000_000 { 50.0 } else { 100.0 };
    figs.extend(
        alternate(
            &ctx,
            args.open_runs,
            guarded(&list),
            single(&p, &list),
            &format!("guarded open + newest 20 of {n} (`list --limit 20 --desc`)"),
            &format!("SQLite copy alone: open + newest 20 of {n}"),
            Some(target_ms),
        )
        .await?,
    );
    say("a writing command: guarded `append` (its open reconciles) against SQLite alone");
    let append = ["append", "--job", "bench", "--status", "succeeded"];
    figs.extend(
        alternate(
            &ctx,
            args.open_runs,
            guarded(&append),
            single(&alone, &append),
            &format!("guarded open + append, {n} records"),
            &format!("SQLite copy alone: open + append, {n} records"),
            None,
        )
        .await?,
    );

    say("a copy of the pair for the writing figures");
    let (lp, lb) = pair.copy_to(scratch, "live")?;
    figs.extend(reader_beside_appenders(&ctx, args, &lp, &lb, say).await?);
    figs.extend(processes(&ctx, args, &lp, &lb, say).await?);
    Ok((figs, info))
}

/// Runs `a` and `b` alternately (one warm-up of each first, untimed): the median ms of
/// each, their ratio, and the peak memory of `a`.
async fn alternate(
    ctx: &Ctx,
    runs: u32,
    a: Vec<String>,
    b: Vec<String>,
    a_name: &str,
    b_name: &str,
    target_ms: Option<f64>,
) -> Result<Vec<Figure>> {
    let (mut ta, mut tb, mut rss_a, mut rss_b) = (Vec::new(), Vec::new(), 0u64, 0u64);
    let mut failed = None;
    for round in 0..=runs {
        for (args, times, rss) in [(&a, &mut ta, &mut rss_a), (&b, &mut tb, &mut rss_b)] {
            let run = ctx.run(args.clone()).await?;
            if !run.success() {
                failed.get_or_insert_with(|| format!("`synclog {}`: {}", args.join(" "), run.failure()));
            } else if round > 0 {
                times.push(ms(run.elapsed));
                *rss = (*rss).max(run.peak_rss.unwrap_or(0));
            }
        }
    }
    let a_target = target_ms.map_or_else(|| "—".to_string(), |t| format!("<= {t} ms"));
    if let Some(why) = failed {
        return Ok(vec![not_measured(a_name.into(), "ms", a_target, why)]);
    }
    let base = figure(b_name.into(), quantile(&tb, 0.5), "ms");
    let med = figure(a_name.into(), quantile(&ta, 0.5), "ms");
    let mut out = vec![base.clone_fig()];
    out.push(match target_ms {
        Some(t) => super::against(at_most(med, t), &base, None),
        None => super::against(med, &base, None),
    });
    if target_ms.is_some() {
        let vs = figure(format!("{a_name} vs SQLite alone"), quantile(&ta, 0.5), "ms");
        out.push(ratio_at_most(vs, &base, 3.0));
        let rss = super::against(
            at_most(figure(format!("{a_name}, peak RSS"), mib(rss_a), "MiB"), 64.0),
            &figure(format!("{b_name}, peak RSS"), mib(rss_b), "MiB"),
            None,
        );
        out.push(rss);
    }
    Ok(out)
}

/// 64 appenders in this process on the pair, writing until the readers are done, and
/// `list --limit 20` processes one after another beside them.
async fn reader_beside_appenders(
    ctx: &Ctx,
    args: &DeployArgs,
    p: &str,
    b: &str,
    say: &dyn Fn(&str),
) -> Result<Vec<Figure>> {
    say("opening the copy as a writer (its first open compares every record)");
    let store: Arc<dyn LogStore> =
        Arc::new(synclog::open_guarded(p, b, synclog::GuardedOptions::default()).await?);
    say(&format!(
        "64 appenders, and up to {} `list --limit 20` processes beside them",
        args.reader_runs
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let (store, stop, appended) = (store.clone(), stop.clone(), appended.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    store.append(bench::sample_log(t + 64 * i)).await?;
                    appended.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    while appended.load(Ordering::Relaxed) == 0 && tasks.iter().all(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let list = strings(&["--store", p, "--backup", b, "list", "--limit", "20"]);
    let (mut times, mut failures, mut first_failure) = (Vec::new(), 0u32, None);
    for _ in 0..args.reader_runs {
        if start.elapsed() > Duration::from_secs(60) || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        let run = ctx.run(list.clone()).await?;
        times.push(ms(run.elapsed));
        if !run.success() {
            failures += 1;
            first_failure.get_or_insert_with(|| run.failure());
        }
    }
    let during = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let written = appended.load(Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(|e| Error::Backend {
            engine: "bench",
            context: "an appender task failed".into(),
            source: Box::new(e),
        })??;
    }
    store.close().await?;
    let runs = times.len();
    let name = format!("`list --limit 20` beside 64 appenders ({runs} runs)");
    let mut failed = at_most(
        figure(format!("{name}, runs that failed"), failures as f64, "runs"),
        0.0,
    );
    failed.error = first_failure;
    Ok(vec![
        figure(format!("{name}, p50"), quantile(&times, 0.5), "ms"),
        at_most(figure(format!("{name}, p99"), quantile(&times, 0.99), "ms"), 50.0),
        failed,
        figure(
            "64 appenders while the readers ran, guarded".into(),
            written as f64 / during.as_secs_f64().max(1e-9),
            "records/s",
        ),
    ])
}

/// 1 process with 64 appenders, then 4 processes with 16 each at once, on one pair.
async fn processes(
    ctx: &Ctx,
    args: &DeployArgs,
    p: &str,
    b: &str,
    say: &dyn Fn(&str),
) -> Result<Vec<Figure>> {
    let worker = |tasks: u64| {
        strings(&[
            "--store",
            p,
            "--backup",
            b,
            "--lock-wait",
            "0.5",
            "bench-worker",
            "--tasks",
            &tasks.to_string(),
            "--each",
            &args.worker_each.to_string(),
        ])
    };
    let target = ">= 0.7 x 1 process x 64 appenders".to_string();
    let four_name = "4 processes x 16 appenders, one guarded pair".to_string();
    say("1 writer process with 64 appenders, then 4 with 16 each at once, on one pair");
    let one = ctx.run(worker(64)).await?;
    let one = match parse_worker(&one) {
        Ok(r) => r,
        Err(why) => {
            return Ok(vec![not_measured(
                "1 process x 64 appenders, one guarded pair".into(),
                "records/s",
                "—".into(),
                why,
            )])
        }
    };
    let base = figure(
        "1 process x 64 appenders, one guarded pair".into(),
        one.records as f64 / ((one.end_us.saturating_sub(one.start_us)) as f64 / 1e6).max(1e-9),
        "records/s",
    );
    let four = ctx.run_all((0..4).map(|_| worker(16)).collect()).await?;
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for run in &four {
        match parse_worker(run) {
            Ok(r) => reports.push(r),
            Err(why) => errors.push(why),
        }
    }
    let mut four_fig = if !errors.is_empty() {
        let why = format!("{} of 4 processes failed; first: {}", errors.len(), errors[0]);
        not_measured(four_name, "records/s", target, why)
    } else {
        let first_start = reports.iter().map(|r| r.start_us).min().unwrap_or(0);
        let last_start = reports.iter().map(|r| r.start_us).max().unwrap_or(0);
        let first_end = reports.iter().map(|r| r.end_us).min().unwrap_or(0);
        let last_end = reports.iter().map(|r| r.end_us).max().unwrap_or(0);
        if last_start >= first_end {
            let why = "the 4 processes did not append at the same time (one waited for another's lock)";
            not_measured(four_name, "records/s", target, why.into())
        } else {
            let total: u64 = reports.iter().map(|r| r.records).sum();
            let secs = (last_end.saturating_sub(first_start)) as f64 / 1e6;
            super::against(
                figure(four_name, total as f64 / secs.max(1e-9), "records/s"),
                &base,
                Some(0.7),
            )
        }
    };
    four_fig.baseline.get_or_insert_with(|| base.name.clone());
    Ok(vec![base, four_fig])
}

fn parse_worker(run: &ChildRun) -> std::result::Result<WorkerReport, String> {
    if !run.success() {
        return Err(run.failure());
    }
    serde_json::from_slice(&run.stdout).map_err(|e| format!("bench-worker printed no report ({e})"))
}
