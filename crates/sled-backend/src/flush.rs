//! Making what sled holds survive at a durability level.
//!
//! sled's own `flush` is not enough for `PowerLoss`: on Linux it makes its log stable with
//! `sync_file_range`, which writes the dirty pages but neither flushes the drive's write
//! cache nor the file's size, and it writes blob files (values over its blob threshold)
//! with no sync at all. So at `PowerLoss` this engine also syncs the data file, the blob
//! files and the directories that name them ([`PowerSync`]). The conformance suite's
//! power-cut case found it: through sled's `flush` alone, every log acknowledged at
//! `PowerLoss` was lost at the simulated cut.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use synclog_core::{Durability, Result};

use crate::map_err;

/// What `PowerLoss` syncs beyond sled's `flush`, remembering what it already synced so a
/// commit costs one `fdatasync` of the data file (plus one per new blob).
#[derive(Debug)]
pub(crate) struct PowerSync {
    dir: PathBuf,
    /// sled's data file, kept open for syncing. sled locks it with `flock`, which closing
    /// another descriptor of the file does not release.
    data: Option<File>,
    /// The blob files synced already (the listing is pruned as sled collects them). A
    /// listed blob is complete: sled writes it inside the insert, and every insert and
    /// every sync of this store runs on the kv adapter's one writer, never beside another.
    blobs: HashSet<OsString>,
    /// The database directory, its `conf` file and the directory that names it were
    /// synced once by this handle (sled makes `db`, `conf` and `blobs` at open).
    dir_synced: bool,
}

impl PowerSync {
    /// Nothing synced yet for the database directory `dir`.
    pub(crate) fn new(dir: &Path) -> Mutex<PowerSync> {
        Mutex::new(PowerSync {
            dir: dir.to_path_buf(),
            data: None,
            blobs: HashSet::new(),
            dir_synced: false,
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        let data = match &self.data {
            Some(file) => file,
            None => self.data.insert(File::open(self.dir.join("db"))?),
        };
        data.sync_data()?;
        let blobs = self.dir.join("blobs");
        match fs::read_dir(&blobs) {
            Ok(entries) => {
                let mut listed = HashSet::new();
                let mut new = false;
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    if !self.blobs.contains(&name) {
                        match File::open(entry.path()) {
                            Ok(blob) => blob.sync_data()?,
                            // Collected by sled between the listing and the open.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        }
                        new = true;
                    }
                    listed.insert(name);
                }
                self.blobs = listed;
                if new {
                    File::open(&blobs)?.sync_all()?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !self.dir_synced {
            match File::open(self.dir.join("conf")) {
                Ok(conf) => conf.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            File::open(&self.dir)?.sync_all()?;
            // The directory's own name, when this open made it.
            if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
            self.dir_synced = true;
        }
        Ok(())
    }
}

/// Makes what `db` (the store whose files `power` syncs) holds survive at `durability`.
pub(crate) fn flush(db: &sled::Db, power: &Mutex<PowerSync>, durability: Durability) -> Result<()> {
    if durability < Durability::Process {
        return Ok(());
    }
    let mut power = power.lock().unwrap_or_else(|p| p.into_inner());
    db.flush().map_err(|e| map_err(&power.dir, "flushing", e))?;
    if durability == Durability::PowerLoss {
        let dir = power.dir.clone();
        power
            .sync()
            .map_err(|e| map_err(&dir, "syncing the files of", sled::Error::Io(e)))?;
    }
    Ok(())
}

/// Closes the data file `power` keeps open (the store is closing).
pub(crate) fn release(power: &Mutex<PowerSync>) {
    power.lock().unwrap_or_else(|p| p.into_inner()).data = None;
}
