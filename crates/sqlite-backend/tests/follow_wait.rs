//! The commit watch and `wait_for_commit`: at once when a newer record is already stored,
//! this handle's own commits handed over with their records, and another handle's
//! (another connection, as another process would be) seen through `PRAGMA data_version`.

use std::time::{Duration, Instant};

use synclog_core::{Durability, LogStore, LogStoreExt, NewLog, Status};
use synclog_sqlite::SqliteStore;

fn log() -> NewLog {
    NewLog::new("orders", Status::Succeeded)
}

/// A record newer than `seen` already stored: no wait at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_already_past_seen_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
    store.append(log()).await.unwrap();
    let t = Instant::now();
    store
        .wait_for_commit(None, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
}

/// Nothing committed: waits the whole timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_commit_it_waits_out_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
    let last = store.append(log()).await.unwrap().id;
    let t = Instant::now();
    store
        .wait_for_commit(Some(last), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(290), "{:?}", t.elapsed());
}

/// This handle's own commit reaches its commit watch with the records themselves, at
/// once: no look at the database is needed to hand them to a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_commit_reaches_the_watch_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
    store.append(log()).await.unwrap();
    let mut watch = store.commit_watch().await.unwrap();
    assert!(watch.hears());
    let _ = watch.take();
    let recs = store
        .commit(vec![log(), log()], Durability::PowerLoss)
        .await
        .unwrap();
    let heard = watch.take();
    let fed: Vec<_> = heard.batches.iter().flat_map(|b| b.iter().cloned()).collect();
    assert_eq!(fed, recs, "the batch, as committed");
    assert_eq!(heard.hint, Some(recs[1].id));
    assert!(!heard.lagged);
}

/// Another handle's commit on the same file (another connection, as from another
/// process) raises the watch of a writer handle and of a read-only one to its id (seen by
/// `PRAGMA data_version`), and wakes a wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connections_commit_raises_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let a = SqliteStore::open(&path).unwrap();
    a.append(log()).await.unwrap();
    let b = SqliteStore::open(&path).unwrap();
    let ro = SqliteStore::open_read_only(&path, Duration::from_secs(5)).unwrap();
    for store in [&a, &ro] {
        let mut watch = store.commit_watch().await.unwrap();
        let before = watch.take().hint;
        let rec = b.append(log()).await.unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        let mut hint = before;
        while hint < Some(rec.id) && Instant::now() < end {
            let _ = watch.changed(Duration::from_secs(30)).await;
            hint = watch.take().hint;
        }
        assert_eq!(hint, Some(rec.id), "the other connection's commit was seen");
        let seen = store.last_id().await.unwrap();
        let c = b.clone();
        let commit = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.append(log()).await.unwrap()
        });
        let t = Instant::now();
        store
            .wait_for_commit(seen, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "woken by the commit, not the timeout"
        );
        let rec = commit.await.unwrap();
        assert!(store.last_id().await.unwrap() >= Some(rec.id));
    }
}
