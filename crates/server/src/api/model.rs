//! What the API takes and answers, as JSON. These types are what the handlers parse and
//! write, and what `/v1/openapi.json` is generated from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use synclog_core::guarded::Copies;
use synclog_core::query::JobSummary;
use synclog_core::{LogRecord, NewLog, Run, Status, Timestamp};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};

/// How a run (or step) ended, or that it started: core's [`Status`], with the OpenAPI
/// schema generated from [`Status::ALL`] (so the document lists exactly what the store
/// takes, with no second list to keep in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiStatus(pub Status);

impl From<ApiStatus> for Status {
    fn from(s: ApiStatus) -> Status {
        s.0
    }
}

impl From<Status> for ApiStatus {
    fn from(s: Status) -> ApiStatus {
        ApiStatus(s)
    }
}

impl utoipa::PartialSchema for ApiStatus {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .description(Some("How a run (or step) ended, or that it started."))
            .enum_values(Some(Status::ALL.iter().map(|s| s.as_str())))
            .into()
    }
}

impl ToSchema for ApiStatus {}

/// A log to append.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogIn {
    /// The job (sync) it belongs to.
    pub job: String,
    /// How it ended.
    pub status: ApiStatus,
    /// When the run started (RFC 3339); default: when the server reads the request. A
    /// retry with an idempotency key must send the first attempt's.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Items looked at.
    #[serde(default)]
    pub items_seen: u64,
    /// Items written.
    #[serde(default)]
    pub items_written: u64,
    /// Items that failed.
    #[serde(default)]
    pub items_failed: u64,
    /// A message.
    #[serde(default)]
    pub message: String,
    /// Attributes: a JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attrs: Option<Value>,
    /// The run it belongs to.
    #[serde(default)]
    pub run: Option<String>,
    /// Makes the append exactly-once (the `Idempotency-Key` header sets it too).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl LogIn {
    /// The log, checked as the library checks it.
    pub fn into_new_log(self, now: Timestamp) -> ApiResult<NewLog> {
        let mut log = NewLog::new(self.job, self.status.into());
        log.started_at = self.started_at.unwrap_or(now);
        log.finished_at = self.finished_at;
        log.items_seen = self.items_seen;
        log.items_written = self.items_written;
        log.items_failed = self.items_failed;
        log.message = self.message;
        if let Some(a) = self.attrs {
            log.attrs = a;
        }
        log.run = self.run;
        log.idempotency_key = self.idempotency_key;
        log.validate().map_err(ApiError::from)?;
        Ok(log)
    }
}

/// One log, or a batch stored atomically (all or none).
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum AppendBody {
    /// A batch.
    Many(Vec<LogIn>),
    /// One log.
    One(Box<LogIn>),
}

/// An array is a batch, an object one log, parsed as such at once, so that an error names
/// the field and where it is (`unknown field "foo" at line 1 column 40`), not "data did not
/// match any variant" as an untagged enum says.
impl<'de> Deserialize<'de> for AppendBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        struct Body;
        impl<'de> serde::de::Visitor<'de> for Body {
            type Value = AppendBody;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a log (a JSON object) or a batch (an array of them)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<AppendBody, A::Error> {
                Vec::<LogIn>::deserialize(SeqAccessDeserializer::new(seq)).map(AppendBody::Many)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<AppendBody, A::Error> {
                LogIn::deserialize(MapAccessDeserializer::new(map)).map(|l| AppendBody::One(Box::new(l)))
            }
        }
        d.deserialize_any(Body)
    }
}

/// A stored log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogOut {
    /// Its id: dense, in commit order, never reused.
    pub id: u64,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The job.
    pub job: String,
    /// Its status.
    pub status: ApiStatus,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Items looked at.
    pub items_seen: u64,
    /// Items written.
    pub items_written: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// The message.
    pub message: String,
    /// Attributes.
    #[schema(value_type = Object)]
    pub attrs: Value,
    /// Its run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Its idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Its checksum (CRC-32C, 8 lowercase hex digits): what `verify` checks it against.
    pub checksum: String,
}

impl From<&LogRecord> for LogOut {
    fn from(r: &LogRecord) -> LogOut {
        LogOut {
            id: r.id.get(),
            recorded_at: r.recorded_at,
            job: r.job.clone(),
            status: r.status.into(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            items_seen: r.items_seen,
            items_written: r.items_written,
            items_failed: r.items_failed,
            message: r.message.clone(),
            attrs: r.attrs.to_value().unwrap_or(Value::Null),
            run: r.run.clone(),
            idempotency_key: r.idempotency_key.clone(),
            checksum: r.checksum.to_string(),
        }
    }
}

/// Which copies of a guarded pair hold the records.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct CopiesOut {
    /// The primary holds them.
    pub primary: bool,
    /// The backup holds them.
    pub backup: bool,
}

