//! Following a store: a [`Follower`] hands out new records matching a [`Filter`] as they
//! are committed, in id order, each exactly once, and resumes from a position after a
//! restart.
//!
//! Between reads it waits on the store's [`LogStore::commit_watch`]: engines hand this
//! process's commits to it through a [`CommitSignal`], records included (no polling and no
//! read of the store), and notice other processes' commits by their own cheap means, once
//! for all followers.
//!
//! ```
//! # async fn demo() -> synclog_core::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use synclog_core::follow::Follower;
//! use synclog_core::memory::MemoryStore;
//! use synclog_core::query::Filter;
//! use synclog_core::{Durability, LogStoreExt, NewLog, Status};
//! let store = Arc::new(MemoryStore::new());
//! let mut follower = Follower::new(store.clone(), Filter::status(Status::Failed), None)?;
//! store.append_with(NewLog::new("orders", Status::Failed), Durability::Buffered).await?;
//! let got = follower.next_batch(Duration::from_secs(5)).await?;
//! assert_eq!(got[0].job, "orders");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use std::time::Duration;

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Result;
use crate::query::Filter;
use crate::record::{LogId, LogRecord};
use crate::store::{LogStore, Scan};

/// How often followers of a store that hears of no commit (the default
/// [`LogStore::commit_watch`]) look at it again.
pub const POLL: Duration = Duration::from_millis(50);

/// A cheap look at how far a store's storage goes, for a [`CommitSignal`] to ask on
/// behalf of every follower in the process: returns the store's last id (or `None` when
/// empty). Another process's commit shows as a larger id.
pub type Probe = Box<dyn FnMut() -> BoxFuture<Result<Option<LogId>>> + Send>;

/// A boxed future, as a [`Probe`] returns.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// How many committed batches a follower may fall behind the feed before it reads the
/// store instead (and so the most a follower that stopped asking keeps alive).
const FEED_CAPACITY: usize = 256;

/// Every this many batches on the feed, every watch is woken, those of other jobs too: they
/// take what the feed holds before it drops the oldest, so a follower of a quiet job never
/// has to read the store for the commits it slept through.
const DRAIN_EVERY: u64 = FEED_CAPACITY as u64 / 2;

/// How long a woken follower lets further commits gather before it looks: with many
/// followers and small groups, waking each for every group would cost the writers more
/// than the followers need (a follower's delay stays within a few milliseconds).
pub const GATHER: Duration = Duration::from_millis(10);

/// What an engine tells this process's followers about commits.
///
/// - Its writer calls [`committed_records`](Self::committed_records) after each
///   acknowledged commit: followers in this process get the records themselves (no read
///   of the store, so a hundred idle followers cost a commit almost nothing) and a hint
///   that the store now goes up to the last of them. A watch that follows some jobs only
///   ([`CommitWatch::only_jobs`]) is woken only by commits holding one of them.
/// - Imports, repairs and commits heard of from elsewhere (a PostgreSQL NOTIFY) call
///   [`committed`](Self::committed): the hint only; followers then read the store.
/// - For other processes' commits, [`watch`](Self::watch) takes a [`Probe`]: one task,
///   shared by every follower of the store and running only while one waits, asks it
///   every interval and raises the hint when the store grew.
///
/// Cheap to clone; clones are the same signal.
#[derive(Clone)]
pub struct CommitSignal {
    inner: Arc<SignalInner>,
}

struct SignalInner {
    /// The largest id known to be committed (0 for none).
    hint: watch::Sender<u64>,
    /// Raised with the hint by commits heard of without their records (imports, repairs,
    /// other processes'): they may hold any job, so they wake every watch.
    blind: watch::Sender<u64>,
    /// The watches that follow some jobs only, by job: woken by commits holding one.
    by_job: Mutex<HashMap<String, Vec<Arc<watch::Sender<u64>>>>>,
    /// Batches this process committed, in commit order.
    feed: broadcast::Sender<Arc<[LogRecord]>>,
    /// How many batches were sent on the feed.
    fed: std::sync::atomic::AtomicU64,
    /// The shared probing task, while one runs.
    prober: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for CommitSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitSignal")
            .field("hint", &self.last())
            .finish()
    }
}

