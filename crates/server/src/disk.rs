//! Whether a file-backed copy's file system has room left (for `/v1/health`).

use std::path::Path;

/// Below this many bytes free, a file system counts as full: a group commit of ordinary
/// logs no longer fits with its journal.
pub const FULL_BELOW_BYTES: u64 = 1 << 20;

/// Whether the file system holding the store `describe` names (`sqlite://PATH`,
/// `json://PATH`, `sled://PATH`) has less than [`FULL_BELOW_BYTES`] free. Stores that are
/// not files (PostgreSQL, memory) are never full here.
pub fn is_full(describe: &str) -> bool {
    let Some(path) = ["sqlite://", "json://", "sled://"]
        .iter()
        .find_map(|scheme| describe.strip_prefix(scheme))
    else {
        return false;
    };
    let path = Path::new(path);
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    free_bytes(dir).is_some_and(|free| free < FULL_BELOW_BYTES)
}

/// The bytes an unprivileged writer may still use on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roomy_temp_dir_is_not_full_and_other_stores_never_are() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(!is_full(&format!("sqlite://{}/x.db", dir.path().display())));
        assert!(!is_full("postgres://u@h/db"));
    }
}
