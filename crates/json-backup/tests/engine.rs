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
    assert_eq!(lines[0], serde_json::json!({"synclog": "jsonl", "version": 2}));
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
    let [tail] = &report.torn_tails[..] else {
        panic!("the uncommitted group is reported once: {report:?}")
    };
    let aside = std::fs::read_to_string(&tail.moved_to).unwrap();
    assert_eq!(
        aside.lines().count(),
        4,
        "three whole lines and the torn one, kept aside"
    );
    assert_eq!(synclog_conformance::cases::everything(&store).await, first);
    let next = store.append(log(99)).await.unwrap();
    assert_eq!(
        next.id.get(),
        8,
        "ids 3..=7 were handed out (the high-water mark says so): never again"
    );
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
    let [tail] = &report.torn_tails[..] else {
        panic!("the torn tail is reported once: {report:?}")
    };
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
async fn two_writers_on_one_file_take_turns_per_group_and_never_share_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let first = JsonStore::open(&path).unwrap();
    let second = JsonStore::open(&path).unwrap();
    let mut ids = Vec::new();
    for n in 0..20u64 {
        let (a, b) = tokio::join!(
            first.append(NewLog::new("a", Status::Succeeded).counts(n, n, 0)),
            second.append(NewLog::new("b", Status::Succeeded).counts(n, n, 0))
        );
        ids.push(a.unwrap().id.get());
        ids.push(b.unwrap().id.get());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=40).collect::<Vec<u64>>(), "unique and dense");
    // The lock file names the last holder, for another waiter's error message.
    let holder = std::fs::read_to_string(dir.path().join("logs.jsonl.lock")).unwrap();
    assert_eq!(holder, std::process::id().to_string());
    // Each sees the other's records: reads catch up with what the other appended.
    assert_eq!(first.last_id().await.unwrap(), LogId::new(40));
    let all = synclog_conformance::cases::everything(&second).await;
    assert_eq!(all.len(), 40);
    assert!(first.verify(VerifyOptions::default()).await.unwrap().is_clean());
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test]
async fn a_writer_whose_lock_stays_held_waits_then_gets_locked_naming_the_file_and_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let options = JsonOptions {
        lock_wait: Duration::from_millis(200),
        ..JsonOptions::default()
    };
    let store = JsonStore::open_with(&path, options, Arc::new(RealFs)).unwrap();
    // Another process holds the store's lock (and says who it is) for a long time.
    let holder = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("logs.jsonl.lock"))
        .unwrap();
    holder.lock().unwrap();
    std::fs::write(dir.path().join("logs.jsonl.lock"), "4242").unwrap();
    let started = std::time::Instant::now();
    let err = store.append(NewLog::new("x", Status::Started)).await.unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited before giving up"
    );
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("logs.jsonl") && text.contains("pid 4242"), "{text}");
    holder.unlock().unwrap();
    let rec = store.append(NewLog::new("x", Status::Started)).await.unwrap();
    assert_eq!(rec.id.get(), 1, "the failed append took no id");
    store.close().await.unwrap();
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
    let [rejected] = &report.rejected_to[..] else {
        panic!("the skipped line is saved once: {report:?}")
    };
    assert_eq!(std::fs::read_to_string(rejected).unwrap(), "garbage\n");
    assert_eq!(report.files_rewritten, 1);
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

/// The ids of the records in the JSON-lines file at `path` (header and commit lines skipped).
fn ids_in(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .filter_map(|v| v["id"].as_u64())
        .collect()
}

#[tokio::test]
async fn rotation_seals_segments_and_every_record_stays_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let store = JsonStore::open(&path).unwrap();
    let mut written = Vec::new();
    written.extend(
        store
            .commit((1..=10).map(log).collect(), Durability::PowerLoss)
            .await
            .unwrap(),
    );
    let first = store.rotate().await.unwrap().expect("ten records to seal");
    assert_eq!(first.records, 10);
    assert_eq!(first.sealed, dir.path().join("logs.jsonl.seg-000001"));
    written.extend(
        store
            .commit((11..=15).map(log).collect(), Durability::PowerLoss)
            .await
            .unwrap(),
    );
    let second = store.rotate().await.unwrap().expect("five records to seal");
    assert_eq!(second.records, 5);
    assert_eq!(
        store.rotate().await.unwrap(),
        None,
        "an empty active file is not sealed"
    );
    written.extend(
        store
            .commit((16..=18).map(log).collect(), Durability::PowerLoss)
            .await
            .unwrap(),
    );

    let seg = |n: u32| dir.path().join(format!("logs.jsonl.seg-{n:06}"));
    assert_eq!(store.files(), vec![seg(1), seg(2), path.clone()]);
    assert_eq!(ids_in(&seg(1)), (1..=10).collect::<Vec<_>>());
    assert_eq!(ids_in(&seg(2)), (11..=15).collect::<Vec<_>>());
    assert_eq!(ids_in(&path), vec![16, 17, 18]);
    assert_eq!(synclog_conformance::cases::everything(&store).await, written);
    assert_eq!(store.get_required(written[3].id).await.unwrap(), written[3]);
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, 18);
    store.close().await.unwrap();
    assert_eq!(
        synclog_json::store_files(&path).unwrap(),
        vec![seg(1), seg(2), path.clone()],
        "the same list from the files on disk, for a closed store"
    );

    let store = JsonStore::open(&path).unwrap();
    assert_eq!(
        (store.open_report().records, store.open_report().segments),
        (18, 2)
    );
    assert_eq!(synclog_conformance::cases::everything(&store).await, written);
    assert_eq!(
        store.append(log(19)).await.unwrap().id.get(),
        19,
        "ids go on after the segments"
    );
    // Restored (imported) old ids land in the active file and are found there.
    let again = store
        .import(written[..2].to_vec(), Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(
        (again.inserted, again.already_present),
        (0, 2),
        "sealed records count as present"
    );
}

