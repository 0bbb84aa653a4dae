//! The JSON-lines format.
//!
//! ```text
//! {"synclog":"jsonl","version":2}
//! {"id":1,"recorded_at":"2026-11-24T23:08:50.123456Z","job":"crm","status":"succeeded",...,"attrs":{...},"checksum":"0a1b2c3d"}
//! {"id":2,...,"attrs":{...},"run":"20261124T230850Z-3f9c0a1b2d4e5f60","idempotency_key":"crm-42","checksum":"…"}
//! {"synclog_commit":2}
//! ```
//!
//! The first line is the header. Every record is one [`LogRecord`] as a JSON object with
//! its checksum (CRC-32C of the canonical encoding, see `synclog_core::canonical`), so `jq`
//! or Python's `json` read every line and each line can be checked on its own. A record's
//! `run` and `idempotency_key` are on its line only when it has them (a line without them
//! is exactly what the previous format wrote).
//!
//! The header's version is the format of the file: 1 for files written before records had
//! keys, 2 since. A file of a version above [`FORMAT_VERSION`] is refused; the store as a
//! whole also carries its format in `<file>.format` (see `crate::version`).
//!
//! Records are written in groups (one group commit, one import), each ended by a commit
//! line `{"synclog_commit":N}` naming how many lines the group has. A group counts only
//! once its commit line is in the file: on open, a trailing group without one (a write cut
//! short by a crash) is moved aside whole, so a batch is never half there.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use synclog_core::canonical::RecordView;
use synclog_core::{timefmt, Attrs, Checksum, Error, LogId, LogRecord, Result, Status, Timestamp};

/// The format version this build writes (and the highest it reads): 2, records may carry
/// a run key and an idempotency key. Version 1 (the previous release's) reads as before.
pub const FORMAT_VERSION: u32 = 2;

/// The header line, newline included.
pub fn header_line() -> Vec<u8> {
    format!("{{\"synclog\":\"jsonl\",\"version\":{FORMAT_VERSION}}}\n").into_bytes()
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    synclog: String,
    version: u32,
}

/// Checks the header line (without its newline).
pub fn check_header(line: &[u8], file: &str) -> Result<()> {
    let header: Header = serde_json::from_slice(line).map_err(|_| {
        Error::corrupt(
            file,
            "the first line is not a synclog JSON-lines header; is this a synclog backup?",
        )
    })?;
    if header.synclog != "jsonl" {
        return Err(Error::corrupt(
            file,
            format!("header names format {:?}, not \"jsonl\"", header.synclog),
        ));
    }
    if header.version > FORMAT_VERSION {
        return Err(Error::Unsupported {
            engine: "json",
            what: format!(
                "format version {} of {file} (this synclog reads {FORMAT_VERSION}); upgrade synclog",
                header.version
            ),
        });
    }
    Ok(())
}

/// The version a header line (without its newline) names, if it reads as a header.
pub fn header_version(line: &[u8]) -> Option<u32> {
    serde_json::from_slice::<Header>(line).ok().map(|h| h.version)
}

/// The prefix of a commit line.
const COMMIT_PREFIX: &[u8] = b"{\"synclog_commit\":";

/// Appends the commit line of a group of `lines` lines to `out`.
pub fn encode_commit(lines: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{{\"synclog_commit\":{lines}}}\n").as_bytes());
}

