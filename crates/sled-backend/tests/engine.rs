//! The sled engine's own promises: one opener at a time, corruption surfaced as a kind.

use std::time::{Duration, Instant};

use synclog_core::{Durability, ErrorKind, LogStore, LogStoreExt, NewLog, Status};
use synclog_sled::SledOptions;

fn log(n: u64) -> NewLog {
    NewLog::new("sled-job", Status::Succeeded)
        .counts(n, n, 0)
        .attr("n", n)
}

#[tokio::test]
async fn a_second_open_is_locked_naming_the_path_and_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let first = synclog_sled::open(&path).unwrap();
    first.append(log(1)).await.unwrap();
    let started = Instant::now();
    let options = SledOptions {
        lock_wait: Duration::from_millis(200),
        ..SledOptions::default()
    };
    let err = synclog_sled::open_with(&path, options.clone()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "bounded wait");
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    first.close().await.unwrap();
    drop(first);
    let second = synclog_sled::open_with(&path, options).unwrap();
    assert_eq!(second.last_id().await.unwrap().map(|i| i.get()), Some(1));
}

/// Writes 200 logs, closes, and overwrites bytes `from..` of every file with 0xA5 for
/// half the file's length.
async fn damaged(from: impl Fn(usize) -> usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = synclog_sled::open(&path).unwrap();
    store
        .commit((0..200).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    for entry in std::fs::read_dir(&path).unwrap().flatten() {
        let p = entry.path();
        if p.is_file() {
            let mut bytes = std::fs::read(&p).unwrap();
            let n = bytes.len();
            for b in bytes.iter_mut().skip(from(n)).take(n / 2) {
                *b = 0xA5;
            }
            std::fs::write(&p, bytes).unwrap();
        }
    }
    (dir, path)
}

#[tokio::test]
async fn damaged_header_is_reported_as_corrupt_with_the_path() {
    let (_dir, path) = damaged(|_| 0).await;
    let err = synclog_sled::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

/// sled "recovers" from damaged log data by dropping what it cannot read, without an
/// error (measured: 0 of 200 records left). What it returns is never wrong; what it drops
/// only a backup can bring back (see the facade's guarded sled test).
#[tokio::test]
async fn damaged_data_is_dropped_silently_but_never_returned_wrong() {
    let (_dir, path) = damaged(|n| (n / 4).max(4096)).await;
    let store = synclog_sled::open(&path).unwrap();
    let all = synclog_conformance::cases::everything(&store).await;
    assert!(all.len() < 200, "sled returned every record despite the damage");
    assert!(all.iter().all(|r| r.is_intact()));
    let report = store
        .verify(synclog_core::VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.corrupt.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_one_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(synclog_sled::open(dir.path().join("db")).unwrap());
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                for n in 0..10 {
                    s.append(log(t * 10 + n)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.group_stats();
    assert_eq!(stats.logs, 320);
    assert!(stats.groups < 160, "{stats:?}");
}

/// sled's thread pool can hold the database's lock for a moment after the last handle is
/// dropped; `close` waits for it, so a plain `sled::open` right after never finds it locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_after_the_database_lock_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    for round in 0..20 {
        let store = synclog_sled::open(&path).unwrap();
        store.append(log(round)).await.unwrap();
        store.close().await.unwrap();
        drop(store);
        let raw =
            sled::open(&path).unwrap_or_else(|e| panic!("round {round}: still locked after close: {e}"));
        assert_eq!(
            raw.len(),
            round as usize + 3,
            "the records, the high-water key and the format key"
        );
        drop(raw);
    }
}

/// Lone appends store the high-water key only every so often (it would double what each
/// append flushes); a clean close stores it, so ids stay unique even if the newest records
/// are then deleted behind the store's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_keeps_ids_unique_after_the_newest_records_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = synclog_sled::open(&path).unwrap();
    for n in 1..=3 {
        assert_eq!(store.append(log(n)).await.unwrap().id.get(), n);
    }
    store.close().await.unwrap();
    drop(store);
    let raw = sled::open(&path).unwrap();
    let newest = raw.iter().keys().last().unwrap().unwrap();
    assert!(raw.remove(&newest).unwrap().is_some());
    raw.flush().unwrap();
    drop(raw);
    let store = synclog_sled::open_with(&path, SledOptions::default()).unwrap();
    assert_eq!(store.last_id().await.unwrap().map(|id| id.get()), Some(2));
    assert_eq!(
        store.append(log(4)).await.unwrap().id.get(),
        4,
        "id 3 was acknowledged once and is never handed out again"
    );
    store.close().await.unwrap();
}

/// A snapshot a crash cut off while sled wrote it (`snap.<lsn>.generating`, named past the
/// last complete one) does not make the database unreadable: sled 0.34.7 reads it at open
/// and reports corruption, so the writer's open removes it and finds every record. A
/// read-only open changes nothing and reports the corruption.
#[tokio::test]
async fn a_snapshot_a_crash_cut_off_is_removed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = synclog_sled::open(&path).unwrap();
    for n in 1..=10 {
        store.append(log(n)).await.unwrap();
    }
    store.close().await.unwrap();
    // What a SIGKILL inside sled's `write_snapshot`, before its rename, leaves.
    let unfinished = path.join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&unfinished, b"half of a snapshot").unwrap();
    let err = synclog_sled::open_read_only(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    // It names the file, and what removes it.
    let text = err.to_string();
    assert!(
        text.contains("snap.7FFFFFFFFFFFFFFF.generating") && text.contains("an open for writing"),
        "{text}"
    );
    assert!(unfinished.exists());
    let store = synclog_sled::open(&path).unwrap();
    assert!(!unfinished.exists());
    assert_eq!(store.last_id().await.unwrap().map(|id| id.get()), Some(10));
    let report = store
        .verify(synclog_core::VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    store.close().await.unwrap();
}
