//! append, list, show.

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{Map, Value};
use synclog::validate::check_exact_numbers;
use synclog::{Appended, Copies, Error, LogId, LogRecord, NewLog, Result, Scan, Status};

use super::open::{open, open_read_only, Opened};
use super::out::{escape_controls, outln, Out};
use super::query::FilterArgs;
use super::{exit, StoreArgs};

/// Parses `--status`.
pub(super) fn status(s: &str) -> std::result::Result<Status, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// A log's counters, as `append` and `finish` take them.
#[derive(Debug, Args)]
pub(super) struct Counts {
    /// Items seen.
    #[arg(long, default_value_t = 0)]
    seen: u64,
    /// Items written.
    #[arg(long, default_value_t = 0)]
    written: u64,
    /// Items failed.
    #[arg(long, default_value_t = 0)]
    failed: u64,
}

impl Counts {
    /// `log` with these counters.
    pub(super) fn on(&self, log: NewLog) -> NewLog {
        log.counts(self.seen, self.written, self.failed)
    }
}

/// The flags that describe one log on the command line; `--stdin` takes none of them.
const ONE_LOG: [&str; 12] = [
    "job",
    "status",
    "message",
    "attr",
    "attrs",
    "started",
    "finished",
    "seen",
    "written",
    "failed",
    "run",
    "idempotency_key",
];

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The job (sync) this run belongs to.
    #[arg(long, required_unless_present = "stdin")]
    job: Option<String>,
    /// started, progress, succeeded, failed, partial, skipped or abandoned.
    #[arg(long, value_parser = status, required_unless_present = "stdin")]
    status: Option<Status>,
    /// The run this log belongs to (see `synclog start`): a run's records are started,
    /// progress, then one terminal record.
    #[arg(long, value_name = "KEY")]
    run: Option<String>,
    /// Append exactly once: the same key with the same log again prints the stored id (a
    /// repeat, noted on stderr); with another log it is refused (exit 7). Without
    /// --started, a repeat takes the stored start time.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
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
    #[command(flatten)]
    counts: Counts,
    /// Print the stored record as JSON instead of its id.
    #[arg(long)]
    json: bool,
    /// Read logs from standard input, one JSON object per line (see --help).
    #[arg(long, conflicts_with_all = ONE_LOG, long_help = super::stdin::HELP)]
    stdin: bool,
}

pub(super) fn time(field: &'static str, s: &str) -> Result<DateTime<Utc>> {
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
    attrs_of(args.attrs.as_deref(), &args.attr)
}

