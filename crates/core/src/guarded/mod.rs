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
use tokio::sync::{mpsc, oneshot};

use crate::canonical::Checksum;
use crate::error::{Error, Result};
use crate::group::Gathering;
use crate::query::{Filter, StatusCounts, Summary};
use crate::record::{intersect_ranges, LogId, LogRecord, NewLog};
use crate::retention::{spawn_auto_retention, Applied, AutoRetain, AutoRetention, PruneMarker, Pruned};
use crate::run::{seal_batch, Committed, Fetched, Planner, Run, RunEnds, RunScan, Wanted};
use crate::store::{
    Capabilities, CheckpointMode, CheckpointReport, Durability, ImportReport, LogStore, LogStoreExt, Scan,
    VerifyOptions, VerifyReport,
};
use crate::validate::{ValidBatch, ValidRecords};

mod check;
mod leader;
mod pairlock;
mod reconcile;
mod report;
mod unavailable;
mod watermark;

use leader::*;
use reconcile::*;
/// The target of every `tracing` event of the pair (its submodules' included), so that
/// an app routes them by one name.
pub const TARGET: &str = "synclog_core::guarded";

pub use report::{Copies, CopyConflict, CopyProblem, GuardStats, Receipt, ReconcileReport, Side};

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
    /// While a copy has records queued (it failed to take them) and no request comes, the
    /// guard tries again this long after the last attempt, so a copy whose disk came back
    /// catches up without waiting for the next append (5 s by default; `None`: only at the
    /// next request). Read-only guards queue nothing. Under one millisecond is refused by
    /// [`Guarded::open`] with [`Error::InvalidInput`].
    pub retry_pending_after: Option<std::time::Duration>,
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
            retry_pending_after: Some(std::time::Duration::from_secs(5)),
            watermark: None,
            lock: None,
            lock_wait: std::time::Duration::from_secs(10),
            retain: None,
        }
    }
}

/// Told of each commit group the pair acknowledged: how many logs it wrote (0 for a group
/// of repeats alone) and how long it held the pair (see [`GuardStats::commit_nanos`]). It
/// runs on the pair's leader, between a group's write and its answers: keep it short
/// (an atomic add, a histogram's observe).
pub type GroupObserver = Arc<dyn Fn(usize, std::time::Duration) + Send + Sync>;

