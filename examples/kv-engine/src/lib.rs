//! A template engine over an ordered key-value map (here a SQLite table): put your store's
//! calls in the five methods; `KvStore` gives the rest, `tests/conformance.rs` proves it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use synclog_core::kv::{KvBackend, KvOp, KvStore};
use synclog_core::{Durability, Error, Result};

/// The backend: one connection, its file's path.
pub struct TableKv {
    conn: Mutex<Option<Connection>>,
    path: PathBuf,
}

/// Opens (creating it if needed) the store in the file at `path`.
pub fn open(path: impl AsRef<Path>) -> Result<KvStore<TableKv>> {
    KvStore::open(backend(path)?)
}

/// The backend alone, for wrapping (`tests/power_cut.rs` wraps it to break it).
pub fn backend(path: impl AsRef<Path>) -> Result<TableKv> {
    let path = path.as_ref().to_path_buf();
    let conn = Connection::open(&path).map_err(|e| fail(&path, e))?;
    // Held exclusively while open (KvBackend's rule): a second handle or process fails.
    let schema = "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; BEGIN EXCLUSIVE; \
                  CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID; COMMIT;";
    conn.execute_batch(schema).map_err(|e| fail(&path, e))?;
    let conn = Mutex::new(Some(conn));
    Ok(TableKv { conn, path })
}

fn fail(path: &Path, e: rusqlite::Error) -> Error {
    Error::Backend {
        engine: "kv-table",
        context: path.display().to_string(),
        source: Box::new(e),
    }
}

impl TableKv {
    fn with<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_ref().ok_or_else(|| Error::Closed {
            store: self.describe(),
        })?;
        f(conn).map_err(|e| fail(&self.path, e))
    }
}

impl KvBackend for TableKv {
    fn engine(&self) -> &'static str {
        "kv-table"
    }
    fn describe(&self) -> String {
        format!("kv-table://{}", self.path.display())
    }
    fn durabilities(&self) -> Vec<Durability> {
        vec![Durability::Buffered, Durability::Process, Durability::PowerLoss]
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT v FROM kv WHERE k = ?1";
        self.with(|c| c.query_row(sql, [key], |r| r.get(0)).optional())
    }
    fn range(&self, from: &[u8], to: &[u8], reverse: bool, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let order = if reverse { "DESC" } else { "ASC" };
        let sql = format!("SELECT k, v FROM kv WHERE k >= ?1 AND k < ?2 ORDER BY k {order} LIMIT ?3");
        self.with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![from, to, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }
    fn write(&self, ops: Vec<KvOp>, durability: Durability) -> Result<()> {
        // FULL syncs the WAL at every commit; NORMAL survives a killed process, not a power cut.
        let sync = if durability == Durability::PowerLoss {
            "FULL"
        } else {
            "NORMAL"
        };
        self.with(|c| {
            c.pragma_update(None, "synchronous", sync)?;
            let tx = c.unchecked_transaction()?;
            for op in &ops {
                match op {
                    KvOp::Put(k, v) => {
                        tx.execute("INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)", params![k, v])?
                    }
                    KvOp::Delete(k) => tx.execute("DELETE FROM kv WHERE k = ?1", [k])?,
                };
            }
            tx.commit()
        })
    }
    fn close(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        conn.map_or(Ok(()), |c| c.close().map_err(|(_, e)| fail(&self.path, e)))
    }
}
