//! Validation: every rule a log must pass before anything is written, with its limit.
//!
//! Who calls it: core, never the engine. An engine receives logs to commit only as a
//! [`ValidBatch`] and records to import or repair only as [`ValidRecords`], and the only
//! way to make either is to pass these rules ([`ValidBatch::new`], [`ValidRecords::new`]);
//! [`LogStoreExt::commit_report`], [`LogStoreExt::import`] and [`LogStoreExt::repair`]
//! make them before they call the engine. So no engine can forget it, and no engine
//! needs to call anything here. A batch with one bad log is rejected whole with
//! [`Error::InvalidInput`] naming the field and the log's position; nothing of it is
//! written and no id is spent.
//!
//! [`LogStoreExt::commit_report`]: crate::LogStoreExt::commit_report
//! [`LogStoreExt::import`]: crate::LogStoreExt::import
//! [`LogStoreExt::repair`]: crate::LogStoreExt::repair

use chrono::{TimeZone, Utc};
use serde_json::Value;

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::id::{LogId, Timestamp};
use crate::record::{LogRecord, NewLog};
use crate::status::Status;

/// Longest `job`, in bytes.
pub const MAX_JOB_BYTES: usize = 256;
/// Longest `message`, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest `attrs`, as canonical JSON text, in bytes.
pub const MAX_ATTRS_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects inside `attrs` (the object itself is depth 1).
pub const MAX_ATTRS_DEPTH: usize = 32;
/// Largest counter value: engines store counters as signed 64-bit integers.
pub const MAX_COUNTER: u64 = i64::MAX as u64;
/// Longest run key or idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 200;
/// Most logs in one committed batch.
pub const MAX_BATCH: usize = 10_000;

/// Earliest accepted timestamp: 1970-01-01T00:00:00Z.
pub fn min_timestamp() -> Timestamp {
    Utc.timestamp_opt(0, 0).single().unwrap_or_default()
}

/// Latest accepted timestamp: 9999-12-31T23:59:59.999999Z.
pub fn max_timestamp() -> Timestamp {
    Utc.timestamp_opt(253_402_300_799, 999_999_000)
        .single()
        .unwrap_or_default()
}

/// Input that passed core's checks: what an engine's
/// [`LogStore::commit_valid`](crate::LogStore::commit_valid) ([`ValidBatch`]),
/// [`import_valid`](crate::LogStore::import_valid) and
/// [`repair_valid`](crate::LogStore::repair_valid) ([`ValidRecords`]) receive. Made only
/// by [`ValidBatch::new`] and [`ValidRecords::new`] (and by core from records it sealed
/// itself from a [`ValidBatch`]), so holding one proves the rules were checked. Read it as
/// a slice; take the items with [`into_inner`](Self::into_inner).
///
/// An engine cannot make one without the check:
///
/// ```compile_fail
/// use synclog_core::validate::{Valid, ValidBatch};
/// let unchecked: ValidBatch = Valid(vec![]); // the field is private
/// ```
///
/// ```compile_fail
/// use synclog_core::validate::{Valid, ValidRecords};
/// let unchecked: ValidRecords = Valid(vec![]); // the field is private
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Valid<T>(Vec<T>);

/// A batch of logs that passed [`validate_batch`].
pub type ValidBatch = Valid<NewLog>;

/// Records offered for import or repair that passed [`validate_records`] (field rules and
/// checksums).
pub type ValidRecords = Valid<LogRecord>;

impl Valid<NewLog> {
    /// Checks `batch` with [`validate_batch`].
    ///
    /// Errors: [`Error::InvalidInput`] naming the first bad log's position and field.
    pub fn new(batch: Vec<NewLog>) -> Result<ValidBatch> {
        validate_batch(&batch)?;
        Ok(Valid(batch))
    }
}

impl Valid<LogRecord> {
    /// Checks `records` with [`validate_records`].
    ///
    /// Errors: [`Error::InvalidInput`] for a record that breaks a field rule,
    /// [`Error::Corrupt`] for one whose checksum does not match its fields; each names
    /// the record's position.
    pub fn new(records: Vec<LogRecord>) -> Result<ValidRecords> {
        validate_records(&records)?;
        Ok(Valid(records))
    }

