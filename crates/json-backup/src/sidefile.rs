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
//!   checksummed in blocks of [`BLOCK_ENTRIES`] (CRC-32C and first id of each block, and
//!   the last id, kept in the meta: opening reads the meta only, and a block is checked
//!   when it is first read).
//! - the **meta**, JSON: for each file of the store the prefix covered (bytes, lines) and
//!   its identity (inode, CRC-32C of its first and last 4 KiB of the prefix), the entries
//!   of each file, the block checksums, and the lines skipped in the covered prefixes
//!   (corrupt lines, repeats) so that an open reports exactly what a full read reports.
//! - the **footer**, 32 bytes: magic `SLJSNIDX`, version (u32), meta length (u32), entry
//!   count (u64), CRC-32C of the meta (u32), CRC-32C of the footer's first 28 bytes (u32).
//!
//! It is written to `<file>.idx.tmp-<pid>-<n>`, synced, opened, and renamed over
//! `<file>.idx`, so a reader that opened the old one keeps reading it whole.

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
/// 2: the meta holds the blocks' first ids and the last id (blocks checked when read).
/// 3: the same layout, for stores of format 2 (records with keys): a release of format 1
/// ignores it, so it reads every file whole, header first, and refuses the store (with a
/// side file it would read only the lines past what it covers, never the header).
pub(crate) const VERSION: u32 = 3;
/// What a side file being written is named after: `<file>.idx.tmp-<pid>-<n>`.
pub(crate) const TMP_SUFFIX: &str = ".idx.tmp-";
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
    /// The first id of each block and the last id: with them, opening need not read the
    /// entries (each block is checked when it is first read).
    fences: Vec<u64>,
    last: Option<u64>,
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
    /// A block did not check out when it was read: the side file is not to be used again
    /// (the store loads its files whole and, if it writes, rebuilds the side file).
    damaged: std::sync::atomic::AtomicBool,
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

    /// Whether a block failed its check when read (see [`DiskIndex::block`]).
    pub(crate) fn is_damaged(&self) -> bool {
        self.damaged.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Block `b`, read and checked: its checksum, its first id (the fence the meta
    /// gives), ids rising to the next fence (or to the last id), every entry inside the
    /// files the side file covers. A block that does not check out marks the side file
    /// damaged and is an error; the store then loads its files whole and answers again.
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
        let block: Arc<[(u64, Entry)]> = buf.chunks_exact(RECORD).map(decode_entry).collect();
        if let Err(why) = self.check_block(b, &buf, &block) {
            self.damaged.store(true, std::sync::atomic::Ordering::Release);
            tracing::warn!(side_file = %self.path.display(), block = b, %why, "the index side file is damaged; the store's files are read whole instead");
            return Err(Error::Corrupt {
                location: format!("{} block {b}", self.path.display()),
                detail: format!("the index side file is damaged ({why}); it is not used again"),
                source: None,
            });
        }
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((b, block.clone()));
        Ok(block)
    }

    fn check_block(&self, b: usize, bytes: &[u8], block: &[(u64, Entry)]) -> std::result::Result<(), String> {
        if self.crcs.get(b) != Some(&crc32c::crc32c(bytes)) {
            return Err("a block does not match its checksum".into());
        }
        if block.first().map(|(id, _)| *id) != self.fences.get(b).copied() {
            return Err("a block does not start where the meta says".into());
        }
        let bound = match self.fences.get(b + 1) {
            Some(next) => Some(*next),
            None => self.last.map(|l| l + 1),
        };
        let mut prev: Option<u64> = None;
        for (id, e) in block {
            if prev.is_some_and(|p| p >= *id) || bound.is_some_and(|end| *id >= end) {
                return Err("ids out of order".into());
            }
            prev = Some(*id);
            match self.files.binary_search_by_key(&e.file(), |f| f.number) {
                Ok(f) if e.end() <= self.files[f].bytes => {}
                _ => return Err("an entry points outside the files it covers".into()),
            }
        }
        if self.fences.get(b + 1).is_none() && prev != self.last {
            return Err("the last block does not end with the last id".into());
        }
        Ok(())
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

/// Removes side files left half written by a writer that died while writing one
/// (`<file>.idx.tmp-<pid>-<n>` of a process that is gone; Linux's `/proc` tells). Best
/// effort: a file whose writer may be alive is left.
pub(crate) fn remove_stale_tmp(fs: &dyn FileSystem, path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!("{name}{TMP_SUFFIX}");
    for p in fs.siblings(path).unwrap_or_default() {
        let Some(file) = p.file_name().map(|f| f.to_string_lossy().into_owned()) else {
            continue;
        };
        let pid = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let gone = pid.is_some_and(|pid| {
            pid != std::process::id()
                && Path::new("/proc/self").exists()
                && !Path::new("/proc").join(pid.to_string()).exists()
        });
        if gone {
            let _ = fs.remove_file(&p);
        }
    }
}

/// Whether `e` is the error of a side file block that did not check out when read.
pub(crate) fn is_damage(e: &Error) -> bool {
    matches!(e, Error::Corrupt { location, .. } if location.contains(".idx block "))
}

/// Why a side file was not used.
pub(crate) type Unusable = String;

/// Opens the side file of the store at `path` and checks its footer and its meta (the
/// blocks' checksums and first ids, the last id, the entries per file); each block is
/// checked when first read. Reads only the footer and the meta.
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
    // Each block is checked when it is first read (see `DiskIndex::block`): opening
    // costs the same at 10M records as at 1,000.
    let counted: u64 = meta.files.iter().map(|f| f.entries).sum();
    let consistent = meta.fences.len() as u64 == blocks
        && meta.fences.windows(2).all(|w| w[0] < w[1])
        && counted == entries
        && (entries == 0) == meta.last.is_none()
        && meta.last.zip(meta.fences.last()).is_none_or(|(l, f)| *f <= l);
    if !consistent {
        return Err("it is damaged (its meta does not add up)".into());
    }
    Ok(DiskIndex {
        path: at,
        reader,
        entries,
        fences: meta.fences,
        crcs: meta.block_crcs,
        last: meta.last,
        files: meta.files,
        skipped: meta.skipped,
        cache: Mutex::new(None),
        damaged: std::sync::atomic::AtomicBool::new(false),
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
    // A name of its own: writers in several processes may fold at the same time.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = sibling(path, &format!("{TMP_SUFFIX}{}-{n}", std::process::id()));
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
            fences: fences.clone(),
            last,
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
        // Opened before the rename: this handle reads what was just written, whatever
        // another process renames into place after.
        let reader: Arc<dyn ReadAt> = Arc::from(fs.open_read_at(&tmp).map_err(io)?);
        fs.rename(&tmp, &at)
            .map_err(|e| Error::io(format!("renaming {name} to {}", at.display()), e))?;
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
            damaged: std::sync::atomic::AtomicBool::new(false),
        })
    })();
    if result.is_err() && fs.len(&tmp).ok().flatten().is_some() {
        let _ = fs.remove_file(&tmp);
    }
    result
}
