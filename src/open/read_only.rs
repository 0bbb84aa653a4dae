//! A read-only view of a store whose engine has no read-only mode of its own
//! (PostgreSQL, memory): reads pass through, every write is refused before it reaches
//! the engine.

use std::sync::Arc;

use async_trait::async_trait;
use synclog_core::{
    Capabilities, CheckpointMode, CheckpointReport, Checksum, Durability, Error, ImportReport, LogId,
    LogRecord, LogStore, NewLog, Result, Scan, VerifyOptions, VerifyReport,
};

/// Reads through `inner`; refuses writes with [`Error::Unsupported`].
pub struct ReadOnly {
    inner: Arc<dyn LogStore>,
}

impl std::fmt::Debug for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadOnly").field(&self.inner.describe()).finish()
    }
}

impl ReadOnly {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LogStore>) -> Self {
        ReadOnly { inner }
    }

    fn refuse(&self, what: &str) -> Error {
        Error::read_only(self.inner.capabilities().engine, &self.inner.describe(), what)
    }
}

#[async_trait]
impl LogStore for ReadOnly {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn commit(&self, _batch: Vec<NewLog>, _durability: Durability) -> Result<Vec<LogRecord>> {
        Err(self.refuse("commit"))
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

    async fn id_checksums(&self, after: Option<LogId>, limit: usize) -> Result<Vec<(LogId, Checksum)>> {
        self.inner.id_checksums(after, limit).await
    }

    async fn sync(&self, _level: Durability) -> Result<()> {
        Err(self.refuse("sync"))
    }

    async fn checkpoint(&self, _mode: CheckpointMode) -> Result<CheckpointReport> {
        Err(self.refuse("checkpoint"))
    }

    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.inner.verify(options).await
    }

    async fn import(&self, _records: Vec<LogRecord>, _durability: Durability) -> Result<ImportReport> {
        Err(self.refuse("import"))
    }

    async fn repair(&self, _records: Vec<LogRecord>, _durability: Durability) -> Result<ImportReport> {
        Err(self.refuse("repair"))
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// Whether any process holds an `flock` (shared or exclusive) on the file at `path`,
/// found without taking or testing a lock, so no writer is made to wait: Linux lists every
/// `flock` in `/proc/locks`. Elsewhere, or when it cannot be read, `false`: a reader then
/// reports every difference between the copies.
pub fn flock_held(path: &std::path::Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let id = proc_locks_id(&meta);
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    locks.lines().any(|line| {
        // `1: FLOCK  ADVISORY  READ 4242 fe:00:6168769 0 EOF` (a waiter's line has `->`).
        let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "->").collect();
        fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str())
    })
}

/// A file's `MAJOR:MINOR:INODE` as `/proc/locks` writes it (hex, hex, decimal).
fn proc_locks_id(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let dev = meta.dev();
        // Linux's encoding of a dev_t (glibc's gnu_dev_major / gnu_dev_minor).
        let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
        let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
        format!("{major:02x}:{minor:02x}:{}", meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        String::new()
    }
}
