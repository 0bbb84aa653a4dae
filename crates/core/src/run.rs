//! Runs and exactly-once appends: the rules every engine applies, under its write lock,
//! before it hands out ids.
//!
//! A log may carry a **run key** ([`NewLog::run`]): the records of one run form its
//! timeline, `started` first, then any number of `progress` records, then one terminal
//! record (`succeeded`, `failed`, `partial`, `skipped` or `abandoned`). The run's state is
//! derived from its records ([`Run::from_records`]); records stay immutable and
//! checksummed.
//!
//! A log may carry an **idempotency key** ([`NewLog::idempotency_key`]): a second append
//! with the same key and the same content returns the record stored the first time (a
//! *repeat*, [`Committed::repeats`]); with other content it fails with
//! [`Error::IdempotencyConflict`]. A terminal record for a run that has already ended the
//! same way (same status, counters, message and attributes) is a repeat too, so a
//! `finish` is idempotent by its run key.
//!
//! Engines apply the rules with a [`Planner`] inside the section where they alone write
//! (a transaction, a file lock, the pair lock), so they hold across processes:
//! [`Planner::plan`] decides each batch against what the store holds ([`Keys`]) and the
//! batches sealed before it in the same group; a refused batch writes nothing and the
//! other batches of its group go on.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::query::Filter;
use crate::record::{LogId, LogRecord, NewLog, Status, Timestamp};

/// What a commit did: the records in batch order, and which of them were stored before
/// (repeats of an idempotency key or of a run's finish) rather than written now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Committed {
    /// The records, in batch order: new ones with their new ids, repeats as stored.
    pub records: Vec<LogRecord>,
    /// `repeats[i]`: `records[i]` was stored before this commit (nothing was written for it).
    pub repeats: Vec<bool>,
}

impl Committed {
    /// Records that were all written now.
    pub fn fresh(records: Vec<LogRecord>) -> Committed {
        Committed {
            repeats: vec![false; records.len()],
            records,
        }
    }

    /// How many records were written now.
    pub fn written(&self) -> usize {
        self.repeats.iter().filter(|r| !**r).count()
    }

    /// The records written now (not the repeats), in order.
    pub fn new_records(&self) -> impl Iterator<Item = &LogRecord> {
        self.records
            .iter()
            .zip(&self.repeats)
            .filter(|(_, repeat)| !**repeat)
            .map(|(r, _)| r)
    }
}

/// Plans `batch` with `planner` and seals each log to write with `seal` (which hands out
/// the next id), telling the planner about each sealed record. `Ok(Err(e))`: the batch is
/// refused and `seal` was not called. `Err(e)`: a lookup or a seal failed (fail the group).
pub fn seal_batch(
    planner: &mut Planner,
    batch: &[NewLog],
    keys: &mut dyn Keys,
    seal: &mut dyn FnMut(&NewLog) -> Result<LogRecord>,
) -> Result<Result<Committed>> {
    let plan = match planner.plan(batch, keys)? {
        Ok(plan) => plan,
        Err(refused) => return Ok(Err(refused)),
    };
    let mut done = Committed {
        records: Vec::with_capacity(batch.len()),
        repeats: Vec::with_capacity(batch.len()),
    };
    for (log, stored) in batch.iter().zip(plan) {
        match stored {
            Some(stored) => {
                done.records.push(stored);
                done.repeats.push(true);
            }
            None => {
                let rec = seal(log)?;
                planner.sealed(&rec);
                done.records.push(rec);
                done.repeats.push(false);
            }
        }
    }
    Ok(Ok(done))
}

/// Seals the batches of one group in order, with `seal` handing out the ids: through one
/// [`Planner`] when `keys` is given (some log carries an idempotency key or a run, see
/// [`Planner::any_keys`]), every log fresh otherwise. Each batch's outcome as
/// [`seal_batch`] gives it; `Err(e)`: a lookup or a seal failed (fail the group).
pub fn seal_group(
    batches: &[&[NewLog]],
    keys: Option<&mut dyn Keys>,
    seal: &mut dyn FnMut(&NewLog) -> Result<LogRecord>,
) -> Result<Vec<Result<Committed>>> {
    let mut out = Vec::with_capacity(batches.len());
    match keys {
        Some(keys) => {
            let mut planner = Planner::new();
            for batch in batches {
                out.push(seal_batch(&mut planner, batch, keys, seal)?);
            }
        }
        None => {
            for batch in batches {
                let records = batch.iter().map(&mut *seal).collect::<Result<Vec<_>>>()?;
                out.push(Ok(Committed::fresh(records)));
            }
        }
    }
    Ok(out)
}

