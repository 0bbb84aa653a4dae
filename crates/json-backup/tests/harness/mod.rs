//! The JSON-lines engine's conformance harness, shared by the plain and the rotating runs.

use std::path::Path;
use std::sync::Arc;

use synclog_conformance::{Faults, Harness, Location};
use synclog_core::{Error, LogId, LogStore, Result};
use synclog_json::fs::RealFs;
use synclog_json::{JsonOptions, JsonStore};

/// The JSON engine under the suite; with `rotate_after_bytes`, it rotates while the cases
/// run, so they read, verify, restore and crash across sealed segments.
pub struct JsonHarness {
    pub name: &'static str,
    pub rotate_after_bytes: Option<u64>,
}

/// The store's files at `at`: sealed segments (in order) and the active file.
fn files(at: &Location) -> Result<Vec<std::path::PathBuf>> {
    synclog_json::store_files(&at.address)
}

/// Rewrites every file of the store, passing each record line (as JSON) through `edit`;
/// `None` drops it.
fn rewrite(at: &Location, edit: impl Fn(serde_json::Value) -> Option<serde_json::Value>) -> Result<()> {
    for file in files(at)? {
        rewrite_file(&file, &edit)?;
    }
    Ok(())
}

fn rewrite_file(
    file: &std::path::Path,
    edit: &impl Fn(serde_json::Value) -> Option<serde_json::Value>,
) -> Result<()> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io("reading", e))?;
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(line);
        } else {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| Error::corrupt("test", e.to_string()))?;
            match edit(v) {
                Some(v) => out.push_str(&v.to_string()),
                None => continue,
            }
        }
        out.push('\n');
    }
    std::fs::write(file, out).map_err(|e| Error::io("writing", e))
}

#[async_trait::async_trait]
impl Harness for JsonHarness {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn create_in(&self, dir: &Path) -> Result<Location> {
        Ok(Location::at(dir.join("logs.jsonl").to_string_lossy()))
    }

    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
        let options = JsonOptions {
            rotate_after_bytes: self.rotate_after_bytes,
            ..JsonOptions::default()
        };
        Ok(Arc::new(JsonStore::open_with(
            &at.address,
            options,
            Arc::new(RealFs),
        )?))
    }

    fn faults(&self) -> Faults {
        Faults::ALL
    }

    fn cross_process(&self) -> bool {
        true
    }

    async fn corrupt_record(&self, at: &Location, id: LogId) -> Result<()> {
        rewrite(at, |mut v| {
            if v["id"] == id.get() {
                v["message"] = "damaged behind the store's back".into();
            }
            Some(v)
        })
    }

    async fn remove_record(&self, at: &Location, id: LogId) -> Result<()> {
        rewrite(at, |v| (v["id"] != id.get()).then_some(v))
    }

    /// Deletes the store's files and its high-water mark (`<file>.hwm`, which keeps ids
    /// from being handed out again: with it gone, the store is new).
    async fn destroy(&self, at: &Location) -> Result<()> {
        for file in files(at)? {
            std::fs::remove_file(file).map_err(|e| Error::io("deleting", e))?;
        }
        match std::fs::remove_file(format!("{}.hwm", at.address)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("deleting", e)),
            _ => Ok(()),
        }
    }
}
