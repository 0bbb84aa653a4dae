//! The store's format version, kept in `<file>.format`, and the in-place upgrade of a
//! store of an earlier release.
//!
//! The formats: 1, the first release's (no marker file); 2, records with run and
//! idempotency keys; 3, a store that holds prune markers (`<file>.prunes`, see
//! [`crate::prunes`]): records are missing from its files on purpose, so a release of format
//! 2, which does not read the markers and would report the pruned ids as lost (and let a
//! restore bring them back), refuses it. A store becomes format 3 when its first prune
//! is applied (the marker file is written after this one); a store never pruned stays
//! format 2, readable by the release before.
//!
//! The marker is one line, `{"synclog":"jsonl","format":2,"checksum":"…"}` (the checksum:
//! CRC-32C of `jsonl/2`, in hex), replaced by write-then-rename (synced, directory
//! synced; through the engine's [`FileSystem`], as every file of the store, so that the
//! crash simulation covers it). Every open reads it before it writes anything (before
//! taking the lock, then again under it), and without one the active file's header:
//!
//! - a marker naming a format above [`STORE_FORMAT`] (a later release's store) fails the
//!   open with [`Error::Unsupported`] naming both versions, and nothing is written;
//! - a marker that does not read (damaged) fails the open with [`Error::Corrupt`], and
//!   nothing is written;
//! - a header naming a version above [`STORE_FORMAT`] (no marker) is refused the same way;
//! - no marker (or one naming format 1): a store of the first release (format
//!   1, no keys), or a new one. A
//!   writer's open upgrades it in place: the active file's header is rewritten to the
//!   current version (a copy with the new header, synced, renamed over it), so that a
//!   release of format 1 refuses the store (it reads the header whenever the index side
//!   file does not suit it, and this build writes side files of a version it ignores);
//!   then the store is loaded; then, last, the marker is written. A crash at any step
//!   leaves a store that opens, and the next open finishes the upgrade. A store with a
//!   `<file>.prunes` gets format 3 (a marker removed by hand is written again).
//!
//! A read-only open and [`crate::inspect`] check the marker and upgrade nothing.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use synclog_core::{Error, Result};

use crate::format;
use crate::fs::{FileSystem, LockGuard};
use crate::load::sibling;

/// The highest store format this build writes and opens: 3, a store with prune markers.
/// 2: records with run and idempotency keys (what a store never pruned stays); 1: the
/// first release (no marker file).
pub const STORE_FORMAT: u32 = PRUNES_FORMAT;

/// The format of a store without prune markers: records with run and idempotency keys
/// (the header version of the files).
pub(crate) const KEYS_FORMAT: u32 = format::FORMAT_VERSION;

/// The format of a store with prune markers.
pub(crate) const PRUNES_FORMAT: u32 = 3;

/// The marker's file.
pub(crate) fn marker_path(path: &Path) -> PathBuf {
    sibling(path, ".format")
}

fn checksum(format: u32) -> String {
    format!("{:08x}", crc32c::crc32c(format!("jsonl/{format}").as_bytes()))
}

/// The marker's bytes for `format`.
fn marker_bytes(format: u32) -> Vec<u8> {
    format!(
        "{{\"synclog\":\"jsonl\",\"format\":{format},\"checksum\":\"{}\"}}\n",
        checksum(format)
    )
    .into_bytes()
}

/// The marker's fields; a later release may add others.
#[derive(Deserialize)]
struct Marker {
    synclog: String,
    format: u32,
    #[serde(default)]
    checksum: Option<String>,
}

/// The store's format as its marker gives it: `None` when there is none (a store of the
/// previous release, or a new one). A later release's format is [`Error::Unsupported`], a
/// damaged marker [`Error::Corrupt`]. Reads only.
pub(crate) fn read(fs: &dyn FileSystem, path: &Path) -> Result<Option<u32>> {
    let at = marker_path(path);
    let name = at.display().to_string();
    let io = |e: std::io::Error| Error::io(format!("reading {name}"), e);
    if fs.len(&at).map_err(io)?.is_none() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    fs.open_stream(&at)
        .map_err(io)?
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let damaged = |why: &str| Error::Corrupt {
        location: name.clone(),
        detail: format!(
            "the store's format marker is damaged ({why}); nothing was written. If this release \
             (format {STORE_FORMAT}) or an earlier one wrote the store, remove the marker and open \
             it again to have it rewritten"
        ),
        source: None,
    };
    let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| damaged(&e.to_string()))?;
    if marker.synclog != "jsonl" {
        return Err(damaged(&format!(
            "it names format {:?}, not \"jsonl\"",
            marker.synclog
        )));
    }
    if marker.format > STORE_FORMAT {
        return Err(newer(path, marker.format));
    }
    if marker.checksum.as_deref() != Some(checksum(marker.format).as_str()) {
        return Err(damaged("its checksum does not match"));
    }
    Ok(Some(marker.format))
}

/// The error of a store of `format`, newer than this build.
fn newer(path: &Path, format: u32) -> Error {
    Error::Unsupported {
        engine: "json",
        what: format!(
            "the store {} has format version {format}, written by a later synclog; this synclog \
             knows format versions up to {STORE_FORMAT} and leaves the store untouched; upgrade synclog",
            path.display()
        ),
    }
}