    /// Records core made valid itself: sealed from logs that passed [`validate_batch`]
    /// (their checksums computed from their fields), or kept from a [`ValidRecords`]. Not
    /// checked again (debug builds do).
    pub(crate) fn already_valid(records: Vec<LogRecord>) -> ValidRecords {
        debug_assert!(validate_records(&records).is_ok());
        Valid(records)
    }
}

impl<T> Valid<T> {
    /// The items, in the order given.
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T> Default for Valid<T> {
    /// None: nothing to check.
    fn default() -> Self {
        Valid(Vec::new())
    }
}

impl<T> IntoIterator for Valid<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<T> std::ops::Deref for Valid<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

/// Checks one log against every rule.
///
/// - `job`: not empty, at most [`MAX_JOB_BYTES`], no control characters (NUL included);
/// - `message`: at most [`MAX_MESSAGE_BYTES`], no NUL (PostgreSQL `text` cannot hold one);
/// - `attrs`: a JSON object, at most [`MAX_ATTRS_BYTES`] as canonical text, nested at most
///   [`MAX_ATTRS_DEPTH`] deep;
/// - counters: at most [`MAX_COUNTER`];
/// - timestamps: between [`min_timestamp`] and [`max_timestamp`], `finished_at` not before
///   `started_at`;
/// - `run` and `idempotency_key`: when set, not empty, at most [`MAX_KEY_BYTES`], no
///   control characters; `progress` and `abandoned` only with a `run`; a run does not
///   start under the key `.` or `..`.
pub fn validate_new(log: &NewLog) -> Result<()> {
    validate_job(&log.job)?;
    validate_message(&log.message)?;
    validate_counters(log.items_seen, log.items_written, log.items_failed)?;
    validate_times(log.started_at, log.finished_at, true)?;
    validate_keys(log.run.as_deref(), log.idempotency_key.as_deref(), log.status)?;
    validate_new_run_key(log)?;
    validate_attrs(&log.attrs)
}

/// A run starts only under a key that every URL can carry: `.` and `..` are resolved out
/// of a URL path by browsers, curl and HTTP libraries (even percent-encoded), so
/// `/v1/runs/../finish` would never reach the run. A run of an earlier release with such a
/// key can still be finished: only its start is refused.
fn validate_new_run_key(log: &NewLog) -> Result<()> {
    match log.run.as_deref() {
        Some(key @ ("." | "..")) if log.status == Status::Started => Err(Error::invalid(
            "run",
            format!("{key:?} cannot start a run: a URL path resolves it away; choose another key"),
        )),
        _ => Ok(()),
    }
}

/// The rules of the run key and the idempotency key (see [`validate_new`]).
pub fn validate_keys(run: Option<&str>, idempotency_key: Option<&str>, status: Status) -> Result<()> {
    for (field, key) in [("run", run), ("idempotency_key", idempotency_key)] {
        let Some(key) = key else { continue };
        if key.is_empty() {
            return Err(Error::invalid(field, "must not be empty when given"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::invalid(
                field,
                format!("{} bytes is longer than {MAX_KEY_BYTES}", key.len()),
            ));
        }
        if key.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
    }
    if run.is_none() && status.needs_run() {
        return Err(Error::invalid(
            "run",
            format!("a {status} log belongs to a run: give its run key"),
        ));
    }
    Ok(())
}

/// Checks a batch: its size and every log, naming the position of the first bad one.
pub fn validate_batch(batch: &[NewLog]) -> Result<()> {
    if batch.len() > MAX_BATCH {
        return Err(Error::invalid(
            "batch",
            format!(
                "{} logs is more than the limit of {MAX_BATCH}; split it",
                batch.len()
            ),
        ));
    }
    for (i, log) in batch.iter().enumerate() {
        validate_new(log).map_err(|e| e.at_index(i))?;
    }
    Ok(())
}

/// Checks a record offered for import: the same field rules (its attributes must be a JSON
/// object), and its checksum must match.
/// A record whose checksum does not match is refused as [`Error::Corrupt`].
pub fn validate_record(rec: &LogRecord) -> Result<()> {
    validate_job(&rec.job)?;
    validate_message(&rec.message)?;
    validate_counters(rec.items_seen, rec.items_written, rec.items_failed)?;
    // A record stored by an earlier release may hold a leap second: it is copied as it is.
    validate_times(rec.started_at, rec.finished_at, false)?;
    validate_keys(rec.run.as_deref(), rec.idempotency_key.as_deref(), rec.status)?;
    if rec.attrs.as_str().len() > MAX_ATTRS_BYTES {
        return Err(Error::invalid(
            "attrs",
            format!("larger than {MAX_ATTRS_BYTES} bytes"),
        ));
    }
    // Valid JSON that starts with a brace is an object.
    if !rec.attrs.as_str().starts_with('{')
        || serde_json::from_str::<serde::de::IgnoredAny>(rec.attrs.as_str()).is_err()
    {
        return Err(Error::invalid("attrs", "must be a JSON object"));
    }
    if !rec.is_intact() {
        return Err(Error::corrupt(
            format!("log {}", rec.id),
            format!(
                "checksum {} does not match its fields (computed {})",
                rec.checksum,
                rec.compute_checksum()
            ),
        ));
    }
    Ok(())
}

/// Checks every record offered for import with [`validate_record`], naming the position
/// of the first bad one.
pub fn validate_records(records: &[LogRecord]) -> Result<()> {
    for (i, rec) in records.iter().enumerate() {
        validate_record(rec).map_err(|e| e.at_index(i))?;
    }
    Ok(())
}

fn validate_job(job: &str) -> Result<()> {
    if job.is_empty() {
        return Err(Error::invalid("job", "must not be empty"));
    }
    if job.len() > MAX_JOB_BYTES {
        return Err(Error::invalid(
            "job",
            format!("{} bytes is longer than {MAX_JOB_BYTES}", job.len()),
        ));
    }
    if job.contains('\0') {
        return Err(Error::invalid("job", "must not contain NUL"));
    }
    if job.chars().any(char::is_control) {
        return Err(Error::invalid("job", "must not contain control characters"));
    }
    Ok(())
}

fn validate_message(message: &str) -> Result<()> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(Error::invalid(
            "message",
            format!("{} bytes is longer than {MAX_MESSAGE_BYTES}", message.len()),
        ));
    }
    if message.contains('\0') {
        return Err(Error::invalid("message", "must not contain NUL"));
    }
    Ok(())
}

