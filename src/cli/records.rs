//! append, list, show.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{Map, Value};
use synclog::validate::check_exact_numbers;
use synclog::{Error, LogId, LogRecord, LogStoreExt, NewLog, Result, Scan, Status};

use super::open::open;
use super::{exit, StoreArgs};

fn status(s: &str) -> std::result::Result<Status, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The job (sync) this run belongs to.
    #[arg(long)]
    job: String,
    /// started, succeeded, failed, partial or skipped.
    #[arg(long, value_parser = status)]
    status: Status,
    /// A human-readable message.
    #[arg(long, default_value = "")]
    message: String,
    /// One attribute, KEY=VALUE; VALUE is read as JSON if it is JSON (42, true, "x"), else as text. Repeatable.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attr: Vec<String>,
    /// Attributes as a JSON object (--attr entries are added on top).
    #[arg(long)]
    attrs: Option<String>,
    /// When the run started (RFC 3339); default now.
    #[arg(long)]
    started: Option<String>,
    /// When the run finished (RFC 3339).
    #[arg(long)]
    finished: Option<String>,
    /// Items seen.
    #[arg(long, default_value_t = 0)]
    seen: u64,
    /// Items written.
    #[arg(long, default_value_t = 0)]
    written: u64,
    /// Items failed.
    #[arg(long, default_value_t = 0)]
    failed: u64,
    /// Print the stored record as JSON instead of its id.
    #[arg(long)]
    json: bool,
}

fn time(field: &'static str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Error::invalid(
                field,
                format!("{s:?} is not an RFC 3339 time ({e}), e.g. 2026-11-24T08:30:00Z"),
            )
        })
}

fn attrs(args: &AppendArgs) -> Result<Value> {
    let mut map = match &args.attrs {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => {
                check_exact_numbers(text)?;
                m
            }
            Ok(_) => {
                return Err(Error::invalid(
                    "attrs",
                    "--attrs must be a JSON object, like '{\"source\":\"crm\"}'",
                ))
            }
            Err(e) => return Err(Error::invalid("attrs", format!("--attrs is not valid JSON: {e}"))),
        },
    };
    for kv in &args.attr {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::invalid("attr", format!("{kv:?} is not KEY=VALUE")))?;
        if k.is_empty() {
            return Err(Error::invalid("attr", format!("{kv:?} has an empty key")));
        }
        // A number is stored exactly or refused (`1e400` is not JSON to serde_json, but is
        // a number all the same); anything else that is not JSON is text.
        let value = match serde_json::from_str::<Value>(v) {
            Ok(value) => {
                check_exact_numbers(v)?;
                value
            }
            Err(_) => {
                if is_number_token(v) {
                    check_exact_numbers(v)?;
                }
                Value::String(v.to_string())
            }
        };
        map.insert(k.to_string(), value);
    }
    Ok(Value::Object(map))
}

