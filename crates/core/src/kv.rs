//! An engine over an ordered key-value store, in the few lines of a [`KvBackend`].
//!
//! An engine author implements [`KvBackend`]: a blocking, ordered map of bytes to bytes
//! that writes a batch in one transaction at a durability level, gets a key, and reads a
//! key range in either direction. [`KvStore`] supplies the rest of [`LogStore`] (core
//! has validated every batch and import before it is called): id assignment, group
//! commit (one writer thread; concurrent appends share one `write`), the rules of runs
//! and idempotency keys, checksums, import and repair accounting, verify, the close
//! lifecycle, and moving every backend call of the async API off the async executor (or
//! [`Error::NoRuntime`] outside one). [`KvStore::open`] itself is blocking, like the
//! engines' own opens.
//!
//! Layout in the backend: each record under `0x01` followed by its id (big-endian `u64`),
//! its value the record's canonical bytes followed by its checksum (big-endian `u32`);
//! prune markers under `0x02` followed by a sequence number, their checksummed JSON as
//! value; the largest id ever assigned under `0x00 "high_water"`, so an id is never handed
//! out twice, even after the newest records are pruned (a lone one-record commit writes
//! it only every 1000 commits, see [`KvBackend::write`]'s single-key case); the layout
//! version under `0x00 "format"` ([`FORMAT_VERSION`]). One handle at a time
//! ([`Capabilities::multi_process`] is false): the backend must hold its storage
//! exclusively while open (see [`KvBackend`]).
//!
//! Retention ([`LogStore::apply_prune`]): the marker, the high-water mark and the first
//! [`PRUNE_CHUNK_IDS`] ids' deletion in one write, then a write per further chunk; a prune
//! cut off between them is finished at the next open. Checkpoints are not offered.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Mutex;
//! use synclog_core::kv::{KvBackend, KvOp, KvStore};
//! use synclog_core::{Durability, LogStore, LogStoreExt, NewLog, Result, Status};
//!
//! /// An engine in memory: the whole of what an author writes.
//! #[derive(Default)]
//! struct Map(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);
//!
//! impl KvBackend for Map {
//!     fn engine(&self) -> &'static str { "map" }
//!     fn describe(&self) -> String { "map://".into() }
//!     fn durabilities(&self) -> Vec<Durability> { vec![Durability::Buffered] }
//!     fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
//!         Ok(self.0.lock().unwrap().get(key).cloned())
//!     }
//!     fn range(&self, from: &[u8], to: &[u8], reverse: bool, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
//!         let map = self.0.lock().unwrap();
//!         let range = map.range(from.to_vec()..to.to_vec()).map(|(k, v)| (k.clone(), v.clone()));
//!         Ok(if reverse { range.rev().take(limit).collect() } else { range.take(limit).collect() })
//!     }
//!     fn write(&self, ops: Vec<KvOp>, _durability: Durability) -> Result<()> {
//!         let mut map = self.0.lock().unwrap();
//!         for op in ops {
//!             match op {
//!                 KvOp::Put(k, v) => { map.insert(k, v); }
//!                 KvOp::Delete(k) => { map.remove(&k); }
//!             }
//!         }
//!         Ok(())
//!     }
//!     fn close(&self) -> Result<()> { Ok(()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let store = KvStore::open(Map::default())?;
//! let rec = store.append_with(NewLog::new("crm", Status::Succeeded), Durability::Buffered).await?;
//! assert_eq!(store.get(rec.id).await?, Some(rec));
//! store.close().await?;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use crate::canonical::{self, Checksum};
use crate::follow::CommitSignal;
use crate::group::{BatchWriter, GroupCommit, GroupOptions, GroupStats};
use crate::retention::{check_marker, chunk_ranges, Applied, PruneMarker, Pruned};
use crate::run::{seal_group, Committed, KeyBook, Planner, Run, RunScan};
use crate::validate::{ValidBatch, ValidRecords};
use crate::verify::Verifier;
use crate::{
    Capabilities, Durability, Error, IdRange, ImportReport, LogId, LogRecord, LogStore, NewLog, Result, Scan,
    VerifyOptions, VerifyReport,
};

/// At most this many ids are deleted per write of a prune, so appends wait behind one
/// chunk at most.
pub const PRUNE_CHUNK_IDS: u64 = 50_000;

/// One change of a [`KvBackend::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Vec<u8>),
}

