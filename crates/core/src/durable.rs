//! File-system steps that make a change durable, for the small files synclog keeps beside
//! a store (a pair's watermark, files set aside).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Syncs the directory holding `path`, so that a rename into it, or a file created in it,
/// survives a power cut.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Replaces the file at `path` with `bytes`, durably: written to `<path>.tmp`, synced,
/// renamed over `path`, and the directory synced. A crash leaves the old file or the new.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}