/// [`Keys`] answered by reading records in id order (engines without an index of keys:
/// the memory engine, and the fallback of others).
pub struct ScanKeys<I>(pub I);

impl<'a, I> Keys for ScanKeys<I>
where
    I: Fn() -> Box<dyn Iterator<Item = &'a LogRecord> + 'a>,
{
    fn idempotent(&mut self, key: &str) -> Result<Option<LogRecord>> {
        Ok((self.0)()
            .find(|r| r.idempotency_key.as_deref() == Some(key))
            .cloned())
    }
    fn run_ends(&mut self, run: &str) -> Result<Option<RunEnds>> {
        let mut it = (self.0)().filter(|r| r.run.as_deref() == Some(run));
        let Some(first) = it.next() else { return Ok(None) };
        let last = it.last().unwrap_or(first);
        Ok(Some(RunEnds {
            first: first.clone(),
            last: last.clone(),
        }))
    }
}

/// One log as an append answers it: the record and whether it was stored before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The record (as stored the first time, for a repeat).
    pub record: LogRecord,
    /// Whether the record was stored before this append (nothing was written now).
    pub repeat: bool,
}

/// The first and the latest record of a run, as a store holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnds {
    /// The run's first record (its `started` record).
    pub first: LogRecord,
    /// Its latest record (the terminal one once the run has finished).
    pub last: LogRecord,
}

impl RunEnds {
    /// The ends of a run from its records in id order (`None` when there are none).
    pub fn of(records: &[LogRecord]) -> Option<RunEnds> {
        Some(RunEnds {
            first: records.first()?.clone(),
            last: records.last()?.clone(),
        })
    }
}

/// What an engine's [`Planner`] asks of its storage, inside the engine's write section.
pub trait Keys {
    /// The record stored under idempotency key `key`, if any.
    fn idempotent(&mut self, key: &str) -> Result<Option<LogRecord>>;
    /// The first and latest record of run `run`, if it has any.
    fn run_ends(&mut self, run: &str) -> Result<Option<RunEnds>>;
}

/// [`Keys`] answered from maps filled beforehand (an async store looks every key of a
/// group up first, see [`Planner::wanted`], then plans synchronously).
#[derive(Debug, Default)]
pub struct Fetched {
    /// Idempotency key → stored record (absent key: none stored).
    pub idempotent: HashMap<String, LogRecord>,
    /// Run key → its ends (absent key: no record of that run).
    pub runs: HashMap<String, RunEnds>,
}

impl Keys for Fetched {
    fn idempotent(&mut self, key: &str) -> Result<Option<LogRecord>> {
        Ok(self.idempotent.get(key).cloned())
    }
    fn run_ends(&mut self, run: &str) -> Result<Option<RunEnds>> {
        Ok(self.runs.get(run).cloned())
    }
}

/// The keys of a group that a planner will ask about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Idempotency keys, each once.
    pub idempotent: Vec<String>,
    /// Run keys, each once.
    pub runs: Vec<String>,
}

impl Wanted {
    /// Whether no log of the group carries a key (the planner has nothing to look up).
    pub fn is_empty(&self) -> bool {
        self.idempotent.is_empty() && self.runs.is_empty()
    }
}

/// A run's state as the planner tracks it.
#[derive(Debug, Clone)]
enum State {
    /// Running: the job it belongs to and its start record's id (when sealed).
    Open { job: String, start: Option<LogId> },
    /// Finished, with its terminal record.
    Finished(Box<LogRecord>),
    /// Finished by an earlier log of the batch being planned (not sealed yet).
    FinishedInBatch { at: usize },
}

/// Decides, batch by batch, which logs of a group are new, which are repeats and which
/// batches are refused. One planner per group (it remembers what the group's earlier
/// batches sealed).
#[derive(Debug, Default)]
pub struct Planner {
    idempotent: HashMap<String, LogRecord>,
    runs: HashMap<String, State>,
}

