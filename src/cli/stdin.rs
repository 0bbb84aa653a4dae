//! `synclog append --stdin`: one JSON log per line in, one answer per durable log out.
//!
//! A thread reads standard input line by line (never holding more than
//! [`MAX_LINE_BYTES`] of one line) and parses each line into a validated [`NewLog`]. The
//! command's task submits every parsed log to the store opened once for the whole stream,
//! keeping up to [`MAX_IN_FLIGHT`] appends in flight, so lines that arrive together share
//! a group commit. Each append is submitted in input order (its first poll, which queues
//! it, happens here before the next line's), so ids follow the input. Answers are printed
//! in input order, each only once its log is acknowledged (durable and read back), and
//! stdout is flushed after every round of answers.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, BufRead};
use std::pin::Pin;
use std::task::Poll;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use synclog::validate::check_exact_numbers;
use synclog::{Appended, Copies, Error, LogId, LogRecord, NewLog, Result, Status};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::open::{open, Opened};
use super::out::{outln, Out};
use super::records::{print_json, time, warn_missed_copy};
use super::{exit, StoreArgs};

/// Longest accepted input line, in bytes (its newline not counted). The validation limits
/// (64 KiB of message, 64 KiB of attributes) written with JSON escapes (`\u0001` is six
/// bytes for one) fit with room to spare; a longer line is refused as a bad line, and its
/// bytes are skipped as they are read, never buffered.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Most appends in flight (submitted, not yet answered) at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// Lines parsed ahead of the appends.
const READ_AHEAD: usize = 64;

/// The keys a line's object may have.
const FIELDS: [&str; 11] = [
    "job",
    "status",
    "message",
    "attrs",
    "started_at",
    "finished_at",
    "items_seen",
    "items_written",
    "items_failed",
    "run",
    "idempotency_key",
];

/// The help text of `--stdin`: what a line must hold.
pub const HELP: &str = "Read logs from standard input, one JSON object per line, and append each as it arrives.

Each line is an object with \"job\" (string) and \"status\" (started, progress, succeeded, failed, partial, skipped, abandoned), and optionally \"message\" (string), \"attrs\" (object), \"started_at\" and \"finished_at\" (RFC 3339; started_at defaults to now), \"items_seen\", \"items_written\", \"items_failed\" (whole numbers), \"run\" (the run key) and \"idempotency_key\" (a line whose key is stored with the same content answers with the stored record; with other content it is refused; a keyed line without started_at takes the stored start time, so rerunning the same input repeats). null is the same as leaving a key out; any other key, or a key given twice, is refused. Blank lines are skipped. A line may be at most 1 MiB.

One line is printed per log once it is durable, in input order: its id, or the stored record with --json. A bad line (not JSON, not an object, an invalid or unknown field, an attribute number that would be rounded, longer than 1 MiB, not UTF-8) gets an error on stderr naming its line number, and nothing of it is written; the other lines go on. Exit code at the end of input: 0 when every line was appended, 2 when only bad input was refused, the storage error's code when an append failed.";

/// One line of input, as read.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The line's text, its line ending removed.
    Text(String),
    /// Longer than the limit: how many bytes it had (all skipped).
    TooLong(u64),
    /// Not UTF-8.
    NotUtf8(std::str::Utf8Error),
}

/// Reads lines from `inner`, keeping at most `max` bytes of one line.
struct Lines<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    number: u64,
}

impl<R: BufRead> Lines<R> {
    fn new(inner: R, max: usize) -> Lines<R> {
        Lines {
            inner,
            max,
            buf: Vec::new(),
            number: 0,
        }
    }

    /// The next line and its number (from 1), or `None` at the end of input. A last line
    /// without a newline counts; a `\r` before the newline is removed.
    fn next_line(&mut self) -> io::Result<Option<(u64, Line)>> {
        self.buf.clear();
        let mut len: u64 = 0;
        let mut too_long = false;
        let mut started = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if !started {
                    return Ok(None);
                }
                break;
            }
            started = true;
            let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (at, true),
                None => (chunk.len(), false),
            };
            len += take as u64;
            if !too_long {
                if self.buf.len() + take > self.max + 1 {
                    // One byte of slack for the `\r` of a CRLF line at the limit.
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(take + usize::from(newline));
            if newline {
                break;
            }
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
            len = len.saturating_sub(1);
        }
        if too_long || self.buf.len() > self.max {
            return Ok(Some((self.number, Line::TooLong(len))));
        }
        let line = match std::str::from_utf8(&self.buf) {
            Ok(text) => Line::Text(text.to_string()),
            Err(e) => Line::NotUtf8(e),
        };
        Ok(Some((self.number, line)))
    }
}

