//! The writer: appends whole groups with one write and one fdatasync, keeps the index,
//! and after a failed write or sync drops its handle and cuts the file back to the last
//! acknowledged byte before writing again (a failed fsync is never retried on a handle).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::Utc;
use synclog_core::group::BatchWriter;
use synclog_core::{Durability, Error, ImportReport, LogId, LogRecord, NewLog, Result};

use crate::format;
use crate::fs::{AppendFile, FileSystem, ReadAt};
use crate::load::{self, Entry, Index};

/// What readers share with the writer. Only acknowledged records are in `index`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub index: Index,
    pub reader: Arc<dyn ReadAt>,
    /// Bytes acknowledged so far (verification reads no further).
    pub end: u64,
}

pub(crate) type SharedRef = Arc<RwLock<Shared>>;

pub(crate) fn read_shared(s: &SharedRef) -> std::sync::RwLockReadGuard<'_, Shared> {
    s.read().unwrap_or_else(|p| p.into_inner())
}

fn write_shared(s: &SharedRef) -> std::sync::RwLockWriteGuard<'_, Shared> {
    s.write().unwrap_or_else(|p| p.into_inner())
}

/// What compaction did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Records in the new file.
    pub records: u64,
    /// Bytes of lines skipped at open (corrupt or repeated), saved to `rejected_to`.
    pub rejected_bytes: u64,
    /// Where the skipped lines were saved, if there were any.
    pub rejected_to: Option<PathBuf>,
    /// Bytes before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

pub(crate) struct JsonWriter {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    file: Option<Box<dyn AppendFile>>,
    /// The file may hold bytes past `end` from a failed write: cut them before appending.
    must_cut: bool,
    unsynced: bool,
    next_id: u64,
    shared: SharedRef,
    buf: Vec<u8>,
}

impl JsonWriter {
    pub(crate) fn new(fs: Arc<dyn FileSystem>, path: PathBuf, shared: SharedRef) -> Self {
        let next_id = read_shared(&shared).index.last_id().map_or(1, |k| k + 1);
        JsonWriter {
            fs,
            path,
            file: None,
            must_cut: false,
            unsynced: false,
            next_id,
            shared,
            buf: Vec::with_capacity(1 << 16),
        }
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn file(&mut self) -> Result<&mut Box<dyn AppendFile>> {
        if self.file.is_none() {
            if self.must_cut {
                let end = read_shared(&self.shared).end;
                self.fs
                    .truncate(&self.path, end)
                    .map_err(|e| Error::io(format!("cutting a failed write off {}", self.name()), e))?;
                self.must_cut = false;
            }
            let f = self
                .fs
                .open_append(&self.path)
                .map_err(|e| Error::io(format!("opening {} for appending", self.name()), e))?;
            self.file = Some(f);
        }
        let name = self.name();
        self.file.as_mut().ok_or_else(|| Error::Closed { store: name })
    }

    /// Appends `self.buf` (whole lines for `records`) and the group's commit line at
    /// `durability`, then indexes the records.
    fn write_buffered(&mut self, records: &[LogRecord], durability: Durability) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        format::encode_commit(records.len(), &mut buf);
        let result = self.append_and_sync(&buf, durability);
        if let Err(e) = result {
            // Drop the handle: the bytes may be half written, and a failed fsync must not
            // be retried on it. The next write cuts the file back to `end` first.
            self.file = None;
            self.must_cut = true;
            buf.clear();
            self.buf = buf;
            return Err(e);
        }
        let mut shared = write_shared(&self.shared);
        let mut offset = shared.end;
        let mut rest = &buf[..];
        let mut entries = Vec::with_capacity(records.len());
        for rec in records {
            let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let entry = Entry {
                offset,
                len: len as u32,
                checksum: rec.checksum,
            };
            entries.push((rec.id.get(), entry));
            offset += len as u64 + 1;
            rest = rest.get(len + 1..).unwrap_or_default();
        }
        shared.index.insert_many(entries);
        shared.end += buf.len() as u64;
        drop(shared);
        buf.clear();
        self.buf = buf;
        Ok(())
    }