/// The plan of one batch: for each log, `None` (write it) or the stored record it repeats.
pub type Plan = Vec<Option<LogRecord>>;

impl Planner {
    /// A planner for a new group.
    pub fn new() -> Planner {
        Planner::default()
    }

    /// Whether any log of `batches` carries a run or idempotency key. Without one, every
    /// log is new and nothing needs to be looked up.
    pub fn any_keys<'a>(batches: impl IntoIterator<Item = &'a [NewLog]>) -> bool {
        batches
            .into_iter()
            .flatten()
            .any(|l| l.run.is_some() || l.idempotency_key.is_some())
    }

    /// Every key the logs of `batches` carry, each once, to look up before planning.
    pub fn wanted<'a>(batches: impl IntoIterator<Item = &'a [NewLog]>) -> Wanted {
        let (mut seen_i, mut seen_r) = (HashSet::new(), HashSet::new());
        let mut wanted = Wanted::default();
        for log in batches.into_iter().flatten() {
            if let Some(k) = &log.idempotency_key {
                if seen_i.insert(k.as_str()) {
                    wanted.idempotent.push(k.clone());
                }
            }
            if let Some(r) = &log.run {
                if seen_r.insert(r.as_str()) {
                    wanted.runs.push(r.clone());
                }
            }
        }
        wanted
    }

    /// Decides `batch`. `Ok(Ok(plan))`: write the logs whose entry is `None` (seal them in
    /// order and pass each sealed record to [`sealed`](Self::sealed)), answer the others
    /// with the stored record. `Ok(Err(e))`: the batch is refused (nothing of it may be
    /// written; the error names the log). `Err(e)`: `keys` failed, which fails the group.
    pub fn plan(&mut self, batch: &[NewLog], keys: &mut dyn Keys) -> Result<Result<Plan>> {
        let mut plan = Vec::with_capacity(batch.len());
        let mut local: HashMap<&str, State> = HashMap::new();
        let mut batch_keys: HashMap<&str, usize> = HashMap::new();
        for (i, log) in batch.iter().enumerate() {
            if let Some(key) = &log.idempotency_key {
                if let Some(first) = batch_keys.insert(key, i) {
                    return Ok(Err(Error::invalid(
                        "idempotency_key",
                        format!("{key:?} is given to logs #{first} and #{i} of one batch"),
                    )
                    .at_index(i)));
                }
                let stored = match self.idempotent.get(key) {
                    Some(r) => Some(r.clone()),
                    None => keys.idempotent(key)?,
                };
                if let Some(stored) = stored {
                    if same_content(log, &stored) {
                        plan.push(Some(stored));
                        continue;
                    }
                    return Ok(Err(Error::IdempotencyConflict {
                        key: key.clone(),
                        stored: stored.id,
                    }));
                }
            }
            let Some(run) = &log.run else {
                plan.push(None);
                continue;
            };
            let state = match local.get(run.as_str()) {
                Some(s) => Some(s.clone()),
                None => match self.runs.get(run) {
                    Some(s) => Some(s.clone()),
                    None => keys.run_ends(run)?.map(|ends| state_of(&ends)),
                },
            };
            let refuse =
                |field: &'static str, reason: String| Ok(Err(Error::invalid(field, reason).at_index(i)));
            let next = match state {
                None if log.status == Status::Started => State::Open {
                    job: log.job.clone(),
                    start: None,
                },
                None => {
                    return refuse(
                        "run",
                        format!(
                            "run {run:?} is not known: a run starts with a started log (`synclog start`), not a {} one",
                            log.status
                        ),
                    )
                }
                Some(State::Open { job, start }) => {
                    if job != log.job {
                        return refuse("job", format!("run {run:?} belongs to job {job:?}, not {:?}", log.job));
                    }
                    if log.status == Status::Started {
                        let at = start.map(|s| format!(" as log {s}")).unwrap_or_default();
                        return refuse("run", format!("run {run:?} is already running (started{at})"));
                    }
                    if log.status.is_terminal() {
                        State::FinishedInBatch { at: i }
                    } else {
                        State::Open { job, start }
                    }
                }
                Some(State::Finished(terminal)) => {
                    if log.status.is_terminal() && same_finish(log, &terminal) {
                        plan.push(Some(*terminal));
                        continue;
                    }
                    return Ok(Err(Error::RunFinished {
                        run: run.clone(),
                        status: terminal.status,
                        id: terminal.id,
                    }));
                }
                Some(State::FinishedInBatch { at }) => {
                    return refuse("run", format!("run {run:?} is finished by log #{at} of the same batch"))
                }
            };
            local.insert(run, next);
            plan.push(None);
        }
        Ok(Ok(plan))
    }

    /// Tells the planner a record of the planned batch was sealed (with its id), so later
    /// batches of the group see it.
    pub fn sealed(&mut self, rec: &LogRecord) {
        if let Some(key) = &rec.idempotency_key {
            self.idempotent.insert(key.clone(), rec.clone());
        }
        if let Some(run) = &rec.run {
            let state = if rec.status.is_terminal() {
                State::Finished(Box::new(rec.clone()))
            } else {
                let start = match self.runs.get(run) {
                    Some(State::Open { start, .. }) if rec.status != Status::Started => *start,
                    _ => Some(rec.id),
                };
                State::Open {
                    job: rec.job.clone(),
                    start,
                }
            };
            self.runs.insert(run.clone(), state);
        }
    }
}

