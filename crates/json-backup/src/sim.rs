//! A simulated file system for crash tests, after redb's crash-consistency backend and
//! SQLite's crash VFS: written-but-unsynced bytes and unsynced directory entries are
//! kept apart, and [`SimFs::crash`] drops them, or keeps a torn prefix of the last write.
//!
//! It models what the JSON engine relies on: `fdatasync` makes a file's appended bytes
//! durable; a new name (create, rename) is durable once its directory is synced.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::fs::{AppendFile, FileId, FileSystem, LockError, LockGuard, ReadAt};

#[derive(Debug, Default, Clone)]
struct Inode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// How much of `data` is durable.
    synced: usize,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    names: HashMap<PathBuf, usize>,
    durable_names: HashMap<PathBuf, usize>,
    locks: HashSet<PathBuf>,
    /// Files locked by identity (inode number).
    file_locks: HashSet<usize>,
    generation: u64,
    fail_syncs: usize,
    syncs: u64,
    /// Mutating operations so far, and the count at which the power goes out.
    ops: u64,
    power_cut_at: Option<u64>,
    /// One operation, by count, that fails once (a transient I/O error).
    fail_once_at: Option<u64>,
    /// The disk is full: appending bytes fails with ENOSPC (creating, renaming, cutting
    /// and removing files still work, as on a real full disk).
    disk_full: bool,
}

/// The error a write to a full disk gets.
fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl State {
    /// Counts one mutating operation; fails it (and every later one) once the power is out.
    fn op(&mut self) -> io::Result<()> {
        if self.power_cut_at.is_some_and(|at| self.ops >= at) {
            return Err(io::Error::other("simulated power cut"));
        }
        if self.fail_once_at == Some(self.ops) {
            self.fail_once_at = None;
            return Err(io::Error::other("simulated I/O error"));
        }
        self.ops += 1;
        Ok(())
    }
}

/// What happens to the unsynced bytes of each file at a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// All unsynced bytes are lost.
    DropUnsynced,
    /// The first `n` unsynced bytes reached the disk; the rest are lost.
    KeepPrefix(usize),
}

/// The simulated file system. Clones share state.
#[derive(Debug, Default, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Simulates a crash: every handle dies, unsynced names vanish, and each file keeps
    /// its durable bytes plus what `tear` says of the unsynced ones.
    pub fn crash(&self, tear: Tear) {
        let mut st = self.lock_state();
        st.generation += 1;
        st.power_cut_at = None;
        st.locks.clear();
        st.file_locks.clear();
        st.names = st.durable_names.clone();
        for inode in &mut st.inodes {
            let keep = match tear {
                Tear::DropUnsynced => inode.synced,
                Tear::KeepPrefix(n) => inode.synced.saturating_add(n).min(inode.data.len()),
            };
            inode.data.truncate(keep);
            inode.synced = keep;
        }
    }

    /// Cuts the power after `n` more mutating operations (append, sync, truncate, create,
    /// rename, directory sync): from then on every one fails, until [`SimFs::crash`].
    /// Looping `n` over 0.. visits every crash point of a scenario.
    pub fn cut_power_after(&self, n: u64) {
        let mut st = self.lock_state();
        st.power_cut_at = Some(st.ops + n);
    }

    /// Makes the mutating operation after the next `n` fail once with an I/O error (it
    /// does nothing); the ones after it succeed again.
    pub fn fail_once_after(&self, n: u64) {
        let mut st = self.lock_state();
        st.fail_once_at = Some(st.ops + n);
    }

    /// Fills the disk (`true`): from now on appending bytes fails with ENOSPC, until
    /// called with `false`.
    pub fn set_disk_full(&self, full: bool) {
        self.lock_state().disk_full = full;
    }

    /// Whether the power was cut (an operation was refused).
    pub fn power_is_out(&self) -> bool {
        let st = self.lock_state();
        st.power_cut_at.is_some_and(|at| st.ops >= at)
    }

    /// Makes the next `n` `sync_data` calls fail with an I/O error (the bytes stay unsynced).
    pub fn fail_next_syncs(&self, n: usize) {
        self.lock_state().fail_syncs = n;
    }

    /// Successful `sync_data` calls so far.
    pub fn syncs(&self) -> u64 {
        self.lock_state().syncs
    }

    /// The bytes a read of `path` would see now.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock_state();
        st.names.get(path).map(|&i| st.inodes[i].data.clone())
    }

    /// Replaces the contents of `path` as if written and synced (for damaging files in tests).
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let mut st = self.lock_state();
        let synced = data.len();
        let inode = match st.names.get(path) {
            Some(&i) => i,
            None => {
                st.inodes.push(Inode::default());
                let i = st.inodes.len() - 1;
                st.names.insert(path.to_path_buf(), i);
                st.durable_names.insert(path.to_path_buf(), i);
                i
            }
        };
        st.inodes[inode] = Inode { data, synced };
    }

    /// The paths that exist now.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<_> = self.lock_state().names.keys().cloned().collect();
        v.sort();
        v
    }

    fn inode_of(st: &State, path: &Path) -> io::Result<usize> {
        st.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())))
    }
}

#[derive(Debug)]
struct SimAppend {
    fs: SimFs,
    inode: usize,
    generation: u64,
}

