//! The conformance suite against the template engine: its whole harness.
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use synclog_conformance::{Harness, Location};
use synclog_core::{LogStore, Result};

struct TableHarness;

#[async_trait]
impl Harness for TableHarness {
    fn name(&self) -> &'static str {
        "kv-table"
    }
    fn cross_process(&self) -> bool {
        true
    }
    async fn create_in(&self, dir: &Path) -> Result<Location> {
        Ok(Location::at(dir.join("logs.kv").display().to_string()))
    }
    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        Ok(Arc::new(synclog_example_kv_engine::open(&at.address)?))
    }
}

synclog_conformance::conformance_main!(TableHarness);
