//! The index side file, `<file>.idx`: what an earlier open (or the writer) already read and
//! checked, so that opening reads only what changed since.
//!
//! It is a cache: a missing, stale, damaged or other-version side file is ignored (and
//! rebuilt by a full read of the store), never trusted and never an error. Layout (all
//! integers little-endian):
//!
//! - the **entries**: one 24-byte record per indexed record, sorted by id, without
//!   repeats: id (u64), where (u64: the file's number in the high 16 bits, the line's
//!   offset in the low 48), length without the newline (u32), checksum (u32). Entry `i`
//!   is at byte `24 * i`, so a lookup is a binary search by positioned reads. They are
//!   checksummed in blocks of [`BLOCK_ENTRIES`] (CRC-32C of each block, kept in the meta).
//! - the **meta**, JSON: for each file of the store the prefix covered (bytes, lines) and
//!   its identity (inode, CRC-32C of its first and last 4 KiB of the prefix), the entries
//!   of each file, the block checksums, and the lines skipped in the covered prefixes
//!   (corrupt lines, repeats) so that an open reports exactly what a full read reports.
//! - the **footer**, 32 bytes: magic `SLJSNIDX`, version (u32), meta length (u32), entry
//!   count (u64), CRC-32C of the meta (u32), CRC-32C of the footer's first 28 bytes (u32).
//!
//! It is written to `<file>.idx.tmp`, synced and renamed over `<file>.idx`, so a reader
//! that opened the old one keeps reading it whole.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use synclog_core::{Checksum, Error, Result};

use crate::fs::{FileSystem, ReadAt};
use crate::index::Entry;
use crate::load::{sibling, CorruptLine, LineProblem};

/// Bytes of one entry.
const RECORD: usize = 24;
/// Entries in one checksummed block (24 KiB).
pub(crate) const BLOCK_ENTRIES: usize = 1024;
/// Bytes of the footer.
const FOOTER: usize = 32;
const MAGIC: &[u8; 8] = b"SLJSNIDX";
/// The side file version this build writes and reads; any other is ignored (rebuilt).
pub(crate) const VERSION: u32 = 1;
/// Bytes at each end of a covered prefix whose CRC-32C identifies it.
const WINDOW: u64 = 4096;

/// The side file of the store whose active file is `path`.
pub(crate) fn side_path(path: &Path) -> PathBuf {
    sibling(path, ".idx")
}

/// What the side file covers of one file of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Covered {
    /// The file's number (a sealed segment's, or the active file's).
    pub number: u16,
    /// Bytes covered: up to the end of a committed group.
    pub bytes: u64,
    /// Lines in the covered bytes.
    pub lines: u64,
    /// The file's inode (a file replaced by compaction or a copy has another).
    pub ino: u64,
    /// CRC-32C of the first and of the last [`WINDOW`] bytes of the prefix.
    pub head_crc: u32,
    pub tail_crc: u32,
    /// Entries of this file in the side file.
    pub entries: u64,
}

/// A line skipped in a covered prefix, as the report gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SkippedLine {
    pub file: u16,
    pub line: u64,
    pub offset: u64,
    pub detail: String,
    /// 0 corrupt, 1 duplicate, 2 conflicting repeat.
    pub kind: u8,
}

impl SkippedLine {
    pub(crate) fn new(file: u16, c: &CorruptLine) -> SkippedLine {
        SkippedLine {
            file,
            line: c.line,
            offset: c.offset,
            detail: c.detail.clone(),
            kind: match c.kind {
                LineProblem::Corrupt => 0,
                LineProblem::Duplicate => 1,
                LineProblem::ConflictingRepeat => 2,
            },
        }
    }

