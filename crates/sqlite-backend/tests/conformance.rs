//! The conformance suite against the SQLite engine.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use synclog_conformance::{Faults, Harness, Location};
use synclog_core::{Error, LogId, LogStore, Result};
use synclog_sqlite::SqliteStore;

struct SqliteHarness;

fn side_connection(at: &Location) -> Result<Connection> {
    Connection::open(&at.address).map_err(|e| Error::Backend {
        engine: "sqlite",
        context: format!("opening {} behind the store's back", at.address),
        source: Box::new(e),
    })
}

fn exec(at: &Location, sql: &str, id: LogId) -> Result<()> {
    let n = side_connection(at)?
        .execute(sql, [id.get() as i64])
        .map_err(|e| Error::Backend {
            engine: "sqlite",
            context: sql.into(),
            source: Box::new(e),
        })?;
    assert_eq!(n, 1, "{sql} touched {n} rows");
    Ok(())
}

#[async_trait::async_trait]
impl Harness for SqliteHarness {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn create_in(&self, dir: &Path) -> Result<Location> {
        Ok(Location::at(dir.join("logs.db").to_string_lossy()))
    }

    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        Ok(Arc::new(SqliteStore::open(&at.address)?))
    }

    fn faults(&self) -> Faults {
        Faults::ALL
    }

    fn cross_process(&self) -> bool {
        true
    }

    async fn corrupt_record(&self, at: &Location, id: LogId) -> Result<()> {
        exec(
            at,
            "UPDATE logs SET message = message || ' (damaged)' WHERE id = ?1",
            id,
        )
    }

    async fn remove_record(&self, at: &Location, id: LogId) -> Result<()> {
        exec(at, "DELETE FROM logs WHERE id = ?1", id)
    }

    async fn destroy(&self, at: &Location) -> Result<()> {
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", at.address);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("deleting {path}"), e)),
            }
        }
        Ok(())
    }
}

synclog_conformance::conformance_main!(SqliteHarness);
