//! Opening a store from a URL.

mod params;
mod paths;
mod read_only;
mod same;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use synclog_core::guarded::{Guarded, GuardedOptions};
use synclog_core::{redact_url, Error, LogStore, Result};

#[cfg(any(feature = "sqlite", feature = "json", feature = "sled"))]
use paths::{check_kind, Expect};

/// A parsed store URL. Its `Debug` form hides a PostgreSQL password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `sqlite://PATH`: a SQLite database file.
    Sqlite(PathBuf),
    /// `json://PATH`: a JSON-lines store (the active file at `PATH` and its sealed
    /// segments). `json://PATH?rotate_mb=N` rotates once the active file reaches N MiB.
    Json {
        /// The active file.
        path: PathBuf,
        /// `rotate_mb` in bytes, if given.
        rotate_after_bytes: Option<u64>,
    },
    /// `sled://PATH`: a sled database directory.
    Sled(PathBuf),
    /// `postgres://…` or `postgresql://…`: a PostgreSQL database (libpq URL; add
    /// `synclog_schema=NAME` to pick the schema, default `synclog`).
    Postgres(String),
    /// `memory://NAME`: the in-process reference engine (for tests and demos).
    Memory(String),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreUrl::Json {
                path,
                rotate_after_bytes,
            } => f
                .debug_struct("Json")
                .field("path", path)
                .field("rotate_after_bytes", rotate_after_bytes)
                .finish(),
            StoreUrl::Sled(path) => f.debug_tuple("Sled").field(path).finish(),
            StoreUrl::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
            StoreUrl::Memory(name) => f.debug_tuple("Memory").field(name).finish(),
        }
    }
}

impl StoreUrl {
    /// Parses `sqlite://PATH`, `json://PATH`, `sled://PATH`, `postgres://…` or `memory://NAME`. `PATH` is taken as
    /// written: `sqlite://data/a.db` is relative, `sqlite:///var/a.db` absolute.
    ///
    /// A `?` starts the parameters. Each engine knows its own (`json`: `rotate_mb`;
    /// `postgres`: the libpq parameters tokio-postgres supports (`user`, `password`, `dbname`, `host`, `port`, `sslmode`, `connect_timeout`, …) and
    /// `synclog_schema`; `sqlite`, `sled`, `memory`: none); any other is refused with
    /// [`Error::InvalidInput`] listing those that exist. No error prints a password.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let shown = redact_url(url);
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::invalid(
                "url",
                format!("{shown} has no scheme; use sqlite://PATH or json://PATH"),
            )
        })?;
        let no_path = || Error::invalid("url", format!("{shown} names no path"));
        // The path (or name) before `?`, and the parameters after it, checked against `known`.
        let split = |engine: &str, known: &[&str]| -> Result<(String, Vec<(String, String)>)> {
            let (path, query) = params::split_query(rest);
            if path.is_empty() {
                return Err(no_path());
            }
            let pairs = match query {
                None => Vec::new(),
                Some(query) => params::parse(&shown, engine, query, known)?
                    .into_iter()
                    .map(|(name, value)| (name, value.to_string()))
                    .collect(),
            };
            Ok((path.to_string(), pairs))
        };
        // A file store's path ending in `/` names a directory: it would be created as a
        // file by SQLite and fail to lock as JSON lines. sled's store is a directory.
        let file = |path: String| -> Result<PathBuf> {
            if path.ends_with('/') {
                return Err(Error::invalid(
                    "url",
                    format!(
                        "{shown} ends with `/`: name the store's file, such as {}synclog.db",
                        path
                    ),
                ));
            }
            Ok(PathBuf::from(path))
        };
        match scheme {
            "sqlite" => Ok(StoreUrl::Sqlite(file(split("sqlite", &[])?.0)?)),
            "json" | "jsonl" => {
                let (path, pairs) = split("json", &["rotate_mb"])?;
                let path = file(path)?;
                let mut rotate_after_bytes = None;
                for (_, mb) in pairs {
                    let mb: u64 = mb.parse().ok().filter(|&mb| mb > 0 && mb < 1 << 40).ok_or_else(|| {
                        Error::invalid(
                            "url",
                            format!("rotate_mb in {shown} is not a whole number of MiB above 0"),
                        )
                    })?;
                    rotate_after_bytes = Some(mb << 20);
                }
                Ok(StoreUrl::Json {
                    path,
                    rotate_after_bytes,
                })
            }
            "sled" => Ok(StoreUrl::Sled(PathBuf::from(split("sled", &[])?.0))),
            "postgres" | "postgresql" => {
                if rest.is_empty() {
                    return Err(no_path());
                }
                if let Some(query) = params::postgres_query(url) {
                    params::parse(&shown, "postgres", query, params::POSTGRES_PARAMS)?;
                }
                Ok(StoreUrl::Postgres(url.to_string()))
            }
            "memory" => Ok(StoreUrl::Memory(split("memory", &[])?.0)),
            other => Err(Error::invalid(
                "url",
                format!(
                    "unknown scheme {} in {shown}; known: sqlite://, json://, sled://, postgres://, memory://",
                    if other.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
                        other
                    } else {
                        "(not a scheme)"
                    }
                ),
            )),
        }
    }
}