    fn append_and_sync(&mut self, buf: &[u8], durability: Durability) -> Result<()> {
        let name = self.name();
        let file = self.file()?;
        file.append(buf)
            .map_err(|e| Error::io(format!("appending to {name}"), e))?;
        if durability == Durability::PowerLoss {
            file.sync_data()
                .map_err(|e| Error::io(format!("syncing {name}"), e))?;
            self.unsynced = false;
        } else {
            self.unsynced = true;
        }
        Ok(())
    }

    pub(crate) fn import(&mut self, records: Vec<LogRecord>, durability: Durability) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let mut fresh: HashMap<u64, usize> = HashMap::new();
        let mut to_write: Vec<LogRecord> = Vec::new();
        {
            let shared = read_shared(&self.shared);
            for rec in records {
                let stored = shared
                    .index
                    .get(rec.id.get())
                    .map(|e| e.checksum)
                    .or_else(|| fresh.get(&rec.id.get()).map(|&i| to_write[i].checksum));
                match stored {
                    Some(stored) => report.note_existing(rec.id, stored, rec.checksum),
                    None => {
                        fresh.insert(rec.id.get(), to_write.len());
                        to_write.push(rec);
                    }
                }
            }
        }
        if to_write.is_empty() {
            return Ok(report);
        }
        let mut buf = std::mem::take(&mut self.buf);
        for rec in &to_write {
            format::encode(rec, &mut buf)?;
        }
        self.buf = buf;
        self.write_buffered(&to_write, durability)?;
        let max = to_write.iter().map(|r| r.id.get()).max().unwrap_or(0);
        self.next_id = self.next_id.max(max + 1);
        report.inserted = to_write.len() as u64;
        Ok(report)
    }

    pub(crate) fn sync(&mut self, level: Durability) -> Result<()> {
        if level == Durability::PowerLoss && self.unsynced {
            let name = self.name();
            let result = self.file()?.sync_data();
            if let Err(e) = result {
                self.file = None;
                self.must_cut = true;
                return Err(Error::io(format!("syncing {name}"), e));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Rewrites the file in id order without skipped lines: a new file, synced, renamed
    /// over the old one, directory synced. A crash at any step leaves either file whole.
    pub(crate) fn compact(&mut self) -> Result<CompactReport> {
        self.sync(Durability::PowerLoss)?;
        let name = self.name();
        let tmp = sibling(&self.path, ".compact.tmp");
        if self
            .fs
            .len(&tmp)
            .map_err(|e| Error::io(format!("checking {}", tmp.display()), e))?
            .is_some()
        {
            // Left by a crash during an earlier compaction; the original is intact.
            self.fs
                .truncate(&tmp, 0)
                .and_then(|_| self.fs.rename(&tmp, &sibling(&self.path, ".compact.abandoned")))
                .map_err(|e| Error::io(format!("setting aside {}", tmp.display()), e))?;
        }
        let (entries, reader, bytes_before) = {
            let s = read_shared(&self.shared);
            (
                s.index.entries().copied().collect::<Vec<_>>(),
                s.reader.clone(),
                s.end,
            )
        };
        let (rejected_bytes, rejected_to) = self.save_rejected(&entries, &*reader, bytes_before)?;
        let mut out = self
            .fs
            .create_new(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let io = |what: &str| {
            let what = format!("{what} {}", tmp.display());
            move |e| Error::io(what, e)
        };
        let mut chunk = format::header_line();
        let mut in_chunk = 0;
        for e in &entries {
            let start = chunk.len();
            chunk.resize(start + e.len as usize, 0);
            reader
                .read_exact_at(&mut chunk[start..], e.offset)
                .map_err(|err| Error::io(format!("reading {name}"), err))?;
            chunk.push(b'\n');
            in_chunk += 1;
            if chunk.len() > 1 << 20 {
                format::encode_commit(in_chunk, &mut chunk);
                out.append(&chunk).map_err(io("writing"))?;
                chunk.clear();
                in_chunk = 0;
            }
        }
        if in_chunk > 0 {
            format::encode_commit(in_chunk, &mut chunk);
        }
        out.append(&chunk).map_err(io("writing"))?;
        out.sync_data().map_err(io("syncing"))?;
        drop(out);
        self.fs.sync_dir(&tmp).map_err(io("syncing the directory of"))?;
        self.file = None;
        self.fs
            .rename(&tmp, &self.path)
            .map_err(|e| Error::io(format!("renaming {} over {name}", tmp.display()), e))?;
        let loaded = load::load(&*self.fs, &self.path)?;
        let reader = self
            .fs
            .open_read_at(&self.path)
            .map_err(|e| Error::io(format!("opening {name}"), e))?;
        let mut shared = write_shared(&self.shared);
        shared.index = loaded.index;
        shared.end = loaded.end;
        shared.reader = Arc::from(reader);
        Ok(CompactReport {
            records: shared.index.len() as u64,
            rejected_bytes,
            rejected_to,
            bytes_before,
            bytes_after: shared.end,
        })
    }
}

impl JsonWriter {
    /// Saves every line of the file that is neither the header, an indexed record nor a
    /// commit line (the lines skipped at open) to a `.rejected-…` file, so compaction
    /// deletes nothing unseen.
    fn save_rejected(
        &self,
        entries: &[Entry],
        reader: &dyn ReadAt,
        end: u64,
    ) -> Result<(u64, Option<PathBuf>)> {
        let mut spans: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| (e.offset, e.offset + e.len as u64 + 1))
            .collect();
        spans.sort_unstable();
        let mut gaps = Vec::new();
        let mut at = format::header_line().len() as u64;
        for (start, stop) in spans.into_iter().chain([(end, end)]) {
            if start > at {
                gaps.push((at, start));
            }
            at = at.max(stop);
        }
        if gaps.is_empty() {
            return Ok((0, None));
        }
        let mut bytes = Vec::new();
        let mut gap = Vec::new();
        for (start, stop) in gaps {
            gap.resize((stop - start) as usize, 0);
            reader
                .read_exact_at(&mut gap, start)
                .map_err(|e| Error::io(format!("reading {}", self.name()), e))?;
            // Commit lines are framing, not rejected data.
            for line in gap.split_inclusive(|&b| b == b'\n') {
                if format::commit_count(line.strip_suffix(b"\n").unwrap_or(line)).is_none() {
                    bytes.extend_from_slice(line);
                }
            }
        }
        if bytes.is_empty() {
            return Ok((0, None));
        }
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let to = sibling(&self.path, &format!(".rejected-{stamp}"));
        self.fs
            .write_new(&to, &bytes)
            .map_err(|e| Error::io(format!("saving rejected lines to {}", to.display()), e))?;
        Ok((bytes.len() as u64, Some(to)))
    }
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl BatchWriter for JsonWriter {
    fn commit_group(&mut self, batches: &[&[NewLog]], durability: Durability) -> Result<Vec<Vec<LogRecord>>> {
        let now = Utc::now();
        let mut next = self.next_id;
        let mut out = Vec::with_capacity(batches.len());
        let mut all = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        for batch in batches {
            let mut recs = Vec::with_capacity(batch.len());
            for log in batch.iter() {
                let id = LogId::new(next).ok_or_else(|| Error::Unsupported {
                    engine: "json",
                    what: "more than i64::MAX ids".into(),
                })?;
                next += 1;
                let rec = LogRecord::seal_ref(id, now, log)?;
                format::encode(&rec, &mut buf)?;
                recs.push(rec);
            }
            all.extend(recs.iter().cloned());
            out.push(recs);
        }
        self.buf = buf;
        self.write_buffered(&all, durability)?;
        self.next_id = next;
        Ok(out)
    }

    fn close(&mut self) -> Result<()> {
        self.sync(Durability::PowerLoss)
    }
}
