//! Opening a file: the header, the index, a torn tail moved aside, corrupt lines reported.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use synclog_core::{Checksum, Error, Result};

use crate::format;
use crate::fs::FileSystem;

/// Where a record's line is in the file, and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub offset: u64,
    /// Length without the newline.
    pub len: u32,
    pub checksum: Checksum,
}

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

/// A torn last line, moved aside at open.
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
    /// A torn last line (no newline: its write never completed), moved aside.
    pub torn_tail: Option<TornTail>,
    /// The file did not exist and was created.
    pub created: bool,
}

pub(crate) struct Loaded {
    pub index: BTreeMap<u64, Entry>,
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
    let mut index = BTreeMap::new();
    let exists = fs.len(path).map_err(io(format!("reading {name}")))?;
    let mut end = 0u64;
    if exists.is_some() {
        let mut stream = fs.open_stream(path).map_err(io(format!("opening {name}")))?;
        let mut line = Vec::with_capacity(512);
        let mut line_no = 0u64;
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
                report.torn_tail = Some(move_aside(fs, path, end, &line)?);
                break;
            }
            let body = &line[..line.len() - 1];
            let offset = end;
            end += n as u64;
            if offset == 0 {
                format::check_header(body, &name)?;
                continue;
            }
            let mut skip = |detail: String| {
                report.corrupt_lines.push(CorruptLine {
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
                Ok(rec) => match index.entry(rec.id.get()) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        skip(format!("log {} appears again; the first copy is kept", rec.id))
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(Entry {
                            offset,
                            len: body.len() as u32,
                            checksum: rec.checksum,
                        });
                    }
                },
            }
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