#[tokio::test]
async fn automatic_rotation_bounds_the_active_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let options = JsonOptions {
        rotate_after_bytes: Some(4096),
        ..JsonOptions::default()
    };
    let store = JsonStore::open_with(&path, options, Arc::new(RealFs)).unwrap();
    let mut written = Vec::new();
    for n in 1..=100 {
        written.push(store.append(log(n)).await.unwrap());
    }
    let files = store.files();
    assert!(files.len() > 4, "{files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        // A file passes the limit by at most one group (here one record and its commit line).
        assert!(len < 4096 + 512, "{} holds {len} bytes", f.display());
    }
    let mut ids: Vec<u64> = files.iter().flat_map(|f| ids_in(f)).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=100).collect::<Vec<_>>(),
        "each record in exactly one file"
    );
    assert_eq!(synclog_conformance::cases::everything(&store).await, written);
}

#[tokio::test]
async fn a_rotation_cut_off_between_its_renames_is_finished_at_open() {
    use synclog_json::sim::{SimFs, Tear};
    let fs = SimFs::new();
    let path = std::path::PathBuf::from("/sim/logs.jsonl");
    let open = |fs: &SimFs| JsonStore::open_with(&path, JsonOptions::default(), Arc::new(fs.clone()));
    let store = open(&fs).unwrap();
    let written = store
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    // Rotation's operations: sync the active file (1: other processes may have written
    // it at a weaker level), create, write, sync and name the next file (4), seal (1),
    // then rename the next file into place, which the power cut stops.
    fs.cut_power_after(6);
    let err = store.rotate().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    let _ = store.close().await;
    fs.crash(Tear::DropUnsynced);
    assert!(
        fs.contents(&path).is_none(),
        "the active file was sealed, its successor not yet in place"
    );

    let store = open(&fs).unwrap();
    let report = store.open_report().clone();
    assert!(report.finished_rotation && !report.created, "{report:?}");
    assert_eq!((report.records, report.segments), (3, 1));
    assert_eq!(synclog_conformance::cases::everything(&store).await, written);
    assert_eq!(store.append(log(4)).await.unwrap().id.get(), 4);
    assert!(fs
        .contents(std::path::Path::new("/sim/logs.jsonl.next"))
        .is_none());
}

#[tokio::test]
async fn compaction_rewrites_only_the_segments_that_hold_skipped_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let store = JsonStore::open(&path).unwrap();
    store
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.rotate().await.unwrap();
    store
        .commit((4..=6).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.rotate().await.unwrap();
    store
        .commit((7..=8).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    // Damage the first segment's second record.
    let seg1 = dir.path().join("logs.jsonl.seg-000001");
    let text = std::fs::read_to_string(&seg1).unwrap();
    let damaged = text.replacen("\"items_seen\":2", "\"items_seen\":9", 1);
    assert_ne!(damaged, text);
    std::fs::write(&seg1, damaged).unwrap();
    let seg2_before = std::fs::read(dir.path().join("logs.jsonl.seg-000002")).unwrap();

    let store = JsonStore::open(&path).unwrap();
    let bad = &store.open_report().corrupt_lines;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0].file.clone(), bad[0].line), (seg1.clone(), 3));
    let report = store.compact().await.unwrap();
    assert_eq!((report.records, report.files_rewritten), (7, 2), "{report:?}");
    assert_eq!(report.rejected_to.len(), 1);
    let saved = report.rejected_to[0].display().to_string();
    assert!(
        saved.starts_with(&format!("{}.rejected-", seg1.display())),
        "{saved}"
    );
    assert_eq!(ids_in(&seg1), vec![1, 3]);
    assert_eq!(
        std::fs::read(dir.path().join("logs.jsonl.seg-000002")).unwrap(),
        seg2_before,
        "a clean segment is left alone"
    );
    let verified = store.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(verified.checked, 7);
    assert!(verified.corrupt.is_empty(), "{verified:?}");
    assert_eq!(
        verified.missing,
        vec![synclog_core::IdRange::single(LogId::new(2).unwrap())],
        "the damaged log is reported missing"
    );
}

