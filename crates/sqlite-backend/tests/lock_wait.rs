//! The lock wait (`SqliteOptions::busy_timeout`) is a deadline for a whole operation:
//! every busy wait and retry inside one open or one append shares it.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use synclog_core::{ErrorKind, LogId, LogStoreExt, NewLog, Status};
use synclog_sqlite::{SqliteOptions, SqliteStore};

const WAIT: Duration = Duration::from_secs(1);

fn options() -> SqliteOptions {
    SqliteOptions {
        busy_timeout: WAIT,
        ..SqliteOptions::default()
    }
}

fn log() -> NewLog {
    NewLog::new("crm", Status::Succeeded)
}

/// Another connection to `path` that holds SQLite's write lock (`BEGIN IMMEDIATE`).
fn hold_write_lock(path: &Path) -> Connection {
    let holder = Connection::open(path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    holder
}

/// Releases `holder`'s lock after `after`, from another thread (another process's part).
fn release_later(holder: Connection, after: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        holder.execute_batch("ROLLBACK").unwrap();
    })
}

fn assert_retryable_within_the_wait(kind: ErrorKind, retryable: bool, elapsed: Duration) {
    assert!(
        matches!(kind, ErrorKind::Busy | ErrorKind::Locked),
        "kind {kind:?}"
    );
    assert!(retryable);
    // Generous: a behaviour (one deadline, not one per retry), not a benchmark.
    assert!(
        elapsed < WAIT * 2,
        "failed after {elapsed:?} with a wait of {WAIT:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_under_a_held_write_lock_fails_retryable_within_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let store = SqliteStore::open_with(&path, options()).unwrap();
    store.append(log()).await.unwrap();
    let holder = hold_write_lock(&path);

    let start = Instant::now();
    let err = store.append(log()).await.unwrap_err();
    assert_retryable_within_the_wait(err.kind(), err.is_retryable(), start.elapsed());

    drop(holder);
    assert_eq!(store.append(log()).await.unwrap().id, LogId::new(2).unwrap());
    // The retries bounded the busy handler by what was left; the next call gets the full wait.
    assert_eq!(store.pragmas().await.unwrap().busy_timeout_ms, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_succeeds_when_the_write_lock_is_released_within_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let store = SqliteStore::open_with(&path, options()).unwrap();
    let holder = release_later(hold_write_lock(&path), WAIT / 4);

    let rec = store.append(log()).await.unwrap();
    assert_eq!(rec.id, LogId::MIN);
    holder.join().unwrap();
}

#[test]
fn open_of_a_new_file_under_a_held_write_lock_fails_retryable_within_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    // Another process created the file a moment ago and is writing to it.
    let holder = hold_write_lock(&path);

    let start = Instant::now();
    let err = SqliteStore::open_with(&path, options()).unwrap_err();
    assert_retryable_within_the_wait(err.kind(), err.is_retryable(), start.elapsed());
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_of_a_new_file_succeeds_when_the_lock_is_released_within_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let holder = release_later(hold_write_lock(&path), WAIT / 4);

    let store = SqliteStore::open_with(&path, options()).unwrap();
    holder.join().unwrap();
    assert_eq!(store.append(log()).await.unwrap().id, LogId::MIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_longer_than_sqlite_can_count_is_capped_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        busy_timeout: Duration::MAX,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path().join("logs.db"), options).unwrap();
    assert_eq!(store.append(log()).await.unwrap().id, LogId::MIN);
    assert_eq!(
        store.pragmas().await.unwrap().busy_timeout_ms,
        i64::from(i32::MAX)
    );
}