/// The line count of a commit line (without its newline), or `None` if `line` is not one.
pub fn commit_count(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(COMMIT_PREFIX)?.strip_suffix(b"}")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Splits a line read with its ending into its body and the length of its ending: `\n`
/// (what synclog writes), `\r\n` (what a tool converting line endings leaves), or none
/// (a last line without its newline). Every reader of the files goes through this, so a
/// file with CRLF endings, or a mix of both, reads as the same records.
pub fn split_ending(line: &[u8]) -> (&[u8], usize) {
    match line.strip_suffix(b"\n") {
        None => (line, 0),
        Some(body) => match body.strip_suffix(b"\r") {
            Some(body) => (body, 2),
            None => (body, 1),
        },
    }
}

/// Appends `rec` as one line (newline included) to `out`: the bytes `serde_json` writes
/// for a [`LogRecord`].
///
/// A record whose job, message and keys need no escaping is written field by field (what
/// `serde_json` spent most of its time on was escaping strings that need none, and
/// re-checking the attributes while copying them); anything else goes to `serde_json`.
/// On an error, nothing is left in `out`.
pub fn encode(rec: &LogRecord, out: &mut Vec<u8>) -> Result<()> {
    if !encode_plain(rec, out) {
        let start = out.len();
        serde_json::to_writer(&mut *out, rec).map_err(|e| {
            out.truncate(start);
            Error::Backend {
                engine: "json",
                context: format!("encoding log {}", rec.id),
                source: Box::new(e),
            }
        })?;
    }
    out.push(b'\n');
    Ok(())
}

/// Whether `serde_json` writes `s` as it is between quotes (no quote, backslash or
/// control character to escape).
fn plain(s: &str) -> bool {
    // No early exit, so the loop can be vectorised: almost every string is plain.
    s.bytes()
        .fold(true, |ok, c| ok & (c != b'"') & (c != b'\\') & (c >= 0x20))
}

/// Writes `rec` as [`encode`] would without its newline, if its strings need no escaping,
/// its timestamps are in years 0 to 9999 and its attributes are valid JSON (as
/// `serde_json` requires of them); `false` (having written nothing) otherwise.
fn encode_plain(rec: &LogRecord, out: &mut Vec<u8>) -> bool {
    let (mut a, mut b, mut c) = ([0u8; 30], [0u8; 30], [0u8; 30]);
    let (Some(recorded_at), Some(started_at)) = (
        timefmt::format(&rec.recorded_at, &mut a),
        timefmt::format(&rec.started_at, &mut b),
    ) else {
        return false;
    };
    let finished_at = match &rec.finished_at {
        None => None,
        Some(t) => match timefmt::format(t, &mut c) {
            Some(text) => Some(text),
            None => return false,
        },
    };
    let attrs = rec.attrs.as_str();
    let keys_plain = rec.run.as_deref().is_none_or(plain) && rec.idempotency_key.as_deref().is_none_or(plain);
    if !plain(&rec.job)
        || !plain(&rec.message)
        || !keys_plain
        || serde_json::from_str::<IgnoredAny>(attrs).is_err()
    {
        return false;
    }
    let mut n = itoa::Buffer::new();
    let quoted = |out: &mut Vec<u8>, text: &str| {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    };
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(n.format(rec.id.get()).as_bytes());
    out.extend_from_slice(b",\"recorded_at\":");
    quoted(out, recorded_at);
    out.extend_from_slice(b",\"job\":");
    quoted(out, &rec.job);
    out.extend_from_slice(b",\"status\":");
    quoted(out, rec.status.as_str());
    out.extend_from_slice(b",\"started_at\":");
    quoted(out, started_at);
    out.extend_from_slice(b",\"finished_at\":");
    match finished_at {
        None => out.extend_from_slice(b"null"),
        Some(text) => quoted(out, text),
    }
    for (name, value) in [
        (&b",\"items_seen\":"[..], rec.items_seen),
        (b",\"items_written\":", rec.items_written),
        (b",\"items_failed\":", rec.items_failed),
    ] {
        out.extend_from_slice(name);
        out.extend_from_slice(n.format(value).as_bytes());
    }
    out.extend_from_slice(b",\"message\":");
    quoted(out, &rec.message);
    out.extend_from_slice(b",\"attrs\":");
    out.extend_from_slice(attrs.as_bytes());
    // Only when present, as `serde_json` skips them (`skip_serializing_if`).
    if let Some(run) = &rec.run {
        out.extend_from_slice(b",\"run\":");
        quoted(out, run);
    }
    if let Some(key) = &rec.idempotency_key {
        out.extend_from_slice(b",\"idempotency_key\":");
        quoted(out, key);
    }
    out.extend_from_slice(b",\"checksum\":");
    out.push(b'"');
    out.extend_from_slice(&rec.checksum.hex());
    out.push(b'"');
    out.push(b'}');
    true
}

/// Parses one line (without its newline).
///
/// A line laid out exactly as [`encode`] writes it is read by [`Line::parse`]; any other
/// line (edited by hand, re-indented by a tool, or damaged) goes to `serde_json`, so what is
/// accepted, and what it decodes to, is the same either way.
pub fn decode(line: &[u8]) -> std::result::Result<LogRecord, serde_json::Error> {
    match Line::parse(line) {
        Some(fast) => Ok(fast.to_record()),
        None => serde_json::from_slice(line),
    }
}

/// Checks one line (without its newline) as opening a file does: it must decode and its
/// checksum must match its fields. Returns the record's id and checksum, or what is wrong.
///
/// A line [`Line::parse`] reads whose checksum matches is checked without building a
/// [`LogRecord`]; anything else takes the `serde_json` path, which words the problem.
pub fn check(line: &[u8]) -> std::result::Result<(LogId, Checksum), String> {
    if let Some(fast) = Line::parse(line) {
        if fast.view().checksum() == fast.checksum {
            return Ok((fast.id, fast.checksum));
        }
    }
    // Straight to serde_json: `decode` would run the in-place reader a second time.
    match serde_json::from_slice::<LogRecord>(line) {
        Err(e) => Err(format!("not a valid record: {e}")),
        Ok(rec) if !rec.is_intact() => Err(format!(
            "log {}: checksum {} does not match its fields (computed {})",
            rec.id,
            rec.checksum,
            rec.compute_checksum()
        )),
        Ok(rec) => Ok((rec.id, rec.checksum)),
    }
}

/// A record line read in place: the layout [`encode`] writes, field by field, with no
/// escape sequences in its strings.
///
/// Restoring a backup reads every line twice (once to index and check it when the file is
/// opened, once to copy it), and `serde_json`'s general decoder took 48% of the
/// instructions of a restore into SQLite (callgrind, 100,000 records). This reader takes only what `serde_json` would decode to the
/// same values: fields in [`encode`]'s order without white space (`run` and
/// `idempotency_key` after `attrs`, each only when present), integers without leading
/// zeros, strings without a backslash or a control character, attributes that are valid
/// JSON. It answers `None` for anything else (a key given as `null`, keys in another
/// order), and the caller falls back to `serde_json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The record's id.
    pub id: LogId,
    /// Its `recorded_at`.
    pub recorded_at: Timestamp,
    /// Its job.
    pub job: &'a str,
    /// Its status.
    pub status: Status,
    /// Its `started_at`.
    pub started_at: Timestamp,
    /// Its `finished_at`.
    pub finished_at: Option<Timestamp>,
    /// Its counts: seen, written, failed.
    pub items: [u64; 3],
    /// Its message.
    pub message: &'a str,
    /// The text of its attributes, as stored.
    pub attrs: &'a str,
    /// Its run key, if the line has one.
    pub run: Option<&'a str>,
    /// Its idempotency key, if the line has one.
    pub idempotency_key: Option<&'a str>,
    /// The checksum stored on the line.
    pub checksum: Checksum,
}

