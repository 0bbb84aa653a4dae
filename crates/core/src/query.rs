//! The questions operators ask: [`Filter`] (jobs, statuses, time ranges, attributes, run
//! key), what [`crate::LogStore::count`] and [`crate::LogStore::summary`] answer over one,
//! and the rules every engine gives the same answers by.
//!
//! Engines with secondary indexes (SQLite, PostgreSQL) answer from them; the others read
//! their records and test each with [`Filter::matches`]. Either way the answers are the
//! same; the conformance suite checks them against an in-memory model.
//!
//! ```
//! use synclog_core::query::{AttrEq, Filter, TimeRange};
//! use synclog_core::{LogId, LogRecord, NewLog, Status};
//! let day_ago = chrono::Utc::now() - chrono::Duration::hours(24);
//! let filter = Filter::default()
//!     .jobs(["orders", "invoices"])
//!     .statuses([Status::Failed, Status::Partial])
//!     .started(TimeRange::since(day_ago))
//!     .attr(AttrEq::parse("env=prod")?);
//! filter.validate()?;
//! let rec = LogRecord::seal(LogId::MIN, chrono::Utc::now(),
//!     NewLog::new("orders", Status::Failed).attr("env", "prod"))?;
//! assert!(filter.matches(&rec));
//! # Ok::<(), synclog_core::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::write_canonical;
use crate::error::{Error, Result};
use crate::record::{LogRecord, Status, Timestamp};
use crate::store::{LogStore, LogStoreExt};

/// A half-open time range `[from, until)`; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeRange {
    /// Only instants at or after this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timefmt::option"
    )]
    pub from: Option<Timestamp>,
    /// Only instants before this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timefmt::option"
    )]
    pub until: Option<Timestamp>,
}

impl TimeRange {
    /// Every instant (both ends open).
    pub const ALL: TimeRange = TimeRange {
        from: None,
        until: None,
    };

    /// `[from, until)`.
    pub fn between(from: Timestamp, until: Timestamp) -> TimeRange {
        TimeRange {
            from: Some(from),
            until: Some(until),
        }
    }

    /// `[from, ∞)`.
    pub fn since(from: Timestamp) -> TimeRange {
        TimeRange {
            from: Some(from),
            until: None,
        }
    }

    /// `(-∞, until)`.
    pub fn before(until: Timestamp) -> TimeRange {
        TimeRange {
            from: None,
            until: Some(until),
        }
    }

    /// Whether both ends are open (the range lets everything through).
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.until.is_none()
    }

    /// Whether `t` is inside.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from.is_none_or(|f| t >= f) && self.until.is_none_or(|u| t < u)
    }

    /// Whether an optional instant is inside: a missing one is inside only an open range.
    pub fn contains_opt(&self, t: Option<Timestamp>) -> bool {
        match t {
            Some(t) => self.contains(t),
            None => self.is_open(),
        }
    }

    /// The ends in the engines' storage unit, microseconds since the Unix epoch, rounded
    /// up: stored instants are whole microseconds, so `t >= from` and `t < until` hold
    /// exactly when they hold for the rounded ends.
    pub fn micros(&self) -> (Option<i64>, Option<i64>) {
        (self.from.map(ceil_micros), self.until.map(ceil_micros))
    }

    /// Checks the ends are in order; `field` names the range in the error.
    pub fn validate(&self, field: &'static str) -> Result<()> {
        if let (Some(f), Some(u)) = (self.from, self.until) {
            if f > u {
                return Err(Error::invalid(
                    field,
                    format!("the range starts ({f}) after it ends ({u}); nothing was read"),
                ));
            }
        }
        Ok(())
    }
}

/// `t` in microseconds since the Unix epoch, rounded up.
fn ceil_micros(t: Timestamp) -> i64 {
    let floor = t.timestamp_micros();
    if t.timestamp_subsec_nanos().is_multiple_of(1000) {
        floor
    } else {
        floor.saturating_add(1)
    }
}