impl From<Copies> for CopiesOut {
    fn from(c: Copies) -> CopiesOut {
        CopiesOut {
            primary: c.primary,
            backup: c.backup,
        }
    }
}

/// The receipt of an append: sent only once the records are durable (and, for a guarded
/// pair, read back).
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    /// The records, with their ids (a repeat as stored the first time).
    pub records: Vec<LogOut>,
    /// `repeats[i]`: `records[i]` was stored before (same idempotency key and content, or
    /// the same finish); nothing was written for it.
    pub repeats: Vec<bool>,
    /// For a guarded pair: which copies hold them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable_in: Option<CopiesOut>,
    /// Whether they were read back through an independent path before this answer.
    pub verified: bool,
}

/// A run to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartIn {
    /// The job.
    pub job: String,
    /// The run key; default: a new one.
    #[serde(default)]
    pub run: Option<String>,
    /// A message for the `started` record.
    #[serde(default)]
    pub message: String,
    /// Attributes (the run's tags).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attrs: Option<Value>,
    /// When it started; default now.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
}

/// How a run ended.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishIn {
    /// succeeded, failed, partial, skipped or abandoned.
    pub status: ApiStatus,
    /// Items looked at.
    #[serde(default)]
    pub items_seen: u64,
    /// Items written.
    #[serde(default)]
    pub items_written: u64,
    /// Items that failed.
    #[serde(default)]
    pub items_failed: u64,
    /// A message.
    #[serde(default)]
    pub message: String,
    /// Attributes.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attrs: Option<Value>,
}

/// Why a run is given up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbandonIn {
    /// The reason (the `abandoned` record's message).
    pub reason: String,
}

/// One record of a run, and whether it was stored before.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAppended {
    /// The run key.
    pub run: String,
    /// The record.
    pub record: LogOut,
    /// Stored before (a repeated start or finish); nothing was written.
    pub repeat: bool,
}

/// A run: its timeline's outline.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOut {
    /// Its key.
    pub key: String,
    /// Its job.
    pub job: String,
    /// Its latest status.
    pub status: ApiStatus,
    /// Whether it has ended.
    pub finished: bool,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How long it took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The terminal record's counters.
    pub items_seen: u64,
    /// Items written.
    pub items_written: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// The latest record's message.
    pub message: String,
    /// Its records' ids, in order.
    pub record_ids: Vec<u64>,
    /// Not ended and started before the stale cut-off (`older_than`, default 24h ago).
    pub stale: bool,
}

impl RunOut {
    /// `run`; `stale_before`: the cut-off that makes an unfinished run stale.
    pub fn new(run: &Run, stale_before: Option<Timestamp>) -> RunOut {
        RunOut {
            key: run.key.clone(),
            job: run.job.clone(),
            status: run.status.into(),
            finished: run.finished,
            started_at: run.started_at,
            finished_at: run.finished_at,
            duration_ms: run.duration_ms,
            items_seen: run.items_seen,
            items_written: run.items_written,
            items_failed: run.items_failed,
            message: run.message.clone(),
            record_ids: run.record_ids.iter().map(|i| i.get()).collect(),
            stale: stale_before.is_some_and(|c| run.is_stale(c)),
        }
    }
}

/// A run with its records.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    pub run: RunOut,
    /// Its records, in order: `started`, progress, the terminal one.
    pub records: Vec<LogOut>,
}

/// A page of logs.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// The logs, in id order (descending with `order=desc`).
    pub logs: Vec<LogOut>,
    /// The query of the next page (also in the `Link: rel="next"` header); absent on the
    /// last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// The runs, by their first record's id.
    pub runs: Vec<RunOut>,
    /// The query of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// How many logs a filter matches.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountOut {
    /// The count.
    pub count: u64,
    /// With `by=status`: the count of each status (statuses with none left out); they add
    /// up to `count`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_status: Option<BTreeMap<String, u64>>,
}

/// What a count is broken down by.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CountBy {
    /// One count per status.
    Status,
}

/// How a count is given.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountParams {
    /// `status`: also the count of each status, from one query.
    pub by: Option<CountBy>,
}