#[derive(Default)]
struct Counters {
    /// Tells this process's followers of every group acknowledged through this guard.
    signal: crate::follow::CommitSignal,
    /// Told of every group acknowledged through this guard ([`Guarded::observe_groups`]).
    group_observer: std::sync::RwLock<Option<GroupObserver>>,
    groups: AtomicU64,
    logs: AtomicU64,
    commit_nanos: AtomicU64,
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

/// What a copy's `LogStore` method answers (an `async_trait` future).
type Answer<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

enum Request {
    Commit {
        logs: ValidBatch,
        durability: Durability,
        seq: u64,
        reply: Reply<Receipt>,
    },
    Import {
        records: ValidRecords,
        durability: Durability,
        reply: Reply<ImportReport>,
    },
    Reconcile {
        repair: bool,
        deep: bool,
        reply: Reply<ReconcileReport>,
    },
    Repair {
        records: ValidRecords,
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
    /// starts the writer task. Must be called inside a tokio runtime
    /// ([`Error::NoRuntime`] otherwise).
    pub async fn open(
        primary: Arc<dyn LogStore>,
        backup: Arc<dyn LogStore>,
        options: GuardedOptions,
    ) -> Result<Guarded> {
        crate::runtime::current("opening a guarded store")?;
        if options
            .retry_pending_after
            .is_some_and(|d| d < std::time::Duration::from_millis(1))
        {
            // Zero would retry a copy that stays down in a loop, holding the pair's lock.
            return Err(Error::invalid(
                "retry_pending_after",
                "must be at least one millisecond (None: retry only at the next request)",
            ));
        }
        let began = std::time::Instant::now();
        let counters = Arc::new(Counters::default());
        let retain = options.retain;
        let mut leader = Leader {
            primary: primary.clone(),
            backup: backup.clone(),
            next_id: 1,
            pending_primary: Vec::new(),
            pending_backup: Vec::new(),
            // The weakest: raised by each request that may queue records.
            pending_durability: Durability::Buffered,
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
            if leader.copies_differ_at_open().await {
                // Reads then merge both copies (and count by reading them), so that every
                // acknowledged record is seen; verify and check report the difference.
                counters.diverged.store(true, Ordering::Relaxed);
            }
        }
        tracing::info!(
            target: TARGET,
            primary = %primary.describe(),
            backup = %backup.describe(),
            read_only,
            reconciled = leader.options.reconcile_at_open && !read_only,
            compared_after = opened.compared_after.map(LogId::get),
            in_both = opened.in_both,
            restored_to_primary = opened.restored_to_primary,
            copied_to_backup = opened.copied_to_backup,
            found_problems = opened.found_problems(),
            next_id = leader.next_id,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "opened the guarded pair"
        );
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

    /// Tells `observer` of every group this guard acknowledges from now on (its size and
    /// commit time, for a histogram: [`GuardStats`] holds only totals). Replaces the
    /// observer set before, if any.
    pub fn observe_groups(&self, observer: GroupObserver) {
        let mut slot = self
            .counters
            .group_observer
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *slot = Some(observer);
    }

    /// Counters so far.
    pub fn stats(&self) -> GuardStats {
        let c = &self.counters;
        GuardStats {
            groups: c.groups.load(Ordering::Relaxed),
            logs: c.logs.load(Ordering::Relaxed),
            commit_nanos: c.commit_nanos.load(Ordering::Relaxed),
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
        let store = match copy {
            "primary" => self.primary.describe(),
            _ => self.backup.describe(),
        };
        tracing::warn!(
            target: TARGET,
            id = rec.id.get(),
            side = copy,
            copy = %store,
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
    ///
    /// Errors: [`Error::InvalidInput`] for a batch [`ValidBatch::new`] refuses (nothing
    /// written, no id spent), then the errors of a commit.
    pub async fn append_batch(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Receipt> {
        self.check_writable("append")?;
        self.append_valid(ValidBatch::new(batch)?, durability).await
    }

    /// [`append_batch`](Self::append_batch) after its checks of the handle and the input:
    /// checks the durability and commits.
    async fn append_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Receipt> {
        self.check_durability(durability)?;
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

    /// The answer of an aggregate read while the copies agree: the primary's, or the
    /// backup's when the primary cannot answer (the primary's error when neither can).
    /// `None` while they may differ: the caller then reads the merged records.
    async fn agreed<'a, T>(&'a self, ask: impl Fn(&'a dyn LogStore) -> Answer<'a, T>) -> Option<Result<T>> {
        if self.pending() {
            return None;
        }
        Some(match ask(&*self.primary).await {
            Ok(answer) => Ok(answer),
            Err(e) => ask(&*self.backup).await.map_err(|_| e),
        })
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

/// The higher of two copies' answers; a copy that cannot answer is left out (the
/// primary's error when neither can).
fn higher(a: Result<Option<LogId>>, b: Result<Option<LogId>>) -> Result<Option<LogId>> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(a.max(b)),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(e), Err(_)) => Err(e),
    }
}

/// See [`Guarded::readable_through`](LogStore::readable_through).
///
/// A reader (`read_only`) that found the copies differing at open reads both merged, and
/// what one copy holds above the other's end was acknowledged (a group in flight at open
/// is not taken for a difference): the larger end. A writer's queues hold groups one copy
/// has not taken yet, and a group may reach the backup before the primary: the smaller.
async fn readable_through(
    primary: &dyn LogStore,
    backup: &dyn LogStore,
    counters: &Counters,
    read_only: bool,
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
        (Ok(a), Ok(b)) if read_only => Ok(a.max(b)),
        (Ok(a), Ok(b)) => Ok(a.min(b)),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(e), Err(_)) => Err(e),
    }
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

    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        self.check_writable("commit")?;
        let receipt = self.append_valid(batch, durability).await?;
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
        match self.agreed(|s| s.count(filter)).await {
            Some(answer) => answer,
            None => crate::query::count_by_scanning(self, filter).await,
        }
    }

    /// As [`count`](Self::count): the primary's while the copies agree, else merged.
    async fn count_by_status(&self, filter: &Filter) -> Result<StatusCounts> {
        filter.validate()?;
        match self.agreed(|s| s.count_by_status(filter)).await {
            Some(answer) => answer,
            None => crate::query::count_by_status_by_scanning(self, filter).await,
        }
    }

    /// As [`count`](Self::count): the primary's while the copies agree, else merged.
    async fn summary(&self, filter: &Filter) -> Result<Summary> {
        filter.validate()?;
        match self.agreed(|s| s.summary(filter)).await {
            Some(answer) => answer,
            None => crate::query::summary_by_scanning(self, filter).await,
        }
    }

    /// The primary's last id while the copies agree (scans read the primary, and a group
    /// may be in the backup before it is in the primary); while they differ, the smaller
    /// of the two for a writer, the larger for a reader that found them differing at open
    /// (scans then merge both).
    async fn readable_through(&self) -> Result<Option<LogId>> {
        readable_through(&*self.primary, &*self.backup, &self.counters, self.read_only).await
    }

    /// Groups acknowledged through this guard reach this process's followers with their
    /// records; other processes' commits are seen by asking how far the pair is readable
    /// ([`readable_through`](Self::readable_through)'s answer, the primary's last id while
    /// the copies agree) every 25 ms, once for all followers.
    async fn commit_watch(&self) -> Result<crate::follow::CommitWatch> {
        let primary = self.primary.clone();
        let backup = self.backup.clone();
        let counters = self.counters.clone();
        let read_only = self.read_only;
        let probe: crate::follow::Probe = Box::new(move || {
            let (primary, backup, counters) = (primary.clone(), backup.clone(), counters.clone());
            Box::pin(async move { readable_through(&*primary, &*backup, &counters, read_only).await })
        });
        self.counters
            .signal
            .watch(Some((std::time::Duration::from_millis(25), probe)))
            .await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        let (a, b) = tokio::join!(self.primary.last_id(), self.backup.last_id());
        higher(a, b)
    }

    /// The higher of the copies' marks.
    async fn high_water(&self) -> Result<Option<LogId>> {
        let (a, b) = tokio::join!(self.primary.high_water(), self.backup.high_water());
        higher(a, b)
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

    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.check_writable("repair")?;
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

    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.check_writable("import")?;
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
        crate::runtime::current("closing a guarded store")?;
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