/// One attribute condition: the record's top-level attribute `key` equals `value`.
///
/// Values are compared exactly, as JSON values: through their canonical text (see
/// [`crate::canonical`]), so `1` and `"1"` differ, and so do `1` and `1.0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrEq {
    /// The attribute's name.
    pub key: String,
    /// The value it must have.
    pub value: Value,
}

impl AttrEq {
    /// The longest key a condition may name.
    pub const MAX_KEY_BYTES: usize = 200;

    /// `key = value`.
    pub fn new(key: impl Into<String>, value: impl Into<Value>) -> AttrEq {
        AttrEq {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Parses `K=V` as the CLI takes it: `V` is read as JSON when it is JSON (`n=5`,
    /// `ok=true`, `s="5"`), as a string otherwise (`env=prod`).
    ///
    /// Errors: [`Error::InvalidInput`] naming `attr` without `=` or with an empty key.
    pub fn parse(text: &str) -> Result<AttrEq> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(Error::invalid(
                "attr",
                format!("{text:?} is not KEY=VALUE; nothing was read"),
            ));
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        let cond = AttrEq::new(key, value);
        cond.validate()?;
        Ok(cond)
    }

    /// The canonical text of the value: what engines index and compare.
    pub fn value_text(&self) -> String {
        canonical_value(&self.value)
    }

    /// Checks the key is not empty and not too long.
    pub fn validate(&self) -> Result<()> {
        if self.key.is_empty() {
            return Err(Error::invalid(
                "attr",
                "an attribute condition needs a key before `=`",
            ));
        }
        if self.key.len() > Self::MAX_KEY_BYTES {
            return Err(Error::invalid(
                "attr",
                format!(
                    "a key of {} bytes is longer than {}",
                    self.key.len(),
                    Self::MAX_KEY_BYTES
                ),
            ));
        }
        Ok(())
    }
}

/// The canonical text of one JSON value, as [`crate::canonical`] writes it inside attributes.
pub fn canonical_value(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// The top-level attributes of canonical attribute text, each with its value's canonical
/// text: what an engine puts in its attribute index. Text that is not a JSON object gives
/// nothing (a damaged record is found by `verify`, not indexed).
pub fn attr_entries(attrs_text: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<Value>(attrs_text) {
        Ok(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), canonical_value(v))).collect(),
        _ => Vec::new(),
    }
}

/// Conditions on records. Every condition given must hold (AND); within `jobs` and
/// `statuses` any one value may (OR). An empty filter lets everything through.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Only these jobs (any of them); empty: every job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
    /// Only these statuses (any of them); empty: every status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<Status>,
    /// Only records whose `started_at` is in this range.
    #[serde(default, skip_serializing_if = "TimeRange::is_open")]
    pub started: TimeRange,
    /// Only records whose `finished_at` is in this range (a record without one matches
    /// only an open range).
    #[serde(default, skip_serializing_if = "TimeRange::is_open")]
    pub finished: TimeRange,
    /// Only records whose `recorded_at` is in this range.
    #[serde(default, skip_serializing_if = "TimeRange::is_open")]
    pub recorded: TimeRange,
    /// Only records whose attributes meet every one of these conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<AttrEq>,
    /// Only records of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl Filter {
    /// The most jobs, statuses or attribute conditions one filter may hold.
    pub const MAX_TERMS: usize = 100;

    /// Only job `job`.
    pub fn job(job: impl Into<String>) -> Filter {
        Filter::default().jobs([job.into()])
    }

    /// Only status `status`.
    pub fn status(status: Status) -> Filter {
        Filter::default().statuses([status])
    }

