//! Group commit: concurrent appends queue to one writer thread, which commits everything
//! queued in one transaction and one sync, then answers each caller.
//!
//! No caller is answered before the sync that covers its record: the writer answers only
//! after [`BatchWriter::commit_group`] has returned, and that call is where the engine
//! commits and syncs. Batching never weakens durability: a group is committed at the
//! strongest level any of its callers asked for.
//!
//! The writer is an OS thread, so blocking engine calls never run on an async executor.
//!
//! A caller that is alone (no other commit in flight, the writer idle) on a multi-thread
//! tokio runtime commits on its own thread instead, inside
//! [`tokio::task::block_in_place`], which first hands the thread's executor work to
//! another thread. That saves the two thread hops (to the writer and back) that a lone
//! caller would otherwise pay on every commit, and keeps the same guarantee: the caller
//! gets its answer only after `commit_group` (commit and sync) has returned.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::record::NewLog;
use crate::run::Committed;
use crate::store::Durability;
use crate::validate::ValidBatch;

mod gathering;

use gathering::Arrivals;
pub use gathering::Gathering;

/// An engine's blocking writer, owned by the group-commit thread.
pub trait BatchWriter: Send + 'static {
    /// Commits all `batches` in one transaction with one sync at `durability`, and returns
    /// each batch's outcome in order. The logs are already validated.
    ///
    /// A batch the rules of runs and idempotency keys refuse ([`crate::run::Planner`]) gets
    /// its error and nothing of it is written; the other batches go on. An `Err` of the
    /// whole call means nothing of the group is visible.
    fn commit_group(
        &mut self,
        batches: &[&[NewLog]],
        durability: Durability,
    ) -> Result<Vec<Result<Committed>>>;

    /// Called once when the group committer shuts down: flush and release.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Tuning of a [`GroupCommit`].
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The name of the writer thread.
    pub thread_name: String,
    /// The most logs committed in one group (callers beyond wait for the next group).
    pub max_group_logs: usize,
    /// The longest the writer waits, before starting a group, for callers it answered in
    /// the previous group to come back with their next commit. It waits only while some
    /// of them are still missing, so a lone caller never waits; no caller is ever answered
    /// early. Zero disables it.
    pub gather_wait: Duration,
    /// Whether a caller that is alone commits on its own thread (see the module docs).
    /// Only ever on a multi-thread tokio runtime.
    pub inline_lone_commits: bool,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            thread_name: "synclog-writer".into(),
            max_group_logs: 8192,
            gather_wait: Duration::from_micros(200),
            inline_lone_commits: true,
        }
    }
}

/// Counters of a [`GroupCommit`], for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    /// Groups committed (transactions, and syncs).
    pub groups: u64,
    /// Caller batches committed.
    pub batches: u64,
    /// Logs committed.
    pub logs: u64,
    /// Groups that failed.
    pub failed_groups: u64,
    /// Groups (counted in `groups` too) that a lone caller committed on its own thread.
    pub inline_groups: u64,
}

#[derive(Default)]
struct Counters {
    groups: AtomicU64,
    batches: AtomicU64,
    logs: AtomicU64,
    failed: AtomicU64,
    inline: AtomicU64,
}

impl Counters {
    fn committed(&self, batches: usize, logs: usize) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
        self.logs.fetch_add(logs as u64, Ordering::Relaxed);
    }
}

/// The writer, shared by the writer thread and lone callers; `None` once closed, so that
/// closing releases what the writer holds (files, locks) even while callers keep the
/// [`GroupCommit`].
type Slot<W> = Mutex<Option<W>>;

fn lock<W>(slot: &Slot<W>) -> MutexGuard<'_, Option<W>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a commit as in flight from its call until its future completes or is dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Enters; returns whether this is the only commit in flight.
    fn enter(count: &'a AtomicUsize) -> (Self, bool) {
        let before = count.fetch_add(1, Ordering::SeqCst);
        (InFlight(count), before == 0)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the current thread may block inside [`tokio::task::block_in_place`]: only on a
/// multi-thread runtime (it panics on a current-thread one).
fn may_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        .unwrap_or(false)
}

type Exclusive<W> = Box<dyn FnOnce(&mut W) + Send>;

enum Job<W> {
    Commit {
        logs: Vec<NewLog>,
        durability: Durability,
        reply: oneshot::Sender<Result<Committed>>,
    },
    Exclusive(Exclusive<W>),
}