fn state_of(ends: &RunEnds) -> State {
    if ends.last.status.is_terminal() {
        State::Finished(Box::new(ends.last.clone()))
    } else {
        State::Open {
            job: ends.first.job.clone(),
            start: Some(ends.first.id),
        }
    }
}

/// For retries that did not say when the sync started: each log of `logs` whose entry of
/// `stamped` is true had its `started_at` stamped with the current time (the request
/// left it out) and carries an idempotency key. A key already stored gives its log the
/// stored start time, so that the same request sent again is a repeat of the stored record
/// rather than "other content" (every other field is still compared by the store). Keys
/// not stored keep the stamp. `logs` and `stamped` have the same length.
///
/// One lookup for all the keys ([`crate::store::LogStore::find_idempotent_many`]). A retry sent while
/// the first attempt has not committed yet finds nothing and keeps its own stamp; the
/// store then refuses it as other content. Only a start time sent with both makes those
/// two the same.
pub async fn adopt_stored_starts(
    store: &dyn crate::store::LogStore,
    logs: &mut [NewLog],
    stamped: &[bool],
) -> Result<()> {
    let keys: Vec<String> = logs
        .iter()
        .zip(stamped)
        .filter(|(_, stamped)| **stamped)
        .filter_map(|(log, _)| log.idempotency_key.clone())
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let stored: HashMap<String, Timestamp> = store
        .find_idempotent_many(&keys)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.idempotency_key?, r.started_at)))
        .collect();
    for (log, stamped) in logs.iter_mut().zip(stamped) {
        if let (true, Some(at)) = (*stamped, log.idempotency_key.as_ref().and_then(|k| stored.get(k))) {
            log.started_at = *at;
        }
    }
    Ok(())
}

/// Whether `log` is what `stored` was made from: every field the caller gives equal
/// (timestamps at stored precision, attributes canonically).
pub fn same_content(log: &NewLog, stored: &LogRecord) -> bool {
    match LogRecord::seal_ref(stored.id, stored.recorded_at, log) {
        Ok(again) => again == *stored,
        Err(_) => false,
    }
}

/// Whether `log` ends its run the way `terminal` did: the same job, status, counters,
/// message and attributes (its times may differ: a retried finish is stamped anew).
pub fn same_finish(log: &NewLog, terminal: &LogRecord) -> bool {
    log.job == terminal.job
        && log.status == terminal.status
        && log.items_seen == terminal.items_seen
        && log.items_written == terminal.items_written
        && log.items_failed == terminal.items_failed
        && log.message == terminal.message
        && crate::canonical::Attrs::from_value(&log.attrs).is_ok_and(|a| a == terminal.attrs)
}