#[cfg_attr(
    not(any(feature = "sqlite", feature = "json", feature = "sled")),
    allow(dead_code)
)]
fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating directory {}", dir.display()), e)),
        _ => Ok(()),
    }
}

#[allow(dead_code)] // used only when an engine feature is off
fn disabled(feature: &str) -> Error {
    Error::Unsupported {
        engine: "synclog",
        what: format!("this URL: the `{feature}` feature was not compiled in"),
    }
}

/// Runs an engine's blocking open off the async executor.
#[allow(dead_code)] // unused only when every file engine's feature is off
async fn open_blocking<S: LogStore + 'static>(
    engine: &'static str,
    open: impl FnOnce() -> Result<S> + Send + 'static,
) -> Result<Arc<dyn LogStore>> {
    let store = synclog_core::runtime::current("opening a store")?
        .spawn_blocking(open)
        .await
        .map_err(|e| Error::Backend {
            engine,
            context: "opening".into(),
            source: Box::new(e),
        })??;
    Ok(Arc::new(store))
}

/// How stores are opened by URL.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for another process holding the store (the JSON lock, SQLite's
    /// write lock, PostgreSQL's store lock) before failing with a retryable `Locked`/`Busy`
    /// error: one deadline per operation (an open, an append), whatever it retries inside.
    /// For PostgreSQL it also bounds connecting (at least 1 s): a server that does not
    /// answer in time fails with an `Io` error naming its host and port.
    pub lock_wait: std::time::Duration,
    /// Open for reading only: no writer lock is taken, so the open never waits for a
    /// writer and never makes one wait; nothing is created or changed (a missing store is
    /// a [`NotFound`](synclog_core::ErrorKind::NotFound) error naming it), and every
    /// write through the handle fails with
    /// [`Unsupported`](synclog_core::ErrorKind::Unsupported), writing nothing.
    ///
    /// Per engine: SQLite reads on `SQLITE_OPEN_READ_ONLY` connections (beside any writer,
    /// seeing every transaction committed before each read); JSON reads every group
    /// committed when it opens, without its locks; sled, which admits one process at a
    /// time, is [`Locked`](synclog_core::ErrorKind::Locked) while a writer has it open;
    /// PostgreSQL and memory open as usual and refuse writes. A guarded pair opened
    /// read-only reports copies that differ and repairs nothing
    /// ([`GuardedOptions::read_only`]).
    pub read_only: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            lock_wait: std::time::Duration::from_secs(10),
            read_only: false,
        }
    }
}

/// Opens the store `url` names (creating the file and its directory if needed).
///
/// Refused with [`Error::InvalidInput`] before anything is created: an unknown URL
/// parameter (see [`StoreUrl::parse`]), and a path that exists but is not what the engine
/// keeps there (a directory, FIFO, device or socket for SQLite and JSON; anything but a
/// directory for sled).
pub async fn open_url(url: &str) -> Result<Arc<dyn LogStore>> {
    open_url_with(url, &OpenOptions::default()).await
}

/// The URL parameters of automatic retention (see [`synclog_core::retention::AutoRetain`]).
const RETAIN_PARAMS: [&str; 3] = ["retain", "retain_keep", "retain_every"];

/// `url` without its retention parameters, and the retention they ask for.
///
/// Errors: [`Error::InvalidInput`] for a bad value.
pub fn split_retain(url: &str) -> Result<(String, Option<synclog_core::retention::AutoRetain>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut kept = Vec::new();
    let mut found: [Option<&str>; 3] = [None; 3];
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match RETAIN_PARAMS.iter().position(|p| *p == key) {
            Some(i) => found[i] = Some(value),
            None => kept.push(pair),
        }
    }
    let auto = synclog_core::retention::AutoRetain::from_params(found[0], found[1], found[2])?;
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, auto))
}

