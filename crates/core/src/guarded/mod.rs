//! The guarded store: a primary and a backup, verified, restoring each other.
//!
//! [`Guarded`] assigns ids itself (above every id in either copy), seals each group of
//! concurrent appends once, and imports the sealed records into the primary and the backup
//! at the same time, so both copies hold the same record under the same id. An append is
//! acknowledged only when it is durable in at least one copy **and** has been read back,
//! with matching checksums, through that copy's independent read path; the [`Receipt`]
//! says which copies hold it.
//!
//! When the primary fails, the records stay in the backup and are restored into the
//! primary at once (engines reopen their connection after an error), again before every
//! later group, and at every [`Guarded::reconcile`]. The same holds the other way round.
//! Reconcile runs at open and on demand, in both directions; a conflict (one id, two
//! different records) is reported and never overwritten.
//!
//! A damaged copy never stops the pair: a read that meets a record whose fields no longer
//! match its checksum serves the other copy's intact record (and says so, as a warning); a
//! copy that cannot be opened is stood in for by [`Unavailable`] and the pair goes on with
//! the other one; a copy that cannot be read or repaired is reported by
//! [`Guarded::reconcile`] and `verify`, not turned into an error. [`Guarded::check`] also
//! recomputes every checksum in both copies and, repairing, replaces a damaged record by
//! the other copy's intact one (never the reverse, and never when both are damaged).
//!
//! One guard per pair at a time: appending to the primary outside the guard while it is
//! open makes ids collide; such a group fails with [`Error::Conflict`] and the guard moves
//! its ids past the intruder's.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::canonical::Checksum;
use crate::error::{Error, Result};
use crate::group::Gathering;
use crate::query::{Filter, Summary};
use crate::record::{intersect_ranges, LogId, LogRecord, NewLog};
use crate::retention::{spawn_auto_retention, Applied, AutoRetain, AutoRetention, PruneMarker, Pruned};
use crate::run::{seal_batch, Committed, Fetched, Planner, Run, RunEnds, RunScan, Wanted};
use crate::store::{
    Capabilities, CheckpointMode, CheckpointReport, Durability, ImportReport, LogStore, Scan, VerifyOptions,
    VerifyReport,
};
use crate::validate::{validate_batch, validate_records};

mod check;
mod pairlock;
mod unavailable;
mod watermark;

pub use pairlock::presence_path;
pub use unavailable::Unavailable;

/// Tuning of a [`Guarded`] store.
#[derive(Debug, Clone)]
pub struct GuardedOptions {
    /// Read every acknowledged group back through an independent path (on by default).
    pub verify: bool,
    /// Most logs sealed in one group.
    pub max_group_logs: usize,
    /// Page size of reconciliation listings and copies.
    pub reconcile_page: usize,
    /// Reconcile (repairing) when opening. Off only to inspect the copies as they are.
    pub reconcile_at_open: bool,
    /// A reader's guard over two read-only copies: nothing is reconciled at open (whatever
    /// `reconcile_at_open` says), differences are reported by `verify`, `reconcile(false)`
    /// and `check(false)`, never repaired, and every write (`append_batch`, `commit`,
    /// `import`, `repair`, `sync`, `checkpoint`, a repairing `reconcile` or `check`) fails
    /// with [`Error::Unsupported`] before anything is written. Off by default.
    pub read_only: bool,
    /// With `read_only`: a writer has this pair open now (the caller found its lock held),
    /// so a group may be in one copy and not yet in the other. A read-only comparison
    /// covers the ids up to the copies' ends at open: the larger end (ids above it are
    /// newer than the reader), or with `writer_beside` the smaller one (a group being
    /// written at open is above it). An id above that end held by one copy only is
    /// reported in [`ReconcileReport::in_flight`], not as missing. Off by default.
    pub writer_beside: bool,
    /// Most records queued in memory for a copy that failed to take them. Past it (a copy
    /// that stays down in a long-running process) the queue is dropped: the records are
    /// in the other copy, reads consult both copies, and the next open or `check --repair`
    /// copies them over.
    pub max_pending: usize,
    /// A file where the guard keeps the id up to which both copies were last found equal
    /// (see [`ReconcileReport::compared_after`]). With it, the reconcile at
    /// open compares the copies' ends and every id from the lower of that watermark and
    /// the copies' ends on: a copy rolled back to an older file, or one that missed groups
    /// before a crash, is repaired as before, in time that does not grow with the history.
    /// Damage below the watermark that leaves both ends alone (records deleted from the
    /// middle of a copy behind the store's back) is found by [`Guarded::check`] and
    /// repaired by `check(true)`, which compare every record. A missing, damaged or
    /// another pair's watermark is ignored (the open compares every record) and rewritten.
    /// `None` (the default here; `synclog::open_guarded` puts one beside the primary or
    /// backup file): every open compares every record. Not used by read-only guards.
    pub watermark: Option<std::path::PathBuf>,
    /// A file the guard locks around everything it writes (each group: assigning ids,
    /// writing both copies, reading back; imports, repairs and comparisons), so guards in
    /// several processes can share one pair: ids stay unique, dense and in commit order
    /// across them. It also carries the next id between them. `None` (the default here;
    /// `synclog::open_guarded` puts `<watermark>.lock` beside the watermark): one guard
    /// per pair at a time, which the copies' own locks may or may not enforce.
    pub lock: Option<std::path::PathBuf>,
    /// How long a guard waits for [`lock`](Self::lock) before the write fails with
    /// [`Error::Locked`] (10 s by default).
    pub lock_wait: std::time::Duration,
    /// Automatic retention: the policy run at most once per interval while the pair is
    /// open for writing (see [`crate::retention::AutoRetain`]); `synclog::open_guarded`
    /// also takes it from the primary URL's `retain=AGE`, `retain_keep=N`, `retain_every=D`.
    /// `None` (the default): nothing is pruned unless asked.
    pub retain: Option<AutoRetain>,
}

impl Default for GuardedOptions {
    fn default() -> Self {
        GuardedOptions {
            verify: true,
            max_group_logs: 8192,
            reconcile_page: 10_000,
            reconcile_at_open: true,
            read_only: false,
            writer_beside: false,
            max_pending: 100_000,
            watermark: None,
            lock: None,
            lock_wait: std::time::Duration::from_secs(10),
            retain: None,
        }
    }
}

/// Which copies hold a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Copies {
    /// The primary holds it.
    pub primary: bool,
    /// The backup holds it.
    pub backup: bool,
}

/// What [`Guarded::append_batch`] acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The records, with their ids (a repeat as stored the first time).
    pub records: Vec<LogRecord>,
    /// `repeats[i]`: `records[i]` was stored before (an idempotency key or a run's finish
    /// seen again, see [`crate::run`]); nothing was written for it.
    pub repeats: Vec<bool>,
    /// Where they are durable at the requested level (at least one copy).
    pub durable_in: Copies,
    /// Whether they were read back through an independent path before the acknowledgement.
    pub verified: bool,
}

/// One id holding different records in the two copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyConflict {
    /// The id.
    pub id: LogId,
    /// The primary's checksum.
    pub primary: Checksum,
    /// The backup's checksum.
    pub backup: Checksum,
}

/// What a reconciliation found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ReconcileReport {
    /// Ids present in both copies with the same checksum.
    pub in_both: u64,
    /// Ids the primary lacked (restored from the backup unless this was a dry run).
    pub missing_in_primary: Vec<LogId>,
    /// Ids the backup lacked (copied to it unless this was a dry run).
    pub missing_in_backup: Vec<LogId>,
    /// Records written into the primary.
    pub restored_to_primary: u64,
    /// Records written into the backup.
    pub copied_to_backup: u64,
    /// Ids holding different records in the two copies; neither was overwritten.
    pub conflicts: Vec<CopyConflict>,
    /// Ids whose primary record is damaged (its fields do not give its stored checksum,
    /// or it cannot be decoded) while the backup's is intact. Found by [`Guarded::check`]
    /// only: it recomputes every checksum.
    pub damaged_in_primary: Vec<LogId>,
    /// Ids whose backup record is damaged while the primary's is intact (`check` only).
    pub damaged_in_backup: Vec<LogId>,
    /// Ids damaged (or missing) in both copies: nothing intact is left to repair them from.
    pub damaged_in_both: Vec<LogId>,
    /// Damaged primary records replaced by the backup's intact ones.
    pub repaired_in_primary: u64,
    /// Damaged backup records replaced by the primary's intact ones.
    pub repaired_in_backup: u64,
    /// Copies that could not be listed or verified, or whose engine check found damage, and
    /// why: the comparison is incomplete, and `check --repair` rebuilds such a copy.
    pub unreadable: Vec<CopyProblem>,
    /// Other problems a copy's verification found that leave its records readable and
    /// intact, but its storage not clean (a record stored twice, an unreadable line whose
    /// record is intact elsewhere, damaged bytes an engine set aside and kept). `check`
    /// only; `verify` reports the same. For a JSON-lines copy, `synclog compact` cleans them.
    pub problems: Vec<CopyProblem>,
    /// Repairs that failed (a full disk, a failing copy), and why; the next open or
    /// `check --repair` tries again. Nothing acknowledged is lost: the other copy holds it.
    pub repair_failures: Vec<String>,
    /// Read-only comparisons: ids above what the comparison covers (see
    /// [`GuardedOptions::writer_beside`]) held by one copy only: groups written since the
    /// reader opened, or being written then; not counted as problems. Empty otherwise.
    pub in_flight: Vec<LogId>,
    /// The comparison covered only the ids above this one: a reconcile at open that
    /// trusted the pair's watermark ([`GuardedOptions::watermark`]). `None`: every id was
    /// compared. `in_both` counts the compared ids only.
    pub compared_after: Option<LogId>,
    /// Why the watermark was not used, or could not be saved, if that happened.
    pub watermark_note: Option<String>,
    /// Prune markers one copy held and the other lacked (a prune interrupted between the
    /// copies): applied to the copy that lacked them when repairing, so the records they
    /// cover are pruned there too (never restored).
    pub prunes_missing: Vec<CopyProblem>,
    /// How many of `prunes_missing` were applied.
    pub prunes_applied: u64,
}