/// The keys and raw values of one JSON object, in order, duplicates kept.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses one line into a validated log; `None` for a blank line.
#[cfg(test)]
fn parse_line(text: &str) -> Result<Option<NewLog>> {
    Ok(parse_line_stamped(text)?.map(|(log, _)| log))
}

/// Parses one line; with the log, whether its `started_at` was stamped now (the line left
/// it out).
fn parse_line_stamped(text: &str) -> Result<Option<(NewLog, bool)>> {
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Ok(None);
    }
    if !trimmed.starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
            Ok(_) => Error::invalid(
                "line",
                "must be a JSON object, like {\"job\":\"crm\",\"status\":\"succeeded\"}",
            ),
            Err(e) => Error::invalid("line", format!("not valid JSON: {e}")),
        });
    }
    let entries: Entries<'_> =
        serde_json::from_str(trimmed).map_err(|e| Error::invalid("line", format!("not valid JSON: {e}")))?;
    let mut seen = [false; FIELDS.len()];
    let mut job = None;
    let mut status = None;
    let mut log = NewLog::new("", Status::Started);
    let mut stamped = true;
    for (key, raw) in entries.0 {
        let Some(at) = FIELDS.iter().position(|f| *f == key) else {
            return Err(Error::invalid(
                "key",
                format!(
                    "{key:?} is not a field of a log; the fields are {}",
                    FIELDS.join(", ")
                ),
            ));
        };
        let field = FIELDS[at];
        if std::mem::replace(&mut seen[at], true) {
            return Err(Error::invalid(field, "is given twice"));
        }
        let raw = raw.get();
        let null = raw == "null";
        match field {
            "job" => job = Some(string(field, raw)?),
            "status" => status = Some(string(field, raw)?.parse::<Status>()?),
            _ if null => {}
            "message" => log.message = string(field, raw)?,
            "attrs" => log.attrs = attrs(raw)?,
            "started_at" => {
                log.started_at = time(field, &string(field, raw)?)?;
                stamped = false;
            }
            "finished_at" => log.finished_at = Some(time(field, &string(field, raw)?)?),
            "items_seen" => log.items_seen = counter(field, raw)?,
            "items_written" => log.items_written = counter(field, raw)?,
            "items_failed" => log.items_failed = counter(field, raw)?,
            "run" => log.run = Some(string(field, raw)?),
            _ => log.idempotency_key = Some(string(field, raw)?),
        }
    }
    log.job = job.ok_or_else(|| Error::invalid("job", "is missing"))?;
    log.status = status.ok_or_else(|| Error::invalid("status", "is missing"))?;
    log.validate()?;
    Ok(Some((log, stamped)))
}

fn string(field: &'static str, raw: &str) -> Result<String> {
    serde_json::from_str::<String>(raw).map_err(|_| Error::invalid(field, "must be a JSON string"))
}

fn attrs(raw: &str) -> Result<Value> {
    match serde_json::from_str::<Value>(raw) {
        Ok(value @ Value::Object(_)) => {
            check_exact_numbers(raw)?;
            synclog::validate::check_unique_keys("attrs", raw)?;
            Ok(value)
        }
        Err(e) if e.to_string().contains("recursion limit") => Err(Error::invalid(
            "attrs",
            format!("nested more than {} deep", synclog::validate::MAX_ATTRS_DEPTH),
        )),
        _ => Err(Error::invalid(
            "attrs",
            "must be a JSON object, like {\"source\":\"crm\"}",
        )),
    }
}

fn counter(field: &'static str, raw: &str) -> Result<u64> {
    serde_json::from_str::<u64>(raw)
        .map_err(|_| Error::invalid(field, "must be a whole number from 0 to 9223372036854775807"))
}

/// What the reading thread sends: a log, a bad line, or why reading stopped early.
#[derive(Debug)]
enum Input {
    /// `stamped`: the line gave no start time (see [`parse_line_stamped`]).
    Log {
        line: u64,
        log: NewLog,
        stamped: bool,
    },
    Bad {
        line: u64,
        error: Error,
    },
    Failed {
        after: u64,
        error: io::Error,
    },
}

