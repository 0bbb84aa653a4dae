//! # synclog-sled
//!
//! A [`LogStore`] over sled 0.34.7. See the crate README for what sled itself says about
//! its stability, and how synclog lays records out in it.
//!
//! ```
//! use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synclog_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = synclog_sled::SledStore::open(dir.path().join("logs.sled"))?;
//! let rec = store.append(NewLog::new("crm-sync", Status::Succeeded)).await?;
//! assert_eq!(store.get(rec.id).await?, Some(rec));
//! store.close().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod flush;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use synclog_core::canonical::{self, Checksum};
use synclog_core::follow::CommitSignal;
use synclog_core::group::{BatchWriter, GroupCommit, GroupOptions, GroupStats};
use synclog_core::retention::{check_marker, chunk_ranges, Applied, PruneMarker, Pruned};
use synclog_core::run::{seal_group, Committed, KeyBook, Planner, Run, RunScan};
use synclog_core::validate::{validate_batch, validate_records};
use synclog_core::verify::Verifier;
use synclog_core::{
    Capabilities, Durability, Error, IdRange, ImportReport, LogId, LogRecord, LogStore, NewLog, Result, Scan,
    VerifyOptions, VerifyReport,
};

/// At most this many ids are removed per batch of a prune, so appends wait behind one
/// batch at most, not the whole prune (and a batch's memory stays bounded).
pub const PRUNE_CHUNK_IDS: u64 = 50_000;

const RECORD: u8 = 0x01;
/// Prune markers: `0x02` and a big-endian sequence number, the marker's JSON as value.
const MARKER: u8 = 0x02;
const HIGH_WATER: &[u8] = b"\x00high_water";
/// The format version of the database, big-endian `u64`. Absent: version 1 (the release
/// before runs). Version 2 records may carry run and idempotency keys. Version 3 may hold
/// prune markers (keys `0x02`…), which an older build would ignore: it would report the
/// pruned ids as missing and let an import bring the pruned records back.
const FORMAT: &[u8] = b"\x00format";
/// The format version this build writes.
pub const FORMAT_VERSION: u64 = 3;

fn key(id: u64) -> [u8; 9] {
    let mut k = [RECORD; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn marker_key(seq: u64) -> [u8; 9] {
    let mut k = [MARKER; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// A stored prune marker: its key, its stored bytes, and the marker they decode to (or why
/// they do not).
type StoredMarker = (sled::IVec, sled::IVec, Result<PruneMarker>);

/// The stored prune markers, oldest first.
fn stored_markers(db: &sled::Db, path: &Path) -> Result<Vec<StoredMarker>> {
    let mut out = Vec::new();
    for item in db.scan_prefix([MARKER]) {
        let (k, v) = item.map_err(|e| map_err(path, "reading the prune markers of", e))?;
        let location = format!(
            "sled://{} prune marker {}",
            path.display(),
            k.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or_else(
                || format!("{:?}", k.as_ref()),
                |b| u64::from_be_bytes(b).to_string()
            )
        );
        let marker = std::str::from_utf8(&v)
            .map_err(|e| Error::Corrupt {
                location: location.clone(),
                detail: format!("a prune marker is not UTF-8: {e}"),
                source: None,
            })
            .and_then(|text| PruneMarker::decode(text, &location));
        out.push((k, v, marker));
    }
    Ok(out)
}

/// The stored prune markers, oldest first; a damaged one is an error.
fn prune_markers(db: &sled::Db, path: &Path) -> Result<Vec<PruneMarker>> {
    stored_markers(db, path)?.into_iter().map(|(_, _, m)| m).collect()
}

fn id_of(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    (key.len() == 9 && key[0] == RECORD).then(|| u64::from_be_bytes(bytes))
}

/// The stored value: canonical bytes, then the checksum (big-endian u32).
fn value(rec: &LogRecord) -> Vec<u8> {
    let mut v = rec.view().encode();
    v.extend_from_slice(&rec.checksum.0.to_be_bytes());
    v
}

/// Splits a stored value into the canonical view and the stored checksum.
fn parts(v: &[u8]) -> Result<(canonical::RecordView<'_>, Checksum)> {
    if v.len() < 4 {
        return Err(Error::corrupt("sled value", "shorter than a checksum"));
    }
    let (body, sum) = v.split_at(v.len() - 4);
    let sum = Checksum(u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]));
    Ok((canonical::decode(body)?, sum))
}

fn decode(v: &[u8]) -> Result<LogRecord> {
    let (view, sum) = parts(v)?;
    LogRecord::from_view(&view, sum)
}

fn map_err(path: &Path, context: &str, e: sled::Error) -> Error {
    let resource = format!("sled://{}", path.display());
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => Error::Locked {
            resource,
            detail: "another process (or handle) has it open; sled allows one at a time".into(),
            source: Some(Box::new(io)),
        },
        sled::Error::Io(io) => Error::io(format!("{context} {resource}"), io),
        sled::Error::Unsupported(what) if what.contains("failed to open database") => Error::Corrupt {
            location: resource,
            detail: format!("sled cannot read these files (damaged, or not a sled 0.34 database): {what}"),
            source: None,
        },
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            location: resource,
            detail: format!(
                "sled reports corruption{}",
                at.map(|a| format!(" at {a:?}")).unwrap_or_default()
            ),
            source: None,
        },
        other => Error::Backend {
            engine: "sled",
            context: format!("{context} {resource}"),
            source: Box::new(other),
        },
    }
}

