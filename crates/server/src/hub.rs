//! One follower of the store for every event stream.
//!
//! A follower per stream would wake every stream on every commit: with 1,000 idle streams
//! open, 64 clients' appends over HTTP fell from 14,100 to 1,130 a second (`cargo bench
//! --bench serve`). The hub follows the store once (every record, no filter) and hands
//! what was committed to the streams at most every [`TICK`], as one batch; each stream
//! filters it in memory.
//!
//! A stream that follows one job listens on that job's channel, and the hub sends there
//! only batches that hold a record of the job: a stream of a job nobody appends to is
//! never woken. (With one channel for all, each of 1,000 such streams was woken 20 times
//! a second to find nothing.) Each delivery says from which id on it is complete for its
//! channel (`Delivery::after`), so a stream tells the batches its channel skipped (no
//! record of its job) from batches it missed.
//!
//! A stream reads the store itself only to catch up: from its `Last-Event-ID` to what the
//! hub has published, and after it fell behind the hub (a lagged channel, or a delivery
//! that does not follow on from what it saw). Either way it hands out every matching
//! record once, in id order, as a follower does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use synclog_core::{Filter, Follower, LogId, LogRecord, LogStore, Result, Scan};
use tokio::sync::{broadcast, watch};

/// How often at most the hub hands a batch to the streams.
pub const TICK: Duration = Duration::from_millis(50);
/// Batches a stream may fall behind before it catches up from the store.
pub const CAPACITY: usize = 256;
/// Records a catching-up stream reads per query.
pub const PAGE: usize = 1000;

/// One batch the hub hands out: its records in id order, and where each job's are, so a
/// stream following some jobs looks at their records only (a thousand streams of other
/// jobs cost a batch a lookup each, not a thousand passes over it).
#[derive(Debug)]
pub struct Batch {
    records: Vec<LogRecord>,
    by_job: HashMap<String, Vec<usize>>,
}

impl Batch {
    fn new(records: Vec<LogRecord>) -> Batch {
        let mut by_job: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            by_job.entry(r.job.clone()).or_default().push(i);
        }
        Batch { records, by_job }
    }
}

/// A batch as one channel hands it out: every record of the channel's streams with an id
/// in `(after, last id of the batch]` is in it.
#[derive(Debug, Clone)]
pub struct Delivery {
    batch: Arc<Batch>,
    /// The last id of the previous delivery on the same channel (or what the hub had
    /// published when the channel was made): the batches published in between held no
    /// record for this channel.
    after: u64,
}

/// One broadcast channel and how far it has been handed out.
struct Feed {
    tx: broadcast::Sender<Delivery>,
    /// The last id of the last delivery sent on it, or what the hub had published when it
    /// was made.
    sent_through: u64,
}

impl Feed {
    fn new(capacity: usize, sent_through: u64) -> Feed {
        Feed {
            tx: broadcast::channel(capacity).0,
            sent_through,
        }
    }

    fn send(&mut self, batch: &Arc<Batch>, last: u64) {
        let _ = self.tx.send(Delivery {
            batch: batch.clone(),
            after: self.sent_through,
        });
        self.sent_through = last;
    }
}

/// The channels, under one lock taken by each publish and each new stream.
struct Feeds {
    /// Streams that follow every job, or several.
    all: Feed,
    /// Streams that follow exactly one job, by the job.
    jobs: HashMap<String, Feed>,
    /// Batches a stream may fall behind before it catches up.
    capacity: usize,
}

/// The shared follower.
pub struct Hub {
    feeds: Mutex<Feeds>,
    /// Every record up to this id has been published (0: none) or was in the store when
    /// the hub started.
    through: watch::Sender<u64>,
}

