//! Opening a store: its sealed segments and its active file, each checked line by line
//! into one index; an uncommitted tail moved aside, corrupt lines reported, and a rotation
//! that a crash cut off finished.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use synclog_core::{Checksum, Error, LogId, Result};

use crate::format;
use crate::fs::FileSystem;
use crate::mark::{self, Mark};

pub(crate) use crate::index::{Entry, Index, StoreIndex, MAX_OFFSET};
use crate::sidefile::{self, Covered, DiskIndex, SkippedLine};
use std::sync::Arc;

/// A line that was skipped at open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorruptLine {
    /// The file holding it (the active file or a sealed segment).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line.
    pub offset: u64,
    /// What is wrong with it.
    pub detail: String,
    /// What kind of problem it is.
    pub kind: LineProblem,
}

/// What kind of problem a skipped line has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LineProblem {
    /// Not a record that checks out: bad JSON, a checksum that does not match, a commit
    /// line with the wrong count. Compaction saves it aside.
    Corrupt,
    /// A record whose id is already stored with the same checksum: an identical copy.
    /// Compaction drops it.
    Duplicate,
    /// A valid record whose id is already stored with another checksum: the first copy is
    /// kept, and compaction saves this one aside.
    ConflictingRepeat,
}

/// The end of a file that was never committed (a torn last line, or a last group without
/// its commit line), moved aside at open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// Where its bytes were saved.
    pub moved_to: PathBuf,
    /// How many bytes.
    pub bytes: u64,
}

/// What opening a JSON-lines file found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OpenReport {
    /// Records loaded.
    pub records: u64,
    /// Lines skipped (bad JSON, a checksum that does not match, a repeated id).
    pub corrupt_lines: Vec<CorruptLine>,
    /// Uncommitted ends (a torn last line, or a last group without its commit line: its
    /// write never completed, so it was never acknowledged), moved aside. Only the active
    /// file can have one, unless a sealed segment was damaged.
    pub torn_tails: Vec<TornTail>,
    /// Sealed segments loaded (see [`crate::JsonStore::rotate`]).
    pub segments: u64,
    /// A rotation had been cut off between its two renames, and opening finished it.
    pub finished_rotation: bool,
    /// The file did not exist and was created.
    pub created: bool,
    /// The highest id ever handed out, as far as the store's files, its moved-aside files
    /// and its high-water mark (`<file>.hwm`) tell: the next id is above it.
    pub high_water: u64,
    /// Why the high-water mark did not read, if it did not (ids are then bounded by the
    /// files alone, and `verify` reports it).
    pub mark_problem: Option<String>,
    /// Bytes of an uncommitted end that could not be moved aside (no space to save them):
    /// left in place, unindexed, they are moved aside before the next write, which fails
    /// while they cannot be. The store reads meanwhile.
    pub tail_left_in_place: Option<u64>,
    /// Why the index side file (`<file>.idx`) was not used, if it was not (there was none,
    /// or it was stale, damaged or of another version): every file was then read whole,
    /// and a writer's open wrote a new one. Nothing else in the report depends on it.
    pub index_rebuilt: Option<String>,
    /// Bytes of the store's files read and checked at open: what the side file did not
    /// cover.
    pub bytes_read: u64,
    /// The store was of this format, an earlier release's (it had no `<file>.format`
    /// marker), and this open upgraded it in place to [`crate::STORE_FORMAT`].
    pub format_upgraded: Option<u32>,
}

impl OpenReport {
    /// Lines skipped because they repeat a stored record identically (`synclog compact`
    /// drops them).
    pub fn duplicate_lines(&self) -> u64 {
        self.count(LineProblem::Duplicate)
    }

    /// Lines skipped because they do not check out, or repeat an id with another record
    /// (`synclog compact` saves them to a `.rejected-…` file).
    pub fn corrupt_line_count(&self) -> u64 {
        self.corrupt_lines.len() as u64 - self.duplicate_lines()
    }

    fn count(&self, kind: LineProblem) -> u64 {
        self.corrupt_lines.iter().filter(|c| c.kind == kind).count() as u64
    }
}