/// An ordered key-value store, blocking: what an engine author implements. Every method
/// runs on a blocking thread; [`KvStore`] never calls two `write`s at once.
///
/// While open, the backend must keep every other handle and process out of its storage
/// (an exclusive lock, as sled takes; SQLite's `locking_mode=EXCLUSIVE`): ids are assigned
/// from this handle's high-water mark, so a second writer would hand out the same ones. A
/// second open fails, best as [`Error::Locked`].
pub trait KvBackend: Send + Sync + 'static {
    /// The engine's short name (`Capabilities::engine`, error messages).
    fn engine(&self) -> &'static str;
    /// The store, as a URL or path (never with a password).
    fn describe(&self) -> String;
    /// The durability levels [`write`](KvBackend::write) honours; at least one.
    fn durabilities(&self) -> Vec<Durability>;
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The entries with `from <= key < to` in key order (descending with `reverse`), at
    /// most `limit` of them.
    fn range(&self, from: &[u8], to: &[u8], reverse: bool, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Applies `ops` in one transaction (all or none), durable at `durability` when it
    /// returns, with every write before it (a level it does not list is never asked for;
    /// `ops` is never empty). Every write, a single `Put` included, must be durable at
    /// `durability` together with every earlier write: `sync`, the format mark and a
    /// lone one-record commit are single `Put`s, and a backend whose single writes are
    /// cheaper than its transactions (sled) may take that path for them.
    fn write(&self, ops: Vec<KvOp>, durability: Durability) -> Result<()>;
    /// Releases the storage, so that the same process can open it again.
    fn close(&self) -> Result<()>;
    /// The bytes the store takes on disk, if the engine can tell
    /// ([`LogStore::storage_bytes`]); `None` by default.
    fn storage_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// How a [`KvStore`] is opened: [`KvStore::open_with`].
#[derive(Debug, Clone)]
pub struct KvOptions {
    /// Every write (commit, import, repair, prune, sync) is refused with
    /// [`Error::Unsupported`] and nothing is written, not even the format mark or the end
    /// of a prune cut off earlier.
    pub read_only: bool,
    /// Most logs in one group commit ([`GroupOptions::max_group_logs`]).
    pub max_group_logs: usize,
    /// Whether a lone appender commits on its own thread
    /// ([`GroupOptions::inline_lone_commits`]).
    pub inline_lone_commits: bool,
}

impl Default for KvOptions {
    fn default() -> Self {
        let group = GroupOptions::default();
        KvOptions {
            read_only: false,
            max_group_logs: group.max_group_logs,
            inline_lone_commits: group.inline_lone_commits,
        }
    }
}

/// The layout version a store holds, under the key `\x00format` (big-endian `u64`).
/// Absent: version 1 (before runs). Version 2 records may carry run and idempotency keys.
/// Version 3 may hold prune markers, which an older build would ignore: it would report
/// the pruned ids as missing and let an import bring the pruned records back. A writable
/// open marks an older store with this version; a newer store is refused, untouched.
pub const FORMAT_VERSION: u64 = 3;
const FORMAT: &[u8] = b"\x00format";

/// How many one-record commits may pass before the high-water mark is stored again. A
/// lagging mark costs nothing after a crash (opening takes the largest of it, the last id
/// and the prune markers' last ids); it matters only if the newest records are also
/// deleted behind the store's back before a crash. Batches, imports, prunes, syncs and a
/// clean close store it. Storing it with every record would make each lone append a
/// two-key transaction (a third of sled's throughput).
const SAVE_HIGH_WATER_EVERY: u64 = 1000;

const RECORD: u8 = 0x01;
const MARKER: u8 = 0x02;
const HIGH_WATER: &[u8] = b"\x00high_water";
/// Records read per backend call when every record is read.
const PAGE: usize = 1000;

fn key(id: u64) -> Vec<u8> {
    let mut k = vec![RECORD];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn marker_key(seq: u64) -> Vec<u8> {
    let mut k = vec![MARKER];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn value(rec: &LogRecord) -> Vec<u8> {
    let mut v = rec.view().encode();
    v.extend_from_slice(&rec.checksum.0.to_be_bytes());
    v
}

/// The id of a record key.
fn id_of(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    (key.len() == 9 && key[0] == RECORD).then(|| u64::from_be_bytes(bytes))
}

/// A stored value as the canonical view and the stored checksum.
fn parts<'a>(engine: &str, v: &'a [u8]) -> Result<(canonical::RecordView<'a>, Checksum)> {
    if v.len() < 4 {
        return Err(Error::corrupt(
            format!("{engine} value"),
            "shorter than a checksum",
        ));
    }
    let (body, sum) = v.split_at(v.len() - 4);
    let sum = Checksum(u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]));
    Ok((canonical::decode(body)?, sum))
}

fn decode(engine: &str, v: &[u8]) -> Result<LogRecord> {
    let (view, sum) = parts(engine, v)?;
    LogRecord::from_view(&view, sum)
}

struct Inner<B> {
    backend: B,
    closed: AtomicBool,
    signal: CommitSignal,
}

impl<B: KvBackend> Inner<B> {
    /// The record under `id`'s key: `Corrupt` when its value does not decode or holds
    /// another id.
    fn decode_at(&self, id: u64, v: &[u8]) -> Result<LogRecord> {
        let rec = decode(self.backend.engine(), v)?;
        match rec.id.get() == id {
            true => Ok(rec),
            false => Err(Error::corrupt(
                self.backend.describe(),
                format!("the key of log {id} holds log {}", rec.id),
            )),
        }
    }