/// [`open_url`] with options.
///
/// Automatic retention: `retain=AGE`, `retain_keep=N` (and `retain_every=INTERVAL`,
/// default 1h) on the URL run that policy beside the store, at most once per interval,
/// until the handle is closed or dropped (see
/// [`synclog_core::retention::AutoRetain`]); they are the same parameters as on a guarded
/// pair's primary URL ([`open_guarded`]). A read-only open ignores them (it prunes
/// nothing), so the same URL serves writers and readers. A bad value is
/// [`Error::InvalidInput`], before anything is opened.
pub async fn open_url_with(url: &str, options: &OpenOptions) -> Result<Arc<dyn LogStore>> {
    synclog_core::runtime::current("opening a store")?;
    let (url, retain) = split_retain(url)?;
    let began = std::time::Instant::now();
    let store = open_url_plain(&url, options).await?;
    tracing::info!(
        store = %store.describe(),
        engine = store.capabilities().engine,
        read_only = options.read_only,
        retain = retain.as_ref().map(|r| r.policy.to_string()),
        elapsed_ms = began.elapsed().as_millis() as u64,
        "opened the store"
    );
    match retain {
        Some(auto) if !options.read_only => Ok(Arc::new(read_only::View::retained(store, auto))),
        _ => Ok(store),
    }
}

/// [`open_url_with`] without automatic retention.
async fn open_url_plain(url: &str, options: &OpenOptions) -> Result<Arc<dyn LogStore>> {
    #[allow(unused_variables)] // in a build without any engine
    let wait = options.lock_wait;
    if options.read_only {
        return open_read_only(url, StoreUrl::parse(url)?, options).await;
    }
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            #[cfg(feature = "sqlite")]
            {
                check_kind("sqlite", &path, Expect::File)?;
                ensure_parent(&path)?;
                let opts = synclog_sqlite::SqliteOptions {
                    busy_timeout: wait,
                    ..Default::default()
                };
                open_blocking("sqlite", move || {
                    synclog_sqlite::SqliteStore::open_with(path, opts)
                })
                .await
            }
            #[cfg(not(feature = "sqlite"))]
            {
                let _ = path;
                Err(disabled("sqlite"))
            }
        }
        StoreUrl::Json {
            path,
            rotate_after_bytes,
        } => {
            #[cfg(feature = "json")]
            {
                check_kind("json", &path, Expect::File)?;
                ensure_parent(&path)?;
                let opts = synclog_json::JsonOptions {
                    lock_wait: wait,
                    rotate_after_bytes,
                    ..Default::default()
                };
                let fs = Arc::new(synclog_json::fs::RealFs);
                open_blocking("json", move || synclog_json::JsonStore::open_with(path, opts, fs)).await
            }
            #[cfg(not(feature = "json"))]
            {
                let _ = (path, rotate_after_bytes);
                Err(disabled("json"))
            }
        }
        StoreUrl::Sled(path) => {
            #[cfg(feature = "sled")]
            {
                check_kind("sled", &path, Expect::Dir)?;
                ensure_parent(&path)?;
                let opts = synclog_sled::SledOptions {
                    lock_wait: wait,
                    ..Default::default()
                };
                open_blocking("sled", move || synclog_sled::open_with(path, opts)).await
            }
            #[cfg(not(feature = "sled"))]
            {
                let _ = path;
                Err(disabled("sled"))
            }
        }
        StoreUrl::Postgres(url) => {
            #[cfg(feature = "postgres")]
            {
                Ok(Arc::new(
                    synclog_postgres::PgStore::connect(&url, pg_options(wait, false)).await?,
                ))
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = url;
                Err(disabled("postgres"))
            }
        }
        StoreUrl::Memory(name) => Ok(Arc::new(synclog_core::memory::MemoryStore::open_named(&name))),
    }
}

/// How the command and library connect to PostgreSQL: the lock wait bounds waits for
/// other writers; a server that does not answer is not one of those (an I/O error naming
/// it), and gets at least 1 s even with a lock wait of 0. `must_exist`: a read-only open,
/// which creates no schema.
#[cfg(feature = "postgres")]
fn pg_options(wait: std::time::Duration, must_exist: bool) -> synclog_postgres::PgOptions {
    synclog_postgres::PgOptions {
        lock_wait: wait,
        connect_timeout: wait.max(std::time::Duration::from_secs(1)),
        must_exist,
        ..Default::default()
    }
}