fn validate_counters(seen: u64, written: u64, failed: u64) -> Result<()> {
    for (field, v) in [
        ("items_seen", seen),
        ("items_written", written),
        ("items_failed", failed),
    ] {
        if v > MAX_COUNTER {
            return Err(Error::invalid(field, format!("{v} is larger than {MAX_COUNTER}")));
        }
    }
    Ok(())
}

fn validate_times(started: Timestamp, finished: Option<Timestamp>, new: bool) -> Result<()> {
    check_time("started_at", started, new)?;
    if let Some(f) = finished {
        check_time("finished_at", f, new)?;
        if f < started {
            return Err(Error::invalid(
                "finished_at",
                format!("{f} is before started_at {started}"),
            ));
        }
    }
    Ok(())
}

/// Refuses JSON text in which an object gives one key twice, at any depth
/// ([`Error::InvalidInput`] naming `field`): parsing keeps the last value and drops the
/// other without a word, so what is stored would not be what was sent. Text that is not
/// JSON (or is nested beyond the parser's limit) is left to the parse that follows.
///
/// ```
/// use synclog_core::validate::check_unique_keys;
/// assert!(check_unique_keys("attrs", r#"{"a": 1, "b": {"a": 2}}"#).is_ok());
/// assert!(check_unique_keys("attrs", r#"{"a": 1, "a": 2}"#).is_err());
/// assert!(check_unique_keys("attrs", r#"{"x": [{"k": 1, "k": 1}]}"#).is_err());
/// ```
pub fn check_unique_keys(field: &'static str, json: &str) -> Result<()> {
    use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
    struct Unique;
    impl<'de> DeserializeSeed<'de> for Unique {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            d.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            while seq.next_element_seed(Unique)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value_seed(Unique)?;
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!("the key {key:?} is given twice")));
                }
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    match Unique.deserialize(&mut de) {
        Err(e) if e.to_string().contains("given twice") => Err(Error::invalid(
            field,
            format!(
                "{}; a key may appear once in an object (the value kept would be a guess)",
                e
            ),
        )),
        // Not JSON, or nested too deep: the parse that follows reports it.
        _ => Ok(()),
    }
}