impl ReconcileReport {
    /// Both copies hold the same, intact records (after the repairs made, if any).
    pub fn in_sync(&self) -> bool {
        self.missing_in_primary.len() as u64 == self.restored_to_primary
            && self.missing_in_backup.len() as u64 == self.copied_to_backup
            && self.conflicts.is_empty()
            && self.damaged_in_primary.len() as u64 == self.repaired_in_primary
            && self.damaged_in_backup.len() as u64 == self.repaired_in_backup
            && self.damaged_in_both.is_empty()
            && self.unreadable.is_empty()
            && self.problems.is_empty()
            && self.repair_failures.is_empty()
            && self.prunes_missing.len() as u64 == self.prunes_applied
    }

    /// Whether anything differs, is damaged or could not be read (repaired or not).
    pub fn found_problems(&self) -> bool {
        !(self.missing_in_primary.is_empty()
            && self.missing_in_backup.is_empty()
            && self.conflicts.is_empty()
            && self.damaged_in_primary.is_empty()
            && self.damaged_in_backup.is_empty()
            && self.damaged_in_both.is_empty()
            && self.unreadable.is_empty()
            && self.problems.is_empty()
            && self.repair_failures.is_empty()
            && self.prunes_missing.is_empty())
    }
}

/// Counters of a guarded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct GuardStats {
    /// Groups acknowledged.
    pub groups: u64,
    /// Logs acknowledged.
    pub logs: u64,
    /// Groups the primary failed to take.
    pub primary_failures: u64,
    /// Groups the backup failed to take.
    pub backup_failures: u64,
    /// Records restored into the primary after it failed.
    pub restored_to_primary: u64,
    /// Records copied into the backup after it failed.
    pub copied_to_backup: u64,
    /// Records waiting for the primary now.
    pub pending_primary: u64,
    /// Records waiting for the backup now.
    pub pending_backup: u64,
    /// Reads that met a damaged record in one copy and served the other copy's intact one.
    pub damaged_served: u64,
}

#[derive(Default)]
struct Counters {
    /// Tells this process's followers of every group acknowledged through this guard.
    signal: crate::follow::CommitSignal,
    groups: AtomicU64,
    logs: AtomicU64,
    primary_failures: AtomicU64,
    backup_failures: AtomicU64,
    restored: AtomicU64,
    copied: AtomicU64,
    pending_primary: AtomicU64,
    pending_backup: AtomicU64,
    damaged_served: AtomicU64,
    /// The copies may differ beyond the pending queues (a repair failed, a copy could not
    /// be listed): reads then consult both.
    diverged: AtomicBool,
    closed: AtomicBool,
    /// Commit requests submitted so far (each request's `seq` is its number).
    submitted: AtomicU64,
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Request {
    Commit {
        logs: Vec<NewLog>,
        durability: Durability,
        seq: u64,
        reply: Reply<Receipt>,
    },
    Import {
        records: Vec<LogRecord>,
        durability: Durability,
        reply: Reply<ImportReport>,
    },
    Reconcile {
        repair: bool,
        deep: bool,
        reply: Reply<ReconcileReport>,
    },
    Repair {
        records: Vec<LogRecord>,
        durability: Durability,
        reply: Reply<ImportReport>,
    },
    /// Before a prune: records a copy still lacks are written to it, so that the prune
    /// meets both copies whole.
    FlushPending {
        durability: Durability,
        reply: Reply<()>,
    },
}

/// The guarded store. See the module docs.
pub struct Guarded {
    primary: Arc<dyn LogStore>,
    backup: Arc<dyn LogStore>,
    tx: mpsc::UnboundedSender<Request>,
    counters: Arc<Counters>,
    opened: ReconcileReport,
    /// [`GuardedOptions::read_only`].
    read_only: bool,
    /// What both copies offer, computed once: it does not change while they are open.
    caps: Capabilities,
    /// A writing guard's shared lock on the pair's presence file (see
    /// [`pairlock::presence_path`]), released at close.
    presence: std::sync::Mutex<Option<std::fs::File>>,
    /// The automatic retention task ([`GuardedOptions::retain`]), stopped at close.
    retention: std::sync::Mutex<Option<AutoRetention>>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("primary", &self.primary.describe())
            .field("backup", &self.backup.describe())
            .finish()
    }
}