    /// The report's line, in the file at `path`; `None` for an unknown kind.
    pub(crate) fn to_corrupt(&self, path: PathBuf) -> Option<CorruptLine> {
        let kind = match self.kind {
            0 => LineProblem::Corrupt,
            1 => LineProblem::Duplicate,
            2 => LineProblem::ConflictingRepeat,
            _ => return None,
        };
        Some(CorruptLine {
            file: path,
            line: self.line,
            offset: self.offset,
            detail: self.detail.clone(),
            kind,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    files: Vec<Covered>,
    block_crcs: Vec<u32>,
    skipped: Vec<SkippedLine>,
}

/// The identity of the first `bytes` of a file read through `reader`: CRC-32C of its first
/// and last [`WINDOW`] bytes.
pub(crate) fn identity(reader: &dyn ReadAt, bytes: u64) -> std::io::Result<(u32, u32)> {
    let w = WINDOW.min(bytes);
    let mut buf = vec![0; w as usize];
    reader.read_exact_at(&mut buf, 0)?;
    let head = crc32c::crc32c(&buf);
    reader.read_exact_at(&mut buf, bytes - w)?;
    Ok((head, crc32c::crc32c(&buf)))
}

fn encode_entry(id: u64, e: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&((u64::from(e.file()) << 48) | e.offset()).to_le_bytes());
    out.extend_from_slice(&e.len.to_le_bytes());
    out.extend_from_slice(&e.checksum.0.to_le_bytes());
}

fn decode_entry(b: &[u8]) -> (u64, Entry) {
    let u64_at = |i: usize| {
        let mut a = [0; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let u32_at = |i: usize| {
        let mut a = [0; 4];
        a.copy_from_slice(&b[i..i + 4]);
        u32::from_le_bytes(a)
    };
    let at = u64_at(8);
    let entry = Entry::new(
        (at >> 48) as u16,
        at & crate::index::MAX_OFFSET,
        u32_at(16),
        Checksum(u32_at(20)),
    );
    (u64_at(0), entry)
}

/// The entries of one block, with their ids.
pub(crate) type Block = Arc<[(u64, Entry)]>;

/// A side file that checked out, read by positioned reads. Only the first id and the
/// checksum of each block (12 bytes per 1024 records) are kept in memory.
#[derive(Debug)]
pub(crate) struct DiskIndex {
    path: PathBuf,
    reader: Arc<dyn ReadAt>,
    entries: u64,
    /// First id of each block.
    fences: Vec<u64>,
    crcs: Vec<u32>,
    last: Option<u64>,
    pub files: Vec<Covered>,
    pub skipped: Vec<SkippedLine>,
    /// The block read last (lookups in id order often read the same one again).
    cache: Mutex<Option<(usize, Block)>>,
}

impl DiskIndex {
    /// Entries held.
    pub(crate) fn len(&self) -> u64 {
        self.entries
    }

    pub(crate) fn last_id(&self) -> Option<u64> {
        self.last
    }

    pub(crate) fn blocks(&self) -> usize {
        self.fences.len()
    }

    /// Entries of file number `file`.
    pub(crate) fn count_in(&self, file: u16) -> u64 {
        self.files
            .iter()
            .filter(|f| f.number == file)
            .map(|f| f.entries)
            .sum()
    }

    /// Block `b`, read and checked against its checksum.
    pub(crate) fn block(&self, b: usize) -> Result<Block> {
        if let Some((at, block)) = &*self.cache.lock().unwrap_or_else(|p| p.into_inner()) {
            if *at == b {
                return Ok(block.clone());
            }
        }
        let first = (b * BLOCK_ENTRIES) as u64;
        let n = (self.entries - first).min(BLOCK_ENTRIES as u64) as usize;
        let mut buf = vec![0; n * RECORD];
        self.reader
            .read_exact_at(&mut buf, first * RECORD as u64)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        if self.crcs.get(b) != Some(&crc32c::crc32c(&buf)) {
            return Err(Error::Corrupt {
                location: format!("{} block {b}", self.path.display()),
                detail: "the index side file changed behind the store; reopen the store to rebuild it".into(),
                source: None,
            });
        }
        let block: Arc<[(u64, Entry)]> = buf.chunks_exact(RECORD).map(decode_entry).collect();
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((b, block.clone()));
        Ok(block)
    }

    /// The block that would hold `id`, if any.
    pub(crate) fn block_of(&self, id: u64) -> Option<usize> {
        self.fences.partition_point(|&f| f <= id).checked_sub(1)
    }

    pub(crate) fn get(&self, id: u64) -> Result<Option<Entry>> {
        let Some(b) = self.block_of(id) else {
            return Ok(None);
        };
        let block = self.block(b)?;
        Ok(block
            .binary_search_by_key(&id, |(k, _)| *k)
            .ok()
            .map(|i| block[i].1))
    }
}

/// Why a side file was not used.
pub(crate) type Unusable = String;

/// Opens and checks the side file of the store at `path`: its footer, its meta and every
/// block's checksum, and that ids rise. Reads it once, sequentially (24 bytes a record).
pub(crate) fn open(fs: &dyn FileSystem, path: &Path) -> std::result::Result<DiskIndex, Unusable> {
    let at = side_path(path);
    let io = |e: std::io::Error| format!("it could not be read ({e})");
    let len = fs.len(&at).map_err(io)?.ok_or("there is none")?;
    if len < FOOTER as u64 {
        return Err("it is damaged (shorter than its footer)".into());
    }
    let reader: Arc<dyn ReadAt> = Arc::from(fs.open_read_at(&at).map_err(io)?);
    let mut footer = [0u8; FOOTER];
    reader
        .read_exact_at(&mut footer, len - FOOTER as u64)
        .map_err(io)?;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if &footer[..8] != MAGIC {
        return Err("it is damaged (no footer)".into());
    }
    if u32_at(&footer, 28) != crc32c::crc32c(&footer[..28]) {
        return Err("it is damaged (its footer does not match its checksum)".into());
    }
    let version = u32_at(&footer, 8);
    if version != VERSION {
        return Err(format!(
            "it has format version {version}, this build uses {VERSION}"
        ));
    }
    let meta_len = u64::from(u32_at(&footer, 12));
    let mut n = [0u8; 8];
    n.copy_from_slice(&footer[16..24]);
    let entries = u64::from_le_bytes(n);
    let body = entries
        .checked_mul(RECORD as u64)
        .and_then(|b| b.checked_add(meta_len + FOOTER as u64));
    if body != Some(len) {
        return Err("it is damaged (its length does not match its footer)".into());
    }
    let mut meta = vec![0; meta_len as usize];
    reader
        .read_exact_at(&mut meta, len - FOOTER as u64 - meta_len)
        .map_err(io)?;
    if crc32c::crc32c(&meta) != u32_at(&footer, 24) {
        return Err("it is damaged (its meta does not match its checksum)".into());
    }
    let meta: Meta = serde_json::from_slice(&meta).map_err(|e| format!("it is damaged ({e})"))?;
    if meta.files.windows(2).any(|w| w[0].number >= w[1].number) {
        return Err("it is damaged (files out of order)".into());
    }
    let blocks = entries.div_ceil(BLOCK_ENTRIES as u64);
    if meta.block_crcs.len() as u64 != blocks {
        return Err("it is damaged (block count)".into());
    }
    // Every block, in order: its checksum, rising ids, files it names, counts per file.
    let mut stream = fs.open_stream(&at).map_err(io)?;
    let mut fences = Vec::with_capacity(blocks as usize);
    let mut per_file: Vec<u64> = vec![0; meta.files.len()];
    let mut last: Option<u64> = None;
    let mut buf = vec![0u8; BLOCK_ENTRIES * RECORD];
    for (b, want) in meta.block_crcs.iter().enumerate() {
        let n = (entries - (b * BLOCK_ENTRIES) as u64).min(BLOCK_ENTRIES as u64) as usize;
        let buf = &mut buf[..n * RECORD];
        stream.read_exact(buf).map_err(io)?;
        if crc32c::crc32c(buf) != *want {
            return Err(format!("it is damaged (block {b} does not match its checksum)"));
        }
        for (i, rec) in buf.chunks_exact(RECORD).enumerate() {
            let (id, e) = decode_entry(rec);
            if last.is_some_and(|l| l >= id) {
                return Err(format!("it is damaged (ids out of order in block {b})"));
            }
            last = Some(id);
            if i == 0 {
                fences.push(id);
            }
            match meta.files.binary_search_by_key(&e.file(), |f| f.number) {
                Ok(f) if e.end() <= meta.files[f].bytes => per_file[f] += 1,
                _ => {
                    return Err(format!(
                        "it is damaged (block {b} points outside the files it covers)"
                    ))
                }
            }
        }
    }
    if meta.files.iter().zip(&per_file).any(|(f, &n)| f.entries != n) {
        return Err("it is damaged (entry counts per file)".into());
    }
    Ok(DiskIndex {
        path: at,
        reader,
        entries,
        fences,
        crcs: meta.block_crcs,
        last,
        files: meta.files,
        skipped: meta.skipped,
        cache: Mutex::new(None),
    })
}

/// Writes a side file for the store at `path`: `files` (their `entries` are counted
/// here), then `entries` (sorted by id, without repeats), and `skipped`. Write to a
/// temporary file, sync, rename; no temporary file is left on failure. Returns it opened.
pub(crate) fn write(
    fs: &dyn FileSystem,
    path: &Path,
    mut files: Vec<Covered>,
    entries: impl Iterator<Item = Result<(u64, Entry)>>,
    skipped: Vec<SkippedLine>,
) -> Result<DiskIndex> {
    let at = side_path(path);
    let tmp = sibling(path, ".idx.tmp");
    let name = tmp.display().to_string();
    let io = |e: std::io::Error| Error::io(format!("writing {name}"), e);
    if fs.len(&tmp).map_err(io)?.is_some() {
        fs.remove_file(&tmp).map_err(io)?;
    }
    let result = (|| {
        let mut out = fs.create_new(&tmp).map_err(io)?;
        files.sort_by_key(|f| f.number);
        files.dedup_by_key(|f| f.number);
        for f in &mut files {
            f.entries = 0;
        }
        let mut buf = Vec::with_capacity(BLOCK_ENTRIES * RECORD);
        let (mut fences, mut crcs, mut count, mut last) = (Vec::new(), Vec::new(), 0u64, None);
        let mut flush = |buf: &mut Vec<u8>, out: &mut Box<dyn crate::fs::AppendFile>| -> Result<()> {
            if !buf.is_empty() {
                crcs.push(crc32c::crc32c(buf));
                out.append(buf).map_err(io)?;
                buf.clear();
            }
            Ok(())
        };
        for item in entries {
            let (id, e) = item?;
            if last.is_some_and(|l| l >= id) {
                return Err(Error::Backend {
                    engine: "json",
                    context: format!("writing {name}"),
                    source: format!("entries out of order at log {id}").into(),
                });
            }
            last = Some(id);
            match files.binary_search_by_key(&e.file(), |f| f.number) {
                Ok(f) if e.end() <= files[f].bytes => files[f].entries += 1,
                _ => {
                    return Err(Error::Backend {
                        engine: "json",
                        context: format!("writing {name}"),
                        source: format!("log {id} is outside the covered files").into(),
                    })
                }
            }
            if buf.is_empty() {
                fences.push(id);
            }
            encode_entry(id, &e, &mut buf);
            count += 1;
            if buf.len() == BLOCK_ENTRIES * RECORD {
                flush(&mut buf, &mut out)?;
            }
        }
        flush(&mut buf, &mut out)?;
        let meta = Meta {
            files: files.clone(),
            block_crcs: crcs.clone(),
            skipped: skipped.clone(),
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| io(std::io::Error::other(e)))?;
        let meta_len = u32::try_from(meta.len()).map_err(|_| io(std::io::Error::other("meta too large")))?;
        let mut tail = meta;
        let meta_crc = crc32c::crc32c(&tail);
        let from = tail.len();
        tail.extend_from_slice(MAGIC);
        tail.extend_from_slice(&VERSION.to_le_bytes());
        tail.extend_from_slice(&meta_len.to_le_bytes());
        tail.extend_from_slice(&count.to_le_bytes());
        tail.extend_from_slice(&meta_crc.to_le_bytes());
        let footer_crc = crc32c::crc32c(&tail[from..]);
        tail.extend_from_slice(&footer_crc.to_le_bytes());
        out.append(&tail).map_err(io)?;
        out.sync_data().map_err(io)?;
        drop(out);
        fs.rename(&tmp, &at)
            .map_err(|e| Error::io(format!("renaming {name} to {}", at.display()), e))?;
        let reader: Arc<dyn ReadAt> = Arc::from(
            fs.open_read_at(&at)
                .map_err(|e| Error::io(format!("opening {}", at.display()), e))?,
        );
        Ok(DiskIndex {
            path: at.clone(),
            reader,
            entries: count,
            fences,
            crcs,
            last,
            files,
            skipped,
            cache: Mutex::new(None),
        })
    })();
    if result.is_err() && fs.len(&tmp).ok().flatten().is_some() {
        let _ = fs.remove_file(&tmp);
    }
    result
}
