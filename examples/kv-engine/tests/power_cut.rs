//! The power-cut case cannot be fooled by an engine that says `PowerLoss` and does not
//! sync: the template engine, broken so that a `PowerLoss` write runs at SQLite's
//! `synchronous = NORMAL` (the WAL is not synced at commit), must fail it. (The honest
//! template passes it: `tests/conformance.rs`.)
//!
//! `harness = false`: the case starts this binary again as its crash child.
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use synclog_conformance::powercut::{self, REQUIRE_ENV};
use synclog_conformance::{check_cases, Harness, Location, Outcome};
use synclog_core::kv::{KvBackend, KvOp, KvStore};
use synclog_core::{Durability, LogStore, Result};
use synclog_example_kv_engine::{backend, TableKv};

/// The template's backend, whose `PowerLoss` writes are only `Process` writes.
struct SaysPowerLoss(TableKv);

impl KvBackend for SaysPowerLoss {
    fn engine(&self) -> &'static str {
        "kv-table-no-power-sync"
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn durabilities(&self) -> Vec<Durability> {
        self.0.durabilities()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(key)
    }
    fn range(&self, from: &[u8], to: &[u8], reverse: bool, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.0.range(from, to, reverse, limit)
    }
    fn write(&self, ops: Vec<KvOp>, durability: Durability) -> Result<()> {
        self.0.write(ops, durability.min(Durability::Process))
    }
    fn close(&self) -> Result<()> {
        self.0.close()
    }
}

struct BrokenHarness;

#[async_trait]
impl Harness for BrokenHarness {
    fn name(&self) -> &'static str {
        "kv-table-no-power-sync"
    }
    fn cross_process(&self) -> bool {
        true
    }
    async fn create_in(&self, dir: &Path) -> Result<Location> {
        Ok(Location::at(dir.join("logs.kv").display().to_string()))
    }
    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        Ok(Arc::new(KvStore::open(SaysPowerLoss(backend(&at.address)?))?))
    }
}

fn main() -> ExitCode {
    // Started as the crash child, `check_cases` becomes it and never returns.
    let outcomes = match check_cases(BrokenHarness, "power::", Duration::from_secs(300)) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            eprintln!("no probe store: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(why) = powercut::available() {
        if std::env::var_os(REQUIRE_ENV).is_none() {
            println!("skipped: {why}");
            return ExitCode::SUCCESS;
        }
    }
    let [(name, outcome)] = outcomes.as_slice() else {
        eprintln!("expected the one power-cut case, got {outcomes:?}");
        return ExitCode::FAILURE;
    };
    match outcome {
        Outcome::Failed(why) if why.contains("is gone") => {
            println!("{name} caught the engine that does not sync at PowerLoss: {why}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("{name} did not catch the engine that does not sync at PowerLoss: {other:?}");
            ExitCode::FAILURE
        }
    }
}
