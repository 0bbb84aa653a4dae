//! The storage contract every engine implements: [`LogStore`], and the conveniences
//! every store gets for free: [`LogStoreExt`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::canonical::Checksum;
use crate::error::{Error, Result};
use crate::query::{Filter, StatusCounts, Summary};
use crate::record::{IdRange, LogId, LogRecord, NewLog, Status};
use crate::retention::{Applied, PruneMarker};
use crate::run::{Appended, Committed, Run, RunScan};
use crate::validate::{ValidBatch, ValidRecords};

/// What an acknowledged commit survives. Ordered from weakest to strongest.
///
/// An engine that cannot give a level returns [`Error::Unsupported`]; it never silently
/// gives a weaker one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// In the engine's own buffers: lost if the process dies.
    Buffered,
    /// Handed to the operating system: survives the process being killed, not power loss.
    Process,
    /// Synced to stable storage (fsync/fdatasync) before the acknowledgement: survives
    /// power loss and an OS crash. The default.
    #[default]
    PowerLoss,
}

impl Durability {
    /// Every level, weakest first.
    pub const ALL: [Durability; 3] = [Durability::Buffered, Durability::Process, Durability::PowerLoss];
}

/// What an engine supports, so callers and the conformance suite can choose honestly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The engine's short name (`sqlite`, `json`, `sled`, `postgres`, `memory`).
    pub engine: &'static str,
    /// Several OS processes may use the same storage at once.
    pub multi_process: bool,
    /// Data outlives the process (a reopen sees it).
    pub persistent: bool,
    /// [`LogStore::checkpoint`] is implemented.
    pub checkpoint: bool,
    /// [`VerifyOptions::deep`] runs an engine-level check.
    pub deep_verify: bool,
    /// [`LogStoreExt::repair`] replaces damaged records.
    pub repair: bool,
    /// [`LogStore::apply_prune`] is implemented (see [`crate::retention`]).
    pub prune: bool,
    /// The durability levels [`LogStoreExt::commit`] accepts.
    pub durability: Vec<Durability>,
}

impl Capabilities {
    /// The strongest durability level the engine accepts (what a caller who wants the most
    /// should ask for).
    pub fn strongest_durability(&self) -> Durability {
        self.durability
            .iter()
            .copied()
            .max()
            .unwrap_or(Durability::Buffered)
    }
}

/// A range query over ids, with a [`Filter`] and paging. Results come in id order.
///
/// Page by passing the last id of one page as `after` of the next (or as `before` when
/// `descending`): keyset paging, correct under every filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scan {
    /// Only ids greater than this.
    pub after: Option<LogId>,
    /// Only ids smaller than this.
    pub before: Option<LogId>,
    /// The conditions records must meet.
    #[serde(flatten)]
    pub filter: Filter,
    /// At most this many records; 0 means [`Scan::DEFAULT_LIMIT`].
    pub limit: usize,
    /// Newest first.
    pub descending: bool,
}

impl Scan {
    /// The limit used when `limit` is 0.
    pub const DEFAULT_LIMIT: usize = 1000;
    /// The largest page a store returns; a larger limit is an invalid-input error.
    pub const MAX_LIMIT: usize = 100_000;

    /// Every record, in pages of `limit`.
    pub fn all(limit: usize) -> Scan {
        Scan {
            limit,
            ..Scan::default()
        }
    }

    /// Records matching `filter`, in pages of `limit`.
    pub fn filtered(filter: Filter, limit: usize) -> Scan {
        Scan {
            filter,
            limit,
            ..Scan::default()
        }
    }

    /// The limit to apply, after checking it and the filter. Engines call this before
    /// reading.
    pub fn effective_limit(&self) -> Result<usize> {
        self.filter.validate()?;
        match self.limit {
            0 => Ok(Self::DEFAULT_LIMIT),
            n if n > Self::MAX_LIMIT => Err(Error::invalid(
                "limit",
                format!("{n} is more than {}; page through with `after`", Self::MAX_LIMIT),
            )),
            n => Ok(n),
        }
    }

    /// Whether `rec` passes the filters (not the limit). Engines without an index use this.
    pub fn matches(&self, rec: &LogRecord) -> bool {
        self.after.is_none_or(|a| rec.id > a)
            && self.before.is_none_or(|b| rec.id < b)
            && self.filter.matches(rec)
    }
}

