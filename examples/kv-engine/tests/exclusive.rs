//! KvBackend's rule: while one handle has the store open, no other can write to it.
use synclog_core::{Durability, LogStore, LogStoreExt, NewLog, Status};

#[tokio::test]
async fn a_second_open_fails_while_the_first_is_open_and_succeeds_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.kv");
    let first = synclog_example_kv_engine::open(&path).unwrap();
    let rec = first
        .append_with(NewLog::new("crm", Status::Succeeded), Durability::PowerLoss)
        .await
        .unwrap();
    assert!(
        synclog_example_kv_engine::open(&path).is_err(),
        "a second handle opened beside the first"
    );
    first.close().await.unwrap();
    let second = synclog_example_kv_engine::open(&path).unwrap();
    assert_eq!(second.get(rec.id).await.unwrap(), Some(rec));
    second.close().await.unwrap();
}