    fn read(&self, id: LogId) -> Result<Option<LogRecord>> {
        match self.backend.get(&key(id.get()))? {
            Some(v) => self.decode_at(id.get(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// The entries with `lo <= id < hi` (ascending, or descending), at most `limit`, as
    /// the id their key names and the value's record (or why it does not decode).
    fn entries(
        &self,
        lo: u64,
        hi: u64,
        descending: bool,
        limit: usize,
    ) -> Result<Vec<(u64, Result<LogRecord>)>> {
        Ok(self
            .backend
            .range(&key(lo), &key(hi), descending, limit)?
            .iter()
            .filter_map(|(k, v)| id_of(k).map(|id| (id, self.decode_at(id, v))))
            .collect())
    }

    /// Calls `f` on every record in id order, a page at a time (paged by key, so a
    /// damaged value cannot send it back); values that do not decode are skipped (verify
    /// reports them).
    fn each(&self, mut f: impl FnMut(LogRecord) -> Result<()>) -> Result<()> {
        let mut from = 1;
        loop {
            let page = self.entries(from, u64::MAX, false, PAGE)?;
            let Some(last) = page.last().map(|(id, _)| *id) else {
                return Ok(());
            };
            page.into_iter()
                .filter_map(|(_, r)| r.ok())
                .try_for_each(&mut f)?;
            from = last + 1;
        }
    }

    /// The newest id, from the keys alone (whatever the newest value holds).
    fn last_id(&self) -> Result<Option<LogId>> {
        let last = self.backend.range(&key(1), &key(u64::MAX), true, 1)?;
        Ok(last.first().and_then(|(k, _)| id_of(k)).and_then(LogId::new))
    }

    /// The stored high-water mark, or the last id when it is above (the stored mark lags
    /// by the one-record commits since it was saved, whose records are stored). A mark
    /// that does not read counts as none.
    fn high_water(&self) -> Result<Option<LogId>> {
        let stored = self
            .backend
            .get(HIGH_WATER)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        let last = self.last_id()?.map_or(0, LogId::get);
        Ok(LogId::new(stored.max(last)).or(LogId::new(last)))
    }

    /// Every stored prune marker, oldest first, each with its sequence number or why it
    /// does not decode.
    fn stored_markers(&self) -> Result<Vec<Result<(u64, PruneMarker)>>> {
        let stored = self.backend.range(&[MARKER], &[MARKER + 1], false, usize::MAX)?;
        Ok(stored
            .into_iter()
            .map(|(k, v)| {
                let seq = k
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
                let location = format!("{} prune marker {k:?}", self.backend.describe());
                let seq =
                    seq.ok_or_else(|| Error::corrupt(location.clone(), "a prune marker's key is malformed"))?;
                let text = std::str::from_utf8(&v)
                    .map_err(|_| Error::corrupt(location.clone(), "a prune marker is not UTF-8"))?;
                Ok((seq, PruneMarker::decode(text, &location)?))
            })
            .collect())
    }

    /// The sequence number of the newest stored marker's key, whatever its value holds.
    fn last_marker_seq(&self) -> Result<Option<u64>> {
        let last = self.backend.range(&[MARKER], &[MARKER + 1], true, 1)?;
        let Some((k, _)) = last.first() else {
            return Ok(None);
        };
        let seq = k
            .get(1..9)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| {
                Error::corrupt(
                    self.backend.describe(),
                    "a prune marker's key is malformed; nothing was pruned",
                )
            })?;
        Ok(Some(u64::from_be_bytes(seq)))
    }

    /// The stored prune markers, oldest first; a damaged one is an error (nothing that
    /// depends on what they cover goes on without knowing it).
    fn markers(&self) -> Result<Vec<(u64, PruneMarker)>> {
        self.stored_markers()?.into_iter().collect()
    }

    /// The keys of the records in `ranges` still stored.
    fn present(&self, ranges: &[IdRange]) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        for r in ranges {
            let hi = r.last.get().saturating_add(1);
            let found = self
                .backend
                .range(&key(r.first.get()), &key(hi), false, usize::MAX)?;
            keys.extend(found.into_iter().map(|(k, _)| k));
        }
        Ok(keys)
    }
}

/// The group-commit writer: the only one that writes, so the high-water mark and the book
/// of keys it keeps stay true.
struct KvWriter<B> {
    inner: Arc<Inner<B>>,
    high_water: u64,
    /// One-record commits since the high-water mark was last stored (see
    /// [`SAVE_HIGH_WATER_EVERY`]); while non-zero, the stored mark lags `high_water`.
    unsaved_singles: u64,
    /// Idempotency and run keys of every stored record, read on first use.
    book: Option<KeyBook>,
    /// The ids the stored markers cover, read on first use: what imports skip.
    pruned: Option<Pruned>,
}

impl<B: KvBackend> KvWriter<B> {
    /// The backend's `write`. A write that failed may still have reached the store (the
    /// data applied, its sync failed): the high-water mark then takes the newest id
    /// stored, so no id is handed out again.
    fn write(&mut self, ops: Vec<KvOp>, durability: Durability) -> Result<()> {
        let written = self.inner.backend.write(ops, durability);
        if written.is_err() {
            if let Ok(Some(last)) = self.inner.last_id() {
                self.high_water = self.high_water.max(last.get());
                // The stored mark may be below it now.
                self.unsaved_singles = self.unsaved_singles.max(1);
            }
        }
        written
    }

    fn book(&mut self) -> Result<&mut KeyBook> {
        if self.book.is_none() {
            let mut book = KeyBook::new();
            self.inner.each(|r| {
                book.note(&r);
                Ok(())
            })?;
            self.book = Some(book);
        }
        Ok(self.book.get_or_insert_with(KeyBook::new))
    }

    fn pruned(&mut self) -> Result<&Pruned> {
        if self.pruned.is_none() {
            let markers: Vec<PruneMarker> = self.inner.markers()?.into_iter().map(|(_, m)| m).collect();
            self.pruned = Some(Pruned::of(&markers));
        }
        Ok(self.pruned.get_or_insert_with(Pruned::default))
    }

    /// One write of a prune: with `first`, stores `marker` (unless stored) and raises the
    /// high-water mark to its last id; deletes the records of `ranges` still stored.
    fn prune(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        ranges: &[IdRange],
        durability: Durability,
    ) -> Result<Applied> {
        let gone = self.inner.present(ranges)?;
        self.write_prune(marker, first, gone, durability)
    }

    /// The write of [`prune`](Self::prune), with the keys of the records it deletes.
    fn write_prune(
        &mut self,
        marker: &PruneMarker,
        first: bool,
        gone: Vec<Vec<u8>>,
        durability: Durability,
    ) -> Result<Applied> {
        let mut ops = Vec::new();
        let (mut already_marked, mut top) = (false, self.high_water);
        if first {
            // A damaged marker does not stop a prune (verify reports it); its key still
            // counts for the next sequence number.
            let stored = self.inner.stored_markers()?;
            already_marked = stored.iter().any(|m| m.as_ref().is_ok_and(|(_, m)| m == marker));
            if !already_marked {
                let seq = self.inner.last_marker_seq()?.map_or(1, |seq| seq + 1);
                ops.push(KvOp::Put(marker_key(seq), marker.encode().into_bytes()));
            }
            top = top.max(marker.last_id().map_or(0, LogId::get));
        }
        let deleted = gone.len() as u64;
        ops.extend(gone.into_iter().map(KvOp::Delete));
        // Always written: the mark is the write that makes this one durable at the level
        // asked, even when nothing else changes (a marker applied again).
        ops.push(KvOp::Put(HIGH_WATER.to_vec(), top.to_be_bytes().to_vec()));
        self.write(ops, durability)?;
        self.high_water = top;
        self.unsaved_singles = 0;
        if first && !already_marked {
            self.pruned = None;
        }
        if deleted > 0 {
            self.book = None; // it would name records that are gone
        }
        Ok(Applied {
            deleted,
            already_marked,
        })
    }

    /// Deletes what a stored marker covers and is still there (a prune cut off between
    /// its writes), chunk by chunk.
    fn finish_cut_off_prunes(&mut self, durability: Durability) -> Result<()> {
        // A damaged marker deletes nothing (verify reports it).
        for (_, marker) in self.inner.stored_markers()?.into_iter().flatten() {
            let mut finished = false;
            for ranges in chunk_ranges(&marker.ranges, PRUNE_CHUNK_IDS) {
                let gone = self.inner.present(&ranges)?;
                if !gone.is_empty() {
                    self.write_prune(&marker, false, gone, durability)?;
                    finished = true;
                }
            }
            if finished {
                tracing::warn!(store = %self.inner.backend.describe(), marker = %marker.name(),
                    "a prune cut off between its writes was finished");
            }
        }
        Ok(())
    }

    /// Stores `records` (ids kept), skipping those stored already or pruned; with
    /// `replace_damaged`, a stored record that fails its checksum is replaced (a repair).
    fn import(
        &mut self,
        records: &[LogRecord],
        durability: Durability,
        replace_damaged: bool,
    ) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let pruned = self.pruned()?.clone();
        let mut ops = Vec::new();
        let mut top = self.high_water;
        let mut fresh = std::collections::HashMap::new();
        let mut written = Vec::new();
        for rec in records {
            if pruned.contains(rec.id) {
                report.pruned += 1;
                continue;
            }
            let stored = match fresh.get(&rec.id) {
                Some(sum) => Some(Some((*sum, true))),
                // A value that does not decode is damaged beyond its checksum.
                None => match self.inner.read(rec.id) {
                    Ok(found) => found.map(|s| Some((s.checksum, s.is_intact()))),
                    Err(e) if e.kind() == crate::ErrorKind::Corrupt => Some(None),
                    Err(e) => return Err(e),
                },
            };
            let stored = match stored {
                Some(None) if replace_damaged => Some((Checksum(0), false)),
                Some(None) => {
                    return Err(Error::corrupt(
                        self.inner.backend.describe(),
                        format!(
                            "log {} is stored damaged (its value does not decode); repair it",
                            rec.id
                        ),
                    ))
                }
                Some(Some(found)) => Some(found),
                None => None,
            };
            match stored {
                Some((_, false)) if replace_damaged => report.replaced += 1,
                Some((sum, _)) => {
                    report.note_existing(rec.id, sum, rec.checksum);
                    continue;
                }
                None => report.inserted += 1,
            }
            ops.push(KvOp::Put(key(rec.id.get()), value(rec)));
            fresh.insert(rec.id, rec.checksum);
            written.push(rec);
            top = top.max(rec.id.get());
        }
        if ops.is_empty() && report == ImportReport::default() {
            return Ok(report);
        }
        // Records found already stored are written again in effect: the mark is the write
        // that makes them durable at the level asked (they may have come at a weaker one).
        ops.push(KvOp::Put(HIGH_WATER.to_vec(), top.to_be_bytes().to_vec()));
        self.write(ops, durability)?;
        self.high_water = top;
        self.unsaved_singles = 0;
        if report.replaced > 0 {
            self.book = None; // a replaced record's keys may differ from the damaged one's
        } else if let Some(book) = &mut self.book {
            written.iter().for_each(|r| book.note(r));
        }
        Ok(report)
    }
}

impl<B: KvBackend> BatchWriter for KvWriter<B> {
    fn commit_group(
        &mut self,
        batches: &[&[NewLog]],
        durability: Durability,
    ) -> Result<Vec<Result<Committed>>> {
        let engine = self.inner.backend.engine();
        let mut next = self.high_water + 1;
        let now = Utc::now();
        let mut seal = |log: &NewLog| LogRecord::seal_next(engine, &mut next, now, log);
        let outcomes = if Planner::any_keys(batches.iter().copied()) {
            let inner = self.inner.clone();
            let book = self.book()?;
            let mut keys = book.keys(|id| inner.read(id));
            seal_group(batches, Some(&mut keys), &mut seal)?
        } else {
            seal_group(batches, None, &mut seal)?
        };
        let written: Vec<&LogRecord> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .flat_map(Committed::new_records)
            .collect();
        let last = next - 1;
        let mut ops: Vec<KvOp> = written
            .iter()
            .map(|r| KvOp::Put(key(r.id.get()), value(r)))
            .collect();
        if written.len() == 1 && self.unsaved_singles + 1 < SAVE_HIGH_WATER_EVERY {
            // One record is atomic without the mark (see SAVE_HIGH_WATER_EVERY).
            self.write(ops, durability)?;
            self.unsaved_singles += 1;
        } else if !written.is_empty() || outcomes.iter().any(|o| o.is_ok()) {
            // Repeats only still write (the high-water mark again): a store makes a write
            // durable, not an empty transaction, and the repeated records (which may have
            // been written at a weaker level) must reach this group's.
            ops.push(KvOp::Put(HIGH_WATER.to_vec(), last.to_be_bytes().to_vec()));
            self.write(ops, durability)?;
            self.unsaved_singles = 0;
        }
        if !written.is_empty() {
            self.high_water = last;
            if let Some(book) = &mut self.book {
                written.iter().for_each(|r| book.note(r));
            }
            self.inner.signal.committed_records(written.iter().copied());
        }
        Ok(outcomes)
    }

