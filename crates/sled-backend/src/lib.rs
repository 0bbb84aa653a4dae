//! # synclog-sled
//!
//! A [`LogStore`](synclog_core::LogStore) over sled 0.34.7, on core's key-value adapter
//! ([`synclog_core::kv`]): this crate supplies the five calls sled answers (get, range,
//! write, close, size) and how to open and release a database; the adapter supplies ids,
//! group commit, validation, checksums, runs and keys, imports, repair, prunes and verify.
//! See the crate README for what sled itself says about its stability, and how synclog
//! lays records out in it.
//!
//! ```
//! use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synclog_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = synclog_sled::open(dir.path().join("logs.sled"))?;
//! let rec = store.append(NewLog::new("crm-sync", Status::Succeeded)).await?;
//! assert_eq!(store.get(rec.id).await?, Some(rec));
//! store.close().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod flush;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use synclog_core::kv::{KvBackend, KvOp, KvOptions, KvStore};
use synclog_core::{Durability, Error, Result};

pub use synclog_core::kv::{FORMAT_VERSION, PRUNE_CHUNK_IDS};

/// A sled store: the key-value adapter over a [`SledBackend`]. Open one with [`open`],
/// [`open_with`] or [`open_read_only`].
pub type SledStore = KvStore<SledBackend>;

fn map_err(path: &Path, context: &str, e: sled::Error) -> Error {
    let resource = format!("sled://{}", path.display());
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => Error::Locked {
            resource,
            detail: "another process (or handle) has it open; sled allows one at a time".into(),
            source: Some(Box::new(io)),
        },
        sled::Error::Io(io) => Error::io(format!("{context} {resource}"), io),
        sled::Error::Unsupported(what) if what.contains("failed to open database") => Error::Corrupt {
            location: resource,
            detail: format!("sled cannot read these files (damaged, or not a sled 0.34 database): {what}"),
            source: None,
        },
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            location: resource,
            detail: format!(
                "sled reports corruption{}",
                at.map(|a| format!(" at {a:?}")).unwrap_or_default()
            ),
            source: None,
        },
        other => Error::Backend {
            engine: "sled",
            context: format!("{context} {resource}"),
            source: Box::new(other),
        },
    }
}

/// Waits, at most `wait`, until nothing holds the lock on the database's `db` file.
///
/// sled's own thread pool can keep the file (and its lock) open for a moment after the last
/// handle is dropped, so a close that returned at once could leave another process
/// unable to open the database. The probe takes the same `flock` sled takes, and releases
/// it at once.
fn wait_for_lock_release(path: &Path, wait: Duration) {
    let Ok(file) = std::fs::File::open(path.join("db")) else {
        return;
    };
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return;
            }
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(_) => return,
        }
    }
}

/// Tuning of a sled store.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// How long to keep retrying while another process holds the database.
    pub lock_wait: Duration,
    /// Most logs in one group commit.
    pub max_group_logs: usize,
    /// Whether a lone appender on a multi-thread tokio runtime commits on its own thread,
    /// inside `tokio::task::block_in_place`, instead of handing over to the writer thread
    /// and back ([`synclog_core::group::GroupOptions::inline_lone_commits`]). On by default.
    pub inline_lone_commits: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            lock_wait: Duration::from_secs(10),
            max_group_logs: 8192,
            inline_lone_commits: true,
        }
    }
}

/// One open sled database, as the key-value adapter's backend.
pub struct SledBackend {
    path: PathBuf,
    /// `None` once closed.
    db: Mutex<Option<sled::Db>>,
    /// What `PowerLoss` syncs beyond sled's `flush`.
    power: Mutex<flush::PowerSync>,
    /// How long `close` waits for sled's threads to let go of the lock.
    lock_wait: Duration,
    read_only: bool,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend").field("path", &self.path).finish()
    }
}

