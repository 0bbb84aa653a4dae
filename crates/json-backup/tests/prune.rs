//! Pruning in the JSON-lines engine, beyond the conformance cases: space comes back
//! (emptied segments removed, files rewritten), the format marker says 3 only once a
//! store is pruned, a prune cut off after its marker is finished by the next writer's
//! open (and hidden from reads meanwhile), another process learns of a prune, and a
//! damaged markers file stops the open with nothing written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use synclog_core::retention::{Policy, PruneMarker};
use synclog_core::{
    Durability, ErrorKind, IdRange, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Scan, Status,
    VerifyOptions,
};
use synclog_json::fs::RealFs;
use synclog_json::{JsonOptions, JsonStore};

fn id(n: u64) -> LogId {
    LogId::new(n).unwrap()
}

fn marker(first: u64, last: u64) -> PruneMarker {
    PruneMarker::new(
        Utc::now(),
        Policy::default().before_id(id(last + 1)),
        vec![IdRange::new(id(first), id(last)).unwrap()],
        "0".repeat(64),
        None,
    )
}

fn format_of(path: &Path) -> u64 {
    let text = std::fs::read_to_string(format!("{}.format", path.display())).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    v["format"].as_u64().unwrap()
}

async fn commit_n(store: &JsonStore, n: u64) -> Vec<LogRecord> {
    let batch = (0..n)
        .map(|i| NewLog::new("j", Status::Succeeded).message(format!("record {i} {}", "x".repeat(200))))
        .collect();
    store.commit(batch, Durability::PowerLoss).await.unwrap()
}

async fn ids(store: &JsonStore) -> Vec<u64> {
    store
        .scan(&Scan::all(100_000))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.get())
        .collect()
}

/// The text of every file of the store: which ids' lines are still on disk.
fn ids_on_disk(path: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for file in synclog_json::store_files(path).unwrap() {
        for line in std::fs::read_to_string(&file).unwrap().lines().skip(1) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(id) = v.get("id").and_then(|i| i.as_u64()) {
                out.push(id);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Sealed segments that a prune empties are removed, a segment it cuts into is rewritten,
/// the bytes the store reports go down, and no line of a pruned record is left on disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_prune_removes_emptied_segments_and_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let store = JsonStore::open(&path).unwrap();
    for _ in 0..3 {
        commit_n(&store, 100).await;
        store.rotate().await.unwrap().expect("sealed");
    }
    commit_n(&store, 10).await;
    assert_eq!(store.files().len(), 4);
    let before = store.storage_bytes().await.unwrap().expect("bytes");
    // All of the first segment and half of the second.
    let applied = store
        .apply_prune(&marker(1, 150), Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(applied.deleted, 150);
    assert_eq!(store.files().len(), 3, "{:?}", store.files());
    assert!(!dir.path().join("s.jsonl.seg-000001").exists());
    let after = store.storage_bytes().await.unwrap().expect("bytes");
    assert!(after < before - 150 * 200, "{before} bytes before, {after} after");
    assert_eq!(ids(&store).await, (151..=310).collect::<Vec<_>>());
    assert_eq!(ids_on_disk(&path), (151..=310).collect::<Vec<_>>());
    store.close().await.unwrap();
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(ids(&store).await, (151..=310).collect::<Vec<_>>());
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.pruned_present == 0, "{report:?}");
    let next = store.append(NewLog::new("j", Status::Succeeded)).await.unwrap();
    assert_eq!(next.id.get(), 311);
    store.close().await.unwrap();
}

/// A store never pruned stays format 2 (the release before can still open it); the first
/// prune makes it 3, and a format marker removed by hand is written again as 3.
#[tokio::test(flavor = "multi_thread")]
async fn the_format_becomes_3_with_the_first_prune() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let store = JsonStore::open(&path).unwrap();
    commit_n(&store, 5).await;
    assert_eq!(format_of(&path), 2);
    store
        .apply_prune(&marker(1, 2), Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(format_of(&path), 3);
    store.close().await.unwrap();
    std::fs::remove_file(format!("{}.format", path.display())).unwrap();
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(format_of(&path), 3);
    assert_eq!(store.prune_markers().await.unwrap().len(), 1);
    store.close().await.unwrap();
}

/// Copies every file of the directory `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The store's state after a crash between the marker and the deletion: the files as
/// before the prune, with its markers and format marker.
async fn cut_off_prune() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let store = JsonStore::open(&path).unwrap();
    commit_n(&store, 10).await;
    store.close().await.unwrap();
    let saved = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), saved.path());
    let store = JsonStore::open(&path).unwrap();
    store
        .apply_prune(&marker(1, 5), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    let prunes = std::fs::read(format!("{}.prunes", path.display())).unwrap();
    let format = std::fs::read(format!("{}.format", path.display())).unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    copy_dir(saved.path(), dir.path());
    std::fs::write(format!("{}.prunes", path.display()), prunes).unwrap();
    std::fs::write(format!("{}.format", path.display()), format).unwrap();
    (dir, path)
}