/// Whether `s` is one JSON number (`-12`, `0.5`, `1e400`), by the grammar alone.
fn is_number_token(s: &str) -> bool {
    let b = s.strip_prefix('-').unwrap_or(s).as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(0);
    if int == 0 || (b[0] == b'0' && int > 1) {
        return false;
    }
    let mut i = int;
    if b.get(i) == Some(&b'.') {
        let frac = digits(i + 1);
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(i);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

pub async fn append(stores: &StoreArgs, args: AppendArgs) -> Result<u8> {
    let mut log = NewLog::new(args.job.clone(), args.status)
        .counts(args.seen, args.written, args.failed)
        .message(args.message.clone());
    if let Some(s) = &args.started {
        log.started_at = time("started_at", s)?;
    }
    if let Some(f) = &args.finished {
        log.finished_at = Some(time("finished_at", f)?);
    }
    log.attrs = attrs(&args)?;
    log.validate()?;
    let opened = open(stores).await?;
    let rec = opened.store().append(log).await;
    opened.close().await?;
    let rec = rec?;
    if args.json {
        print_json(&rec)?;
    } else {
        println!("{}", rec.id);
    }
    Ok(exit::OK)
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this job.
    #[arg(long)]
    job: Option<String>,
    /// Only this status.
    #[arg(long, value_parser = status)]
    status: Option<Status>,
    /// Only ids greater than this.
    #[arg(long)]
    since: Option<LogId>,
    /// At most this many logs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Newest first.
    #[arg(long)]
    desc: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn list(stores: &StoreArgs, args: ListArgs) -> Result<u8> {
    let scan = Scan {
        after: args.since,
        job: args.job,
        status: args.status,
        limit: args.limit,
        descending: args.desc,
        ..Scan::default()
    };
    scan.effective_limit()?;
    let opened = open(stores).await?;
    let records = opened.store().scan(&scan).await;
    opened.close().await?;
    let records = records?;
    if args.json {
        for rec in &records {
            print_json(rec)?;
        }
    } else {
        print_table(&records)?;
    }
    Ok(exit::OK)
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The log's id.
    id: LogId,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn show(stores: &StoreArgs, args: ShowArgs) -> Result<u8> {
    let opened = open(stores).await?;
    let rec = opened.store().get_required(args.id).await;
    opened.close().await?;
    let rec = rec?;
    if args.json {
        print_json(&rec)?;
        return Ok(exit::OK);
    }
    let mut out = std::io::stdout().lock();
    let w = |out: &mut std::io::StdoutLock<'_>, k: &str, v: String| writeln!(out, "{k:<13} {v}");
    let io = |e| Error::io("writing to stdout", e);
    w(&mut out, "id", rec.id.to_string()).map_err(io)?;
    w(&mut out, "job", rec.job.clone()).map_err(io)?;
    w(&mut out, "status", rec.status.to_string()).map_err(io)?;
    w(&mut out, "started_at", rec.started_at.to_rfc3339()).map_err(io)?;
    let finished = rec
        .finished_at
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "-".into());
    w(&mut out, "finished_at", finished).map_err(io)?;
    w(&mut out, "recorded_at", rec.recorded_at.to_rfc3339()).map_err(io)?;
    let counts = format!(
        "seen {}, written {}, failed {}",
        rec.items_seen, rec.items_written, rec.items_failed
    );
    w(&mut out, "items", counts).map_err(io)?;
    w(&mut out, "message", rec.message.clone()).map_err(io)?;
    w(&mut out, "attrs", rec.attrs.to_string()).map_err(io)?;
    let intact = if rec.is_intact() {
        "intact"
    } else {
        "DOES NOT MATCH the fields"
    };
    w(&mut out, "checksum", format!("{} ({intact})", rec.checksum)).map_err(io)?;
    Ok(exit::OK)
}

fn print_json(rec: &LogRecord) -> Result<()> {
    let line = serde_json::to_string(rec).map_err(|e| Error::Backend {
        engine: "synclog",
        context: "encoding JSON".into(),
        source: Box::new(e),
    })?;
    writeln!(std::io::stdout().lock(), "{line}").map_err(|e| Error::io("writing to stdout", e))
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

fn print_table(records: &[LogRecord]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io("writing to stdout", e);
    writeln!(
        out,
        "{:>8}  {:<20}  {:<20}  {:<9}  {:>21}  message",
        "id", "recorded (UTC)", "job", "status", "seen/written/failed"
    )
    .map_err(io)?;
    for r in records {
        let counts = format!("{}/{}/{}", r.items_seen, r.items_written, r.items_failed);
        writeln!(
            out,
            "{:>8}  {:<20}  {:<20}  {:<9}  {:>21}  {}",
            r.id,
            r.recorded_at.format("%Y-%m-%d %H:%M:%S"),
            cut(&r.job, 20),
            r.status,
            counts,
            cut(&r.message, 60)
        )
        .map_err(io)?;
    }
    if records.is_empty() {
        writeln!(out, "(no logs)").map_err(io)?;
    }
    Ok(())
}
