//! start, finish, abandon, runs: a run's timeline from the command line.

use std::time::Duration;

use chrono::Utc;
use clap::Args;
use synclog::{Error, LogStoreExt, NewLog, Result, Run, RunScan, Status};

use super::open::{open, open_existing, open_read_only};
use super::out::{escape_controls, outln, Out};
use super::query::FilterArgs;
use super::records::{
    append_answering, append_to, attrs_of, print_json, print_json_line, status, time, Counts,
};
use super::{exit, StoreArgs};

/// A duration such as `30s`, `90m`, `24h`, `7d` or `2w`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 30s, 90m, 24h, 7d or 2w");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(unit_at);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .filter(|t| *t <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The job the run belongs to.
    #[arg(long)]
    job: String,
    /// The run key (default: a new one, printed).
    #[arg(long, value_name = "KEY")]
    run: Option<String>,
    /// A message for the start record.
    #[arg(long, default_value = "")]
    message: String,
    /// One attribute, KEY=VALUE (as `append --attr`). Repeatable.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attr: Vec<String>,
    /// When the run started (RFC 3339); default now.
    #[arg(long)]
    started: Option<String>,
    /// Print the start record as JSON instead of the run key.
    #[arg(long)]
    json: bool,
}

/// `synclog start`: appends the run's `started` record and prints its key.
pub async fn start(stores: &StoreArgs, args: StartArgs, out: &mut Out) -> Result<u8> {
    let mut log = NewLog::new(args.job, Status::Started).message(args.message);
    log.attrs = attrs_of(None, &args.attr)?;
    if let Some(s) = &args.started {
        log.started_at = time("started_at", s)?;
    }
    log.run = Some(args.run.unwrap_or_else(synclog::run::new_run_key));
    log.validate()?;
    let opened = open(stores).await?;
    let json = args.json;
    append_answering(opened, log, out, |rec, out| match json {
        true => print_json(rec, out),
        false => {
            outln!(out, "{}", rec.run.as_deref().unwrap_or_default());
            Ok(())
        }
    })
    .await
}

#[derive(Debug, Args)]
pub struct FinishArgs {
    /// The run key (as `synclog start` printed it).
    run: String,
    /// How it ended: succeeded, failed, partial, skipped or abandoned.
    #[arg(long, value_parser = status)]
    status: Status,
    #[command(flatten)]
    counts: Counts,
    /// A message.
    #[arg(long, default_value = "")]
    message: String,
    /// One attribute, KEY=VALUE (as `append --attr`). Repeatable.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attr: Vec<String>,
    /// Print the terminal record as JSON instead of its id.
    #[arg(long)]
    json: bool,
}

/// `synclog finish`: appends the run's terminal record. Idempotent: a finish the run already
/// holds the same way prints the stored id.
pub async fn finish(stores: &StoreArgs, args: FinishArgs, out: &mut Out) -> Result<u8> {
    let mut log = args
        .counts
        .on(NewLog::new("-", args.status))
        .message(args.message);
    log.attrs = attrs_of(None, &args.attr)?;
    end(stores, &args.run, log, args.json, out).await
}

#[derive(Debug, Args)]
pub struct AbandonArgs {
    /// The run key.
    run: String,
    /// Why it is given up (the terminal record's message).
    #[arg(long)]
    reason: String,
    /// Print the terminal record as JSON instead of its id.
    #[arg(long)]
    json: bool,
}

/// `synclog abandon`: ends a run that will never finish with an `abandoned` record.
pub async fn abandon(stores: &StoreArgs, args: AbandonArgs, out: &mut Out) -> Result<u8> {
    let log = NewLog::new("-", Status::Abandoned).message(args.reason);
    end(stores, &args.run, log, args.json, out).await
}

/// Ends run `run` with `log` ([`LogStoreExt::finish_log`]: the run's job and start time).
async fn end(stores: &StoreArgs, run: &str, log: NewLog, json: bool, out: &mut Out) -> Result<u8> {
    // A run lives in a store that exists: a missing one is not created to refuse the run.
    let opened = open_existing(stores).await?;
    match opened.store().finish_log(run, log).await {
        Ok(log) => append_to(opened, log, json, out).await,
        Err(e) => {
            // A run the store does not hold is "not found" (exit 3, as a 404 over HTTP),
            // not bad input; asked only once the finish was refused.
            let unknown = e.kind() == synclog::ErrorKind::InvalidInput
                && synclog::validate::validate_keys(Some(run), None, Status::Abandoned).is_ok()
                && matches!(opened.store().run_records(run).await, Ok(r) if r.is_empty());
            let _ = opened.close().await;
            if !unknown {
                return Err(e);
            }
            out.stderr_line(
                "error",
                format_args!(
                    "no run {run:?} in this store (a run starts with `synclog start`); nothing was written"
                ),
            );
            Ok(exit::NOT_FOUND)
        }
    }
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Filters on the run as a whole: its job, latest status, start (--from/--until),
    /// end, key, its latest record's recorded time, and its first record's attributes.
    #[command(flatten)]
    filter: FilterArgs,
    /// Only stale runs: started longer ago than --older-than and not finished.
    #[arg(long)]
    stale: bool,
    /// With --stale: how long a run may go unfinished.
    #[arg(long, value_parser = parse_duration, default_value = "24h", requires = "stale")]
    older_than: Duration,
    /// At most this many runs (1 or more).
    #[arg(long, default_value_t = 50, value_parser = super::records::at_least_one)]
    limit: usize,
    /// Newest first.
    #[arg(long)]
    desc: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// The instant before which an unfinished run is stale.
pub fn stale_cutoff(older_than: Duration) -> Result<synclog::Timestamp> {
    chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .ok_or_else(|| Error::invalid("older_than", "is too long"))
}

/// `synclog runs`: one row per run.
pub async fn runs(stores: &StoreArgs, args: RunsArgs, out: &mut Out) -> Result<u8> {
    let scan = RunScan {
        filter: args.filter.filter()?,
        started_before: if args.stale {
            Some(stale_cutoff(args.older_than)?)
        } else {
            None
        },
        unfinished: args.stale,
        limit: args.limit,
        descending: args.desc,
        ..RunScan::default()
    };
    scan.effective_limit()?;
    let opened = open_read_only(stores).await?;
    let runs = opened.store().runs(&scan).await;
    opened.close().await?;
    let runs = runs?;
    if args.json {
        for run in &runs {
            print_json_line(run, out)?;
        }
    } else {
        print_runs(&runs, out);
    }
    Ok(exit::OK)
}

fn print_runs(runs: &[Run], out: &mut Out) {
    outln!(
        out,
        "{:<34}  {:<20}  {:<9}  {:<20}  {:>10}  {:>21}  records",
        "run",
        "job",
        "status",
        "started (UTC)",
        "duration",
        "seen/written/failed"
    );
    for r in runs {
        let duration = r
            .duration_ms
            .map(|ms| match ms {
                ms if ms < 1000 => format!("{ms}ms"),
                ms => format!("{:.1}s", ms as f64 / 1000.0),
            })
            .unwrap_or_else(|| "running".into());
        outln!(
            out,
            "{:<34}  {:<20}  {:<9}  {:<20}  {:>10}  {:>21}  {}",
            escape_controls(&r.key),
            escape_controls(&r.job),
            r.status,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            duration,
            format!("{}/{}/{}", r.items_seen, r.items_written, r.items_failed),
            r.record_ids
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if runs.is_empty() {
        outln!(out, "(no runs)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_their_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in [
            "",
            "h",
            "24",
            "1.5h",
            "-1h",
            "24x",
            "99999999999999999999d",
            "1000000w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