    /// Stores a lagging high-water mark, at the strongest level the backend has.
    fn close(&mut self) -> Result<()> {
        if self.unsaved_singles > 0 {
            let hw = self.high_water.to_be_bytes().to_vec();
            let strongest = strongest(&self.inner.backend);
            self.inner
                .backend
                .write(vec![KvOp::Put(HIGH_WATER.to_vec(), hw)], strongest)?;
            self.unsaved_singles = 0;
        }
        Ok(())
    }
}

/// The strongest durability `backend` honours.
fn strongest<B: KvBackend>(backend: &B) -> Durability {
    backend
        .durabilities()
        .into_iter()
        .max()
        .unwrap_or(Durability::Buffered)
}

/// Refuses a store of a newer layout (nothing written); unless `read_only`, marks an
/// older one with [`FORMAT_VERSION`] at `durability`.
fn check_format<B: KvBackend>(backend: &B, read_only: bool, durability: Durability) -> Result<()> {
    let stored = match backend.get(FORMAT)? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| Error::corrupt(backend.describe(), "the format key is not 8 bytes"))?,
        ),
        None => 1,
    };
    if stored > FORMAT_VERSION {
        return Err(Error::Unsupported {
            engine: backend.engine(),
            what: format!(
                "format version {stored} of {} (this synclog knows {FORMAT_VERSION}); upgrade synclog",
                backend.describe()
            ),
        });
    }
    if !read_only && stored < FORMAT_VERSION {
        let mark = KvOp::Put(FORMAT.to_vec(), FORMAT_VERSION.to_be_bytes().to_vec());
        backend.write(vec![mark], durability)?;
    }
    Ok(())
}

/// A [`LogStore`] over a [`KvBackend`] (see the module docs).
pub struct KvStore<B: KvBackend> {
    inner: Arc<Inner<B>>,
    group: Arc<GroupCommit<KvWriter<B>>>,
    read_only: bool,
}

impl<B: KvBackend> std::fmt::Debug for KvStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("store", &self.inner.backend.describe())
            .finish()
    }
}

impl<B: KvBackend> KvStore<B> {
    /// Wraps `backend` (already opened by its author's code): checks (and marks) the
    /// layout version, reads the high-water mark, finishes a prune cut off earlier and
    /// starts the writer thread.
    pub fn open(backend: B) -> Result<KvStore<B>> {
        KvStore::open_with(backend, KvOptions::default())
    }

