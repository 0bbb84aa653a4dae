//! A read-only JSON store: no lock, nothing written, every committed group read, an
//! uncommitted end left alone.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use synclog_core::LogStoreExt;

use synclog_core::{Durability, ErrorKind, LogId, LogStore, NewLog, Status};
use synclog_json::fs::RealFs;
use synclog_json::{JsonOptions, JsonStore};

fn log(n: u64) -> NewLog {
    NewLog::new("billing", Status::Succeeded).counts(n, n, 0)
}

/// Every file in `dir` with its bytes.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_read_only_open_beside_a_writer_takes_no_lock_and_sees_every_committed_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let options = JsonOptions {
        lock_wait: Duration::ZERO,
        ..JsonOptions::default()
    };
    let writer = JsonStore::open_with(&path, options, Arc::new(RealFs)).unwrap();
    writer
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    // --- step: a reader opens while a writer holds both of the store's locks (as one does
    // in the middle of a group): it takes neither, so it does not wait
    let name_lock = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("logs.jsonl.lock"))
        .unwrap();
    name_lock.lock().unwrap();
    let file_lock = std::fs::File::open(&path).unwrap();
    file_lock.lock().unwrap();
    let reader = JsonStore::open_read_only(&path, Arc::new(RealFs)).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.last_id().await.unwrap(), LogId::new(3));
    drop((name_lock, file_lock));
    // --- step: the writer goes on, and its group is acknowledged while the reader is open
    writer.commit(vec![log(4)], Durability::PowerLoss).await.unwrap();
    reader.close().await.unwrap();
    // --- step: a reader opened after it sees it
    let again = JsonStore::open_read_only(&path, Arc::new(RealFs)).unwrap();
    assert_eq!(again.last_id().await.unwrap(), LogId::new(4));
    again.close().await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test]
async fn a_read_only_open_leaves_an_uncommitted_end_and_the_mark_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let store = JsonStore::open(&path).unwrap();
    let recs = store
        .commit((1..=2).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    // --- step: a group being written: a whole record line with no commit line, then a torn one
    let mut line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    line = line.replacen("\"id\":1", "\"id\":3", 1);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "{line}").unwrap();
    write!(f, "{{\"id\":4,\"rec").unwrap();
    drop(f);
    let before = files(dir.path());
    // --- step: the reader reads the committed groups only, and writes nothing
    let reader = JsonStore::open_read_only(&path, Arc::new(RealFs)).unwrap();
    assert_eq!(reader.last_id().await.unwrap(), LogId::new(2));
    assert_eq!(reader.get(recs[1].id).await.unwrap().as_ref(), Some(&recs[1]));
    assert!(reader.open_report().torn_tails.is_empty());
    // --- step: and refuses every write, writing nothing
    let kinds = [
        reader
            .commit(vec![log(9)], Durability::PowerLoss)
            .await
            .map(|_| ()),
        reader
            .import(vec![recs[0].clone()], Durability::PowerLoss)
            .await
            .map(|_| ()),
        reader
            .repair(vec![recs[0].clone()], Durability::PowerLoss)
            .await
            .map(|_| ()),
        reader.sync(Durability::PowerLoss).await,
        reader.rotate().await.map(|_| ()),
        reader.compact().await.map(|_| ()),
    ];
    for (i, r) in kinds.into_iter().enumerate() {
        assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::Unsupported), "write #{i}");
    }
    reader.close().await.unwrap();
    assert_eq!(files(dir.path()), before);
}

#[test]
fn a_read_only_open_of_a_missing_file_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = JsonStore::open_read_only(dir.path().join("logs.jsonl"), Arc::new(RealFs)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(files(dir.path()).is_empty());
}
