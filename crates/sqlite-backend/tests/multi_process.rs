//! Two OS processes appending to one database file at once lose and duplicate nothing.
//!
//! The test re-executes this test binary; the child runs `child_appends` (ignored in
//! normal runs) with the database path in `SYNCLOG_CHILD_DB`.

use std::collections::HashMap;
use synclog_core::LogStoreExt;

use synclog_core::{Durability, LogStore, NewLog, Scan, Status, VerifyOptions};
use synclog_sqlite::SqliteStore;

const PER_CHILD: u64 = 300;

#[tokio::test]
#[ignore = "child process entry point of two_processes_append_to_one_file_without_loss_or_duplicates"]
async fn child_appends() {
    let Ok(path) = std::env::var("SYNCLOG_CHILD_DB") else {
        return;
    };
    let store = SqliteStore::open(&path).unwrap();
    let job = format!("child-{}", std::process::id());
    for i in 0..PER_CHILD {
        let log = NewLog::new(job.clone(), Status::Succeeded).counts(i, i, 0);
        store.commit(vec![log], Durability::PowerLoss).await.unwrap();
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn two_processes_append_to_one_file_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    synclog_conformance::child::run_children("child_appends", 2, "SYNCLOG_CHILD_DB", &path);
    let store = SqliteStore::open(&path).unwrap();
    let mut all = Vec::new();
    let mut scan = Scan::all(1000);
    loop {
        let page = store.scan(&scan).await.unwrap();
        let Some(last) = page.last() else { break };
        scan.after = Some(last.id);
        all.extend(page);
    }
    let ids: Vec<u64> = all.iter().map(|r| r.id.get()).collect();
    assert_eq!(
        ids,
        (1..=2 * PER_CHILD).collect::<Vec<_>>(),
        "ids are dense, unique, in order"
    );
    let mut per_job: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in &all {
        per_job.entry(r.job.as_str()).or_default().push(r.items_seen);
    }
    assert_eq!(per_job.len(), 2);
    for seen in per_job.values() {
        assert_eq!(
            seen,
            &(0..PER_CHILD).collect::<Vec<_>>(),
            "each child's logs, in its order"
        );
    }
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
}
