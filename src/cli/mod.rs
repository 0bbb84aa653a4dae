//! The command line: arguments, and dispatch to the subcommands.

mod bench;
mod compact;
mod demo;
pub mod exit;
mod maintain;
mod open;
pub mod out;
mod query;
mod records;
mod retention;
mod runs;
#[cfg(feature = "server")]
mod serve;
mod stdin;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use synclog::Result;

/// Durable, verified logs for data-synchronisation runs.
#[derive(Debug, Parser)]
#[command(name = "synclog", version, about, after_help = exit::HELP)]
pub struct Cli {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Which stores to use.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The store: sqlite://PATH, json://PATH, sled://PATH, postgres://USER@HOST/DB or memory://NAME.
    #[arg(
        long,
        global = true,
        env = "SYNCLOG_STORE",
        hide_env_values = true,
        default_value = "sqlite://synclog-data/synclog.db"
    )]
    pub store: String,
    /// The backup, kept in step by the guarded store.
    #[arg(
        long,
        global = true,
        env = "SYNCLOG_BACKUP",
        hide_env_values = true,
        default_value = "json://synclog-data/synclog.jsonl"
    )]
    pub backup: String,
    /// Use the store alone, without a backup.
    #[arg(long, global = true)]
    pub no_backup: bool,
    /// Seconds to wait for another synclog process holding the store before giving up.
    #[arg(long, global = true, default_value_t = 10.0, value_parser = parse_seconds)]
    pub lock_wait: f64,
}

impl StoreArgs {
    fn lock_wait(&self) -> Duration {
        Duration::from_secs_f64(self.lock_wait)
    }
}

fn parse_seconds(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds between 0 and 86400")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a realistic sync workload into a fresh store, lose the newest logs, watch them come back.
    #[command(after_help = "Examples:\n  synclog demo\n  synclog demo --jobs 16 --runs 2000")]
    Demo(demo::DemoArgs),
    /// Append one log; prints its id (or the record with --json).
    #[command(
        after_help = "Examples:\n  synclog append --job crm-contacts --status succeeded --seen 120 --written 118 --failed 2\n  synclog append --job orders --status failed --message 'API returned 503' --attr source=shopify --json\n  producer | synclog append --stdin"
    )]
    Append(records::AppendArgs),
    /// List logs as a table, or JSON lines with --json.
    #[command(
        after_help = "Examples:\n  synclog list --job crm-contacts --limit 20\n  synclog list --status failed --status partial --from 24h --desc\n  synclog list --attr env=prod --attr shard=3 --json"
    )]
    List(records::ListArgs),
    /// Count the logs a filter matches.
    #[command(
        after_help = "Examples:\n  synclog count --status failed --from 7d\n  synclog count --job orders --attr env=prod --json"
    )]
    Count(query::CountArgs),
    /// One row per job: last status, its age, the last success, failures since, counts.
    #[command(after_help = "Examples:\n  synclog summary\n  synclog summary --from 24h --json")]
    Summary(query::SummaryArgs),
    /// Print the newest logs; with -f, print new ones as they are committed.
    #[command(after_help = "Examples:\n  synclog tail -f\n  synclog tail -f --status failed --json")]
    Tail(query::TailArgs),
    /// Show one log.
    #[command(after_help = "Examples:\n  synclog show 42\n  synclog show 42 --json")]
    Show(records::ShowArgs),
    /// Start a run: append its `started` record; prints the run key.
    #[command(
        after_help = "Examples:\n  run=$(synclog start --job crm-contacts)\n  synclog start --job orders --run orders-2026-12-01 --attr source=shopify"
    )]
    Start(runs::StartArgs),
    /// Finish a run with its terminal record; prints its id. A finish repeated the same way
    /// prints the stored id.
    #[command(
        after_help = "Examples:\n  synclog finish \"$run\" --status succeeded --seen 120 --written 118 --failed 2\n  synclog finish \"$run\" --status failed --message 'API returned 503'"
    )]
    Finish(runs::FinishArgs),
    /// Give up a run that will never finish: append its terminal `abandoned` record.
    #[command(after_help = "Examples:\n  synclog abandon \"$run\" --reason 'worker was killed'")]
    Abandon(runs::AbandonArgs),
    /// List runs, one row each (latest status, times, counters, record ids).
    #[command(
        after_help = "Examples:\n  synclog runs --job crm-contacts --limit 20 --desc\n  synclog runs --stale --older-than 6h --json"
    )]
    Runs(runs::RunsArgs),
    /// Verify every record's checksum through an independent read path; exit 1 on problems.
    #[command(after_help = "Examples:\n  synclog verify\n  synclog verify --deep --no-backup")]
    Verify(maintain::VerifyArgs),
    /// Compare the store with its backup; with --repair, restore what either lacks.
    #[command(after_help = "Examples:\n  synclog check\n  synclog check --repair")]
    Check(maintain::CheckArgs),
    /// Copy every log into another store, keeping ids (idempotent).
    #[command(after_help = "Examples:\n  synclog export --to json://backups/2026-11-24.jsonl")]
    Export(maintain::ExportArgs),
    /// Copy every log from another store into this one (or --into another), keeping ids.
    #[command(
        after_help = "Examples:\n  synclog restore --from json://synclog-data/synclog.jsonl\n  synclog restore --from json://old.jsonl --into sqlite://new.db"
    )]
    Restore(maintain::RestoreArgs),
    /// Measure every engine next to its raw baseline on this disk; print a table or JSON.
    #[command(
        after_help = "Examples:\n  synclog bench\n  synclog bench --records 1000000 --json\n  synclog bench --only deployment --open-records 1000000"
    )]
    Bench(bench::BenchArgs),
    /// Build (or reuse) the large guarded pair of `bench`'s deployment-scale figures.
    #[command(hide = true)]
    BenchFill(bench::FillArgs),
    /// One writer process of `bench`'s multi-process figure: appenders on the pair the
    /// global options name; prints {"records", "start_us", "end_us"}.
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
    /// Rewrite the JSON-lines backup (or --store json://… with --no-backup) without repeated
    /// or corrupt lines: repeats dropped, corrupt lines saved to a .rejected file.
    #[command(
        after_help = "Examples:\n  synclog compact\n  synclog compact --no-backup --store json://data/logs.jsonl"
    )]
    Compact(compact::CompactArgs),
    /// Prune old logs by policy (archive first with --archive); leaves a marker verify reads.
    #[command(
        after_help = "Conditions combine (a log goes only when it meets each one). Each job's newest log and every run not finished are always kept.\n\nExamples:\n  synclog prune --older-than 90d --dry-run\n  synclog prune --older-than 90d --keep-last 100 --archive json://archive/2026.jsonl\n  synclog prune --before-id 500000 --json"
    )]
    Prune(retention::PruneArgs),
    /// Serve the store over HTTP: JSON API under /v1, live dashboard at /, /metrics.
    #[cfg(feature = "server")]
    #[command(
        after_help = "Tokens come from files or SYNCLOG_TOKEN / SYNCLOG_READ_TOKEN, never from the command line.\n\nExamples:\n  synclog serve\n  SYNCLOG_TOKEN=$(cat /etc/synclog/token) synclog serve --listen 0.0.0.0:7070 --public-read\n  synclog serve --token-file /etc/synclog/token --read-token-file /etc/synclog/read-token --verify-every 6h"
    )]
    Serve(serve::ServeArgs),
    /// Run a WAL checkpoint on the store (SQLite); a blocked checkpoint is reported as blocked.
    #[command(after_help = "Examples:\n  synclog checkpoint\n  synclog checkpoint --mode truncate")]
    Checkpoint(maintain::CheckpointArgs),
}