    /// Adds jobs (any of them matches).
    pub fn jobs<I, S>(mut self, jobs: I) -> Filter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.jobs.extend(jobs.into_iter().map(Into::into));
        self
    }

    /// Adds statuses (any of them matches).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = Status>) -> Filter {
        self.statuses.extend(statuses);
        self
    }

    /// Sets the `started_at` range.
    pub fn started(mut self, range: TimeRange) -> Filter {
        self.started = range;
        self
    }

    /// Sets the `finished_at` range.
    pub fn finished(mut self, range: TimeRange) -> Filter {
        self.finished = range;
        self
    }

    /// Sets the `recorded_at` range.
    pub fn recorded(mut self, range: TimeRange) -> Filter {
        self.recorded = range;
        self
    }

    /// Adds an attribute condition.
    pub fn attr(mut self, cond: AttrEq) -> Filter {
        self.attrs.push(cond);
        self
    }

    /// Only run `run`.
    pub fn run(mut self, run: impl Into<String>) -> Filter {
        self.run = Some(run.into());
        self
    }

    /// Whether it lets every record through.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Checks ranges are in order, attribute conditions well formed and the lists not
    /// too long. Every engine calls this before reading; an error names the field.
    pub fn validate(&self) -> Result<()> {
        self.started.validate("from")?;
        self.finished.validate("finished")?;
        self.recorded.validate("recorded")?;
        for (field, n) in [
            ("job", self.jobs.len()),
            ("status", self.statuses.len()),
            ("attr", self.attrs.len()),
        ] {
            if n > Self::MAX_TERMS {
                return Err(Error::invalid(
                    field,
                    format!("{n} values are more than one filter takes ({})", Self::MAX_TERMS),
                ));
            }
        }
        for cond in &self.attrs {
            cond.validate()?;
        }
        Ok(())
    }

    /// Whether `rec` passes every condition.
    pub fn matches(&self, rec: &LogRecord) -> bool {
        (self.jobs.is_empty() || self.jobs.contains(&rec.job))
            && (self.statuses.is_empty() || self.statuses.contains(&rec.status))
            && self.started.contains(rec.started_at)
            && self.finished.contains_opt(rec.finished_at)
            && self.recorded.contains(rec.recorded_at)
            && self.run.as_deref().is_none_or(|r| rec.run.as_deref() == Some(r))
            && self.attrs_match(rec.attrs.as_str())
    }

    /// Whether canonical attribute text meets every attribute condition.
    pub fn attrs_match(&self, attrs_text: &str) -> bool {
        if self.attrs.is_empty() {
            return true;
        }
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(attrs_text) else {
            return false;
        };
        self.attrs.iter().all(|c| {
            map.get(&c.key)
                .is_some_and(|v| canonical_value(v) == c.value_text())
        })
    }
}

/// How many records have each status, statuses with none left out:
/// [`crate::LogStore::count_by_status`], and [`JobSummary::counts`].
pub type StatusCounts = BTreeMap<Status, u64>;

/// What one job's records matching a filter add up to: [`crate::LogStore::summary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    /// The job.
    pub job: String,
    /// Its newest matching record.
    pub latest: LogRecord,
    /// Its newest matching record that ended a run or stood alone (any status but
    /// `started` and `progress`): "how did the last run end".
    pub latest_finished: Option<LogRecord>,
    /// Its newest matching `succeeded` record.
    pub latest_success: Option<LogRecord>,
    /// Matching `failed` and `abandoned` records newer than `latest_success` (all of them
    /// when there is none).
    pub consecutive_failures: u64,
    /// How many matching records have each status (statuses with none are left out).
    pub counts: StatusCounts,
    /// Sum of `items_seen` over the matching finished records (any status but `started`
    /// and `progress`, whose counters are a run's progress so far: its terminal record
    /// carries the totals, so adding them too would count a run's items twice).
    pub items_seen: u64,
    /// Sum of `items_written`, over the same records as `items_seen`.
    pub items_written: u64,
    /// Sum of `items_failed`, over the same records as `items_seen`.
    pub items_failed: u64,
    /// The earliest `started_at` among them.
    #[serde(with = "crate::timefmt")]
    pub first_started_at: Timestamp,
    /// The latest `recorded_at` among them.
    #[serde(with = "crate::timefmt")]
    pub last_recorded_at: Timestamp,
}

