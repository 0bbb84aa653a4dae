//! The file operations the JSON engine uses, behind a trait, so that tests can run it
//! over [`crate::sim::SimFs`], which keeps unsynced bytes apart and drops or tears them
//! at a simulated crash.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file opened for appending.
pub trait AppendFile: Send + Debug {
    /// Appends all of `buf`.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes the appended data durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A file opened for reading at offsets, shared between threads.
pub trait ReadAt: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another holder kept it for the whole wait; its pid if it wrote one.
    Held {
        /// The pid written in the lock file by the holder.
        holder: Option<u32>,
    },
    /// An I/O error.
    Io(io::Error),
}

/// A held lock; released when dropped.
pub trait LockGuard: Send + Sync + Debug {}

/// A file's identity: the same for every path that reaches it (a symlink, a hard link,
/// `..` segments, a bind mount), different after the name is replaced by a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The device.
    pub dev: u64,
    /// The inode.
    pub ino: u64,
}

/// The file system, as the JSON engine sees it.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Size of the file, or `None` if it does not exist.
    fn len(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Opens the file for appending, creating it if needed.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens the file for reading at offsets.
    fn open_read_at(&self, path: &Path) -> io::Result<Box<dyn ReadAt>>;
    /// Opens the file for streaming from the start (a new handle each time).
    fn open_stream(&self, path: &Path) -> io::Result<Box<dyn BufRead + Send>>;
    /// Opens the file for streaming from byte `offset` (a new handle each time). The
    /// default streams from the start and skips `offset` bytes; a file system that can
    /// seek should override it, so that opening a store reads only what changed.
    fn open_stream_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn BufRead + Send>> {
        let mut stream = self.open_stream(path)?;
        let skipped = io::copy(&mut (&mut stream).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than {offset} bytes", path.display()),
            ));
        }
        Ok(stream)
    }
    /// Cuts the file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Creates a new file (failing if it exists) for appending. Its name is durable only
    /// after [`FileSystem::sync_dir`].
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Writes a new file with `data`, syncs it, and fsyncs its directory.
    fn write_new(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut file = self.create_new(path)?;
        file.append(data)?;
        file.sync_data()?;
        self.sync_dir(path)
    }
    /// Renames `from` over `to` and fsyncs the directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path` (a partial file a failed step left behind).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Fsyncs the directory holding `path` (after creating a file in it).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The paths of the files in the directory holding `path` (its siblings, itself included).
    fn siblings(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Takes an exclusive lock on `path` (creating it), waiting at most `wait`, and
    /// writes this process's pid into it.
    fn lock(&self, path: &Path, wait: Duration) -> Result<Box<dyn LockGuard>, LockError>;
    /// Takes an exclusive lock on the existing file at `path` itself (its identity, so
    /// every path that reaches it meets the same lock), waiting at most `wait`. Returns the
    /// identity of the file locked: the caller checks `path` still names it.
    fn lock_file(&self, path: &Path, wait: Duration) -> Result<(Box<dyn LockGuard>, FileId), LockError>;
    /// The identity of the file at `path`, or `None` if there is none.
    fn file_id(&self, path: &Path) -> io::Result<Option<FileId>>;
    /// The identity and length of the file at `path` (one look where the file system
    /// allows it), or `None` if there is none.
    fn stat(&self, path: &Path) -> io::Result<Option<(FileId, u64)>> {
        Ok(match (self.file_id(path)?, self.len(path)?) {
            (Some(id), Some(len)) => Some((id, len)),
            _ => None,
        })
    }
    /// `path` with symbolic links in its last component followed, so that the store's
    /// files (segments, locks, marks) are found next to the real file. The default
    /// (a file system without links) returns `path`.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(path.to_path_buf())
    }
}

/// Retries `try_lock` on `file` until `wait` has passed.
fn wait_for_lock(file: &File, wait: Duration) -> Result<(), LockError> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(LockError::Held { holder: None }),
            Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
    }
}

fn id_of(m: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[derive(Debug)]
struct RealAppend(File);

impl AppendFile for RealAppend {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[derive(Debug)]
struct RealRead(File);

impl ReadAt for RealRead {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
}

#[derive(Debug)]
struct RealLock(#[allow(dead_code)] File);

impl LockGuard for RealLock {}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl FileSystem for RealFs {
    fn len(&self, path: &Path) -> io::Result<Option<u64>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        Ok(Box::new(RealAppend(file)))
    }

    fn open_read_at(&self, path: &Path) -> io::Result<Box<dyn ReadAt>> {
        Ok(Box::new(RealRead(File::open(path)?)))
    }

    fn open_stream(&self, path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
        Ok(Box::new(BufReader::with_capacity(1 << 20, File::open(path)?)))
    }

    fn open_stream_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn BufRead + Send>> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().append(true).create_new(true).open(path)?;
        Ok(Box::new(RealAppend(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        self.sync_dir(to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(parent(path))?.sync_all()
    }

    fn siblings(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let dir = parent(path);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            // Keep the caller's spelling of the directory (`parent` turns "" into ".").
            out.push(match path.parent() {
                Some(p) => p.join(name),
                None => PathBuf::from(name),
            });
        }
        Ok(out)
    }

    fn lock(&self, path: &Path, wait: Duration) -> Result<Box<dyn LockGuard>, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        if let Err(e) = wait_for_lock(&file, wait) {
            return Err(match e {
                LockError::Held { .. } => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    LockError::Held {
                        holder: text.trim().parse().ok(),
                    }
                }
                other => other,
            });
        }
        // The pid only names the holder in another opener's error: on a full disk the lock
        // is held without it (an open for reading needs no write). Written only when it
        // changes: the lock is taken for every group, and rewriting the file each time
        // puts its size change in the journal commit of the group's fdatasync.
        let mine = std::process::id().to_string();
        let mut text = String::new();
        let same = file.read_to_string(&mut text).is_ok() && text == mine;
        if !same {
            let _ = file
                .set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(mine.as_bytes()));
        }
        Ok(Box::new(RealLock(file)))
    }

    fn lock_file(&self, path: &Path, wait: Duration) -> Result<(Box<dyn LockGuard>, FileId), LockError> {
        // flock(2) on a descriptor of the file itself: the lock belongs to the inode.
        let file = File::open(path).map_err(LockError::Io)?;
        wait_for_lock(&file, wait)?;
        let id = id_of(&file.metadata().map_err(LockError::Io)?);
        Ok((Box::new(RealLock(file)), id))
    }

    fn file_id(&self, path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(id_of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn stat(&self, path: &Path) -> io::Result<Option<(FileId, u64)>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some((id_of(&m), m.len()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let mut at = path.to_path_buf();
        // As many links as the kernel follows (ELOOP past 40).
        for _ in 0..40 {
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&at)?;
                    at = if target.is_absolute() {
                        target
                    } else {
                        parent(&at).join(target)
                    };
                }
                Ok(_) => return Ok(at),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(at),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{}: too many levels of symbolic links",
            path.display()
        )))
    }
}