/// Waits, at most `wait`, until nothing holds the lock on the database's `db` file.
///
/// sled's own thread pool can keep the file (and its lock) open for a moment after the last
/// handle is dropped, so a close that returned at once could leave another process
/// unable to open the database. The probe takes the same `flock` sled takes, and releases
/// it at once.
fn wait_for_lock_release(path: &Path, wait: Duration) {
    let Ok(file) = std::fs::File::open(path.join("db")) else {
        return;
    };
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return;
            }
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(_) => return,
        }
    }
}

/// Tuning of a [`SledStore`].
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// How long to keep retrying while another process holds the database.
    pub lock_wait: Duration,
    /// Most logs in one group commit.
    pub max_group_logs: usize,
    /// Whether a lone appender on a multi-thread tokio runtime commits on its own thread,
    /// inside `tokio::task::block_in_place`, instead of handing over to the writer thread
    /// and back ([`GroupOptions::inline_lone_commits`]). On by default.
    pub inline_lone_commits: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            lock_wait: Duration::from_secs(10),
            max_group_logs: 8192,
            inline_lone_commits: true,
        }
    }
}

struct Writer {
    db: sled::Db,
    path: PathBuf,
    /// The largest id ever assigned or imported. sled admits one process, so after open
    /// this writer is the only one that changes it.
    high_water: u64,
    /// One-record commits since the high-water key was last stored (see
    /// [`SAVE_HIGH_WATER_EVERY`]); while non-zero, the key lags `high_water`.
    unsaved_singles: u64,
    /// The run and idempotency keys of the stored records, read from the whole database the
    /// first time they are needed (sled has no secondary index here), then kept up to date
    /// by this writer, the only one (sled admits one process).
    book: Option<KeyBook>,
    /// The ids the stored prune markers cover, read on first use, then kept up to date by
    /// this writer: what imports and repairs skip.
    pruned: Option<Pruned>,
    /// What `PowerLoss` syncs beyond sled's `flush` (shared with [`SledStore::sync`]).
    power: Arc<Mutex<flush::PowerSync>>,
}

/// How many one-record commits may pass before the high-water key is stored again. A
/// lagging key costs nothing after a crash (opening takes the larger of it and the last
/// id); it matters only if the newest records are also deleted behind the store's back.
/// Batches and imports store it every time, and a clean close stores it. Storing it with
/// every record would double what each lone append writes and flushes.
const SAVE_HIGH_WATER_EVERY: u64 = 1000;

impl Writer {
    /// Reads the high-water mark from the database (at open).
    fn load_high_water(&self) -> Result<u64> {
        let hw = self
            .db
            .get(HIGH_WATER)
            .map_err(|e| map_err(&self.path, "reading", e))?
            .map(|v| {
                let mut b = [0u8; 8];
                b.copy_from_slice(v.get(..8).unwrap_or(&[0; 8]));
                u64::from_be_bytes(b)
            })
            .unwrap_or(0);
        let last = self
            .db
            .range(key(0)..=key(u64::MAX))
            .next_back()
            .transpose()
            .map_err(|e| map_err(&self.path, "reading", e))?
            .and_then(|(k, _)| id_of(&k))
            .unwrap_or(0);
        // The prune batch stores the high-water key too; this is for a key lost anyway. A
        // damaged marker counts for nothing here (verify reports it).
        let pruned = stored_markers(&self.db, &self.path)?
            .into_iter()
            .filter_map(|(_, _, m)| m.ok()?.last_id())
            .map(LogId::get)
            .max()
            .unwrap_or(0);
        Ok(hw.max(last).max(pruned))
    }