/// Attributes from `--attrs` (a JSON object) and `--attr KEY=VALUE` entries on top.
pub(super) fn attrs_of(json: Option<&str>, pairs: &[String]) -> Result<Value> {
    let mut map = match json {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => {
                check_exact_numbers(text)?;
                synclog::validate::check_unique_keys("attrs", text)?;
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
    for kv in pairs {
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
                synclog::validate::check_unique_keys("attr", v)?;
                value
            }
            // JSON nested past the parser's limit is still JSON: never stored as text.
            Err(e) if e.to_string().contains("recursion limit") => {
                return Err(Error::invalid(
                    "attr",
                    format!(
                        "{k:?}: the value is nested more than {} deep; quote it to keep it as text",
                        synclog::validate::MAX_ATTRS_DEPTH
                    ),
                ))
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

pub async fn append(stores: &StoreArgs, args: AppendArgs, out: &mut Out) -> Result<u8> {
    if args.stdin {
        return super::stdin::append_stdin(stores, args.json, out).await;
    }
    // clap requires both without --stdin; this is the same answer, without a panic.
    let (Some(job), Some(status)) = (args.job.clone(), args.status) else {
        return Err(Error::invalid(
            "job",
            "--job and --status are required (or --stdin)",
        ));
    };
    let mut log = args
        .counts
        .on(NewLog::new(job, status))
        .message(args.message.clone());
    if let Some(s) = &args.started {
        log.started_at = time("started_at", s)?;
    }
    if let Some(f) = &args.finished {
        log.finished_at = Some(time("finished_at", f)?);
    }
    log.attrs = attrs(&args)?;
    log.run = args.run.clone();
    log.idempotency_key = args.idempotency_key.clone();
    log.validate()?;
    let opened = open(stores).await?;
    // The start time defaults to now, which a retried command would change: a retry of a
    // stored key takes the stored start time (the store still compares the rest).
    let stamped = [args.started.is_none()];
    if let Err(e) =
        synclog::run::adopt_stored_starts(opened.store(), std::slice::from_mut(&mut log), &stamped).await
    {
        let _ = opened.close().await;
        return Err(e);
    }
    append_to(opened, log, args.json, out).await
}

/// Appends `log` to `opened`, closes it and answers. Once the store has acknowledged the
/// log (committed and read back), the answer is its id and exit 0 whatever happens next: a
/// failed close, a copy that missed it, or an unwritable stdout is a warning on stderr,
/// because a caller who saw an error would append the run again and log it twice.
pub(super) async fn append_to(opened: Opened, log: NewLog, json: bool, out: &mut Out) -> Result<u8> {
    append_answering(opened, log, out, |rec, out| match json {
        true => print_json(rec, out),
        false => {
            outln!(out, "{}", rec.id);
            Ok(())
        }
    })
    .await
}

/// [`append_to`], answering with `answer` (the stored record).
pub(super) async fn append_answering(
    opened: Opened,
    log: NewLog,
    out: &mut Out,
    answer: impl FnOnce(&LogRecord, &mut Out) -> Result<()>,
) -> Result<u8> {
    let acknowledged = opened.append_one(log).await;
    let names = opened.copy_names();
    let closed = opened.close().await;
    let (Appended { record: rec, repeat }, copies) = match acknowledged {
        Ok(acknowledged) => acknowledged,
        Err(e) => {
            if let Err(c) = closed {
                out.warn(format_args!("closing the store also failed: {c}"));
            }
            return Err(e);
        }
    };
    answer(&rec, out)?;
    let id = rec.id;
    if repeat {
        out.stderr_line(
            "note",
            format_args!(
                "log {id} was stored before{}; it is the answer, and nothing was written now",
                rec.idempotency_key
                    .as_ref()
                    .map(|k| format!(" under idempotency key {k:?}"))
                    .unwrap_or_else(|| " (the run had already finished the same way)".into())
            ),
        );
    }
    if let (Some(copies), Some((store, backup))) = (copies, names) {
        warn_missed_copy(id, copies, &store, &backup, out);
    }
    if let Err(e) = closed {
        out.warn(format_args!(
            "log {id} is stored; closing the store afterwards failed: {e}; do not append it again"
        ));
    }
    if let Some(e) = out.take_failure() {
        out.warn(format_args!(
            "log {id} is stored, but its answer could not be written to stdout: {e}; do not append it again"
        ));
    }
    Ok(exit::OK)
}

/// Warns when only one copy holds an acknowledged log.
pub(super) fn warn_missed_copy(id: LogId, copies: Copies, store: &str, backup: &str, out: &mut Out) {
    let missed = match (copies.primary, copies.backup) {
        (true, false) => Some(("backup", backup, "store", store)),
        (false, true) => Some(("store", store, "backup", backup)),
        _ => None,
    };
    if let Some((missing, missing_name, holding, holding_name)) = missed {
        out.warn(format_args!(
            "log {id} is durable only in the {holding} ({holding_name}); the {missing} ({missing_name}) \
             missed it and gets it back at the next open or `synclog check --repair`"
        ));
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Only ids greater than this.
    #[arg(long)]
    since: Option<LogId>,
    /// At most this many logs (1 or more).
    #[arg(long, default_value_t = 50, value_parser = at_least_one)]
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
        filter: args.filter.filter()?,
        limit: args.limit,
        descending: args.desc,
        ..Scan::default()
    };
    scan.effective_limit()?;
    let opened = open_read_only(stores).await?;
    let records = opened.store().scan(&scan).await;
    opened.close().await?;
    let records = records?;
    if args.json {
        for rec in &records {
            print_json(rec, out)?;
        }
    } else {
        print_table(&records, out, true);
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
    let opened = open_read_only(stores).await?;
    let rec = match opened.store().get(args.id).await {
        Ok(Some(rec)) => Ok(rec),
        Ok(None) => {
            let said = super::retention::absent(opened.store(), args.id, out).await;
            opened.close().await?;
            return said;
        }
        Err(e) => Err(e),
    };
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

/// One record as a JSON line, with no raw control character in it. A record whose fields
/// no longer give its checksum (damaged in every copy there is) carries `"intact": false`,
/// so that no reader takes it as good.
pub(super) fn print_json(rec: &LogRecord, out: &mut Out) -> Result<()> {
    let line = if rec.is_intact() {
        serde_json::to_string(rec).map_err(encode)?
    } else {
        let mut value = serde_json::to_value(rec).map_err(encode)?;
        if let Value::Object(map) = &mut value {
            map.insert("intact".into(), Value::Bool(false));
        }
        value.to_string()
    };
    out.json(&line);
    Ok(())
}

fn encode(e: serde_json::Error) -> Error {
    Error::Backend {
        engine: "synclog",
        context: "encoding JSON".into(),
        source: Box::new(e),
    }
}

/// One value as a line of JSON (a run, a job's summary).
pub(super) fn print_json_line(value: &impl serde::Serialize, out: &mut Out) -> Result<()> {
    out.json(&serde_json::to_string(value).map_err(encode)?);
    Ok(())
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

/// The header of [`print_table`].
pub(super) fn print_header(out: &mut Out) {
    outln!(
        out,
        "{:>8}  {:<20}  {:<20}  {:<9}  {:>21}  message",
        "id",
        "recorded (UTC)",
        "job",
        "status",
        "seen/written/failed"
    );
}

/// Logs as table rows; with `header`, the header first and `(no logs)` for none.
pub(super) fn print_table(records: &[LogRecord], out: &mut Out, header: bool) {
    if header {
        print_header(out);
    }
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
            if r.is_intact() {
                cut(&escape_controls(&r.message), 60)
            } else {
                format!(
                    "[DAMAGED: does not match its checksum] {}",
                    cut(&escape_controls(&r.message), 40)
                )
            }
        );
    }
    if header && records.is_empty() {
        outln!(out, "(no logs)");
    }
}

/// A count of at least 1: `--limit 0` would otherwise mean the library's default page.
pub(crate) fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use synclog::memory::MemoryStore;
    use synclog::Durability;
    use synclog::{
        Capabilities, Guarded, GuardedOptions, ImportReport, LogStore, Scan, VerifyOptions, VerifyReport,
    };

    use super::*;
    use crate::cli::out::tests::captured;

    /// A memory store that claims every durability level and fails where a test says.
    #[derive(Debug)]
    struct Faulty {
        name: &'static str,
        inner: MemoryStore,
        fail_close: bool,
        fail_import: bool,
    }

    impl Faulty {
        fn new(name: &'static str) -> Faulty {
            Faulty {
                name,
                inner: MemoryStore::new(),
                fail_close: false,
                fail_import: false,
            }
        }
    }

    fn disk_full(what: &str) -> Error {
        Error::io(what.to_string(), std::io::Error::from_raw_os_error(libc::ENOSPC))
    }

    #[async_trait]
    impl LogStore for Faulty {
        fn describe(&self) -> String {
            format!("faulty://{}", self.name)
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                durability: Durability::ALL.to_vec(),
                ..self.inner.capabilities()
            }
        }
        async fn commit_valid(
            &self,
            batch: synclog::ValidBatch,
            _: Durability,
        ) -> Result<synclog::Committed> {
            self.inner.commit_valid(batch, Durability::Buffered).await
        }
        async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
            self.inner.get(id).await
        }
        async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
            self.inner.scan(scan).await
        }
        async fn last_id(&self) -> Result<Option<LogId>> {
            self.inner.last_id().await
        }
        async fn high_water(&self) -> Result<Option<LogId>> {
            self.inner.high_water().await
        }
        async fn sync(&self, _: Durability) -> Result<()> {
            self.inner.sync(Durability::Buffered).await
        }
        async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
            self.inner.verify(options).await
        }
        async fn import_valid(&self, records: synclog::ValidRecords, _: Durability) -> Result<ImportReport> {
            if self.fail_import {
                return Err(disk_full("writing the records"));
            }
            self.inner.import_valid(records, Durability::Buffered).await
        }
        async fn close(&self) -> Result<()> {
            self.inner.close().await?;
            if self.fail_close {
                return Err(disk_full("saving the high-water mark"));
            }
            Ok(())
        }
    }

    async fn guarded(primary: Faulty, backup: Faulty) -> Opened {
        let g = Guarded::open(Arc::new(primary), Arc::new(backup), GuardedOptions::default())
            .await
            .unwrap();
        Opened::Guarded(Arc::new(g))
    }

    fn log() -> NewLog {
        NewLog::new("crm", Status::Succeeded)
    }

    #[tokio::test]
    async fn append_whose_close_fails_after_the_ack_exits_0_with_the_id_and_a_warning() {
        // --- step: a single store whose close fails (the high-water mark on a full disk)
        let store = Faulty {
            fail_close: true,
            ..Faulty::new("single")
        };
        let (mut out, stdout, stderr) = captured();
        let code = append_to(Opened::Single(Arc::new(store)), log(), false, &mut out).await;
        assert_eq!(code.map(|c| out.finish(c)).ok(), Some(exit::OK));
        assert_eq!(stdout.text(), "1\n");
        assert!(stderr.text().contains("warning"), "{}", stderr.text());

        // --- step: a guarded pair whose primary's close fails
        let primary = Faulty {
            fail_close: true,
            ..Faulty::new("primary")
        };
        let (mut out, stdout, stderr) = captured();
        let opened = guarded(primary, Faulty::new("backup")).await;
        let code = append_to(opened, log(), false, &mut out).await;
        assert_eq!(code.map(|c| out.finish(c)).ok(), Some(exit::OK));
        assert_eq!(stdout.text(), "1\n");
        assert!(stderr.text().contains("warning"), "{}", stderr.text());
    }

    #[tokio::test]
    async fn append_acknowledged_by_one_copy_exits_0_and_names_the_copy_that_missed_it() {
        // --- step: the backup cannot take the log
        let backup = Faulty {
            fail_import: true,
            ..Faulty::new("backup")
        };
        let (mut out, stdout, stderr) = captured();
        let opened = guarded(Faulty::new("primary"), backup).await;
        let code = append_to(opened, log(), false, &mut out).await;
        assert_eq!(code.map(|c| out.finish(c)).ok(), Some(exit::OK));
        assert_eq!(stdout.text(), "1\n");
        // The warning naming the copy is the behaviour under test.
        let err = stderr.text();
        assert!(
            err.contains("warning") && err.contains("faulty://backup"),
            "{err}"
        );

        // --- step: the primary cannot take it
        let primary = Faulty {
            fail_import: true,
            ..Faulty::new("primary")
        };
        let (mut out, stdout, stderr) = captured();
        let opened = guarded(primary, Faulty::new("backup")).await;
        let code = append_to(opened, log(), false, &mut out).await;
        assert_eq!(code.map(|c| out.finish(c)).ok(), Some(exit::OK));
        assert_eq!(stdout.text(), "1\n");
        let err = stderr.text();
        assert!(
            err.contains("warning") && err.contains("faulty://primary"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn append_acknowledged_by_both_copies_says_nothing_on_stderr() {
        let (mut out, stdout, stderr) = captured();
        let opened = guarded(Faulty::new("primary"), Faulty::new("backup")).await;
        let code = append_to(opened, log(), false, &mut out).await;
        assert_eq!(code.map(|c| out.finish(c)).ok(), Some(exit::OK));
        assert_eq!(stdout.text(), "1\n");
        assert_eq!(stderr.text(), "");
    }

    #[tokio::test]
    async fn append_that_neither_copy_took_is_an_error() {
        let failing = |name| Faulty {
            fail_import: true,
            ..Faulty::new(name)
        };
        let (mut out, stdout, _) = captured();
        let opened = guarded(failing("primary"), failing("backup")).await;
        let code = append_to(opened, log(), false, &mut out).await;
        assert!(code.is_err());
        assert_eq!(stdout.text(), "");
    }

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
        print_table(&[rec], &mut out, true);
        let text = stdout.text();
        let body = text.strip_suffix('\n').unwrap_or(&text);
        assert!(!body.chars().any(|c| c != '\n' && (c.is_control())), "{text:?}");
        assert_eq!(text.lines().count(), 2);
    }
}
