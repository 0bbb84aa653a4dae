//! The hidden commands behind `synclog bench`'s deployment-scale figures: `bench-fill`
//! builds the large pair, `bench-worker` is one writer process of the multi-process figure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::{Deserialize, Serialize};
use synclog::bench::{self, DeploymentPair};
use synclog::{Error, LogStore, Result};

use super::super::open::{self, Opened};
use super::super::out::outln;
use super::super::StoreArgs;
use super::deployment::PairInfo;
use super::{exit, Out};

/// What one `bench-worker` process reported.
#[derive(Debug, Deserialize, Serialize)]
pub struct WorkerReport {
    pub records: u64,
    pub start_us: u64,
    pub end_us: u64,
}

/// `synclog bench-worker`: a writer process for the multi-process figure.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Concurrent appenders in this process.
    #[arg(long, default_value_t = 16)]
    tasks: u64,
    /// Appends per appender.
    #[arg(long, default_value_t = 500)]
    each: u64,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Opens the pair the global options name (as a writer), runs the appenders, prints
/// `{"records", "start_us", "end_us"}` (wall-clock microseconds, comparable between
/// processes), and closes.
pub async fn worker(stores: &StoreArgs, args: WorkerArgs, out: &mut Out) -> Result<u8> {
    let opened = open::open(stores).await?;
    let store: Arc<dyn LogStore> = match opened {
        Opened::Guarded(g) => g,
        Opened::Single(s) => s,
    };
    let start_us = unix_us();
    let t = bench::concurrent_appenders(store.clone(), args.tasks, args.each).await;
    let end_us = unix_us();
    store.close().await?;
    let t = t?;
    let report = WorkerReport {
        records: t.ops,
        start_us,
        end_us,
    };
    out.json(&serde_json::to_string(&report).map_err(|e| Error::Backend {
        engine: "bench",
        context: "encoding JSON".into(),
        source: Box::new(e),
    })?);
    Ok(exit::OK)
}

/// `synclog bench-fill`: builds (or reuses) the large pair.
#[derive(Debug, Args)]
pub struct FillArgs {
    /// Records to fill it with.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Its directory.
    #[arg(long, default_value = "synclog-data/bench-open")]
    dir: PathBuf,
}

/// Builds the pair, or says it was reused.
pub async fn fill(args: FillArgs, out: &mut Out) -> Result<u8> {
    let built = DeploymentPair::new(&args.dir).build(args.records).await?;
    let info = PairInfo::new(&args.dir, args.records, built);
    outln!(out, "{}", info.describe());
    Ok(exit::OK)
}