impl Default for CommitSignal {
    fn default() -> Self {
        CommitSignal {
            inner: Arc::new(SignalInner {
                hint: watch::channel(0).0,
                blind: watch::channel(0).0,
                by_job: Mutex::new(HashMap::new()),
                feed: broadcast::channel(FEED_CAPACITY).0,
                fed: std::sync::atomic::AtomicU64::new(0),
                prober: tokio::sync::Mutex::new(None),
            }),
        }
    }
}

impl CommitSignal {
    /// A signal that has seen no commit.
    pub fn new() -> CommitSignal {
        CommitSignal::default()
    }

    /// Records that everything up to `last` may be committed (an import, a repair, a
    /// commit heard of from elsewhere), and wakes the followers: they read the store.
    pub fn committed(&self, last: LogId) {
        if self.raise(last) {
            self.inner.blind.send_replace(last.get());
        }
    }

    /// Wakes every follower to read the store, without raising the hint: records signalled
    /// earlier became readable only now (a guarded pair's copy that lacked them caught up,
    /// so both copies hold them). A follower already past them reads nothing.
    pub fn readable_again(&self) {
        self.inner.hint.send_modify(|_| {});
        let last = *self.inner.hint.borrow();
        self.inner.blind.send_replace(last);
    }

    /// Raises the hint to `last`; returns whether it rose.
    fn raise(&self, last: LogId) -> bool {
        self.inner.hint.send_if_modified(|cur| {
            let newer = last.get() > *cur;
            if newer {
                *cur = last.get();
            }
            newer
        })
    }

    /// Wakes the watches that follow one of the jobs of `records` (after they were sent on
    /// the feed, so that a woken watch finds them), forgetting the watches dropped since.
    fn wake_jobs(&self, records: &[LogRecord], last: LogId) {
        let mut by_job = self.inner.by_job.lock().unwrap_or_else(|e| e.into_inner());
        if by_job.is_empty() {
            return;
        }
        let mut jobs: Vec<&str> = Vec::new();
        for r in records {
            if !jobs.contains(&r.job.as_str()) {
                jobs.push(&r.job);
            }
        }
        for job in jobs {
            let Some(watches) = by_job.get_mut(job) else {
                continue;
            };
            watches.retain(|w| !w.is_closed());
            for w in watches.iter() {
                w.send_replace(last.get());
            }
            if watches.is_empty() {
                by_job.remove(job);
            }
        }
    }

