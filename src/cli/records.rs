//! append, list, show.

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{Map, Value};
use synclog::{Error, LogId, LogRecord, LogStoreExt, NewLog, Result, Scan, Status};

use super::open::{open, Opened};
use super::out::{escape_controls, outln, Out};
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
            Ok(Value::Object(m)) => m,
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
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(Value::Object(map))
}

pub async fn append(stores: &StoreArgs, args: AppendArgs, out: &mut Out) -> Result<u8> {
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
    append_to(opened, log, args.json, out).await
}

/// Appends `log` to `opened`, closes it and answers. Once the store has acknowledged the
/// log, the answer is its id and exit 0 even when stdout cannot take it (a warning goes to
/// stderr), because a caller who saw an error would append the run again and log it twice.
async fn append_to(opened: Opened, log: NewLog, json: bool, out: &mut Out) -> Result<u8> {
    let rec = opened.store().append(log).await;
    opened.close().await?;
    let rec = rec?;
    if json {
        print_json(&rec, out)?;
    } else {
        outln!(out, "{}", rec.id);
    }
    if let Some(e) = out.take_failure() {
        out.warn(format_args!(
            "log {} is stored, but its answer could not be written to stdout: {e}; do not append it again",
            rec.id
        ));
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

pub async fn list(stores: &StoreArgs, args: ListArgs, out: &mut Out) -> Result<u8> {
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
            print_json(rec, out)?;
        }
    } else {
        print_table(&records, out);
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

pub async fn show(stores: &StoreArgs, args: ShowArgs, out: &mut Out) -> Result<u8> {
    let opened = open(stores).await?;
    let rec = opened.store().get_required(args.id).await;
    opened.close().await?;
    let rec = rec?;
    if args.json {
        print_json(&rec, out)?;
        return Ok(exit::OK);
    }
    // Every line goes through `Out::line`, which escapes control characters in stored text.
    let mut w = |k: &str, v: &dyn std::fmt::Display| outln!(out, "{k:<13} {v}");
    w("id", &rec.id);
    w("job", &rec.job);
    w("status", &rec.status);
    w("started_at", &rec.started_at.to_rfc3339());
    let finished = rec
        .finished_at
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "-".into());
    w("finished_at", &finished);
    w("recorded_at", &rec.recorded_at.to_rfc3339());
    let counts = format!(
        "seen {}, written {}, failed {}",
        rec.items_seen, rec.items_written, rec.items_failed
    );
    w("items", &counts);
    w("message", &rec.message);
    w("attrs", &rec.attrs);
    let intact = if rec.is_intact() {
        "intact"
    } else {
        "DOES NOT MATCH the fields"
    };
    w("checksum", &format!("{} ({intact})", rec.checksum));
    Ok(exit::OK)
}

/// One record as a line of JSON, with no raw control character in it.
fn print_json(rec: &LogRecord, out: &mut Out) -> Result<()> {
    let line = serde_json::to_string(rec).map_err(|e| Error::Backend {
        engine: "synclog",
        context: "encoding JSON".into(),
        source: Box::new(e),
    })?;
    out.json(&line);
    Ok(())
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

fn print_table(records: &[LogRecord], out: &mut Out) {
    outln!(
        out,
        "{:>8}  {:<20}  {:<20}  {:<9}  {:>21}  message",
        "id",
        "recorded (UTC)",
        "job",
        "status",
        "seen/written/failed"
    );
    for r in records {
        let counts = format!("{}/{}/{}", r.items_seen, r.items_written, r.items_failed);
        // Escaped before cutting, so the columns are measured as they are shown.
        outln!(
            out,
            "{:>8}  {:<20}  {:<20}  {:<9}  {:>21}  {}",
            r.id,
            r.recorded_at.format("%Y-%m-%d %H:%M:%S"),
            cut(&escape_controls(&r.job), 20),
            r.status,
            counts,
            cut(&escape_controls(&r.message), 60)
        );
    }
    if records.is_empty() {
        outln!(out, "(no logs)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::out::tests::captured;

    #[test]
    fn stored_text_in_the_table_is_shown_with_controls_escaped() {
        let mut rec = LogRecord::seal_ref(
            LogId::new(1).unwrap(),
            chrono::Utc::now(),
            &NewLog::new("job", Status::Failed).message("a\u{1b}]0;pwned\u{7}\u{9b}2J\u{7f}"),
        )
        .unwrap();
        rec.job = "j\u{1b}[2Job".into();
        let (mut out, stdout, _) = captured();
        print_table(&[rec], &mut out);
        let text = stdout.text();
        let body = text.strip_suffix('\n').unwrap_or(&text);
        assert!(!body.chars().any(|c| c != '\n' && (c.is_control())), "{text:?}");
        assert_eq!(text.lines().count(), 2);
    }
}