/// Reads and parses every line of `reader`, sending each to `tx` in order. Stops at the end
/// of input, on a read error (sent), or when nobody listens any more.
fn read_all(reader: impl BufRead, tx: mpsc::Sender<Input>) {
    let mut lines = Lines::new(reader, MAX_LINE_BYTES);
    loop {
        let input = match lines.next_line() {
            Ok(None) => return,
            Err(error) => Input::Failed {
                after: lines.number,
                error,
            },
            Ok(Some((line, Line::TooLong(bytes)))) => Input::Bad {
                line,
                error: Error::invalid(
                    "line",
                    format!("{bytes} bytes is longer than the limit of {MAX_LINE_BYTES}"),
                ),
            },
            Ok(Some((line, Line::NotUtf8(e)))) => Input::Bad {
                line,
                error: Error::invalid("line", format!("not UTF-8: {e}")),
            },
            Ok(Some((line, Line::Text(text)))) => match parse_line_stamped(&text) {
                Ok(None) => continue,
                Ok(Some((log, stamped))) => Input::Log { line, log, stamped },
                Err(error) => Input::Bad { line, error },
            },
        };
        let last = matches!(input, Input::Failed { .. });
        if tx.blocking_send(input).is_err() || last {
            return;
        }
    }
}

/// An acknowledged log and, for a guarded pair, which copies hold it.
type Acked = (Appended, Option<Copies>);

type Appending = Pin<Box<dyn Future<Output = Result<Acked>> + Send>>;

/// Appends `log` to `target` in a task of its own (`Opened` is cheap to clone).
fn append(target: &Opened, log: NewLog) -> Appending {
    let target = target.clone();
    Box::pin(async move { target.append_one(log).await })
}

/// A line on its way: refused, answered by the store, or still appending.
enum Pending {
    Bad(u64, Error),
    Done(u64, Result<Acked>),
    Running(u64, JoinHandle<Result<Acked>>),
}

/// `synclog append --stdin`: opens the store once, streams standard input into it, closes it.
pub async fn append_stdin(stores: &StoreArgs, json: bool, out: &mut Out) -> Result<u8> {
    let target = open(stores).await?;
    let reader = io::BufReader::with_capacity(64 * 1024, io::stdin());
    stream(target, reader, json, out).await
}

/// Appends every log `reader` holds to `target` (see the module docs), closes `target` and
/// returns the exit code.
async fn stream(
    target: Opened,
    reader: impl BufRead + Send + 'static,
    json: bool,
    out: &mut Out,
) -> Result<u8> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    // An OS thread, not `spawn_blocking`: a read blocked on a terminal must not keep the
    // runtime from shutting down when the command ends.
    let spawned = std::thread::Builder::new()
        .name("synclog-stdin".into())
        .spawn(move || read_all(reader, tx));
    if let Err(e) = spawned {
        let closed = target.store().close().await;
        if let Err(c) = closed {
            out.warn(format_args!("closing the store also failed: {c}"));
        }
        return Err(Error::io("starting the thread that reads standard input", e));
    }
    let names = target.copy_names();
    let mut run = Run {
        out,
        json,
        names,
        stored: 0,
        bad: 0,
        failed: 0,
        storage_code: None,
        read_failed: false,
        stdout_failed: false,
        last_stored: None,
        unanswered: None,
    };
    run.pump(&target, rx).await;
    let closed = target.store().close().await;
    Ok(run.finish(closed))
}

/// The state of one stream: counts, and what went wrong.
struct Run<'a> {
    out: &'a mut Out,
    json: bool,
    /// The copies' names, for a guarded pair.
    names: Option<(String, String)>,
    stored: u64,
    bad: u64,
    failed: u64,
    /// The exit code of the first append that failed.
    storage_code: Option<u8>,
    read_failed: bool,
    stdout_failed: bool,
    /// The id of the last log stored.
    last_stored: Option<LogId>,
    /// Stored logs whose answers may not have reached stdout: (first id, last id).
    unanswered: Option<(LogId, LogId)>,
}

