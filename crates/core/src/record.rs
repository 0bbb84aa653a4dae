//! The record model: what a caller appends ([`NewLog`]) and what a store keeps ([`LogRecord`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, Attrs, Checksum};
use crate::error::{Error, Result};

/// A UTC instant. synclog keeps timestamps at microsecond precision (every engine can store that).
pub type Timestamp = DateTime<Utc>;

/// The id of a stored log: greater than zero, assigned by the store, strictly increasing
/// in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct LogId(u64);

impl LogId {
    /// The smallest id.
    pub const MIN: LogId = LogId(1);
    /// The largest id (engines store ids as signed 64-bit integers).
    pub const MAX: LogId = LogId(i64::MAX as u64);

    /// `Some` when `n` is a valid id (1 ..= `i64::MAX`).
    pub fn new(n: u64) -> Option<LogId> {
        (1..=Self::MAX.0).contains(&n).then_some(LogId(n))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The next id, if there is one.
    pub fn next(self) -> Option<LogId> {
        LogId::new(self.0 + 1)
    }
}

/// An inclusive range of ids, `first..=last` (`first <= last`): how reports name runs of
/// ids, so that their size does not grow with the width of a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdRange {
    /// The first id of the range.
    pub first: LogId,
    /// The last id of the range (inclusive).
    pub last: LogId,
}

impl IdRange {
    /// `first..=last`, or `None` when `first > last`.
    pub fn new(first: LogId, last: LogId) -> Option<IdRange> {
        (first <= last).then_some(IdRange { first, last })
    }

    /// The range holding `id` alone.
    pub fn single(id: LogId) -> IdRange {
        IdRange { first: id, last: id }
    }

    /// How many ids it holds (at least 1).
    pub fn count(&self) -> u64 {
        self.last.0 - self.first.0 + 1
    }

    /// Whether `id` is inside.
    pub fn contains(&self, id: LogId) -> bool {
        self.first <= id && id <= self.last
    }

    /// The ids where `self` and `other` overlap, if they do.
    pub fn intersect(&self, other: &IdRange) -> Option<IdRange> {
        IdRange::new(self.first.max(other.first), self.last.min(other.last))
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..={}", self.first, self.last)
        }
    }
}

