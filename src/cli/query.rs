//! The filters every reading command takes, and count, summary and tail.

use std::time::Duration;

use chrono::Utc;
use clap::Args;
use synclog::follow::Follower;
use synclog::query::{AttrEq, Summary, TimeRange};
use synclog::{Error, Filter, Result, Scan, Status, Timestamp};

use super::open::{open, open_read_only};
use super::out::{escape_controls, outln, Out};
use super::records::{print_header, print_json, print_json_line, print_table, status};
use super::{exit, StoreArgs};

/// An instant as the filters take it: RFC 3339 (`2026-11-24T08:30:00Z`), a date
/// (`2026-11-24`, midnight UTC), or an age (`30m`, `24h`, `7d`: that long ago).
pub fn parse_when(s: &str) -> std::result::Result<Timestamp, String> {
    synclog::timefmt::parse_when(s, Utc::now())
}

fn attr(s: &str) -> std::result::Result<AttrEq, String> {
    AttrEq::parse(s).map_err(|e| e.to_string())
}

/// The filters of list, runs, count, summary and tail.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only this job (repeat for several).
    #[arg(long = "job", value_name = "JOB")]
    jobs: Vec<String>,
    /// Only this status (repeat for several).
    #[arg(long = "status", value_name = "STATUS", value_parser = status)]
    statuses: Vec<Status>,
    /// Only logs started at or after TIME (RFC 3339, a date, or an age like 24h).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    from: Option<Timestamp>,
    /// Only logs started before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    until: Option<Timestamp>,
    /// Only logs finished at or after TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    finished_from: Option<Timestamp>,
    /// Only logs finished before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    finished_until: Option<Timestamp>,
    /// Only logs recorded by the store at or after TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    recorded_from: Option<Timestamp>,
    /// Only logs recorded before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    recorded_until: Option<Timestamp>,
    /// Only logs whose attribute K equals V (V read as JSON when it is JSON, else text;
    /// repeat to require several).
    #[arg(long = "attr", value_name = "K=V", value_parser = attr)]
    attrs: Vec<AttrEq>,
    /// Only the logs of this run.
    #[arg(long, value_name = "KEY")]
    run: Option<String>,
}

impl FilterArgs {
    /// The filter, checked: a range that ends before it starts names its flags.
    pub fn filter(&self) -> Result<Filter> {
        let range = |from: Option<Timestamp>, until: Option<Timestamp>, flags: &'static str| {
            if let (Some(f), Some(u)) = (from, until) {
                if f > u {
                    return Err(Error::invalid(
                        flags,
                        format!("{} is after {}; nothing was read", f.to_rfc3339(), u.to_rfc3339()),
                    ));
                }
            }
            Ok(TimeRange { from, until })
        };
        let filter = Filter {
            jobs: self.jobs.clone(),
            statuses: self.statuses.clone(),
            started: range(self.from, self.until, "--from/--until")?,
            finished: range(
                self.finished_from,
                self.finished_until,
                "--finished-from/--finished-until",
            )?,
            recorded: range(
                self.recorded_from,
                self.recorded_until,
                "--recorded-from/--recorded-until",
            )?,
            attrs: self.attrs.clone(),
            run: self.run.clone(),
        };
        filter.validate()?;
        Ok(filter)
    }
}

#[derive(Debug, Args)]
pub struct CountArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Also count each status (one line per status with any, then the total).
    #[arg(long, value_enum, value_name = "WHAT")]
    by: Option<CountBy>,
    /// JSON ({"count": N}, with "by_status" for `--by status`) instead of text.
    #[arg(long)]
    json: bool,
}

/// What `count --by` breaks a count down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CountBy {
    /// One count per status.
    Status,
}

/// `synclog count`: how many logs match, and with `--by status` how many of each status.
pub async fn count(stores: &StoreArgs, args: CountArgs, out: &mut Out) -> Result<u8> {
    let filter = args.filter.filter()?;
    let opened = open_read_only(stores).await?;
    let counted = match args.by {
        None => opened.store().count(&filter).await.map(|n| (n, None)),
        Some(CountBy::Status) => opened
            .store()
            .count_by_status(&filter)
            .await
            .map(|c| (c.values().sum(), Some(c))),
    };
    opened.close().await?;
    let (n, by_status) = counted?;
    match (args.json, by_status) {
        (true, None) => out.json(&serde_json::json!({ "count": n }).to_string()),
        (true, Some(c)) => out.json(&serde_json::json!({ "count": n, "by_status": c }).to_string()),
        (false, None) => outln!(out, "{n}"),
        (false, Some(c)) => {
            for (status, k) in &c {
                outln!(out, "{:<10} {k}", status.as_str());
            }
            outln!(out, "{:<10} {n}", "total");
        }
    }
    Ok(exit::OK)
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// One JSON object per job instead of a table.
    #[arg(long)]
    json: bool,
}

/// `synclog summary`: one row per job; exit 0 whatever the statuses (it reports, it does
/// not judge; `check` judges).
pub async fn summary(stores: &StoreArgs, args: SummaryArgs, out: &mut Out) -> Result<u8> {
    let filter = args.filter.filter()?;
    let opened = open_read_only(stores).await?;
    let summary = opened.store().summary(&filter).await;
    opened.close().await?;
    let summary = summary?;
    if args.json {
        for job in &summary.jobs {
            print_json_line(job, out)?;
        }
    } else {
        print_summary(&summary, Utc::now(), out);
    }
    Ok(exit::OK)
}