    /// The ids the stored markers cover (read once).
    fn pruned(&mut self) -> Result<&Pruned> {
        if self.pruned.is_none() {
            let markers = prune_markers(&self.db, &self.path)?;
            self.pruned = Some(Pruned::of(&markers));
        }
        self.pruned.as_ref().ok_or_else(|| Error::Backend {
            engine: "sled",
            context: format!("the prune markers of {}", self.path.display()),
            source: "not read".into(),
        })
    }

    /// One atomic batch of a prune: with `first`, stores `marker` (unless stored) and
    /// raises the high-water key to its last id; removes the records of `ranges` (at most
    /// [`PRUNE_CHUNK_IDS`] ids).
    fn apply_prune(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        ranges: &[IdRange],
        durability: Durability,
    ) -> Result<Applied> {
        let mut batch = sled::Batch::default();
        let mut already_marked = false;
        let mut top = self.high_water;
        if first {
            let stored = stored_markers(&self.db, &self.path)?;
            already_marked = stored
                .iter()
                .any(|(_, _, m)| m.as_ref().is_ok_and(|m| m == marker));
            if !already_marked {
                let seq = match stored.last() {
                    None => 1,
                    Some((k, _, _)) => {
                        let n: [u8; 8] = k.get(1..9).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                            Error::corrupt(
                                format!("sled://{}", self.path.display()),
                                "a prune marker's key is malformed; nothing was pruned",
                            )
                        })?;
                        u64::from_be_bytes(n) + 1
                    }
                };
                batch.insert(&marker_key(seq)[..], marker.encode().as_bytes());
            }
            top = top.max(marker.last_id().map_or(0, LogId::get));
        }
        let mut deleted = 0u64;
        for range in ranges {
            for item in self
                .db
                .range(key(range.first.get())..=key(range.last.get()))
                .keys()
            {
                let k = item.map_err(|e| map_err(&self.path, "reading", e))?;
                batch.remove(k);
                deleted += 1;
            }
        }
        if (!first || already_marked) && deleted == 0 && top == self.high_water {
            flush::flush(&self.db, &self.power, durability)?;
            return Ok(Applied {
                deleted,
                already_marked,
            });
        }
        batch.insert(HIGH_WATER, &top.to_be_bytes()[..]);
        self.apply(batch, durability)?;
        self.high_water = top;
        self.unsaved_singles = 0;
        if first && !already_marked {
            // Read afresh (with the new marker) when next needed.
            self.pruned = None;
        }
        if deleted > 0 {
            // The book would name records that are gone: fill it afresh when next needed.
            self.book = None;
        }
        Ok(Applied {
            deleted,
            already_marked,
        })
    }

    /// Removes what a stored marker covers and is still there (a prune cut off between
    /// its batches), chunk by chunk as a prune does. Returns how many records went.
    fn finish_cut_off_prunes(&mut self) -> Result<u64> {
        let mut deleted = 0;
        for (_, _, marker) in stored_markers(&self.db, &self.path)? {
            // A damaged marker removes nothing (verify reports it).
            let Ok(marker) = marker else { continue };
            let left = marker.ranges.iter().any(|r| {
                self.db
                    .range(key(r.first.get())..=key(r.last.get()))
                    .next()
                    .is_some()
            });
            if !left {
                continue;
            }
            for ranges in chunk_ranges(&marker.ranges, PRUNE_CHUNK_IDS) {
                deleted += self
                    .apply_prune(&marker, false, &ranges, Durability::PowerLoss)?
                    .deleted;
            }
            tracing::warn!(path = %self.path.display(), marker = %marker.name(),
                "a prune cut off between its batches was finished");
        }
        Ok(deleted)
    }

    fn apply(&self, batch: sled::Batch, durability: Durability) -> Result<()> {
        self.db
            .apply_batch(batch)
            .map_err(|e| map_err(&self.path, "writing to", e))?;
        flush::flush(&self.db, &self.power, durability)
    }

    fn import(&mut self, records: &[LogRecord], durability: Durability) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let mut batch = sled::Batch::default();
        let mut fresh = std::collections::HashMap::new();
        // Only what is written goes in the book: not conflicts, not records already there.
        let mut written = Vec::new();
        let mut max = self.high_water;
        let pruned = self.pruned()?.clone();
        for rec in records {
            if pruned.contains(rec.id) {
                report.pruned += 1;
                continue;
            }
            let stored = match fresh.get(&rec.id) {
                Some(c) => Some(*c),
                None => self
                    .db
                    .get(key(rec.id.get()))
                    .map_err(|e| map_err(&self.path, "reading", e))?
                    .map(|v| parts(&v).map(|p| p.1))
                    .transpose()?,
            };
            match stored {
                Some(stored) => report.note_existing(rec.id, stored, rec.checksum),
                None => {
                    batch.insert(&key(rec.id.get())[..], value(rec));
                    fresh.insert(rec.id, rec.checksum);
                    written.push(rec.clone());
                    max = max.max(rec.id.get());
                    report.inserted += 1;
                }
            }
        }
        if report.inserted > 0 {
            batch.insert(HIGH_WATER, &max.to_be_bytes()[..]);
            self.apply(batch, durability)?;
            self.high_water = max;
            self.unsaved_singles = 0;
            self.note(&written);
        }
        Ok(report)
    }
}