    /// Hands the records of an acknowledged commit (in id order) to this process's
    /// followers, and raises the hint to the last of them. Costs nothing but the hint when
    /// no follower listens.
    pub fn committed_records<'a>(&self, records: impl IntoIterator<Item = &'a LogRecord>) {
        let records: Vec<LogRecord> = if self.inner.feed.receiver_count() > 0 {
            records.into_iter().cloned().collect()
        } else {
            records.into_iter().last().into_iter().cloned().collect()
        };
        let Some(last) = records.last().map(|r| r.id) else {
            return;
        };
        if self.inner.feed.receiver_count() > 0 {
            let records: Arc<[LogRecord]> = records.into();
            // No receiver left between the check and the send is harmless.
            let _ = self.inner.feed.send(records.clone());
            self.wake_jobs(&records, last);
            let fed = self.inner.fed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            // The drain wake does not depend on the hint rising here: a probe may have
            // raised it to this commit already.
            self.raise(last);
            if fed.is_multiple_of(DRAIN_EVERY) {
                self.inner.blind.send_replace(last.get());
            }
            return;
        }
        self.raise(last);
    }

    /// The largest id signalled (0 for none).
    pub fn last(&self) -> u64 {
        *self.inner.hint.borrow()
    }

    /// A watch for one follower: it sees every commit signalled from now on, and, with a
    /// `probe` (asked every `every` by one task for all watches, until none is left; the
    /// task started by the first watch keeps its interval), other processes' commits. When
    /// this starts the task, it returns once the probe has been asked; a task already
    /// running asks at its next tick. Either way a commit made after this returns raises
    /// the hint (a follower reads the store once at its start for what came before).
    pub async fn watch(&self, probe: Option<(Duration, Probe)>) -> Result<CommitWatch> {
        crate::runtime::current("watching a store's commits")?;
        let hint = self.inner.hint.subscribe();
        let blind = self.inner.blind.subscribe();
        let feed = self.inner.feed.subscribe();
        if let Some((every, mut probe)) = probe {
            let mut prober = self.inner.prober.lock().await;
            if prober.as_ref().is_none_or(|t| t.is_finished()) {
                // The first look, before this returns: later commits raise it.
                if let Some(id) = probe().await? {
                    self.committed(id);
                }
                let inner = Arc::downgrade(&self.inner);
                *prober = Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        let Some(inner) = inner.upgrade() else { return };
                        {
                            // Decided under the lock that `watch` takes, so a watch made
                            // while this ends starts a new task.
                            let mut me = inner.prober.lock().await;
                            if inner.hint.receiver_count() == 0 {
                                *me = None;
                                return;
                            }
                        }
                        // An error is a missed look, not a missed commit: the next look
                        // sees the store as it is then.
                        if let Ok(Some(id)) = probe().await {
                            CommitSignal { inner }.committed(id);
                        }
                    }
                }));
            }
        }
        Ok(CommitWatch {
            hint: Some(hint),
            feed: Some(feed),
            every: None,
            jobs: None,
            signal: Arc::downgrade(&self.inner),
            blind: Some(blind),
        })
    }
}

/// What a [`Follower`] waits on: from [`LogStore::commit_watch`].
#[derive(Debug)]
pub struct CommitWatch {
    hint: Option<watch::Receiver<u64>>,
    feed: Option<broadcast::Receiver<Arc<[LogRecord]>>>,
    /// Without a signal: wake every this often and read the store.
    every: Option<Duration>,
    /// After [`only_jobs`](Self::only_jobs): raised by commits holding one of its jobs.
    jobs: Option<watch::Receiver<u64>>,
    /// The signal, to register [`only_jobs`](Self::only_jobs) with.
    signal: Weak<SignalInner>,
    /// Raised by commits heard of without their records.
    blind: Option<watch::Receiver<u64>>,
}

impl std::fmt::Debug for SignalInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalInner").finish_non_exhaustive()
    }
}

/// What a [`CommitWatch`] has seen since it was last asked.
#[derive(Debug, Default)]
pub struct Heard {
    /// Batches this process committed, in order.
    pub batches: Vec<Arc<[LogRecord]>>,
    /// The feed was missed (the follower fell too far behind): read the store.
    pub lagged: bool,
    /// The largest id known committed, if the watch can tell (`None`: read the store).
    pub hint: Option<LogId>,
}

impl CommitWatch {
    /// A watch for an engine that hears of no commit: it wakes every `every`, and the
    /// follower reads the store each time.
    pub fn polling(every: Duration) -> CommitWatch {
        CommitWatch {
            hint: None,
            feed: None,
            every: Some(every),
            jobs: None,
            signal: Weak::new(),
            blind: None,
        }
    }