impl<'a> Line<'a> {
    /// Reads `line` (without its newline) if it is laid out as [`encode`] writes it.
    pub fn parse(line: &'a [u8]) -> Option<Line<'a>> {
        let mut r = Reader(std::str::from_utf8(line).ok()?);
        r.tag("{\"id\":")?;
        let id = LogId::new(r.integer()?)?;
        r.tag(",\"recorded_at\":")?;
        let recorded_at = timefmt::parse(r.string()?)?;
        r.tag(",\"job\":")?;
        let job = r.string()?;
        r.tag(",\"status\":")?;
        let status = r.string()?.parse().ok()?;
        r.tag(",\"started_at\":")?;
        let started_at = timefmt::parse(r.string()?)?;
        r.tag(",\"finished_at\":")?;
        let finished_at = match r.tag("null") {
            Some(()) => None,
            None => Some(timefmt::parse(r.string()?)?),
        };
        r.tag(",\"items_seen\":")?;
        let seen = r.integer()?;
        r.tag(",\"items_written\":")?;
        let written = r.integer()?;
        r.tag(",\"items_failed\":")?;
        let failed = r.integer()?;
        r.tag(",\"message\":")?;
        let message = r.string()?;
        r.tag(",\"attrs\":")?;
        let attrs = r.object()?;
        // The keys, each only when present, in the order `encode` writes them.
        let run = match r.tag(",\"run\":") {
            Some(()) => Some(r.string()?),
            None => None,
        };
        let idempotency_key = match r.tag(",\"idempotency_key\":") {
            Some(()) => Some(r.string()?),
            None => None,
        };
        r.tag(",\"checksum\":")?;
        let checksum = r.string()?;
        // `Checksum::from_str` alone would also take a sign (`u32::from_str_radix`), as the
        // `serde_json` path does; only the 8 hex digits `encode` writes are read here.
        if !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let checksum = checksum.parse().ok()?;
        r.tag("}")?;
        if !r.0.is_empty() {
            return None;
        }
        Some(Line {
            id,
            recorded_at,
            job,
            status,
            started_at,
            finished_at,
            items: [seen, written, failed],
            message,
            attrs,
            run,
            idempotency_key,
            checksum,
        })
    }

    /// The fields the checksum covers.
    pub fn view(&self) -> RecordView<'a> {
        RecordView {
            id: self.id.get(),
            recorded_at: self.recorded_at.timestamp_micros(),
            job: self.job,
            status: self.status.code(),
            started_at: self.started_at.timestamp_micros(),
            finished_at: self.finished_at.map(|t| t.timestamp_micros()),
            items_seen: self.items[0],
            items_written: self.items[1],
            items_failed: self.items[2],
            message: self.message,
            attrs: self.attrs,
            run: self.run,
            idempotency_key: self.idempotency_key,
        }
    }