/// One row per run: its state, derived from its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The run key.
    pub key: String,
    /// The job it belongs to.
    pub job: String,
    /// The latest status: `started` or `progress` while it runs, then its terminal status.
    pub status: Status,
    /// Whether it has ended (its latest record is terminal).
    pub finished: bool,
    /// When it started (its first record's `started_at`).
    #[serde(with = "crate::timefmt")]
    pub started_at: Timestamp,
    /// When it ended: the terminal record's `finished_at`, or when it was recorded.
    #[serde(with = "crate::timefmt::option")]
    pub finished_at: Option<Timestamp>,
    /// `finished_at - started_at` in milliseconds, once it has ended.
    pub duration_ms: Option<i64>,
    /// Counters of the latest record (the terminal one once it has ended).
    pub items_seen: u64,
    /// See `items_seen`.
    pub items_written: u64,
    /// See `items_seen`.
    pub items_failed: u64,
    /// The latest record's message.
    pub message: String,
    /// The ids of its records, in order.
    pub record_ids: Vec<LogId>,
}

impl Run {
    /// The run whose records (all of them, in id order) are `records`; `None` when empty.
    pub fn from_records(key: &str, records: &[LogRecord]) -> Option<Run> {
        let (first, last) = (records.first()?, records.last()?);
        let finished = last.status.is_terminal();
        let finished_at = finished.then(|| last.finished_at.unwrap_or(last.recorded_at));
        Some(Run {
            key: key.to_string(),
            job: first.job.clone(),
            status: last.status,
            finished,
            started_at: first.started_at,
            finished_at,
            duration_ms: finished_at.map(|f| (f - first.started_at).num_milliseconds()),
            items_seen: last.items_seen,
            items_written: last.items_written,
            items_failed: last.items_failed,
            message: last.message.clone(),
            record_ids: records.iter().map(|r| r.id).collect(),
        })
    }

    /// The id runs are paged by: the first record's.
    pub fn first_id(&self) -> LogId {
        self.record_ids[0]
    }

    /// Whether it is still running and started before `cutoff` (a stale run).
    pub fn is_stale(&self, cutoff: Timestamp) -> bool {
        !self.finished && self.started_at < cutoff
    }
}

/// A query over runs, paged by the id of each run's first record.
///
/// Page by passing the last run's [`Run::first_id`] as `after` (or `before` when
/// `descending`).
///
/// Its [`Filter`] applies to the run as a whole: `jobs` to its job, `statuses` to its
/// latest status, `started` to when it started, `finished` to when it ended (a run that has
/// not ended matches only an open range), `run` to its key, `recorded` to when its latest
/// record was recorded, and `attrs` to its first (`started`) record's attributes, the tags
/// it was started with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunScan {
    /// Only runs whose first record's id is greater than this.
    pub after: Option<LogId>,
    /// Only runs whose first record's id is smaller than this.
    pub before: Option<LogId>,
    /// The conditions runs must meet (see above).
    #[serde(flatten)]
    pub filter: Filter,
    /// Only runs that have not ended.
    pub unfinished: bool,
    /// Only runs that started before this instant and have not ended (stale runs; it
    /// implies `unfinished`). The caller's clock decides what "now" is.
    pub started_before: Option<Timestamp>,
    /// At most this many runs; 0 means [`crate::Scan::DEFAULT_LIMIT`].
    pub limit: usize,
    /// Newest first.
    pub descending: bool,
}

impl RunScan {
    /// Stale runs: not ended, started before `cutoff`.
    pub fn stale(cutoff: Timestamp) -> RunScan {
        RunScan {
            unfinished: true,
            started_before: Some(cutoff),
            ..RunScan::default()
        }
    }

    /// The limit to apply, after checking it and the filter. Engines call this before
    /// reading.
    pub fn effective_limit(&self) -> Result<usize> {
        crate::Scan {
            limit: self.limit,
            filter: self.filter.clone(),
            ..crate::Scan::default()
        }
        .effective_limit()
    }

    /// Whether only unfinished runs can match (an engine may then read its index of
    /// running runs instead of every run).
    pub fn only_unfinished(&self) -> bool {
        self.unfinished
            || self.started_before.is_some()
            || (!self.filter.statuses.is_empty() && self.filter.statuses.iter().all(|s| !s.is_terminal()))
    }

