//! The conformance suite against the guarded store: SQLite primary, JSON-lines backup.

use std::path::Path;
use std::sync::Arc;

use synclog::{Error, GuardedOptions, LogId, LogStore, Result};
use synclog_conformance::{Faults, Harness, Location};

struct GuardedHarness;

fn primary(at: &Location) -> String {
    format!("{}/primary.db", at.address)
}

fn backup(at: &Location) -> String {
    format!("{}/backup.jsonl", at.address)
}

fn sql(at: &Location, statement: &str, id: LogId) -> Result<()> {
    let conn = rusqlite::Connection::open(primary(at)).map_err(|e| Error::Backend {
        engine: "sqlite",
        context: "opening behind the store's back".into(),
        source: Box::new(e),
    })?;
    conn.execute(statement, [id.get() as i64])
        .map_err(|e| Error::Backend {
            engine: "sqlite",
            context: statement.into(),
            source: Box::new(e),
        })?;
    Ok(())
}

#[async_trait::async_trait]
impl Harness for GuardedHarness {
    fn name(&self) -> &'static str {
        "guarded"
    }

    async fn create_in(&self, dir: &Path) -> Result<Location> {
        let at = dir.join("guarded");
        std::fs::create_dir(&at).map_err(|e| Error::io("creating the store's directory", e))?;
        Ok(Location::at(at.to_string_lossy()))
    }

    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        let guarded = synclog::open_guarded(
            &format!("sqlite://{}", primary(at)),
            &format!("json://{}", backup(at)),
            GuardedOptions::default(),
        )
        .await?;
        Ok(Arc::new(guarded) as Arc<dyn LogStore>)
    }

    fn faults(&self) -> Faults {
        Faults::ALL
    }

    fn cross_process(&self) -> bool {
        true
    }

    /// Damages the primary's copy only: verify must still find it.
    async fn corrupt_record(&self, at: &Location, id: LogId) -> Result<()> {
        sql(
            at,
            "UPDATE logs SET message = message || ' (damaged)' WHERE id = ?1",
            id,
        )
    }

    /// Removes the record from both copies (from one, the guard would restore it).
    async fn remove_record(&self, at: &Location, id: LogId) -> Result<()> {
        sql(at, "DELETE FROM logs WHERE id = ?1", id)?;
        let path = backup(at);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading the backup", e))?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{{\"id\":{},", id.get())))
            .collect();
        std::fs::write(&path, kept.join("\n") + "\n").map_err(|e| Error::io("writing the backup", e))
    }

    async fn destroy(&self, at: &Location) -> Result<()> {
        // The backup's high-water mark is part of its storage: with it kept, the backup
        // would (rightly) report the ids it handed out as gone. So are the pair's
        // watermark and lock (which carries the next id between processes).
        for f in [
            "primary.db",
            "primary.db-wal",
            "primary.db-shm",
            "primary.db.guard",
            "primary.db.guard.lock",
            "backup.jsonl",
            "backup.jsonl.hwm",
        ] {
            let p = Path::new(&at.address).join(f);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(format!("deleting {}", p.display()), e))?;
            }
        }
        Ok(())
    }
}

synclog_conformance::conformance_main!(GuardedHarness);
