//! Opening a file: the header, the index, a torn tail moved aside, corrupt lines reported.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use synclog_core::{Error, Result};

use crate::format;
use crate::fs::FileSystem;

pub(crate) use crate::index::{Entry, Index};

/// A line that was skipped at open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorruptLine {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line.
    pub offset: u64,
    /// What is wrong with it.
    pub detail: String,
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
    /// An uncommitted end (a torn last line, or a last group without its commit line:
    /// its write never completed, so it was never acknowledged), moved aside.
    pub torn_tail: Option<TornTail>,
    /// The file did not exist and was created.
    pub created: bool,
}

pub(crate) struct Loaded {
    pub index: Index,
    /// Length of the file up to the last complete line.
    pub end: u64,
    pub report: OpenReport,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

/// Reads the whole file once, building the index; moves a torn tail aside and creates the
/// file (with its header) if it does not exist.
pub(crate) fn load(fs: &dyn FileSystem, path: &Path) -> Result<Loaded> {
    let name = path.display().to_string();
    let mut report = OpenReport::default();
    // Committed entries in file order; sorted (stably, so the first copy of an id wins) at the end.
    let mut committed: Vec<(u64, Entry, u64)> = Vec::new();
    let exists = fs.len(path).map_err(io(format!("reading {name}")))?;
    let mut end = 0u64;
    if exists.is_some() {
        let mut stream = fs.open_stream(path).map_err(io(format!("opening {name}")))?;
        let mut line = Vec::with_capacity(512);
        let mut line_no = 0u64;
        // The group being read: where it starts, its lines, its records, its bad lines.
        // It joins the index only when its commit line is read.
        let mut group_start = 0u64;
        let mut group_lines = 0u64;
        let mut group: Vec<(u64, Entry, u64)> = Vec::new();
        let mut group_bad: Vec<CorruptLine> = Vec::new();
        let mut torn: Option<Vec<u8>> = None;
        loop {
            line.clear();
            let n = stream
                .read_until(b'\n', &mut line)
                .map_err(io(format!("reading {name}")))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if line.last() != Some(&b'\n') {
                torn = Some(line.clone());
                break;
            }
            let body = &line[..line.len() - 1];
            let offset = end;
            end += n as u64;
            if offset == 0 {
                format::check_header(body, &name)?;
                group_start = end;
                continue;
            }
            if let Some(count) = format::commit_count(body) {
                if count != group_lines {
                    group_bad.push(CorruptLine {
                        line: line_no,
                        offset,
                        detail: format!("commit line counts {count} lines, the group has {group_lines}"),
                    });
                }
                committed.append(&mut group);
                report.corrupt_lines.append(&mut group_bad);
                group_start = end;
                group_lines = 0;
                continue;
            }
            group_lines += 1;
            let mut skip = |detail: String| {
                group_bad.push(CorruptLine {
                    line: line_no,
                    offset,
                    detail,
                })
            };
            match format::decode(body) {
                Err(e) => skip(format!("not a valid record: {e}")),
                Ok(rec) if !rec.is_intact() => skip(format!(
                    "log {}: checksum {} does not match its fields (computed {})",
                    rec.id,
                    rec.checksum,
                    rec.compute_checksum()
                )),
                Ok(rec) => group.push((
                    rec.id.get(),
                    Entry {
                        offset,
                        len: body.len() as u32,
                        checksum: rec.checksum,
                    },
                    line_no,
                )),
            }
        }
        // A trailing group without its commit line, and any torn last line, never counted:
        // move their bytes aside whole.
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
            report.torn_tail = Some(move_aside(fs, path, group_start, &bytes)?);
            end = group_start;
        }
    }
    if end == 0 {
        // New (or empty, or only a torn header): write the header durably.
        let mut file = fs.open_append(path).map_err(io(format!("creating {name}")))?;
        let header = format::header_line();
        file.append(&header)
            .map_err(io(format!("writing the header of {name}")))?;
        file.sync_data().map_err(io(format!("syncing {name}")))?;
        fs.sync_dir(path)
            .map_err(io(format!("syncing the directory of {name}")))?;
        end = header.len() as u64;
        report.created = exists.is_none();
    }
    committed.sort_by_key(|(id, _, _)| *id);
    let mut items: Vec<(u64, Entry)> = Vec::with_capacity(committed.len());
    for (id, entry, line) in committed {
        if items.last().is_some_and(|(last, _)| *last == id) {
            report.corrupt_lines.push(CorruptLine {
                line,
                offset: entry.offset,
                detail: format!("log {id} appears again; the first copy is kept"),
            });
        } else {
            items.push((id, entry));
        }
    }
    report.corrupt_lines.sort_by_key(|c| c.offset);
    let index = Index::from_sorted(items);
    report.records = index.len() as u64;
    Ok(Loaded { index, end, report })
}

/// Saves the torn bytes next to the file, then cuts them off. Never deletes them.
fn move_aside(fs: &dyn FileSystem, path: &Path, at: u64, bytes: &[u8]) -> Result<TornTail> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".torn-{stamp}-at-{at}"));
    let aside = PathBuf::from(aside);
    fs.write_new(&aside, bytes).map_err(io(format!(
        "saving the torn tail of {} to {}",
        path.display(),
        aside.display()
    )))?;
    fs.truncate(path, at)
        .map_err(io(format!("cutting the torn tail off {}", path.display())))?;
    Ok(TornTail {
        moved_to: aside,
        bytes: bytes.len() as u64,
    })
}