/// The modes of a SQLite-style WAL checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointMode {
    /// Copy what can be copied without waiting.
    #[default]
    Passive,
    /// Wait for writers, then copy everything and sync the database.
    Full,
    /// Like `Full`, and also wait for readers so the log restarts from the beginning.
    Restart,
    /// Like `Restart`, and truncate the log file to zero bytes.
    Truncate,
}

impl std::str::FromStr for CheckpointMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "passive" => Ok(CheckpointMode::Passive),
            "full" => Ok(CheckpointMode::Full),
            "restart" => Ok(CheckpointMode::Restart),
            "truncate" => Ok(CheckpointMode::Truncate),
            _ => Err(Error::invalid(
                "mode",
                format!("{s:?} is not one of passive, full, restart, truncate"),
            )),
        }
    }
}

/// The result of a checkpoint: SQLite's `(busy, log, checkpointed)` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    /// The mode that ran.
    pub mode: CheckpointMode,
    /// The checkpoint could not finish (a reader or writer was in the way). Never success.
    pub busy: bool,
    /// Frames in the write-ahead log.
    pub log_frames: i64,
    /// Frames copied into the database.
    pub checkpointed: i64,
}

/// Options of [`LogStore::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyOptions {
    /// Also run the engine's own consistency check (SQLite `quick_check`).
    pub deep: bool,
}

/// A record that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorruptRecord {
    /// Its id, when it could be read.
    pub id: Option<LogId>,
    /// Where it is (a line number, a key) and what is wrong.
    pub detail: String,
}

/// What [`LogStore::verify`] found, reading through a path independent of the writer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct VerifyReport {
    /// Records read and checked.
    pub checked: u64,
    /// The smallest and largest id seen.
    pub first_id: Option<LogId>,
    /// See `first_id`.
    pub last_id: Option<LogId>,
    /// Ids absent inside `first_id..=last_id` and not removed by a prune, as ranges in
    /// ascending order. Stores assign ids densely, so a gap is a lost record (or a partial
    /// import).
    pub missing: Vec<IdRange>,
    /// Records whose checksum did not match or that could not be decoded.
    pub corrupt: Vec<CorruptRecord>,
    /// Ids not strictly greater than the one stored before them (duplicates included).
    pub out_of_order: Vec<LogId>,
    /// Problems the engine's own check reported (empty when it found none or did not run).
    pub engine_problems: Vec<String>,
    /// Whether the engine's own check ran.
    pub deep_checked: bool,
    /// The prunes the store records (see [`crate::retention`]), oldest first: their ids are
    /// accounted as pruned, never as missing.
    pub prunes: Vec<PruneMarker>,
    /// Records still present under a prune marker (a prune interrupted before it deleted
    /// them all; running it again completes it). Not a problem: each is present.
    pub pruned_present: u64,
}

impl VerifyReport {
    /// How many ids are missing in all.
    pub fn missing_count(&self) -> u64 {
        self.missing.iter().map(IdRange::count).sum()
    }

    /// No missing, corrupt or out-of-order record, and no engine problem.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.out_of_order.is_empty()
            && self.engine_problems.is_empty()
    }
}

/// A conflict found by an import: the same id with a different record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportConflict {
    /// The contested id.
    pub id: LogId,
    /// The checksum of the record already stored (which was kept).
    pub stored: Checksum,
    /// The checksum of the record offered (which was not written).
    pub offered: Checksum,
}

/// What [`LogStoreExt::import`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ImportReport {
    /// Records written.
    pub inserted: u64,
    /// Records skipped because an identical one was already stored.
    pub already_present: u64,
    /// Records refused because a different one is stored under the same id.
    pub conflicts: Vec<ImportConflict>,
    /// Damaged records replaced by the intact ones offered ([`LogStoreExt::repair`] only).
    pub replaced: u64,
    /// Records a copy left out because they were damaged where it read them
    /// ([`LogStoreExt::copy_to`] only); the intact ones were copied.
    pub damaged: Vec<LogId>,
    /// Records skipped because a prune marker of the store covers their id: a pruned
    /// record never comes back.
    pub pruned: u64,
}

