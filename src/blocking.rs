//! The same stores for programs without an async runtime, as `reqwest::blocking` does for
//! HTTP.
//!
//! A [`Store`] runs a small tokio runtime of its own (one worker thread, a few blocking
//! threads) and waits on the calling thread for each answer. It works from a plain
//! `fn main`, from a thread of any kind, and from inside another tokio runtime (the call
//! blocks that thread until the answer comes, as any blocking call would: inside async
//! code prefer the async API). What an answer means is exactly what it means in the async
//! API: an append returns once its record is durable at the level asked for.
//!
//! ```
//! use synclog::blocking;
//! use synclog::{NewLog, Scan, Status};
//! # let dir = tempfile::tempdir().unwrap();
//! # let primary = format!("sqlite://{}/logs.db", dir.path().display());
//! # let backup = format!("jsonl://{}/logs.jsonl", dir.path().display());
//!
//! let store = blocking::open_guarded(&primary, &backup, Default::default())?;
//! let rec = store.append(NewLog::new("crm-contacts", Status::Succeeded).counts(120, 118, 2))?;
//! assert_eq!(store.get(rec.id)?, Some(rec.clone()));
//! assert_eq!(store.scan(&Scan::default())?, vec![rec]);
//! store.close()?;
//! # Ok::<(), synclog::Error>(())
//! ```

use std::future::Future;
use std::sync::Arc;

use synclog_core::guarded::{Guarded, GuardedOptions, ReconcileReport};
use synclog_core::retention::PruneOptions;
use synclog_core::{
    Appended, Durability, Error, Filter, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Policy,
    PruneReport, Result, Run, RunScan, Scan, StatusCounts, Summary, VerifyOptions, VerifyReport,
};
use tokio::runtime::Runtime;

use crate::OpenOptions;

/// An open store used by blocking calls: any engine by URL, or a guarded pair.
///
/// Dropping it closes the store (as [`Store::close`] does, ignoring its error) and stops
/// its runtime.
pub struct Store {
    store: Arc<dyn LogStore>,
    guarded: Option<Arc<Guarded>>,
    // `None` only after `close` or `drop` took it.
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Store")
            .field("store", &self.store.describe())
            .finish()
    }
}

/// Opens the store `url` names, as [`crate::open_url`] does.
pub fn open_url(url: &str) -> Result<Store> {
    open_url_with(url, &OpenOptions::default())
}

/// Opens the store `url` names with `options`, as [`crate::open_url_with`] does.
pub fn open_url_with(url: &str, options: &OpenOptions) -> Result<Store> {
    let runtime = new_runtime()?;
    let (url, options) = (url.to_string(), options.clone());
    let opened = on(&runtime, "opening a store", async move {
        crate::open_url_with(&url, &options).await
    });
    let (store, runtime) = opened_or_stop(opened, runtime)?;
    Ok(Store {
        store,
        guarded: None,
        runtime: Some(runtime),
    })
}

/// Opens a guarded pair, as [`crate::open_guarded`] does: `primary` guarded by `backup`.
pub fn open_guarded(primary: &str, backup: &str, options: GuardedOptions) -> Result<Store> {
    open_guarded_with(primary, backup, options, &OpenOptions::default())
}

/// Opens a guarded pair with open options, as [`crate::open_guarded_with`] does.
pub fn open_guarded_with(
    primary: &str,
    backup: &str,
    options: GuardedOptions,
    open: &OpenOptions,
) -> Result<Store> {
    let runtime = new_runtime()?;
    let (primary, backup, open) = (primary.to_string(), backup.to_string(), open.clone());
    let opened = on(&runtime, "opening a guarded store", async move {
        crate::open_guarded_with(&primary, &backup, options, &open).await
    });
    let (guarded, runtime) = opened_or_stop(opened, runtime)?;
    let guarded = Arc::new(guarded);
    Ok(Store {
        store: guarded.clone(),
        guarded: Some(guarded),
        runtime: Some(runtime),
    })
}

