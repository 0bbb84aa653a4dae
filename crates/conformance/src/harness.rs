//! What an engine's author implements to run the suite: [`Harness`].

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use synclog_core::{Error, LogId, LogStore, Result};

/// Where one isolated store lives: a string any process can open (a path, a schema name),
/// plus whatever must stay alive while it is used (a temporary directory).
#[derive(Clone)]
pub struct Location {
    /// The address, passed to [`Harness::open`] (also in a child process).
    pub address: String,
    keep: Option<Arc<dyn Any + Send + Sync>>,
}

impl Location {
    /// A location at `address` that keeps `guard` alive as long as any clone of it lives.
    pub fn new(address: impl Into<String>, guard: impl Any + Send + Sync) -> Location {
        Location {
            address: address.into(),
            keep: Some(Arc::new(guard)),
        }
    }

    /// A location known only by its address (as a crash child receives it).
    pub fn at(address: impl Into<String>) -> Location {
        Location {
            address: address.into(),
            keep: None,
        }
    }

    /// Whether this handle keeps the storage alive (a child's does not).
    pub fn is_owner(&self) -> bool {
        self.keep.is_some()
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// The fault hooks a harness offers. Each is called while no handle of the store is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// [`Harness::corrupt_record`] is implemented.
    pub corrupt_record: bool,
    /// [`Harness::remove_record`] is implemented.
    pub remove_record: bool,
    /// [`Harness::destroy`] is implemented.
    pub destroy: bool,
}

impl Faults {
    /// Every hook implemented.
    pub const ALL: Faults = Faults {
        corrupt_record: true,
        remove_record: true,
        destroy: true,
    };
}

/// An engine's entry into the suite.
///
/// ```
/// # use std::sync::Arc;
/// # use synclog_conformance::{Harness, Location, memory::MemoryStore};
/// # use synclog_core::{LogStore, Result};
/// struct MyHarness;
///
/// #[async_trait::async_trait]
/// impl Harness for MyHarness {
///     fn name(&self) -> &'static str { "mine" }
///     async fn create(&self) -> Result<Location> {
///         Ok(Location::at(format!("mine-{}", fastrand::u64(..))))
///     }
///     async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>> {
///         Ok(Arc::new(MemoryStore::open_named(&at.address)))
///     }
/// }
/// ```
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The engine's name, for messages.
    fn name(&self) -> &'static str;

    /// A fresh, empty, isolated location.
    ///
    /// By default a new temporary directory, and [`Harness::create_in`] inside it: an
    /// engine that keeps its store in files implements `create_in` only.
    async fn create(&self) -> Result<Location> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("making a temporary directory", e))?;
        let at = self.create_in(dir.path()).await?;
        Ok(Location::new(at.address.clone(), (at, dir)))
    }

    /// A fresh, empty location inside the existing directory `dir`, for an engine that
    /// keeps its store in files. The power-cut case passes a directory on its power-cut
    /// file system; unsupported by default (an engine without files implements `create`).
    async fn create_in(&self, dir: &Path) -> Result<Location> {
        let _ = dir;
        Err(unsupported(self.name(), "create_in"))
    }

    /// Opens the store at `at` (creating it on first use). Called again after the previous
    /// handle was closed to test a reopen, and in a child process by the crash case.
    async fn open(&self, at: &Location) -> Result<Arc<dyn LogStore>>;

    /// Which fault hooks this harness implements.
    fn faults(&self) -> Faults {
        Faults::default()
    }

    /// Whether a store opened in another OS process sees the same data (the crash case
    /// needs it).
    fn cross_process(&self) -> bool {
        false
    }

    /// Damages the stored bytes of record `id` behind the store's back, so its checksum no
    /// longer matches (the store is closed when this is called).
    async fn corrupt_record(&self, at: &Location, id: LogId) -> Result<()> {
        let _ = (at, id);
        Err(unsupported(self.name(), "corrupt_record"))
    }

    /// Removes record `id` behind the store's back (the store is closed).
    async fn remove_record(&self, at: &Location, id: LogId) -> Result<()> {
        let _ = (at, id);
        Err(unsupported(self.name(), "remove_record"))
    }

    /// Deletes the storage entirely (the store is closed).
    async fn destroy(&self, at: &Location) -> Result<()> {
        let _ = at;
        Err(unsupported(self.name(), "destroy"))
    }

    /// Frees what `create` made beyond what dropping the location frees (a database schema).
    async fn cleanup(&self, at: &Location) -> Result<()> {
        let _ = at;
        Ok(())
    }
}

fn unsupported(engine: &'static str, what: &str) -> Error {
    Error::Unsupported {
        engine,
        what: format!("the {what} harness hook"),
    }
}