/// Writes the marker for `format`: to `<file>.format.tmp`, synced, renamed over
/// `<file>.format`, directory synced. No temporary file is left on failure.
pub(crate) fn write(fs: &dyn FileSystem, path: &Path, format: u32) -> Result<()> {
    let at = marker_path(path);
    let tmp = sibling(path, ".format.tmp");
    let io = |e: std::io::Error| Error::io(format!("writing the format marker {}", at.display()), e);
    if fs.len(&tmp).map_err(io)?.is_some() {
        fs.remove_file(&tmp).map_err(io)?;
    }
    let written = fs
        .write_new(&tmp, &marker_bytes(format))
        .and_then(|()| fs.rename(&tmp, &at));
    if written.is_err() && fs.len(&tmp).ok().flatten().is_some() {
        let _ = fs.remove_file(&tmp);
    }
    written.map_err(io)
}

/// The file that is, or is about to become, the active file: `<file>`, or `<file>.next`
/// when a rotation was cut off between its renames (`true`: `<file>` itself).
fn active_file(fs: &dyn FileSystem, path: &Path) -> Result<Option<(PathBuf, bool)>> {
    let io = |e| Error::io(format!("reading {}", path.display()), e);
    if fs.len(path).map_err(io)?.is_some() {
        return Ok(Some((path.to_path_buf(), true)));
    }
    let next = crate::load::next_path(path);
    Ok(fs.len(&next).map_err(io)?.map(|_| (next, false)))
}

/// A file's first line (with its ending), and the stream after it.
type FirstLine = (Vec<u8>, Box<dyn BufRead + Send>);

/// The first line of `file` if it is whole, and the stream after it.
fn first_line(fs: &dyn FileSystem, file: &Path) -> Result<Option<FirstLine>> {
    let io = |e| Error::io(format!("reading {}", file.display()), e);
    let mut stream = fs.open_stream(file).map_err(io)?;
    let mut first = Vec::new();
    (&mut stream)
        .take(4096)
        .read_until(b'\n', &mut first)
        .map_err(io)?;
    // Empty, or a torn header: opening writes a new header (after moving the bytes aside).
    Ok(first.ends_with(b"\n").then_some((first, stream)))
}

/// For a store without a marker, before anything is written: the header of its active
/// file must be one this build reads ([`Error::Unsupported`] for a later version,
/// [`Error::Corrupt`] for a file that is not a synclog store). Reads only.
pub(crate) fn check_active_header(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    let Some((file, _)) = active_file(fs, path)? else {
        return Ok(());
    };
    if let Some((first, _)) = first_line(fs, &file)? {
        format::check_header(format::split_ending(&first).0, &file.display().to_string())?;
    }
    Ok(())
}

/// The first step of an upgrade (the caller holds the store's locks): the header of the
/// active file (see [`active_file`]) is rewritten to the current version if it is older.
/// The rest of the file is copied byte for byte (a torn end included, for the load to move
/// aside as usual).
///
/// Returns the lock of the new active file when it replaced `<file>` (locked before the
/// rename, as rotation and compaction do). A header newer than this build is
/// [`Error::Unsupported`]; a first line that is not a header is [`Error::Corrupt`]: in both
/// cases nothing is written.
pub(crate) fn upgrade_header(fs: &dyn FileSystem, path: &Path) -> Result<Option<Box<dyn LockGuard>>> {
    let io = |what: String| move |e| Error::io(what, e);
    let name = path.display().to_string();
    let Some((file, active)) = active_file(fs, path)? else {
        return Ok(None);
    };
    let file_name = file.display().to_string();
    let Some((first, mut stream)) = first_line(fs, &file)? else {
        return Ok(None);
    };
    let (body, ending) = format::split_ending(&first);
    format::check_header(body, &file_name)?;
    if format::header_version(body).is_some_and(|v| v >= format::FORMAT_VERSION) {
        return Ok(None);
    }
    let tmp = sibling(path, ".upgrade.tmp");
    let tmp_name = tmp.display().to_string();
    if fs.len(&tmp).map_err(io(format!("reading {tmp_name}")))?.is_some() {
        // Left by an upgrade cut off before its rename: the original is intact.
        fs.remove_file(&tmp).map_err(io(format!("removing {tmp_name}")))?;
    }
    let result = (|| {
        let mut out = fs.create_new(&tmp).map_err(io(format!("creating {tmp_name}")))?;
        let mut header = format::header_line();
        header.pop();
        header.extend_from_slice(&first[first.len() - ending..]);
        out.append(&header).map_err(io(format!("writing {tmp_name}")))?;
        loop {
            let chunk = stream.fill_buf().map_err(io(format!("reading {file_name}")))?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            out.append(chunk).map_err(io(format!("writing {tmp_name}")))?;
            stream.consume(n);
        }
        out.sync_data().map_err(io(format!("syncing {tmp_name}")))?;
        drop(out);
        fs.sync_dir(&tmp)
            .map_err(io(format!("syncing the directory of {tmp_name}")))?;
        let lock = match active {
            true => Some(crate::writer::lock_replacement(fs, &tmp)?),
            false => None,
        };
        fs.rename(&tmp, &file)
            .map_err(io(format!("renaming {tmp_name} over {file_name}")))?;
        Ok(lock)
    })();
    if result.is_err() && fs.len(&tmp).ok().flatten().is_some() {
        let _ = fs.remove_file(&tmp);
    }
    if result.is_ok() {
        tracing::info!(store = %name, file = %file_name, "upgraded the file's header to format {}", format::FORMAT_VERSION);
    }
    result
}
