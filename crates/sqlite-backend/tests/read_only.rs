//! A read-only SQLite store: no writer connection, nothing created, reads beside a writer
//! that holds its write lock, writes refused.

use std::time::Duration;
use synclog_core::LogStoreExt;

use rusqlite::{Connection, TransactionBehavior};
use synclog_core::{CheckpointMode, Durability, ErrorKind, LogId, LogStore, NewLog, Status, VerifyOptions};
use synclog_sqlite::SqliteStore;

fn log(n: u64) -> NewLog {
    NewLog::new("billing", Status::Succeeded).counts(n, n, 0)
}

#[tokio::test]
async fn a_read_only_open_reads_while_a_writer_holds_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    // --- step: another connection holds the write lock, in the middle of a transaction
    let mut conn = Connection::open(&path).unwrap();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("DELETE FROM logs WHERE id = 3", []).unwrap();
    // --- step: a reader with no wait at all opens, reads and verifies what was committed
    let reader = SqliteStore::open_read_only(&path, Duration::ZERO).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.last_id().await.unwrap(), LogId::new(3));
    assert!(reader
        .verify(VerifyOptions { deep: true })
        .await
        .unwrap()
        .is_clean());
    // --- step: writes through it are refused, typed
    let sample = reader.get(LogId::new(1).unwrap()).await.unwrap().unwrap();
    let kinds = [
        reader
            .commit(vec![log(9)], Durability::PowerLoss)
            .await
            .map(|_| ()),
        reader
            .import(vec![sample.clone()], Durability::PowerLoss)
            .await
            .map(|_| ()),
        reader
            .repair(vec![sample], Durability::PowerLoss)
            .await
            .map(|_| ()),
        reader.sync(Durability::PowerLoss).await,
        reader.checkpoint(CheckpointMode::Passive).await.map(|_| ()),
    ];
    for (i, r) in kinds.into_iter().enumerate() {
        assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::Unsupported), "write #{i}");
    }
    reader.close().await.unwrap();
    tx.rollback().unwrap();
    // --- step: the writer was never in the way of the reader, nor the reader in the writer's
    store.commit(vec![log(4)], Durability::PowerLoss).await.unwrap();
    store.close().await.unwrap();
}

#[test]
fn a_read_only_open_of_a_missing_or_empty_file_is_not_found_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("logs.db");
    let err = SqliteStore::open_read_only(&missing, Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    std::fs::write(&missing, b"").unwrap();
    let err = SqliteStore::open_read_only(&missing, Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(std::fs::metadata(&missing).unwrap().len(), 0);
}

#[test]
fn a_read_only_open_refuses_another_applications_database_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t(x); PRAGMA application_id = 42;")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open_read_only(&path, Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