/// Reads record `id` (decoded; its checksum not checked).
fn read(db: &sled::Db, path: &Path, id: LogId) -> Result<Option<LogRecord>> {
    db.get(key(id.get()))
        .map_err(|e| map_err(path, "reading", e))?
        .map(|v| decode(&v))
        .transpose()
}

/// Refuses a database of a newer format (nothing written); with `upgrade`, marks an older
/// one as this format (one key, flushed).
fn check_format(db: &sled::Db, path: &Path, upgrade: bool) -> Result<()> {
    let stored = db
        .get(FORMAT)
        .map_err(|e| map_err(path, "reading", e))?
        .map(|v| {
            <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    Error::corrupt(
                        format!("sled://{}", path.display()),
                        "the format key is not 8 bytes",
                    )
                })
        })
        .transpose()?
        .unwrap_or(1);
    if stored > FORMAT_VERSION {
        return Err(Error::Unsupported {
            engine: "sled",
            what: format!(
                "format version {stored} of sled://{} (this synclog knows {FORMAT_VERSION}); upgrade synclog",
                path.display()
            ),
        });
    }
    if upgrade && stored < FORMAT_VERSION {
        db.insert(FORMAT, &FORMAT_VERSION.to_be_bytes()[..])
            .and_then(|_| db.flush())
            .map_err(|e| map_err(path, "upgrading the format of", e))?;
    }
    Ok(())
}

fn book_missing(path: &Path) -> Error {
    Error::Backend {
        engine: "sled",
        context: format!("the key book of {}", path.display()),
        source: "not filled".into(),
    }
}

impl Writer {
    /// Reads every record once to fill the book of keys, if it is not filled yet.
    fn fill_book(&mut self) -> Result<()> {
        if self.book.is_some() {
            return Ok(());
        }
        let mut book = KeyBook::new();
        for item in self.db.scan_prefix([RECORD]) {
            let (_, v) = item.map_err(|e| map_err(&self.path, "reading", e))?;
            // A record that does not decode has no keys anyone can use; verify reports it.
            if let Ok(rec) = decode(&v) {
                book.note(&rec);
            }
        }
        self.book = Some(book);
        Ok(())
    }

    /// Notes imported or repaired records in the book, if it is filled.
    fn note(&mut self, records: &[LogRecord]) {
        if let Some(book) = &mut self.book {
            records.iter().for_each(|r| book.note(r));
        }
    }

    /// The record under idempotency key `key`.
    fn find_idempotent(&mut self, key: &str) -> Result<Option<LogRecord>> {
        self.fill_book()?;
        let book = self.book.as_ref().ok_or_else(|| book_missing(&self.path))?;
        match book.idempotent(key) {
            Some(id) => read(&self.db, &self.path, id),
            None => Ok(None),
        }
    }