impl Store {
    /// Runs `make(store)` on this store's runtime and waits for its answer.
    fn run<T, F>(&self, operation: &'static str, make: impl FnOnce(Arc<dyn LogStore>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(Error::Closed {
                store: self.store.describe(),
            });
        };
        on(runtime, operation, make(self.store.clone()))
    }

    /// Appends one log, durable at the strongest level the store offers (against power
    /// loss for every engine but memory) when it returns.
    pub fn append(&self, log: NewLog) -> Result<LogRecord> {
        let level = self.strongest();
        self.run(
            "appending a log",
            |s| async move { s.append_with(log, level).await },
        )
    }

    /// The strongest durability the store offers: what `append`, `start_run` and
    /// `finish_run` commit at.
    pub fn strongest(&self) -> Durability {
        self.store.capabilities().strongest_durability()
    }

    /// Appends one log at `durability` and says whether it repeated a stored one (its
    /// idempotency key), as [`LogStoreExt::append_report`].
    pub fn append_report(&self, log: NewLog, durability: Durability) -> Result<Appended> {
        self.run("appending a log", |s| async move {
            s.append_report(log, durability).await
        })
    }

    /// Appends a batch atomically at `durability`, as [`LogStoreExt::commit`].
    pub fn append_batch(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Vec<LogRecord>> {
        self.run("appending a batch", |s| async move {
            s.commit(batch, durability).await
        })
    }

    /// Starts a run with its `started` log (a run key is made when the log has none), as
    /// [`LogStoreExt::start_run`].
    pub fn start_run(&self, log: NewLog) -> Result<Appended> {
        let level = self.strongest();
        self.run("starting a run", |s| async move { s.start_run(log, level).await })
    }

    /// Finishes run `run` with the terminal log `log`, as [`LogStoreExt::finish_run`].
    pub fn finish_run(&self, run: &str, log: NewLog) -> Result<Appended> {
        let (run, level) = (run.to_string(), self.strongest());
        self.run("finishing a run", |s| async move {
            s.finish_run(&run, log, level).await
        })
    }

    /// The run `run`, as [`LogStoreExt::run`].
    pub fn run_of(&self, run: &str) -> Result<Option<Run>> {
        let run = run.to_string();
        self.run("reading a run", |s| async move { s.run(&run).await })
    }

    /// The runs `scan` selects, as [`LogStore::runs`].
    pub fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        let scan = scan.clone();
        self.run("reading runs", |s| async move { s.runs(&scan).await })
    }

    /// The record `id`, if stored.
    pub fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.run("reading a log", |s| async move { s.get(id).await })
    }

    /// The records `scan` selects, as [`LogStore::scan`].
    pub fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        let scan = scan.clone();
        self.run("reading logs", |s| async move { s.scan(&scan).await })
    }

    /// The newest id, if any record is stored.
    pub fn last_id(&self) -> Result<Option<LogId>> {
        self.run("reading the last id", |s| async move { s.last_id().await })
    }

    /// How many records `filter` matches, as [`LogStore::count`].
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        let filter = filter.clone();
        self.run("counting logs", |s| async move { s.count(&filter).await })
    }

    /// How many records `filter` matches for each status, as [`LogStore::count_by_status`].
    pub fn count_by_status(&self, filter: &Filter) -> Result<StatusCounts> {
        let filter = filter.clone();
        self.run(
            "counting logs",
            |s| async move { s.count_by_status(&filter).await },
        )
    }

    /// A summary per job of what `filter` matches, as [`LogStore::summary`].
    pub fn summary(&self, filter: &Filter) -> Result<Summary> {
        let filter = filter.clone();
        self.run("summarising logs", |s| async move { s.summary(&filter).await })
    }

    /// Verifies every stored record, as [`LogStore::verify`].
    pub fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.run("verifying", |s| async move { s.verify(options).await })
    }

    /// Prunes by `policy`, as [`synclog_core::retention::prune`].
    pub fn prune(&self, policy: &Policy, options: PruneOptions) -> Result<PruneReport> {
        let policy = *policy;
        self.run("pruning", |s| async move {
            synclog_core::retention::prune(&*s, &policy, &options).await
        })
    }

    /// Compares the copies of a guarded pair and, with `repair`, restores what one lacks
    /// from the other, as [`Guarded::check`]. A store opened by URL alone has no copies to
    /// compare: [`Error::Unsupported`].
    pub fn check(&self, repair: bool) -> Result<ReconcileReport> {
        let Some(guarded) = self.guarded.clone() else {
            return Err(Error::Unsupported {
                engine: self.store.capabilities().engine,
                what: "check of two copies (open a guarded pair with blocking::open_guarded)".into(),
            });
        };
        self.run(
            "checking the copies",
            |_| async move { guarded.check(repair).await },
        )
    }

    /// The async store underneath, for what this API does not wrap. Its methods must be
    /// awaited inside a tokio runtime (such as [`Store::block_on`]).
    pub fn as_async(&self) -> &Arc<dyn LogStore> {
        &self.store
    }

    /// Runs `future` on this store's runtime and waits for its answer: the async API
    /// within reach of blocking code.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let url = format!("sqlite://{}/logs.db", dir.path().display());
    /// use synclog::{LogStore, LogStoreExt};
    /// let store = synclog::blocking::open_url(&url)?;
    /// let s = store.as_async().clone();
    /// let last = store.block_on(async move { s.last_id().await })?;
    /// assert_eq!(last, None);
    /// # Ok::<(), synclog::Error>(())
    /// ```
    pub fn block_on<T, F>(&self, future: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.run("running a future", |_| future)
    }

    /// Closes the store (syncing and releasing its files and locks) and stops its runtime.
    pub fn close(mut self) -> Result<()> {
        self.shut()
    }

    fn shut(&mut self) -> Result<()> {
        let result = self.run("closing", |s| async move { s.close().await });
        if let Some(runtime) = self.runtime.take() {
            // Never blocks (dropping a runtime inside another one's thread would panic);
            // what the store had to finish, `close` finished above.
            runtime.shutdown_background();
        }
        result
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            if let Err(e) = self.shut() {
                tracing::warn!(target: "synclog::blocking", store = %self.store.describe(), error = %e, "closing a dropped store failed");
            }
        }
    }
}

/// The opened store with its runtime, or the open's error after stopping the runtime
/// without waiting (a plain drop waits for its threads, which panics inside another
/// runtime's thread).
fn opened_or_stop<T>(opened: Result<T>, runtime: Runtime) -> Result<(T, Runtime)> {
    match opened {
        Ok(store) => Ok((store, runtime)),
        Err(e) => {
            runtime.shutdown_background();
            Err(e)
        }
    }
}

fn new_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .thread_name("synclog-blocking")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting synclog's runtime for the blocking API", e))
}

/// Runs `future` on `runtime` and waits on this thread for its answer. Spawning (rather
/// than `Runtime::block_on`) works on any thread, also one inside another runtime.
fn on<T: Send + 'static>(
    runtime: &Runtime,
    operation: &'static str,
    future: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        // The receiver only goes away if the caller's thread did.
        let _ = tx.send(future.await);
    });
    rx.recv().map_err(|_| Error::Backend {
        engine: "blocking",
        context: operation.to_string(),
        source: "the task ended without an answer (it panicked or the runtime stopped)".into(),
    })?
}