impl Run<'_> {
    /// Submits every input line in order and answers each in order, until the input ends
    /// (or stdout fails) and every submitted line is answered.
    async fn pump(&mut self, target: &Opened, mut rx: mpsc::Receiver<Input>) {
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut reading = true;
        loop {
            self.answer_ready(&mut queue).await;
            if reading && self.stdout_failed {
                reading = false;
                rx.close();
            }
            if !reading && queue.is_empty() {
                return;
            }
            let room = queue.len() < MAX_IN_FLIGHT;
            tokio::select! {
                biased;
                (line, result) = front_finished(&mut queue) => {
                    if let Some(front) = queue.front_mut() {
                        *front = Pending::Done(line, result);
                    }
                }
                input = rx.recv(), if reading && room => match input {
                    None => reading = false,
                    Some(input) => {
                        reading = self.submit(target, input, &mut queue).await;
                        // Lines that arrived together go out together: one group commit.
                        while reading && queue.len() < MAX_IN_FLIGHT {
                            match rx.try_recv() {
                                Ok(input) => reading = self.submit(target, input, &mut queue).await,
                                Err(_) => break,
                            }
                        }
                    }
                },
            }
        }
    }

    /// Queues one input; false when reading has to stop.
    async fn submit(&mut self, target: &Opened, input: Input, queue: &mut VecDeque<Pending>) -> bool {
        match input {
            Input::Bad { line, error } => queue.push_back(Pending::Bad(line, error)),
            Input::Log {
                line,
                mut log,
                stamped,
            } => {
                // A line sent again without its start time is a repeat of the stored one.
                if stamped && log.idempotency_key.is_some() {
                    let adopted = synclog::run::adopt_stored_starts(
                        target.store(),
                        std::slice::from_mut(&mut log),
                        &[true],
                    )
                    .await;
                    if let Err(e) = adopted {
                        queue.push_back(Pending::Done(line, Err(e)));
                        return true;
                    }
                }
                let mut appending = append(target, log);
                // The first poll queues the append with the store, here and now, so appends
                // are queued (and get their ids) in input order.
                let first = std::future::poll_fn(|cx| Poll::Ready(appending.as_mut().poll(cx))).await;
                queue.push_back(match first {
                    Poll::Ready(result) => Pending::Done(line, result),
                    Poll::Pending => Pending::Running(line, tokio::spawn(appending)),
                });
            }
            Input::Failed { after, error } => {
                self.read_failed = true;
                self.out.stderr_line(
                    "error",
                    format_args!("reading standard input failed after line {after}: {error}; no line after it was read"),
                );
                return false;
            }
        }
        true
    }

    /// Answers, in order, every line at the front of `queue` that is settled, then flushes.
    async fn answer_ready(&mut self, queue: &mut VecDeque<Pending>) {
        let mut first_answered = None;
        loop {
            let (line, result) = match queue.front_mut() {
                Some(Pending::Running(_, handle)) if !handle.is_finished() => break,
                None => break,
                Some(_) => match queue.pop_front() {
                    Some(Pending::Bad(line, error)) => {
                        self.bad += 1;
                        self.out
                            .stderr_line("error", format_args!("line {line}: {error}"));
                        continue;
                    }
                    Some(Pending::Done(line, result)) => (line, result),
                    Some(Pending::Running(line, handle)) => (line, joined(handle.await)),
                    None => break,
                },
            };
            match result {
                Ok((appended, copies)) => {
                    let rec = &appended.record;
                    first_answered.get_or_insert(rec.id);
                    self.answer(rec, copies);
                }
                Err(error) => {
                    self.failed += 1;
                    self.storage_code.get_or_insert(exit::code_for(&error));
                    self.out.stderr_line(
                        "error",
                        format_args!("line {line}: the append failed; its log is not acknowledged: {error}"),
                    );
                    if let Some(hint) = exit::hint(&error) {
                        self.out.stderr_line("hint", hint);
                    }
                }
            }
        }
        if self.stdout_failed {
            return;
        }
        if let Some(e) = self.out.take_failure() {
            self.stdout_failed = true;
            self.out.stderr_line(
                "error",
                format_args!("cannot write to stdout: {e}; no further line is read"),
            );
            if let (Some(first), Some(last)) = (first_answered, self.last_stored) {
                self.unanswered = Some((first, last));
            }
        }
    }

    fn answer(&mut self, rec: &LogRecord, copies: Option<Copies>) {
        self.stored += 1;
        self.last_stored = Some(rec.id);
        if self.stdout_failed {
            let first = self.unanswered.map_or(rec.id, |(first, _)| first);
            self.unanswered = Some((first, rec.id));
        }
        if self.json {
            if let Err(e) = print_json(rec, self.out) {
                self.out.warn(format_args!(
                    "log {} is stored, but cannot be shown as JSON: {e}",
                    rec.id
                ));
            }
        } else {
            outln!(self.out, "{}", rec.id);
        }
        if let (Some(copies), Some((store, backup))) = (copies, &self.names) {
            warn_missed_copy(rec.id, copies, store, backup, self.out);
        }
    }

    /// Reports what is left to say and returns the exit code.
    fn finish(self, closed: Result<()>) -> u8 {
        if let Err(e) = closed {
            self.out.warn(format_args!(
                "{} logs are stored; closing the store afterwards failed: {e}; do not append them again",
                self.stored
            ));
        }
        if let Some((first, last)) = self.unanswered {
            self.out.warn(format_args!(
                "logs {first}..={last} are stored, but their answers may not have reached stdout; do not append them again"
            ));
        }
        if self.bad > 0 || self.failed > 0 {
            self.out.stderr_line(
                "error",
                format_args!(
                    "{} logs stored; {} bad lines refused; {} appends failed",
                    self.stored, self.bad, self.failed
                ),
            );
        }
        if let Some(code) = self.storage_code {
            code
        } else if self.stdout_failed || self.read_failed {
            exit::STORAGE
        } else if self.bad > 0 {
            exit::USAGE
        } else {
            exit::OK
        }
    }
}