    /// The records of run `run`, in id order.
    fn run_records(&mut self, run: &str) -> Result<Vec<LogRecord>> {
        self.fill_book()?;
        let book = self.book.as_ref().ok_or_else(|| book_missing(&self.path))?;
        let mut out = Vec::new();
        for id in book.run_ids(run) {
            out.extend(read(&self.db, &self.path, *id)?);
        }
        Ok(out)
    }

    /// Runs matching `scan`.
    fn runs(&mut self, scan: &RunScan, limit: usize) -> Result<Vec<Run>> {
        self.fill_book()?;
        let book = self.book.as_ref().ok_or_else(|| book_missing(&self.path))?;
        book.select_runs(scan, limit, |id| read(&self.db, &self.path, id))
    }

    /// Imports records, replacing stored values that are damaged (undecodable, or whose
    /// fields no longer give their stored checksum). See [`LogStore::repair`].
    fn repair(&mut self, records: &[LogRecord], durability: Durability) -> Result<ImportReport> {
        let mut written = Vec::new();
        let mut report = ImportReport::default();
        let mut batch = sled::Batch::default();
        let mut max = self.high_water;
        let pruned = self.pruned()?.clone();
        for rec in records {
            if pruned.contains(rec.id) {
                report.pruned += 1;
                continue;
            }
            let stored = self
                .db
                .get(key(rec.id.get()))
                .map_err(|e| map_err(&self.path, "reading", e))?;
            let intact = stored.as_deref().map(|v| match parts(v) {
                Ok((view, sum)) if view.checksum() == sum => Some(sum),
                _ => None,
            });
            match intact {
                Some(Some(sum)) => {
                    report.note_existing(rec.id, sum, rec.checksum);
                    continue;
                }
                Some(None) => report.replaced += 1,
                None => report.inserted += 1,
            }
            written.push(rec.clone());
            batch.insert(&key(rec.id.get())[..], value(rec));
            max = max.max(rec.id.get());
        }
        if report.inserted + report.replaced > 0 {
            batch.insert(HIGH_WATER, &max.to_be_bytes()[..]);
            self.apply(batch, durability)?;
            self.high_water = max;
            self.unsaved_singles = 0;
            self.note(&written);
        }
        Ok(report)
    }
}

impl BatchWriter for Writer {
    fn commit_group(
        &mut self,
        batches: &[&[NewLog]],
        durability: Durability,
    ) -> Result<Vec<Result<Committed>>> {
        let mut next = self.high_water + 1;
        let now = Utc::now();
        let mut seal = |log: &NewLog| LogRecord::seal_next("sled", &mut next, now, log);
        let outcomes = if Planner::any_keys(batches.iter().copied()) {
            self.fill_book()?;
            let (db, path) = (&self.db, &self.path);
            let book = self.book.as_ref().ok_or_else(|| book_missing(path))?;
            let mut keys = book.keys(|id| read(db, path, id));
            seal_group(batches, Some(&mut keys), &mut seal)?
        } else {
            seal_group(batches, None, &mut seal)?
        };
        let written: Vec<&LogRecord> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .flat_map(Committed::new_records)
            .collect();
        if written.is_empty() {
            // Only repeats (or refusals): the records repeated may have been written at a
            // weaker durability; answer at this group's.
            if outcomes.iter().any(|o| o.is_ok()) {
                flush::flush(&self.db, &self.power, durability)?;
            }
            return Ok(outcomes);
        }
        let last = next - 1;
        if let [one] = written.as_slice() {
            // One record needs no batch to be atomic, and sled's batches cost a third of
            // the throughput. The high-water key may lag after a crash; opening takes the
            // larger of it and the last id.
            let e = |err| map_err(&self.path, "writing to", err);
            self.db.insert(key(last), value(one)).map_err(e)?;
            self.unsaved_singles += 1;
            if self.unsaved_singles >= SAVE_HIGH_WATER_EVERY {
                self.db.insert(HIGH_WATER, &last.to_be_bytes()[..]).map_err(e)?;
                self.unsaved_singles = 0;
            }
            flush::flush(&self.db, &self.power, durability)?;
        } else {
            let mut batch = sled::Batch::default();
            for rec in &written {
                batch.insert(&key(rec.id.get())[..], value(rec));
            }
            batch.insert(HIGH_WATER, &last.to_be_bytes()[..]);
            self.apply(batch, durability)?;
            self.unsaved_singles = 0;
        }
        self.high_water = last;
        if let Some(book) = &mut self.book {
            written.iter().for_each(|r| book.note(r));
        }
        Ok(outcomes)
    }