/// A prune cut off after its marker was stored: a read-only handle does not show the
/// covered records (verify counts them as present under a marker, and clean), and the next
/// writer's open deletes them from the files.
#[tokio::test(flavor = "multi_thread")]
async fn a_cut_off_prune_is_hidden_from_reads_and_finished_by_the_next_open() {
    let (_dir, path) = cut_off_prune().await;
    assert_eq!(ids_on_disk(&path), (1..=10).collect::<Vec<_>>());
    let reader = JsonStore::open_read_only(&path, Arc::new(RealFs)).unwrap();
    assert_eq!(ids(&reader).await, (6..=10).collect::<Vec<_>>());
    assert!(reader.get(id(3)).await.unwrap().is_none());
    let sums = reader.id_checksums(None, 3).await.unwrap();
    assert_eq!(
        sums.iter().map(|(i, _)| i.get()).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    let report = reader.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.pruned_present, 5);
    reader.close().await.unwrap();

    let store = JsonStore::open(&path).unwrap();
    assert_eq!(ids_on_disk(&path), (6..=10).collect::<Vec<_>>());
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.pruned_present == 0, "{report:?}");
    store.close().await.unwrap();
}

/// A writer in another process (here: another handle on the same file) learns of a prune
/// at its next write or read: it reads none of the pruned records and hands out no id
/// below the marker's, even when the marker covers the newest records.
#[tokio::test(flavor = "multi_thread")]
async fn another_writer_learns_of_a_prune() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let a = JsonStore::open(&path).unwrap();
    let b = JsonStore::open_with(&path, JsonOptions::default(), Arc::new(RealFs)).unwrap();
    commit_n(&a, 10).await;
    assert_eq!(ids(&b).await.len(), 10);
    a.apply_prune(&marker(6, 10), Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(ids(&b).await, (1..=5).collect::<Vec<_>>());
    assert_eq!(b.prune_markers().await.unwrap().len(), 1);
    let next = b.append(NewLog::new("j", Status::Succeeded)).await.unwrap();
    assert_eq!(next.id.get(), 11);
    // A marker that deletes nothing here (applied from another copy) rewrites no file:
    // the other writer learns of it from the markers file alone.
    let applied = a
        .apply_prune(&marker(12, 20), Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(applied.deleted, 0);
    let next = b.append(NewLog::new("j", Status::Succeeded)).await.unwrap();
    assert_eq!(next.id.get(), 21);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A markers file that does not check out fails the open with a typed error and nothing
/// is written (the store cannot tell pruned ids from lost ones without it).
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_markers_file_stops_the_open_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let store = JsonStore::open(&path).unwrap();
    commit_n(&store, 5).await;
    store
        .apply_prune(&marker(1, 2), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    let prunes = PathBuf::from(format!("{}.prunes", path.display()));
    let text = std::fs::read_to_string(&prunes).unwrap();
    std::fs::write(&prunes, text.replace("\"count\":2", "\"count\":3")).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    let err = JsonStore::open(&path).expect_err("damaged markers");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(".prunes"), "{err}");
    let err = JsonStore::open_read_only(&path, Arc::new(RealFs)).expect_err("damaged markers");
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert!(before.contains(a) && after.contains(b));
    }
}