impl JobSummary {
    /// How many matching records there are.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Whether the job's last finished record succeeded.
    pub fn last_succeeded(&self) -> bool {
        self.latest_finished
            .as_ref()
            .is_some_and(|r| r.status == Status::Succeeded)
    }
}

/// Every job's [`JobSummary`], by job name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Summary {
    /// One entry per job that has a matching record, ordered by job name.
    pub jobs: Vec<JobSummary>,
}

impl Summary {
    /// "Did every job's last run succeed?": true when each job's last finished record is
    /// `succeeded` (and vacuously for no jobs).
    pub fn all_last_succeeded(&self) -> bool {
        self.jobs.iter().all(JobSummary::last_succeeded)
    }

    /// The summary of job `job`, if it has matching records.
    pub fn job(&self, job: &str) -> Option<&JobSummary> {
        self.jobs.iter().find(|s| s.job == job)
    }
}

/// Builds a [`Summary`] from matching records fed in ascending id order: how engines
/// without an aggregate index answer, and the model the others are checked against.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    jobs: BTreeMap<String, JobSummary>,
}

impl SummaryBuilder {
    /// Adds `rec` (which must be newer than every record added before it).
    pub fn add(&mut self, rec: &LogRecord) {
        let s = self.jobs.entry(rec.job.clone()).or_insert_with(|| JobSummary {
            job: rec.job.clone(),
            latest: rec.clone(),
            latest_finished: None,
            latest_success: None,
            consecutive_failures: 0,
            counts: BTreeMap::new(),
            items_seen: 0,
            items_written: 0,
            items_failed: 0,
            first_started_at: rec.started_at,
            last_recorded_at: rec.recorded_at,
        });
        s.latest = rec.clone();
        if rec.status.is_terminal() {
            s.latest_finished = Some(rec.clone());
        }
        match rec.status {
            Status::Succeeded => {
                s.latest_success = Some(rec.clone());
                s.consecutive_failures = 0;
            }
            Status::Failed | Status::Abandoned => s.consecutive_failures += 1,
            _ => {}
        }
        *s.counts.entry(rec.status).or_default() += 1;
        if rec.status.is_terminal() {
            s.items_seen = s.items_seen.saturating_add(rec.items_seen);
            s.items_written = s.items_written.saturating_add(rec.items_written);
            s.items_failed = s.items_failed.saturating_add(rec.items_failed);
        }
        s.first_started_at = s.first_started_at.min(rec.started_at);
        s.last_recorded_at = s.last_recorded_at.max(rec.recorded_at);
    }

    /// The summary.
    pub fn finish(self) -> Summary {
        Summary {
            jobs: self.jobs.into_values().collect(),
        }
    }
}

/// How many records match `filter`, read through [`LogStore::scan`]: the default
/// [`LogStore::count`], for engines without an index to count from.
pub async fn count_by_scanning<S: LogStore + ?Sized>(store: &S, filter: &Filter) -> Result<u64> {
    let mut n = 0u64;
    store
        .for_each_match(filter, crate::run::SCAN_PAGE, &mut |page| {
            n += page.len() as u64;
            Ok(())
        })
        .await?;
    Ok(n)
}

/// How many records match `filter` for each status:
/// [`count_by_status`](crate::LogStore::count_by_status), read through [`LogStore::scan`]
/// (its default).
pub async fn count_by_status_by_scanning<S: LogStore + ?Sized>(
    store: &S,
    filter: &Filter,
) -> Result<StatusCounts> {
    let mut counts = StatusCounts::new();
    store
        .for_each_match(filter, crate::run::SCAN_PAGE, &mut |page| {
            page.iter()
                .for_each(|r| *counts.entry(r.status).or_default() += 1);
            Ok(())
        })
        .await?;
    Ok(counts)
}