/// Runs the command, writing through `out`; returns the exit code, or an error to report.
/// (The caller turns the code into the final one with [`out::Out::finish`].)
pub async fn run(cli: Cli, out: &mut out::Out) -> Result<u8> {
    match cli.command {
        Command::Demo(args) => demo::run(args, out).await,
        Command::Bench(args) => bench::run(args, out).await,
        Command::BenchFill(args) => bench::fill(args, out).await,
        Command::BenchWorker(args) => bench::worker(&cli.stores, args, out).await,
        Command::Append(args) => records::append(&cli.stores, args, out).await,
        Command::List(args) => records::list(&cli.stores, args, out).await,
        Command::Count(args) => query::count(&cli.stores, args, out).await,
        Command::Summary(args) => query::summary(&cli.stores, args, out).await,
        Command::Tail(args) => query::tail(&cli.stores, args, out).await,
        Command::Show(args) => records::show(&cli.stores, args, out).await,
        Command::Start(args) => runs::start(&cli.stores, args, out).await,
        Command::Finish(args) => runs::finish(&cli.stores, args, out).await,
        Command::Abandon(args) => runs::abandon(&cli.stores, args, out).await,
        Command::Runs(args) => runs::runs(&cli.stores, args, out).await,
        Command::Verify(args) => maintain::verify(&cli.stores, args, out).await,
        Command::Check(args) => maintain::check(&cli.stores, args, out).await,
        Command::Export(args) => maintain::export(&cli.stores, args, out).await,
        Command::Restore(args) => maintain::restore(&cli.stores, args, out).await,
        Command::Checkpoint(args) => maintain::checkpoint(&cli.stores, args, out).await,
        Command::Compact(args) => compact::compact(&cli.stores, args, out).await,
        Command::Prune(args) => retention::prune(&cli.stores, args, out).await,
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::serve(&cli.stores, args, out).await,
    }
}