/// A time in 1970..=9999 and, for a new log (`new`), not a leap second. A leap second
/// (`23:59:60`) has no place in stored UTC at microsecond precision: the engines that
/// store a number (SQLite, PostgreSQL) would keep the next second and the text engines
/// `:60`, so the copies of a pair would disagree, and a retry under an idempotency key
/// would no longer match. Records already stored (imports, repairs) keep theirs.
fn check_time(field: &'static str, t: Timestamp, new: bool) -> Result<()> {
    use chrono::Timelike;
    if t < min_timestamp() || t > max_timestamp() {
        return Err(Error::invalid(
            field,
            format!(
                "{} is outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59.999999Z",
                t.to_rfc3339()
            ),
        ));
    }
    if new && t.nanosecond() >= 1_000_000_000 {
        return Err(Error::invalid(
            field,
            format!(
                "{} is a leap second, which is not stored; give the next second ({}) instead",
                t.to_rfc3339(),
                (t.with_nanosecond(0).unwrap_or(t) + chrono::Duration::seconds(1)).to_rfc3339()
            ),
        ));
    }
    Ok(())
}

fn validate_attrs(attrs: &Value) -> Result<()> {
    if !attrs.is_object() {
        return Err(Error::invalid("attrs", "must be a JSON object"));
    }
    let depth = depth(attrs);
    if depth > MAX_ATTRS_DEPTH {
        return Err(Error::invalid(
            "attrs",
            format!("nested {depth} deep; the limit is {MAX_ATTRS_DEPTH}"),
        ));
    }
    let size = crate::canonical::Attrs::from_value(attrs)?.as_str().len();
    if size > MAX_ATTRS_BYTES {
        return Err(Error::invalid(
            "attrs",
            format!("{size} bytes is larger than {MAX_ATTRS_BYTES}"),
        ));
    }
    Ok(())
}

/// Checks that every number in the JSON text `json` would be stored exactly.
///
/// synclog keeps an attribute number as serde_json does: an integer in `i64`/`u64`, any
/// other number as the nearest `f64`, written back in its shortest form. A number whose
/// stored form would not have the same decimal value (an integer beyond 64 bits,
/// `0.10000000000000000000001`, `1e400`, `1e-400`) is refused with
/// [`Error::InvalidInput`] on `attrs`, saying to quote it to keep it as text. `1.50`,
/// `1e2` and `-0` are exact (the same value, written differently).
///
/// Only number tokens outside strings are looked at; the text need not be an object,
/// and text that is not JSON is not refused here (a bare number token is checked).
///
/// ```
/// use synclog_core::validate::check_exact_numbers;
/// assert!(check_exact_numbers(r#"{"n": 18446744073709551615, "x": 0.1}"#).is_ok());
/// assert!(check_exact_numbers(r#"{"n": 123456789012345678901234567890}"#).is_err());
/// assert!(check_exact_numbers("1e400").is_err());
/// ```
pub fn check_exact_numbers(json: &str) -> Result<()> {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let token = &json[start..i];
                if !number_is_exact(token) {
                    let shown: String = token.chars().take(48).collect();
                    let more = if token.len() > shown.len() { "…" } else { "" };
                    return Err(Error::invalid(
                        "attrs",
                        format!(
                            "the number {shown}{more} cannot be stored exactly (attribute numbers are kept as \
                             64-bit integers or doubles); to keep it as written, quote it as a string: \"{shown}{more}\""
                        ),
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether `token`, read as serde_json reads it and written back as synclog stores it,
/// keeps its decimal value.
fn number_is_exact(token: &str) -> bool {
    let Ok(number) = serde_json::from_str::<serde_json::Number>(token) else {
        return false; // out of range (`1e400`), or not a number at all
    };
    let Ok(stored) = serde_json::to_string(&Value::Number(number)) else {
        return false;
    };
    match (decimal(token), decimal(&stored)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A number's exact decimal value: (negative, significant digits, exponent), with no
/// leading or trailing zero digits; zero is `(false, [], 0)`. `None` when it is not a
/// JSON number or its exponent does not fit an `i64`.
fn decimal(text: &str) -> Option<(bool, Vec<u8>, i64)> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut exp = exponent.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let mut digits: Vec<u8> = int
        .bytes()
        .chain(frac.bytes())
        .skip_while(|&b| b == b'0')
        .collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
        exp = exp.checked_add(1)?;
    }
    if digits.is_empty() {
        return Some((false, digits, 0));
    }
    Some((negative, digits, exp))
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

// Parsing ids and statuses from input: the same rules, with the same errors, as every
// other input. (Here, so that the value types in `id` and `status` depend on nothing.)

impl TryFrom<u64> for LogId {
    type Error = Error;
    fn try_from(n: u64) -> Result<Self> {
        LogId::new(n).ok_or_else(|| Error::invalid("id", format!("{n} is not in 1..={}", i64::MAX)))
    }
}

impl FromStr for LogId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let n: u64 = s
            .trim()
            .parse()
            .map_err(|_| Error::invalid("id", format!("{s:?} is not a positive whole number")))?;
        LogId::try_from(n)
    }
}

impl FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "status",
                    format!(
                        "{s:?} is not one of started, progress, succeeded, failed, partial, skipped, abandoned"
                    ),
                )
            })
    }
}