/// The [`Summary`] of the records matching `filter`, read through [`LogStore::scan`]: the
/// default [`LogStore::summary`].
pub async fn summary_by_scanning<S: LogStore + ?Sized>(store: &S, filter: &Filter) -> Result<Summary> {
    let mut b = SummaryBuilder::default();
    store
        .for_each_match(filter, crate::run::SCAN_PAGE, &mut |page| {
            page.iter().for_each(|r| b.add(r));
            Ok(())
        })
        .await?;
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogId, NewLog};
    use chrono::{Duration, SubsecRound, Utc};

    fn rec(id: u64, log: NewLog) -> LogRecord {
        LogRecord::seal(LogId::new(id).unwrap(), Utc::now(), log).unwrap()
    }

    #[test]
    fn attribute_values_compare_exactly_as_json() {
        let r = rec(1, NewLog::new("j", Status::Succeeded).attr("n", 1).attr("s", "1"));
        let f = |c: &str| Filter::default().attr(AttrEq::parse(c).unwrap()).matches(&r);
        assert!(f("n=1"));
        assert!(!f("n=1.0"));
        assert!(!f("n=\"1\""));
        assert!(f("s=\"1\""));
        assert!(!f("s=1"));
        assert!(!f("missing=1"));
    }

    #[test]
    fn a_bare_value_is_a_string_and_a_condition_needs_an_equals_sign() {
        assert_eq!(
            AttrEq::parse("env=prod").unwrap().value,
            Value::String("prod".into())
        );
        assert_eq!(AttrEq::parse("ok=true").unwrap().value, Value::Bool(true));
        assert_eq!(AttrEq::parse("e=").unwrap().value, Value::String(String::new()));
        for bad in ["env", "=x"] {
            let err = AttrEq::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidInput { field, .. } if field == "attr"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn time_ranges_are_half_open_and_a_reversed_one_is_refused() {
        let t = Utc::now();
        let r = TimeRange::between(t, t + Duration::seconds(1));
        assert!(r.contains(t));
        assert!(!r.contains(t + Duration::seconds(1)));
        assert!(!r.contains_opt(None));
        assert!(TimeRange::ALL.contains_opt(None));
        let half = t.trunc_subsecs(6) + Duration::nanoseconds(500);
        assert_eq!(
            TimeRange::between(half, half).micros().0,
            Some(t.trunc_subsecs(6).timestamp_micros() + 1)
        );
        let bad = Filter::default().started(TimeRange::between(t, t - Duration::seconds(1)));
        assert!(matches!(bad.validate(), Err(Error::InvalidInput { field, .. }) if field == "from"));
    }

    #[test]
    fn jobs_and_statuses_match_any_and_conditions_match_all() {
        let r = rec(1, NewLog::new("a", Status::Failed).attr("env", "prod"));
        assert!(Filter::default().jobs(["b", "a"]).matches(&r));
        assert!(!Filter::default().jobs(["b"]).matches(&r));
        assert!(Filter::default()
            .statuses([Status::Succeeded, Status::Failed])
            .matches(&r));
        assert!(!Filter::job("a").statuses([Status::Succeeded]).matches(&r));
        assert!(!Filter::job("a").run("r").matches(&r));
    }

    #[test]
    fn a_summary_counts_failures_since_the_last_success() {
        let mut b = SummaryBuilder::default();
        let statuses = [
            Status::Failed,
            Status::Succeeded,
            Status::Failed,
            Status::Skipped,
            Status::Failed,
        ];
        for (i, s) in statuses.into_iter().enumerate() {
            b.add(&rec(i as u64 + 1, NewLog::new("j", s).counts(2, 1, 1)));
        }
        let sum = b.finish();
        let j = sum.job("j").unwrap();
        assert_eq!(j.consecutive_failures, 2);
        assert_eq!(j.latest_success.as_ref().map(|r| r.id.get()), Some(2));
        assert_eq!(j.latest.id.get(), 5);
        assert_eq!(j.counts[&Status::Failed], 3);
        assert_eq!((j.items_seen, j.items_written, j.items_failed), (10, 5, 5));
        assert!(!sum.all_last_succeeded());
    }
}