impl SimAppend {
    fn live<'a>(&self, st: &'a mut State) -> io::Result<&'a mut State> {
        if st.generation != self.generation {
            return Err(io::Error::other("handle from before the crash"));
        }
        Ok(st)
    }
}

impl AppendFile for SimAppend {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut guard = self.fs.lock_state();
        let st = self.live(&mut guard)?;
        st.op()?;
        if st.disk_full && !buf.is_empty() {
            return Err(no_space());
        }
        st.inodes[self.inode].data.extend_from_slice(buf);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut guard = self.fs.lock_state();
        let st = self.live(&mut guard)?;
        st.op()?;
        if st.fail_syncs > 0 {
            st.fail_syncs -= 1;
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        st.syncs += 1;
        let inode = &mut st.inodes[self.inode];
        inode.synced = inode.data.len();
        Ok(())
    }
}

#[derive(Debug)]
struct SimRead {
    fs: SimFs,
    inode: usize,
}

impl ReadAt for SimRead {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = self.fs.lock_state();
        let data = &st.inodes[self.inode].data;
        let start = offset as usize;
        let end = start + buf.len();
        if end > data.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }
}

#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
    generation: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.fs.lock_state();
        if st.generation == self.generation {
            st.locks.remove(&self.path);
        }
    }
}

#[derive(Debug)]
struct SimFileLock {
    fs: SimFs,
    inode: usize,
    generation: u64,
}

impl LockGuard for SimFileLock {}

impl Drop for SimFileLock {
    fn drop(&mut self) {
        let mut st = self.fs.lock_state();
        if st.generation == self.generation {
            st.file_locks.remove(&self.inode);
        }
    }
}

impl FileSystem for SimFs {
    fn len(&self, path: &Path) -> io::Result<Option<u64>> {
        let st = self.lock_state();
        Ok(st.names.get(path).map(|&i| st.inodes[i].data.len() as u64))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut st = self.lock_state();
        let inode = match st.names.get(path) {
            Some(&i) => i,
            None => {
                st.op()?;
                st.inodes.push(Inode::default());
                let i = st.inodes.len() - 1;
                st.names.insert(path.to_path_buf(), i);
                i
            }
        };
        Ok(Box::new(SimAppend {
            fs: self.clone(),
            inode,
            generation: st.generation,
        }))
    }

    fn open_read_at(&self, path: &Path) -> io::Result<Box<dyn ReadAt>> {
        let st = self.lock_state();
        let inode = Self::inode_of(&st, path)?;
        Ok(Box::new(SimRead {
            fs: self.clone(),
            inode,
        }))
    }

    fn open_stream(&self, path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
        let st = self.lock_state();
        let inode = Self::inode_of(&st, path)?;
        Ok(Box::new(Cursor::new(st.inodes[inode].data.clone())))
    }

    fn open_stream_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn BufRead + Send>> {
        let st = self.lock_state();
        let inode = Self::inode_of(&st, path)?;
        let data = &st.inodes[inode].data;
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        Ok(Box::new(Cursor::new(data[from..].to_vec())))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.lock_state();
        let inode = Self::inode_of(&st, path)?;
        st.op()?;
        let node = &mut st.inodes[inode];
        node.data.truncate(len as usize);
        node.synced = node.data.len();
        Ok(())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut st = self.lock_state();
        if st.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        st.op()?;
        st.inodes.push(Inode::default());
        let inode = st.inodes.len() - 1;
        st.names.insert(path.to_path_buf(), inode);
        Ok(Box::new(SimAppend {
            fs: self.clone(),
            inode,
            generation: st.generation,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        let inode = Self::inode_of(&st, from)?;
        st.op()?;
        st.names.remove(from);
        st.names.insert(to.to_path_buf(), inode);
        st.durable_names = st.names.clone();
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        Self::inode_of(&st, path)?;
        st.op()?;
        st.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.op()?;
        st.durable_names = st.names.clone();
        Ok(())
    }

    fn siblings(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let st = self.lock_state();
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == path.parent())
            .cloned()
            .collect())
    }

    fn lock_file(&self, path: &Path, _wait: Duration) -> Result<(Box<dyn LockGuard>, FileId), LockError> {
        let mut st = self.lock_state();
        let inode = Self::inode_of(&st, path).map_err(LockError::Io)?;
        if !st.file_locks.insert(inode) {
            return Err(LockError::Held { holder: None });
        }
        let guard = SimFileLock {
            fs: self.clone(),
            inode,
            generation: st.generation,
        };
        Ok((
            Box::new(guard),
            FileId {
                dev: 0,
                ino: inode as u64,
            },
        ))
    }

    fn file_id(&self, path: &Path) -> io::Result<Option<FileId>> {
        let st = self.lock_state();
        Ok(st.names.get(path).map(|&i| FileId {
            dev: 0,
            ino: i as u64,
        }))
    }

    fn lock(&self, path: &Path, _wait: Duration) -> Result<Box<dyn LockGuard>, LockError> {
        let mut st = self.lock_state();
        if !st.locks.insert(path.to_path_buf()) {
            return Err(LockError::Held {
                holder: Some(std::process::id()),
            });
        }
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            generation: st.generation,
        }))
    }
}