impl ImportReport {
    /// Counts an offered record whose id is already stored: identical checksums mean it is
    /// already present, different ones a conflict (the stored record is kept).
    pub fn note_existing(&mut self, id: LogId, stored: Checksum, offered: Checksum) {
        if stored == offered {
            self.already_present += 1;
        } else {
            self.conflicts.push(ImportConflict { id, stored, offered });
        }
    }

    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: ImportReport) {
        self.inserted += other.inserted;
        self.already_present += other.already_present;
        self.conflicts.extend(other.conflicts);
        self.replaced += other.replaced;
        self.damaged.extend(other.damaged);
        self.pruned += other.pruned;
    }
}

/// The storage contract. Object safe: apps hold `Arc<dyn LogStore>`.
///
/// Only what touches storage is here; conveniences are in [`LogStoreExt`]. Every
/// method states what is true when it returns `Ok`.
#[async_trait]
pub trait LogStore: Send + Sync + fmt::Debug {
    /// A description of the store for messages, e.g. `sqlite:///var/lib/app/logs.db`.
    /// Never contains a password.
    fn describe(&self) -> String;

    /// What this engine supports.
    fn capabilities(&self) -> Capabilities;

    /// Appends `batch` atomically: all of it or none of it, and says which records are
    /// repeats. Callers use [`LogStoreExt::commit_report`], which validates the batch and
    /// calls this; an engine never sees logs that did not pass [`crate::validate`].
    ///
    /// When this returns `Ok`, every record is readable by [`get`](Self::get) and
    /// [`scan`](Self::scan), and survives what `durability` names. The records come back
    /// in batch order: each new one with its id (strictly increasing, greater than every id
    /// committed before), `recorded_at` and checksum; a repeat (a log whose idempotency
    /// key is stored with the same content, or a finish of a run that ended the same way,
    /// see [`crate::run`]) as stored the first time, marked in [`Committed::repeats`].
    ///
    /// Errors, after which nothing of the batch is written: [`Error::InvalidInput`] when a
    /// log breaks a rule of runs (an unknown run, a second start, another job);
    /// [`Error::IdempotencyConflict`] and [`Error::RunFinished`] (see [`crate::run`]);
    /// [`Error::Unsupported`] for a durability level the engine cannot give;
    /// [`Error::Busy`]/[`Error::Locked`] (retryable) when the storage stayed busy; I/O and
    /// engine errors otherwise.
    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed>;

    /// The record with `id`, or `None`. Reflects every commit acknowledged before the call.
    async fn get(&self, id: LogId) -> Result<Option<LogRecord>>;

    /// Records matching `scan`, in id order (descending if asked), at most its limit.
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>>;

    /// The largest id stored, or `None` when the store is empty.
    async fn last_id(&self) -> Result<Option<LogId>>;

