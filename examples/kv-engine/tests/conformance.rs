//! The conformance suite against the template engine: its whole harness.
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
    async fn create(&self) -> Result<Location> {
        let dir = tempfile::tempdir().map_err(|e| synclog_core::Error::io("making a directory", e))?;
        Ok(Location::new(
            dir.path().join("logs.kv").display().to_string(),
            dir,
        ))
    }
    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        Ok(Arc::new(synclog_example_kv_engine::open(&at.address)?))
    }
}

synclog_conformance::conformance_main!(TableHarness);
