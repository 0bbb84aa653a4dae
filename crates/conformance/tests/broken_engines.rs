//! The suite checked against engines broken on purpose: each is the reference memory
//! engine with one fault a real engine could have, and each must fail a case that names
//! the fault. A faithful wrapper (the same delegation, no fault) passes everything, so
//! what fails is the fault, not the wrapper.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use synclog_conformance::memory::{MemoryHarness, MemoryStore};
use synclog_conformance::{Faults, Harness, Location, Outcome};
use synclog_core::follow::CommitWatch;
use synclog_core::retention::Applied;
use synclog_core::{
    Capabilities, Committed, Durability, ImportReport, LogId, LogRecord, LogStore, PruneMarker, Result, Scan,
    ValidBatch, ValidRecords, VerifyOptions, VerifyReport,
};

/// One fault each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No fault: the control.
    None,
    /// A scan's `after` bound is inclusive (paging never ends).
    InclusiveAfter,
    /// `close` does nothing: the store goes on taking commits.
    CloseDoesNothing,
    /// An import answers as if it stored the records, and stores nothing.
    ImportStoresNothing,
    /// Nothing is kept across a reopen (no durable storage).
    ForgetsAtReopen,
    /// `verify` says clean without looking.
    VerifyWithoutLooking,
    /// `verify` never answers.
    VerifyHangs,
}

#[derive(Debug)]
struct Broken {
    inner: MemoryStore,
    fault: Fault,
}

#[async_trait]
impl LogStore for Broken {
    fn describe(&self) -> String {
        format!("{:?}+{}", self.fault, self.inner.describe())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        self.inner.commit_valid(batch, durability).await
    }
    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.inner.get(id).await
    }
    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        let mut scan = scan.clone();
        if self.fault == Fault::InclusiveAfter {
            scan.after = scan.after.and_then(|a| LogId::new(a.get() - 1));
        }
        self.inner.scan(&scan).await
    }
    async fn last_id(&self) -> Result<Option<LogId>> {
        self.inner.last_id().await
    }
    async fn high_water(&self) -> Result<Option<LogId>> {
        self.inner.high_water().await
    }
    async fn commit_watch(&self) -> Result<CommitWatch> {
        self.inner.commit_watch().await
    }
    async fn sync(&self, level: Durability) -> Result<()> {
        self.inner.sync(level).await
    }
    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        match self.fault {
            Fault::VerifyWithoutLooking => Ok(VerifyReport {
                checked: self.inner.scan(&Scan::all(Scan::MAX_LIMIT)).await?.len() as u64,
                ..VerifyReport::default()
            }),
            Fault::VerifyHangs => std::future::pending().await,
            _ => self.inner.verify(options).await,
        }
    }
    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        if self.fault == Fault::ImportStoresNothing {
            return Ok(ImportReport {
                inserted: records.len() as u64,
                ..ImportReport::default()
            });
        }
        self.inner.import_valid(records, durability).await
    }
    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.inner.repair_valid(records, durability).await
    }
    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        self.inner.prune_markers().await
    }
    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        self.inner.apply_prune(marker, durability).await
    }
    async fn close(&self) -> Result<()> {
        match self.fault {
            Fault::CloseDoesNothing => Ok(()),
            _ => self.inner.close().await,
        }
    }
}

/// The memory harness, opening [`Broken`] stores.
struct BrokenHarness(Fault);

#[async_trait]
impl Harness for BrokenHarness {
    fn name(&self) -> &'static str {
        "broken-memory"
    }
    async fn create(&self) -> Result<Location> {
        MemoryHarness.create().await
    }
    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        if self.0 == Fault::ForgetsAtReopen {
            MemoryStore::drop_named(&at.address);
        }
        Ok(Arc::new(Broken {
            inner: MemoryStore::open_named(&at.address),
            fault: self.0,
        }))
    }
    fn faults(&self) -> Faults {
        MemoryHarness.faults()
    }
    async fn corrupt_record(&self, at: &Location, id: LogId) -> Result<()> {
        MemoryHarness.corrupt_record(at, id).await
    }
    async fn remove_record(&self, at: &Location, id: LogId) -> Result<()> {
        MemoryHarness.remove_record(at, id).await
    }
    async fn destroy(&self, at: &Location) -> Result<()> {
        MemoryHarness.destroy(at).await
    }
    async fn cleanup(&self, at: &Location) -> Result<()> {
        MemoryHarness.cleanup(at).await
    }
}

/// The cases `fault` fails.
fn failed(fault: Fault, deadline: Duration) -> Vec<String> {
    let outcomes = synclog_conformance::check(BrokenHarness(fault), deadline).expect("a probe store opens");
    assert!(
        outcomes.iter().any(|(_, o)| *o == Outcome::Passed),
        "{fault:?}: nothing passed at all"
    );
    outcomes
        .into_iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn the_faithful_wrapper_passes_every_case() {
    assert_eq!(
        failed(Fault::None, synclog_conformance::case_deadline()),
        Vec::<String>::new()
    );
}

#[test]
fn each_broken_engine_fails_the_case_that_names_its_fault() {
    let expected = [
        (Fault::InclusiveAfter, "read::scan_pages_through_everything_once"),
        (Fault::CloseDoesNothing, "commit::commit_after_close_is_closed"),
        (
            Fault::ImportStoresNothing,
            "restore::import_keeps_ids_and_checksums",
        ),
        (Fault::ForgetsAtReopen, "durability::records_survive_a_reopen"),
        (
            Fault::VerifyWithoutLooking,
            "verify::corrupted_record_is_found_by_id",
        ),
    ];
    for (fault, case) in expected {
        let failed = failed(fault, synclog_conformance::case_deadline());
        assert!(
            failed.iter().any(|c| c == case),
            "{fault:?} is not caught by {case}: failed {failed:?}"
        );
    }
}

#[test]
fn an_engine_that_hangs_fails_by_the_deadline_instead_of_hanging_the_suite() {
    let began = std::time::Instant::now();
    let outcomes = synclog_conformance::check(BrokenHarness(Fault::VerifyHangs), Duration::from_millis(500))
        .expect("a probe store opens");
    let (name, outcome) = outcomes
        .iter()
        .find(|(name, _)| name == "verify::clean_store_verifies_clean")
        .expect("the case is listed");
    match outcome {
        Outcome::Failed(msg) => assert!(msg.contains("did not finish within"), "{name}: {msg}"),
        other => panic!("{name}: {other:?}"),
    }
    // Every case that verifies fails in its half second; the suite goes on and ends.
    assert!(
        began.elapsed() < Duration::from_secs(120),
        "{:?}",
        began.elapsed()
    );
}
