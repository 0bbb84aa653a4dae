//! `synclog demo`: a realistic sync workload into a fresh guarded store, the classic
//! failure (the primary loses its newest logs), and the automatic restore.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde_json::json;
use synclog::{
    CheckpointMode, Durability, Error, Guarded, GuardedOptions, LogId, LogStore, NewLog, Result, Status,
    VerifyOptions,
};

use super::exit;
use super::out::{outln, Out};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Sync jobs running at the same time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    jobs: u64,
    /// Runs per job (each run logs its start and its end).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    runs: u64,
    /// Directory for the demo's fresh store (its demo files are replaced).
    #[arg(long, default_value = "synclog-data/demo")]
    dir: PathBuf,
}

const SOURCES: [&str; 6] = ["hubspot", "shopify", "stripe", "postgres", "sftp", "salesforce"];

/// One finished run of `job`, with plausible counters.
fn finished_run(job: &str, run: u64, rng: &mut fastrand::Rng) -> NewLog {
    let started = chrono::Utc::now() - chrono::Duration::milliseconds(rng.i64(50..5_000));
    let seen = rng.u64(0..5_000);
    let roll = rng.u32(0..100);
    let (status, failed, message) = match roll {
        0..=79 => (Status::Succeeded, 0, format!("synced {seen} items")),
        80..=89 => {
            let f = rng.u64(1..=seen.max(1));
            (
                Status::Partial,
                f,
                format!("{f} items rejected by the target (validation)"),
            )
        }
        90..=96 => (
            Status::Failed,
            seen,
            "source API answered 503 Service Unavailable".to_string(),
        ),
        _ => (Status::Skipped, 0, "no changes since the last run".to_string()),
    };
    let seen = if status == Status::Skipped { 0 } else { seen };
    NewLog::new(job, status)
        .started(started)
        .finished(chrono::Utc::now())
        .counts(seen, seen.saturating_sub(failed), failed.min(seen))
        .message(message)
        .attr("run", run)
        .attr("source", SOURCES[rng.usize(0..SOURCES.len())])
        .attr(
            "cursor",
            json!({"updated_since": started.to_rfc3339(), "page": rng.u32(1..40)}),
        )
}

async fn workload(store: Arc<Guarded>, jobs: u64, runs: std::ops::Range<u64>) -> Result<u64> {
    let tasks: Vec<_> = (0..jobs)
        .map(|j| {
            let store = store.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                let job = format!("sync-{}-{j:02}", SOURCES[j as usize % SOURCES.len()]);
                let mut rng = fastrand::Rng::with_seed(j * 7919 + runs.start);
                let mut n = 0u64;
                for run in runs {
                    let start = NewLog::new(job.clone(), Status::Started).attr("run", run);
                    store.append_batch(vec![start], Durability::PowerLoss).await?;
                    let end = finished_run(&job, run, &mut rng);
                    store.append_batch(vec![end], Durability::PowerLoss).await?;
                    n += 2;
                }
                Ok::<u64, Error>(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| Error::Backend {
            engine: "demo",
            context: "a job task failed".into(),
            source: Box::new(e),
        })??;
    }
    Ok(total)
}

fn remove_demo_files(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("demo.") {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(format!("removing {name}"), e))?;
        }
    }
    Ok(())
}

async fn open(primary: &str, backup: &str) -> Result<Guarded> {
    synclog::open_guarded(primary, backup, GuardedOptions::default()).await
}

pub async fn run(args: DemoArgs, out: &mut Out) -> Result<u8> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Error::io(format!("creating {}", args.dir.display()), e))?;
    remove_demo_files(&args.dir)?;
    let db = args.dir.join("demo.db");
    let primary = format!("sqlite://{}", db.display());
    let backup = format!("json://{}", args.dir.join("demo.jsonl").display());
    outln!(
        out,
        "synclog demo: {} jobs x {} runs into {primary}, backup {backup}",
        args.jobs,
        args.runs
    );

    // 1. The workload: every append durable (fsync) in both copies and read back before it returns.
    let store = Arc::new(open(&primary, &backup).await?);
    let t = Instant::now();
    let written = workload(store.clone(), args.jobs, 0..args.runs).await?;
    let secs = t.elapsed().as_secs_f64();
    let stats = store.stats();
    outln!(out,
        "wrote {written} logs in {secs:.2} s: {:.0} logs/s, {} group commits (about {:.1} logs each), every one fsynced in both copies and read back",
        written as f64 / secs,
        stats.groups,
        stats.logs as f64 / stats.groups.max(1) as f64
    );

    // 2. The classic failure: the primary file is replaced by an older copy, losing the newest logs.
    store.checkpoint(CheckpointMode::Truncate).await?;
    let older = args.dir.join("demo.db.older");
    std::fs::copy(&db, &older).map_err(|e| Error::io("copying the database", e))?;
    let tail_runs = (args.runs / 10).max(1);
    let more = workload(store.clone(), args.jobs, args.runs..args.runs + tail_runs).await?;
    let last = store.last_id().await?.map_or(0, LogId::get);
    store.close().await?;
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
        }
    }
    std::fs::rename(&older, &db).map_err(|e| Error::io("restoring the older copy", e))?;
    let sqlite = synclog::open_url(&primary).await?;
    let primary_last = sqlite.last_id().await?.map_or(0, LogId::get);
    sqlite.close().await?;
    drop(sqlite);
    outln!(out,
        "simulated loss: wrote {more} more logs (up to id {last}), then replaced the primary with an older copy: it now ends at id {primary_last}, {} logs lost",
        last - primary_last
    );

    // 3. Open again: reconcile restores what the primary lost from the backup.
    let t = Instant::now();
    let store = open(&primary, &backup).await?;
    let report = store.open_report().clone();
    let restored_ids = &report.missing_in_primary;
    outln!(out,
        "reopened in {:.0} ms: restored {} logs into the primary from the backup (ids {}..={}); primary now ends at id {}",
        t.elapsed().as_secs_f64() * 1000.0,
        report.restored_to_primary,
        restored_ids.first().map_or(0, |i| i.get()),
        restored_ids.last().map_or(0, |i| i.get()),
        store.primary().last_id().await?.map_or(0, LogId::get)
    );

    // 4. Verify both copies, deeply, and compare them.
    let t = Instant::now();
    let verify = store.verify(VerifyOptions { deep: true }).await?;
    outln!(
        out,
        "verify: {} logs checked in each copy in {:.0} ms, {} missing, {} corrupt, quick_check {}: {}",
        verify.checked,
        t.elapsed().as_secs_f64() * 1000.0,
        verify.missing_count(),
        verify.corrupt.len(),
        if verify.engine_problems.is_empty() {
            "ok"
        } else {
            "reported problems"
        },
        if verify.is_clean() { "CLEAN" } else { "NOT CLEAN" }
    );
    let ok = verify.is_clean()
        && report.restored_to_primary == last - primary_last
        && store.primary().last_id().await?.map_or(0, LogId::get) == last;
    store.close().await?;
    outln!(
        out,
        "{} in {:.1} s; the files are in {}",
        if ok {
            "demo done: no acknowledged log was lost"
        } else {
            "demo FAILED: see above"
        },
        started.elapsed().as_secs_f64(),
        args.dir.display()
    );
    Ok(if ok { exit::OK } else { exit::PROBLEMS })
}