impl Hub {
    /// Starts following `store` after what it holds now; stops when `shutdown` turns true.
    pub async fn start(store: Arc<dyn LogStore>, mut shutdown: watch::Receiver<bool>) -> Result<Arc<Hub>> {
        let start = store.last_id().await?;
        let hub = Arc::new(Hub::new(CAPACITY, start.map_or(0, |i| i.get())));
        let mut follower = Follower::new(store, Filter::default(), start)?.page_size(10_000);
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    _ = shutdown.changed() => break,
                    got = follower.next_batch(Duration::from_secs(1)) => got,
                };
                let Some(hub) = weak.upgrade() else { break };
                match got {
                    Ok(batch) => {
                        if batch.is_empty() {
                            continue;
                        }
                        hub.publish(batch);
                        drop(hub);
                        tokio::time::sleep(TICK).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the event streams' follower could not read the store; retrying");
                        drop(hub);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(hub)
    }

    /// A hub that has published everything up to `through`, with channels of `capacity`
    /// batches.
    fn new(capacity: usize, through: u64) -> Hub {
        Hub {
            feeds: Mutex::new(Feeds {
                all: Feed::new(capacity, through),
                jobs: HashMap::new(),
                capacity,
            }),
            through: watch::channel(through).0,
        }
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, Feeds> {
        // Nothing panics while holding it; if something did, the channels are still whole.
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `records` (committed, readable, in id order) to the streams: to the channel of
    /// every stream of several jobs or all, and to the channels of the jobs it holds.
    ///
    /// `through` is raised before the batch is sent. A stream subscribes, then reads
    /// `through` (see [`Stream::new`]): if it subscribed before the send it receives the
    /// batch; if after, `through` already covers the batch and it reads it from the store.
    /// (Sending first would leave a stream that subscribed between the send and the raise
    /// with neither, until a later batch showed it the gap.)
    fn publish(&self, records: Vec<LogRecord>) {
        let Some(last) = records.last().map(|r| r.id.get()) else {
            return;
        };
        self.through.send_replace(last);
        self.deliver(records, last);
    }

    /// The second half of [`publish`](Self::publish): `records` (up to id `last`) sent on
    /// the channels.
    fn deliver(&self, records: Vec<LogRecord>, last: u64) {
        let batch = Arc::new(Batch::new(records));
        let mut feeds = self.feeds();
        feeds.all.send(&batch, last);
        for job in batch.by_job.keys() {
            let Some(feed) = feeds.jobs.get_mut(job) else {
                continue;
            };
            if feed.tx.receiver_count() == 0 {
                feeds.jobs.remove(job);
            } else {
                feed.send(&batch, last);
            }
        }
    }

    /// A receiver for a stream of `filter`: its job's channel when it follows one job
    /// (made now if no stream of that job is open), else the channel of all.
    fn subscribe(&self, filter: &Filter) -> broadcast::Receiver<Delivery> {
        let mut feeds = self.feeds();
        let Feeds { all, jobs, capacity } = &mut *feeds;
        match filter.jobs.as_slice() {
            [job] => {
                // Channels whose streams all closed, and that no batch has touched since.
                jobs.retain(|_, f| f.tx.receiver_count() > 0);
                jobs.entry(job.clone())
                    .or_insert_with(|| Feed::new(*capacity, all.sent_through))
                    .tx
                    .subscribe()
            }
            _ => all.tx.subscribe(),
        }
    }

    /// Every record up to this id has been handed out.
    fn through(&self) -> u64 {
        *self.through.borrow()
    }
}

/// One stream's position: records matching `filter` after `pos`, in id order, once.
pub struct Stream {
    store: Arc<dyn LogStore>,
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Delivery>,
    filter: Filter,
    /// Every record up to here has been handed out or did not match.
    pos: u64,
    /// Read the store up to this id before taking the hub's batches again.
    catch_up: Option<u64>,
    pending: VecDeque<LogRecord>,
}

impl Stream {
    /// A stream of records after `after` (`None`: from the first) matching `filter`.
    pub fn new(store: Arc<dyn LogStore>, hub: Arc<Hub>, filter: Filter, after: Option<LogId>) -> Stream {
        // Subscribe before reading `through`: what is published later arrives on `rx`.
        let rx = hub.subscribe(&filter);
        let through = hub.through();
        let pos = after.map_or(0, |a| a.get());
        Stream {
            store,
            hub,
            rx,
            filter,
            pos,
            catch_up: (through > pos).then_some(through),
            pending: VecDeque::new(),
        }
    }

    /// The next matching record, waiting for one as long as it takes. (`None` would mean
    /// the hub's channel closed; the stream holds the hub, so the server's shutdown signal
    /// is what ends a stream.)
    pub async fn next(&mut self) -> Result<Option<LogRecord>> {
        loop {
            if let Some(rec) = self.pending.pop_front() {
                return Ok(Some(rec));
            }
            if let Some(target) = self.catch_up {
                self.read_store(target).await?;
                continue;
            }
            match self.rx.recv().await {
                Ok(delivery) => self.take(&delivery),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let through = self.hub.through();
                    self.catch_up = (through > self.pos).then_some(through);
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// Takes a delivery from the hub: its matching records past the position, or, when it
    /// does not follow on from the position (records between them were not seen), a
    /// catch-up from the store.
    fn take(&mut self, delivery: &Delivery) {
        let batch = &*delivery.batch;
        let records = &batch.records;
        let Some(last) = records.last() else {
            return;
        };
        if last.id.get() <= self.pos {
            return;
        }
        if delivery.after > self.pos {
            // Everything up to `last` is readable (the hub hands out only that).
            self.catch_up = Some(last.id.get());
            return;
        }
        let pos = self.pos;
        let new = |r: &&LogRecord| r.id.get() > pos;
        if self.filter.jobs.is_empty() {
            for r in records.iter().filter(new) {
                if self.filter.matches(r) {
                    self.pending.push_back(r.clone());
                }
            }
        } else {
            let mut at: Vec<usize> = self
                .filter
                .jobs
                .iter()
                .filter_map(|j| batch.by_job.get(j))
                .flatten()
                .copied()
                .collect();
            if self.filter.jobs.len() > 1 {
                at.sort_unstable();
                at.dedup();
            }
            for r in at.iter().map(|&i| &records[i]).filter(new) {
                if self.filter.matches(r) {
                    self.pending.push_back(r.clone());
                }
            }
        }
        self.pos = last.id.get();
    }

    /// Reads one page of matches in `(pos, target]`.
    async fn read_store(&mut self, target: u64) -> Result<()> {
        let scan = Scan {
            after: LogId::new(self.pos),
            before: LogId::new(target + 1),
            filter: self.filter.clone(),
            limit: PAGE,
            descending: false,
        };
        let page = self.store.scan(&scan).await?;
        if page.len() == PAGE {
            self.pos = page.last().map_or(self.pos, |r| r.id.get());
        } else {
            self.pos = target;
            self.catch_up = None;
        }
        self.pending.extend(page);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synclog_core::memory::MemoryStore;
    use synclog_core::{Durability, LogStoreExt, NewLog, Status};

    /// A hub that publishes only what a test hands it, with room for `capacity` batches.
    fn manual_hub(capacity: usize, through: u64) -> Arc<Hub> {
        Arc::new(Hub::new(capacity, through))
    }

    /// The second half of a publish (without raising `through`): `batch` sent as the hub
    /// would send it.
    fn send(hub: &Hub, batch: Vec<LogRecord>) {
        let last = batch.last().unwrap().id.get();
        hub.deliver(batch, last);
    }

    async fn commit(store: &Arc<dyn LogStore>, jobs: &[&str]) -> Vec<LogRecord> {
        let batch = jobs.iter().map(|j| NewLog::new(*j, Status::Succeeded)).collect();
        store.commit(batch, Durability::Buffered).await.unwrap()
    }

    fn publish(hub: &Hub, batch: &[LogRecord]) {
        hub.publish(batch.to_vec());
    }

    async fn ids(stream: &mut Stream, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..n {
            let rec = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("a record in time")
                .unwrap()
                .unwrap();
            out.push(rec.id.get());
        }
        out
    }

    fn idle(stream: &mut Stream) -> bool {
        futures_util::FutureExt::now_or_never(stream.next()).is_none()
    }

    #[tokio::test]
    async fn a_stream_catches_up_from_the_store_then_takes_the_hubs_batches_once() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        commit(&store, &["a", "b", "a", "a", "b"]).await;
        let hub = manual_hub(8, 5);
        let mut s = Stream::new(store.clone(), hub.clone(), Filter::job("a"), LogId::new(1));
        assert_eq!(
            ids(&mut s, 2).await,
            [3, 4],
            "from the store, after Last-Event-ID 1"
        );
        let batch = commit(&store, &["a", "b", "a"]).await;
        publish(&hub, &batch);
        // The same records again (a batch the stream already read) change nothing.
        publish(&hub, &batch[..2]);
        assert_eq!(ids(&mut s, 2).await, [6, 8]);
        assert!(idle(&mut s), "nothing is handed out twice");
    }

    #[tokio::test]
    async fn a_stream_opened_between_raising_through_and_sending_reads_the_batch_once() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let hub = manual_hub(8, 0);
        let batch = commit(&store, &["a", "a"]).await;
        // The first half of a publish: `through` covers the batch ...
        hub.through.send_replace(2);
        let mut s = Stream::new(store.clone(), hub.clone(), Filter::default(), None);
        // ... then the send, which this stream receives too: no repeat.
        send(&hub, batch);
        assert_eq!(ids(&mut s, 2).await, [1, 2]);
        assert!(idle(&mut s));
        // A stream opened after the whole publish reads the batch from the store.
        let mut late = Stream::new(store.clone(), hub.clone(), Filter::default(), None);
        assert_eq!(ids(&mut late, 2).await, [1, 2]);
        assert!(idle(&mut late));
    }

    #[tokio::test]
    async fn a_stream_of_several_jobs_gets_their_records_in_id_order() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let hub = manual_hub(8, 0);
        let mut s = Stream::new(
            store.clone(),
            hub.clone(),
            Filter::default().jobs(["c", "a"]),
            None,
        );
        let batch = commit(&store, &["a", "b", "c", "a", "c", "b"]).await;
        publish(&hub, &batch);
        assert_eq!(ids(&mut s, 4).await, [1, 3, 4, 5]);
        assert!(idle(&mut s));
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_the_hub_reads_what_it_missed_from_the_store() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let hub = manual_hub(2, 0);
        let mut s = Stream::new(store.clone(), hub.clone(), Filter::default(), None);
        for _ in 0..5 {
            let batch = commit(&store, &["a", "a"]).await;
            publish(&hub, &batch);
        }
        // Five batches into room for two: the stream lagged, and reads 1..=10 in order.
        assert_eq!(ids(&mut s, 10).await, (1..=10).collect::<Vec<_>>());
        assert!(idle(&mut s));
        // A delivery that does not follow on from the last one it saw (a delivery of 11 it
        // never got came between) sends it to the store too.
        let missed = commit(&store, &["a"]).await;
        let next = commit(&store, &["a"]).await;
        assert_eq!(missed[0].id.get(), 11);
        hub.feeds().all.sent_through = 11;
        send(&hub, next.clone());
        assert_eq!(ids(&mut s, 2).await, [11, 12]);
        assert!(idle(&mut s));
    }

    #[tokio::test]
    async fn a_stream_of_one_job_is_not_woken_by_batches_without_its_job() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let hub = manual_hub(8, 0);
        let mut s = Stream::new(store.clone(), hub.clone(), Filter::job("a"), None);
        for _ in 0..3 {
            let batch = commit(&store, &["b", "c"]).await;
            publish(&hub, &batch);
        }
        assert!(s.rx.is_empty(), "no delivery for a batch without its job");
        assert!(idle(&mut s));
        let batch = commit(&store, &["b", "a"]).await;
        publish(&hub, &batch);
        assert_eq!(s.rx.len(), 1, "one delivery for the batch with its job");
        assert_eq!(ids(&mut s, 1).await, [8]);
        assert!(idle(&mut s));
    }

    #[tokio::test]
    async fn a_stream_of_one_job_takes_its_records_across_skipped_batches_without_reading_the_store() {
        // The stream's store is empty: a catch-up from it would lose record 6.
        let source: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let empty: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let hub = manual_hub(8, 0);
        let mut s = Stream::new(empty, hub.clone(), Filter::job("a"), None);
        for jobs in [["a", "b"], ["b", "c"], ["c", "a"]] {
            let batch = commit(&source, &jobs).await;
            publish(&hub, &batch);
        }
        assert_eq!(ids(&mut s, 2).await, [1, 6]);
        assert!(idle(&mut s));
    }

    #[tokio::test]
    async fn a_stream_of_one_job_opened_between_raising_through_and_sending_reads_the_batch_once() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let hub = manual_hub(8, 0);
        let batch = commit(&store, &["a", "b", "a"]).await;
        hub.through.send_replace(3);
        // Its channel is made now, after `through` was raised and before the send.
        let mut s = Stream::new(store.clone(), hub.clone(), Filter::job("a"), None);
        send(&hub, batch);
        assert_eq!(ids(&mut s, 2).await, [1, 3]);
        assert!(idle(&mut s));
        let batch = commit(&store, &["a"]).await;
        publish(&hub, &batch);
        assert_eq!(ids(&mut s, 1).await, [4]);
        assert!(idle(&mut s));
    }

    #[tokio::test]
    async fn a_job_channel_that_lags_is_caught_up_from_the_store_and_dropped_with_its_last_stream() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let hub = manual_hub(2, 0);
        let mut s = Stream::new(store.clone(), hub.clone(), Filter::job("a"), None);
        for _ in 0..5 {
            let batch = commit(&store, &["a", "b"]).await;
            publish(&hub, &batch);
        }
        assert_eq!(ids(&mut s, 5).await, [1, 3, 5, 7, 9]);
        assert!(idle(&mut s));
        drop(s);
        let batch = commit(&store, &["a"]).await;
        publish(&hub, &batch);
        assert!(
            hub.feeds().jobs.is_empty(),
            "the channel of a job nobody follows is gone"
        );
    }
}