    /// Whether the run whose records (all of them, in id order) are `records` passes the
    /// filters (not the limit). `run` is [`Run::from_records`] of them.
    pub fn matches(&self, run: &Run, records: &[LogRecord]) -> bool {
        let id = run.first_id();
        let f = &self.filter;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return false;
        };
        self.after.is_none_or(|a| id > a)
            && self.before.is_none_or(|b| id < b)
            && (f.jobs.is_empty() || f.jobs.contains(&run.job))
            && (f.statuses.is_empty() || f.statuses.contains(&run.status))
            && f.started.contains(run.started_at)
            && f.finished.contains_opt(run.finished_at)
            && f.recorded.contains(last.recorded_at)
            && f.run.as_deref().is_none_or(|k| run.key == k)
            && f.attrs_match(first.attrs.as_str())
            && (!self.only_unfinished() || !run.finished)
            && self.started_before.is_none_or(|c| run.started_at < c)
    }
}

/// The keys of a store without an index of its own, kept in memory: idempotency key →
/// id, run key → the ids of its records. Engines that cannot look keys up in their
/// storage (sled, JSON lines) fill it once from their records and then note every record
/// they write, import or read from another process, and answer [`Keys`] through it with
/// their own `get`.
#[derive(Debug, Default, Clone)]
pub struct KeyBook {
    idempotent: HashMap<String, LogId>,
    runs: HashMap<String, Vec<LogId>>,
}

impl KeyBook {
    /// An empty book.
    pub fn new() -> KeyBook {
        KeyBook::default()
    }

    /// Notes a stored record (in any order: a run's ids are kept sorted).
    pub fn note(&mut self, rec: &LogRecord) {
        if let Some(k) = &rec.idempotency_key {
            self.idempotent.entry(k.clone()).or_insert(rec.id);
        }
        if let Some(r) = &rec.run {
            let ids = self.runs.entry(r.clone()).or_default();
            match ids.binary_search(&rec.id) {
                Ok(_) => {}
                Err(at) => ids.insert(at, rec.id),
            }
        }
    }

    /// The id stored under idempotency key `key`.
    pub fn idempotent(&self, key: &str) -> Option<LogId> {
        self.idempotent.get(key).copied()
    }

    /// The ids of run `run`'s records, in order (empty for an unknown run).
    pub fn run_ids(&self, run: &str) -> &[LogId] {
        self.runs.get(run).map_or(&[], Vec::as_slice)
    }

    /// Every run key with its records' ids.
    pub fn runs(&self) -> impl Iterator<Item = (&String, &Vec<LogId>)> {
        self.runs.iter()
    }

    /// [`Keys`] over this book, reading records with `get`.
    pub fn keys<'a, G>(&'a self, get: G) -> BookKeys<'a, G>
    where
        G: FnMut(LogId) -> Result<Option<LogRecord>>,
    {
        BookKeys { book: self, get }
    }

    /// Runs matching `scan` (see [`crate::LogStore::runs`]), reading their records with `get`.
    pub fn select_runs(
        &self,
        scan: &RunScan,
        limit: usize,
        mut get: impl FnMut(LogId) -> Result<Option<LogRecord>>,
    ) -> Result<Vec<Run>> {
        let mut candidates: Vec<(&String, &Vec<LogId>)> = self
            .runs
            .iter()
            .filter(|(_, ids)| {
                let first = ids[0];
                scan.after.is_none_or(|a| first > a) && scan.before.is_none_or(|b| first < b)
            })
            .collect();
        candidates.sort_by_key(|(_, ids)| ids[0]);
        if scan.descending {
            candidates.reverse();
        }
        let mut out = Vec::new();
        for (key, ids) in candidates {
            if out.len() >= limit {
                break;
            }
            let mut records = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(r) = get(*id)? {
                    records.push(r);
                }
            }
            if let Some(run) = Run::from_records(key, &records) {
                if scan.matches(&run, &records) {
                    out.push(run);
                }
            }
        }
        Ok(out)
    }
}

/// [`Keys`] answered by a [`KeyBook`] and the engine's `get`.
pub struct BookKeys<'a, G> {
    book: &'a KeyBook,
    get: G,
}

