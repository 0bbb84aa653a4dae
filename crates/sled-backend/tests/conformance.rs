//! The conformance suite against the sled engine.

use std::path::Path;
use std::sync::Arc;

use synclog_conformance::{Faults, Harness, Location};
use synclog_core::canonical;
use synclog_core::{Error, LogId, LogStore, Result};

struct SledHarness;

fn key(id: LogId) -> Vec<u8> {
    let mut k = vec![0x01];
    k.extend_from_slice(&id.get().to_be_bytes());
    k
}

/// Opens the database behind the store's back (the store is closed) and runs `f`.
fn behind(at: &Location, f: impl FnOnce(&sled::Db) -> sled::Result<()>) -> Result<()> {
    let db = sled::open(&at.address).map_err(|e| Error::Backend {
        engine: "sled",
        context: "opening behind the store's back".into(),
        source: Box::new(e),
    })?;
    f(&db)
        .and_then(|_| db.flush().map(|_| ()))
        .map_err(|e| Error::Backend {
            engine: "sled",
            context: "editing behind the store's back".into(),
            source: Box::new(e),
        })
}

#[async_trait::async_trait]
impl Harness for SledHarness {
    fn name(&self) -> &'static str {
        "sled"
    }

    async fn create_in(&self, dir: &Path) -> Result<Location> {
        Ok(Location::at(dir.join("db").to_string_lossy()))
    }

    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        Ok(Arc::new(synclog_sled::open(&at.address)?))
    }

    fn faults(&self) -> Faults {
        Faults::ALL
    }

    fn cross_process(&self) -> bool {
        true
    }

    /// Re-encodes the record with another message but its old checksum.
    async fn corrupt_record(&self, at: &Location, id: LogId) -> Result<()> {
        behind(at, |db| {
            let Some(v) = db.get(key(id))? else { return Ok(()) };
            let (body, sum) = v.split_at(v.len() - 4);
            let view = canonical::decode(body).expect("a stored record decodes");
            let damaged = canonical::RecordView {
                message: "damaged behind the store's back",
                ..view
            };
            let mut bytes = damaged.encode();
            bytes.extend_from_slice(sum);
            db.insert(key(id), bytes)?;
            Ok(())
        })
    }

    async fn remove_record(&self, at: &Location, id: LogId) -> Result<()> {
        behind(at, |db| db.remove(key(id)).map(|_| ()))
    }

    async fn destroy(&self, at: &Location) -> Result<()> {
        std::fs::remove_dir_all(&at.address).map_err(|e| Error::io("deleting", e))
    }
}

synclog_conformance::conformance_main!(SledHarness);