/// [`open_url_with`] with [`OpenOptions::read_only`]: nothing is created or locked.
async fn open_read_only(given: &str, url: StoreUrl, options: &OpenOptions) -> Result<Arc<dyn LogStore>> {
    #[allow(unused_variables)] // in a build without any engine
    let wait = options.lock_wait;
    match url {
        StoreUrl::Sqlite(path) => {
            #[cfg(feature = "sqlite")]
            {
                check_kind("sqlite", &path, Expect::File)?;
                open_blocking("sqlite", move || {
                    synclog_sqlite::SqliteStore::open_read_only(path, wait)
                })
                .await
            }
            #[cfg(not(feature = "sqlite"))]
            {
                let _ = path;
                Err(disabled("sqlite"))
            }
        }
        StoreUrl::Json { path, .. } => {
            #[cfg(feature = "json")]
            {
                check_kind("json", &path, Expect::File)?;
                let fs = Arc::new(synclog_json::fs::RealFs);
                open_blocking("json", move || synclog_json::JsonStore::open_read_only(path, fs)).await
            }
            #[cfg(not(feature = "json"))]
            {
                let _ = path;
                Err(disabled("json"))
            }
        }
        StoreUrl::Sled(path) => {
            #[cfg(feature = "sled")]
            {
                check_kind("sled", &path, Expect::Dir)?;
                open_blocking("sled", move || synclog_sled::open_read_only(path)).await
            }
            #[cfg(not(feature = "sled"))]
            {
                let _ = path;
                Err(disabled("sled"))
            }
        }
        StoreUrl::Postgres(url) => {
            #[cfg(feature = "postgres")]
            {
                // A schema without a store is not created: StoreNotFound, as for a file.
                let store = synclog_postgres::PgStore::connect(&url, pg_options(wait, true)).await?;
                Ok(Arc::new(read_only::ReadOnly::new(Arc::new(store))))
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = (url, given);
                Err(disabled("postgres"))
            }
        }
        StoreUrl::Memory(_) => {
            let writable = OpenOptions {
                read_only: false,
                ..options.clone()
            };
            let store = Box::pin(open_url_plain(given, &writable)).await?;
            Ok(Arc::new(read_only::ReadOnly::new(store)))
        }
    }
}

/// Opens `primary` guarded by `backup` (see [`Guarded`]): both are opened, reconciled,
/// and every append then goes to both.
///
/// One copy that cannot be opened because its storage is damaged or failing (a
/// [`Corrupt`](synclog_core::ErrorKind::Corrupt), [`Io`](synclog_core::ErrorKind::Io) or
/// [`Backend`](synclog_core::ErrorKind::Backend) error) does not stop the pair: it is stood
/// in for by [`Unavailable`](synclog_core::guarded::Unavailable), a warning names it, and
/// the other copy serves and acknowledges alone until `synclog check --repair` rebuilds it.
/// Any other error (locked, busy, bad URL) and two failing copies are returned.
pub async fn open_guarded(primary: &str, backup: &str, options: GuardedOptions) -> Result<Guarded> {
    open_guarded_with(primary, backup, options, &OpenOptions::default()).await
}

/// [`open_guarded`] with open options.
///
/// A primary and a backup that are the same storage (one file by any path, one memory
/// store, one PostgreSQL schema) are refused with [`Error::InvalidInput`] before either
/// is opened.
///
/// Unless [`GuardedOptions::watermark`] names a file, the pair keeps its watermark beside
/// the primary's file as `<file>.guard` (the backup's if the primary is not a file): the
/// reconcile at open then compares the copies' ends and what changed since the last
/// comparison, not the whole history. [`Guarded::check`] compares every record.
///
/// With [`OpenOptions::read_only`] (or [`GuardedOptions::read_only`]) both copies are
/// opened read-only and the pair is not reconciled: differences are reported by `verify`
/// and `check`, never repaired, and writes fail with
/// [`Unsupported`](synclog_core::ErrorKind::Unsupported). A copy that does not exist is
/// then stood in for like a damaged one (the other copy is read); both missing is a
/// [`NotFound`](synclog_core::ErrorKind::NotFound) error.
pub async fn open_guarded_with(
    primary: &str,
    backup: &str,
    options: GuardedOptions,
    open: &OpenOptions,
) -> Result<Guarded> {
    synclog_core::runtime::current("opening a guarded store")?;
    let (primary, retain) = split_retain(primary)?;
    let primary = primary.as_str();
    if split_retain(backup)?.1.is_some() {
        // The pair prunes both copies by one marker; a policy of the backup's own would
        // prune it apart from the primary.
        return Err(Error::invalid(
            "backup",
            format!("retain= belongs on the primary's URL of a guarded pair (it prunes both copies), not on the backup's: {backup}"),
        ));
    }
    let options = GuardedOptions {
        retain: options.retain.or(retain),
        ..options
    };
    same::refuse_same_storage(primary, backup)?;
    let read_only = options.read_only || open.read_only;
    let watermark = options
        .watermark
        .clone()
        .or_else(|| default_watermark(primary, backup));
    // Guards in several processes share the pair through a lock beside the watermark.
    let lock = match (&options.lock, &watermark) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(mark)) => {
            let mut path = mark.clone().into_os_string();
            path.push(".lock");
            Some(path.into())
        }
        (None, None) => None,
    };
    // A reader beside a writing guard (it holds the pair's presence file) treats what one
    // copy holds above the other's end as a group in flight, not a difference.
    let writer_beside = read_only
        && lock
            .as_deref()
            .is_some_and(|lock| read_only::flock_held(&synclog_core::guarded::presence_path(lock)));
    let watermark = if read_only { None } else { watermark };
    let options = GuardedOptions {
        read_only,
        writer_beside: options.writer_beside || writer_beside,
        // A reader never takes the lock (the leader of a read-only guard has none), but
        // reads the group a writer announces in it (`copies_differ_at_open`).
        lock,
        lock_wait: open.lock_wait,
        watermark,
        ..options
    };
    let b = open_url_plain(backup, open).await;
    let p = open_url_plain(primary, open).await;
    // A reader reads the copy that exists; only a writer needs both.
    let absent = |e: &Error| options.read_only && e.kind() == synclog_core::ErrorKind::NotFound;
    let (p, b) = match (p, b) {
        (Ok(p), Ok(b)) => (p, b),
        (Err(e), Ok(b)) if damaged_storage(&e) || absent(&e) => (stand_in("primary", primary, e), b),
        (Ok(p), Err(e)) if damaged_storage(&e) || absent(&e) => (p, stand_in("backup", backup, e)),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    Guarded::open(p, b, options).await
}

