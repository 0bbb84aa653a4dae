//! The JSON-lines engine's own behaviour: opening after damage, locking, compaction.

use std::sync::Arc;
use std::time::Duration;

use synclog_core::{
    Durability, ErrorKind, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Status, VerifyOptions,
};
use synclog_json::fs::RealFs;
use synclog_json::{JsonOptions, JsonStore};

fn log(n: u64) -> NewLog {
    NewLog::new("billing", Status::Succeeded)
        .counts(n, n, 0)
        .attr("n", n)
}

async fn filled(path: &std::path::Path, n: u64) -> Vec<LogRecord> {
    let store = JsonStore::open(path).unwrap();
    let recs = store
        .commit((1..=n).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    recs
}

#[tokio::test]
async fn every_line_is_json_and_the_first_is_a_versioned_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let recs = filled(&path, 3).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0], serde_json::json!({"synclog": "jsonl", "version": 1}));
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1]["id"], 1);
    assert_eq!(lines[1]["checksum"], recs[0].checksum.to_string());
    assert_eq!(lines[3]["attrs"]["n"], 3);
    assert_eq!(
        lines[4],
        serde_json::json!({"synclog_commit": 3}),
        "the group's commit line"
    );
}

#[tokio::test]
async fn a_batch_cut_short_by_a_crash_is_moved_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let first = filled(&path, 2).await;
    let store = JsonStore::open(&path).unwrap();
    store
        .commit((10..15).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    // The crash came after three of the batch's five lines: no commit line, no newline.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..7].join("\n") + "\n" + &lines[7][..10];
    std::fs::write(&path, &cut).unwrap();

    let store = JsonStore::open(&path).unwrap();
    let report = store.open_report().clone();
    assert_eq!(report.records, 2, "none of the half-written batch counts");
    let tail = report.torn_tail.expect("the uncommitted group is reported");
    let aside = std::fs::read_to_string(&tail.moved_to).unwrap();
    assert_eq!(
        aside.lines().count(),
        4,
        "three whole lines and the torn one, kept aside"
    );
    assert_eq!(synclog_conformance::cases::everything(&store).await, first);
    let next = store.append(log(99)).await.unwrap();
    assert_eq!(next.id.get(), 3);
}

#[tokio::test]
async fn torn_last_line_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let recs = filled(&path, 5).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let torn = br#"{"id":6,"recorded_at":"2026-11-2"#;
    bytes.extend_from_slice(torn);
    std::fs::write(&path, &bytes).unwrap();

    let store = JsonStore::open(&path).unwrap();
    let report = store.open_report().clone();
    let tail = report.torn_tail.expect("torn tail reported");
    assert_eq!(tail.bytes, torn.len() as u64);
    assert_eq!(
        std::fs::read(&tail.moved_to).unwrap(),
        torn,
        "moved aside, not deleted"
    );
    assert_eq!(report.records, 5);
    assert_eq!(store.last_id().await.unwrap(), Some(recs[4].id));
    let next = store.append(log(6)).await.unwrap();
    assert_eq!(next.id.get(), 6);
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
}

#[tokio::test]
async fn corrupt_middle_line_is_reported_with_its_number_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    filled(&path, 5).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[2] = lines[2].replace("billing", "billinG"); // log 2: checksum no longer matches
    lines[3] = "{not json".into(); // log 3: not JSON at all
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let store = JsonStore::open(&path).unwrap();
    let report = store.open_report();
    let bad: Vec<u64> = report.corrupt_lines.iter().map(|c| c.line).collect();
    assert_eq!(bad, vec![3, 4]);
    assert_eq!(report.records, 3);
    assert!(store.get(LogId::new(2).unwrap()).await.unwrap().is_none());
    assert!(store.get(LogId::new(4).unwrap()).await.unwrap().is_some());
    let verify = store.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(verify.corrupt.len(), 2);
}

#[tokio::test]
async fn a_second_writer_waits_then_gets_locked_naming_the_file_and_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let first = JsonStore::open(&path).unwrap();
    let options = JsonOptions {
        lock_wait: Duration::from_millis(200),
        ..JsonOptions::default()
    };
    let started = std::time::Instant::now();
    let err = JsonStore::open_with(&path, options.clone(), Arc::new(RealFs)).unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited before giving up"
    );
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("logs.jsonl") && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    first.close().await.unwrap();
    let second = JsonStore::open_with(&path, options, Arc::new(RealFs)).unwrap();
    second.close().await.unwrap();
}

#[tokio::test]
async fn compaction_orders_by_id_and_saves_skipped_lines_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let store = JsonStore::open(&path).unwrap();
    let recs = store
        .commit((1..=6).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    // Rebuild the file with log 2 after log 6 (as a later import would) and one bad line.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let shuffled = [
        lines[0],
        lines[1],
        lines[3],
        lines[4],
        "garbage",
        lines[5],
        lines[6],
        lines[2],
        "{\"synclog_commit\":7}",
    ];
    std::fs::write(&path, shuffled.join("\n") + "\n").unwrap();

    let store = JsonStore::open(&path).unwrap();
    assert_eq!(store.open_report().corrupt_lines.len(), 1);
    let report = store.compact().await.unwrap();
    assert_eq!(report.records, 6);
    let rejected = report.rejected_to.expect("skipped line saved");
    assert_eq!(std::fs::read_to_string(rejected).unwrap(), "garbage\n");
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_u64())
        .collect();
    assert_eq!(
        ids,
        vec![1, 2, 3, 4, 5, 6],
        "records in id order; commit lines carry no id"
    );
    assert!(text.ends_with("{\"synclog_commit\":6}\n"), "{text}");
    assert_eq!(store.get_required(recs[1].id).await.unwrap(), recs[1]);
    let next = store.append(log(7)).await.unwrap();
    assert_eq!(next.id.get(), 7);
    store.close().await.unwrap();
    let reopened = JsonStore::open(&path).unwrap();
    assert!(reopened.open_report().corrupt_lines.is_empty());
    assert!(reopened
        .verify(VerifyOptions::default())
        .await
        .unwrap()
        .is_clean());
}

#[tokio::test]
async fn a_file_that_is_not_a_synclog_backup_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.jsonl");
    std::fs::write(&path, "{\"hello\":1}\n").unwrap();
    assert_eq!(JsonStore::open(&path).unwrap_err().kind(), ErrorKind::Corrupt);
    std::fs::write(&path, "{\"synclog\":\"jsonl\",\"version\":9}\n").unwrap();
    assert_eq!(JsonStore::open(&path).unwrap_err().kind(), ErrorKind::Unsupported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_one_write_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(JsonStore::open(dir.path().join("logs.jsonl")).unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                for n in 0..10 {
                    s.append(log(i * 100 + n)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.group_stats();
    assert_eq!(stats.logs, 640);
    assert!(stats.groups < 320, "{stats:?}");
}