impl SledBackend {
    fn db(&self) -> Result<sled::Db> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner()).clone();
        db.ok_or_else(|| Error::Closed {
            store: self.describe(),
        })
    }

    fn err<'a>(&'a self, context: &'a str) -> impl Fn(sled::Error) -> Error + 'a {
        move |e| map_err(&self.path, context, e)
    }
}

impl KvBackend for SledBackend {
    fn engine(&self) -> &'static str {
        "sled"
    }

    fn describe(&self) -> String {
        format!("sled://{}", self.path.display())
    }

    fn durabilities(&self) -> Vec<Durability> {
        Durability::ALL.to_vec()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let v = self.db()?.get(key).map_err(self.err("reading"))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn range(&self, from: &[u8], to: &[u8], reverse: bool, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let db = self.db()?;
        let range = db.range(from..to);
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match reverse {
            true => Box::new(range.rev()),
            false => Box::new(range),
        };
        entries
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(self.err("reading"))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// One key is a plain insert (sled's batches cost a third of the throughput); more
    /// are one atomic batch. Then sled's `flush`, and the fsyncs `PowerLoss` needs.
    fn write(&self, ops: Vec<KvOp>, durability: Durability) -> Result<()> {
        if self.read_only {
            return Err(Error::read_only("sled", &self.describe(), "a write"));
        }
        let db = self.db()?;
        match ops.as_slice() {
            [KvOp::Put(k, v)] => db.insert(k.as_slice(), v.as_slice()).map(drop),
            [KvOp::Delete(k)] => db.remove(k.as_slice()).map(drop),
            _ => {
                let mut batch = sled::Batch::default();
                for op in ops {
                    match op {
                        KvOp::Put(k, v) => batch.insert(k, v),
                        KvOp::Delete(k) => batch.remove(k),
                    }
                }
                db.apply_batch(batch)
            }
        }
        .map_err(self.err("writing to"))?;
        flush::flush(&db, &self.power, durability)
    }

    /// sled's `size_on_disk`.
    fn storage_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.db()?.size_on_disk().map_err(self.err("measuring"))?))
    }

    /// Leaves everything as durable as `PowerLoss` (unless read-only), lets go of the
    /// database, and waits (bounded) for sled's threads to release its lock, so that a
    /// writer that comes next finds it free.
    fn close(&self) -> Result<()> {
        let Some(db) = self.db.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        if !self.read_only {
            flush::flush(&db, &self.power, Durability::PowerLoss)?;
        }
        flush::release(&self.power);
        drop(db);
        wait_for_lock_release(&self.path, self.lock_wait);
        Ok(())
    }
}

/// Opens (creating) the database directory at `path`.
pub fn open(path: impl AsRef<Path>) -> Result<SledStore> {
    open_with(path, SledOptions::default())
}

/// Opens with options. A database held by another process is retried for `lock_wait`,
/// then refused as [`Error::Locked`]; sled-reported corruption is [`Error::Corrupt`]; a
/// database of a newer format is refused untouched, an older one is marked with
/// [`FORMAT_VERSION`].
pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<SledStore> {
    open_inner(path.as_ref(), options, false)
}

