//! Fault injection in the open: a wrapper whose commits fail on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use synclog_core::{
    Capabilities, CheckpointMode, CheckpointReport, Committed, Durability, Error, ImportReport, LogId,
    LogRecord, LogStore, Result, Run, RunScan, Scan, ValidBatch, ValidRecords, VerifyOptions, VerifyReport,
};

/// Wraps a store and fails every `every`-th commit (and import) with an I/O error, before
/// the inner store sees it, so nothing of a failed commit is written.
#[derive(Debug)]
pub struct FailEveryNth {
    inner: Arc<dyn LogStore>,
    every: u64,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl FailEveryNth {
    /// Fails calls number `every`, `2 * every`, ... (`every` = 0 never fails).
    pub fn new(inner: Arc<dyn LogStore>, every: u64) -> Self {
        FailEveryNth {
            inner,
            every,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// How many calls were failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn maybe_fail(&self, what: &str) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.every > 0 && n.is_multiple_of(self.every) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(Error::io(
                format!("{what} on {} (injected fault, call {n})", self.inner.describe()),
                std::io::Error::other("injected fault"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl LogStore for FailEveryNth {
    fn describe(&self) -> String {
        format!("fail-every-{}+{}", self.every, self.inner.describe())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        self.maybe_fail("committing")?;
        self.inner.commit_valid(batch, durability).await
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
    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        self.inner.runs(scan).await
    }
    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.inner.get(id).await
    }
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        self.inner.scan(scan).await
    }
    async fn last_id(&self) -> Result<Option<LogId>> {
        self.inner.last_id().await
    }
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.inner.high_water().await
    }
    async fn sync(&self, level: Durability) -> Result<()> {
        self.inner.sync(level).await
    }
    async fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointReport> {
        self.inner.checkpoint(mode).await
    }
    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.inner.verify(options).await
    }
    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.maybe_fail("importing")?;
        self.inner.import_valid(records, durability).await
    }
    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.maybe_fail("repairing")?;
        self.inner.repair_valid(records, durability).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// Wraps a store whose writes succeed but whose reads return every record with a damaged
/// message (checksum unchanged): a store that acknowledges and then lies.
#[derive(Debug)]
pub struct DamagedReads {
    inner: Arc<dyn LogStore>,
}

impl DamagedReads {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LogStore>) -> Self {
        DamagedReads { inner }
    }

    fn damage(mut rec: LogRecord) -> LogRecord {
        rec.message.push_str(" (damaged on the way back)");
        rec
    }
}

#[async_trait]
impl LogStore for DamagedReads {
    fn describe(&self) -> String {
        format!("damaged-reads+{}", self.inner.describe())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        self.inner.commit_valid(batch, durability).await
    }
    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        Ok(self.inner.get(id).await?.map(Self::damage))
    }
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        Ok(self
            .inner
            .scan(scan)
            .await?
            .into_iter()
            .map(Self::damage)
            .collect())
    }
    async fn last_id(&self) -> Result<Option<LogId>> {
        self.inner.last_id().await
    }
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.inner.high_water().await
    }
    async fn sync(&self, level: Durability) -> Result<()> {
        self.inner.sync(level).await
    }
    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.inner.verify(options).await
    }
    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.inner.import_valid(records, durability).await
    }
    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.inner.repair_valid(records, durability).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// Wraps a store whose writes (commits, imports, repairs) fail with an I/O error while it
/// is [`down`](Self::set_down), as a copy whose disk went away does; reads go through.
#[derive(Debug)]
pub struct Unplugged {
    inner: Arc<dyn LogStore>,
    down: std::sync::atomic::AtomicBool,
    refused: AtomicU64,
}

impl Unplugged {
    /// Wraps `inner`, up.
    pub fn new(inner: Arc<dyn LogStore>) -> Self {
        Unplugged {
            inner,
            down: false.into(),
            refused: AtomicU64::new(0),
        }
    }

    /// Makes writes fail (`true`) or go through again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many writes failed because it was down.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn LogStore> {
        &self.inner
    }

    fn reachable(&self, what: &str) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Error::io(
                format!("{what} on {} (injected: its disk is gone)", self.inner.describe()),
                std::io::Error::other("injected: disk gone"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl LogStore for Unplugged {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        self.reachable("committing")?;
        self.inner.commit_valid(batch, durability).await
    }
    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.inner.get(id).await
    }
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        self.inner.scan(scan).await
    }
    async fn last_id(&self) -> Result<Option<LogId>> {
        self.inner.last_id().await
    }
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.inner.high_water().await
    }
    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        self.inner.find_idempotent(key).await
    }
    async fn find_idempotent_many(&self, keys: &[String]) -> Result<Vec<LogRecord>> {
        self.inner.find_idempotent_many(keys).await
    }
    async fn sync(&self, level: Durability) -> Result<()> {
        self.inner.sync(level).await
    }
    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.inner.verify(options).await
    }
    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.reachable("importing")?;
        self.inner.import_valid(records, durability).await
    }
    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.reachable("repairing")?;
        self.inner.repair_valid(records, durability).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