    /// Wakes [`changed`](Self::changed) only for this process's commits holding a record of
    /// one of `jobs` (an empty list: every commit, as before), and for every commit heard of
    /// without its records (which may hold any job). What [`take`](Self::take) returns is
    /// unchanged: every batch, whatever its jobs. So a follower of a job nobody writes is
    /// not woken by the commits of others. Does nothing on a polling watch.
    pub fn only_jobs(&mut self, jobs: &[String]) {
        let Some(inner) = self.signal.upgrade() else {
            return;
        };
        if jobs.is_empty() || self.jobs.is_some() {
            return;
        }
        let (tx, rx) = watch::channel(0);
        let tx = Arc::new(tx);
        let mut by_job = inner.by_job.lock().unwrap_or_else(|e| e.into_inner());
        // Watches dropped since, of jobs nobody committed to, go now.
        by_job.retain(|_, watches| {
            watches.retain(|w| !w.is_closed());
            !watches.is_empty()
        });
        for job in jobs {
            let watches = by_job.entry(job.clone()).or_default();
            if !watches.iter().any(|w| Arc::ptr_eq(w, &tx)) {
                watches.push(tx.clone());
            }
        }
        self.jobs = Some(rx);
    }

    /// What arrived since the last call, without waiting.
    pub fn take(&mut self) -> Heard {
        let mut heard = Heard::default();
        if let Some(feed) = &mut self.feed {
            loop {
                match feed.try_recv() {
                    Ok(batch) => heard.batches.push(batch),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Lagged(_)) => heard.lagged = true,
                    Err(broadcast::error::TryRecvError::Closed) => {
                        heard.lagged = true;
                        break;
                    }
                }
            }
        }
        // What woke a watch of some jobs is taken with the rest.
        if let (Some(jobs), Some(blind)) = (&mut self.jobs, &mut self.blind) {
            jobs.borrow_and_update();
            blind.borrow_and_update();
        }
        heard.hint = match &mut self.hint {
            Some(rx) => LogId::new(*rx.borrow_and_update()),
            None => None,
        };
        heard
    }

    /// Whether the hint is known (an engine that signals); without one, every wake means
    /// "read the store".
    pub fn hears(&self) -> bool {
        self.hint.is_some()
    }

    /// Waits until the hint rises above what [`take`](Self::take) last saw, or `timeout`
    /// passes (for a polling watch: its interval, or `timeout` if shorter). Returns whether
    /// something changed (always true for a polling watch: it cannot tell).
    pub async fn changed(&mut self, timeout: Duration) -> bool {
        if let (Some(jobs), Some(blind)) = (&mut self.jobs, &mut self.blind) {
            let either = async {
                tokio::select! {
                    r = jobs.changed() => r.is_ok(),
                    r = blind.changed() => r.is_ok(),
                }
            };
            return matches!(tokio::time::timeout(timeout, either).await, Ok(true));
        }
        match (&mut self.hint, self.every) {
            (Some(rx), _) => matches!(tokio::time::timeout(timeout, rx.changed()).await, Ok(Ok(()))),
            (None, every) => {
                tokio::time::sleep(every.unwrap_or(POLL).min(timeout)).await;
                true
            }
        }
    }
}

/// New records matching a filter, in id order, each handed out once.
///
/// It remembers a [`position`](Self::position): every record at or below it was handed out
/// or did not match. A follower made again with that position (after a restart, or after
/// it fell behind) goes on from there, skipping nothing and repeating nothing.
///
/// Records this process commits reach it from the engine's [`CommitSignal`] without a read
/// of the store; it reads the store when another process committed, when it fell behind,
/// and at its start. It follows commits: records imported later under ids at or below its
/// position (a restore filling a gap) are not handed out.
#[derive(Debug)]
pub struct Follower<S> {
    store: S,
    filter: Filter,
    position: Option<LogId>,
    pending: VecDeque<LogRecord>,
    page: usize,
    watch: Option<CommitWatch>,
    /// The last read stopped at a full page: the next one reads on.
    behind: bool,
}