    /// As [`open`](Self::open), with options.
    pub fn open_with(backend: B, options: KvOptions) -> Result<KvStore<B>> {
        let strongest = strongest(&backend);
        check_format(&backend, options.read_only, strongest)?;
        let stored = match backend.get(HIGH_WATER)? {
            Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                Ok(bytes) => u64::from_be_bytes(bytes),
                // A reader can still read (and export) the records; a writer may not
                // guess where ids go on.
                Err(_) if options.read_only => {
                    tracing::warn!(store = %backend.describe(), "the high-water mark is not 8 bytes; reading without it");
                    0
                }
                Err(_) => {
                    return Err(Error::corrupt(
                        backend.describe(),
                        "the high-water mark is not 8 bytes",
                    ))
                }
            },
            None => 0,
        };
        let inner = Arc::new(Inner {
            backend,
            closed: AtomicBool::new(false),
            signal: CommitSignal::new(),
        });
        // The mark may lag (see SAVE_HIGH_WATER_EVERY). A damaged marker counts for
        // nothing here (verify reports it).
        let marked = inner
            .stored_markers()?
            .into_iter()
            .filter_map(|m| m.ok()?.1.last_id())
            .map(LogId::get)
            .max()
            .unwrap_or(0);
        let high_water = stored.max(inner.last_id()?.map_or(0, LogId::get)).max(marked);
        if high_water > LogId::MAX.get() {
            return Err(Error::corrupt(
                inner.backend.describe(),
                format!("the high-water mark {high_water} is above the largest id"),
            ));
        }
        let mut writer = KvWriter {
            inner: inner.clone(),
            high_water,
            // A mark that lagged (a crash after lone appends) is stored at the close.
            unsaved_singles: u64::from(high_water > stored),
            book: None,
            pruned: None,
        };
        if !options.read_only {
            writer.finish_cut_off_prunes(strongest)?;
        }
        let group_options = GroupOptions {
            thread_name: format!("synclog-{}-writer", inner.backend.engine()),
            max_group_logs: options.max_group_logs,
            inline_lone_commits: options.inline_lone_commits,
            ..GroupOptions::default()
        };
        let group = Arc::new(GroupCommit::spawn(writer, group_options)?);
        Ok(KvStore {
            inner,
            group,
            read_only: options.read_only,
        })
    }

    /// Whether this handle was opened with [`KvOptions::read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Group-commit counters.
    pub fn group_stats(&self) -> GroupStats {
        self.group.stats()
    }

    /// Refuses `what` through a read-only handle.
    fn check_writable(&self, what: &str) -> Result<()> {
        match self.read_only {
            true => Err(Error::read_only(
                self.inner.backend.engine(),
                &self.inner.backend.describe(),
                what,
            )),
            false => Ok(()),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    fn check_open(&self) -> Result<()> {
        match self.inner.closed.load(Ordering::Acquire) {
            true => Err(Error::Closed {
                store: self.inner.backend.describe(),
            }),
            false => Ok(()),
        }
    }

    fn check_durability(&self, level: Durability) -> Result<()> {
        match self.inner.backend.durabilities().contains(&level) {
            true => Ok(()),
            false => Err(Error::Unsupported {
                engine: self.inner.backend.engine(),
                what: format!("{level:?} durability"),
            }),
        }
    }

    /// Runs `f` on a blocking thread.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner<B>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.check_open()?;
        let inner = self.inner.clone();
        let engine = inner.backend.engine();
        crate::runtime::current("reading a key-value store")?
            .spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Backend {
                engine,
                context: "a blocking read".into(),
                source: Box::new(e),
            })?
    }
}

