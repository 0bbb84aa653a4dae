//! Compaction is the operator's answer to repeated and corrupt lines: identical repeats are
//! dropped, anything else is saved aside (never deleted), and `verify` is clean afterwards.

use synclog_core::LogStoreExt;
use synclog_core::{Durability, LogStore, NewLog, Status, VerifyOptions};
use synclog_json::JsonStore;

fn log(n: u64) -> NewLog {
    NewLog::new("billing", Status::Succeeded)
        .counts(n, n, 0)
        .attr("n", n)
}

#[tokio::test]
async fn compaction_drops_identical_repeats_saves_corrupt_lines_aside_and_verify_is_clean_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let store = JsonStore::open(&path).unwrap();
    store
        .commit((1..=5).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    // --- step: a group holding an identical copy of log 2 and a line that is not JSON.
    let text = std::fs::read_to_string(&path).unwrap();
    let copy_of_2 = text.lines().nth(2).unwrap().to_string();
    let garbage = "{\"id\":";
    std::fs::write(
        &path,
        format!("{text}{copy_of_2}\n{garbage}\n{{\"synclog_commit\":2}}\n"),
    )
    .unwrap();

    // --- step: inspect (no lock, no write) and open count one duplicate and one corrupt
    // line; verify is not clean.
    let before = std::fs::read(&path).unwrap();
    let inspected = synclog_json::inspect(&path).unwrap();
    assert_eq!(
        (inspected.duplicate_lines(), inspected.corrupt_line_count()),
        (1, 1)
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "inspect wrote nothing");
    let store = JsonStore::open(&path).unwrap();
    let inspected = synclog_json::inspect(&path).unwrap();
    assert_eq!(
        inspected.records, 5,
        "inspect reads a store another handle holds open"
    );
    let report = store.open_report().clone();
    assert_eq!(report.records, 5);
    assert_eq!(report.duplicate_lines(), 1, "{report:?}");
    assert_eq!(report.corrupt_line_count(), 1, "{report:?}");
    assert!(!store.verify(VerifyOptions::default()).await.unwrap().is_clean());

    // --- step: compaction drops the copy and saves the corrupt line aside.
    let compacted = store.compact().await.unwrap();
    assert_eq!(compacted.records, 5);
    assert_eq!(compacted.duplicates_dropped, 1, "{compacted:?}");
    assert_eq!(compacted.rejected_lines, 1, "{compacted:?}");
    let [saved] = &compacted.rejected_to[..] else {
        panic!("one rejected file: {compacted:?}")
    };
    assert_eq!(std::fs::read_to_string(saved).unwrap(), format!("{garbage}\n"));
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.checked, 5);
    store.close().await.unwrap();

    // --- step: reopened, nothing is skipped any more.
    let store = JsonStore::open(&path).unwrap();
    assert!(store.open_report().corrupt_lines.is_empty());
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
    store.close().await.unwrap();
}
