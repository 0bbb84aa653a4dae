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

use std::collections::VecDeque;
use std::ops::Deref;
use std::time::Duration;

use std::sync::Arc;

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

/// How long a woken follower lets further commits gather before it looks: with many
/// followers and small groups, waking each for every group would cost the writers more
/// than the followers need (a follower's delay stays within a few milliseconds).
pub const GATHER: Duration = Duration::from_millis(10);

/// What an engine tells this process's followers about commits.
///
/// - Its writer calls [`committed_records`](Self::committed_records) after each
///   acknowledged commit: followers in this process get the records themselves (no read
///   of the store, so a hundred idle followers cost a commit almost nothing) and a hint
///   that the store now goes up to the last of them.
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
    /// Batches this process committed, in commit order.
    feed: broadcast::Sender<Arc<[LogRecord]>>,
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
                feed: broadcast::channel(FEED_CAPACITY).0,
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
        self.inner.hint.send_if_modified(|cur| {
            let newer = last.get() > *cur;
            if newer {
                *cur = last.get();
            }
            newer
        });
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
            // No receiver left between the check and the send is harmless.
            let _ = self.inner.feed.send(records.into());
        }
        self.committed(last);
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
        }
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
            self.watch = Some(self.store.commit_watch().await?);
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