#[async_trait]
impl<B: KvBackend> LogStore for KvStore<B> {
    fn describe(&self) -> String {
        self.inner.backend.describe()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: self.inner.backend.engine(),
            multi_process: false,
            persistent: true,
            checkpoint: false,
            deep_verify: false,
            repair: true,
            prune: true,
            durability: self.inner.backend.durabilities(),
        }
    }

    async fn commit_valid(&self, batch: ValidBatch, durability: Durability) -> Result<Committed> {
        self.check_open()?;
        self.check_writable("commit")?;
        self.check_durability(durability)?;
        crate::runtime::current("appending to a key-value store")?;
        self.group.commit(batch, durability).await
    }

    async fn get(&self, id: LogId) -> Result<Option<LogRecord>> {
        self.blocking(move |inner| inner.read(id)).await
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<LogRecord>> {
        let limit = scan.effective_limit()?;
        let scan = scan.clone();
        self.blocking(move |inner| {
            let (mut lo, mut hi) = (
                scan.after.map_or(1, |a| a.get() + 1),
                scan.before.map_or(u64::MAX, LogId::get),
            );
            let mut out = Vec::new();
            while out.len() < limit && lo < hi {
                let page = inner.entries(lo, hi, scan.descending, PAGE)?;
                let Some(edge) = page.last().map(|(id, _)| *id) else {
                    break;
                };
                for (_, rec) in page {
                    let rec = rec?;
                    if scan.matches(&rec) {
                        out.push(rec);
                    }
                }
                match scan.descending {
                    true => hi = edge,
                    false => lo = edge + 1,
                }
            }
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn last_id(&self) -> Result<Option<LogId>> {
        self.blocking(|inner| inner.last_id()).await
    }

    async fn high_water(&self) -> Result<Option<LogId>> {
        self.blocking(|inner| inner.high_water()).await
    }

    async fn find_idempotent(&self, key: &str) -> Result<Option<LogRecord>> {
        let key = key.to_string();
        self.check_open()?;
        self.group
            .with_writer(move |w| {
                let id = w.book()?.idempotent(&key);
                id.map_or(Ok(None), |id| w.inner.read(id))
            })
            .await?
    }

    async fn run_records(&self, run: &str) -> Result<Vec<LogRecord>> {
        let run = run.to_string();
        self.check_open()?;
        self.group
            .with_writer(move |w| {
                let ids = w.book()?.run_ids(&run).to_vec();
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.extend(w.inner.read(id)?);
                }
                Ok(out)
            })
            .await?
    }

    async fn runs(&self, scan: &RunScan) -> Result<Vec<Run>> {
        let limit = scan.effective_limit()?;
        let scan = scan.clone();
        self.check_open()?;
        self.group
            .with_writer(move |w| {
                let inner = w.inner.clone();
                w.book()?.select_runs(&scan, limit, |id| inner.read(id))
            })
            .await?
    }

    async fn commit_watch(&self) -> Result<crate::follow::CommitWatch> {
        self.check_open()?;
        self.inner.signal.watch(None).await
    }

    /// Writes the high-water mark again at `level`: a write at that level makes every
    /// earlier write durable at it too (an empty transaction may sync nothing).
    async fn sync(&self, level: Durability) -> Result<()> {
        self.check_durability(level)?;
        self.check_open()?;
        self.check_writable("sync")?;
        crate::runtime::current("syncing a key-value store")?;
        self.group
            .with_writer(move |w| {
                let hw = w.high_water.to_be_bytes().to_vec();
                w.inner
                    .backend
                    .write(vec![KvOp::Put(HIGH_WATER.to_vec(), hw)], level)?;
                w.unsaved_singles = 0;
                Ok(())
            })
            .await?
    }

    async fn verify(&self, _options: VerifyOptions) -> Result<VerifyReport> {
        self.blocking(|inner| {
            let mut v = Verifier::new();
            let mut markers = Vec::new();
            for stored in inner.stored_markers()? {
                match stored {
                    Ok((_, m)) => markers.push(m),
                    Err(e) => v.corrupt(None, e.to_string()),
                }
            }
            v.prunes(markers);
            // Entry by entry, so that a value that does not decode is reported, not fatal.
            let engine = inner.backend.engine();
            let mut from = 1;
            loop {
                let page = inner.backend.range(&key(from), &key(u64::MAX), false, PAGE)?;
                let Some(last) = page.last().and_then(|(k, _)| id_of(k)) else {
                    break;
                };
                for (k, val) in &page {
                    let id = id_of(k).and_then(LogId::new);
                    match parts(engine, val) {
                        Ok((view, sum)) if Some(view.id) == id.map(LogId::get) => {
                            v.check(&view, sum, || format!("log {}", view.id))
                        }
                        Ok((view, _)) => v.corrupt(id, format!("key {id:?} holds log {}", view.id)),
                        Err(e) => v.corrupt(id, format!("key {id:?}: {e}")),
                    }
                }
                from = last + 1;
            }
            Ok(v.finish())
        })
        .await
    }

    async fn import_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.check_open()?;
        self.check_writable("import")?;
        self.check_durability(durability)?;
        let top = records.iter().map(|r| r.id).max();
        let report = self
            .group
            .with_writer(move |w| w.import(&records, durability, false))
            .await??;
        if let Some(top) = top.filter(|_| report.inserted > 0) {
            self.inner.signal.committed(top);
        }
        Ok(report)
    }

    async fn repair_valid(&self, records: ValidRecords, durability: Durability) -> Result<ImportReport> {
        self.check_open()?;
        self.check_writable("repair")?;
        self.check_durability(durability)?;
        let top = records.iter().map(|r| r.id).max();
        let report = self
            .group
            .with_writer(move |w| w.import(&records, durability, true))
            .await??;
        if let Some(top) = top.filter(|_| report.inserted + report.replaced > 0) {
            self.inner.signal.committed(top);
        }
        Ok(report)
    }

    async fn prune_markers(&self) -> Result<Vec<PruneMarker>> {
        self.blocking(|inner| Ok(inner.markers()?.into_iter().map(|(_, m)| m).collect()))
            .await
    }

    async fn apply_prune(&self, marker: &PruneMarker, durability: Durability) -> Result<Applied> {
        check_marker(marker)?;
        self.check_durability(durability)?;
        self.check_open()?;
        self.check_writable("prune")?;
        crate::runtime::current("pruning a key-value store")?;
        let mut applied = Applied::default();
        for (i, ranges) in chunk_ranges(&marker.ranges, PRUNE_CHUNK_IDS)
            .into_iter()
            .enumerate()
        {
            let marker = marker.clone();
            let done = self
                .group
                .with_writer(move |w| w.prune(&marker, i == 0, &ranges, durability))
                .await??;
            applied.deleted += done.deleted;
            applied.already_marked |= done.already_marked;
        }
        Ok(applied)
    }

    async fn storage_bytes(&self) -> Result<Option<u64>> {
        self.blocking(|inner| inner.backend.storage_bytes()).await
    }

    async fn close(&self) -> Result<()> {
        let runtime = crate::runtime::current("closing a key-value store")?;
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (group, inner) = (self.group.clone(), self.inner.clone());
        runtime
            .spawn_blocking(move || {
                // The storage is released even when the writer's last write failed.
                let stopped = group.shutdown();
                let released = inner.backend.close();
                stopped.and(released)
            })
            .await
            .map_err(|e| Error::Backend {
                engine: self.inner.backend.engine(),
                context: "closing".into(),
                source: Box::new(e),
            })?
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::retention::{prune, PruneOptions};
    use crate::{LogStoreExt, Policy, Status};

    /// A map shared by every handle, so a "reopen" sees what the last one wrote.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>);

    impl KvBackend for Shared {
        fn engine(&self) -> &'static str {
            "shared-map"
        }
        fn describe(&self) -> String {
            "shared-map://".into()
        }
        fn durabilities(&self) -> Vec<Durability> {
            vec![Durability::Buffered]
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn range(
            &self,
            from: &[u8],
            to: &[u8],
            reverse: bool,
            limit: usize,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            let map = self.0.lock().unwrap();
            let it = map
                .range(from.to_vec()..to.to_vec())
                .map(|(k, v)| (k.clone(), v.clone()));
            Ok(match reverse {
                true => it.rev().take(limit).collect(),
                false => it.take(limit).collect(),
            })
        }
        fn write(&self, ops: Vec<KvOp>, _: Durability) -> Result<()> {
            let mut map = self.0.lock().unwrap();
            for op in ops {
                match op {
                    KvOp::Put(k, v) => map.insert(k, v),
                    KvOp::Delete(k) => map.remove(&k),
                };
            }
            Ok(())
        }
        fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    /// Appends one log of job `a` at `Buffered`.
    async fn append_a<B: KvBackend>(store: &KvStore<B>) -> LogRecord {
        store
            .append_with(NewLog::new("a", Status::Succeeded), Durability::Buffered)
            .await
            .unwrap()
    }

    /// A map holding one record, its store closed.
    async fn one_record_closed() -> (Shared, LogRecord) {
        let map = Shared::default();
        let store = KvStore::open(map.clone()).unwrap();
        let rec = append_a(&store).await;
        store.close().await.unwrap();
        (map, rec)
    }

    /// A read-only handle on `map`.
    fn reader(map: Shared) -> KvStore<Shared> {
        KvStore::open_with(
            map,
            KvOptions {
                read_only: true,
                ..KvOptions::default()
            },
        )
        .unwrap()
    }

    /// What a read-only handle answers to a commit, an import and a repair of `rec`.
    async fn writes_of(store: &KvStore<Shared>, rec: &LogRecord) -> [Result<()>; 3] {
        [
            store
                .commit_report(vec![NewLog::new("a", Status::Succeeded)], Durability::Buffered)
                .await
                .map(drop),
            store
                .import(vec![rec.clone()], Durability::Buffered)
                .await
                .map(drop),
            store
                .repair(vec![rec.clone()], Durability::Buffered)
                .await
                .map(drop),
        ]
    }

    /// Prunes every log below `id`, at `Buffered`.
    async fn prune_below<B: KvBackend>(store: &KvStore<B>, id: u64) -> crate::retention::PruneReport {
        let options = PruneOptions {
            durability: Durability::Buffered,
            ..PruneOptions::default()
        };
        prune(
            store,
            &Policy::default().before_id(LogId::new(id).unwrap()),
            &options,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_prune_cut_off_after_its_marker_is_finished_at_the_next_open() {
        let map = Shared::default();
        let store = KvStore::open(map.clone()).unwrap();
        let mut recs = Vec::new();
        for i in 0..10 {
            let log = NewLog::new(format!("job-{}", i % 2), Status::Succeeded);
            recs.push(store.append_with(log, Durability::Buffered).await.unwrap());
        }
        let report = prune_below(&store, 6).await;
        assert_eq!(report.deleted, 5);
        store.close().await.unwrap();
        // The state a crash between the marker's write and a later chunk leaves: the marker
        // stored, records it covers still there.
        map.write(
            recs[..5]
                .iter()
                .map(|r| KvOp::Put(key(r.id.get()), value(r)))
                .collect(),
            Durability::Buffered,
        )
        .unwrap();

        let store = KvStore::open(map.clone()).unwrap();
        for r in &recs[..5] {
            assert_eq!(
                store.get(r.id).await.unwrap(),
                None,
                "log {} is still there",
                r.id
            );
        }
        let report = store.verify(VerifyOptions::default()).await.unwrap();
        assert!(
            report.missing.is_empty() && report.corrupt.is_empty(),
            "{report:?}"
        );
        // And an import of a covered record is skipped as pruned.
        let again = store
            .import(vec![recs[0].clone()], Durability::Buffered)
            .await
            .unwrap();
        assert_eq!((again.inserted, again.pruned), (0, 1));
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn verify_reports_damaged_values_and_markers_by_id_and_goes_on() {
        let map = Shared::default();
        let store = KvStore::open(map.clone()).unwrap();
        let mut recs = Vec::new();
        for i in 0..6 {
            let log = NewLog::new(format!("job-{}", i % 2), Status::Succeeded).message("hello");
            recs.push(store.append_with(log, Durability::Buffered).await.unwrap());
        }
        prune_below(&store, 2).await;
        store.close().await.unwrap();
        // Log 3's message changed behind the store's back; log 4's value is garbage; a
        // second marker's bytes are damaged.
        let mut altered = value(&recs[2]);
        let at = altered.windows(5).position(|w| w == b"hello").unwrap();
        altered[at] = b'j';
        map.write(
            vec![
                KvOp::Put(key(3), altered),
                KvOp::Put(key(4), b"not a record".to_vec()),
                KvOp::Put(marker_key(2), b"{not a marker".to_vec()),
            ],
            Durability::Buffered,
        )
        .unwrap();

        let store = KvStore::open(map.clone()).unwrap();
        let report = store.verify(VerifyOptions::default()).await.unwrap();
        let corrupt: Vec<Option<u64>> = report.corrupt.iter().map(|c| c.id.map(LogId::get)).collect();
        assert_eq!(corrupt, [None, Some(3), Some(4)], "{report:?}");
        assert!(report.missing.is_empty(), "{report:?}");
        assert_eq!((report.first_id, report.last_id), (LogId::new(2), LogId::new(6)));
        // A damaged marker: what depends on the covered ids stops, saying so.
        let err = store
            .import(vec![recs[0].clone()], Durability::Buffered)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_value_under_another_ids_key_is_corrupt_not_a_loop() {
        let map = Shared::default();
        let store = KvStore::open(map.clone()).unwrap();
        let mut recs = Vec::new();
        for _ in 0..5 {
            let log = NewLog::new("crm", Status::Succeeded);
            recs.push(store.append_with(log, Durability::Buffered).await.unwrap());
        }
        store.close().await.unwrap();
        // Log 5's value copied under log 3's key.
        map.write(vec![KvOp::Put(key(3), value(&recs[4]))], Durability::Buffered)
            .unwrap();
        let store = KvStore::open(map.clone()).unwrap();
        let err = store.scan(&Scan::all(2)).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        // Pages that do not reach it read as before.
        let below = Scan {
            before: LogId::new(3),
            ..Scan::all(10)
        };
        let ids: Vec<u64> = store
            .scan(&below)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.get())
            .collect();
        assert_eq!(ids, [1, 2]);
        // A keyed append still works: the book skips what does not decode.
        let keyed = NewLog::new("crm", Status::Succeeded).idempotency_key("k-1");
        assert_eq!(
            store
                .append_with(keyed, Durability::Buffered)
                .await
                .unwrap()
                .id
                .get(),
            6
        );
        let report = store.verify(VerifyOptions::default()).await.unwrap();
        let corrupt: Vec<Option<u64>> = report.corrupt.iter().map(|c| c.id.map(LogId::get)).collect();
        assert_eq!(corrupt, [Some(3)], "{report:?}");
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_read_only_handle_refuses_every_write_and_leaves_an_older_store_unmarked() {
        let (map, rec) = one_record_closed().await;
        // An older store: no format key.
        map.0.lock().unwrap().remove(FORMAT);
        let before = map.0.lock().unwrap().clone();
        let reader = reader(map.clone());
        assert!(reader.is_read_only());
        assert_eq!(reader.get(rec.id).await.unwrap(), Some(rec.clone()));
        let [commit, import, repair] = writes_of(&reader, &rec).await;
        let refused = [commit, import, repair, reader.sync(Durability::Buffered).await];
        for r in refused {
            assert_eq!(r.unwrap_err().kind(), crate::ErrorKind::Unsupported);
        }
        reader.close().await.unwrap();
        assert_eq!(*map.0.lock().unwrap(), before, "nothing was written");
        // A writer marks it.
        KvStore::open(map.clone()).unwrap().close().await.unwrap();
        assert_eq!(
            map.0.lock().unwrap().get(FORMAT).cloned(),
            Some(FORMAT_VERSION.to_be_bytes().to_vec())
        );
    }

    #[tokio::test]
    async fn a_store_of_a_newer_format_is_refused_untouched() {
        let map = Shared::default();
        map.0
            .lock()
            .unwrap()
            .insert(FORMAT.to_vec(), (FORMAT_VERSION + 1).to_be_bytes().to_vec());
        let before = map.0.lock().unwrap().clone();
        let err = KvStore::open(map.clone()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{err}"
        );
        assert_eq!(*map.0.lock().unwrap(), before);
    }

    #[tokio::test]
    async fn lone_appends_leave_the_mark_behind_yet_a_reopen_never_reuses_an_id() {
        let map = Shared::default();
        let store = KvStore::open(map.clone()).unwrap();
        for _ in 0..3 {
            append_a(&store).await;
        }
        // The mark lags (lone appends write one key each) until the close stores it.
        assert_eq!(map.0.lock().unwrap().get(HIGH_WATER), None);
        // A crash now (no close, and the writer never stops): the reopen takes the last id.
        std::mem::forget(store);
        let store = KvStore::open(map.clone()).unwrap();
        let next = append_a(&store).await;
        assert_eq!(next.id.get(), 4);
        store.close().await.unwrap();
        assert_eq!(
            map.0.lock().unwrap().get(HIGH_WATER).cloned(),
            Some(4u64.to_be_bytes().to_vec())
        );
    }

    /// A [`Shared`] map that records the level of each write, can fail a write after
    /// applying it (a sync that fails), and notes its close.
    #[derive(Clone, Default)]
    struct Faulty {
        map: Shared,
        levels: Arc<Mutex<Vec<Durability>>>,
        fail_after_apply: Arc<AtomicBool>,
        closed: Arc<AtomicBool>,
    }

    impl KvBackend for Faulty {
        fn engine(&self) -> &'static str {
            "faulty"
        }
        fn describe(&self) -> String {
            "faulty://".into()
        }
        fn durabilities(&self) -> Vec<Durability> {
            Durability::ALL.to_vec()
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.map.get(key)
        }
        fn range(
            &self,
            from: &[u8],
            to: &[u8],
            reverse: bool,
            limit: usize,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            self.map.range(from, to, reverse, limit)
        }
        fn write(&self, ops: Vec<KvOp>, durability: Durability) -> Result<()> {
            self.map.write(ops, durability)?;
            self.levels.lock().unwrap().push(durability);
            match self.fail_after_apply.load(Ordering::SeqCst) {
                true => Err(Error::io(
                    "syncing",
                    std::io::Error::other("injected sync failure"),
                )),
                false => Ok(()),
            }
        }
        fn close(&self) -> Result<()> {
            self.closed.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_write_that_fails_after_reaching_the_store_never_leads_to_a_reused_id() {
        let kv = Faulty::default();
        let store = KvStore::open(kv.clone()).unwrap();
        let log = |m: &str| NewLog::new("a", Status::Succeeded).message(m);
        store
            .append_with(log("one"), Durability::PowerLoss)
            .await
            .unwrap();
        kv.fail_after_apply.store(true, Ordering::SeqCst);
        let err = store
            .append_with(log("two"), Durability::PowerLoss)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Io, "{err}");
        kv.fail_after_apply.store(false, Ordering::SeqCst);
        let three = store
            .append_with(log("three"), Durability::PowerLoss)
            .await
            .unwrap();
        assert_eq!(
            three.id.get(),
            3,
            "id 2 reached the store: it is not handed out again"
        );
        let two = store.get(LogId::new(2).unwrap()).await.unwrap().expect("log 2");
        assert_eq!(two.message, "two");
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn close_releases_the_storage_even_when_the_last_write_fails() {
        let kv = Faulty::default();
        let store = KvStore::open(kv.clone()).unwrap();
        // A lone append leaves the mark for the close to store; that write fails.
        store
            .append_with(NewLog::new("a", Status::Succeeded), Durability::PowerLoss)
            .await
            .unwrap();
        kv.fail_after_apply.store(true, Ordering::SeqCst);
        assert!(store.close().await.is_err());
        assert!(kv.closed.load(Ordering::SeqCst), "the backend was not closed");
    }

    #[tokio::test]
    async fn an_import_of_records_already_stored_reaches_the_durability_asked() {
        let kv = Faulty::default();
        let store = KvStore::open(kv.clone()).unwrap();
        let rec = append_a(&store).await;
        kv.levels.lock().unwrap().clear();
        let report = store.import(vec![rec], Durability::PowerLoss).await.unwrap();
        assert_eq!((report.inserted, report.already_present), (0, 1));
        assert_eq!(*kv.levels.lock().unwrap(), [Durability::PowerLoss]);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_damaged_prune_marker_does_not_stop_the_next_prune() {
        let map = Shared::default();
        let store = KvStore::open(map.clone()).unwrap();
        for _ in 0..6 {
            append_a(&store).await;
        }
        prune_below(&store, 3).await;
        map.0.lock().unwrap().insert(marker_key(1), b"damaged".to_vec());
        let report = prune_below(&store, 5).await;
        assert_eq!(report.deleted, 2);
        let markers: Vec<Vec<u8>> = map
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.first() == Some(&MARKER))
            .cloned()
            .collect();
        assert_eq!(
            markers,
            [marker_key(1), marker_key(2)],
            "the new marker took the next number"
        );
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_or_read_only_store_refuses_writes_and_bad_input_never_reaches_it() {
        let map = Shared::default();
        let store = KvStore::open(map.clone()).unwrap();
        let rec = append_a(&store).await;
        store.close().await.unwrap();
        let good = || vec![NewLog::new("b", Status::Succeeded)];
        let err = store
            .commit_report(good(), Durability::Buffered)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Closed, "{err}");
        let reader = reader(map);
        for r in writes_of(&reader, &rec).await {
            assert_eq!(r.unwrap_err().kind(), crate::ErrorKind::Unsupported);
        }
        // Core checks the input before any engine sees it: an empty job is invalid input,
        // a record whose checksum does not match its fields is corrupt, read-only or not.
        let mut forged = rec.clone();
        forged.message = "changed".into();
        let bad = reader
            .commit_report(vec![NewLog::new("", Status::Succeeded)], Durability::Buffered)
            .await
            .unwrap_err();
        assert_eq!(bad.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        for r in [
            reader.import(vec![forged.clone()], Durability::Buffered).await,
            reader.repair(vec![forged], Durability::Buffered).await,
        ] {
            assert_eq!(r.unwrap_err().kind(), crate::ErrorKind::Corrupt);
        }
        reader.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_damaged_high_water_mark_stops_a_writer_but_not_a_reader() {
        let (map, rec) = one_record_closed().await;
        map.0.lock().unwrap().insert(HIGH_WATER.to_vec(), b"bad".to_vec());
        let err = KvStore::open(map.clone()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        let reader = reader(map);
        assert_eq!(reader.get(rec.id).await.unwrap(), Some(rec));
        reader.close().await.unwrap();
    }
}