/// One file of a store.
#[derive(Debug, Clone)]
pub(crate) struct StoreFile {
    /// Its number in index entries: a sealed segment's number, or for the active file
    /// the number it will get when it is sealed.
    pub number: u16,
    pub path: PathBuf,
    /// Length up to the end of its last committed group.
    pub end: u64,
    /// Lines up to `end`.
    pub lines: u64,
    /// Where opening started to read it, and the lines before: what the side file covers.
    pub from: (u64, u64),
}

pub(crate) struct Loaded {
    pub index: StoreIndex,
    pub mark: MarkState,
    /// Sealed segments in number order, then the active file.
    pub files: Vec<StoreFile>,
    pub report: OpenReport,
    /// The store's prune markers ([`crate::prunes`]), oldest first.
    pub prunes: Vec<synclog_core::PruneMarker>,
    /// The markers file's identity and length when read (`None`: no file), so that a
    /// writer notices another process's prune.
    pub prunes_seen: Option<(crate::fs::FileId, u64)>,
}

/// The name a sealed segment of the store at `path` gets: `<file>.seg-000001`, ….
pub(crate) fn segment_path(path: &Path, number: u16) -> PathBuf {
    sibling(path, &format!(".seg-{number:06}"))
}

/// Where a rotation prepares the next active file before renaming it into place.
pub(crate) fn next_path(path: &Path) -> PathBuf {
    sibling(path, ".next")
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The sealed segments next to `path`, in number order.
pub(crate) fn segments(fs: &dyn FileSystem, path: &Path) -> Result<Vec<(u16, PathBuf)>> {
    let name = path.display().to_string();
    let prefix = match path.file_name() {
        Some(f) => format!("{}.seg-", f.to_string_lossy()),
        None => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for p in fs
        .siblings(path)
        .map_err(io(format!("listing the segments of {name}")))?
    {
        let file = p.file_name().map(|f| f.to_string_lossy().into_owned());
        let number = file
            .as_deref()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u16>().ok())
            .filter(|&n| n > 0);
        if let Some(n) = number {
            out.push((n, p));
        }
    }
    out.sort();
    Ok(out)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

/// How many times a reader's load starts again when a file it listed is gone.
const READ_RETRIES: u32 = 8;

/// Loads the store at `path`: every sealed segment, then the active file (created with
/// its header if it does not exist), into one index. A record stored twice keeps its
/// first copy (the oldest file's); the others are reported.
///
/// With `writes` false (see [`crate::inspect`]) nothing is written: an uncommitted end is
/// left in place (and not indexed), a cut-off rotation is not finished, no header is
/// created, the mark is not saved, and a file found gone meanwhile (a writer's prune or
/// compaction) makes the load start again, up to [`READ_RETRIES`] times.
pub(crate) fn load(fs: &dyn FileSystem, path: &Path, writes: bool) -> Result<Loaded> {
    if writes {
        sidefile::remove_stale_tmp(fs, path);
    }
    // A reader takes no lock: a writer's prune or compaction may remove a sealed segment
    // (or replace a file) between listing the files and reading them. Such a store is
    // read again, a few times (each writer's change is a finished step, so the next read
    // meets a consistent set).
    let mut tries = 0;
    loop {
        match load_with(fs, path, writes, true) {
            Err(Error::Io { source, .. })
                if !writes && source.kind() == std::io::ErrorKind::NotFound && tries < READ_RETRIES =>
            {
                tries += 1;
            }
            other => return other,
        }
    }
}

/// [`load`], reading every file whole without looking at the side file when `use_side`
/// is false (one found damaged while in use). A writer's load then writes a new one.
pub(crate) fn load_with(fs: &dyn FileSystem, path: &Path, writes: bool, use_side: bool) -> Result<Loaded> {
    let name = path.display().to_string();
    let mut report = OpenReport::default();
    // The markers first: read before the files, so that a prune finishing meanwhile in
    // another process (it writes them before it deletes) is never half seen.
    let prunes_at = crate::prunes::prunes_path(path);
    let prunes_seen = fs
        .stat(&prunes_at)
        .map_err(io(format!("reading {}", prunes_at.display())))?;
    let prunes = crate::prunes::read(fs, path)?;
    let next = next_path(path);
    let exists = fs.len(path).map_err(io(format!("reading {name}")))?;
    if writes && exists.is_none() && fs.len(&next).map_err(io(format!("reading {name}")))?.is_some() {
        // A rotation sealed the active file and was cut off before renaming the next one
        // (already synced, holding only its header) into place.
        fs.rename(&next, path)
            .map_err(io(format!("finishing the rotation of {name}")))?;
        report.finished_rotation = true;
    }
    let sealed = segments(fs, path)?;
    let active = match sealed.last() {
        None => 1,
        Some((n, _)) => n.checked_add(1).ok_or_else(|| Error::Unsupported {
            engine: "json",
            what: format!("more than {} segments of {name}", u16::MAX),
        })?,
    };
    let mut all = sealed;
    all.push((active, path.to_path_buf()));
    // What the side file covers is not read again; a side file that does not describe the
    // files as they are is not used.
    let opened = match use_side {
        true => sidefile::open(fs, path).and_then(|d| check_covers(fs, &d, &all).map(|()| d)),
        false => Err("a block of it was found damaged when read".into()),
    };
    let disk = match opened {
        Ok(d) => Some(Arc::new(d)),
        Err(why) => {
            report.index_rebuilt = Some(why);
            None
        }
    };
    let covered = |i: usize| -> (u64, u64) {
        disk.as_ref()
            .and_then(|d| d.files.get(i))
            .map_or((0, 0), |c| (c.bytes, c.lines))
    };
    // Entries committed past what the side file covers, in file order; sorted (stably, so
    // the first copy of an id wins) at the end and made the in-memory index in place (24
    // bytes a record at the peak, not twice that).
    let mut committed: Vec<(u64, Entry)> = Vec::new();
    let mut files = Vec::with_capacity(all.len());
    let last = all.len() - 1;
    for (i, (number, file)) in all.into_iter().enumerate() {
        let from = covered(i);
        let (mut end, mut lines) = load_file(
            fs,
            &file,
            number,
            &mut committed,
            &mut report,
            CHUNK_BYTES,
            writes,
            from,
        )?;
        if i < last {
            report.segments += 1;
        } else if end == 0 && writes {
            // New (or empty, or only a torn header): write the header durably.
            let mut out = fs.open_append(&file).map_err(io(format!("creating {name}")))?;
            let header = format::header_line();
            out.append(&header)
                .map_err(io(format!("writing the header of {name}")))?;
            out.sync_data().map_err(io(format!("syncing {name}")))?;
            fs.sync_dir(&file)
                .map_err(io(format!("syncing the directory of {name}")))?;
            (end, lines) = (header.len() as u64, 1);
            report.created = exists.is_none() && !report.finished_rotation;
        }
        files.push(StoreFile {
            number,
            path: file,
            end,
            lines,
            from,
        });
    }
    committed.sort_by_key(|(id, _)| *id);
    let mut repeats = Vec::new();
    let mut kept = 0;
    let disk_last = disk.as_ref().and_then(|d| d.last_id());
    for i in 0..committed.len() {
        let (id, entry) = committed[i];
        if kept > 0 && committed[kept - 1].0 == id {
            let same = committed[kept - 1].1.checksum == entry.checksum;
            repeats.push((id, entry, same));
            continue;
        }
        if let (Some(d), true) = (&disk, disk_last.is_some_and(|l| id <= l)) {
            let found = match d.get(id) {
                Ok(found) => found,
                // A block that does not check out: read everything whole instead.
                Err(_) if d.is_damaged() => return load_with(fs, path, writes, false),
                Err(e) => return Err(e),
            };
            if let Some(first) = found {
                repeats.push((id, entry, first.checksum == entry.checksum));
                continue;
            }
        }
        committed[kept] = (id, entry);
        kept += 1;
    }
    committed.truncate(kept);
    committed.shrink_to_fit();
    for (id, entry, same) in repeats {
        let file = files.iter().find(|f| f.number == entry.file());
        let line = match file {
            Some(f) => line_number(fs, &f.path, f.from, entry.offset())?,
            None => line_number(fs, path, (0, 0), entry.offset())?,
        };
        report.corrupt_lines.push(CorruptLine {
            line,
            file: file.map_or_else(|| path.to_path_buf(), |f| f.path.clone()),
            offset: entry.offset(),
            detail: if same {
                format!("log {id} appears again, identical; the first copy is kept")
            } else {
                format!("log {id} appears again, different; the first copy is kept")
            },
            kind: if same {
                LineProblem::Duplicate
            } else {
                LineProblem::ConflictingRepeat
            },
        });
    }
    if let Some(d) = &disk {
        for skipped in &d.skipped {
            let file = files.iter().find(|f| f.number == skipped.file);
            report
                .corrupt_lines
                .extend(file.and_then(|f| skipped.to_corrupt(f.path.clone())));
        }
    }
    report
        .corrupt_lines
        .sort_by(|a, b| (&a.file, a.offset).cmp(&(&b.file, b.offset)));
    let mut index = StoreIndex {
        disk,
        mem: Index::from_sorted(committed),
    };
    report.records = index.len();
    let mark = load_mark(fs, path, &index, &mut report, writes)?;
    if writes && (index.disk.is_none() || index.mem.len() >= FOLD_AT) {
        // Written now, so that the next open reads only what changes after it, and the
        // records read here leave memory.
        match write_side_file(fs, path, &files, &index, &report.corrupt_lines) {
            Ok(d) => {
                index = StoreIndex {
                    disk: Some(Arc::new(d)),
                    mem: Index::default(),
                }
            }
            Err(e) => tracing::warn!(
                store = %name,
                error = %e,
                "could not write the index side file; the next open reads every file again"
            ),
        }
    }
    if !writes
        && fs
            .stat(&prunes_at)
            .map_err(io(format!("reading {}", prunes_at.display())))?
            != prunes_seen
    {
        // A reader without the locks met another process's prune: its files may be
        // pruned past the markers read first. Read again (the prune holds the locks
        // until it is done, and prunes are rare).
        return load_with(fs, path, writes, use_side);
    }
    Ok(Loaded {
        index,
        files,
        report,
        mark,
        prunes,
        prunes_seen,
    })
}

/// In-memory entries past which the writer folds them into the side file.
pub(crate) const FOLD_AT: usize = 1 << 16;

/// Checks that the side file `d` describes the store's files `all` (number, path) as they
/// are: the same numbers from the first on, each file at least as long as its covered
/// prefix and with the same identity, every file but the last it covers covered whole.
/// So what is not covered comes after what is, in the order a full read takes.
fn check_covers(
    fs: &dyn FileSystem,
    d: &DiskIndex,
    all: &[(u16, PathBuf)],
) -> std::result::Result<(), String> {
    if d.files.len() > all.len() || d.files.is_empty() {
        return Err("it is stale (it names other files)".into());
    }
    for (i, (c, (number, file))) in d.files.iter().zip(all).enumerate() {
        let name = file.display();
        if c.number != *number {
            return Err(format!(
                "it is stale (it names file number {}, not {name})",
                c.number
            ));
        }
        let io = |e: std::io::Error| format!("{name} could not be read ({e})");
        let len = fs.len(file).map_err(io)?.unwrap_or(0);
        if len < c.bytes {
            return Err(format!("it is stale ({name} is shorter than it covers)"));
        }
        if i + 1 < d.files.len() && len != c.bytes {
            return Err(format!("it is stale ({name} changed after it was written)"));
        }
        if fs.file_id(file).map_err(io)?.map(|f| f.ino) != Some(c.ino) {
            return Err(format!("it is stale ({name} was replaced)"));
        }
        let reader = fs.open_read_at(file).map_err(io)?;
        if sidefile::identity(&*reader, c.bytes).map_err(io)? != (c.head_crc, c.tail_crc) {
            return Err(format!("it is stale ({name} holds other bytes than it covers)"));
        }
    }
    Ok(())
}

/// The identity of the first `end` bytes (`lines` lines) of file `number` at `path`.
pub(crate) fn cover(fs: &dyn FileSystem, number: u16, path: &Path, end: u64, lines: u64) -> Result<Covered> {
    let io = |e: std::io::Error| Error::io(format!("reading {}", path.display()), e);
    let reader = fs.open_read_at(path).map_err(io)?;
    let (head_crc, tail_crc) = sidefile::identity(&*reader, end).map_err(io)?;
    let ino = fs.file_id(path).map_err(io)?.map_or(0, |f| f.ino);
    Ok(Covered {
        number,
        bytes: end,
        lines,
        ino,
        head_crc,
        tail_crc,
        entries: 0,
    })
}

/// Writes the side file of the store at `path` for `files` up to their ends, `index`
/// and the lines skipped in them.
fn write_side_file(
    fs: &dyn FileSystem,
    path: &Path,
    files: &[StoreFile],
    index: &StoreIndex,
    skipped: &[CorruptLine],
) -> Result<DiskIndex> {
    let covered = files
        .iter()
        .map(|f| cover(fs, f.number, &f.path, f.end, f.lines))
        .collect::<Result<Vec<_>>>()?;
    let skipped = skipped
        .iter()
        .filter_map(|c| {
            let f = files.iter().find(|f| f.path == c.file)?;
            Some(SkippedLine::new(f.number, c))
        })
        .collect();
    sidefile::write(fs, path, covered, index.iter(), skipped)
}

/// Reads the high-water mark and the moved-aside files: the next id must be above every
/// id in them. Ids of whole records in torn tails that are not in the store are noted as
/// skipped. A mark that rose is saved; if that fails (a full disk), opening goes on with a
/// warning: the moved-aside files still bound the ids next time.
fn load_mark(
    fs: &dyn FileSystem,
    path: &Path,
    index: &StoreIndex,
    report: &mut OpenReport,
    writes: bool,
) -> Result<MarkState> {
    let (stored, problem) = match mark::read(fs, path)? {
        Ok(m) => (m, None),
        Err(p) => (None, Some(p)),
    };
    let mut mark = stored.clone().unwrap_or_default();
    mark.high_water = mark.high_water.max(index.last_id().unwrap_or(0));
    let torn = sibling(path, ".torn-")
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    let mut moved = Vec::new();
    for file in mark::aside_files(fs, path, true)? {
        let aside = mark::read_aside(fs, &file)?;
        mark.high_water = mark.high_water.max(aside.max_id);
        let is_torn = file
            .file_name()
            .zip(torn.as_deref())
            .is_some_and(|(f, t)| f.to_string_lossy().starts_with(t));
        if is_torn {
            for &(a, b) in &aside.whole {
                for id in a..=b {
                    if index.get(id)?.is_none() {
                        moved.push(id);
                    }
                }
            }
        }
    }
    mark::add_ids(&mut mark.skipped, moved);
    let mut saved = stored.as_ref().map_or(0, |m| m.high_water);
    let rose = stored.as_ref() != Some(&mark)
        && (stored.is_some() || mark.high_water > index.last_id().unwrap_or(0));
    if writes && rose {
        match mark::save(fs, path, &mark) {
            Ok(()) => saved = mark.high_water,
            Err(e) => tracing::warn!(
                store = %path.display(),
                error = %e,
                "could not save the high-water mark; the moved-aside files still bound the next id"
            ),
        }
    }
    report.high_water = mark.high_water;
    report.mark_problem = problem.clone();
    Ok(MarkState { mark, saved, problem })
}

/// The high-water mark as loaded, and how much of it is saved.
#[derive(Debug, Clone, Default)]
pub(crate) struct MarkState {
    pub mark: Mark,
    /// The high water the mark's file holds.
    pub saved: u64,
    /// Why the mark's file did not read, if it did not.
    pub problem: Option<String>,
}

/// Reads one file of the store (if it exists) once from byte `from.0` (the end of a
/// committed group, after `from.1` lines, already checked), `chunk_bytes` at a time,
/// adding its committed records to `committed` as file number `number`, and moving an
/// uncommitted tail aside. Returns the end of its last committed group (0 if it does not
/// exist or holds no complete header) and the lines before it.
#[allow(clippy::too_many_arguments)]
fn load_file(
    fs: &dyn FileSystem,
    path: &Path,
    number: u16,
    committed: &mut Vec<(u64, Entry)>,
    report: &mut OpenReport,
    chunk_bytes: usize,
    writes: bool,
    from: (u64, u64),
) -> Result<(u64, u64)> {
    let name = path.display().to_string();
    let (mut end, mut line_no) = from;
    let Some(len) = fs.len(path).map_err(io(format!("reading {name}")))? else {
        return Ok((0, 0));
    };
    report.bytes_read += len.saturating_sub(end);
    let mut stream = match end {
        0 => fs.open_stream(path),
        _ => fs.open_stream_at(path, end),
    }
    .map_err(io(format!("opening {name}")))?;
    // The group being read: where it starts (and the lines before it), its lines, its
    // records, its bad lines. It joins the index only when its commit line is read.
    let mut group_start = end;
    let mut group_start_line = line_no;
    let mut group_lines = 0u64;
    let mut group: Vec<(u64, Entry)> = Vec::new();
    let mut group_bad: Vec<CorruptLine> = Vec::new();
    let mut torn: Option<Vec<u8>> = None;
    // The file is read a chunk of whole lines at a time; a chunk's record lines are checked
    // first (on two threads when there are many), then walked in order.
    let mut chunk: Vec<u8> = Vec::with_capacity(chunk_bytes);
    let (mut want, mut eof) = (chunk_bytes.max(1), false);
    while !eof || !chunk.is_empty() {
        while !eof && chunk.len() < want {
            let buf = stream.fill_buf().map_err(io(format!("reading {name}")))?;
            if buf.is_empty() {
                eof = true;
                break;
            }
            let n = buf.len().min(want - chunk.len());
            chunk.extend_from_slice(&buf[..n]);
            stream.consume(n);
        }
        let whole = memchr::memrchr(b'\n', &chunk).map_or(0, |i| i + 1);
        if whole == 0 {
            if eof && chunk.is_empty() && end > 0 {
                // Read from the end of what the side file covers, and nothing after it.
                break;
            }
            if eof {
                // Bytes after the last newline: a torn last line.
                line_no += 1;
                torn = Some(std::mem::take(&mut chunk));
            } else {
                // A line longer than the chunk: read more of it.
                want = chunk.len() * 2;
            }
            continue;
        }
        want = chunk_bytes.max(1);
        // Each line without its ending, and the length of the ending: `\n`, or `\r\n` in a
        // file a tool converted (a Windows checkout, unix2dos); a file may mix both.
        let mut lines: Vec<&[u8]> = Vec::with_capacity(whole / 256);
        let mut endings: Vec<u8> = Vec::with_capacity(whole / 256);
        let mut from = 0;
        for newline in memchr::memchr_iter(b'\n', &chunk[..whole]) {
            let (body, ending) = format::split_ending(&chunk[from..=newline]);
            lines.push(body);
            endings.push(ending as u8);
            from = newline + 1;
        }
        let checked = check_lines(&lines, end == 0);
        for ((body, checked), ending) in lines.iter().zip(checked).zip(endings) {
            line_no += 1;
            let offset = end;
            end += body.len() as u64 + u64::from(ending);
            if end > MAX_OFFSET {
                return Err(Error::Unsupported {
                    engine: "json",
                    what: format!("{name}: files larger than {MAX_OFFSET} bytes (rotate sooner)"),
                });
            }
            if offset == 0 {
                format::check_header(body, &name)?;
                group_start = end;
                group_start_line = line_no;
                continue;
            }
            if let Some(count) = format::commit_count(body) {
                if count != group_lines {
                    group_bad.push(CorruptLine {
                        file: path.to_path_buf(),
                        line: line_no,
                        offset,
                        detail: format!("commit line counts {count} lines, the group has {group_lines}"),
                        kind: LineProblem::Corrupt,
                    });
                }
                committed.append(&mut group);
                report.corrupt_lines.append(&mut group_bad);
                group_start = end;
                group_start_line = line_no;
                group_lines = 0;
                continue;
            }
            group_lines += 1;
            match checked.unwrap_or_else(|| format::check(body)) {
                Ok((id, checksum)) => {
                    group.push((id.get(), Entry::new(number, offset, body.len() as u32, checksum)))
                }
                Err(detail) => group_bad.push(CorruptLine {
                    file: path.to_path_buf(),
                    line: line_no,
                    offset,
                    detail,
                    kind: LineProblem::Corrupt,
                }),
            }
        }
        chunk.drain(..whole);
    }
    // A trailing group without its commit line, and any torn last line, never counted:
    // move their bytes aside whole.
    if (group_lines > 0 || torn.is_some()) && !writes {
        // Left in place for the next writer's open to move aside.
        return Ok((group_start, group_start_line));
    }
    if group_lines > 0 || torn.is_some() {
        let mut bytes = Vec::new();
        if end > group_start {
            let reader = fs.open_read_at(path).map_err(io(format!("opening {name}")))?;
            bytes.resize((end - group_start) as usize, 0);
            reader
                .read_exact_at(&mut bytes, group_start)
                .map_err(io(format!("reading {name}")))?;
        }
        bytes.extend(torn.unwrap_or_default());
        match move_aside(fs, path, group_start, &bytes) {
            Ok(tail) => report.torn_tails.push(tail),
            Err(e) => {
                // No space to save it (a full disk): the store still opens for reading;
                // the end stays where it is, unindexed, and the writer moves it aside
                // before its first write (which fails while it cannot).
                tracing::warn!(
                    store = %name,
                    bytes = bytes.len(),
                    error = %e,
                    "an uncommitted end could not be moved aside; it will be before the next write"
                );
                report.tail_left_in_place = Some(bytes.len() as u64);
            }
        }
        end = group_start;
    }
    Ok((end, group_start_line))
}

/// What [`read_new`] found past what was known of the active file.
pub(crate) struct Grown {
    /// Committed records past the known end, in file order.
    pub committed: Vec<(u64, Entry)>,
    /// The end of the last committed group now, and the lines before it.
    pub end: u64,
    pub lines: u64,
    /// Lines that did not check out, and uncommitted ends moved aside (with `writes`).
    pub report: OpenReport,
}

/// Reads the file at `path` (number `number`) from `from` (the end of a committed group,
/// after that many lines): what other processes appended since this one last looked.
/// With `writes` (the caller holds the store's lock, so no group is being written), an
/// uncommitted end is moved aside as at open; without, it is left for its writer.
pub(crate) fn read_new(
    fs: &dyn FileSystem,
    path: &Path,
    number: u16,
    from: (u64, u64),
    writes: bool,
) -> Result<Grown> {
    let mut committed = Vec::new();
    let mut report = OpenReport::default();
    let (end, lines) = load_file(
        fs,
        path,
        number,
        &mut committed,
        &mut report,
        CHUNK_BYTES,
        writes,
        from,
    )?;
    Ok(Grown {
        committed,
        end,
        lines,
        report,
    })
}

/// How many bytes of a file opening reads and checks at a time.
const CHUNK_BYTES: usize = 4 << 20;

/// Fewest lines in a chunk for its checks to be split over two threads.
const PARALLEL_LINES: usize = 1024;

/// What [`format::check`] found for a record line; `None` for the header and commit lines.
type Checked = Option<std::result::Result<(LogId, Checksum), String>>;

/// Checks the record lines of a chunk (`starts_file`: its first line is the header),
/// the second half on a thread of its own when the chunk is large: checking is most of the
/// time opening takes, and each line is checked on its own.
fn check_lines(lines: &[&[u8]], starts_file: bool) -> Vec<Checked> {
    let one = |i: usize, body: &[u8]| -> Checked {
        let header = starts_file && i == 0;
        (!header && format::commit_count(body).is_none()).then(|| format::check(body))
    };
    let mid = lines.len() / 2;
    let half = |from: usize, part: &[&[u8]]| -> Vec<Checked> {
        part.iter()
            .enumerate()
            .map(|(i, body)| one(from + i, body))
            .collect()
    };
    if lines.len() < PARALLEL_LINES {
        return half(0, lines);
    }
    std::thread::scope(|scope| {
        let second = scope.spawn(|| half(mid, &lines[mid..]));
        let mut out = half(0, &lines[..mid]);
        // Should that thread panic, its lines are checked again, in order, by the caller.
        let rest = second.join().unwrap_or_else(|_| vec![None; lines.len() - mid]);
        out.extend(rest);
        out
    })
}

/// The 1-based number of the line at byte `offset` of `path`, reading from `from.0` (a
/// line start after `from.1` lines) on (for the rare report of a repeated record: keeping
/// every record's line number would cost 8 bytes a record).
fn line_number(fs: &dyn FileSystem, path: &Path, from: (u64, u64), offset: u64) -> Result<u64> {
    let name = path.display().to_string();
    let (start, before) = if from.0 <= offset { from } else { (0, 0) };
    let mut stream = fs
        .open_stream_at(path, start)
        .map_err(io(format!("opening {name}")))?;
    let (mut at, mut lines) = (start, before + 1);
    while at < offset {
        let buf = stream.fill_buf().map_err(io(format!("reading {name}")))?;
        if buf.is_empty() {
            break;
        }
        let take = buf.len().min((offset - at) as usize);
        lines += buf[..take].iter().filter(|&&b| b == b'\n').count() as u64;
        stream.consume(take);
        at += take as u64;
    }
    Ok(lines)
}

/// Saves the torn bytes next to the file, then cuts them off. Never deletes them.
fn move_aside(fs: &dyn FileSystem, path: &Path, at: u64, bytes: &[u8]) -> Result<TornTail> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".torn-{stamp}-at-{at}"));
    let aside = PathBuf::from(aside);
    if let Err(e) = fs.write_new(&aside, bytes) {
        // On a full disk the name is created but the bytes are not written: leave no
        // empty file behind for each attempt (the bytes are still in the store's file).
        if fs.len(&aside).ok().flatten().is_some() {
            let _ = fs.remove_file(&aside);
        }
        return Err(Error::io(
            format!(
                "saving the torn tail of {} to {} (the file is left as it was)",
                path.display(),
                aside.display()
            ),
            e,
        ));
    }
    fs.truncate(path, at)
        .map_err(io(format!("cutting the torn tail off {}", path.display())))?;
    Ok(TornTail {
        moved_to: aside,
        bytes: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimFs;
    use chrono::Utc;
    use synclog_core::{LogRecord, NewLog, Status};

    /// A file of two committed groups (700 and 1500 records) with two bad lines in the
    /// second, then an uncommitted group of 3 records and a torn line.
    fn damaged_file() -> (Vec<u8>, Vec<u64>) {
        let now = Utc::now();
        let rec = |i: u64| {
            let log = NewLog::new(format!("job-{}", i % 7), Status::Succeeded)
                .counts(i, i, 0)
                .message("synced")
                .attr("page", i);
            LogRecord::seal(LogId::new(i).unwrap(), now, log).unwrap()
        };
        let mut file = format::header_line();
        let mut id = 1;
        let mut bad_lines = Vec::new();
        for (size, committed) in [(700, true), (1500, true), (3, false)] {
            for k in 0..size {
                let mut line = Vec::new();
                format::encode(&rec(id), &mut line).unwrap();
                if committed && size == 1500 && (k == 100 || k == 1400) {
                    // Line numbers are 1-based and the header is line 1.
                    bad_lines.push(file.iter().filter(|&&b| b == b'\n').count() as u64 + 1);
                    line = if k == 100 {
                        String::from_utf8(line)
                            .unwrap()
                            .replace("synced", "Synced")
                            .into_bytes()
                    } else {
                        b"{not json\n".to_vec()
                    };
                }
                file.extend(line);
                id += 1;
            }
            if committed {
                format::encode_commit(size, &mut file);
            }
        }
        file.extend_from_slice(b"{\"id\":22");
        (file, bad_lines)
    }

    /// Chunks of one line at a time, lines cut across chunks, and whole chunks checked on
    /// two threads all give the same index and report as each other.
    #[test]
    fn every_chunk_size_loads_the_same_records_and_reports_the_same_damage() {
        let (file, bad_lines) = damaged_file();
        assert!(file.len() > 4096 * 3, "several chunks of the middle size");
        let path = Path::new("/sim/logs.jsonl");
        let mut seen = Vec::new();
        for chunk_bytes in [1, 333, 4096, CHUNK_BYTES] {
            let fs = SimFs::new();
            fs.set_contents(path, file.clone());
            let (mut committed, mut report) = (Vec::new(), OpenReport::default());
            let (end, _) = load_file(
                &fs,
                path,
                1,
                &mut committed,
                &mut report,
                chunk_bytes,
                true,
                (0, 0),
            )
            .unwrap();
            let lines: Vec<u64> = report.corrupt_lines.iter().map(|c| c.line).collect();
            assert_eq!(lines, bad_lines, "chunks of {chunk_bytes} bytes");
            assert!(report.corrupt_lines[0]
                .detail
                .contains("does not match its fields"));
            assert!(report.corrupt_lines[1].detail.starts_with("not a valid record"));
            assert_eq!(committed.len(), 2198, "chunks of {chunk_bytes} bytes");
            let [tail] = &report.torn_tails[..] else {
                panic!("one torn tail, got {:?}", report.torn_tails)
            };
            assert_eq!(
                fs.contents(path).unwrap().len() as u64,
                end,
                "the tail was cut off"
            );
            assert_eq!(end + tail.bytes, file.len() as u64, "and moved aside whole");
            let offsets: Vec<u64> = report.corrupt_lines.iter().map(|c| c.offset).collect();
            seen.push((end, committed, offsets));
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
    }
}