/// `3d4h`, `5h12m`, `40s`: how long ago `t` was, coarsely.
fn age(now: Timestamp, t: Timestamp) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn print_summary(summary: &Summary, now: Timestamp, out: &mut Out) {
    outln!(
        out,
        "{:<24}  {:<9}  {:>8}  {:>12}  {:>7}  {:>8}  counts",
        "job",
        "last",
        "age",
        "last success",
        "fails",
        "logs"
    );
    for j in &summary.jobs {
        let last = j.latest_finished.as_ref().unwrap_or(&j.latest);
        let success = j
            .latest_success
            .as_ref()
            .map(|r| age(now, r.recorded_at))
            .unwrap_or_else(|| "never".into());
        let counts = j
            .counts
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        outln!(
            out,
            "{:<24}  {:<9}  {:>8}  {:>12}  {:>7}  {:>8}  {}",
            escape_controls(&j.job),
            last.status,
            age(now, last.recorded_at),
            success,
            j.consecutive_failures,
            j.total(),
            counts
        );
    }
    if summary.jobs.is_empty() {
        outln!(out, "(no logs)");
    } else if summary.all_last_succeeded() {
        outln!(out, "every job's last run succeeded");
    }
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Keep going: print new logs as they are committed (until interrupted).
    #[arg(short = 'f', long)]
    follow: bool,
    /// How many of the newest matching logs to print first.
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: usize,
    /// JSON lines instead of one line of text per log.
    #[arg(long)]
    json: bool,
}

fn print_record(rec: &synclog::LogRecord, json: bool, out: &mut Out) -> Result<()> {
    if json {
        print_json(rec, out)
    } else {
        print_table(std::slice::from_ref(rec), out, false);
        Ok(())
    }
}

/// `synclog tail`: the newest matching logs, oldest first; with `-f`, then every new one
/// as it lands, each once and in id order, until interrupted or the reader goes away.
pub async fn tail(stores: &StoreArgs, args: TailArgs, out: &mut Out) -> Result<u8> {
    let filter = args.filter.filter()?;
    let newest = Scan {
        filter: filter.clone(),
        limit: args.lines.max(1),
        descending: true,
        ..Scan::default()
    };
    newest.effective_limit()?;
    // A read-only JSON-lines handle sees only what was committed before it opened, so a
    // store whose primary is JSON lines is followed through a writer's open (it takes the
    // store's lock only for each read that catches up).
    let json_primary = stores.store.starts_with("json://");
    let opened = if args.follow && json_primary {
        open(stores).await?
    } else {
        open_read_only(stores).await?
    };
    let store = opened.shared();
    // Read the position first: everything at or below it is in the first page or did
    // not match, so the follower starts after it and nothing is printed twice.
    let result = async {
        let position = store.readable_through().await?;
        // Nothing readable yet: nothing to print first (a bound of "none" would let a
        // commit made meanwhile into the first page and then again to the follower).
        let mut first = if args.lines == 0 || position.is_none() {
            Vec::new()
        } else {
            let mut scan = newest.clone();
            scan.before = position.and_then(|p| synclog::LogId::new(p.get() + 1));
            store.scan(&scan).await?
        };
        first.reverse();
        match (args.json, args.follow, first.is_empty()) {
            (true, ..) => {
                for rec in &first {
                    print_json(rec, out)?;
                }
            }
            // Following: the header, then every log as it lands.
            (false, true, true) => print_header(out),
            (false, ..) => print_table(&first, out, true),
        }
        if !args.follow {
            return Ok(exit::OK);
        }
        let mut follower = Follower::new(store.clone(), filter, position)?;
        // One listener for the whole run: an interrupt while a batch prints is kept.
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            if !out.flush() {
                return Ok(exit::OK);
            }
            let batch = tokio::select! {
                got = follower.next_batch(Duration::from_secs(60)) => got?,
                _ = &mut interrupted => return Ok(exit::OK),
            };
            for rec in &batch {
                print_record(rec, args.json, out)?;
            }
        }
    }
    .await;
    opened.close().await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_dates_or_ages_and_nothing_else() {
        assert_eq!(
            parse_when("2026-11-24T08:30:00Z").unwrap().to_rfc3339(),
            "2026-11-24T08:30:00+00:00"
        );
        assert_eq!(
            parse_when("2026-11-24").unwrap().to_rfc3339(),
            "2026-11-24T00:00:00+00:00"
        );
        let day = parse_when("24h").unwrap();
        let off = (Utc::now() - day).num_seconds();
        assert!((86_399..=86_401).contains(&off), "{off}");
        for bad in ["", "yesterday", "24", "2026-13-01", "-1h"] {
            assert!(parse_when(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_range_that_ends_before_it_starts_names_its_flags() {
        let args = FilterArgs {
            jobs: vec![],
            statuses: vec![],
            from: Some(parse_when("2026-11-25").unwrap()),
            until: Some(parse_when("2026-11-24").unwrap()),
            finished_from: None,
            finished_until: None,
            recorded_from: None,
            recorded_until: None,
            attrs: vec![],
            run: None,
        };
        match args.filter() {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "--from/--until"),
            other => panic!("{other:?}"),
        }
    }
}