/// The ids present in two sorted, non-overlapping range lists (both in ascending order).
pub fn intersect_ranges(a: &[IdRange], b: &[IdRange]) -> Vec<IdRange> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if let Some(r) = a[i].intersect(&b[j]) {
            out.push(r);
        }
        if a[i].last < b[j].last {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

impl TryFrom<u64> for LogId {
    type Error = Error;
    fn try_from(n: u64) -> Result<Self> {
        LogId::new(n).ok_or_else(|| Error::invalid("id", format!("{n} is not in 1..={}", i64::MAX)))
    }
}

impl From<LogId> for u64 {
    fn from(id: LogId) -> u64 {
        id.0
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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

/// How a sync run (or step) ended, or that it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The run started and has not finished yet.
    Started,
    /// Every item was synced.
    Succeeded,
    /// The run failed.
    Failed,
    /// Some items were synced, some failed.
    Partial,
    /// The run decided there was nothing to do.
    Skipped,
    /// A report from a run that is still going (only in a run's timeline, see
    /// [`NewLog::run`]).
    Progress,
    /// The run was given up for dead: started and never finished (only in a run's
    /// timeline; `synclog abandon`).
    Abandoned,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 7] = [
        Status::Started,
        Status::Succeeded,
        Status::Failed,
        Status::Partial,
        Status::Skipped,
        Status::Progress,
        Status::Abandoned,
    ];

    /// Whether this status ends a run: succeeded, failed, partial, skipped or abandoned.
    /// After a run's terminal record, no other record joins that run.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Started | Status::Progress)
    }

    /// Whether a log with this status must belong to a run (progress and abandoned only
    /// make sense in a run's timeline).
    pub fn needs_run(self) -> bool {
        matches!(self, Status::Progress | Status::Abandoned)
    }

    /// The lowercase name used in every engine and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Partial => "partial",
            Status::Skipped => "skipped",
            Status::Progress => "progress",
            Status::Abandoned => "abandoned",
        }
    }

    /// The status with this canonical code.
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The one-byte code used in the canonical encoding.
    pub fn code(self) -> u8 {
        match self {
            Status::Started => 1,
            Status::Succeeded => 2,
            Status::Failed => 3,
            Status::Partial => 4,
            Status::Skipped => 5,
            Status::Progress => 6,
            Status::Abandoned => 7,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that table columns (`{:<9}`) line up.
        f.pad(self.as_str())
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

/// A log as the caller appends it. The store adds the id, `recorded_at` and the checksum.
///
/// ```
/// use synclog_core::{NewLog, Status};
/// let log = NewLog::new("crm-contacts", Status::Succeeded)
///     .counts(120, 118, 2)
///     .message("2 contacts had no e-mail")
///     .attr("source", "hubspot");
/// assert!(log.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewLog {
    /// The job (sync) this run belongs to: non-empty, no control characters.
    pub job: String,
    /// How the run ended.
    pub status: Status,
    /// When the run started (UTC).
    #[serde(with = "crate::timefmt")]
    pub started_at: Timestamp,
    /// When it finished, if it has.
    #[serde(default, with = "crate::timefmt::option")]
    pub finished_at: Option<Timestamp>,
    /// Items the run looked at.
    #[serde(default)]
    pub items_seen: u64,
    /// Items it wrote.
    #[serde(default)]
    pub items_written: u64,
    /// Items that failed.
    #[serde(default)]
    pub items_failed: u64,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// Free-form attributes: must be a JSON object.
    #[serde(default = "empty_object")]
    pub attrs: Value,
    /// The run this log belongs to (see [`crate::run`]): a run's records are its
    /// timeline, `started` first, then progress, then one terminal record. `None`: a lone
    /// log, as before runs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Makes the append exactly-once: a second append with the same key and the same
    /// content returns the record stored the first time; with other content it fails
    /// with [`Error::IdempotencyConflict`] and writes nothing. Every field counts,
    /// `started_at` included: [`NewLog::new`] stamps it with the current time, so a retry
    /// must carry the first attempt's (set it with [`NewLog::started`] from the sync's own
    /// start). [`crate::LogStoreExt::append_report`] says whether an append was a repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl NewLog {
    /// A log for `job` with `status`, started now, with no counters, message or attributes.
    pub fn new(job: impl Into<String>, status: Status) -> Self {
        NewLog {
            job: job.into(),
            status,
            started_at: Utc::now(),
            finished_at: None,
            items_seen: 0,
            items_written: 0,
            items_failed: 0,
            message: String::new(),
            attrs: empty_object(),
            run: None,
            idempotency_key: None,
        }
    }

    /// Puts the log in run `key`'s timeline.
    pub fn run(mut self, key: impl Into<String>) -> Self {
        self.run = Some(key.into());
        self
    }

    /// Sets the idempotency key (see [`NewLog::idempotency_key`]).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the counters: items seen, written and failed.
    pub fn counts(mut self, seen: u64, written: u64, failed: u64) -> Self {
        self.items_seen = seen;
        self.items_written = written;
        self.items_failed = failed;
        self
    }

    /// Sets the message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets the start time.
    pub fn started(mut self, at: Timestamp) -> Self {
        self.started_at = at;
        self
    }

    /// Sets the finish time.
    pub fn finished(mut self, at: Timestamp) -> Self {
        self.finished_at = Some(at);
        self
    }

    /// Adds one attribute. (If `attrs` is not an object it is replaced by one.)
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        if !self.attrs.is_object() {
            self.attrs = empty_object();
        }
        if let Value::Object(map) = &mut self.attrs {
            map.insert(key.into(), value.into());
        }
        self
    }

    /// Checks every rule of [`crate::validate`].
    pub fn validate(&self) -> Result<()> {
        crate::validate::validate_new(self)
    }
}

/// A stored log: a [`NewLog`] plus its id, the time the store recorded it and its checksum.
///
/// The checksum covers every other field through the canonical encoding
/// ([`crate::canonical`]), so any copy of a record can be checked on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Assigned by the store.
    pub id: LogId,
    /// When the store committed it.
    #[serde(with = "crate::timefmt")]
    pub recorded_at: Timestamp,
    /// See [`NewLog::job`].
    pub job: String,
    /// See [`NewLog::status`].
    pub status: Status,
    /// See [`NewLog::started_at`].
    #[serde(with = "crate::timefmt")]
    pub started_at: Timestamp,
    /// See [`NewLog::finished_at`].
    #[serde(default, with = "crate::timefmt::option")]
    pub finished_at: Option<Timestamp>,
    /// See [`NewLog::items_seen`].
    pub items_seen: u64,
    /// See [`NewLog::items_written`].
    pub items_written: u64,
    /// See [`NewLog::items_failed`].
    pub items_failed: u64,
    /// See [`NewLog::message`].
    pub message: String,
    /// The attributes, as canonical JSON text.
    pub attrs: Attrs,
    /// See [`NewLog::run`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// See [`NewLog::idempotency_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// CRC-32C of the canonical encoding of all the fields above.
    pub checksum: Checksum,
}

/// Truncates a timestamp to the microsecond precision every engine stores.
pub fn to_stored_precision(t: Timestamp) -> Timestamp {
    t.trunc_subsecs(6)
}

impl LogRecord {
    /// Turns a validated [`NewLog`] into a record with `id` and `recorded_at`, computing
    /// the canonical attributes and the checksum. Timestamps are truncated to microseconds.
    ///
    /// Call [`NewLog::validate`] first: this only fails if `attrs` is not an object.
    pub fn seal(id: LogId, recorded_at: Timestamp, log: NewLog) -> Result<LogRecord> {
        let attrs = Attrs::from_value(&log.attrs)?;
        Ok(Self::assemble(
            id,
            recorded_at,
            &log,
            log.job.clone(),
            log.message.clone(),
            attrs,
        ))
    }

