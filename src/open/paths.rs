//! What a store's path is on disk: a regular file, a directory or something else, and
//! which file it is whatever path names it.

use std::path::{Component, Path, PathBuf};

use synclog_core::{Error, Result};

/// What an engine keeps at its path.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "json", feature = "sled")),
    allow(dead_code)
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A regular file (SQLite, JSON lines).
    #[cfg_attr(not(any(feature = "sqlite", feature = "json")), allow(dead_code))]
    File,
    /// A directory (sled).
    #[cfg_attr(not(feature = "sled"), allow(dead_code))]
    Dir,
}

/// Refuses `path` with [`Error::InvalidInput`] when it exists (symlinks followed) and is
/// not what the engine keeps there: a directory, a FIFO, a device or a socket where a
/// file belongs, anything but a directory where a directory belongs. Runs before
/// anything is created, so a refused path gets no parent directory, lock or journal.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "json", feature = "sled")),
    allow(dead_code)
)]
pub fn check_kind(engine: &str, path: &Path, expect: Expect) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::invalid(
                "url",
                format!(
                    "{}: a part of the path before the last is not a directory",
                    path.display()
                ),
            ))
        }
        Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
    };
    let found = kind_name(&meta.file_type());
    let fits = match expect {
        Expect::File => meta.is_file(),
        Expect::Dir => meta.is_dir(),
    };
    if fits {
        return Ok(());
    }
    let wanted = match expect {
        Expect::File => "a regular file",
        Expect::Dir => "a directory",
    };
    Err(Error::invalid(
        "url",
        format!(
            "{} is {found}; a {engine} store needs {wanted} there (or a path that does not exist yet)",
            path.display()
        ),
    ))
}

fn kind_name(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Which file (or directory) a path names: its device and inode when it exists, and its
/// canonical path (symlinks resolved, `.` and `..` applied) either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    inode: Option<(u64, u64)>,
    canonical: PathBuf,
}

impl FileIdentity {
    /// The identity of `path`, relative paths taken from the current directory.
    pub fn of(path: &Path) -> Result<FileIdentity> {
        let inode = match std::fs::metadata(path) {
            Ok(meta) => dev_ino(&meta),
            Err(_) => None,
        };
        Ok(FileIdentity {
            inode,
            canonical: canonical(path)?,
        })
    }

    /// Whether both name the same file: the same (device, inode), or the same canonical path.
    pub fn same_as(&self, other: &FileIdentity) -> bool {
        matches!((self.inode, other.inode), (Some(a), Some(b)) if a == b) || self.canonical == other.canonical
    }
}

#[cfg(unix)]
fn dev_ino(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn dev_ino(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The canonical form of `path`, which need not exist: its deepest existing ancestor
/// canonicalized, then the rest applied (none of it exists, so none of it is a symlink,
/// and `..` removes the component before it, as it will once the directories are made).
pub(crate) fn canonical(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("reading the current directory", e))?
            .join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let base = loop {
        match existing.canonicalize() {
            Ok(base) => break base,
            Err(_) => match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last.as_os_str().to_os_string());
                    existing = parent;
                }
                // The root itself: take the rest lexically from here.
                _ => break existing.to_path_buf(),
            },
        }
    };
    let mut out = base;
    for name in rest.iter().rev() {
        out.push(name);
    }
    Ok(normalize(&out))
}

/// `path` with `.` dropped and each `..` removing the component before it.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