/// One job's figures over a filter.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobSummaryOut {
    /// The job.
    pub job: String,
    /// Its newest matching log.
    pub latest: LogOut,
    /// Its newest log that ended a run or stood alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_finished: Option<LogOut>,
    /// Its newest success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_success: Option<LogOut>,
    /// Failed and abandoned logs since the last success.
    pub consecutive_failures: u64,
    /// Logs per status.
    pub counts: BTreeMap<String, u64>,
    /// Sum of items_seen.
    pub items_seen: u64,
    /// Sum of items_written.
    pub items_written: u64,
    /// Sum of items_failed.
    pub items_failed: u64,
    /// The earliest start.
    pub first_started_at: DateTime<Utc>,
    /// The latest record time.
    pub last_recorded_at: DateTime<Utc>,
}

impl From<&JobSummary> for JobSummaryOut {
    fn from(j: &JobSummary) -> JobSummaryOut {
        JobSummaryOut {
            job: j.job.clone(),
            latest: (&j.latest).into(),
            latest_finished: j.latest_finished.as_ref().map(Into::into),
            latest_success: j.latest_success.as_ref().map(Into::into),
            consecutive_failures: j.consecutive_failures,
            counts: j
                .counts
                .iter()
                .map(|(s, n)| (s.as_str().to_string(), *n))
                .collect(),
            items_seen: j.items_seen,
            items_written: j.items_written,
            items_failed: j.items_failed,
            first_started_at: j.first_started_at,
            last_recorded_at: j.last_recorded_at,
        }
    }
}

/// Every job's figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryOut {
    /// One entry per job, by name.
    pub jobs: Vec<JobSummaryOut>,
    /// Whether every job's last finished log succeeded.
    pub all_last_succeeded: bool,
}

/// One copy's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct CopyHealth {
    /// `primary` or `backup` (or `store` for a store without a backup).
    pub copy: String,
    /// The store (a URL without its password).
    pub store: String,
    /// `ok`, `behind` (records wait for it), `damaged` (the last verify or a read found
    /// damage) or `full` (its file system has no room left).
    pub state: String,
    /// Records waiting for it.
    pub pending: u64,
    /// Groups it failed to take since the server started.
    pub failures: u64,
}

/// The server's and the store's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every copy is ok and the last verify (if one ran) was clean, else
    /// `degraded`.
    pub status: String,
    /// The newest id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_id: Option<u64>,
    /// Each copy.
    pub copies: Vec<CopyHealth>,
    /// The last background verify, if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<VerifyOut>,
}

/// A verify's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyOut {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// Every record intact.
    pub clean: bool,
    /// What it found.
    pub detail: String,
}

/// The filters of logs, runs, count, summary and the stream. Times are RFC 3339, a date
/// (`2026-11-24`) or an age (`30m`, `24h`, `7d`). Repeat `job`, `status` and `attr`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Only this job (repeat for several: any of them).
    #[serde(default)]
    pub job: Vec<String>,
    /// Only this status (repeat for several).
    #[serde(default)]
    #[param(value_type = Vec<ApiStatus>)]
    pub status: Vec<ApiStatus>,
    /// Started at or after.
    pub from: Option<String>,
    /// Started before.
    pub until: Option<String>,
    /// Finished at or after.
    pub finished_from: Option<String>,
    /// Finished before.
    pub finished_until: Option<String>,
    /// Recorded at or after.
    pub recorded_from: Option<String>,
    /// Recorded before.
    pub recorded_until: Option<String>,
    /// `KEY=VALUE`: the attribute equals the value (read as JSON when it is JSON). Repeat
    /// to require several.
    #[serde(default)]
    pub attr: Vec<String>,
    /// Only this run's logs.
    pub run: Option<String>,
}

/// Keyset paging.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Only ids greater than this (the cursor of an ascending page).
    pub after: Option<u64>,
    /// Only ids smaller than this (the cursor of a descending page).
    pub before: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
    /// `asc` (default) or `desc`.
    pub order: Option<Order>,
}

/// Id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// Which runs.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// Only runs that have not ended.
    #[serde(default)]
    pub unfinished: bool,
    /// Only stale runs: not ended, started more than `older_than` ago.
    #[serde(default)]
    pub stale: bool,
    /// What stale means (default `24h`).
    pub older_than: Option<String>,
}

/// Where a stream starts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Send logs with ids greater than this (the `Last-Event-ID` header wins); default:
    /// only logs committed from now on.
    pub after: Option<u64>,
}