/// The result of a finished append task; a task that panicked stored nothing we know of.
fn joined(r: std::result::Result<Result<Acked>, tokio::task::JoinError>) -> Result<Acked> {
    r.unwrap_or_else(|e| {
        Err(Error::Backend {
            engine: "synclog",
            context:
                "the append task ended without an answer; check with `synclog list` whether its log is stored"
                    .into(),
            source: Box::new(e),
        })
    })
}

/// The line number and result of the append at the front of `queue`, once its task has
/// finished; never resolves when the front is anything else (the caller answers those
/// before waiting).
async fn front_finished(queue: &mut VecDeque<Pending>) -> (u64, Result<Acked>) {
    match queue.front_mut() {
        Some(Pending::Running(line, handle)) => (*line, joined(handle.await)),
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use std::sync::Arc;

    use async_trait::async_trait;
    use synclog::memory::MemoryStore;
    use synclog::{Capabilities, GuardedOptions, ImportReport, Scan, VerifyOptions, VerifyReport};
    use synclog::{Durability, Guarded, LogStore};

    use super::*;
    use crate::cli::out::tests::{captured, Full};

    fn lines_of(input: &[u8], max: usize) -> Vec<(u64, Line)> {
        let mut lines = Lines::new(Cursor::new(input.to_vec()), max);
        std::iter::from_fn(|| lines.next_line().unwrap()).collect()
    }

    #[test]
    fn lines_are_numbered_crlf_is_cut_and_a_last_line_without_newline_counts() {
        let got = lines_of(b"a\r\n\nb\xffc\nlast", 16);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (1, Line::Text("a".into())));
        assert_eq!(got[1], (2, Line::Text(String::new())));
        assert!(matches!(got[2], (3, Line::NotUtf8(_))));
        assert_eq!(got[3], (4, Line::Text("last".into())));
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_whole_without_growing_the_buffer() {
        // A tiny BufReader, so the long line arrives in many reads.
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nok\n");
        let reader = io::BufReader::with_capacity(7, Cursor::new(input));
        let mut lines = Lines::new(reader, 100);
        assert_eq!(lines.next_line().unwrap(), Some((1, Line::TooLong(10_000))));
        assert!(lines.buf.capacity() <= 2 * 101, "{}", lines.buf.capacity());
        assert_eq!(lines.next_line().unwrap(), Some((2, Line::Text("ok".into()))));
        assert_eq!(lines.next_line().unwrap(), None);
        // Exactly the limit is accepted, CRLF included.
        let at_limit = [vec![b'y'; 100], b"\r\n".to_vec()].concat();
        assert!(matches!(lines_of(&at_limit, 100)[0], (1, Line::Text(ref t)) if t.len() == 100));
    }

    fn field_of(line: &str) -> &'static str {
        match parse_line(line) {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn each_bad_line_is_refused_as_invalid_input_naming_its_field() {
        for (line, field) in [
            ("nope", "line"),
            ("42", "line"),
            (r#"{"job":"a","status":"failed""#, "line"),
            (r#"{"job":"a","status":"failed"} x"#, "line"),
            (r#"{"status":"failed"}"#, "job"),
            (r#"{"job":"a"}"#, "status"),
            (r#"{"job":1,"status":"failed"}"#, "job"),
            (r#"{"job":"a","status":"done"}"#, "status"),
            (r#"{"job":"a","status":"failed","status":"failed"}"#, "status"),
            (r#"{"job":"a","status":"failed","Job":"b"}"#, "key"),
            (r#"{"job":"a","status":"failed","attrs":[1]}"#, "attrs"),
            (r#"{"job":"a","status":"failed","attrs":{"x":1e400}}"#, "attrs"),
            (
                r#"{"job":"a","status":"failed","attrs":{"x":0.10000000000000000000001}}"#,
                "attrs",
            ),
            (r#"{"job":"a","status":"failed","items_seen":1.5}"#, "items_seen"),
            (
                r#"{"job":"a","status":"failed","items_written":-1}"#,
                "items_written",
            ),
            (
                r#"{"job":"a","status":"failed","items_failed":9223372036854775808}"#,
                "items_failed",
            ),
            (
                r#"{"job":"a","status":"failed","started_at":"2026-13-01T00:00:00Z"}"#,
                "started_at",
            ),
            (
                r#"{"job":"a","status":"failed","started_at":"2026-01-02T00:00:00Z","finished_at":"2026-01-01T00:00:00Z"}"#,
                "finished_at",
            ),
            (r#"{"job":"a\u0000","status":"failed"}"#, "job"),
            (r#"{"job":"a","status":null}"#, "status"),
        ] {
            assert_eq!(field_of(line), field, "{line}");
        }
    }

    #[test]
    fn a_full_line_gives_every_field_and_null_means_absent() {
        let log = parse_line(
            r#" {"job":"crm","status":"partial","message":"m","attrs":{"a":[1,{"b":null}]},"started_at":"2026-01-01T00:00:00+01:00","finished_at":null,"items_seen":3,"items_written":2,"items_failed":1} "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((log.job.as_str(), log.status), ("crm", Status::Partial));
        assert_eq!((log.items_seen, log.items_written, log.items_failed), (3, 2, 1));
        assert_eq!(log.started_at.to_rfc3339(), "2025-12-31T23:00:00+00:00");
        assert_eq!(log.finished_at, None);
        assert_eq!(log.attrs, serde_json::json!({"a": [1, {"b": null}]}));
        assert_eq!(parse_line(" \t ").unwrap(), None);
    }

    /// A memory store that claims every durability level; a commit of job "fail" fails,
    /// and every import fails when the flag is set.
    #[derive(Debug)]
    struct Flaky(MemoryStore, bool);

    #[async_trait]
    impl LogStore for Flaky {
        fn describe(&self) -> String {
            format!("flaky://{}", self.0.describe())
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                durability: Durability::ALL.to_vec(),
                ..self.0.capabilities()
            }
        }
        async fn commit_valid(
            &self,
            batch: synclog::ValidBatch,
            _: Durability,
        ) -> Result<synclog::Committed> {
            if batch.iter().any(|l| l.job == "fail") {
                return Err(Error::io("writing", io::Error::from_raw_os_error(libc::ENOSPC)));
            }
            self.0.commit_valid(batch, Durability::Buffered).await
        }
        async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
            self.0.get(id).await
        }
        async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
            self.0.scan(scan).await
        }
        async fn last_id(&self) -> Result<Option<LogId>> {
            self.0.last_id().await
        }
        async fn high_water(&self) -> Result<Option<LogId>> {
            self.0.high_water().await
        }
        async fn sync(&self, _: Durability) -> Result<()> {
            self.0.sync(Durability::Buffered).await
        }
        async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
            self.0.verify(options).await
        }
        async fn import_valid(&self, records: synclog::ValidRecords, _: Durability) -> Result<ImportReport> {
            if self.1 {
                return Err(Error::io("importing", io::Error::from_raw_os_error(libc::ENOSPC)));
            }
            self.0.import_valid(records, Durability::Buffered).await
        }
        async fn close(&self) -> Result<()> {
            self.0.close().await
        }
    }

    /// A flaky store over the memory store `name`, which outlives it.
    fn flaky(name: &str) -> Arc<dyn LogStore> {
        Arc::new(Flaky(MemoryStore::open_named(name), false))
    }

    async fn stored_in(name: &str) -> u64 {
        let store = MemoryStore::open_named(name);
        store.last_id().await.unwrap().map_or(0, LogId::get)
    }

    fn input(jobs: &[&str]) -> Cursor<Vec<u8>> {
        let text: String = jobs
            .iter()
            .map(|j| format!("{{\"job\":\"{j}\",\"status\":\"succeeded\"}}\n"))
            .collect();
        Cursor::new(text.into_bytes())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_append_is_named_the_rest_go_on_and_the_exit_code_is_the_storage_errors() {
        let name = "stdin-failed-append";
        let (mut out, stdout, stderr) = captured();
        let lines = input(&["a", "fail", "b", "not a job\u{1}", "c"]);
        let code = stream(Opened::Single(flaky(name)), lines, false, &mut out)
            .await
            .unwrap();
        assert_eq!(code, exit::STORAGE, "{}", stderr.text());
        assert_eq!(stdout.text(), "1\n2\n3\n");
        // The line numbers are the behaviour under test.
        assert!(stderr.text().contains("line 2:") && stderr.text().contains("line 4:"));
        assert_eq!(stored_in(name).await, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ids_follow_the_input_order_with_many_appends_in_flight() {
        let (primary, backup) = (flaky("stdin-order-p"), flaky("stdin-order-b"));
        let guarded = Guarded::open(primary, backup, GuardedOptions::default())
            .await
            .unwrap();
        let target = Opened::Guarded(Arc::new(guarded));
        let jobs: Vec<String> = (1..=3000).map(|i| format!("j{i}")).collect();
        let jobs: Vec<&str> = jobs.iter().map(String::as_str).collect();
        let (mut out, stdout, stderr) = captured();
        let code = stream(target.clone(), input(&jobs), true, &mut out)
            .await
            .unwrap();
        assert_eq!(code, exit::OK, "{}", stderr.text());
        let records: Vec<LogRecord> = stdout
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), jobs.len());
        for (i, (rec, job)) in records.iter().zip(&jobs).enumerate() {
            assert_eq!((rec.id.get(), rec.job.as_str()), (i as u64 + 1, *job));
        }
        // Lines that arrived together shared group commits.
        let Opened::Guarded(g) = &target else {
            unreachable!()
        };
        assert!(g.stats().groups < jobs.len() as u64, "{:?}", g.stats());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_the_backup_missed_is_answered_and_the_backup_is_named_in_a_warning() {
        let backup: Arc<dyn LogStore> = Arc::new(Flaky(MemoryStore::open_named("stdin-missed-b"), true));
        let guarded = Guarded::open(flaky("stdin-missed-p"), backup, GuardedOptions::default())
            .await
            .unwrap();
        let (mut out, stdout, stderr) = captured();
        let code = stream(
            Opened::Guarded(Arc::new(guarded)),
            input(&["a", "b"]),
            false,
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(code, exit::OK, "{}", stderr.text());
        assert_eq!(stdout.text(), "1\n2\n");
        // The warning naming the copy is the behaviour under test.
        let warnings: Vec<String> = stderr
            .text()
            .lines()
            .filter(|l| l.contains("warning"))
            .map(String::from)
            .collect();
        assert_eq!(warnings.len(), 2, "{}", stderr.text());
        assert!(
            warnings.iter().all(|w| w.contains("stdin-missed-b")),
            "{warnings:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_stdout_fails_reading_stops_and_the_exit_code_is_storage() {
        let name = "stdin-full-stdout";
        let mut out = Out::new(Box::new(Full), Box::new(io::sink()));
        let jobs: Vec<String> = (1..=5000).map(|i| format!("j{i}")).collect();
        let jobs: Vec<&str> = jobs.iter().map(String::as_str).collect();
        let code = stream(Opened::Single(flaky(name)), input(&jobs), false, &mut out)
            .await
            .unwrap();
        assert_eq!(code, exit::STORAGE);
        assert!(stored_in(name).await < 5000);
    }
}