/// Where a pair keeps its watermark ([`GuardedOptions::watermark`]) unless told: beside
/// the primary's real file (`<file>.guard`, symbolic links and `..` resolved), or the
/// backup's when the primary is not a file (PostgreSQL, memory). A pair with no file
/// compares every record at open. A hard link to the primary is another name, hence
/// another watermark and lock: SQLite does not support hard-linked databases either (its
/// journal is named after the path).
fn default_watermark(primary: &str, backup: &str) -> Option<PathBuf> {
    let file_of = |url: &str| match StoreUrl::parse(url).ok()? {
        StoreUrl::Sqlite(path) | StoreUrl::Json { path, .. } | StoreUrl::Sled(path) => Some(path),
        StoreUrl::Postgres(_) | StoreUrl::Memory(_) => None,
    };
    let mut path = real_path(file_of(primary).or_else(|| file_of(backup))?).into_os_string();
    path.push(".guard");
    Some(path.into())
}

/// `path` made absolute, symbolic links and `..` resolved (those of its deepest existing
/// ancestor, if it does not exist yet: see `paths::canonical`), so every spelling of one
/// store meets the same watermark and lock; as given when that fails.
fn real_path(path: PathBuf) -> PathBuf {
    paths::canonical(&path).unwrap_or(path)
}

/// Whether an open failed because the storage itself is damaged or failing, so that the
/// other copy of a pair can carry on.
fn damaged_storage(e: &Error) -> bool {
    matches!(
        e.kind(),
        synclog_core::ErrorKind::Corrupt | synclog_core::ErrorKind::Io | synclog_core::ErrorKind::Backend
    )
}

fn stand_in(copy: &str, url: &str, error: Error) -> Arc<dyn LogStore> {
    let url = redact_url(url);
    tracing::warn!(
        target: synclog_core::guarded::TARGET,
        side = copy,
        copy = %url,
        %error,
        "this copy cannot be opened; the pair goes on with the other copy alone (`synclog check --repair` rebuilds it)"
    );
    Arc::new(synclog_core::guarded::Unavailable::new(url, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_url_may_ask_for_rotation_in_mib() {
        assert_eq!(
            StoreUrl::parse("json://data/b.jsonl?rotate_mb=64").unwrap(),
            StoreUrl::Json {
                path: PathBuf::from("data/b.jsonl"),
                rotate_after_bytes: Some(64 << 20),
            }
        );
        assert_eq!(
            StoreUrl::parse("json:///var/b.jsonl").unwrap(),
            StoreUrl::Json {
                path: PathBuf::from("/var/b.jsonl"),
                rotate_after_bytes: None,
            }
        );
        for bad in [
            "json://b.jsonl?rotate_mb=0",
            "json://b.jsonl?rotate_mb=x",
            "json://?rotate_mb=5",
        ] {
            let err = StoreUrl::parse(bad).unwrap_err();
            assert_eq!(err.kind(), synclog_core::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
