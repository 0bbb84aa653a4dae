//! The in-memory reference engine's harness. The engine itself is
//! [`synclog_core::memory::MemoryStore`].

use std::sync::Arc;

use async_trait::async_trait;
pub use synclog_core::memory::{MemoryState, MemoryStore};
use synclog_core::{LogId, LogStore, Result};

/// The reference engine's harness: the whole of what a new engine's author writes.
#[derive(Debug, Default)]
pub struct MemoryHarness;

#[async_trait]
impl crate::Harness for MemoryHarness {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self) -> Result<crate::Location> {
        Ok(crate::Location::at(format!(
            "conformance-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        )))
    }

    async fn open(&self, at: &crate::Location) -> Result<Arc<dyn LogStore>> {
        Ok(Arc::new(MemoryStore::open_named(&at.address)))
    }

    fn faults(&self) -> crate::Faults {
        crate::Faults::ALL
    }

    async fn corrupt_record(&self, at: &crate::Location, id: LogId) -> Result<()> {
        MemoryStore::with_named(&at.address, |st| {
            if let Some(rec) = st.records.get_mut(&id) {
                rec.message.push_str(" (damaged)");
            }
        });
        Ok(())
    }

    async fn remove_record(&self, at: &crate::Location, id: LogId) -> Result<()> {
        MemoryStore::with_named(&at.address, |st| st.records.remove(&id));
        Ok(())
    }

    async fn destroy(&self, at: &crate::Location) -> Result<()> {
        MemoryStore::drop_named(&at.address);
        Ok(())
    }

    async fn cleanup(&self, at: &crate::Location) -> Result<()> {
        MemoryStore::drop_named(&at.address);
        Ok(())
    }
}