#[tokio::test]
async fn a_rotation_that_failed_between_its_renames_is_finished_by_the_next_write() {
    use synclog_json::sim::SimFs;
    let fs = SimFs::new();
    let path = std::path::PathBuf::from("/sim/logs.jsonl");
    let store = JsonStore::open_with(&path, JsonOptions::default(), Arc::new(fs.clone())).unwrap();
    let mut written = store
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    // Sync the active file (1), create, write, sync and name the next file (4), seal (1);
    // the rename into place fails.
    fs.fail_once_after(6);
    let err = store.rotate().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        fs.contents(&path).is_none(),
        "sealed, the next file not yet in place"
    );
    written.push(store.append(log(4)).await.unwrap());
    assert_eq!(written[3].id.get(), 4);
    assert_eq!(
        store.files(),
        vec![
            std::path::PathBuf::from("/sim/logs.jsonl.seg-000001"),
            path.clone()
        ]
    );
    assert_eq!(synclog_conformance::cases::everything(&store).await, written);
    assert!(store.verify(VerifyOptions::default()).await.unwrap().is_clean());
    store.close().await.unwrap();
    let store = JsonStore::open_with(&path, JsonOptions::default(), Arc::new(fs.clone())).unwrap();
    assert_eq!(synclog_conformance::cases::everything(&store).await, written);
}

#[tokio::test]
async fn a_repeated_record_keeps_its_first_copy_and_the_repeat_is_reported_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let recs = filled(&path, 3).await;
    // Append a second, intact copy of log 2 as a committed group of its own.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let copy = lines[2];
    assert!(copy.starts_with("{\"id\":2,"), "{copy}");
    let more = format!("{text}{copy}\n{{\"synclog_commit\":1}}\n");
    std::fs::write(&path, more).unwrap();

    let store = JsonStore::open(&path).unwrap();
    let bad = store.open_report().corrupt_lines.clone();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0].file.clone(), bad[0].line), (path.clone(), 6), "{bad:?}");
    assert!(bad[0].detail.contains("log 2 appears again"), "{bad:?}");
    assert_eq!(store.open_report().records, 3);
    assert_eq!(
        store.get_required(recs[1].id).await.unwrap(),
        recs[1],
        "the first copy"
    );
}

/// A copy imports its pages without a sync each and syncs once at the end; when it
/// returns, a power cut loses nothing it copied.
#[tokio::test]
async fn a_copy_syncs_once_and_every_copied_record_survives_a_power_cut() {
    use synclog_json::sim::{SimFs, Tear};
    let source = synclog_core::memory::MemoryStore::new();
    let written = source
        .commit((1..=250).map(log).collect(), Durability::Buffered)
        .await
        .unwrap();
    let fs = SimFs::new();
    let path = std::path::PathBuf::from("/sim/copy.jsonl");
    let open = |fs: &SimFs| JsonStore::open_with(&path, JsonOptions::default(), Arc::new(fs.clone()));
    let target = open(&fs).unwrap();
    let syncs_before = fs.syncs();
    let report = source.copy_to(&target, 100, Durability::PowerLoss).await.unwrap();
    assert_eq!(report.inserted, 250);
    assert_eq!(fs.syncs() - syncs_before, 1, "three pages, one sync");
    fs.crash(Tear::DropUnsynced);
    // The old handle's writer is gone with the crash; let it finish (its close takes the
    // store's locks, which would meet the new opener's) before the store is opened again.
    let _ = target.close().await;
    drop(target);
    let target = open(&fs).unwrap();
    assert_eq!(synclog_conformance::cases::everything(&target).await, written);
}

/// A sealed segment cut in the middle behind the store's back: the open moves its
/// remainder aside (`…seg-000001.torn-…`), and `verify` says so while that file holds
/// whole records, as it does for the active file's (it stayed clean before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_sealed_segment_is_reported_by_verify_while_its_records_sit_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    let store = JsonStore::open(&path).unwrap();
    store
        .commit((1..=10).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.rotate().await.unwrap().expect("ten records to seal");
    store
        .commit((11..=12).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    let segment = dir.path().join("logs.jsonl.seg-000001");
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() / 2]).unwrap();

    let store = JsonStore::open(&path).unwrap();
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(!report.is_clean(), "{report:?}");
    assert!(
        report
            .engine_problems
            .iter()
            .any(|p| p.contains("seg-000001.torn-") && p.contains("whole record")),
        "{report:?}"
    );
    store.close().await.unwrap();
}
