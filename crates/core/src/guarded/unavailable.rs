//! A copy that could not be opened: the pair goes on with the other copy.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::record::{LogId, LogRecord};
use crate::store::{
    Capabilities, CheckpointMode, CheckpointReport, Durability, ImportReport, LogStore, Scan, VerifyOptions,
    VerifyReport,
};
use crate::validate::{ValidBatch, ValidRecords};

/// Stands in for a copy of a guarded pair that could not be opened (its file is damaged,
/// its disk is full or gone): every call fails with the error the open met, so the guard
/// serves and acknowledges through the other copy, counts the receipts as held by one copy
/// only, and `verify` and `check` report it. Closing it succeeds (there is nothing to
/// release).
///
/// `check --repair` rebuilds such a copy from the healthy one (the CLI sets the damaged
/// files aside first; nothing is deleted).
#[derive(Debug)]
pub struct Unavailable {
    describe: String,
    error: Error,
}

impl Unavailable {
    /// A stand-in for the store `describe` names, which failed to open with `error`.
    pub fn new(describe: impl Into<String>, error: Error) -> Unavailable {
        Unavailable {
            describe: describe.into(),
            error,
        }
    }

    /// Why the copy could not be opened.
    pub fn error(&self) -> &Error {
        &self.error
    }

    fn fail<T>(&self) -> Result<T> {
        Err(self.error.replicate())
    }
}

#[async_trait]
impl LogStore for Unavailable {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Every level, so that it restricts nothing the healthy copy offers.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: "unavailable",
            multi_process: false,
            persistent: false,
            checkpoint: false,
            deep_verify: false,
            repair: false,
            prune: false,
            durability: Durability::ALL.to_vec(),
        }
    }

    async fn commit_valid(
        &self,
        _batch: ValidBatch,
        _durability: Durability,
    ) -> Result<crate::run::Committed> {
        self.fail()
    }

    async fn get(&self, _id: LogId) -> Result<Option<LogRecord>> {
        self.fail()
    }

    async fn scan(&self, _scan: &Scan) -> Result<Vec<LogRecord>> {
        self.fail()
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        self.fail()
    }

    async fn sync(&self, _level: Durability) -> Result<()> {
        self.fail()
    }

    async fn checkpoint(&self, _mode: CheckpointMode) -> Result<CheckpointReport> {
        self.fail()
    }

    async fn verify(&self, _options: VerifyOptions) -> Result<VerifyReport> {
        self.fail()
    }

    async fn import_valid(&self, _records: ValidRecords, _durability: Durability) -> Result<ImportReport> {
        self.fail()
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
