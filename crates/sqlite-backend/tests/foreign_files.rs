//! What the SQLite engine does with a path that is not its own: another application's
//! database, a file that is not a database, something that is not a regular file.
//! Each is refused, and left exactly as it was.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use synclog_core::ErrorKind;
use synclog_sqlite::{SqliteStore, APPLICATION_ID};

/// The files SQLite may create next to a database.
fn siblings(path: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", path.display())))
        .filter(|p| p.exists())
        .collect()
}

/// Creates another application's database in rollback-journal mode (SQLite's default).
fn foreign_db(path: &Path, setup: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(setup).unwrap();
    conn.close().unwrap();
    assert!(siblings(path).is_empty());
}

fn journal_mode(path: &Path) -> String {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap()
}

fn refused_untouched(path: &Path, kind: ErrorKind) {
    let before = std::fs::read(path).unwrap();
    let err = SqliteStore::open(path).unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(std::fs::read(path).unwrap(), before, "the file's bytes changed");
    assert_eq!(
        siblings(path),
        Vec::<PathBuf>::new(),
        "files were left next to it"
    );
}

#[test]
fn another_applications_database_is_refused_with_its_bytes_and_journal_mode_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    foreign_db(
        &path,
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('a');",
    );
    assert_eq!(journal_mode(&path), "delete");
    refused_untouched(&path, ErrorKind::InvalidInput);
    assert_eq!(journal_mode(&path), "delete");
}

#[test]
fn another_applications_database_with_a_user_version_is_refused_not_taken_for_a_newer_synclog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    foreign_db(&path, "CREATE TABLE t(x); PRAGMA user_version = 7;");
    refused_untouched(&path, ErrorKind::InvalidInput);
}

#[test]
fn a_database_with_another_application_id_is_refused_even_without_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    foreign_db(&path, "PRAGMA application_id = 1234; PRAGMA user_version = 1;");
    refused_untouched(&path, ErrorKind::InvalidInput);
}

#[test]
fn another_applications_wal_database_is_refused_and_nothing_is_left_next_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    foreign_db(&path, "PRAGMA journal_mode=WAL; CREATE TABLE users(id INTEGER);");
    refused_untouched(&path, ErrorKind::InvalidInput);
    assert_eq!(journal_mode(&path), "wal");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(20)).unwrap();
    refused_untouched(&path, ErrorKind::Corrupt);
}

#[tokio::test]
async fn an_empty_database_made_by_another_tool_is_set_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    foreign_db(&path, "PRAGMA user_version = 0;");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.pragmas().await.unwrap().user_version,
        synclog_sqlite::SCHEMA_VERSION
    );
    synclog_core::LogStore::close(&store).await.unwrap();
}

#[tokio::test]
async fn a_synclog_database_made_before_the_application_id_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let store = SqliteStore::open(&path).unwrap();
    synclog_core::LogStore::close(&store).await.unwrap();
    let conn = Connection::open(&path).unwrap();
    let id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
    assert_eq!(id, APPLICATION_ID);
    conn.pragma_update(None, "application_id", 0).unwrap();
    // --- step: the same file in rollback mode too (someone ran `PRAGMA journal_mode=delete`)
    conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.close().unwrap();
    let store = SqliteStore::open(&path).unwrap();
    synclog_core::LogStore::close(&store).await.unwrap();
}

#[test]
fn a_directory_is_refused_and_nothing_is_created_next_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a-dir.db");
    std::fs::create_dir(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(siblings(&path).is_empty());
}

#[test]
fn a_fifo_is_refused_without_blocking_and_nothing_is_created_next_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipe.db");
    let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success());
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(siblings(&path).is_empty());
}

#[test]
fn a_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock.db");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(siblings(&path).is_empty());
}

#[test]
fn a_device_is_refused_and_nothing_is_created_next_to_it() {
    let path = Path::new("/dev/null");
    let before = siblings(path);
    let err = SqliteStore::open(path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(siblings(path), before);
}

/// Leaves at `to` what a crash in the middle of a rollback-journal write transaction
/// leaves: the database file with some of the transaction's pages written (the cache
/// spilled) and its hot journal, with no process holding a lock. `from` holds what was
/// committed before (`setup`, possibly nothing).
fn crashed_mid_transaction(dir: &Path, setup: &str, to: &Path) {
    let from = dir.join("live.db");
    if !setup.is_empty() {
        foreign_db(&from, setup);
    } else {
        std::fs::write(&from, b"").unwrap();
    }
    let conn = Connection::open(&from).unwrap();
    conn.execute_batch("PRAGMA cache_size = 1; BEGIN IMMEDIATE; CREATE TABLE spill(x);")
        .unwrap();
    for _ in 0..200 {
        conn.execute("INSERT INTO spill VALUES (randomblob(1000))", [])
            .unwrap();
    }
    // The transaction is open: copying now is what a power cut or SIGKILL would leave.
    let journal = PathBuf::from(format!("{}-journal", from.display()));
    assert!(journal.exists(), "the transaction has a rollback journal");
    std::fs::copy(&from, to).unwrap();
    std::fs::copy(&journal, format!("{}-journal", to.display())).unwrap();
    conn.execute_batch("ROLLBACK").unwrap();
    conn.close().unwrap();
    assert!(
        std::fs::metadata(to).unwrap().len() > 0,
        "the spilled pages reached the file"
    );
}

#[tokio::test]
async fn a_database_whose_creation_was_cut_off_with_a_hot_journal_opens() {
    use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    crashed_mid_transaction(dir.path(), "", &path);
    let store = SqliteStore::open(&path).unwrap();
    let rec = store
        .append(NewLog::new("after-crash", Status::Succeeded))
        .await
        .unwrap();
    assert_eq!(rec.id.get(), 1);
    store.close().await.unwrap();
    assert_eq!(journal_mode(&path), "wal");
}

#[tokio::test]
async fn a_creation_cut_off_after_its_first_page_was_written_opens() {
    use synclog_core::{LogStore, LogStoreExt, NewLog, Status};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    // One committed page holding an empty schema, as SQLite leaves a new file before it
    // switches it to WAL; then a transaction on it cut off.
    crashed_mid_transaction(
        dir.path(),
        "PRAGMA user_version = 7; PRAGMA user_version = 0;",
        &path,
    );
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store
            .append(NewLog::new("after-crash", Status::Succeeded))
            .await
            .unwrap()
            .id
            .get(),
        1
    );
    store.close().await.unwrap();
}

#[test]
fn a_cut_off_creation_is_reported_not_created_by_a_read_only_open_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    crashed_mid_transaction(dir.path(), "", &path);
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open_read_only(&path, std::time::Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a read-only open changed the file"
    );
    assert!(PathBuf::from(format!("{}-journal", path.display())).exists());
}

#[test]
fn another_applications_database_with_a_hot_journal_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.db");
    crashed_mid_transaction(
        dir.path(),
        "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);",
        &path,
    );
    let journal = PathBuf::from(format!("{}-journal", path.display()));
    let (db_before, journal_before) = (std::fs::read(&path).unwrap(), std::fs::read(&journal).unwrap());
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("hot journal"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        db_before,
        "the database's bytes changed"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        journal_before,
        "its journal changed"
    );
}
