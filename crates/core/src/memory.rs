//! The in-memory reference engine: the simplest store that keeps the whole contract.
//!
//! Its data lives in the process, shared by name, so a "reopen" in the same process sees
//! it. It accepts only [`Durability::Buffered`] and says so for the stronger levels.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use crate::follow::CommitSignal;
use crate::retention::{Applied, PruneMarker, Pruned};
use crate::run::{seal_batch, Committed, Planner, ScanKeys};
use crate::validate::{ValidBatch, ValidRecords};
use crate::verify::Verifier;
use crate::{
    Capabilities, Durability, Error, ImportReport, LogId, LogRecord, LogStore, Result, Scan, VerifyOptions,
    VerifyReport,
};
use async_trait::async_trait;
use chrono::Utc;

/// What a named memory store holds.
#[derive(Debug, Default)]
pub struct MemoryState {
    /// The records by id.
    pub records: BTreeMap<LogId, LogRecord>,
    /// The largest id ever assigned or imported.
    pub high_water: u64,
    /// Wakes followers after each commit.
    pub signal: CommitSignal,
    /// The prune markers, oldest first.
    pub prunes: Vec<PruneMarker>,
}

type Shared = Arc<Mutex<MemoryState>>;

fn registry() -> &'static Mutex<HashMap<String, Shared>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Shared>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// A [`LogStore`] in memory.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    state: Shared,
    closed: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    /// A private, empty store.
    pub fn new() -> MemoryStore {
        MemoryStore {
            name: "memory".into(),
            state: Shared::default(),
            closed: Default::default(),
        }
    }

    /// The store registered under `name` in this process, created empty on first use.
    pub fn open_named(name: &str) -> MemoryStore {
        let state = registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        MemoryStore {
            name: name.to_string(),
            state,
            closed: Default::default(),
        }
    }

    /// Runs `f` on the state registered under `name` (for fault hooks), if it exists.
    pub fn with_named<R>(name: &str, f: impl FnOnce(&mut MemoryState) -> R) -> Option<R> {
        let shared = registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()?;
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        Some(f(&mut state))
    }

    /// Forgets the store registered under `name`.
    pub fn drop_named(name: &str) {
        registry().lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Closed {
                store: self.describe(),
            });
        }
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn check_durability(d: Durability) -> Result<()> {
        if d > Durability::Buffered {
            return Err(Error::Unsupported {
                engine: "memory",
                what: format!("{d:?} durability (it keeps nothing outside the process)"),
            });
        }
        Ok(())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl LogStore for MemoryStore {
    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: "memory",
            multi_process: false,
            persistent: false,
            checkpoint: false,
            deep_verify: false,
            repair: true,
            prune: true,
            durability: vec![Durability::Buffered],
        }
    }

    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        Self::check_durability(durability)?;
        let mut st = self.state()?;
        let now = Utc::now();
        let mut next = st
            .high_water
            .max(st.records.keys().next_back().map_or(0, |k| k.get()))
            + 1;
        let records = &st.records;
        let mut keys = ScanKeys(|| Box::new(records.values()) as Box<dyn Iterator<Item = &LogRecord>>);
        let done = seal_batch(&mut Planner::new(), &batch, &mut keys, &mut |log| {
            LogRecord::seal_next("memory", &mut next, now, log)
        })??;
        for rec in done.new_records() {
            st.records.insert(rec.id, rec.clone());
        }
        st.high_water = next - 1;
        st.signal.committed_records(done.new_records());
        Ok(done)
    }

    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        Ok(self.state()?.records.get(&id).cloned())
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        let limit = scan.effective_limit()?;
        let st = self.state()?;
        let matching = st.records.values().filter(|r| scan.matches(r));
        Ok(if scan.descending {
            matching.rev().take(limit).cloned().collect()
        } else {
            matching.take(limit).cloned().collect()
        })
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        Ok(self.state()?.records.keys().next_back().copied())
    }

    async fn high_water(&self) -> Result<Option<LogId>> {
        let st = self.state()?;
        let last = st.records.keys().next_back().map_or(0, |k| k.get());
        Ok(LogId::new(st.high_water.max(last)))
    }

    /// This process's commits, with their records (a memory store has no other process).
    async fn commit_watch(&self) -> Result<crate::follow::CommitWatch> {
        let signal = self.state()?.signal.clone();
        signal.watch(None).await
    }

    async fn sync(&self, level: Durability) -> Result<()> {
        Self::check_durability(level)?;
        self.state().map(|_| ())
    }

    async fn verify(&self, _options: VerifyOptions) -> Result<VerifyReport> {
        let st = self.state()?;
        let mut v = Verifier::new();
        v.prunes(st.prunes.clone());
        for rec in st.records.values() {
            v.check(&rec.view(), rec.checksum, || format!("log {}", rec.id));
        }
        Ok(v.finish())
    }

    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        Self::check_durability(durability)?;
        let mut st = self.state()?;
        let mut report = ImportReport::default();
        let mut top = None;
        let pruned = Pruned::of(&st.prunes);
        for rec in records {
            if pruned.contains(rec.id) {
                report.pruned += 1;
                continue;
            }
            match st.records.get(&rec.id) {
                Some(stored) => report.note_existing(rec.id, stored.checksum, rec.checksum),
                None => {
                    st.high_water = st.high_water.max(rec.id.get());
                    top = top.max(Some(rec.id));
                    st.records.insert(rec.id, rec);
                    report.inserted += 1;
                }
            }
        }
        if let Some(top) = top {
            st.signal.committed(top);
        }
        Ok(report)
    }

    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        Self::check_durability(durability)?;
        let mut st = self.state()?;
        let mut report = ImportReport::default();
        let pruned = Pruned::of(&st.prunes);
        for rec in records {
            if pruned.contains(rec.id) {
                report.pruned += 1;
                continue;
            }
            match st.records.get(&rec.id) {
                Some(stored) if stored.is_intact() => {
                    report.note_existing(rec.id, stored.checksum, rec.checksum)
                }
                Some(_) => {
                    st.records.insert(rec.id, rec);
                    report.replaced += 1;
                }
                None => {
                    st.high_water = st.high_water.max(rec.id.get());
                    st.records.insert(rec.id, rec);
                    report.inserted += 1;
                }
            }
        }
        Ok(report)
    }

    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        Ok(self.state()?.prunes.clone())
    }

    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        crate::retention::check_marker(marker)?;
        Self::check_durability(durability)?;
        let mut st = self.state()?;
        let already_marked = st.prunes.contains(marker);
        if !already_marked {
            st.prunes.push(marker.clone());
        }
        let before = st.records.len();
        st.records.retain(|&id, _| !marker.covers(id));
        let top = marker.last_id().map_or(0, LogId::get);
        st.high_water = st.high_water.max(top);
        Ok(Applied {
            deleted: (before - st.records.len()) as u64,
            already_marked,
        })
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}