impl<G> Keys for BookKeys<'_, G>
where
    G: FnMut(LogId) -> Result<Option<LogRecord>>,
{
    fn idempotent(&mut self, key: &str) -> Result<Option<LogRecord>> {
        match self.book.idempotent(key) {
            Some(id) => (self.get)(id),
            None => Ok(None),
        }
    }
    fn run_ends(&mut self, run: &str) -> Result<Option<RunEnds>> {
        let ids = self.book.run_ids(run);
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(None);
        };
        match ((self.get)(*first)?, (self.get)(*last)?) {
            (Some(first), Some(last)) => Ok(Some(RunEnds { first, last })),
            _ => Ok(None),
        }
    }
}

/// A new run key: the time it was made (so keys sort by start) and 64 random bits, e.g.
/// `20261201T104512Z-3f9c0a1b2d4e5f60`.
pub fn new_run_key() -> String {
    format!(
        "{}-{:016x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        fastrand::u64(..)
    )
}

/// The page size of the lookups that read every record.
pub const SCAN_PAGE: usize = 10_000;

/// How a store without an index of runs answers [`crate::LogStore::runs`]: reads every
/// record, a page at a time, groups them by run and keeps the runs `scan` matches.
pub async fn runs_by_scanning<S: crate::LogStore + ?Sized>(store: &S, scan: &RunScan) -> Result<Vec<Run>> {
    use crate::LogStoreExt;
    let limit = scan.effective_limit()?;
    let mut by_run = HashMap::<String, Vec<LogRecord>>::new();
    store
        .for_each_page(SCAN_PAGE, &mut |page| {
            for r in page {
                if let Some(key) = &r.run {
                    by_run.entry(key.clone()).or_default().push(r);
                }
            }
            Ok(())
        })
        .await?;
    Ok(select_runs(by_run, scan, limit))
}

/// The runs of `by_run` (each run's records in id order) that match `scan`, ordered by
/// their first record's id and cut to `limit`: how engines without an index of runs
/// answer [`crate::LogStore::runs`].
pub fn select_runs(by_run: HashMap<String, Vec<LogRecord>>, scan: &RunScan, limit: usize) -> Vec<Run> {
    let mut runs: Vec<Run> = by_run
        .iter()
        .filter_map(|(key, records)| Run::from_records(key, records).filter(|run| scan.matches(run, records)))
        .collect();
    runs.sort_by_key(Run::first_id);
    if scan.descending {
        runs.reverse();
    }
    runs.truncate(limit);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn seal(id: u64, log: &NewLog) -> LogRecord {
        LogRecord::seal_ref(LogId::new(id).unwrap(), Utc::now(), log).unwrap()
    }

    #[test]
    fn a_repeat_needs_every_field_equal_and_a_finish_repeat_ignores_times() {
        let log = NewLog::new("j", Status::Succeeded)
            .idempotency_key("k")
            .attr("a", 1);
        let stored = seal(7, &log);
        assert!(same_content(&log, &stored));
        assert!(!same_content(&log.clone().message("other"), &stored));
        let later = NewLog {
            started_at: log.started_at + chrono::Duration::seconds(5),
            ..log.clone()
        };
        assert!(!same_content(&later, &stored));
        assert!(same_finish(&later, &stored));
        assert!(!same_finish(&later.attr("a", 2), &stored));
    }

    #[test]
    fn a_batch_that_starts_and_finishes_a_run_is_planned_whole_and_refused_after() {
        let start = NewLog::new("j", Status::Started).run("r");
        let done = NewLog::new("j", Status::Succeeded).run("r");
        let mut p = Planner::new();
        let mut none = Fetched::default();
        let plan = p
            .plan(&[start.clone(), done.clone()], &mut none)
            .unwrap()
            .unwrap();
        assert_eq!(plan, vec![None, None]);
        p.sealed(&seal(1, &start));
        p.sealed(&seal(2, &done));
        let err = p
            .plan(&[NewLog::new("j", Status::Progress).run("r")], &mut none)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, Error::RunFinished { id, .. } if id.get() == 2),
            "{err}"
        );
        let again = p.plan(std::slice::from_ref(&done), &mut none).unwrap().unwrap();
        assert_eq!(again[0].as_ref().map(|r| r.id.get()), Some(2));
    }
}
