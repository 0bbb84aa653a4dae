//! sled admits one process (one handle) at a time, even for reading: a read-only open
//! beside a writer is refused, typed, at once.

use std::time::{Duration, Instant};
use synclog_core::LogStoreExt;

use synclog_core::{Durability, ErrorKind, LogId, LogStore, NewLog, Status};

fn log() -> NewLog {
    NewLog::new("billing", Status::Succeeded)
}

#[tokio::test]
async fn a_read_only_open_beside_a_writer_is_locked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let writer = synclog_sled::open(&path).unwrap();
    writer
        .commit(vec![log(), log()], Durability::PowerLoss)
        .await
        .unwrap();
    let started = Instant::now();
    let err = synclog_sled::open_read_only(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it waited {:?}",
        started.elapsed()
    );
    writer.close().await.unwrap();

    // --- step: with the writer gone it reads, and refuses writes
    let reader = synclog_sled::open_read_only(&path).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.last_id().await.unwrap(), LogId::new(2));
    let sample = reader.get(LogId::new(1).unwrap()).await.unwrap().unwrap();
    let kinds = [
        reader
            .commit(vec![log()], Durability::PowerLoss)
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
    ];
    for (i, r) in kinds.into_iter().enumerate() {
        assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::Unsupported), "write #{i}");
    }
    // Not even the backend itself writes through a read-only handle.
    let raw = synclog_core::kv::KvBackend::write(
        reader.backend(),
        vec![synclog_core::kv::KvOp::Delete(vec![0x01])],
        Durability::PowerLoss,
    );
    assert_eq!(raw.map_err(|e| e.kind()), Err(ErrorKind::Unsupported));
    reader.close().await.unwrap();
    let again = synclog_sled::open(&path).unwrap();
    assert_eq!(again.last_id().await.unwrap(), LogId::new(2));
    again.close().await.unwrap();
}

#[test]
fn a_read_only_open_of_a_missing_database_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = synclog_sled::open_read_only(dir.path().join("db")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
