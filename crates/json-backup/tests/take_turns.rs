//! Cron-style callers: several processes appending to one file take turns on its lock.

use synclog_core::LogStoreExt;
use synclog_core::{Durability, LogStore, NewLog, Status, VerifyOptions};
use synclog_json::JsonStore;

const PER_CHILD: u64 = 40;

#[tokio::test]
#[ignore = "child process entry point of processes_appending_to_one_file_take_turns"]
async fn child_appends_then_exits() {
    let Ok(path) = std::env::var("SYNCLOG_CHILD_JSONL") else {
        return;
    };
    let store = JsonStore::open(&path).unwrap();
    for i in 0..PER_CHILD {
        let log = NewLog::new(format!("cron-{}", std::process::id()), Status::Succeeded).counts(i, i, 0);
        store.commit(vec![log], Durability::PowerLoss).await.unwrap();
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn processes_appending_to_one_file_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cron.jsonl");
    synclog_conformance::child::run_children("child_appends_then_exits", 3, "SYNCLOG_CHILD_JSONL", &path);
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(store.open_report().records, 3 * PER_CHILD);
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, 3 * PER_CHILD);
    assert_eq!(
        store.last_id().await.unwrap().map(|i| i.get()),
        Some(3 * PER_CHILD)
    );
}