    /// The largest id this store handed out or took, stored or not, as far as its mark
    /// tells: a record deleted or cut off behind the store's back leaves its id here. A
    /// caller that assigns ids itself (the guarded pair) starts above it, so that no id is
    /// handed out twice. At least [`last_id`](Self::last_id). An engine that saves its mark
    /// lazily (SQLite, kv) may lag after a crash by the ids of its last commits. The
    /// default, for engines that keep no mark, is `last_id`; an engine with one overrides
    /// it, and a wrapper forwards it.
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.last_id().await
    }

    /// Ids and stored checksums of up to `limit` records after `after`, in id order: the
    /// cheap listing reconciliation compares. The default reads whole records through
    /// [`scan`](Self::scan); engines that can list without decoding should override it.
    async fn id_checksums(&self, after: Option<LogId>, limit: usize) -> Result<Vec<(LogId, Checksum)>> {
        let scan = Scan {
            after,
            limit,
            ..Scan::default()
        };
        Ok(self
            .scan(&scan)
            .await?
            .into_iter()
            .map(|r| (r.id, r.checksum))
            .collect())
    }

    /// The record stored under idempotency key `key`, if any. The default reads every
    /// record; engines with an index override it.
    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let mut found = None;
        self.for_each_page(crate::run::SCAN_PAGE, &mut |page| {
            if found.is_none() {
                found = page
                    .into_iter()
                    .find(|r| r.idempotency_key.as_deref() == Some(key));
            }
            Ok(())
        })
        .await?;
        Ok(found)
    }

    /// The records stored under each of `keys` (those that are stored), in one call: how a
    /// guarded store looks up a whole group. Each stored record comes once, however often
    /// its key is listed, in no particular order. The default asks
    /// [`find_idempotent`](Self::find_idempotent) for each distinct key; engines that can
    /// answer many keys at once override it.
    async fn find_idempotent_many(&self, keys: &[String]) -> Result<Vec<LogRecord>> {
        let mut asked = std::collections::HashSet::new();
        let mut found = Vec::new();
        for key in keys {
            if asked.insert(key.as_str()) {
                found.extend(self.find_idempotent(key).await?);
            }
        }
        Ok(found)
    }

    /// Every record of run `run`, in id order (empty for an unknown run). The default reads
    /// every record; engines with an index override it.
    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let mut records = Vec::new();
        self.for_each_page(crate::run::SCAN_PAGE, &mut |page| {
            records.extend(page.into_iter().filter(|r| r.run.as_deref() == Some(run)));
            Ok(())
        })
        .await?;
        Ok(records)
    }

    /// Runs matching `scan`, one row each, ordered and paged by their first record's id.
    /// The default reads every record ([`crate::run::runs_by_scanning`]); engines with an
    /// index override it and give the same answers.
    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        crate::run::runs_by_scanning(self, scan).await
    }

    /// How many records match `filter`. The default reads every record; engines with
    /// indexes override it and give the same answer.
    ///
    /// Errors: [`Error::InvalidInput`] for a filter [`Filter::validate`] refuses.
    async fn count(&self, filter: &Filter) -> Result<u64> {
        crate::query::count_by_scanning(self, filter).await
    }

    /// How many records match `filter`, for each status: "how did the last week go" in one
    /// call. Statuses no record matches are left out, so the values add up to
    /// [`count`](Self::count) of the same filter. The default reads every matching record
    /// once; engines with indexes override it and give the same answer.
    ///
    /// Errors: [`Error::InvalidInput`] for a filter [`Filter::validate`] refuses.
    async fn count_by_status(&self, filter: &Filter) -> Result<StatusCounts> {
        crate::query::count_by_status_by_scanning(self, filter).await
    }

    /// What each job's records matching `filter` add up to (see
    /// [`crate::query::JobSummary`]). The default reads every record; engines with
    /// indexes override it and give the same answer.
    ///
    /// Errors: [`Error::InvalidInput`] for a filter [`Filter::validate`] refuses.
    async fn summary(&self, filter: &Filter) -> Result<Summary> {
        crate::query::summary_by_scanning(self, filter).await
    }

    /// The largest id through which every committed record is readable now: a
    /// [`crate::follow::Follower`] reads up to it and then goes on after it, so a record
    /// at or below it that became readable only later would be missed. The default is
    /// [`last_id`](Self::last_id), right for engines whose commits become readable in id
    /// order (one writer at a time); a store that writes to several places overrides it.
    async fn readable_through(&self) -> Result<Option<LogId>> {
        self.last_id().await
    }

    /// A watch of this store's commits, for a [`crate::follow::Follower`]: engines that
    /// hear of commits (their own at once, with the records; other processes' by the
    /// engine's own means) return one from their [`crate::follow::CommitSignal`]. The
    /// default wakes every [`crate::follow::POLL`] and has the follower read the store.
    async fn commit_watch(&self) -> Result<crate::follow::CommitWatch> {
        Ok(crate::follow::CommitWatch::polling(crate::follow::POLL))
    }

    /// The durability hook: when this returns `Ok`, everything acknowledged so far survives
    /// what `level` names, whatever level it was committed at.
    async fn sync(&self, level: Durability) -> Result<()>;

    /// A write-ahead-log checkpoint. A checkpoint that could not finish is reported with
    /// `busy = true`, never as success. Engines without one return [`Error::Unsupported`].
    async fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointReport> {
        let _ = mode;
        Err(Error::Unsupported {
            engine: self.capabilities().engine,
            what: "checkpoints".into(),
        })
    }

    /// The verification hook: reads every record through a path independent of the writer
    /// (a separate connection or file handle), recomputes each checksum, and reports
    /// missing, corrupt and out-of-order ids. With `deep`, also the engine's own check.
    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport>;

    /// The restore hook: imports records keeping their ids and checksums, atomically, at
    /// `durability`. Callers use [`LogStoreExt::import`], which validates the records
    /// (field rules and checksums) and calls this.
    ///
    /// A record whose id a stored prune marker covers is skipped and counted in
    /// [`ImportReport::pruned`]: a pruned record never comes back.
    ///
    /// Idempotent: a record already stored and identical is counted as already present.
    /// A different record under the same id is reported as a conflict and the stored one
    /// is kept. After an import, ids assigned by [`commit_valid`](Self::commit_valid) are
    /// greater than every imported id.
    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport>;

    /// The repair hook: like [`import_valid`](Self::import_valid), except that a stored
    /// record that is **damaged** (its fields no longer give its stored checksum, or it
    /// cannot be decoded) is replaced by the offered record under its id. An intact stored
    /// record is never replaced: a different one is a conflict, as with an import. Engines
    /// that set damaged records aside when they read their storage (they are then absent)
    /// insert the offered record instead; either way, afterwards `get` returns the offered
    /// record. Callers use [`LogStoreExt::repair`], which checks every offered record is
    /// intact first.
    ///
    /// Engines that cannot replace a record return [`Error::Unsupported`] (the default).
    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        let _ = (records, durability);
        Err(Error::Unsupported {
            engine: self.capabilities().engine,
            what: "replacing damaged records (repair)".into(),
        })
    }

    /// The prune markers stored (see [`crate::retention`]), oldest first. Engines that
    /// cannot prune have none.
    ///
    /// Errors: [`Error::Corrupt`] for a stored marker whose checksum does not match.
    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        Ok(Vec::new())
    }

    /// Stores `marker` and deletes every record whose id it covers, at `durability`; then
    /// gives the freed space back where the engine can. When this returns `Ok`, the marker
    /// survives what `durability` names, no covered record is readable, and no id up to the
    /// marker's last is ever assigned again.
    ///
    /// Crash safe and idempotent: at every moment each record is either present or
    /// covered by a stored marker, and applying a stored marker again deletes what an
    /// interrupted application left ([`Applied::already_marked`]). The caller chooses the
    /// ranges ([`crate::retention::prune`] plans them); the engine does not second-guess
    /// them.
    ///
    /// Errors: [`Error::Corrupt`] for a marker whose checksum does not match (nothing
    /// written); [`Error::Unsupported`] for engines that cannot delete (the default).
    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        let _ = (marker, durability);
        Err(Error::Unsupported {
            engine: self.capabilities().engine,
            what: "pruning".into(),
        })
    }

    /// The bytes the store occupies (its files, or its tables and indexes), if the engine
    /// can tell: what a prune reports before and after.
    async fn storage_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Flushes and releases the storage. Later calls fail with [`Error::Closed`].
    async fn close(&self) -> Result<()>;
}