/// A group committer around one [`BatchWriter`]. See the module docs.
pub struct GroupCommit<W: BatchWriter> {
    tx: Mutex<Option<mpsc::Sender<Job<W>>>>,
    slot: Arc<Slot<W>>,
    in_flight: AtomicUsize,
    inline_lone_commits: bool,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
    counters: Arc<Counters>,
    seq: Arc<AtomicU64>,
    arrivals: Arc<Arrivals>,
    name: String,
}

impl<W: BatchWriter> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("name", &self.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<W: BatchWriter> GroupCommit<W> {
    /// Starts the writer thread around `writer`.
    pub fn spawn(writer: W, options: GroupOptions) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Job<W>>();
        let counters = Arc::new(Counters::default());
        let seq = Arc::new(AtomicU64::new(0));
        let arrivals = Arc::new(Arrivals::default());
        let slot = Arc::new(Mutex::new(Some(writer)));
        let (c, sq, ar, sl) = (counters.clone(), seq.clone(), arrivals.clone(), slot.clone());
        let (max, gather) = (options.max_group_logs.max(1), options.gather_wait);
        let thread = std::thread::Builder::new()
            .name(options.thread_name.clone())
            .spawn(move || run(sl, rx, c, sq, ar, max, gather))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(GroupCommit {
            tx: Mutex::new(Some(tx)),
            slot,
            in_flight: AtomicUsize::new(0),
            inline_lone_commits: options.inline_lone_commits,
            thread: Mutex::new(Some(thread)),
            counters,
            seq,
            arrivals,
            name: options.thread_name,
        })
    }

    fn send(&self, job: Job<W>) -> Result<()> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let closed = || Error::Closed {
            store: self.name.clone(),
        };
        guard.as_ref().ok_or_else(closed)?.send(job).map_err(|_| closed())
    }

    /// Queues `logs` (validated: a [`ValidBatch`] is made only by the check) and waits
    /// until the group holding them is committed and synced at least at `durability`. A
    /// lone caller may instead commit them on its own thread, with the same guarantee (see
    /// the module docs).
    pub async fn commit(&self, logs: ValidBatch, durability: Durability) -> Result<Committed> {
        let logs = logs.into_inner();
        if logs.is_empty() {
            return Ok(Committed::default());
        }
        let (_in_flight, alone) = InFlight::enter(&self.in_flight);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        if alone && self.inline_lone_commits && may_block_in_place() {
            if let Some(result) = self.commit_inline(seq, &logs, durability) {
                return result;
            }
        }
        let (reply, rx) = oneshot::channel();
        self.send(Job::Commit {
            logs,
            durability,
            reply,
        })?;
        self.arrivals.arrived(seq);
        rx.await.map_err(|_| Error::Closed {
            store: self.name.clone(),
        })?
    }

    /// Commits a lone caller's `logs` on this thread, if the writer is free and open (else
    /// `None`: queue it). Counts as the caller's return for the writer's gathering.
    fn commit_inline(&self, seq: u64, logs: &[NewLog], durability: Durability) -> Option<Result<Committed>> {
        let mut slot = match self.slot.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if self.tx.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return None;
        }
        let writer = slot.as_mut()?;
        self.arrivals.arrived(seq);
        let result = tokio::task::block_in_place(|| commit_traced(writer, &[logs], durability, true));
        drop(slot);
        Some(match result {
            Ok(mut records) if records.len() == 1 => {
                let one = records.remove(0);
                match &one {
                    Ok(_) => self.counters.committed(1, logs.len()),
                    Err(_) => {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.counters.inline.fetch_add(1, Ordering::Relaxed);
                one
            }
            Ok(records) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(batch_count_mismatch(records.len(), 1))
            }
            Err(err) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(err)
            }
        })
    }

    /// Runs `f` on the writer thread with exclusive use of the writer, between groups.
    pub async fn with_writer<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut W) -> R + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Exclusive(Box::new(move |w: &mut W| {
            let _ = reply.send(f(w));
        })))?;
        rx.await.map_err(|_| Error::Closed {
            store: self.name.clone(),
        })
    }

    /// Blocking form of [`with_writer`](Self::with_writer), for callers outside an async runtime.
    pub fn with_writer_blocking<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut W) -> R + Send + 'static,
    {
        let (reply, rx) = mpsc::channel();
        self.send(Job::Exclusive(Box::new(move |w: &mut W| {
            let _ = reply.send(f(w));
        })))?;
        rx.recv().map_err(|_| Error::Closed {
            store: self.name.clone(),
        })
    }

    /// Callers inside [`GroupCommit::commit`] now (queued, or being committed).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The counters so far.
    pub fn stats(&self) -> GroupStats {
        GroupStats {
            groups: self.counters.groups.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            logs: self.counters.logs.load(Ordering::Relaxed),
            failed_groups: self.counters.failed.load(Ordering::Relaxed),
            inline_groups: self.counters.inline.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting work, lets the writer finish what is queued, closes it and joins
    /// the thread. Blocking; call it from `spawn_blocking` inside a runtime.
    pub fn shutdown(&self) -> Result<()> {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle {
            None => Ok(()),
            Some(h) => h.join().map_err(|_| Error::Backend {
                engine: "group-commit",
                context: format!("writer thread {} panicked", self.name),
                source: "panic".into(),
            })?,
        }
    }
}

impl<W: BatchWriter> Drop for GroupCommit<W> {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queue is drained; we do not join
        // here so that dropping inside an async context never blocks it.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// Runs one group through `writer` inside a `debug` span `group_commit` (fields `batches`,
/// `logs`, `durability`, `inline`: committed on the caller's thread) and ends it with a
/// `debug` event giving its latency (`micros`) and whether it was written (`ok`).
fn commit_traced<W: BatchWriter>(
    writer: &mut W,
    batches: &[&[NewLog]],
    durability: Durability,
    inline: bool,
) -> Result<Vec<Result<Committed>>> {
    let logs: usize = batches.iter().map(|b| b.len()).sum();
    let span = tracing::debug_span!("group_commit", batches = batches.len(), logs, ?durability, inline);
    let _entered = span.enter();
    let began = Instant::now();
    let result = writer.commit_group(batches, durability);
    tracing::debug!(
        micros = began.elapsed().as_micros() as u64,
        ok = result.is_ok(),
        "group committed"
    );
    result
}

fn batch_count_mismatch(got: usize, want: usize) -> Error {
    Error::Backend {
        engine: "group-commit",
        context: format!("writer returned {got} batches for {want}"),
        source: "batch count mismatch".into(),
    }
}

fn run<W: BatchWriter>(
    slot: Arc<Slot<W>>,
    rx: mpsc::Receiver<Job<W>>,
    counters: Arc<Counters>,
    seq: Arc<AtomicU64>,
    arrivals: Arc<Arrivals>,
    max: usize,
    gather_wait: Duration,
) -> Result<()> {
    let mut deferred: VecDeque<Job<W>> = VecDeque::new();
    loop {
        let job = match deferred.pop_front() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        let (first_logs, first_durability, first_reply) = match job {
            Job::Exclusive(f) => {
                // The writer is taken only below, when this loop ends.
                if let Some(writer) = lock(&slot).as_mut() {
                    f(writer);
                }
                continue;
            }
            Job::Commit {
                logs,
                durability,
                reply,
            } => (logs, durability, reply),
        };
        let mut total = first_logs.len();
        let mut durability = first_durability;
        let mut group = vec![(first_logs, first_reply)];
        // Take whatever else is queued, up to the group limit. While callers answered last
        // time are still missing, wait for them a bounded time. An exclusive job waits until
        // after this group, keeping its place before later commits.
        let deadline = Instant::now() + gather_wait;
        while total < max && deferred.is_empty() {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::TryRecvError::Disconnected) => None,
                Err(mpsc::TryRecvError::Empty) => {
                    if arrivals.all_back() || Instant::now() >= deadline {
                        None
                    } else {
                        // Sleep until the last missing caller is queued (or the deadline),
                        // then take what is there.
                        let _all_back = arrivals.wait(deadline);
                        rx.try_recv().ok()
                    }
                }
            };
            match next {
                Some(Job::Commit {
                    logs,
                    durability: d,
                    reply,
                }) => {
                    total += logs.len();
                    durability = durability.max(d);
                    group.push((logs, reply));
                }
                Some(exclusive) => deferred.push_back(exclusive),
                None => break,
            }
        }
        let batches: Vec<&[NewLog]> = group.iter().map(|(l, _)| l.as_slice()).collect();
        let result = match lock(&slot).as_mut() {
            Some(writer) => commit_traced(writer, &batches, durability, false),
            None => Err(Error::Closed {
                store: "the group-commit writer".into(),
            }),
        };
        let submitted = seq.load(Ordering::SeqCst);
        arrivals.expect(group.len(), submitted);
        match result {
            Ok(records) if records.len() == group.len() => {
                counters.committed(group.len(), total);
                for ((_, reply), recs) in group.into_iter().zip(records) {
                    let _ = reply.send(recs);
                }
            }
            Ok(records) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                let err = batch_count_mismatch(records.len(), group.len());
                for (_, reply) in group {
                    let _ = reply.send(Err(err.replicate()));
                }
            }
            Err(err) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                for (_, reply) in group {
                    let _ = reply.send(Err(err.replicate()));
                }
            }
        }
    }
    // Taken under the lock: a lone caller either committed before this or finds it gone.
    let writer = lock(&slot).take();
    match writer {
        Some(mut writer) => writer.close(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{LogId, LogRecord, Status};

    fn valid(logs: Vec<NewLog>) -> ValidBatch {
        ValidBatch::new(logs).unwrap()
    }

    /// Seals `batches` with ids after `next`, as a writer would.
    fn seal_all(next: &mut u64, batches: &[&[NewLog]]) -> Vec<Result<Committed>> {
        let now = chrono::Utc::now();
        batches
            .iter()
            .map(|b| {
                Ok(Committed::fresh(
                    b.iter()
                        .map(|l| {
                            *next += 1;
                            LogRecord::seal(LogId::new(*next).unwrap(), now, l.clone()).unwrap()
                        })
                        .collect(),
                ))
            })
            .collect()
    }

    /// A writer that counts groups and fails when told to.
    struct Counting {
        next: u64,
        fail_next: bool,
    }

    impl BatchWriter for Counting {
        fn commit_group(&mut self, batches: &[&[NewLog]], _: Durability) -> Result<Vec<Result<Committed>>> {
            if std::mem::take(&mut self.fail_next) {
                return Err(Error::io("syncing", std::io::Error::other("injected")));
            }
            // Make concurrent callers pile up behind this group.
            std::thread::sleep(std::time::Duration::from_millis(2));
            Ok(seal_all(&mut self.next, batches))
        }
    }

    #[test]
    fn the_writer_is_woken_when_the_last_answered_caller_is_back() {
        let arrivals = Arc::new(Arrivals::default());
        arrivals.expect(2, 10);
        arrivals.arrived(9); // queued before the answers: not one of the answered callers
        arrivals.arrived(10);
        assert_eq!(arrivals.returned.load(Ordering::SeqCst), 1);
        assert!(!arrivals.wait(Instant::now()), "one caller is still missing");
        let a = arrivals.clone();
        let started = Instant::now();
        let waiter = std::thread::spawn(move || a.wait(Instant::now() + Duration::from_secs(60)));
        arrivals.arrived(11);
        assert!(waiter.join().unwrap(), "woken because all are back");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "woken, not timed out"
        );
        // The next round counts afresh.
        arrivals.expect(1, 12);
        assert!(!arrivals.wait(Instant::now()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_groups_and_get_distinct_ids() {
        let gc = Arc::new(
            GroupCommit::spawn(
                Counting {
                    next: 0,
                    fail_next: false,
                },
                GroupOptions::default(),
            )
            .unwrap(),
        );
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let gc = gc.clone();
                tokio::spawn(async move {
                    gc.commit(
                        valid(vec![NewLog::new(format!("j{i}"), Status::Succeeded)]),
                        Durability::PowerLoss,
                    )
                    .await
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().unwrap().records[0].id.get());
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 64);
        let stats = gc.stats();
        assert_eq!(stats.logs, 64);
        assert!(stats.groups < 64, "expected batching, got {stats:?}");
        gc.shutdown().unwrap();
    }

    #[tokio::test]
    async fn a_failed_group_answers_every_caller_with_the_error() {
        let gc = GroupCommit::spawn(
            Counting {
                next: 0,
                fail_next: true,
            },
            GroupOptions::default(),
        )
        .unwrap();
        let err = gc
            .commit(
                valid(vec![NewLog::new("j", Status::Failed)]),
                Durability::PowerLoss,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Io);
        let ok = gc
            .commit(
                valid(vec![NewLog::new("j", Status::Failed)]),
                Durability::PowerLoss,
            )
            .await
            .unwrap();
        assert_eq!(ok.records[0].id.get(), 1);
        assert_eq!(gc.stats().failed_groups, 1);
    }

    #[test]
    fn gathering_waits_only_for_callers_it_answered() {
        let mut g = Gathering::default();
        g.start(0);
        assert!(!g.waiting_for_more(), "nobody was answered yet");
        g.answering(1, 1);
        g.start(1);
        assert!(
            !g.waiting_for_more(),
            "a lone caller is back as soon as it submits"
        );
        // 3 answered; the next group opens with a request queued before that answer.
        g.answering(3, 10);
        g.start(8);
        assert!(g.waiting_for_more());
        g.join(10);
        g.join(11);
        assert!(g.waiting_for_more(), "one of the three is still missing");
        g.join(12);
        assert!(!g.waiting_for_more());
    }

    /// The names of the threads groups ran on, in order.
    type ThreadNames = Arc<Mutex<Vec<Option<String>>>>;

    /// A writer that notes the thread each group ran on.
    struct Threads {
        next: u64,
        names: ThreadNames,
    }

    impl BatchWriter for Threads {
        fn commit_group(&mut self, batches: &[&[NewLog]], _: Durability) -> Result<Vec<Result<Committed>>> {
            let name = std::thread::current().name().map(str::to_owned);
            self.names.lock().unwrap().push(name);
            Ok(seal_all(&mut self.next, batches))
        }
    }

    fn threads(options: GroupOptions) -> (GroupCommit<Threads>, ThreadNames) {
        let names = Arc::new(Mutex::new(Vec::new()));
        let writer = Threads {
            next: 0,
            names: names.clone(),
        };
        (GroupCommit::spawn(writer, options).unwrap(), names)
    }

    async fn three_lone_commits(gc: &GroupCommit<Threads>) -> Vec<u64> {
        let mut ids = Vec::new();
        for i in 0..3 {
            let recs = gc
                .commit(
                    valid(vec![NewLog::new(format!("j{i}"), Status::Succeeded)]),
                    Durability::PowerLoss,
                )
                .await
                .unwrap();
            ids.push(recs.records[0].id.get());
        }
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_caller_on_a_multi_thread_runtime_commits_on_its_own_thread() {
        let (gc, names) = threads(GroupOptions::default());
        assert_eq!(three_lone_commits(&gc).await, vec![1, 2, 3]);
        let stats = gc.stats();
        assert_eq!((stats.groups, stats.inline_groups, stats.logs), (3, 3, 3));
        let names = names.lock().unwrap().clone();
        assert_eq!(names.len(), 3);
        assert!(
            names.iter().all(|n| n.as_deref() != Some("synclog-writer")),
            "no group ran on the writer thread: {names:?}"
        );
        gc.shutdown().unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_always_queues_to_the_writer_thread() {
        let (gc, names) = threads(GroupOptions::default());
        assert_eq!(three_lone_commits(&gc).await, vec![1, 2, 3]);
        assert_eq!(gc.stats().inline_groups, 0);
        let names = names.lock().unwrap().clone();
        assert_eq!(names, vec![Some("synclog-writer".to_owned()); 3]);
        gc.shutdown().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_commits_can_be_turned_off() {
        let (gc, names) = threads(GroupOptions {
            inline_lone_commits: false,
            ..GroupOptions::default()
        });
        assert_eq!(three_lone_commits(&gc).await, vec![1, 2, 3]);
        assert_eq!(gc.stats().inline_groups, 0);
        assert_eq!(names.lock().unwrap().len(), 3);
        assert!(names
            .lock()
            .unwrap()
            .iter()
            .all(|n| n.as_deref() == Some("synclog-writer")));
        gc.shutdown().unwrap();
    }

    async fn commit_after_shutdown_is_closed_and_commits_nothing() {
        let (gc, names) = threads(GroupOptions::default());
        gc.shutdown().unwrap();
        let err = gc
            .commit(
                valid(vec![NewLog::new("j", Status::Failed)]),
                Durability::PowerLoss,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Closed);
        assert!(names.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_caller_after_shutdown_is_closed_and_nothing_is_committed() {
        commit_after_shutdown_is_closed_and_commits_nothing().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn commit_after_shutdown_is_closed() {
        commit_after_shutdown_is_closed_and_commits_nothing().await;
    }

    /// A writer that notes when it is dropped.
    struct Dropped(Arc<std::sync::atomic::AtomicBool>);

    impl BatchWriter for Dropped {
        fn commit_group(&mut self, _: &[&[NewLog]], _: Durability) -> Result<Vec<Result<Committed>>> {
            Ok(Vec::new())
        }
    }

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn shutdown_drops_the_writer_while_the_committer_is_still_held() {
        // Engines hold files and locks in their writers (sled's flock): closing a store
        // must release them even though the store, and so the committer, lives on.
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gc = GroupCommit::spawn(Dropped(dropped.clone()), GroupOptions::default()).unwrap();
        assert!(!dropped.load(Ordering::SeqCst));
        gc.shutdown().unwrap();
        assert!(
            dropped.load(Ordering::SeqCst),
            "the writer is dropped at shutdown"
        );
        drop(gc);
    }
}