fn open_inner(path: &Path, options: SledOptions, read_only: bool) -> Result<SledStore> {
    let path = path.to_path_buf();
    let deadline = Instant::now() + options.lock_wait;
    let mut pause = Duration::from_millis(5);
    let mut cleared = false;
    let db = loop {
        match sled::Config::new().path(&path).open() {
            Ok(db) => break db,
            Err(e) => {
                // sled answers Corruption only after it took the database's lock, so no
                // other process is writing a snapshot now.
                if matches!(e, sled::Error::Corruption { at: None, .. }) && !cleared {
                    cleared = true;
                    let unfinished = unfinished_snapshots(&path)?;
                    match (unfinished.first(), read_only) {
                        (None, _) => {}
                        (Some(_), false) => {
                            remove_unfinished_snapshots(&path, &unfinished)?;
                            continue;
                        }
                        (Some(first), true) => {
                            return Err(Error::Corrupt {
                                location: format!("sled://{}", path.display()),
                                detail: format!(
                                    "sled reads {} as a snapshot, but a crash cut off its writing; an open for writing (any command that writes, such as `append`) removes it",
                                    first.display()
                                ),
                                source: None,
                            })
                        }
                    }
                }
                let err = map_err(&path, "opening", e);
                if err.kind() == synclog_core::ErrorKind::Locked && Instant::now() + pause < deadline {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                    continue;
                }
                return Err(err);
            }
        }
    };
    let backend = SledBackend {
        power: flush::PowerSync::new(&path),
        path,
        db: Mutex::new(Some(db)),
        // A read-only handle opens without waiting, but closes like any other.
        lock_wait: match read_only {
            true => SledOptions::default().lock_wait,
            false => options.lock_wait,
        },
        read_only,
    };
    KvStore::open_with(
        backend,
        KvOptions {
            read_only,
            max_group_logs: options.max_group_logs,
            inline_lone_commits: options.inline_lone_commits,
        },
    )
}

/// The snapshots a crash cut off while sled was writing them (`snap.<lsn>.generating`).
///
/// sled 0.34.7 writes a snapshot to that name and renames it when complete, but at open
/// it reads the newest file whose name starts with `snap.`, the unfinished one included
/// (it skips only `.in___motion`): a SIGKILL at the wrong moment left a database that
/// every later open refused as corrupt (sled issues 1527 and 1533; our prune crash loop
/// hit it). Such a file was never a snapshot: without it sled starts from the last
/// complete one and replays its log from there.
fn unfinished_snapshots(path: &Path) -> Result<Vec<PathBuf>> {
    let listing = |e| Error::io(format!("listing sled://{}", path.display()), e);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes `files` ([`unfinished_snapshots`] of `path`), then syncs the directory.
fn remove_unfinished_snapshots(path: &Path, files: &[PathBuf]) -> Result<()> {
    let resource = format!("sled://{}", path.display());
    for file in files {
        std::fs::remove_file(file)
            .map_err(|e| Error::io(format!("removing {} of {resource}", file.display()), e))?;
        tracing::warn!(store = %resource, file = %file.display(), "removed a snapshot a crash cut off while sled wrote it; sled 0.34 would refuse the database as corrupt");
    }
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing the directory of {resource}"), e))
}

/// Opens the existing database at `path` for reading. sled has no read-only mode and
/// admits one process at a time, even for reading: so this tries once, without waiting,
/// and a database another process has open (a writer) is [`Error::Locked`], saying that
/// sled cannot be read beside a writer. While this handle is open it holds sled's lock
/// like any handle (a writer that comes meanwhile waits for it up to its own lock wait);
/// close it soon. A missing database is [`Error::StoreNotFound`], and nothing is created.
/// Writes through the handle (`commit`, `import`, `repair`, `sync`, prunes) fail with
/// [`Error::Unsupported`] and write nothing; an older format is left as it is.
pub fn open_read_only(path: impl AsRef<Path>) -> Result<SledStore> {
    let path = path.as_ref().to_path_buf();
    let resource = format!("sled://{}", path.display());
    match std::fs::metadata(path.join("db")) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(Error::StoreNotFound {
                store: resource,
                detail: "a read-only open creates nothing; check the path, or append to create the store"
                    .into(),
            })
        }
        Err(e) => return Err(Error::io(format!("inspecting {resource}"), e)),
    }
    let options = SledOptions {
        lock_wait: Duration::ZERO,
        ..SledOptions::default()
    };
    open_inner(&path, options, true).map_err(|e| match e {
        Error::Locked { source, .. } => Error::Locked {
            resource: resource.clone(),
            detail: "sled cannot be read beside a writer: another process has the database open, \
                     and sled admits one process at a time, even a reader; stop the writer, or read \
                     a copy (`synclog export`)"
                .into(),
            source,
        },
        other => other,
    })
}
