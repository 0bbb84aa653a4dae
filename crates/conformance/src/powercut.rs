//! A power-cut file system: a FUSE pass-through over a backing directory that keeps every
//! write since a file's last `fsync` apart, and at the simulated cut drops those writes
//! (or keeps a torn prefix of the last one), as a disk whose cache loses power would.
//!
//! What reaches the backing directory at once, and what the cut undoes:
//! - **file contents** written (or truncated) since that file's last `fsync`/`fdatasync`
//!   (or through a handle opened with `O_SYNC`/`O_DSYNC`) are undone at the cut;
//! - **names** (create, rename, unlink, mkdir, links) are kept, as a journaling file
//!   system that orders metadata would keep them; a file created and never synced is left
//!   at its synced length (empty). So the cut tests what an engine's `fsync`s cover of its
//!   data, not whether it syncs its directories.
//!
//! Writes from other processes reach the file system one `write(2)` at a time (no
//! write-back cache is negotiated), so once the writing process is dead nothing it wrote
//! is still in flight. Only Linux has FUSE here: elsewhere [`available`] says why not.
//!
//! Simplifications, each on the side of a harsher cut or a refused call, never a milder
//! one: a torn write keeps a prefix cut at any byte, not at a sector boundary; `syncfs(2)`
//! and `sync(2)` do not count as syncs (only `fsync`/`fdatasync` on the file, or
//! `O_SYNC`/`O_DSYNC`); `fallocate(2)` and `rename(2)` with flags (`RENAME_EXCHANGE`,
//! `RENAME_NOREPLACE`) are refused. The bytes a write overwrote are kept in memory until
//! the next sync of that file, so a test should not write gigabytes between syncs.

use std::fmt;
use std::path::Path;

/// How the cut treats what was written since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every unsynced write is lost.
    DropUnsynced,
    /// Every unsynced write is lost but a random, non-empty proper prefix of the last one
    /// (a torn sector run) reaches the disk.
    TearLast,
}

/// What a cut undid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose unsynced contents were undone.
    pub files: usize,
    /// Writes (and truncations) undone.
    pub writes_dropped: usize,
    /// Bytes of the last write kept by [`Cut::TearLast`], with the write's length.
    pub torn: Option<(usize, usize)>,
}

impl fmt::Display for CutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} unsynced writes to {} files dropped",
            self.writes_dropped, self.files
        )?;
        if let Some((kept, of)) = self.torn {
            write!(f, ", the last torn after {kept} of its {of} bytes")?;
        }
        Ok(())
    }
}

/// Why this machine cannot mount the power-cut file system, or `None` when it can.
pub fn available() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        if !Path::new("/dev/fuse").exists() {
            return Some("this machine has no /dev/fuse".into());
        }
        let on_path = |bin: &str| {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
                .unwrap_or(false)
        };
        // SAFETY: geteuid has no preconditions. Root mounts directly; others need the helper.
        let root = unsafe { libc::geteuid() } == 0;
        if !root && !on_path("fusermount3") && !on_path("fusermount") {
            return Some("fusermount3 is not installed (Debian package fuse3)".into());
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        Some("the power-cut file system needs Linux FUSE".into())
    }
}

/// The environment variable that turns "no FUSE on this machine" from a skipped case into
/// a failed one (CI sets it, so the power-cut case cannot silently not run).
pub const REQUIRE_ENV: &str = "SYNCLOG_REQUIRE_POWER_CUT";

#[cfg(target_os = "linux")]
pub use imp::Mounted;