    fn close(&mut self) -> Result<()> {
        if self.unsaved_singles > 0 {
            self.db
                .insert(HIGH_WATER, &self.high_water.to_be_bytes()[..])
                .map_err(|e| map_err(&self.path, "writing to", e))?;
            self.unsaved_singles = 0;
        }
        // A clean close leaves everything as durable as the strongest level, and lets go
        // of the data file.
        flush::flush(&self.db, &self.power, Durability::PowerLoss)?;
        flush::release(&self.power);
        Ok(())
    }
}

/// A [`LogStore`] over one sled database directory.
pub struct SledStore {
    path: PathBuf,
    db: Mutex<Option<sled::Db>>,
    group: Arc<GroupCommit<Writer>>,
    lock_wait: Duration,
    /// Opened with [`SledStore::open_read_only`]: every write is refused.
    read_only: bool,
    closed: AtomicBool,
    /// Wakes followers after each commit and import (sled has no other process).
    signal: CommitSignal,
    /// What `PowerLoss` syncs beyond sled's `flush` (shared with the writer).
    power: Arc<Mutex<flush::PowerSync>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("path", &self.path).finish()
    }
}

impl SledStore {
    /// Opens (creating) the database directory at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore> {
        Self::open_with(path, SledOptions::default())
    }

    /// Opens with options. A database held by another process is retried for
    /// `lock_wait`, then refused as [`Error::Locked`]; sled-reported corruption is
    /// [`Error::Corrupt`].
    pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<SledStore> {
        Self::open_inner(path.as_ref(), options, false)
    }

    /// Opens; a `read_only` open leaves an older format as it is (nothing written).
    fn open_inner(path: &Path, options: SledOptions, read_only: bool) -> Result<SledStore> {
        let path = path.to_path_buf();
        let deadline = Instant::now() + options.lock_wait;
        let mut pause = Duration::from_millis(5);
        let db = loop {
            match sled::Config::new().path(&path).open() {
                Ok(db) => break db,
                Err(e) => {
                    let err = map_err(&path, "opening", e);
                    if err.kind() == synclog_core::ErrorKind::Locked && Instant::now() + pause < deadline {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(100));
                        continue;
                    }
                    return Err(err);
                }
            }
        };
        let power = Arc::new(flush::PowerSync::new(&path));
        let mut writer = Writer {
            power: Arc::clone(&power),
            db: db.clone(),
            path: path.clone(),
            high_water: 0,
            unsaved_singles: 0,
            book: None,
            pruned: None,
        };
        check_format(&db, &path, !read_only)?;
        writer.high_water = writer.load_high_water()?;
        if !read_only {
            writer.finish_cut_off_prunes()?;
        }
        let group = Arc::new(GroupCommit::spawn(
            writer,
            GroupOptions {
                thread_name: "synclog-sled-writer".into(),
                max_group_logs: options.max_group_logs,
                inline_lone_commits: options.inline_lone_commits,
                ..GroupOptions::default()
            },
        )?);
        Ok(SledStore {
            path,
            db: Mutex::new(Some(db)),
            group,
            lock_wait: options.lock_wait,
            read_only: false,
            closed: AtomicBool::new(false),
            signal: CommitSignal::new(),
            power,
        })
    }

    /// Opens the existing database at `path` for reading. sled has no read-only mode and
    /// admits one process at a time, even for reading: so this tries once, without
    /// waiting, and a database another process has open (a writer) is [`Error::Locked`],
    /// saying that sled cannot be read beside a writer. While this handle is open it holds
    /// sled's lock like any handle (a writer that comes meanwhile waits for it up to its
    /// own lock wait); close it soon. A missing database is [`Error::StoreNotFound`], and
    /// nothing is created. Writes through the handle (`commit`, `import`, `repair`,
    /// `sync`) fail with [`Error::Unsupported`] and write nothing.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SledStore> {
        let path = path.as_ref().to_path_buf();
        let resource = format!("sled://{}", path.display());
        match std::fs::metadata(path.join("db")) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(Error::StoreNotFound {
                    store: resource,
                    detail: "a read-only open creates nothing; check the path, or append to create the store"
                        .into(),
                })
            }
            Err(e) => return Err(Error::io(format!("inspecting {resource}"), e)),
        }
        let mut store = Self::open_inner(
            &path,
            SledOptions {
                lock_wait: Duration::ZERO,
                ..SledOptions::default()
            },
            true,
        )
        .map_err(|e| match e {
            Error::Locked { source, .. } => Error::Locked {
                resource: resource.clone(),
                detail: "sled cannot be read beside a writer: another process has the database open, \
                         and sled admits one process at a time, even a reader; stop the writer, or read \
                         a copy (`synclog export`)"
                    .into(),
                source,
            },
            other => other,
        })?;
        store.read_only = true;
        // Closing waits (bounded) for sled's threads to let go of the lock, so that a writer
        // that comes next finds it free.
        store.lock_wait = SledOptions::default().lock_wait;
        Ok(store)
    }

    /// Whether this handle was opened with [`SledStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Refuses a write (`what`) through a read-only handle.
    fn check_writable(&self, what: &str) -> Result<()> {
        if self.read_only {
            return Err(Error::read_only("sled", &self.describe(), what));
        }
        Ok(())
    }

    /// Group-commit counters.
    pub fn group_stats(&self) -> GroupStats {
        self.group.stats()
    }

    fn db(&self) -> Result<sled::Db> {
        let guard = self.db.lock().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| Error::Closed {
            store: self.describe(),
        })
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&sled::Db, &Path) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let db = self.db()?;
        let path = self.path.clone();
        synclog_core::runtime::current("reading a sled store")?
            .spawn_blocking(move || f(&db, &path))
            .await
            .map_err(|e| Error::Backend {
                engine: "sled",
                context: "a read task failed".into(),
                source: Box::new(e),
            })?
    }
}

