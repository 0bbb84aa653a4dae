//! Line endings a tool may change (a Windows checkout, `unix2dos`) are read, not taken
//! for damage: the store keeps its records, verifies clean and goes on counting ids.

use synclog_core::{Durability, LogRecord, LogStore, LogStoreExt, NewLog, Status, VerifyOptions};
use synclog_json::JsonStore;

fn log(n: u64) -> NewLog {
    NewLog::new("billing", Status::Succeeded)
        .counts(n, n, 0)
        .message(format!("run {n}"))
        .attr("n", n)
}

async fn filled(path: &std::path::Path, groups: &[u64]) -> Vec<LogRecord> {
    let store = JsonStore::open(path).unwrap();
    let mut all = Vec::new();
    let mut n = 0;
    for &size in groups {
        let batch = (n..n + size).map(log).collect();
        n += size;
        all.extend(store.commit(batch, Durability::PowerLoss).await.unwrap());
    }
    store.close().await.unwrap();
    all
}

/// Every `\n` of the file at `path` becomes `\r\n` (what unix2dos does).
fn unix2dos(path: &std::path::Path) {
    let text = std::fs::read(path).unwrap();
    let mut out = Vec::with_capacity(text.len() * 2);
    for b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    std::fs::write(path, out).unwrap();
}

#[tokio::test]
async fn a_store_converted_to_crlf_keeps_its_records_verifies_clean_and_counts_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    // --- step: 7 records in three groups, then every line ending turned into CRLF.
    let recs = filled(&path, &[1, 4, 2]).await;
    unix2dos(&path);

    // --- step: reopen: every record is there, nothing moved aside.
    let store = JsonStore::open(&path).unwrap();
    let report = store.open_report().clone();
    assert_eq!(report.records, 7, "{report:?}");
    assert!(report.torn_tails.is_empty(), "{report:?}");
    assert!(report.corrupt_lines.is_empty(), "{report:?}");
    assert_eq!(synclog_conformance::cases::everything(&store).await, recs);
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.checked, 7);

    // --- step: the next append gets id 8, and the file, now mixing CRLF and LF, reopens.
    let next = store.append(log(100)).await.unwrap();
    assert_eq!(next.id.get(), 8);
    store.close().await.unwrap();
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(store.open_report().records, 8);
    assert!(store.open_report().torn_tails.is_empty());
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
    assert_eq!(store.append(log(101)).await.unwrap().id.get(), 9);

    // --- step: compaction keeps every record and saves nothing aside (no line was bad).
    let compacted = store.compact().await.unwrap();
    assert_eq!(compacted.records, 9);
    assert_eq!(compacted.rejected_bytes, 0, "{compacted:?}");
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
    store.close().await.unwrap();
}