/// Mounts the power-cut file system over `backing` at `mountpoint` (both existing
/// directories); it serves requests on a background thread until [`Mounted::cut`].
#[cfg(target_os = "linux")]
pub fn mount(backing: &Path, mountpoint: &Path) -> std::io::Result<Mounted> {
    imp::mount(backing.to_path_buf(), mountpoint.to_path_buf())
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;
    use std::ffi::OsStr;
    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use fuser::{
        Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
        OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
        ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
    };

    use super::{Cut, CutReport};

    /// Attributes are never cached by the kernel: every size it sees is the backing file's.
    const TTL: Duration = Duration::ZERO;

    /// One change to undo at the cut: the bytes a write overwrote, or the tail a truncation
    /// cut off.
    struct Undo {
        at: u64,
        old: Vec<u8>,
    }

    /// A file's writes since its last sync.
    struct Unsynced {
        /// A handle on the backing file, open for writing: the cut undoes through it, so a
        /// rename or a second name never sends the undo to another file.
        file: File,
        synced_len: u64,
        undo: Vec<Undo>,
    }

    struct Open {
        ino: u64,
        file: File,
        /// Opened with `O_SYNC`/`O_DSYNC`: each write is synced when it returns.
        sync_writes: bool,
    }

    #[derive(Default)]
    struct State {
        /// FUSE inode → backing path (one of its names).
        paths: HashMap<u64, PathBuf>,
        /// Backing inode → FUSE inode.
        by_real: HashMap<u64, u64>,
        next_ino: u64,
        open: HashMap<u64, Open>,
        next_fh: u64,
        unsynced: HashMap<u64, Unsynced>,
        /// The last unsynced write: its inode, offset and bytes (for a torn cut).
        last_write: Option<(u64, u64, Vec<u8>)>,
    }

    impl State {
        fn ino_for(&mut self, real: u64, path: PathBuf) -> u64 {
            let ino = match self.by_real.get(&real) {
                Some(&ino) => ino,
                None => {
                    self.next_ino += 1;
                    self.by_real.insert(real, self.next_ino);
                    self.next_ino
                }
            };
            self.paths.insert(ino, path);
            ino
        }

        /// The unsynced changes of inode `ino`, begun at `file`'s current length (`cur`).
        fn unsynced(&mut self, ino: u64, file: &File, cur: u64) -> io::Result<&mut Unsynced> {
            Ok(match self.unsynced.entry(ino) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(Unsynced {
                    file: file.try_clone()?,
                    synced_len: cur,
                    undo: Vec::new(),
                }),
            })
        }

        /// Records what a write of `len` bytes at `at` to `file` (inode `ino`, open for
        /// writing) overwrites.
        fn before_write(&mut self, ino: u64, file: &File, at: u64, len: u64) -> io::Result<()> {
            let cur = file.metadata()?.len();
            let entry = self.unsynced(ino, file, cur)?;
            let end = (at + len).min(cur);
            if at < end {
                let mut old = vec![0; (end - at) as usize];
                file.read_exact_at(&mut old, at)?;
                entry.undo.push(Undo { at, old });
            } else {
                entry.undo.push(Undo { at, old: Vec::new() });
            }
            Ok(())
        }

        /// Records what truncating `file` (open for writing) to `len` cuts off.
        fn before_truncate(&mut self, ino: u64, file: &File, len: u64) -> io::Result<()> {
            let cur = file.metadata()?.len();
            if len == cur {
                return Ok(());
            }
            let entry = self.unsynced(ino, file, cur)?;
            let mut old = Vec::new();
            if len < cur {
                old = vec![0; (cur - len) as usize];
                file.read_exact_at(&mut old, len)?;
            }
            entry.undo.push(Undo { at: len, old });
            Ok(())
        }

        fn synced(&mut self, ino: u64) {
            self.unsynced.remove(&ino);
            if self.last_write.as_ref().is_some_and(|(i, _, _)| *i == ino) {
                self.last_write = None;
            }
        }

        /// Forgets inode `ino` once its last name is gone.
        fn gone(&mut self, ino: u64) {
            self.paths.remove(&ino);
            self.synced(ino);
        }

        /// Rewrites every mapped path under `from` to lie under `to`.
        fn moved(&mut self, from: &std::path::Path, to: &std::path::Path) {
            for path in self.paths.values_mut() {
                if let Ok(rest) = path.strip_prefix(from) {
                    *path = if rest.as_os_str().is_empty() {
                        to.to_path_buf()
                    } else {
                        to.join(rest)
                    };
                }
            }
        }
    }

    struct PowerCutFs {
        state: Arc<Mutex<State>>,
    }

    fn errno(e: io::Error) -> Errno {
        Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
    }

    fn attr(ino: u64, md: &fs::Metadata) -> FileAttr {
        let time = |s: i64, ns: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::new(s as u64, ns as u32)
            } else {
                UNIX_EPOCH
            }
        };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            FileType::Directory
        } else if ft.is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        FileAttr {
            ino: INodeNo(ino),
            size: md.len(),
            blocks: md.blocks(),
            atime: time(md.atime(), md.atime_nsec()),
            mtime: time(md.mtime(), md.mtime_nsec()),
            ctime: time(md.ctime(), md.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind,
            perm: (md.mode() & 0o7777) as u16,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    impl PowerCutFs {
        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
            self.lock().paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
        }

        fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
            Ok(self.path(parent)?.join(name))
        }

        /// The entry for the backing path `path`, mapped to a FUSE inode.
        fn entry(&self, path: PathBuf) -> Result<FileAttr, Errno> {
            let md = fs::symlink_metadata(&path).map_err(errno)?;
            let ino = self.lock().ino_for(md.ino(), path);
            Ok(attr(ino, &md))
        }

        fn open_file(
            &self,
            ino: u64,
            path: &std::path::Path,
            flags: i32,
            create_mode: Option<u32>,
        ) -> io::Result<u64> {
            let mut options = OpenOptions::new();
            // A writable handle reads too: a write first saves the bytes it overwrites.
            match flags & libc::O_ACCMODE {
                libc::O_WRONLY | libc::O_RDWR => options.read(true).write(true),
                _ => options.read(true),
            };
            if let Some(mode) = create_mode {
                options.create(true).mode(mode);
                if flags & libc::O_EXCL != 0 {
                    options.create_new(true);
                }
            }
            let file = options.open(path)?;
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if flags & libc::O_TRUNC != 0 {
                state.before_truncate(ino, &file, 0)?;
                file.set_len(0)?;
            }
            state.next_fh += 1;
            let fh = state.next_fh;
            state.open.insert(
                fh,
                Open {
                    ino,
                    file,
                    sync_writes: flags & (libc::O_SYNC | libc::O_DSYNC) != 0,
                },
            );
            Ok(fh)
        }
    }

    impl Filesystem for PowerCutFs {
        fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            match self.child(parent, name).and_then(|p| self.entry(p)) {
                Ok(a) => reply.entry(&TTL, &a, Generation(0)),
                Err(e) => reply.error(e),
            }
        }

        fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
            let md = {
                let state = self.lock();
                match fh.and_then(|fh| state.open.get(&fh.0)) {
                    Some(open) => open.file.metadata(),
                    None => match state.paths.get(&ino.0) {
                        Some(p) => fs::symlink_metadata(p),
                        None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
                    },
                }
            };
            match md {
                Ok(md) => reply.attr(&TTL, &attr(ino.0, &md)),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn setattr(
            &self,
            _req: &Request,
            ino: INodeNo,
            mode: Option<u32>,
            _uid: Option<u32>,
            _gid: Option<u32>,
            size: Option<u64>,
            _atime: Option<TimeOrNow>,
            _mtime: Option<TimeOrNow>,
            _ctime: Option<SystemTime>,
            _fh: Option<FileHandle>,
            _crtime: Option<SystemTime>,
            _chgtime: Option<SystemTime>,
            _bkuptime: Option<SystemTime>,
            _flags: Option<fuser::BsdFileFlags>,
            reply: ReplyAttr,
        ) {
            let done = (|| -> io::Result<fs::Metadata> {
                let path = self
                    .lock()
                    .paths
                    .get(&ino.0)
                    .cloned()
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
                if let Some(mode) = mode {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
                }
                if let Some(len) = size {
                    // Read and write: the truncation first saves the tail it cuts off.
                    let file = OpenOptions::new().read(true).write(true).open(&path)?;
                    self.lock().before_truncate(ino.0, &file, len)?;
                    file.set_len(len)?;
                }
                fs::symlink_metadata(&path)
            })();
            match done {
                Ok(md) => reply.attr(&TTL, &attr(ino.0, &md)),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
            use std::os::unix::ffi::OsStrExt;
            match self.path(ino).and_then(|p| fs::read_link(p).map_err(errno)) {
                Ok(target) => reply.data(target.as_os_str().as_bytes()),
                Err(e) => reply.error(e),
            }
        }

        fn mkdir(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            umask: u32,
            reply: ReplyEntry,
        ) {
            let made = self.child(parent, name).and_then(|p| {
                fs::create_dir(&p).map_err(errno)?;
                let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode & !umask & 0o7777));
                self.entry(p)
            });
            match made {
                Ok(a) => reply.entry(&TTL, &a, Generation(0)),
                Err(e) => reply.error(e),
            }
        }

        fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
            let done = self.child(parent, name).and_then(|p| {
                let md = fs::symlink_metadata(&p).map_err(errno)?;
                fs::remove_file(&p).map_err(errno)?;
                let mut state = self.lock();
                if let Some(&ino) = state.by_real.get(&md.ino()) {
                    if md.nlink() <= 1 {
                        state.gone(ino);
                        state.by_real.remove(&md.ino());
                    } else if state.paths.get(&ino) == Some(&p) {
                        // Another name remains; the kernel looks it up again when it needs it.
                        state.paths.remove(&ino);
                    }
                }
                Ok(())
            });
            match done {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        }

        fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
            let done = self.child(parent, name).and_then(|p| {
                let md = fs::symlink_metadata(&p).map_err(errno)?;
                fs::remove_dir(&p).map_err(errno)?;
                let mut state = self.lock();
                if let Some(ino) = state.by_real.remove(&md.ino()) {
                    state.gone(ino);
                }
                Ok(())
            });
            match done {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        }

        fn symlink(
            &self,
            _req: &Request,
            parent: INodeNo,
            link: &OsStr,
            target: &std::path::Path,
            reply: ReplyEntry,
        ) {
            let made = self.child(parent, link).and_then(|p| {
                std::os::unix::fs::symlink(target, &p).map_err(errno)?;
                self.entry(p)
            });
            match made {
                Ok(a) => reply.entry(&TTL, &a, Generation(0)),
                Err(e) => reply.error(e),
            }
        }

        fn rename(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            newparent: INodeNo,
            newname: &OsStr,
            flags: RenameFlags,
            reply: ReplyEmpty,
        ) {
            if !flags.is_empty() {
                reply.error(Errno::EINVAL);
                return;
            }
            let done = (|| {
                let from = self.child(parent, name)?;
                let to = self.child(newparent, newname)?;
                let replaced = fs::symlink_metadata(&to).ok();
                fs::rename(&from, &to).map_err(errno)?;
                let mut state = self.lock();
                if let Some(md) = replaced.filter(|md| md.nlink() <= 1 || md.is_dir()) {
                    if let Some(ino) = state.by_real.remove(&md.ino()) {
                        state.gone(ino);
                    }
                }
                state.moved(&from, &to);
                Ok(())
            })();
            match done {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        }

        fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
            let made = (|| {
                let from = self.path(ino)?;
                let to = self.child(newparent, newname)?;
                fs::hard_link(&from, &to).map_err(errno)?;
                let md = fs::symlink_metadata(&to).map_err(errno)?;
                Ok(attr(ino.0, &md))
            })();
            match made {
                Ok(a) => reply.entry(&TTL, &a, Generation(0)),
                Err(e) => reply.error(e),
            }
        }

        fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
            match self
                .path(ino)
                .and_then(|p| self.open_file(ino.0, &p, flags.0, None).map_err(errno))
            {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        }

        fn create(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            umask: u32,
            flags: i32,
            reply: ReplyCreate,
        ) {
            let made = (|| {
                let path = self.child(parent, name)?;
                // The file is made first (so its inode is known), then opened as asked.
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .create_new(flags & libc::O_EXCL != 0)
                    .mode(mode & !umask & 0o7777)
                    .open(&path)
                    .map_err(errno)?;
                drop(file);
                let a = self.entry(path.clone())?;
                let fh = self
                    .open_file(a.ino.0, &path, flags & !(libc::O_CREAT | libc::O_EXCL), None)
                    .map_err(errno)?;
                Ok((a, fh))
            })();
            match made {
                Ok((a, fh)) => reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        }

        fn read(
            &self,
            _req: &Request,
            _ino: INodeNo,
            fh: FileHandle,
            offset: u64,
            size: u32,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            reply: ReplyData,
        ) {
            let state = self.lock();
            let Some(open) = state.open.get(&fh.0) else {
                reply.error(Errno::EBADF);
                return;
            };
            let mut buf = vec![0; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match open.file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        reply.error(errno(e));
                        return;
                    }
                }
            }
            reply.data(&buf[..filled]);
        }

        fn write(
            &self,
            _req: &Request,
            _ino: INodeNo,
            fh: FileHandle,
            offset: u64,
            data: &[u8],
            _write_flags: WriteFlags,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            reply: ReplyWrite,
        ) {
            let mut state = self.lock();
            let state = &mut *state;
            let Some(open) = state.open.get(&fh.0) else {
                reply.error(Errno::EBADF);
                return;
            };
            let (ino, sync_writes) = (open.ino, open.sync_writes);
            let file = match open.file.try_clone() {
                Ok(f) => f,
                Err(e) => {
                    reply.error(errno(e));
                    return;
                }
            };
            let done = state
                .before_write(ino, &file, offset, data.len() as u64)
                .and_then(|()| file.write_all_at(data, offset));
            match done {
                Ok(()) => {
                    if sync_writes {
                        state.synced(ino);
                    } else {
                        state.last_write = Some((ino, offset, data.to_vec()));
                    }
                    reply.written(data.len() as u32);
                }
                Err(e) => reply.error(errno(e)),
            }
        }

        fn flush(
            &self,
            _req: &Request,
            _ino: INodeNo,
            _fh: FileHandle,
            _owner: LockOwner,
            reply: ReplyEmpty,
        ) {
            // close(2) is not a sync: nothing changes.
            reply.ok();
        }

        fn release(
            &self,
            _req: &Request,
            _ino: INodeNo,
            fh: FileHandle,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            _flush: bool,
            reply: ReplyEmpty,
        ) {
            self.lock().open.remove(&fh.0);
            reply.ok();
        }

        fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
            self.lock().synced(ino.0);
            reply.ok();
        }

        fn readdir(
            &self,
            _req: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            mut reply: ReplyDirectory,
        ) {
            let listed = (|| {
                let dir = self.path(ino)?;
                let mut entries = vec![
                    (ino.0, FileType::Directory, OsStr::new(".").to_os_string()),
                    (ino.0, FileType::Directory, OsStr::new("..").to_os_string()),
                ];
                for entry in fs::read_dir(&dir).map_err(errno)? {
                    let entry = entry.map_err(errno)?;
                    let md = entry.metadata().map_err(errno)?;
                    let a = attr(self.lock().ino_for(md.ino(), entry.path()), &md);
                    entries.push((a.ino.0, a.kind, entry.file_name()));
                }
                Ok::<_, Errno>(entries)
            })();
            match listed {
                Ok(entries) => {
                    for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                        if reply.add(INodeNo(ino), (i + 1) as u64, kind, &name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(e),
            }
        }

        fn fsyncdir(
            &self,
            _req: &Request,
            _ino: INodeNo,
            _fh: FileHandle,
            _datasync: bool,
            reply: ReplyEmpty,
        ) {
            // Names are kept at the cut anyway (see the module's doc).
            reply.ok();
        }

        fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
            reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
        }

        fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
            reply.ok();
        }
    }

    /// The mounted power-cut file system. Dropping it unmounts without a cut.
    pub struct Mounted {
        session: Option<fuser::BackgroundSession>,
        state: Arc<Mutex<State>>,
        mountpoint: PathBuf,
        /// This connection's `abort` file in the FUSE control file system, opened at mount
        /// time: held open, it names this connection even after its number is reused.
        abort: Option<File>,
    }

    /// How long the serving thread may take to end once the mount is gone.
    const SESSION_END: Duration = Duration::from_secs(10);

    /// Opens the `abort` file of FUSE connection `connection`, mounting the FUSE control
    /// file system at `/sys/fs/fuse/connections` when it is not (root only); `None` when
    /// neither works.
    fn open_abort(connection: u64) -> Option<File> {
        let abort = std::path::Path::new("/sys/fs/fuse/connections")
            .join(connection.to_string())
            .join("abort");
        if !abort.exists() {
            let (none, fusectl) = (c"none", c"fusectl");
            let at = c"/sys/fs/fuse/connections";
            // SAFETY: valid NUL-terminated strings; no data argument. A failure (not root,
            // already mounted) leaves `abort` missing, which the open below reports.
            unsafe { libc::mount(none.as_ptr(), at.as_ptr(), fusectl.as_ptr(), 0, std::ptr::null()) };
        }
        OpenOptions::new().write(true).open(abort).ok()
    }

    /// Detaches the mount and ends its FUSE connection, then waits for the serving thread.
    /// A plain unmount fails while anything still has a file open there, and a process
    /// exiting with a thread blocked on its own FUSE mount never finishes exiting; so the
    /// mount is detached lazily (`umount2(MNT_DETACH)`, or `fusermount3 -u -z` without
    /// root) and the connection aborted through its control file, which fails whatever
    /// still uses it with `ENOTCONN`.
    fn unmount(
        session: fuser::BackgroundSession,
        mountpoint: &std::path::Path,
        abort: Option<File>,
    ) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a valid NUL-terminated path; umount2 reads it only.
        if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EPERM) {
                return Err(err);
            }
            // Not root: the setuid helper unmounts mounts its user made.
            let helped = ["fusermount3", "fusermount"].iter().any(|helper| {
                std::process::Command::new(helper)
                    .args(["-u", "-z"])
                    .arg(mountpoint)
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if !helped {
                return Err(io::Error::new(
                    err.kind(),
                    format!(
                        "unmounting {}: {err}, and fusermount3 -u -z failed",
                        mountpoint.display()
                    ),
                ));
            }
        }
        if let Some(mut abort) = abort {
            // The connection may already be gone (nothing used the detached mount).
            let _ = abort.write_all(b"1");
        }
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The abort is what ended the session when it came while the session was
            // still reading: its read then fails `ECONNABORTED`, which is the end we asked
            // for, not an error.
            let joined = match session.join() {
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
                other => other,
            };
            let _ = done.send(joined);
        });
        ended.recv_timeout(SESSION_END).unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the power-cut file system's session did not end within {} s of its unmount \
                     (a process still uses it, and the FUSE control file system could not abort it)",
                    SESSION_END.as_secs()
                ),
            ))
        })
    }

    impl std::fmt::Debug for Mounted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Mounted(power-cut file system)")
        }
    }

    pub(super) fn mount(backing: PathBuf, mountpoint: PathBuf) -> io::Result<super::Mounted> {
        let root_real = fs::metadata(&backing)?.ino();
        let mut state = State {
            next_ino: 1,
            ..State::default()
        };
        state.by_real.insert(root_real, 1);
        state.paths.insert(1, backing);
        let state = Arc::new(Mutex::new(state));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("synclog-powercut".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(
            PowerCutFs {
                state: Arc::clone(&state),
            },
            &mountpoint,
            &config,
        )?;
        let dev = fs::metadata(&mountpoint)?.dev();
        Ok(Mounted {
            session: Some(session),
            state,
            abort: open_abort(libc::minor(dev) as u64),
            mountpoint,
        })
    }

    impl Mounted {
        /// Unmounts, then cuts the power: undoes every write no sync covered (see [`Cut`]).
        /// Call it once every process writing through the mount is dead.
        pub fn cut(mut self, how: Cut) -> io::Result<CutReport> {
            if let Some(session) = self.session.take() {
                unmount(session, &self.mountpoint, self.abort.take())?;
            }
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut report = CutReport::default();
            // The file the last unsynced write went to, if it still has a name.
            let last = match state.last_write.take() {
                Some((ino, at, data)) => match state.unsynced.get(&ino) {
                    Some(u) => Some((u.file.try_clone()?, at, data)),
                    None => None,
                },
                None => None,
            };
            for (_, unsynced) in std::mem::take(&mut state.unsynced) {
                report.files += 1;
                report.writes_dropped += unsynced.undo.len();
                for undo in unsynced.undo.iter().rev() {
                    unsynced.file.write_all_at(&undo.old, undo.at)?;
                }
                unsynced.file.set_len(unsynced.synced_len)?;
            }
            if let (Cut::TearLast, Some((file, at, data))) = (how, last) {
                if data.len() > 1 {
                    let kept = fastrand::usize(1..data.len());
                    file.write_all_at(&data[..kept], at)?;
                    report.torn = Some((kept, data.len()));
                }
            }
            Ok(report)
        }
    }

    impl Drop for Mounted {
        fn drop(&mut self) {
            if let Some(session) = self.session.take() {
                let _ = unmount(session, &self.mountpoint, self.abort.take());
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;

    use super::*;

    /// A mounted power-cut file system over fresh directories, or `None` (with a notice)
    /// on a machine without FUSE, unless [`REQUIRE_ENV`] is set.
    fn mounted() -> Option<(tempfile::TempDir, tempfile::TempDir, Mounted)> {
        if let Some(why) = available() {
            assert!(std::env::var_os(REQUIRE_ENV).is_none(), "{why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let (backing, mnt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let fs = mount(backing.path(), mnt.path()).expect("mount");
        Some((backing, mnt, fs))
    }

    /// A new file at `path` holding `bytes`, synced; still open for more writes.
    fn synced(path: &std::path::Path, bytes: &[u8]) -> fs::File {
        let mut file = fs::File::create(path).unwrap();
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
        file
    }

    #[test]
    fn a_cut_drops_exactly_the_writes_no_fsync_covered() {
        let Some((backing, mnt, fs)) = mounted() else {
            return;
        };
        let mut synced = fs::File::create(mnt.path().join("a")).unwrap();
        synced.write_all(b"kept ").unwrap();
        synced.sync_data().unwrap();
        synced.write_all(b"lost").unwrap();
        let mut never = fs::File::create(mnt.path().join("b")).unwrap();
        never.write_all(b"never synced").unwrap();
        // Read back through the mount before the cut: the writes are visible.
        assert_eq!(fs::read(mnt.path().join("a")).unwrap(), b"kept lost");
        drop((synced, never));
        let report = fs.cut(Cut::DropUnsynced).unwrap();
        assert_eq!(fs::read(backing.path().join("a")).unwrap(), b"kept ");
        assert_eq!(fs::read(backing.path().join("b")).unwrap(), b"");
        assert_eq!((report.files, report.writes_dropped, report.torn), (2, 2, None));
    }

    #[test]
    fn overwrites_and_truncations_since_the_sync_are_undone() {
        let Some((backing, mnt, fs)) = mounted() else {
            return;
        };
        let path = mnt.path().join("f");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        file.write_all(b"0123456789").unwrap();
        file.sync_all().unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"xx", 2).unwrap();
        file.set_len(4).unwrap();
        file.write_all(b"tail").unwrap();
        drop(file);
        // A rename keeps the name (names are kept) but the contents still go back.
        fs::rename(&path, mnt.path().join("g")).unwrap();
        fs.cut(Cut::DropUnsynced).unwrap();
        assert!(!backing.path().join("f").exists());
        assert_eq!(fs::read(backing.path().join("g")).unwrap(), b"0123456789");
    }

    #[test]
    fn a_torn_cut_keeps_a_proper_prefix_of_the_last_write_only() {
        let Some((backing, mnt, fs)) = mounted() else {
            return;
        };
        let mut file = synced(&mnt.path().join("t"), b"base");
        file.write_all(b"first").unwrap();
        file.write_all(b"second-write").unwrap();
        drop(file);
        let report = fs.cut(Cut::TearLast).unwrap();
        let (kept, of) = report.torn.expect("the last write was torn");
        assert_eq!(of, b"second-write".len());
        assert!((1..of).contains(&kept));
        let after = fs::read(backing.path().join("t")).unwrap();
        // "first" is gone (zeros where it was), then the torn prefix.
        let mut want = b"base".to_vec();
        want.extend_from_slice(&[0; 5]);
        want.extend_from_slice(&b"second-write"[..kept]);
        assert_eq!(after, want);
    }

    #[test]
    fn the_undo_follows_the_file_when_a_rename_replaces_one_of_its_names() {
        let Some((backing, mnt, fs)) = mounted() else {
            return;
        };
        let (a, b, y) = (mnt.path().join("a"), mnt.path().join("b"), mnt.path().join("y"));
        drop(synced(&a, b"synced"));
        // The file gets a second name, then an unsynced overwrite through the first.
        fs::hard_link(&a, &b).unwrap();
        let mut file = OpenOptions::new().write(true).open(&a).unwrap();
        file.write_all(b"LOST!!").unwrap();
        drop(file);
        // Another file, synced, is renamed over the first name.
        drop(synced(&y, b"other file"));
        fs::rename(&y, &a).unwrap();
        fs.cut(Cut::DropUnsynced).unwrap();
        assert_eq!(fs::read(backing.path().join("b")).unwrap(), b"synced");
        assert_eq!(fs::read(backing.path().join("a")).unwrap(), b"other file");
    }

    #[test]
    fn a_cut_with_a_file_still_open_on_the_mount_ends_the_session_and_succeeds() {
        let Some((backing, mnt, fs)) = mounted() else {
            return;
        };
        let mut file = fs::File::create(mnt.path().join("open")).unwrap();
        file.write_all(b"unsynced").unwrap();
        // Still open: the unmount alone cannot end the connection; the abort does.
        let report = fs.cut(Cut::DropUnsynced).expect("the cut");
        assert_eq!(report.writes_dropped, 1);
        assert_eq!(fs::read(backing.path().join("open")).unwrap(), b"");
        drop(file);
    }
}
