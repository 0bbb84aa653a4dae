//! Views of a store that add to what its engine does, through one forwarding
//! implementation: read-only (for engines without a read-only mode of their own:
//! PostgreSQL, memory; reads pass through, every write is refused before it reaches the
//! engine) and automatic retention (for a store opened alone with `retain=`: everything
//! passes through, and a task prunes beside it until the view is closed or dropped).

use std::sync::Arc;

use async_trait::async_trait;
use synclog_core::retention::{spawn_auto_retention, AutoRetain, AutoRetention};
use synclog_core::{
    Capabilities, CheckpointMode, CheckpointReport, Checksum, Durability, Error, ImportReport, LogId,
    LogRecord, LogStore, Result, Scan, ValidBatch, ValidRecords, VerifyOptions, VerifyReport,
};

/// What a [`View`] adds.
enum Mode {
    /// Writes are refused with [`Error::Unsupported`].
    ReadOnly,
    /// Writes pass through; automatic retention runs until the view is closed or dropped
    /// (taken at close).
    Retained(tokio::sync::Mutex<Option<AutoRetention>>),
}

/// A store seen through a [`Mode`].
pub struct View {
    inner: Arc<dyn LogStore>,
    mode: Mode,
}

/// The read-only view (the name its users know).
pub type ReadOnly = View;

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::ReadOnly => "ReadOnly",
            Mode::Retained(_) => "Retained",
        };
        f.debug_tuple(mode).field(&self.inner.describe()).finish()
    }
}

impl View {
    /// Reads through `inner`; refuses writes with [`Error::Unsupported`].
    pub fn new(inner: Arc<dyn LogStore>) -> Self {
        View {
            inner,
            mode: Mode::ReadOnly,
        }
    }

    /// Everything through `inner`, with `auto` running beside it (on the current tokio
    /// runtime) until the view is closed or dropped.
    pub fn retained(inner: Arc<dyn LogStore>, auto: AutoRetain) -> Self {
        let task = spawn_auto_retention(inner.clone(), auto);
        View {
            inner,
            mode: Mode::Retained(tokio::sync::Mutex::new(Some(task))),
        }
    }

    /// The store, for a write `what`; refused in a read-only view.
    fn writable(&self, what: &str) -> Result<&Arc<dyn LogStore>> {
        match self.mode {
            Mode::ReadOnly => Err(Error::read_only(
                self.inner.capabilities().engine,
                &self.inner.describe(),
                what,
            )),
            Mode::Retained(_) => Ok(&self.inner),
        }
    }
}

#[async_trait]
impl LogStore for View {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn find_idempotent_many(&self, keys: &[String]) -> Result<Vec<LogRecord>> {
        self.inner.find_idempotent_many(keys).await
    }

    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        self.inner.find_idempotent(key).await
    }

    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        self.inner.run_records(run).await
    }

    async fn runs(&self, scan: &synclog_core::RunScan) -> Result<Vec<synclog_core::Run>> {
        self.inner.runs(scan).await
    }

    async fn commit_valid(
        &self,
        batch: ValidBatch,
        durability: Durability,
    ) -> Result<synclog_core::Committed> {
        self.writable("commit")?.commit_valid(batch, durability).await
    }

    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.inner.get(id).await
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        self.inner.scan(scan).await
    }

    async fn count(&self, filter: &synclog_core::Filter) -> Result<u64> {
        self.inner.count(filter).await
    }

    async fn count_by_status(&self, filter: &synclog_core::Filter) -> Result<synclog_core::StatusCounts> {
        self.inner.count_by_status(filter).await
    }

    async fn summary(&self, filter: &synclog_core::Filter) -> Result<synclog_core::Summary> {
        self.inner.summary(filter).await
    }

    async fn readable_through(&self) -> Result<Option<LogId>> {
        self.inner.readable_through().await
    }

    async fn commit_watch(&self) -> Result<synclog_core::follow::CommitWatch> {
        self.inner.commit_watch().await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        self.inner.last_id().await
    }

    async fn high_water(&self) -> Result<Option<LogId>> {
        self.inner.high_water().await
    }

    async fn id_checksums(&self, after: Option<LogId>, limit: usize) -> Result<Vec<(LogId, Checksum)>> {
        self.inner.id_checksums(after, limit).await
    }

    async fn sync(&self, level: Durability) -> Result<()> {
        self.writable("sync")?.sync(level).await
    }

    async fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointReport> {
        self.writable("checkpoint")?.checkpoint(mode).await
    }

    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.inner.verify(options).await
    }

    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.writable("import")?.import_valid(records, durability).await
    }

    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.writable("repair")?.repair_valid(records, durability).await
    }

    async fn prune_markers(&self) -> Result<Vec<synclog_core::PruneMarker>> {
        self.inner.prune_markers().await
    }

    async fn apply_prune(
        &self,
        marker: &synclog_core::PruneMarker,
        durability: Durability,
    ) -> Result<synclog_core::retention::Applied> {
        self.writable("prune")?.apply_prune(marker, durability).await
    }

    async fn storage_bytes(&self) -> Result<Option<u64>> {
        self.inner.storage_bytes().await
    }

    /// Stops automatic retention first (after the step it is in), then closes the store.
    async fn close(&self) -> Result<()> {
        if let Mode::Retained(task) = &self.mode {
            if let Some(task) = task.lock().await.take() {
                task.stop().await;
            }
        }
        self.inner.close().await
    }
}

/// Whether another process (or handle) holds an `flock` on the file at `path`: a
/// non-blocking exclusive `flock` is tried and, if it is granted, given back at once. A
/// writer that opens at that very moment waits those microseconds for its shared lock
/// (see `synclog_core::guarded::presence_path`); no append ever does. (Reading
/// `/proc/locks` instead, which takes no lock, missed the lock now and then under load.)
/// A file that does not exist, or cannot be opened: `false`.
pub fn flock_held(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use synclog_core::{LogStoreExt, NewLog, Status};

    /// What the engine does better than the defaults reaches through the view: its commit
    /// watch (the default one polls and cannot hear), counts and summaries.
    #[tokio::test]
    async fn the_view_passes_on_the_engines_own_queries_and_watch() {
        let dir = tempfile::tempdir().unwrap();
        let store = synclog_sqlite::SqliteStore::open(dir.path().join("v.db")).unwrap();
        store
            .append(NewLog::new("j", Status::Failed).attr("k", 1))
            .await
            .unwrap();
        let view = ReadOnly::new(Arc::new(store));
        assert!(view.commit_watch().await.unwrap().hears(), "the engine's watch");
        let filter = synclog_core::Filter::default().attr(synclog_core::AttrEq::new("k", 1));
        assert_eq!(view.count(&filter).await.unwrap(), 1);
        assert_eq!(view.summary(&filter).await.unwrap().jobs.len(), 1);
        assert_eq!(view.readable_through().await.unwrap().map(|i| i.get()), Some(1));
    }
}
