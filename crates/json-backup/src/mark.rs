//! The store's high-water mark, kept in `<file>.hwm`, and what moved-aside files hold.
//!
//! An id is never handed out twice in a store's life, whatever happens to its files: the
//! next id is above every id in the store's files, in its moved-aside files
//! (`<file>.torn-…`, `<file>.rejected-…`) and in its mark. The mark is
//! `{"synclog_high_water":N,"skipped":[[from,to],…]}`: `N` the highest id handed out,
//! and the ranges of ids that were moved aside, never acknowledged, so that their gap
//! is not reported as missing once the operator has removed the moved-aside file. It is
//! replaced by write-then-rename when opening finds ids above it in moved-aside files,
//! and at close; a failure to save it is a warning (the data are durable already).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use synclog_core::{Checksum, Error, LogId, Result};

use crate::format;
use crate::fs::FileSystem;
use crate::load::sibling;

/// Inclusive id ranges.
pub(crate) type Ranges = Vec<(u64, u64)>;

/// The mark as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    #[serde(rename = "synclog_high_water")]
    pub high_water: u64,
    #[serde(default)]
    pub skipped: Ranges,
}

/// The mark's file.
pub(crate) fn mark_path(path: &Path) -> PathBuf {
    sibling(path, ".hwm")
}

/// Reads the mark: `Ok(None)` if there is none, `Err(problem)` if it does not read.
pub(crate) fn read(fs: &dyn FileSystem, path: &Path) -> Result<std::result::Result<Option<Mark>, String>> {
    let at = mark_path(path);
    let name = at.display().to_string();
    let Some(len) = fs.len(&at).map_err(|e| Error::io(format!("reading {name}"), e))? else {
        return Ok(Ok(None));
    };
    let mut bytes = Vec::with_capacity(len.min(1 << 20) as usize);
    let mut stream = fs
        .open_stream(&at)
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    std::io::Read::read_to_end(&mut stream, &mut bytes)
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    Ok(serde_json::from_slice::<Mark>(&bytes)
        .map(Some)
        .map_err(|e| format!("{name} is not a high-water mark ({e}); ids are bounded by the files alone")))
}

/// Replaces the mark by write-then-rename. On failure, no temporary file is left.
pub(crate) fn save(fs: &dyn FileSystem, path: &Path, mark: &Mark) -> std::io::Result<()> {
    let at = mark_path(path);
    let tmp = sibling(path, ".hwm.tmp");
    let mut text = serde_json::to_vec(mark).map_err(std::io::Error::other)?;
    text.push(b'\n');
    if fs.len(&tmp)?.is_some() {
        fs.remove_file(&tmp)?;
    }
    let written = fs.write_new(&tmp, &text).and_then(|()| fs.rename(&tmp, &at));
    if written.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    written
}

/// Adds `ids` (any order) to `ranges`, merged and sorted.
pub(crate) fn add_ids(ranges: &mut Ranges, mut ids: Vec<u64>) {
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        ranges.push((id, id));
    }
    merge(ranges);
}

/// Adds the ranges `more` to `ranges`, merged and sorted.
pub(crate) fn add_ranges(ranges: &mut Ranges, more: &Ranges) {
    ranges.extend_from_slice(more);
    merge(ranges);
}

fn merge(ranges: &mut Ranges) {
    ranges.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *ranges = out;
}

/// Whether `id` is in one of `ranges` (sorted, merged).
#[cfg(test)]
pub(crate) fn contains(ranges: &Ranges, id: u64) -> bool {
    let i = ranges.partition_point(|&(_, b)| b < id);
    ranges.get(i).is_some_and(|&(a, _)| a <= id)
}