fn scan_db(db: &sled::Db, path: &Path, scan: &Scan) -> Result<Vec<LogRecord>> {
    let limit = scan.effective_limit()?;
    let lo = scan.after.map_or(1, |a| a.get() + 1);
    let hi = scan.before.map_or(u64::MAX, |b| b.get());
    if lo >= hi {
        return Ok(Vec::new());
    }
    let range = db.range(key(lo)..key(hi));
    let mut out = Vec::new();
    let mut take = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool> {
        let (_, v) = item.map_err(|e| map_err(path, "scanning", e))?;
        let rec = decode(&v)?;
        if scan.matches(&rec) {
            out.push(rec);
        }
        Ok(out.len() < limit)
    };
    if scan.descending {
        for item in range.rev() {
            if !take(item)? {
                break;
            }
        }
    } else {
        for item in range {
            if !take(item)? {
                break;
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl LogStore for SledStore {
    fn describe(&self) -> String {
        format!("sled://{}", self.path.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: "sled",
            multi_process: false,
            persistent: true,
            checkpoint: false,
            deep_verify: false,
            repair: true,
            prune: true,
            durability: Durability::ALL.to_vec(),
        }
    }

    /// From a book of keys the writer fills on first use (one read of every record).
    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let key = key.to_string();
        self.group.with_writer(move |w| w.find_idempotent(&key)).await?
    }

    /// As [`find_idempotent`](Self::find_idempotent).
    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let run = run.to_string();
        self.group.with_writer(move |w| w.run_records(&run)).await?
    }

    /// As [`find_idempotent`](Self::find_idempotent), each run read from its records.
    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        let limit = scan.effective_limit()?;
        let scan = scan.clone();
        self.group.with_writer(move |w| w.runs(&scan, limit)).await?
    }

    async fn commit_report(&self, batch: Vec<NewLog>, durability: Durability) -> Result<Committed> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                store: self.describe(),
            });
        }
        self.check_writable("commit")?;
        validate_batch(&batch)?;
        let done = self.group.commit(batch, durability).await?;
        self.signal.committed_records(done.new_records());
        Ok(done)
    }

    /// This process's commits, with their records, and its imports (no other process can
    /// write to a sled store while this one has it open).
    async fn commit_watch(&self) -> Result<synclog_core::follow::CommitWatch> {
        self.db()?;
        self.signal.watch(None).await
    }

    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.blocking(move |db, path| {
            db.get(key(id.get()))
                .map_err(|e| map_err(path, "reading", e))?
                .map(|v| decode(&v))
                .transpose()
        })
        .await
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        scan.effective_limit()?;
        let scan = scan.clone();
        self.blocking(move |db, path| scan_db(db, path, &scan)).await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        self.blocking(|db, path| {
            Ok(db
                .range(key(0)..=key(u64::MAX))
                .next_back()
                .transpose()
                .map_err(|e| map_err(path, "reading", e))?
                .and_then(|(k, _)| id_of(&k))
                .and_then(LogId::new))
        })
        .await
    }

    async fn sync(&self, level: Durability) -> Result<()> {
        self.check_writable("sync")?;
        if level == Durability::Buffered {
            return self.db().map(|_| ());
        }
        let power = Arc::clone(&self.power);
        self.blocking(move |db, _| flush::flush(db, &power, level)).await
    }

    async fn verify(&self, _options: VerifyOptions) -> Result<VerifyReport> {
        self.blocking(|db, path| {
            let mut v = Verifier::new();
            let mut markers = Vec::new();
            let mut damaged = Vec::new();
            for (_, _, m) in stored_markers(db, path)? {
                match m {
                    Ok(m) => markers.push(m),
                    Err(e) => damaged.push(e.to_string()),
                }
            }
            v.prunes(markers);
            for detail in damaged {
                v.corrupt(None, detail);
            }
            for item in db.range(key(0)..=key(u64::MAX)) {
                let (k, val) = item.map_err(|e| map_err(path, "verifying", e))?;
                let id = id_of(&k).and_then(LogId::new);
                match parts(&val) {
                    Ok((view, sum)) if Some(view.id) == id.map(LogId::get) => {
                        v.check(&view, sum, || format!("key {}", view.id))
                    }
                    Ok((view, _)) => v.corrupt(id, format!("key {id:?} holds log {}", view.id)),
                    Err(e) => v.corrupt(id, format!("key {id:?}: {e}")),
                }
            }
            Ok(v.finish())
        })
        .await
    }

    async fn import(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.check_writable("import")?;
        validate_records(&records)?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        let top = records.iter().map(|r| r.id).max();
        let report = self
            .group
            .with_writer(move |w| w.import(&records, durability))
            .await??;
        if let Some(top) = top.filter(|_| report.inserted > 0) {
            self.signal.committed(top);
        }
        Ok(report)
    }

    async fn repair(&self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        self.check_writable("repair")?;
        validate_records(&records)?;
        if records.is_empty() {
            return Ok(ImportReport::default());
        }
        let top = records.iter().map(|r| r.id).max();
        let report = self
            .group
            .with_writer(move |w| w.repair(&records, durability))
            .await??;
        if let Some(top) = top.filter(|_| report.inserted + report.replaced > 0) {
            self.signal.committed(top);
        }
        Ok(report)
    }

    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        self.blocking(prune_markers).await
    }

    /// One atomic batch: the marker, the removal of every covered record and the
    /// high-water key, flushed at `Process` and `PowerLoss`. sled reuses the freed space
    /// itself (its segments are rewritten as they empty); the files do not shrink at once.
    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        check_marker(marker)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                store: self.describe(),
            });
        }
        self.check_writable("prune")?;
        let mut applied = Applied::default();
        for (i, ranges) in chunk_ranges(&marker.ranges, PRUNE_CHUNK_IDS)
            .into_iter()
            .enumerate()
        {
            let marker = marker.clone();
            let done = self
                .group
                .with_writer(move |w| w.apply_prune(&marker, i == 0, &ranges, durability))
                .await??;
            applied.deleted += done.deleted;
            applied.already_marked |= done.already_marked;
        }
        Ok(applied)
    }

    /// sled's `size_on_disk`.
    async fn storage_bytes(&self) -> Result<Option<u64>> {
        self.blocking(|db, path| {
            db.size_on_disk()
                .map(Some)
                .map_err(|e| map_err(path, "measuring", e))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let runtime = synclog_core::runtime::current("closing a sled store")?;
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(db);
        let group = self.group.clone();
        let (path, wait) = (self.path.clone(), self.lock_wait);
        runtime
            .spawn_blocking(move || {
                group.shutdown()?;
                wait_for_lock_release(&path, wait);
                Ok(())
            })
            .await
            .map_err(|e| Error::Backend {
                engine: "sled",
                context: "closing".into(),
                source: Box::new(e),
            })?
    }
}