impl Guarded {
    /// Guards `primary` with `backup`: reconciles them (restoring what either lacks) and
    /// starts the writer task. Must be called inside a tokio runtime.
    pub async fn open(
        primary: Arc<dyn LogStore>,
        backup: Arc<dyn LogStore>,
        options: GuardedOptions,
    ) -> Result<Guarded> {
        let counters = Arc::new(Counters::default());
        let retain = options.retain;
        let mut leader = Leader {
            primary: primary.clone(),
            backup: backup.clone(),
            next_id: 1,
            pending_primary: Vec::new(),
            pending_backup: Vec::new(),
            options,
            counters: counters.clone(),
            gathering: Gathering::default(),
            compared_up_to: None,
            watermark: None,
            trusted: None,
            pair_lock: None,
            held: None,
        };
        let read_only = leader.options.read_only;
        let options_lock = leader.options.lock.clone();
        if !read_only {
            leader.watermark = leader
                .options
                .watermark
                .clone()
                .map(|path| watermark::Watermark::new(path, primary.describe(), backup.describe()));
            if !leader.options.reconcile_at_open {
                // Otherwise the reconcile at open reads it (see `trusted_start`).
                leader.trusted = leader.watermark.as_ref().and_then(|m| m.read().ok());
            }
            leader.pair_lock = (leader.options.lock.clone())
                .map(|path| pairlock::PairLock::new(path, leader.options.lock_wait));
        }
        leader.hold().await?;
        let opened = if leader.options.reconcile_at_open && !read_only {
            leader.reconcile_at_open().await?
        } else {
            ReconcileReport::default()
        };
        leader.next_id = leader.stores_next_id().await;
        leader.release();
        if read_only {
            leader.compared_up_to = Some(leader.compared_up_to().await);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(leader.run(rx));
        let caps = joint_capabilities(&*primary, &*backup, options_lock.is_some() || read_only);
        let presence = match (&options_lock, read_only) {
            (Some(lock), false) => {
                // It may wait a moment for a reader's probe: off the async workers.
                let lock = lock.clone();
                tokio::task::spawn_blocking(move || pairlock::announce_presence(&lock))
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        let guarded = Guarded {
            primary,
            backup,
            tx,
            counters,
            opened,
            read_only,
            caps,
            presence: std::sync::Mutex::new(presence),
            retention: std::sync::Mutex::new(None),
        };
        if let (Some(auto), false) = (retain, read_only) {
            let handle: Arc<dyn LogStore> = Arc::new(guarded.handle());
            *guarded.retention.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(spawn_auto_retention(handle, auto));
        }
        Ok(guarded)
    }

    /// Another handle on the same pair and leader, for the retention task: it holds no
    /// presence lock and closes nothing (closing it only marks the pair closed, which the
    /// owner's close does anyway).
    fn handle(&self) -> Guarded {
        Guarded {
            primary: self.primary.clone(),
            backup: self.backup.clone(),
            tx: self.tx.clone(),
            counters: self.counters.clone(),
            opened: ReconcileReport::default(),
            read_only: self.read_only,
            caps: self.caps.clone(),
            presence: std::sync::Mutex::new(None),
            retention: std::sync::Mutex::new(None),
        }
    }

    /// What the reconciliation at open found and restored.
    pub fn open_report(&self) -> &ReconcileReport {
        &self.opened
    }

    /// The primary store.
    pub fn primary(&self) -> &Arc<dyn LogStore> {
        &self.primary
    }

    /// The backup store.
    pub fn backup(&self) -> &Arc<dyn LogStore> {
        &self.backup
    }

    /// Counters so far.
    pub fn stats(&self) -> GuardStats {
        let c = &self.counters;
        GuardStats {
            groups: c.groups.load(Ordering::Relaxed),
            logs: c.logs.load(Ordering::Relaxed),
            primary_failures: c.primary_failures.load(Ordering::Relaxed),
            backup_failures: c.backup_failures.load(Ordering::Relaxed),
            restored_to_primary: c.restored.load(Ordering::Relaxed),
            copied_to_backup: c.copied.load(Ordering::Relaxed),
            pending_primary: c.pending_primary.load(Ordering::Relaxed),
            pending_backup: c.pending_backup.load(Ordering::Relaxed),
            damaged_served: c.damaged_served.load(Ordering::Relaxed),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        if self.counters.closed.load(Ordering::Acquire) {
            return Err(self.closed());
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Counts and reports a read served from the other copy because `copy` held it damaged.
    fn served_intact(&self, rec: LogRecord, copy: &str) -> LogRecord {
        self.counters.damaged_served.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            id = rec.id.get(),
            copy,
            "a damaged record was read; served the other copy's intact one (`synclog check --repair` mends it)"
        );
        rec
    }

    /// Whether this guard was opened with [`GuardedOptions::read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Refuses a write (`what`) through a read-only guard.
    fn check_writable(&self, what: &str) -> Result<()> {
        if self.read_only {
            return Err(Error::read_only("guarded", &self.describe(), what));
        }
        Ok(())
    }

    fn closed(&self) -> Error {
        Error::Closed {
            store: self.describe(),
        }
    }

    /// Appends `batch` atomically; the receipt says where it is durable and whether it was
    /// read back. Fails only if neither copy took it (then nothing was acknowledged).
    pub async fn append_batch(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Receipt> {
        self.check_writable("append")?;
        validate_batch(&batch)?;
        if batch.is_empty() {
            return Ok(Receipt {
                records: Vec::new(),
                repeats: Vec::new(),
                durable_in: Copies {
                    primary: true,
                    backup: true,
                },
                verified: true,
            });
        }
        let seq = self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        self.ask(|reply| Request::Commit {
            logs: batch,
            durability,
            seq,
            reply,
        })
        .await
    }

    /// Compares the copies in both directions; with `repair`, restores what the primary
    /// lacks from the backup and copies what the backup lacks to it. Conflicts are reported.
    ///
    /// This compares the stored checksums only (cheap); [`check`](Self::check) also
    /// recomputes them. A copy that cannot be listed, and a repair that fails, are
    /// reported in the result, not returned as an error.
    pub async fn reconcile(&self, repair: bool) -> Result<ReconcileReport> {
        self.compare(repair, false, "a repairing reconcile").await
    }

    /// [`reconcile`](Self::reconcile), and every record of both copies read back with its
    /// checksum recomputed: a record damaged in one copy is listed, and with `repair`
    /// replaced by the other copy's intact record (never the reverse); one damaged in both
    /// is reported and left as it is.
    pub async fn check(&self, repair: bool) -> Result<ReconcileReport> {
        self.compare(repair, true, "check --repair").await
    }

    /// [`reconcile`](Self::reconcile) or, `deep`, [`check`](Self::check); a repairing one
    /// (`what`) is refused by a read-only guard.
    async fn compare(&self, repair: bool, deep: bool, what: &str) -> Result<ReconcileReport> {
        if repair {
            self.check_writable(what)?;
        }
        self.ask(|reply| Request::Reconcile { repair, deep, reply }).await
    }

    /// Refuses a level one of the copies cannot give.
    fn check_durability(&self, durability: Durability) -> Result<()> {
        if self.caps.durability.contains(&durability) {
            return Ok(());
        }
        Err(Error::Unsupported {
            engine: "guarded",
            what: format!("{durability:?} durability with these two copies"),
        })
    }

    /// Whether the copies may differ, so that reads must consult both.
    fn pending(&self) -> bool {
        self.counters.pending_primary.load(Ordering::Relaxed) > 0
            || self.counters.pending_backup.load(Ordering::Relaxed) > 0
            || self.counters.diverged.load(Ordering::Relaxed)
    }

    /// The copy to ask first for a lookup (the primary, unless it is missing records the
    /// backup holds), and the other.
    fn lookup_order(&self) -> (&dyn LogStore, &dyn LogStore) {
        if self.counters.pending_primary.load(Ordering::Relaxed) > 0 {
            (&*self.backup, &*self.primary)
        } else {
            (&*self.primary, &*self.backup)
        }
    }
}

/// See [`Guarded::readable_through`](LogStore::readable_through).
async fn readable_through(
    primary: &dyn LogStore,
    backup: &dyn LogStore,
    counters: &Counters,
) -> Result<Option<LogId>> {
    let pending = counters.pending_primary.load(Ordering::Relaxed) > 0
        || counters.pending_backup.load(Ordering::Relaxed) > 0
        || counters.diverged.load(Ordering::Relaxed);
    if !pending {
        if let Ok(id) = primary.last_id().await {
            return Ok(id);
        }
    }
    let (a, b) = tokio::join!(primary.last_id(), backup.last_id());
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(a.min(b)),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(e), Err(_)) => Err(e),
    }
}

/// The most times the leader yields to let answered callers come back before a group.
const MAX_GATHER_YIELDS: u32 = 64;

struct Leader {
    primary: Arc<dyn LogStore>,
    backup: Arc<dyn LogStore>,
    next_id: u64,
    pending_primary: Vec<LogRecord>,
    pending_backup: Vec<LogRecord>,
    options: GuardedOptions,
    counters: Arc<Counters>,
    gathering: Gathering,
    /// Read-only: the last id a comparison covers (see [`GuardedOptions::writer_beside`]),
    /// fixed at open; `None` when writable.
    compared_up_to: Option<u64>,
    /// The pair's watermark file ([`GuardedOptions::watermark`]); `None` for read-only guards.
    watermark: Option<watermark::Watermark>,
    /// What the watermark file says now, as far as this guard knows (read at open, then
    /// as written or lowered).
    trusted: Option<u64>,
    /// The pair's lock ([`GuardedOptions::lock`]); `None` for read-only guards.
    pair_lock: Option<pairlock::PairLock>,
    /// The pair's lock while this guard holds it (for one request).
    held: Option<pairlock::Held>,
}

/// Reads the `(id, checksum)` listing of a store page by page.
struct Listing<'a> {
    store: &'a dyn LogStore,
    buf: VecDeque<(LogId, Checksum)>,
    after: Option<LogId>,
    done: bool,
    page: usize,
}

impl<'a> Listing<'a> {
    fn new(store: &'a dyn LogStore, page: usize, after: Option<LogId>) -> Self {
        Listing {
            store,
            buf: VecDeque::new(),
            after,
            done: false,
            page,
        }
    }

    async fn peek(&mut self) -> Result<Option<(LogId, Checksum)>> {
        if self.buf.is_empty() && !self.done {
            let page = self.store.id_checksums(self.after, self.page).await?;
            self.done = page.len() < self.page;
            self.after = page.last().map(|p| p.0).or(self.after);
            self.buf.extend(page);
        }
        Ok(self.buf.front().copied())
    }

    fn pop(&mut self) {
        self.buf.pop_front();
    }
}

impl Leader {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut deferred: Option<Request> = None;
        loop {
            let req = match deferred.take() {
                Some(r) => r,
                None => match rx.recv().await {
                    Some(r) => r,
                    None => return,
                },
            };
            // With several processes on the pair, every request runs holding its lock; a
            // group gathers what arrives while another process holds it.
            let held = self.hold().await;
            match req {
                Request::Commit {
                    logs,
                    durability,
                    seq,
                    reply,
                } => {
                    // Gather as `synclog_core::group` does, yielding instead of a timed wait:
                    // while callers answered by the last group are still missing, let them run.
                    self.gathering.start(seq);
                    let mut group = vec![(logs, durability, reply)];
                    let mut total = group[0].0.len();
                    let mut yields = 0;
                    while total < self.options.max_group_logs {
                        match rx.try_recv() {
                            Ok(Request::Commit {
                                logs,
                                durability,
                                seq,
                                reply,
                            }) => {
                                self.gathering.join(seq);
                                total += logs.len();
                                group.push((logs, durability, reply));
                            }
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) if self.gathering.waiting_for_more() && yields < MAX_GATHER_YIELDS => {
                                yields += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(_) => break,
                        }
                    }
                    match held {
                        Ok(()) => self.commit_group(group).await,
                        // Everything gathered while waiting fails with it, not after a wait each.
                        Err(e) => fail_all(group, &e),
                    }
                }
                Request::Import {
                    records,
                    durability,
                    reply,
                } => {
                    let answer = match held {
                        Ok(()) => self.import(records, durability).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                Request::Reconcile { repair, deep, reply } => {
                    let answer = match held {
                        Ok(()) => self.reconcile(repair, deep).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                Request::Repair {
                    records,
                    durability,
                    reply,
                } => {
                    let answer = match held {
                        Ok(()) => self.repair(records, durability).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                Request::FlushPending { durability, reply } => {
                    let answer = match held {
                        Ok(()) => {
                            self.flush_pending(durability).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
            }
            self.release();
        }
    }

    /// Takes the pair's lock, if it has one, and moves the next id past what the other
    /// processes handed out (the lock file says, or else the copies do).
    async fn hold(&mut self) -> Result<()> {
        let Some(lock) = &self.pair_lock else {
            return Ok(());
        };
        let mut held = lock.take().await?;
        let state = held.state();
        self.held = Some(held);
        match state {
            Some(pairlock::State { next, writing: None }) => self.next_id = self.next_id.max(next),
            Some(pairlock::State {
                next,
                writing: Some((first, last)),
            }) => {
                // Never below what the file said was handed out before that group, nor
                // below any id of it a copy holds; when the copies cannot be listed, past
                // the whole group (a gap, never an id handed out twice).
                let floor = match self.finish_interrupted(first, last).await {
                    Some(Some(top)) => top + 1,
                    Some(None) => next,
                    None => last + 1,
                };
                self.next_id = self.stores_next_id().await.max(next).max(floor);
                self.announce(None);
            }
            None => self.next_id = self.stores_next_id().await,
        }
        Ok(())
    }

    /// The last holder of the pair's lock died while writing the group `first..=last`:
    /// each copy holds all of it or none (a group is atomic in every engine), so copy it
    /// to the copy that lacks it. If neither has it, its ids were never acknowledged and
    /// are handed out again. A copy that cannot take it now is left to the next open,
    /// whose comparison covers it (it is above the watermark). Returns the highest id of
    /// the group either copy holds (`Some(None)`: neither holds any), or `None` when the
    /// copies could not be listed.
    async fn finish_interrupted(&mut self, first: u64, last: u64) -> Option<Option<u64>> {
        let after = LogId::new(first - 1);
        let span = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
        let page = self.options.reconcile_page.max(1);
        let listed = |store: Arc<dyn LogStore>| async move {
            let mut ids = HashSet::new();
            let mut from = after;
            loop {
                let got = store.id_checksums(from, page.min(span)).await?;
                let done = got.len() < page.min(span);
                for (id, _) in &got {
                    if id.get() <= last {
                        ids.insert(*id);
                    }
                }
                match got.last() {
                    Some((id, _)) if !done && id.get() < last => from = Some(*id),
                    _ => return Ok::<_, Error>(ids),
                }
            }
        };
        let (p, b) = tokio::join!(listed(self.primary.clone()), listed(self.backup.clone()));
        let (Ok(p), Ok(b)) = (p, b) else {
            tracing::warn!(
                first,
                last,
                "a group cut off by a dead process could not be listed; the next open compares it"
            );
            return None;
        };
        let top = p.iter().chain(&b).map(|id| id.get()).max();
        let mut to_backup: Vec<LogId> = p.difference(&b).copied().collect();
        let mut to_primary: Vec<LogId> = b.difference(&p).copied().collect();
        to_backup.sort_unstable();
        to_primary.sort_unstable();
        for (src, dst, ids) in [
            (&self.primary, &self.backup, &to_backup),
            (&self.backup, &self.primary, &to_primary),
        ] {
            if ids.is_empty() {
                continue;
            }
            if let Err(e) = copy_ids(&**src, &**dst, ids, page).await {
                tracing::warn!(copy = %dst.describe(), error = %e, "a group cut off by a dead process could not be completed; the next open does it");
            }
        }
        tracing::info!(
            first,
            last,
            completed_in_backup = to_backup.len(),
            completed_in_primary = to_primary.len(),
            "finished a group a dead process had started"
        );
        Some(top)
    }

    /// Tells the other processes (through the lock file, while holding it) the next id
    /// and, while a group is being written, its ids: if this process dies before it ends,
    /// the next holder completes the group instead of handing its ids out again.
    fn announce(&mut self, writing: Option<(u64, u64)>) {
        let next = self.next_id;
        if let Some(held) = &mut self.held {
            held.set_state(pairlock::State { next, writing });
        }
    }

    /// Leaves the next id in the lock file for the other processes, and lets go.
    fn release(&mut self) {
        self.announce(None);
        self.held = None;
    }

    /// Above every id either copy holds (a copy that cannot say counts as empty) and
    /// every id this guard handed out.
    async fn stores_next_id(&self) -> u64 {
        let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        let p = p.ok().flatten().map_or(0, LogId::get);
        let b = b.ok().flatten().map_or(0, LogId::get);
        p.max(b).max(self.next_id.saturating_sub(1)) + 1
    }

    fn set_pending_counters(&mut self) {
        for (queue, copy) in [
            (&mut self.pending_primary, &self.primary),
            (&mut self.pending_backup, &self.backup),
        ] {
            if queue.len() > self.options.max_pending {
                tracing::warn!(
                    copy = %copy.describe(),
                    queued = queue.len(),
                    "a copy keeps failing; its queue is dropped (the other copy holds the records; the next open or `synclog check --repair` copies them)"
                );
                queue.clear();
                self.counters.diverged.store(true, Ordering::Relaxed);
            }
        }
        self.counters
            .pending_primary
            .store(self.pending_primary.len() as u64, Ordering::Relaxed);
        self.counters
            .pending_backup
            .store(self.pending_backup.len() as u64, Ordering::Relaxed);
    }

    /// Retries what a copy is missing. Records the other copy already holds differently
    /// are conflicts: reported by reconcile, dropped from the queue, never overwritten.
    async fn flush_pending(&mut self, durability: Durability) {
        if !self.pending_primary.is_empty() {
            let records = self.pending_primary.clone();
            if let Ok(report) = self.primary.import(records, durability).await {
                self.counters
                    .restored
                    .fetch_add(report.inserted, Ordering::Relaxed);
                self.pending_primary.clear();
            }
        }
        if !self.pending_backup.is_empty() {
            let records = self.pending_backup.clone();
            if let Ok(report) = self.backup.import(records, durability).await {
                self.counters.copied.fetch_add(report.inserted, Ordering::Relaxed);
                self.pending_backup.clear();
            }
        }
        self.set_pending_counters();
    }

    /// Reads `records` back from `store` and compares ids and checksums.
    async fn read_back(store: &dyn LogStore, records: &[LogRecord]) -> bool {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return true;
        };
        let scan = Scan {
            after: LogId::new(first.id.get() - 1),
            before: last.id.next(),
            limit: records.len(),
            ..Scan::default()
        };
        match store.scan(&scan).await {
            Ok(got) => {
                got.len() == records.len()
                    && got
                        .iter()
                        .zip(records)
                        .all(|(g, r)| g.id == r.id && g.checksum == r.checksum && g.is_intact())
            }
            Err(_) => false,
        }
    }

    /// Looks up every run and idempotency key of a group in both copies, and merges their
    /// answers (the lowest id of a key, the widest ends of a run): either copy may lack
    /// records the other holds (a group one of them missed, here or in another process),
    /// so asking one could store a key twice. Called holding the pair lock, after this
    /// process's queues were retried. A copy that cannot answer is left out (a warning):
    /// the pair goes on with the other, as it does for writes.
    async fn fetch_keys(&self, wanted: &Wanted) -> Result<Fetched> {
        let (p, b) = tokio::join!(
            Self::fetch_keys_from(&*self.primary, wanted),
            Self::fetch_keys_from(&*self.backup, wanted)
        );
        match (p, b) {
            (Ok(mut p), Ok(b)) => {
                for (key, rec) in b.idempotent {
                    match p.idempotent.get(&key) {
                        Some(have) if have.id <= rec.id => {}
                        _ => {
                            p.idempotent.insert(key, rec);
                        }
                    }
                }
                for (run, ends) in b.runs {
                    let merged = match p.runs.remove(&run) {
                        None => ends,
                        Some(have) => RunEnds {
                            first: if ends.first.id < have.first.id {
                                ends.first
                            } else {
                                have.first
                            },
                            last: if ends.last.id > have.last.id {
                                ends.last
                            } else {
                                have.last
                            },
                        },
                    };
                    p.runs.insert(run, merged);
                }
                Ok(p)
            }
            (Ok(one), Err(e)) | (Err(e), Ok(one)) => {
                tracing::warn!(error = %e, "a copy could not look up run and idempotency keys; the other copy answered alone");
                Ok(one)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    async fn fetch_keys_from(store: &dyn LogStore, wanted: &Wanted) -> Result<Fetched> {
        let mut fetched = Fetched::default();
        if !wanted.idempotent.is_empty() {
            for r in store.find_idempotent_many(&wanted.idempotent).await? {
                if let Some(key) = r.idempotency_key.clone() {
                    fetched.idempotent.entry(key).or_insert(r);
                }
            }
        }
        for run in &wanted.runs {
            if let Some(ends) = RunEnds::of(&store.run_records(run).await?) {
                fetched.runs.insert(run.clone(), ends);
            }
        }
        Ok(fetched)
    }

    async fn commit_group(&mut self, group: Vec<(Vec<NewLog>, Durability, Reply<Receipt>)>) {
        let durability = group.iter().map(|g| g.1).max().unwrap_or_default();
        self.flush_pending(durability).await;
        let now = Utc::now();
        let wanted = Planner::wanted(group.iter().map(|g| g.0.as_slice()));
        let mut keys = match wanted.is_empty() {
            true => Fetched::default(),
            false => match self.fetch_keys(&wanted).await {
                Ok(k) => k,
                Err(e) => return fail_all(group, &e),
            },
        };
        let mut planner = Planner::new();
        let mut sealed = Vec::new();
        let mut next = self.next_id;
        let mut outcomes = Vec::with_capacity(group.len());
        for (logs, _, _) in &group {
            let mut seal = |log: &NewLog| {
                let rec = LogRecord::seal_next("guarded", &mut next, now, log)?;
                sealed.push(rec.clone());
                Ok(rec)
            };
            match seal_batch(&mut planner, logs, &mut keys, &mut seal) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => return fail_all(group, &e),
            }
        }
        if let (Some(first), Some(last)) = (sealed.first(), sealed.last()) {
            self.announce(Some((first.id.get(), last.id.get())));
        }
        let stored = if sealed.is_empty() {
            // Only repeats (or refusals): nothing to write, but a repeat is answered at this
            // group's durability, which the record it repeats may not have had yet.
            self.sync_both(durability).await
        } else {
            self.store_both(&sealed, durability).await
        };
        self.gathering
            .answering(group.len(), self.counters.submitted.load(Ordering::Relaxed));
        match stored {
            Ok((durable_in, verified)) => {
                self.next_id = next;
                self.counters.signal.committed_records(&sealed);
                self.counters.groups.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .logs
                    .fetch_add(sealed.len() as u64, Ordering::Relaxed);
                for ((_, _, reply), outcome) in group.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome.map(|done| Receipt {
                        records: done.records,
                        repeats: done.repeats,
                        durable_in,
                        verified,
                    }));
                }
            }
            Err(e) => {
                // Move past any id either copy holds now, so the next group cannot collide.
                self.next_id = self.stores_next_id().await;
                fail_all(group, &e)
            }
        }
    }

    /// Brings both copies to `durability` (a group of repeats only): where they are.
    async fn sync_both(&mut self, durability: Durability) -> Result<(Copies, bool)> {
        let (p, b) = tokio::join!(self.primary.sync(durability), self.backup.sync(durability));
        match (p, b) {
            (Err(pe), Err(be)) => Err(Error::Backend {
                engine: "guarded",
                context: format!("neither copy could be synced (backup: {be})"),
                source: Box::new(pe),
            }),
            (p, b) => Ok((
                Copies {
                    primary: p.is_ok() && self.pending_primary.is_empty(),
                    backup: b.is_ok() && self.pending_backup.is_empty(),
                },
                true,
            )),
        }
    }

    /// Writes `sealed` to both copies at once, reads back, queues what a copy missed.
    async fn store_both(&mut self, sealed: &[LogRecord], durability: Durability) -> Result<(Copies, bool)> {
        let (p, b) = tokio::join!(
            self.primary.import(sealed.to_vec(), durability),
            self.backup.import(sealed.to_vec(), durability)
        );
        let conflict = |r: &Result<ImportReport>| match r {
            Ok(rep) => rep.conflicts.first().map(|c| c.id),
            Err(_) => None,
        };
        if let Some(id) = conflict(&p).or(conflict(&b)) {
            return Err(Error::Conflict {
                id,
                detail: "a copy already holds a different record under an id the guard assigned; \
                         was the store written outside the guard? the guard moved past it, retry"
                    .into(),
            });
        }
        // A copy that stayed busy or locked for the whole lock wait is not tried again at
        // once (that would wait as long again): its records are queued for the next group.
        let again = |r: &Result<ImportReport>| r.as_ref().err().is_none_or(|e| !e.is_retryable());
        let (again_primary, again_backup) = (again(&p), again(&b));
        let (mut in_primary, mut in_backup) = match (p, b) {
            (Err(pe), Err(be)) => {
                return Err(Error::Backend {
                    engine: "guarded",
                    context: format!("neither copy took the logs (backup: {be})"),
                    source: Box::new(pe),
                })
            }
            (p, b) => (p.is_ok(), b.is_ok()),
        };
        if !in_primary {
            self.counters.primary_failures.fetch_add(1, Ordering::Relaxed);
            // Restore at once: the primary's writer reopens its connection after an error.
            let retried = match again_primary {
                true => Some(self.primary.import(sealed.to_vec(), durability).await),
                false => None,
            };
            match retried {
                Some(Ok(rep)) if rep.conflicts.is_empty() => {
                    self.counters.restored.fetch_add(rep.inserted, Ordering::Relaxed);
                    in_primary = true;
                }
                _ => self.pending_primary.extend_from_slice(sealed),
            }
        }
        if !in_backup {
            self.counters.backup_failures.fetch_add(1, Ordering::Relaxed);
            let retried = match again_backup {
                true => Some(self.backup.import(sealed.to_vec(), durability).await),
                false => None,
            };
            match retried {
                Some(Ok(rep)) if rep.conflicts.is_empty() => {
                    self.counters.copied.fetch_add(rep.inserted, Ordering::Relaxed);
                    in_backup = true;
                }
                _ => self.pending_backup.extend_from_slice(sealed),
            }
        }
        self.set_pending_counters();
        self.lower_watermark(self.first_pending()).await;
        let mut verified = false;
        if self.options.verify {
            // One independent read is enough; the backup is read only if the primary's fails.
            // A copy that took the write but does not read it back intact is not counted as
            // holding it (its stored checksum still matches, so only verify and `check` can
            // see the damage).
            if in_primary && !Self::read_back(&*self.primary, sealed).await {
                in_primary = false;
                self.counters.primary_failures.fetch_add(1, Ordering::Relaxed);
            }
            verified = in_primary || (in_backup && Self::read_back(&*self.backup, sealed).await);
            if !verified {
                return Err(Error::corrupt(
                    format!("{} and {}", self.primary.describe(), self.backup.describe()),
                    "the logs were written but did not read back intact from either copy; nothing acknowledged",
                ));
            }
        }
        Ok((
            Copies {
                primary: in_primary,
                backup: in_backup,
            },
            verified,
        ))
    }

    async fn import(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.flush_pending(durability).await;
        let min = records.iter().map(|r| r.id.get()).min().unwrap_or(0);
        let max = records.iter().map(|r| r.id.get()).max().unwrap_or(0);
        if min > 0 {
            self.announce(Some((min, max)));
        }
        self.next_id = self.next_id.max(max + 1);
        let (p, b) = tokio::join!(
            self.primary.import(records.clone(), durability),
            self.backup.import(records.clone(), durability)
        );
        let report = match (p, b) {
            (Ok(p), Ok(b)) => {
                let mut report = p;
                let known: HashSet<LogId> = report.conflicts.iter().map(|c| c.id).collect();
                report
                    .conflicts
                    .extend(b.conflicts.into_iter().filter(|c| !known.contains(&c.id)));
                report
            }
            (Ok(p), Err(_)) => {
                self.counters.backup_failures.fetch_add(1, Ordering::Relaxed);
                let conflicted: HashSet<LogId> = p.conflicts.iter().map(|c| c.id).collect();
                self.pending_backup
                    .extend(records.into_iter().filter(|r| !conflicted.contains(&r.id)));
                p
            }
            (Err(_), Ok(b)) => {
                self.counters.primary_failures.fetch_add(1, Ordering::Relaxed);
                let conflicted: HashSet<LogId> = b.conflicts.iter().map(|c| c.id).collect();
                self.pending_primary
                    .extend(records.into_iter().filter(|r| !conflicted.contains(&r.id)));
                b
            }
            (Err(e), Err(_)) => return Err(e),
        };
        self.set_pending_counters();
        self.lower_watermark(self.first_pending()).await;
        Ok(report)
    }

    /// Merge-joins the two `(id, checksum)` listings; with `repair`, copies what each lacks.
    /// With `deep`, also recomputes every checksum of both copies (see `check.rs`).
    async fn reconcile(&mut self, repair: bool, deep: bool) -> Result<ReconcileReport> {
        self.reconcile_after(None, repair, deep).await
    }

    /// The reconcile at open: from what the watermark lets it trust, repairing.
    async fn reconcile_at_open(&mut self) -> Result<ReconcileReport> {
        let (after, note) = self.trusted_start().await;
        let mut report = self.reconcile_after(after, true, false).await?;
        if report.watermark_note.is_none() {
            report.watermark_note = note;
        }
        Ok(report)
    }

    /// Where the comparison at open can start: from the lowest of the watermark and the
    /// copies' ends, including the shorter copy's last record (its checksum is compared
    /// too). `None` (compare everything) without a usable watermark; the second value says
    /// why one was not used.
    async fn trusted_start(&mut self) -> (Option<LogId>, Option<String>) {
        let Some(mark) = &self.watermark else {
            return (None, None);
        };
        let up_to = match mark.read() {
            Ok(up_to) => up_to,
            Err(watermark::Unusable::Missing) => return (None, None),
            Err(watermark::Unusable::Rejected(why)) => {
                tracing::warn!(watermark = %mark.path().display(), %why, "the pair's watermark is not used; every record is compared");
                let note = format!(
                    "the watermark {} was not used ({why}); every record was compared",
                    mark.path().display()
                );
                return (None, Some(note));
            }
        };
        self.trusted = Some(up_to);
        let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        match (p, b) {
            (Ok(p), Ok(b)) => {
                let end = |id: Option<LogId>| id.map_or(0, LogId::get);
                let low = up_to.min(end(p)).min(end(b));
                (LogId::new(low.saturating_sub(1)), None)
            }
            // A copy that cannot say where it ends: compare everything (and report it).
            _ => (None, None),
        }
    }

    /// After a repairing comparison: saves how far the copies are now known to be equal.
    /// Ids a repair could not mend stay above it, so every open reports them again.
    async fn save_watermark(&mut self, report: &mut ReconcileReport) {
        let Some(mark) = &self.watermark else {
            return;
        };
        if !report.unreadable.is_empty() || !report.repair_failures.is_empty() {
            // The comparison is incomplete: the watermark keeps what it said.
            return;
        }
        let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        let (Ok(p), Ok(b)) = (p, b) else {
            return;
        };
        let end = |id: Option<LogId>| id.map_or(0, LogId::get);
        let unmended = report
            .conflicts
            .iter()
            .map(|c| c.id)
            .chain(report.damaged_in_both.iter().copied())
            .map(LogId::get)
            .min();
        let mut up_to = end(p).min(end(b));
        if let Some(id) = unmended {
            up_to = up_to.min(id - 1);
        }
        if self.trusted == Some(up_to) {
            return;
        }
        match mark.write(up_to).await {
            Ok(()) => self.trusted = Some(up_to),
            Err(e) => {
                tracing::warn!(watermark = %mark.path().display(), error = %e, "the pair's watermark could not be saved; the next open compares more records");
                report.watermark_note = Some(format!(
                    "the watermark {} could not be saved ({e}); the next open compares more records",
                    mark.path().display()
                ));
            }
        }
    }

    /// A copy missed records from id `first` on: the watermark must not say the copies are
    /// equal there, or a crash before the repair would hide the difference from the next
    /// open. Lowered below `first`; removed if that fails.
    async fn lower_watermark(&mut self, first: Option<u64>) {
        let (Some(mark), Some(first)) = (&self.watermark, first) else {
            return;
        };
        // Read again: a guard in another process may have moved it since this one looked
        // (each does so under the pair's lock, which this guard holds now).
        let Ok(trusted) = mark.read() else {
            return;
        };
        if first > trusted {
            return;
        }
        let lowered = first.saturating_sub(1);
        if mark.write(lowered).await.is_ok() {
            self.trusted = Some(lowered);
            return;
        }
        match mark.remove().await {
            Ok(()) => self.trusted = None,
            Err(e) => tracing::error!(
                watermark = %mark.path().display(),
                error = %e,
                "a copy missed records below the pair's watermark and the watermark could not be lowered or removed: remove it by hand, or run `synclog check --repair`"
            ),
        }
    }

    /// The lowest id waiting in either pending queue.
    fn first_pending(&self) -> Option<u64> {
        self.pending_primary
            .iter()
            .chain(&self.pending_backup)
            .map(|r| r.id.get())
            .min()
    }

    /// Compares the ids above `after` (all with `None`); see [`Leader::reconcile`].
    async fn reconcile_after(
        &mut self,
        after: Option<LogId>,
        repair: bool,
        deep: bool,
    ) -> Result<ReconcileReport> {
        if repair {
            self.flush_pending(Durability::PowerLoss).await;
        }
        let page = self.options.reconcile_page.max(1);
        let mut report = ReconcileReport {
            compared_after: after,
            ..ReconcileReport::default()
        };
        let common_end = self.compared_up_to;
        // Prunes first: a copy that missed one has it applied (or, without repair, the ids it
        // covers are left out of the comparison), so a pruned record is never restored.
        let pruned = self.sync_prunes(repair, &mut report).await;
        let (mut to_primary, mut to_backup) = match self.diff(page, after, &mut report).await {
            Ok(lists) => lists,
            Err((copy, e)) => {
                let store = if copy == Side::Primary {
                    &self.primary
                } else {
                    &self.backup
                };
                tracing::warn!(copy = %store.describe(), error = %e, "a copy could not be listed; the pair goes on with the other one");
                report.unreadable.push(CopyProblem {
                    copy,
                    detail: format!("{}: cannot be listed: {e}", store.describe()),
                });
                self.counters.diverged.store(true, Ordering::Relaxed);
                return Ok(report);
            }
        };
        if !pruned.is_empty() {
            to_primary.retain(|&id| !pruned.contains(id));
            to_backup.retain(|&id| !pruned.contains(id));
        }
        if let Some(end) = common_end {
            for list in [&mut to_primary, &mut to_backup] {
                let settled = list.partition_point(|id| id.get() <= end);
                report.in_flight.extend(list.drain(settled..));
            }
            report.in_flight.sort_unstable();
        }
        let mut damaged_sources = Vec::new();
        if repair {
            match copy_ids(&*self.backup, &*self.primary, &to_primary, page).await {
                Ok((n, skipped)) => {
                    report.restored_to_primary = n;
                    damaged_sources.extend(skipped);
                }
                Err(e) => report.repair_failures.push(format!(
                    "restoring {} logs into the primary {}: {e}",
                    to_primary.len(),
                    self.primary.describe()
                )),
            }
            match copy_ids(&*self.primary, &*self.backup, &to_backup, page).await {
                Ok((n, skipped)) => {
                    report.copied_to_backup = n;
                    damaged_sources.extend(skipped);
                }
                Err(e) => report.repair_failures.push(format!(
                    "copying {} logs into the backup {}: {e}",
                    to_backup.len(),
                    self.backup.describe()
                )),
            }
            self.counters
                .restored
                .fetch_add(report.restored_to_primary, Ordering::Relaxed);
            self.counters
                .copied
                .fetch_add(report.copied_to_backup, Ordering::Relaxed);
            self.pending_primary.clear();
            self.pending_backup.clear();
            self.set_pending_counters();
        }
        report.missing_in_primary = to_primary;
        report.missing_in_backup = to_backup;
        // A record one copy lacks and the other holds only damaged: nothing intact is left.
        report.damaged_in_both.extend(damaged_sources);
        if deep {
            self.check_damage(repair, &mut report).await;
        }
        for failure in &report.repair_failures {
            tracing::warn!(%failure, "a copy could not be repaired; the next open or `synclog check --repair` tries again");
        }
        // The copies differ beyond the queues until a repair has put them in step.
        let unrepaired =
            !repair && (!report.missing_in_primary.is_empty() || !report.missing_in_backup.is_empty());
        let diverged = !report.repair_failures.is_empty() || !report.unreadable.is_empty() || unrepaired;
        self.counters.diverged.store(diverged, Ordering::Relaxed);
        if repair {
            self.save_watermark(&mut report).await;
        }
        Ok(report)
    }

    /// What a read-only comparison covers, from the copies' ends at open: every id up to
    /// the larger end (ids above it were assigned after this reader opened: a writer gives
    /// new groups ids above both copies); beside a writer, only up to the smaller end (a
    /// group in flight at open is in one copy at most, above the other's end).
    async fn compared_up_to(&self) -> u64 {
        let (p, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        let end = |r: Result<Option<LogId>>| r.ok().flatten().map_or(0, LogId::get);
        let (p, b) = (end(p), end(b));
        if self.options.writer_beside {
            p.min(b)
        } else {
            p.max(b)
        }
    }

    /// The ids each copy lacks, from a merge-join of the two listings; conflicts and the
    /// count in both go into `report`. A listing that fails names its copy.
    async fn diff(
        &self,
        page: usize,
        after: Option<LogId>,
        report: &mut ReconcileReport,
    ) -> std::result::Result<(Vec<LogId>, Vec<LogId>), (Side, Error)> {
        let mut to_primary = Vec::new();
        let mut to_backup = Vec::new();
        let mut a = Listing::new(&*self.primary, page, after);
        let mut b = Listing::new(&*self.backup, page, after);
        loop {
            let pa = a.peek().await.map_err(|e| (Side::Primary, e))?;
            let pb = b.peek().await.map_err(|e| (Side::Backup, e))?;
            match (pa, pb) {
                (None, None) => break,
                (Some((id, _)), None) => {
                    to_backup.push(id);
                    a.pop();
                }
                (None, Some((id, _))) => {
                    to_primary.push(id);
                    b.pop();
                }
                (Some((ia, sa)), Some((ib, sb))) => {
                    if ia < ib {
                        to_backup.push(ia);
                        a.pop();
                    } else if ib < ia {
                        to_primary.push(ib);
                        b.pop();
                    } else {
                        if sa == sb {
                            report.in_both += 1;
                        } else {
                            report.conflicts.push(CopyConflict {
                                id: ia,
                                primary: sa,
                                backup: sb,
                            });
                        }
                        a.pop();
                        b.pop();
                    }
                }
            }
        }
        Ok((to_primary, to_backup))
    }

    /// Reads both copies' prune markers; a marker one copy lacks is applied to it when
    /// repairing, and reported either way. Returns every pruned id of either copy.
    async fn sync_prunes(&mut self, repair: bool, report: &mut ReconcileReport) -> Pruned {
        let (p, b) = tokio::join!(self.primary.prune_markers(), self.backup.prune_markers());
        let mut lists = Vec::new();
        for (side, got) in [(Side::Primary, p), (Side::Backup, b)] {
            match got {
                Ok(list) => lists.push((side, list)),
                Err(e) => report.unreadable.push(CopyProblem {
                    copy: side,
                    detail: format!("its prune markers cannot be read: {e}"),
                }),
            }
        }
        if let [(_, p), (_, b)] = lists.as_slice() {
            let level = self
                .primary
                .capabilities()
                .strongest_durability()
                .min(self.backup.capabilities().strongest_durability());
            for (lacking, has, other, store) in [
                (Side::Backup, p, b, &self.backup),
                (Side::Primary, b, p, &self.primary),
            ] {
                for m in has.iter().filter(|m| !other.iter().any(|o| o.digest == m.digest)) {
                    report.prunes_missing.push(CopyProblem {
                        copy: lacking,
                        detail: format!(
                            "lacked the prune marker {} ({}, {} logs)",
                            m.name(),
                            m.policy,
                            m.count
                        ),
                    });
                    if repair {
                        match store.apply_prune(m, level).await {
                            Ok(_) => report.prunes_applied += 1,
                            Err(e) => report.repair_failures.push(format!(
                                "applying the prune marker {} to the {} {}: {e}",
                                m.name(),
                                lacking.name(),
                                store.describe()
                            )),
                        }
                    }
                }
            }
        }
        let all: Vec<PruneMarker> = lists.into_iter().flat_map(|(_, list)| list).collect();
        Pruned::of(&all)
    }

    /// Repairs into both copies (see [`LogStore::repair`]); a copy that fails is queued.
    async fn repair(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        let first = records.iter().map(|r| r.id.get()).min();
        let (p, b) = tokio::join!(
            self.primary.repair(records.clone(), durability),
            self.backup.repair(records, durability)
        );
        match (p, b) {
            (Ok(mut p), Ok(b)) => {
                // Per id, the copy that had to change says what happened to it.
                p.replaced += b.replaced;
                p.inserted = p.inserted.max(b.inserted);
                p.already_present = p.already_present.min(b.already_present);
                let known: HashSet<LogId> = p.conflicts.iter().map(|c| c.id).collect();
                p.conflicts
                    .extend(b.conflicts.into_iter().filter(|c| !known.contains(&c.id)));
                Ok(p)
            }
            (Ok(r), Err(e)) | (Err(e), Ok(r)) => {
                tracing::warn!(error = %e, "one copy could not be repaired; `synclog check --repair` tries again");
                self.counters.diverged.store(true, Ordering::Relaxed);
                self.lower_watermark(first).await;
                Ok(r)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }
}

/// One copy of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The primary.
    Primary,
    /// The backup.
    Backup,
}

/// A problem of one copy, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyProblem {
    /// Which copy.
    pub copy: Side,
    /// What went wrong (the store and the error).
    pub detail: String,
}

impl Side {
    /// `primary` or `backup`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }
}

fn fail_all(group: Vec<(Vec<NewLog>, Durability, Reply<Receipt>)>, err: &Error) {
    for (_, _, reply) in group {
        let _ = reply.send(Err(err.replicate()));
    }
}

/// Copies the records with `ids` (sorted) from `src` to `dst`, a run of consecutive ids at
/// a time. Returns how many `dst` inserted, and the ids left out because `src` holds them
/// damaged (copying those would spread the damage; `dst` refuses them anyway).
async fn copy_ids(
    src: &dyn LogStore,
    dst: &dyn LogStore,
    ids: &[LogId],
    page: usize,
) -> Result<(u64, Vec<LogId>)> {
    let mut inserted = 0;
    let mut damaged = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i + 1;
        while j < ids.len() && j - i < page && ids[j].get() == ids[j - 1].get() + 1 {
            j += 1;
        }
        let scan = Scan {
            after: LogId::new(ids[i].get() - 1),
            before: ids[j - 1].next(),
            limit: j - i,
            ..Scan::default()
        };
        let (records, bad): (Vec<_>, Vec<_>) =
            src.scan(&scan).await?.into_iter().partition(LogRecord::is_intact);
        damaged.extend(bad.into_iter().map(|r| r.id));
        if !records.is_empty() {
            let level = dst.capabilities().strongest_durability();
            inserted += dst.import(records, level).await?.inserted;
        }
        i = j;
    }
    Ok((inserted, damaged))
}

/// What a pair offers: the durability levels both give, the checkpoint of the primary,
/// several processes when both copies admit them and the pair has its lock (`shared`).
fn joint_capabilities(primary: &dyn LogStore, backup: &dyn LogStore, shared: bool) -> Capabilities {
    let (p, b) = (primary.capabilities(), backup.capabilities());
    Capabilities {
        engine: "guarded",
        // Guards in several processes share a pair through its lock.
        multi_process: shared && p.multi_process && b.multi_process,
        persistent: p.persistent || b.persistent,
        checkpoint: p.checkpoint,
        deep_verify: p.deep_verify || b.deep_verify,
        repair: p.repair && b.repair,
        prune: p.prune && b.prune,
        durability: p
            .durability
            .into_iter()
            .filter(|d| b.durability.contains(d))
            .collect(),
    }
}

/// Merges two id-ordered record lists, preferring `a`'s copy of an id unless only `b`'s
/// is intact.
fn merge(a: Vec<LogRecord>, b: Vec<LogRecord>, scan: &Scan, limit: usize) -> Vec<LogRecord> {
    let mut all: BTreeMap<LogId, LogRecord> = b.into_iter().map(|r| (r.id, r)).collect();
    for rec in a {
        let keep_b = !rec.is_intact() && all.get(&rec.id).is_some_and(LogRecord::is_intact);
        if !keep_b {
            all.insert(rec.id, rec);
        }
    }
    let it = all.into_values();
    if scan.descending {
        it.rev().take(limit).collect()
    } else {
        it.take(limit).collect()
    }
}

#[async_trait]
impl LogStore for Guarded {
    fn describe(&self) -> String {
        format!(
            "guarded({} + {})",
            self.primary.describe(),
            self.backup.describe()
        )
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    async fn commit_report(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Committed> {
        self.check_writable("commit")?;
        self.check_durability(durability)?;
        let receipt = self.append_batch(batch, durability).await?;
        Ok(Committed {
            records: receipt.records,
            repeats: receipt.repeats,
        })
    }

    /// The primary's answer, or the backup's when the primary is missing records or cannot
    /// answer.
    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let (first, second) = self.lookup_order();
        match first.find_idempotent(key).await {
            Ok(Some(r)) => Ok(Some(r)),
            Ok(None) if !self.pending() => Ok(None),
            Ok(None) => second.find_idempotent(key).await.or(Ok(None)),
            Err(e) => second.find_idempotent(key).await.map_err(|_| e),
        }
    }

    /// As [`find_idempotent`](Self::find_idempotent): the copy that holds every record.
    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let (first, second) = self.lookup_order();
        match first.run_records(run).await {
            Ok(r) => Ok(r),
            Err(e) => second.run_records(run).await.map_err(|_| e),
        }
    }

    /// As [`find_idempotent`](Self::find_idempotent): the copy that holds every record.
    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        let (first, second) = self.lookup_order();
        match first.runs(scan).await {
            Ok(r) => Ok(r),
            Err(e) => second.runs(scan).await.map_err(|_| e),
        }
    }

    /// The primary's record, or the backup's when the primary lacks it, cannot read it, or
    /// holds it damaged (then a warning names the copy, and `check --repair` mends it). A
    /// record damaged in both copies is returned as stored: [`LogRecord::is_intact`] is
    /// false.
    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        match self.primary.get(id).await {
            Ok(Some(r)) if r.is_intact() => Ok(Some(r)),
            Ok(Some(damaged)) => match self.backup.get(id).await {
                Ok(Some(b)) if b.is_intact() => Ok(Some(self.served_intact(b, "primary"))),
                _ => Ok(Some(damaged)),
            },
            Ok(None) => self.backup.get(id).await,
            Err(e) => self.backup.get(id).await.map_err(|_| e),
        }
    }

    /// Like [`get`](Self::get) for every record of the page: a damaged record is replaced
    /// by the other copy's intact one.
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        let limit = scan.effective_limit()?;
        if !self.pending() {
            let mut records = match self.primary.scan(scan).await {
                Ok(r) => r,
                Err(e) => return self.backup.scan(scan).await.map_err(|_| e),
            };
            for rec in records.iter_mut().filter(|r| !r.is_intact()) {
                if let Ok(Some(b)) = self.backup.get(rec.id).await {
                    if b.is_intact() {
                        *rec = self.served_intact(b, "primary");
                    }
                }
            }
            return Ok(records);
        }
        let (a, b) = tokio::join!(self.primary.scan(scan), self.backup.scan(scan));
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(merge(a, b, scan, limit)),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(b)) => Ok(b),
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// The primary's count while both copies hold the same records (the backup's when
    /// the primary cannot answer); while they differ, counted over the merged records
    /// [`scan`](Self::scan) reads.
    async fn count(&self, filter: &Filter) -> Result<u64> {
        filter.validate()?;
        if !self.pending() {
            match self.primary.count(filter).await {
                Ok(n) => return Ok(n),
                Err(e) => return self.backup.count(filter).await.map_err(|_| e),
            }
        }
        crate::query::count_by_scanning(self, filter).await
    }

    /// As [`count`](Self::count): the primary's while the copies agree, else merged.
    async fn summary(&self, filter: &Filter) -> Result<Summary> {
        filter.validate()?;
        if !self.pending() {
            match self.primary.summary(filter).await {
                Ok(s) => return Ok(s),
                Err(e) => return self.backup.summary(filter).await.map_err(|_| e),
            }
        }
        crate::query::summary_by_scanning(self, filter).await
    }

    /// The primary's last id while the copies agree (scans read the primary, and a group
    /// may be in the backup before it is in the primary); while they differ, the smaller
    /// of the two (scans then merge both).
    async fn readable_through(&self) -> Result<Option<LogId>> {
        readable_through(&*self.primary, &*self.backup, &self.counters).await
    }

    /// Groups acknowledged through this guard reach this process's followers with their
    /// records; other processes' commits are seen by asking how far the pair is readable
    /// ([`readable_through`](Self::readable_through)'s answer, the primary's last id while
    /// the copies agree) every 25 ms, once for all followers.
    async fn commit_watch(&self) -> Result<crate::follow::CommitWatch> {
        let primary = self.primary.clone();
        let backup = self.backup.clone();
        let counters = self.counters.clone();
        let probe: crate::follow::Probe = Box::new(move || {
            let (primary, backup, counters) = (primary.clone(), backup.clone(), counters.clone());
            Box::pin(async move { readable_through(&*primary, &*backup, &counters).await })
        });
        self.counters
            .signal
            .watch(Some((std::time::Duration::from_millis(25), probe)))
            .await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        let (a, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(a.max(b)),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(b)) => Ok(b),
            (Err(e), Err(_)) => Err(e),
        }
    }

    async fn sync(&self, level: Durability) -> Result<()> {
        self.check_writable("sync")?;
        let (a, b) = tokio::join!(self.primary.sync(level), self.backup.sync(level));
        a.and(b)
    }

    async fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointReport> {
        self.check_writable("checkpoint")?;
        self.primary.checkpoint(mode).await
    }

    /// Verifies both copies through their own independent paths, and compares them: a
    /// record missing from one copy, or different in the two, is an `engine_problems` line.
    /// `missing` lists ids absent from both copies. A copy that cannot be verified at all
    /// (damaged beyond reading, or unavailable) is an `engine_problems` line too, not an
    /// error: the other copy is still verified.
    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        let (p, b) = tokio::join!(self.primary.verify(options), self.backup.verify(options));
        let mut unreadable = Vec::new();
        let (p, b) = match (p, b) {
            (Ok(p), Ok(b)) => (p, b),
            (Err(e), Ok(b)) => {
                unreadable.push(format!(
                    "primary {}: cannot be verified: {e}",
                    self.primary.describe()
                ));
                (VerifyReport::default(), b)
            }
            (Ok(p), Err(e)) => {
                unreadable.push(format!(
                    "backup {}: cannot be verified: {e}",
                    self.backup.describe()
                ));
                (p, VerifyReport::default())
            }
            (Err(e), Err(_)) => return Err(e),
        };
        let both_verified = unreadable.is_empty();
        let mut report = p.clone();
        report.engine_problems.extend(unreadable);
        report.checked = report.checked.max(b.checked);
        report.first_id = match (p.first_id, b.first_id) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        report.last_id = p.last_id.max(b.last_id);
        report.missing = intersect_ranges(&p.missing, &b.missing);
        for c in &mut report.corrupt {
            c.detail = format!("primary: {}", c.detail);
        }
        report.corrupt.extend(b.corrupt.into_iter().map(|mut c| {
            c.detail = format!("backup: {}", c.detail);
            c
        }));
        report.out_of_order.extend(b.out_of_order);
        report.engine_problems.extend(b.engine_problems);
        report.deep_checked |= b.deep_checked;
        report.pruned_present = p.pruned_present.max(b.pruned_present);
        for m in b.prunes {
            if !report.prunes.iter().any(|o| o.digest == m.digest) {
                report.prunes.push(m);
            }
        }
        report.prunes.sort_by_key(|m| m.at);
        let diff = self.reconcile(false).await?;
        for missing in &diff.prunes_missing {
            report.engine_problems.push(format!(
                "the {} {}; `synclog check --repair` applies it",
                missing.copy.name(),
                missing.detail
            ));
        }
        if !diff.missing_in_primary.is_empty() {
            report.engine_problems.push(format!(
                "the primary lacks {} logs the backup holds (first {}); `synclog check --repair` restores them",
                diff.missing_in_primary.len(),
                diff.missing_in_primary[0]
            ));
        }
        if !diff.missing_in_backup.is_empty() {
            report.engine_problems.push(format!(
                "the backup lacks {} logs the primary holds (first {}); `synclog check --repair` copies them",
                diff.missing_in_backup.len(),
                diff.missing_in_backup[0]
            ));
        }
        for c in diff.conflicts {
            report.engine_problems.push(format!(
                "log {} differs between the copies (primary {}, backup {})",
                c.id, c.primary, c.backup
            ));
        }
        if both_verified {
            // A copy that could not be verified is already named above.
            report.engine_problems.extend(
                diff.unreadable
                    .into_iter()
                    .map(|u| format!("{} {}", u.copy.name(), u.detail)),
            );
        }
        Ok(report)
    }

    /// Both copies' markers, each once (by digest), oldest first.
    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        let (p, b) = tokio::join!(self.primary.prune_markers(), self.backup.prune_markers());
        let mut all = p?;
        for m in b? {
            if !all.iter().any(|o| o.digest == m.digest) {
                all.push(m);
            }
        }
        all.sort_by_key(|m| m.at);
        Ok(all)
    }

    /// Applies `marker` to the primary, then to the backup, beside the appends: the
    /// writer task only first writes what a copy still lacks (under the pair's lock), then
    /// each copy's engine deletes in its own bounded steps, between the groups of appends
    /// (every engine's prune is safe beside its writes, and a marker applied twice, by a
    /// reconcile of another process meanwhile, deletes nothing more). A copy that fails
    /// leaves the marker to the next reconcile (which applies it from the other copy) or
    /// to a rerun; a close meanwhile cuts the prune short the same way.
    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        self.check_writable("prune")?;
        crate::retention::check_marker(marker)?;
        self.check_durability(durability)?;
        self.ask(|reply| Request::FlushPending { durability, reply })
            .await?;
        let first = self.primary.apply_prune(marker, durability).await?;
        let second = self.backup.apply_prune(marker, durability).await.map_err(|e| Error::Backend {
            engine: "guarded",
            context: format!(
                "pruned in the primary {}, not yet in the backup {} (the next open or `synclog check --repair` applies the marker to it)",
                self.primary.describe(),
                self.backup.describe()
            ),
            source: Box::new(e),
        })?;
        Ok(Applied {
            deleted: first.deleted.max(second.deleted),
            already_marked: first.already_marked && second.already_marked,
        })
    }

    /// Both copies' bytes, when both can tell.
    async fn storage_bytes(&self) -> Result<Option<u64>> {
        let (p, b) = tokio::join!(self.primary.storage_bytes(), self.backup.storage_bytes());
        Ok(p?.zip(b?).map(|(p, b)| p + b))
    }

    async fn repair(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.check_writable("repair")?;
        validate_records(&records)?;
        self.check_durability(durability)?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        self.ask(|reply| Request::Repair {
            records,
            durability,
            reply,
        })
        .await
    }

    async fn import(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.check_writable("import")?;
        validate_records(&records)?;
        self.check_durability(durability)?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        self.ask(|reply| Request::Import {
            records,
            durability,
            reply,
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        // The retention task first: a step it is in is cut short (each is crash safe).
        let retention = self.retention.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = retention {
            task.stop().await;
        }
        if self.counters.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        drop(self.presence.lock().unwrap_or_else(|p| p.into_inner()).take());
        let (a, b) = tokio::join!(self.primary.close(), self.backup.close());
        a.and(b)
    }
}