/// The parts of the id ranges `from` (ascending) that no range of `minus` covers.
pub(crate) fn subtract(from: &[synclog_core::IdRange], minus: &Ranges) -> Vec<synclog_core::IdRange> {
    let mut out = Vec::new();
    for r in from {
        let (mut a, b) = (r.first.get(), r.last.get());
        for &(ma, mb) in minus {
            if mb < a || ma > b {
                continue;
            }
            if ma > a {
                out.extend(
                    LogId::new(a)
                        .zip(LogId::new(ma - 1))
                        .and_then(|(x, y)| synclog_core::IdRange::new(x, y)),
                );
            }
            a = a.max(mb.saturating_add(1));
        }
        if a <= b {
            out.extend(
                LogId::new(a)
                    .zip(LogId::new(b))
                    .and_then(|(x, y)| synclog_core::IdRange::new(x, y)),
            );
        }
    }
    out
}

/// `ranges` as text: `3..=5, 9`.
pub(crate) fn describe(ranges: &Ranges) -> String {
    const SHOWN: usize = 10;
    let mut parts: Vec<String> = ranges
        .iter()
        .take(SHOWN)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect();
    if ranges.len() > SHOWN {
        parts.push(format!("… ({} more ranges)", ranges.len() - SHOWN));
    }
    parts.join(", ")
}

/// What a moved-aside file holds.
#[derive(Debug, Default)]
pub(crate) struct Aside {
    /// Ids of its whole, checksum-valid records.
    pub whole: Ranges,
    /// How many whole, checksum-valid records.
    pub whole_count: u64,
    /// Each whole record's id and checksum, in file order.
    pub whole_records: Vec<(LogId, Checksum)>,
    /// The highest id on any of its lines that reads as JSON with an id.
    pub max_id: u64,
}

/// The moved-aside files next to `path`: torn tails (`.torn-…`) and, with
/// `rejected`, lines compaction saved (`.rejected-…`).
pub(crate) fn aside_files(fs: &dyn FileSystem, path: &Path, rejected: bool) -> Result<Vec<PathBuf>> {
    let Some(file) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let torn = format!("{file}.torn-");
    let rej = format!("{file}.rejected-");
    // A sealed segment's (`<file>.seg-N.torn-…`) too: its records were acknowledged.
    let segment = format!("{file}.seg-");
    let mut out: Vec<PathBuf> = fs
        .siblings(path)
        .map_err(|e| Error::io(format!("listing the files next to {}", path.display()), e))?
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(&torn)
                || (name.starts_with(&segment) && name.contains(".torn-"))
                || (rejected && name.starts_with(&rej))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads a moved-aside file line by line.
pub(crate) fn read_aside(fs: &dyn FileSystem, file: &Path) -> Result<Aside> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u64,
    }
    let name = file.display().to_string();
    let mut stream = fs
        .open_stream(file)
        .map_err(|e| Error::io(format!("opening {name}"), e))?;
    let mut aside = Aside::default();
    let mut whole = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = stream
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(format!("reading {name}"), e))?;
        if n == 0 {
            break;
        }
        let (body, _) = format::split_ending(&line);
        match format::check(body) {
            Ok((id, checksum)) => {
                aside.whole_records.push((id, checksum));
                whole.push(id.get());
                aside.whole_count += 1;
                aside.max_id = aside.max_id.max(id.get());
            }
            Err(_) => {
                if let Ok(rec) = serde_json::from_slice::<IdOnly>(body) {
                    aside.max_id = aside.max_id.max(rec.id);
                }
            }
        }
    }
    add_ids(&mut aside.whole, whole);
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_answer_membership() {
        let mut r = Vec::new();
        add_ids(&mut r, vec![5, 3, 4, 9, 9]);
        assert_eq!(r, vec![(3, 5), (9, 9)]);
        add_ids(&mut r, vec![6, 8]);
        assert_eq!(r, vec![(3, 6), (8, 9)]);
        assert!(contains(&r, 3) && contains(&r, 6) && contains(&r, 8));
        assert!(!contains(&r, 2) && !contains(&r, 7) && !contains(&r, 10));
        assert_eq!(describe(&r), "3..=6, 8..=9");
    }
}