    /// The record, as `serde_json` would have decoded the line.
    pub fn to_record(&self) -> LogRecord {
        LogRecord {
            id: self.id,
            recorded_at: self.recorded_at,
            job: self.job.to_owned(),
            status: self.status,
            started_at: self.started_at,
            finished_at: self.finished_at,
            items_seen: self.items[0],
            items_written: self.items[1],
            items_failed: self.items[2],
            message: self.message.to_owned(),
            attrs: Attrs::from_stored(self.attrs.to_owned()),
            run: self.run.map(str::to_owned),
            idempotency_key: self.idempotency_key.map(str::to_owned),
            checksum: self.checksum,
        }
    }
}

/// The rest of a line being read by [`Line::parse`].
struct Reader<'a>(&'a str);

impl<'a> Reader<'a> {
    fn tag(&mut self, tag: &str) -> Option<()> {
        self.0 = self.0.strip_prefix(tag)?;
        Some(())
    }

    /// A JSON integer that fits a `u64`, without a sign or leading zeros.
    fn integer(&mut self) -> Option<u64> {
        let b = self.0.as_bytes();
        let len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 || (len > 1 && b[0] == b'0') || matches!(b.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let n = self.0[..len].parse().ok()?;
        self.0 = &self.0[len..];
        Some(n)
    }

    /// A JSON string with no escape sequence and no control character, without its quotes.
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.0.strip_prefix('"')?;
        let end = memchr::memchr(b'"', rest.as_bytes())?;
        let text = &rest[..end];
        // No early exit, so the loop can be vectorised: almost every string is clean.
        let plain = text.bytes().fold(true, |ok, c| ok & (c != b'\\') & (c >= 0x20));
        if !plain {
            return None;
        }
        self.0 = &rest[end + 1..];
        Some(text)
    }