    /// [`LogRecord::seal`] from a borrowed log (copies only the strings it keeps).
    pub fn seal_ref(id: LogId, recorded_at: Timestamp, log: &NewLog) -> Result<LogRecord> {
        let attrs = Attrs::from_value(&log.attrs)?;
        Ok(Self::assemble(
            id,
            recorded_at,
            log,
            log.job.clone(),
            log.message.clone(),
            attrs,
        ))
    }

    /// [`LogRecord::seal_ref`] under the id `*next`, then moves `*next` on: how every engine
    /// hands out ids in a group. [`Error::Unsupported`] naming `engine` once ids run out
    /// (past `i64::MAX`); `*next` is left as it was when sealing fails.
    pub fn seal_next(
        engine: &'static str,
        next: &mut u64,
        recorded_at: Timestamp,
        log: &NewLog,
    ) -> Result<LogRecord> {
        let id = LogId::new(*next).ok_or_else(|| Error::Unsupported {
            engine,
            what: "more than i64::MAX ids".into(),
        })?;
        let rec = Self::seal_ref(id, recorded_at, log)?;
        *next += 1;
        Ok(rec)
    }

    fn assemble(
        id: LogId,
        recorded_at: Timestamp,
        log: &NewLog,
        job: String,
        message: String,
        attrs: Attrs,
    ) -> Self {
        let mut rec = LogRecord {
            id,
            recorded_at: to_stored_precision(recorded_at),
            job,
            status: log.status,
            started_at: to_stored_precision(log.started_at),
            finished_at: log.finished_at.map(to_stored_precision),
            items_seen: log.items_seen,
            items_written: log.items_written,
            items_failed: log.items_failed,
            message,
            attrs,
            run: log.run.clone(),
            idempotency_key: log.idempotency_key.clone(),
            checksum: Checksum(0),
        };
        rec.checksum = rec.compute_checksum();
        rec
    }

    /// The borrowed view the canonical encoding is computed from.
    pub fn view(&self) -> canonical::RecordView<'_> {
        canonical::RecordView {
            id: self.id.get(),
            recorded_at: self.recorded_at.timestamp_micros(),
            job: &self.job,
            status: self.status.code(),
            started_at: self.started_at.timestamp_micros(),
            finished_at: self.finished_at.map(|t| t.timestamp_micros()),
            items_seen: self.items_seen,
            items_written: self.items_written,
            items_failed: self.items_failed,
            message: &self.message,
            attrs: self.attrs.as_str(),
            run: self.run.as_deref(),
            idempotency_key: self.idempotency_key.as_deref(),
        }
    }

    /// Builds a record from a decoded canonical view and its stored checksum (not checked
    /// here: see [`LogRecord::is_intact`]).
    pub fn from_view(view: &canonical::RecordView<'_>, checksum: Checksum) -> Result<LogRecord> {
        let bad = |what: &str| Error::corrupt(format!("log {}", view.id), format!("invalid {what}"));
        let ts = |micros: i64, what: &str| DateTime::from_timestamp_micros(micros).ok_or_else(|| bad(what));
        Ok(LogRecord {
            id: LogId::new(view.id).ok_or_else(|| bad("id"))?,
            recorded_at: ts(view.recorded_at, "recorded_at")?,
            job: view.job.to_string(),
            status: Status::from_code(view.status).ok_or_else(|| bad("status"))?,
            started_at: ts(view.started_at, "started_at")?,
            finished_at: view.finished_at.map(|f| ts(f, "finished_at")).transpose()?,
            items_seen: view.items_seen,
            items_written: view.items_written,
            items_failed: view.items_failed,
            message: view.message.to_string(),
            attrs: Attrs::from_stored(view.attrs.to_string()),
            run: view.run.map(str::to_string),
            idempotency_key: view.idempotency_key.map(str::to_string),
            checksum,
        })
    }

    /// Recomputes the checksum from the fields.
    pub fn compute_checksum(&self) -> Checksum {
        self.view().checksum()
    }

    /// Whether the stored checksum matches the fields.
    pub fn is_intact(&self) -> bool {
        self.compute_checksum() == self.checksum
    }

    /// The attributes as a JSON value.
    pub fn attrs_value(&self) -> Result<Value> {
        self.attrs.to_value()
    }

    /// The record without its store-assigned parts, for appending it again elsewhere.
    pub fn to_new_log(&self) -> Result<NewLog> {
        Ok(NewLog {
            job: self.job.clone(),
            status: self.status,
            started_at: self.started_at,
            finished_at: self.finished_at,
            items_seen: self.items_seen,
            items_written: self.items_written,
            items_failed: self.items_failed,
            message: self.message.clone(),
            attrs: self.attrs.to_value()?,
            run: self.run.clone(),
            idempotency_key: self.idempotency_key.clone(),
        })
    }
}