/// Conveniences for every [`LogStore`]; implemented for all of them, not overridable.
#[async_trait]
pub trait LogStoreExt: LogStore {
    /// Validates `batch` ([`ValidBatch::new`]) and commits it with
    /// [`LogStore::commit_valid`]: all of it or none of it, the records in batch order,
    /// repeats marked.
    ///
    /// The input is checked before the store is asked anything: bad input is refused as
    /// such even by a closed or read-only store, or at a durability it cannot give (the
    /// same for [`import`](Self::import) and [`repair`](Self::repair)).
    ///
    /// Errors: [`Error::InvalidInput`] naming the first bad log's position and field
    /// (nothing written, no id spent), then whatever
    /// [`commit_valid`](LogStore::commit_valid) says.
    async fn commit_report(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Committed> {
        self.commit_valid(ValidBatch::new(batch)?, durability).await
    }

    /// [`commit_report`](Self::commit_report) without the repeat marks: the records in
    /// batch order.
    async fn commit(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Vec<LogRecord>> {
        Ok(self.commit_report(batch, durability).await?.records)
    }

    /// Validates `records` ([`ValidRecords::new`]) and imports them with
    /// [`LogStore::import_valid`], keeping their ids and checksums.
    ///
    /// Errors: [`Error::Corrupt`] for an offered record whose checksum does not match,
    /// [`Error::InvalidInput`] for one that breaks a field rule; nothing is written then.
    async fn import(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.import_valid(ValidRecords::new(records)?, durability).await
    }

    /// Validates `records` and repairs with them ([`LogStore::repair_valid`]): a damaged
    /// stored record is replaced by the offered one under its id.
    ///
    /// Errors: every offered record must be intact ([`Error::Corrupt`] otherwise, nothing
    /// written); [`Error::Unsupported`] for engines that cannot replace a record.
    async fn repair(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.repair_valid(ValidRecords::new(records)?, durability).await
    }

    /// Appends one log at power-loss durability.
    async fn append(&self, log: NewLog) -> Result<LogRecord> {
        self.append_with(log, Durability::PowerLoss).await
    }

    /// Appends one log at `durability`.
    async fn append_with(&self, log: NewLog, durability: Durability) -> Result<LogRecord> {
        Ok(self.append_report(log, durability).await?.record)
    }

    /// Appends one log at `durability` and says whether it was a repeat (see
    /// [`crate::run`]): stored before under its idempotency key, or a run's finish stored
    /// before.
    async fn append_report(&self, log: NewLog, durability: Durability) -> Result<Appended> {
        let mut done = self.commit_report(vec![log], durability).await?;
        match (done.records.pop(), done.repeats.pop()) {
            (Some(record), Some(repeat)) => Ok(Appended { record, repeat }),
            _ => Err(Error::Backend {
                engine: self.capabilities().engine,
                context: "commit of one log returned no record".into(),
                source: "empty result".into(),
            }),
        }
    }

    /// Starts a run at `durability`: appends `log` (status `started`; its `run` is set to a new key when
    /// it has none) and returns its record, whose `run` is the run key.
    ///
    /// Errors: [`Error::InvalidInput`] naming `status` for another status (nothing is
    /// written), or naming `run` when the run has already started.
    async fn start_run(&self, mut log: NewLog, durability: Durability) -> Result<Appended> {
        if log.status != Status::Started {
            return Err(Error::invalid(
                "status",
                format!("a run starts with status started, not {}", log.status),
            ));
        }
        if log.run.is_none() {
            log.run = Some(crate::run::new_run_key());
        }
        self.append_report(log, durability).await
    }

    /// Ends run `run` at `durability` with `log`'s status (a terminal one), counters, message and
    /// attributes; its job and start time are the run's. Idempotent: a finish the run has
    /// already stored the same way returns that record as a repeat.
    ///
    /// Errors: [`Error::InvalidInput`] naming `status` for a status that does not end a run
    /// or naming `run` for an unknown run; [`Error::RunFinished`] when it ended otherwise.
    async fn finish_run(&self, run: &str, log: NewLog, durability: Durability) -> Result<Appended> {
        let log = self.finish_log(run, log).await?;
        self.append_report(log, durability).await
    }

    /// The terminal record [`finish_run`](Self::finish_run) appends, without appending it:
    /// `log` in run `run`, with the run's job and start time, finished now unless it says
    /// when. For callers that append it their own way (the CLI, for the guarded receipt).
    ///
    /// Errors: [`Error::InvalidInput`] naming `status` for a status that does not end a run,
    /// naming `run` for a bad or unknown run key.
    async fn finish_log(&self, run: &str, mut log: NewLog) -> Result<NewLog> {
        if !log.status.is_terminal() {
            return Err(Error::invalid(
                "status",
                format!(
                    "{} does not end a run (succeeded, failed, partial, skipped, abandoned do)",
                    log.status
                ),
            ));
        }
        crate::validate::validate_keys(Some(run), None, log.status)?;
        let records = self.run_records(run).await?;
        let Some(first) = records.first() else {
            return Err(Error::invalid(
                "run",
                format!("run {run:?} is not known: a run starts with a started log; nothing was written"),
            ));
        };
        log.job = first.job.clone();
        log.started_at = first.started_at;
        if log.finished_at.is_none() {
            log.finished_at = Some(chrono::Utc::now().max(first.started_at));
        }
        log.run = Some(run.to_string());
        log.validate()?;
        Ok(log)
    }

    /// The run `run`, derived from its records, or `None` when it has none.
    async fn run(&self, run: &str) -> Result<Option<Run>> {
        Ok(Run::from_records(run, &self.run_records(run).await?))
    }

    /// Waits until a record newer than `seen` is readable (committed by this process or,
    /// where the engine can tell, another one), or until `timeout` passes. Returns at once
    /// when one already is.
    async fn wait_for_commit(&self, seen: Option<LogId>, timeout: std::time::Duration) -> Result<()> {
        let end = tokio::time::Instant::now() + timeout;
        let mut watch = self.commit_watch().await?;
        loop {
            // What the watch saw is marked seen before the look, so a commit after the
            // look wakes the wait below.
            let _ = watch.take();
            if self.readable_through().await? > seen {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            let _ = watch.changed(end - now).await;
        }
    }

    /// The record with `id`, or [`Error::NotFound`].
    async fn get_required(&self, id: LogId) -> Result<LogRecord> {
        self.get(id).await?.ok_or(Error::NotFound { id })
    }

    /// Every record, in id order, read page by page and handed to `each` one page at a time.
    async fn for_each_page(
        &self,
        page_size: usize,
        each: &mut (dyn FnMut(Vec<LogRecord>) -> Result<()> + Send),
    ) -> Result<()> {
        self.for_each_match(&Filter::default(), page_size, each).await
    }

    /// Every record matching `filter`, in id order, read page by page through
    /// [`scan`](LogStore::scan) and handed to `each` one page at a time.
    async fn for_each_match(
        &self,
        filter: &Filter,
        page_size: usize,
        each: &mut (dyn FnMut(Vec<LogRecord>) -> Result<()> + Send),
    ) -> Result<()> {
        let mut scan = Scan::filtered(filter.clone(), page_size);
        loop {
            let page = self.scan(&scan).await?;
            let Some(last) = page.last() else { return Ok(()) };
            scan.after = Some(last.id);
            let full = page.len() == scan.effective_limit()?;
            each(page)?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Copies every record into `target`, keeping ids, in pages of `page_size`.
    /// Idempotent; conflicts are reported, never overwritten. A record that reads back
    /// damaged (its fields no longer give its checksum) is not copied: its id is listed in
    /// [`ImportReport::damaged`], and every intact record is still copied.
    ///
    /// When it returns `Ok`, every copied record is durable in `target` at `durability`.
    /// Pages are imported at the strongest level the target offers up to
    /// [`Durability::Process`] (or at `durability` if it offers none), and `durability`
    /// is reached by one [`sync`](LogStore::sync) at the end. A copy cut short leaves
    /// whatever pages the target kept; running it again completes it.
    async fn copy_to(
        &self,
        target: &dyn LogStore,
        page_size: usize,
        durability: Durability,
    ) -> Result<ImportReport> {
        self.copy_to_with(target, page_size, durability, &mut |_| {})
            .await
    }

    /// [`copy_to`](Self::copy_to), calling `progress` with each page's report (imported,
    /// not yet synced). Reading the next page overlaps with importing the current one.
    async fn copy_to_with(
        &self,
        target: &dyn LogStore,
        page_size: usize,
        durability: Durability,
        progress: &mut (dyn for<'r> FnMut(&'r ImportReport) + Send),
    ) -> Result<ImportReport> {
        // One sync at the end instead of one per page (200 for a million records).
        let per_page = target
            .capabilities()
            .durability
            .into_iter()
            .filter(|&d| d <= durability.min(Durability::Process))
            .max()
            .unwrap_or(durability);
        let mut report = ImportReport::default();
        let mut scan = Scan::all(page_size);
        let limit = scan.effective_limit()?;
        let mut page = self.scan(&scan).await?;
        while let Some(last) = page.last() {
            scan.after = Some(last.id);
            let full = page.len() == limit;
            if page.iter().any(|r| !r.is_intact()) {
                let (intact, damaged): (Vec<_>, Vec<_>) = page.into_iter().partition(LogRecord::is_intact);
                report.damaged.extend(damaged.iter().map(|r| r.id));
                page = intact;
            }
            let (imported, next) = if full {
                let (i, n) = tokio::join!(target.import(page, per_page), self.scan(&scan));
                (i?, n?)
            } else {
                (target.import(page, per_page).await?, Vec::new())
            };
            progress(&imported);
            report.merge(imported);
            page = next;
        }
        target.sync(durability).await?;
        Ok(report)
    }
}

impl<T: LogStore + ?Sized> LogStoreExt for T {}

/// A shared store handle, as apps hold it.
pub type SharedStore = Arc<dyn LogStore>;
