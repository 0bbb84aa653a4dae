//! The store's prune markers, kept in `<file>.prunes`: one marker per line
//! ([`PruneMarker::encode`], each with its own checksum), oldest first.
//!
//! The file is replaced whole by write-then-rename (`<file>.prunes.tmp`, synced, renamed,
//! directory synced), so it is always either the old list or the new one, never a torn
//! line. A prune writes it (and the format marker, see [`crate::version`]) before it
//! deletes anything: a crash after that leaves records that a marker covers, which reads
//! skip and the next writer's open deletes. A line that does not decode, or whose checksum
//! does not match, fails the open with [`Error::Corrupt`]: without its markers the store
//! cannot tell a pruned id from a lost one, so it neither guesses nor writes.

use std::path::{Path, PathBuf};

use synclog_core::{Error, PruneMarker, Result};

use crate::fs::FileSystem;
use crate::load::sibling;

/// The markers' file.
pub(crate) fn prunes_path(path: &Path) -> PathBuf {
    sibling(path, ".prunes")
}

/// The markers of the store at `path`, oldest first; none if it was never pruned.
///
/// Errors: [`Error::Corrupt`] naming the file and line when a marker does not check out.
pub(crate) fn read(fs: &dyn FileSystem, path: &Path) -> Result<Vec<PruneMarker>> {
    let at = prunes_path(path);
    let name = at.display().to_string();
    if fs
        .len(&at)
        .map_err(|e| Error::io(format!("reading {name}"), e))?
        .is_none()
    {
        return Ok(Vec::new());
    }
    let mut text = String::new();
    let mut stream = fs
        .open_stream(&at)
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    std::io::Read::read_to_string(&mut stream, &mut text).map_err(|e| Error::Corrupt {
        location: name.clone(),
        detail: format!("the prune markers file does not read as text ({e}); nothing was written"),
        source: None,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            PruneMarker::decode(line.trim_end_matches('\r'), &format!("{name} line {}", n + 1)).map_err(|e| {
                match e {
                    Error::Corrupt { location, detail, .. } => Error::Corrupt {
                        location,
                        detail: format!(
                            "{detail}; the store cannot tell its pruned ids from lost ones, so it \
                             opens nothing. Restore the file from a copy (a guarded pair's other \
                             copy holds the same markers)"
                        ),
                        source: None,
                    },
                    other => other,
                }
            })
        })
        .collect()
}

/// Replaces the markers file with `markers`, durably (see the module docs). No temporary
/// file is left on failure.
pub(crate) fn write(fs: &dyn FileSystem, path: &Path, markers: &[PruneMarker]) -> Result<()> {
    let at = prunes_path(path);
    let tmp = sibling(path, ".prunes.tmp");
    let io = |e: std::io::Error| Error::io(format!("writing the prune markers {}", at.display()), e);
    let mut text = String::new();
    for m in markers {
        text.push_str(&m.encode());
        text.push('\n');
    }
    if fs.len(&tmp).map_err(io)?.is_some() {
        fs.remove_file(&tmp).map_err(io)?;
    }
    let written = fs
        .write_new(&tmp, text.as_bytes())
        .and_then(|()| fs.rename(&tmp, &at));
    if written.is_err() && fs.len(&tmp).ok().flatten().is_some() {
        let _ = fs.remove_file(&tmp);
    }
    written.map_err(io)
}