impl NewLog {
    /// Checks every rule of [`crate::validate`].
    pub fn validate(&self) -> Result<()> {
        validate_new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Status};
    use chrono::Duration;
    use rstest::rstest;
    use serde_json::json;

    fn ok() -> NewLog {
        NewLog::new("job", Status::Succeeded)
    }

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "k": v });
        }
        v
    }

    /// 2016-12-31T23:59:60Z, the last leap second (chrono keeps it as 59 s and 1e9 ns).
    fn leap_second() -> Timestamp {
        chrono::DateTime::parse_from_rfc3339("2016-12-31T23:59:60Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[rstest]
    #[case::empty_job(NewLog { job: String::new(), ..ok() }, "job")]
    #[case::long_job(NewLog { job: "j".repeat(MAX_JOB_BYTES + 1), ..ok() }, "job")]
    #[case::nul_in_job(NewLog { job: "a\0b".into(), ..ok() }, "job")]
    #[case::control_in_job(NewLog { job: "a\nb".into(), ..ok() }, "job")]
    #[case::long_message(NewLog { message: "m".repeat(MAX_MESSAGE_BYTES + 1), ..ok() }, "message")]
    #[case::nul_in_message(NewLog { message: "a\0".into(), ..ok() }, "message")]
    #[case::attrs_not_object(NewLog { attrs: json!([1, 2]), ..ok() }, "attrs")]
    #[case::attrs_too_deep(NewLog { attrs: nested(MAX_ATTRS_DEPTH + 1), ..ok() }, "attrs")]
    #[case::attrs_too_large(NewLog { attrs: json!({"x": "a".repeat(MAX_ATTRS_BYTES)}), ..ok() }, "attrs")]
    #[case::counter_too_large(NewLog { items_seen: MAX_COUNTER + 1, ..ok() }, "items_seen")]
    #[case::finished_before_started(ok().finished(ok().started_at - Duration::seconds(1)), "finished_at")]
    #[case::started_before_1970(NewLog { started_at: min_timestamp() - Duration::seconds(1), ..ok() }, "started_at")]
    #[case::leap_second_started(NewLog { started_at: leap_second(), ..ok() }, "started_at")]
    #[case::leap_second_finished(NewLog { started_at: leap_second() - Duration::seconds(5), finished_at: Some(leap_second()), ..ok() }, "finished_at")]
    fn rule_rejects_with_invalid_input_naming_the_field(#[case] log: NewLog, #[case] field: &str) {
        let err = validate_new(&log).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        match err {
            Error::InvalidInput { field: f, .. } => assert_eq!(f, field),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn limits_themselves_are_accepted() {
        let log = NewLog {
            job: "j".repeat(MAX_JOB_BYTES),
            message: "m".repeat(MAX_MESSAGE_BYTES),
            attrs: nested(MAX_ATTRS_DEPTH),
            items_seen: MAX_COUNTER,
            ..ok()
        };
        validate_new(&log).unwrap();
    }

    #[test]
    fn batch_error_names_the_bad_logs_position() {
        let batch = vec![
            ok(),
            ok(),
            NewLog {
                job: String::new(),
                ..ok()
            },
        ];
        match validate_batch(&batch).unwrap_err() {
            Error::InvalidInput { index, field, .. } => {
                assert_eq!(index, Some(2));
                assert_eq!(field, "job");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oversized_batch_is_rejected() {
        let batch = vec![ok(); MAX_BATCH + 1];
        assert_eq!(
            validate_batch(&batch).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[rstest]
    #[case::integer_beyond_u64("{\"n\":123456789012345678901234567890}")]
    #[case::negative_beyond_i64("{\"n\":-9223372036854775809}")]
    #[case::decimal_finer_than_a_double("{\"x\":0.10000000000000000000001}")]
    #[case::overflowing_exponent("{\"x\":1e400}")]
    #[case::underflowing_exponent("{\"x\":1e-400}")]
    #[case::nested_in_an_array("{\"a\":[1,2,{\"b\":9007199254740993.0}]}")]
    #[case::bare_token("123456789012345678901234567890")]
    fn a_number_that_would_be_rounded_is_refused_on_attrs(#[case] text: &str) {
        match check_exact_numbers(text).unwrap_err() {
            Error::InvalidInput { field, .. } => assert_eq!(field, "attrs"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[rstest]
    #[case::u64_max("{\"n\":18446744073709551615}")]
    #[case::i64_min("{\"n\":-9223372036854775808}")]
    #[case::short_decimal("{\"x\":0.1,\"y\":1.50,\"z\":-2.5e-3}")]
    #[case::exponent_form("{\"x\":1e2,\"y\":1E+300}")]
    #[case::zeros("{\"x\":0,\"y\":-0,\"z\":0.000}")]
    #[case::shortest_double("{\"x\":2.2250738585072014e-308,\"y\":1.7976931348623157e308}")]
    #[case::digits_inside_strings("{\"s\":\"123456789012345678901234567890 \\\" 1e400\"}")]
    fn a_number_stored_exactly_is_accepted(#[case] text: &str) {
        check_exact_numbers(text).unwrap();
    }

    /// `.` and `..` cannot start a run (a URL path loses them), but a run an earlier
    /// release started under one can still be finished, and its records imported.
    #[rstest]
    #[case::dot(".")]
    #[case::dot_dot("..")]
    fn a_dot_segment_cannot_start_a_run_but_such_a_run_can_end(#[case] key: &str) {
        let start = NewLog::new("a", Status::Started).run(key);
        match validate_new(&start).unwrap_err() {
            Error::InvalidInput { field, .. } => assert_eq!(field, "run"),
            other => panic!("unexpected {other:?}"),
        }
        validate_new(&NewLog::new("a", Status::Succeeded).run(key)).unwrap();
        validate_new(&NewLog::new("a", Status::Started).run(format!("{key}x"))).unwrap();
        let rec = LogRecord::seal(crate::LogId::MIN, Utc::now(), start).unwrap();
        validate_record(&rec).unwrap();
    }

    #[test]
    fn import_refuses_a_record_whose_checksum_does_not_match() {
        let mut rec = LogRecord::seal(crate::LogId::MIN, Utc::now(), ok()).unwrap();
        validate_record(&rec).unwrap();
        rec.message.push('x');
        assert_eq!(validate_record(&rec).unwrap_err().kind(), ErrorKind::Corrupt);
    }

    /// A record an earlier release stored with a leap second is imported as it is (only a
    /// new log is refused one): a restore of an old JSON-lines store does not fail.
    #[test]
    fn an_imported_record_may_hold_a_leap_second_a_new_log_may_not() {
        let log = NewLog {
            started_at: leap_second(),
            ..ok()
        };
        assert_eq!(validate_new(&log).unwrap_err().kind(), ErrorKind::InvalidInput);
        let mut rec = LogRecord::seal(crate::LogId::MIN, Utc::now(), ok()).unwrap();
        rec.started_at = leap_second();
        rec.checksum = rec.compute_checksum();
        validate_record(&rec).unwrap();
    }

    /// An engine that counts what reaches it, over the memory engine.
    #[derive(Debug, Default)]
    struct Probe {
        inner: crate::memory::MemoryStore,
        reached: std::sync::atomic::AtomicUsize,
    }

    impl Probe {
        fn reached(&self) -> usize {
            self.reached.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn reach(&self) {
            self.reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait::async_trait]
    impl crate::LogStore for Probe {
        fn describe(&self) -> String {
            "probe".into()
        }
        fn capabilities(&self) -> crate::Capabilities {
            self.inner.capabilities()
        }
        async fn commit_valid(&self, batch: ValidBatch, d: crate::Durability) -> Result<crate::Committed> {
            self.reach();
            self.inner.commit_valid(batch, d).await
        }
        async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
            self.inner.get(id).await
        }
        async fn scan(&self, scan: &crate::Scan) -> Result<Vec<LogRecord>> {
            self.inner.scan(scan).await
        }
        async fn last_id(&self) -> Result<Option<LogId>> {
            self.inner.last_id().await
        }
        async fn high_water(&self) -> Result<Option<LogId>> {
            self.inner.high_water().await
        }
        async fn sync(&self, level: crate::Durability) -> Result<()> {
            self.inner.sync(level).await
        }
        async fn verify(&self, options: crate::VerifyOptions) -> Result<crate::VerifyReport> {
            self.inner.verify(options).await
        }
        async fn import_valid(
            &self,
            records: ValidRecords,
            d: crate::Durability,
        ) -> Result<crate::ImportReport> {
            self.reach();
            self.inner.import_valid(records, d).await
        }
        async fn repair_valid(
            &self,
            records: ValidRecords,
            d: crate::Durability,
        ) -> Result<crate::ImportReport> {
            self.reach();
            self.inner.repair_valid(records, d).await
        }
        async fn close(&self) -> Result<()> {
            self.inner.close().await
        }
    }

    #[tokio::test]
    async fn bad_input_never_reaches_an_engine_on_any_write_path() {
        use crate::{Durability::Buffered, LogStore, LogStoreExt};
        let probe = Probe::default();
        let good = probe.commit(vec![ok()], Buffered).await.unwrap().remove(0);
        assert_eq!(probe.reached(), 1);
        let mut forged = good.clone();
        forged.message = "changed after sealing".into();
        let mut not_an_object = good.clone();
        not_an_object.attrs = crate::Attrs::from_stored("[]".into());
        not_an_object.checksum = not_an_object.compute_checksum();

        let empty_job = vec![ok(), NewLog::new("", Status::Succeeded)];
        let err = probe
            .commit_report(empty_job.clone(), Buffered)
            .await
            .unwrap_err();
        match err {
            Error::InvalidInput { field, index, .. } => assert_eq!((field, index), ("job", Some(1))),
            other => panic!("expected invalid input, got {other}"),
        }
        let err = probe.commit(empty_job, Buffered).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = probe
            .append_with(NewLog::new("j", Status::Progress), Buffered)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "progress needs a run: {err}");
        let too_many = vec![ok(); MAX_BATCH + 1];
        assert_eq!(
            probe.commit(too_many, Buffered).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        for records in [vec![forged.clone()], vec![good.clone(), forged]] {
            let err = probe.import(records.clone(), Buffered).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            let err = probe.repair(records, Buffered).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        }
        let err = probe.import(vec![not_an_object], Buffered).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(probe.reached(), 1, "a write with bad input reached the engine");
        assert_eq!(
            probe.inner.last_id().await.unwrap(),
            Some(good.id),
            "nothing else was written"
        );
    }
}
