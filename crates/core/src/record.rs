//! The record model: what a caller appends ([`NewLog`]) and what a store keeps ([`LogRecord`]).

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, Attrs, Checksum};
use crate::error::{Error, Result};

pub use crate::id::{intersect_ranges, IdRange, LogId, Timestamp};
pub use crate::status::Status;

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
    /// start, or, for a request that left the time out, take the stored one with
    /// [`crate::run::adopt_stored_starts`]). [`crate::LogStoreExt::append_report`] says
    /// whether an append was a repeat.
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

    /// The attributes as a JSON value (always an object). [`LogRecord::attrs`] keeps the
    /// canonical text the checksum covers; this parses it.
    pub fn attrs_value(&self) -> Result<Value> {
        self.attrs.to_value()
    }

    /// The attributes as a map from key to JSON value.
    ///
    /// ```
    /// use synclog_core::{LogId, LogRecord, NewLog, Status};
    /// let log = NewLog::new("crm", Status::Succeeded).attr("region", "eu").attr("pages", 3);
    /// let rec = LogRecord::seal(LogId::MIN, chrono::Utc::now(), log)?;
    /// assert_eq!(rec.attrs_map()?["pages"], 3);
    /// assert_eq!(rec.attr("region")?, Some(serde_json::json!("eu")));
    /// assert_eq!(rec.attr("missing")?, None);
    /// # Ok::<(), synclog_core::Error>(())
    /// ```
    ///
    /// Errors: [`Error::Corrupt`] when the stored text is not a JSON object (a record that
    /// also fails its checksum).
    pub fn attrs_map(&self) -> Result<serde_json::Map<String, Value>> {
        match self.attrs.to_value()? {
            Value::Object(map) => Ok(map),
            _ => Err(Error::Corrupt {
                location: format!("log {}", self.id),
                detail: "attributes are not a JSON object".into(),
                source: None,
            }),
        }
    }

    /// One attribute's value, `None` when the record has no such key.
    pub fn attr(&self, key: &str) -> Result<Option<Value>> {
        Ok(self.attrs_map()?.remove(key))
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