    /// A JSON object, as text: `serde_json` finds where it ends and checks it is valid.
    fn object(&mut self) -> Option<&'a str> {
        if !self.0.starts_with('{') {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(self.0);
        let text = <&RawValue>::deserialize(&mut de).ok()?.get();
        // It starts where the rest does (no white space to skip before the brace).
        if text.as_ptr() != self.0.as_ptr() {
            return None;
        }
        self.0 = &self.0[text.len()..];
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use serde_json::json;

    fn sealed(log: NewLog, id: u64, recorded_micros: i64) -> LogRecord {
        let at = Utc.timestamp_micros(recorded_micros).unwrap();
        LogRecord::seal(LogId::new(id).unwrap(), at, log).unwrap()
    }

    fn line_of(rec: &LogRecord) -> Vec<u8> {
        let mut out = Vec::new();
        encode(rec, &mut out).unwrap();
        assert_eq!(out.pop(), Some(b'\n'));
        out
    }

    fn plain() -> LogRecord {
        let log = NewLog::new("crm-contacts", Status::Partial)
            .counts(120, 118, 2)
            .message("2 contacts had no e-mail")
            .attr("source", "hubspot")
            .attr("pages", json!([1, {"b": null, "a": "}"}]));
        sealed(log, 42, 1_764_000_000_123_456)
    }

    use synclog_core::NewLog;

    fn text() -> impl Strategy<Value = String> {
        // Mostly plain text, sometimes what JSON must escape, and non-ASCII.
        prop_oneof![
            4 => "[a-z0-9 ,.:-]{0,40}",
            1 => "[a-z\"\\\\\n\t\u{1}é✓ ]{0,20}",
        ]
    }

    proptest! {
        /// Whatever `encode` writes, `decode` gives back the same record, whether the line
        /// takes the in-place reader or `serde_json`, and both agree.
        #[test]
        fn decode_reads_back_every_encoded_record_as_serde_json_does(
            id in 1u64..=i64::MAX as u64,
            recorded in -62_000_000_000_000_000i64..250_000_000_000_000_000,
            job in "[a-z][a-z0-9-]{0,30}",
            status in 0..Status::ALL.len(),
            finished in proptest::option::of(0i64..4_000_000_000_000_000),
            counts in any::<[u64; 3]>(),
            message in text(),
            key in text(),
            value in text(),
            run in proptest::option::of(text()),
            idempotency_key in proptest::option::of(text()),
        ) {
            let mut log = NewLog::new(job, Status::ALL[status])
                .counts(counts[0], counts[1], counts[2])
                .message(message)
                .attr(key, json!({"v": value, "n": counts[0]}));
            if let Some(f) = finished {
                log = log.finished(Utc.timestamp_micros(f).unwrap());
            }
            log.run = run;
            log.idempotency_key = idempotency_key;
            let rec = sealed(log, id, recorded);
            let line = line_of(&rec);
            prop_assert_eq!(&line, &serde_json::to_vec(&rec).unwrap(), "encode wrote other bytes than serde_json");
            let via_serde: LogRecord = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(&via_serde, &rec);
            prop_assert_eq!(&decode(&line).unwrap(), &rec);
            prop_assert_eq!(check(&line), Ok((rec.id, rec.checksum)));
            // Escapes in the job, the message or a key send the line to `serde_json`;
            // escapes in the attributes do not (their text is kept as stored).
            let escaped = |s: &str| serde_json::to_string(s).unwrap().contains('\\');
            let plain = !escaped(&rec.job)
                && !escaped(&rec.message)
                && !rec.run.as_deref().is_some_and(escaped)
                && !rec.idempotency_key.as_deref().is_some_and(escaped);
            match Line::parse(&line) {
                Some(fast) => {
                    prop_assert!(plain);
                    prop_assert_eq!(fast.to_record(), rec);
                }
                None => prop_assert!(!plain, "a plain line was not read in place"),
            }
        }
    }

    /// What `encode` cannot write field by field it leaves to `serde_json`, with the same
    /// result: the line `serde_json` writes, or its error.
    #[test]
    fn encode_writes_what_serde_json_writes_or_fails_as_it_does() {
        let far = chrono::NaiveDate::from_ymd_opt(12_345, 6, 7)
            .unwrap()
            .and_hms_opt(8, 9, 10)
            .unwrap();
        let mut log = NewLog::new("crm", Status::Failed).message("line one\nline \"two\"");
        log.finished_at = Some(Utc.from_utc_datetime(&far));
        let rec = sealed(log, 7, 0);
        let line = line_of(&rec);
        assert_eq!(line, serde_json::to_vec(&rec).unwrap());
        assert!(String::from_utf8_lossy(&line).contains("\"finished_at\":\"+12345-06-07T08:09:10Z\""));
        assert_eq!(decode(&line).unwrap(), rec);

        let mut broken = plain();
        broken.attrs = Attrs::from_stored("{\"a\":".into());
        let mut out = b"kept".to_vec();
        let err = encode(&broken, &mut out).unwrap_err();
        assert!(serde_json::to_vec(&broken).is_err());
        assert!(err.to_string().contains("encoding log 42"), "{err}");
        assert_eq!(
            out, b"kept",
            "nothing of a record that failed to encode is written"
        );
    }

    #[test]
    fn a_plain_line_is_read_in_place_with_its_attributes_text_as_stored() {
        let rec = plain();
        let line = line_of(&rec);
        let fast = Line::parse(&line).expect("the layout encode writes");
        assert_eq!(fast.attrs, rec.attrs.as_str());
        assert_eq!(fast.view().checksum(), rec.checksum);
        assert_eq!(fast.to_record(), rec);
        // Upper-case hex digits read the same either way.
        let c = rec.checksum.to_string();
        let upper = String::from_utf8(line).unwrap().replace(&c, &c.to_uppercase());
        assert_eq!(
            Line::parse(upper.as_bytes()).map(|l| l.to_record()),
            Some(rec.clone())
        );
        assert_eq!(serde_json::from_str::<LogRecord>(&upper).unwrap(), rec);
    }

    /// `variant` (number `i`) differs from `line` and the in-place reader leaves it alone.
    fn assert_not_read_in_place(i: usize, variant: &str, line: &str) {
        assert_ne!(variant, line, "variant {i} changed nothing");
        assert!(
            Line::parse(variant.as_bytes()).is_none(),
            "variant {i} was read in place: {variant}"
        );
    }

    /// Lines `serde_json` reads but the in-place reader must leave to it: `decode` still
    /// gives exactly what `serde_json` gives.
    #[test]
    fn lines_in_any_other_layout_fall_back_to_serde_json_with_the_same_result() {
        let rec = plain();
        let line = String::from_utf8(line_of(&rec)).unwrap();
        let c = rec.checksum.to_string();
        let variants = [
            line.replace(",\"job\":", ", \"job\":"),
            line.replace("{\"id\":42,", "{\"id\":42 ,"),
            line.replace("\"message\":\"2 contacts", "\"message\":\"\\u0032 contacts"),
            line.replace("\"job\":\"crm-contacts\"", "\"job\":\"crm\\u002dcontacts\""),
            line.replace(&format!(",\"checksum\":\"{c}\""), ""),
            line.replace("\"finished_at\":null,", ""),
            line.replace("}", "} "),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_not_read_in_place(i, v, &line);
            let want = serde_json::from_str::<LogRecord>(v).map_err(|e| e.to_string());
            let got = decode(v.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(got, want, "variant {i}: {v}");
        }
    }

    /// Lines the in-place reader must refuse although they look close to its layout.
    #[test]
    fn the_in_place_reader_refuses_what_serde_json_would_refuse_or_read_differently() {
        let rec = plain();
        let line = String::from_utf8(line_of(&rec)).unwrap();
        let c = rec.checksum.to_string();
        let refused = [
            line.replace("{\"id\":42,", "{\"id\":042,"),
            line.replace("{\"id\":42,", "{\"id\":42.0,"),
            line.replace("{\"id\":42,", "{\"id\":0,"),
            line.replace("{\"id\":42,", "{\"id\":99999999999999999999,"),
            line.replace("\"items_seen\":120", "\"items_seen\":-120"),
            line.replace("\"items_seen\":120", "\"items_seen\":1e2"),
            line.replace("2 contacts", "2\tcontacts"),
            line.replace("\"status\":\"partial\"", "\"status\":\"Partial\""),
            line.replace(
                &format!("\"checksum\":\"{c}\""),
                &format!("\"checksum\":\"+{}\"", &c[1..]),
            ),
            line.replace("\"pages\":[1,", "\"pages\":[1,,"),
            line.replace("}", ""),
            format!("{line}x"),
        ];
        for (i, v) in refused.iter().enumerate() {
            assert_not_read_in_place(i, v, &line);
        }
        let mut bad_utf8 = line.clone().into_bytes();
        let at = line.find("contacts had").unwrap();
        bad_utf8[at] = 0xff;
        assert!(Line::parse(&bad_utf8).is_none());
        assert!(decode(&bad_utf8).is_err());
    }

    #[test]
    fn check_names_a_checksum_that_does_not_match_the_fields() {
        let rec = plain();
        let line = String::from_utf8(line_of(&rec)).unwrap().replace("118", "119");
        let err = check(line.as_bytes()).unwrap_err();
        assert!(err.starts_with("log 42: checksum "), "{err}");
        assert!(err.contains("does not match its fields"), "{err}");
        let garbage = check(b"{\"id\":").unwrap_err();
        assert!(garbage.starts_with("not a valid record: "), "{garbage}");
    }
    fn keyed() -> LogRecord {
        let log = NewLog::new("crm-contacts", Status::Progress)
            .counts(3, 2, 1)
            .message("page 3")
            .run("20261201T104512Z-3f9c0a1b2d4e5f60")
            .idempotency_key("crm:page:3");
        sealed(log, 43, 1_764_000_000_123_456)
    }

    /// A record with keys is read in place, keys included; a record without them is the
    /// line the previous format wrote (no `run`, no `idempotency_key`, the same checksum).
    #[test]
    fn keys_are_on_the_line_only_when_present_and_are_read_in_place() {
        let rec = keyed();
        let line = String::from_utf8(line_of(&rec)).unwrap();
        assert!(
            line.contains(",\"run\":\"20261201T104512Z-3f9c0a1b2d4e5f60\",\"idempotency_key\":\"crm:page:3\",\"checksum\":"),
            "{line}"
        );
        let fast = Line::parse(line.as_bytes()).expect("read in place");
        assert_eq!(fast.run, rec.run.as_deref());
        assert_eq!(fast.idempotency_key, rec.idempotency_key.as_deref());
        assert_eq!(fast.status, Status::Progress);
        assert_eq!(fast.view().checksum(), rec.checksum);
        assert_eq!(fast.to_record(), rec);
        assert_eq!(check(line.as_bytes()), Ok((rec.id, rec.checksum)));

        let old = plain();
        let old_line = String::from_utf8(line_of(&old)).unwrap();
        assert!(!old_line.contains("\"run\"") && !old_line.contains("idempotency_key"));
        assert_eq!(old_line.as_bytes(), &serde_json::to_vec(&old).unwrap()[..]);

        let only_key = sealed(NewLog::new("crm", Status::Abandoned).idempotency_key("k"), 44, 0);
        let only_key_line = line_of(&only_key);
        let fast = Line::parse(&only_key_line).expect("read in place");
        assert_eq!(
            (fast.run, fast.idempotency_key, fast.status),
            (None, Some("k"), Status::Abandoned)
        );
        assert_eq!(decode(&only_key_line).unwrap(), only_key);
    }

    /// Keys that need escaping, given as `null`, or in another order go to `serde_json`,
    /// with its result.
    #[test]
    fn unusual_keys_fall_back_to_serde_json() {
        let mut rec = keyed();
        rec.idempotency_key = Some("a \"quoted\" \\ key".into());
        rec.checksum = rec.compute_checksum();
        let line = line_of(&rec);
        assert_eq!(line, serde_json::to_vec(&rec).unwrap());
        assert!(Line::parse(&line).is_none());
        assert_eq!(decode(&line).unwrap(), rec);
        assert_eq!(check(&line), Ok((rec.id, rec.checksum)));

        let rec = keyed();
        let line = String::from_utf8(line_of(&rec)).unwrap();
        let run = rec.run.clone().unwrap();
        let key = rec.idempotency_key.clone().unwrap();
        let swapped = line.replace(
            &format!(",\"run\":\"{run}\",\"idempotency_key\":\"{key}\""),
            &format!(",\"idempotency_key\":\"{key}\",\"run\":\"{run}\""),
        );
        let old = plain();
        let old_line = String::from_utf8(line_of(&old)).unwrap();
        let null_run = old_line.replace(",\"checksum\":", ",\"run\":null,\"checksum\":");
        for (i, (v, base)) in [(swapped, &line), (null_run, &old_line)].iter().enumerate() {
            assert_not_read_in_place(i, v, base);
            let want = serde_json::from_str::<LogRecord>(v).map_err(|e| e.to_string());
            assert_eq!(
                decode(v.as_bytes()).map_err(|e| e.to_string()),
                want,
                "variant {i}"
            );
            assert!(want.is_ok(), "variant {i}");
        }
    }
}