impl<S> Follower<S>
where
    S: Deref + Send + Sync,
    S::Target: LogStore,
{
    /// Follows `store` for records matching `filter` with ids greater than `after` (`None`:
    /// from the first record; pass the store's [`last_id`](LogStore::last_id) to see only
    /// what comes next).
    ///
    /// Errors: [`crate::Error::InvalidInput`] for a filter [`Filter::validate`] refuses.
    pub fn new(store: S, filter: Filter, after: Option<LogId>) -> Result<Follower<S>> {
        filter.validate()?;
        Ok(Follower {
            store,
            filter,
            position: after,
            pending: VecDeque::new(),
            page: 1000,
            watch: None,
            behind: false,
        })
    }

    /// Reads at most `n` records per query (default 1000).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page = n.clamp(1, Scan::MAX_LIMIT);
        self
    }

    /// Where to resume: every record with an id at or below it has been handed out or did
    /// not match. Records read but not yet handed out are above it.
    pub fn position(&self) -> Option<LogId> {
        self.pending
            .front()
            .map_or(self.position, |r| LogId::new(r.id.get() - 1))
    }

    /// Queues what is committed past the position now (without waiting); returns how many
    /// records were queued.
    async fn fill(&mut self) -> Result<usize> {
        let mut read_store = self.behind;
        if self.watch.is_none() {
            // Watching first: a commit after this is heard of, one before it is read.
            let mut watch = self.store.commit_watch().await?;
            // Woken only by commits that may hold a matching record.
            watch.only_jobs(&self.filter.jobs);
            self.watch = Some(watch);
            read_store = true;
        }
        let mut queued = 0;
        if let Some(watch) = &mut self.watch {
            let heard = watch.take();
            read_store |= heard.lagged || !watch.hears();
            for batch in &heard.batches {
                let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                    continue;
                };
                if read_store || self.position.is_some_and(|p| last.id <= p) {
                    continue;
                }
                if first.id.get() != self.position.map_or(1, |p| p.get() + 1) {
                    // Another process committed in between, or a batch was missed.
                    read_store = true;
                    continue;
                }
                for r in batch.iter().filter(|r| self.filter.matches(r)) {
                    self.pending.push_back(r.clone());
                    queued += 1;
                }
                self.position = Some(last.id);
            }
            read_store |= heard.hint > self.position;
        }
        if read_store {
            queued += self.read().await?;
        }
        Ok(queued)
    }

    /// Reads the store past the position, up to what is readable now.
    async fn read(&mut self) -> Result<usize> {
        // Everything up to `top` is readable, so a scan bounded by it sees every record
        // there will ever be below it, and the next read may start after it even when none
        // matched.
        let Some(top) = self.store.readable_through().await? else {
            return Ok(0);
        };
        if self.position.is_some_and(|p| p >= top) {
            self.behind = false;
            return Ok(0);
        }
        let mut queued = 0;
        let mut scan = Scan {
            after: self.position,
            before: LogId::new(top.get() + 1),
            filter: self.filter.clone(),
            limit: self.page,
            descending: false,
        };
        loop {
            let page = self.store.scan(&scan).await?;
            let full = page.len() == self.page;
            scan.after = page.last().map(|r| r.id).or(scan.after);
            queued += page.len();
            self.pending.extend(page);
            if !full {
                break;
            }
            if queued >= self.page {
                // Hand these out first; the rest is read on the next call.
                self.position = scan.after;
                self.behind = true;
                return Ok(queued);
            }
        }
        self.position = Some(top);
        self.behind = false;
        Ok(queued)
    }

    /// The records committed past the position now, without waiting (possibly none).
    pub async fn try_next_batch(&mut self) -> Result<Vec<LogRecord>> {
        if self.pending.is_empty() {
            self.fill().await?;
        }
        Ok(self.pending.drain(..).collect())
    }

    /// The next records: at once if some are committed, else as soon as one is, or
    /// nothing once `timeout` has passed.
    pub async fn next_batch(&mut self, timeout: Duration) -> Result<Vec<LogRecord>> {
        crate::runtime::current("following a store")?;
        let end = Instant::now() + timeout;
        loop {
            let got = self.try_next_batch().await?;
            let now = Instant::now();
            if !got.is_empty() || now >= end {
                return Ok(got);
            }
            if let Some(w) = &mut self.watch {
                if w.changed(end - now).await {
                    tokio::time::sleep(GATHER.min(end.saturating_duration_since(Instant::now()))).await;
                }
            }
        }
    }

    /// The next record, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<LogRecord> {
        crate::runtime::current("following a store")?;
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(r);
            }
            if self.fill().await? == 0 {
                if let Some(w) = &mut self.watch {
                    if w.changed(Duration::from_secs(3600)).await {
                        tokio::time::sleep(GATHER).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NewLog;
    use crate::status::Status;

    fn rec(id: u64, job: &str) -> LogRecord {
        LogRecord::seal(
            LogId::new(id).unwrap(),
            chrono::Utc::now(),
            NewLog::new(job, Status::Succeeded),
        )
        .unwrap()
    }

    /// A watch of some jobs is not woken by a commit of others (whose batch it still
    /// takes), and is by a commit holding one of its jobs and by one heard of without its
    /// records; a watch of every job wakes for everything.
    #[tokio::test]
    async fn a_watch_of_some_jobs_wakes_only_for_them_and_for_commits_without_records() {
        let signal = CommitSignal::new();
        let mut watch = signal.watch(None).await.unwrap();
        watch.only_jobs(&["a".to_string()]);
        let mut every = signal.watch(None).await.unwrap();
        signal.committed_records(&[rec(1, "b")]);
        assert!(
            !watch.changed(Duration::from_millis(50)).await,
            "another job's commit"
        );
        assert!(every.changed(Duration::from_secs(5)).await);
        let heard = watch.take();
        assert_eq!(heard.batches.len(), 1, "its batch is still taken");
        assert_eq!(heard.hint, LogId::new(1));
        signal.committed_records(&[rec(2, "b"), rec(3, "a")]);
        assert!(
            watch.changed(Duration::from_secs(5)).await,
            "a commit holding its job"
        );
        assert_eq!(watch.take().hint, LogId::new(3));
        assert!(
            !watch.changed(Duration::from_millis(20)).await,
            "taken: nothing new"
        );
        signal.committed(LogId::new(9).unwrap());
        assert!(
            watch.changed(Duration::from_secs(5)).await,
            "a commit without its records"
        );
    }

    /// A watch of a job nobody commits to is woken every `DRAIN_EVERY` batches, not at each:
    /// it takes what the feed holds before the feed drops any, so it never lags and never
    /// has to read the store for the commits it slept through.
    #[tokio::test]
    async fn a_watch_of_a_quiet_job_wakes_to_drain_the_feed_before_it_lags() {
        let signal = CommitSignal::new();
        let mut watch = signal.watch(None).await.unwrap();
        watch.only_jobs(&["quiet".to_string()]);
        let waiter = tokio::spawn(async move {
            let (mut wakes, mut batches, mut lagged) = (0, 0, false);
            while watch.changed(Duration::from_secs(60)).await {
                wakes += 1;
                let heard = watch.take();
                batches += heard.batches.len();
                lagged |= heard.lagged;
                if heard.hint == LogId::new(301) {
                    break;
                }
            }
            (wakes, batches, lagged)
        });
        for id in 1..=300 {
            signal.committed_records(&[rec(id, "busy")]);
            tokio::task::yield_now().await;
        }
        signal.committed_records(&[rec(301, "quiet")]);
        let (wakes, batches, lagged) = waiter.await.unwrap();
        assert_eq!(
            wakes,
            300 / DRAIN_EVERY as usize + 1,
            "woken to drain, then by its job"
        );
        assert_eq!(batches, 301, "every batch taken from the feed");
        assert!(!lagged, "the feed never dropped a batch it needed");
    }
}
