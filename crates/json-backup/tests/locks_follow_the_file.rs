//! Locks follow the file, not the path string: a store opened through a symlink, a hard
//! link or `..` segments and through its real path meets one lock, so two writers never
//! hand out the same id.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use synclog_core::{Durability, LogStore, LogStoreExt, NewLog, Status};
use synclog_json::fs::RealFs;
use synclog_json::{JsonOptions, JsonStore};

const ROUNDS: u64 = 4;
const PER_ROUND: u64 = 10;

/// Opens the store at `path` `ROUNDS` times, appending `PER_ROUND` logs one by one each
/// time; returns the ids handed out.
fn appender(path: PathBuf) -> Vec<u64> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async move {
        let mut ids = Vec::new();
        for round in 0..ROUNDS {
            let options = JsonOptions {
                lock_wait: Duration::from_secs(60),
                ..JsonOptions::default()
            };
            let store = JsonStore::open_with(&path, options, std::sync::Arc::new(RealFs))
                .unwrap_or_else(|e| panic!("{}: round {round}: {e}", path.display()));
            for n in 0..PER_ROUND {
                let log = NewLog::new("sync", Status::Succeeded).counts(round, n, 0);
                let rec = store.append(log).await.unwrap();
                ids.push(rec.id.get());
            }
            store.close().await.unwrap();
        }
        ids
    })
}

/// Two writers, one through `real` and one through `alias`, append at the same time.
fn two_writers_hand_out_distinct_ids(real: &Path, alias: &Path) {
    let (a, b) = (real.to_path_buf(), alias.to_path_buf());
    let first = std::thread::spawn(move || appender(a));
    let second = std::thread::spawn(move || appender(b));
    let mut all = first.join().unwrap();
    all.extend(second.join().unwrap());
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len() as u64, 2 * ROUNDS * PER_ROUND);
    assert_eq!(
        distinct.len(),
        all.len(),
        "{}: an id was handed out twice",
        alias.display()
    );
}

/// A store with one record at `dir/logs.jsonl`.
fn store_in(dir: &Path) -> PathBuf {
    let path = dir.join("logs.jsonl");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let store = JsonStore::open(&path).unwrap();
        store
            .commit(vec![NewLog::new("seed", Status::Started)], Durability::PowerLoss)
            .await
            .unwrap();
        store.close().await.unwrap();
    });
    path
}

#[test]
fn writers_through_a_symlink_and_the_real_path_hand_out_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let real = store_in(dir.path());
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    let link = dir.path().join("elsewhere/link.jsonl");
    std::os::unix::fs::symlink("../logs.jsonl", &link).unwrap();
    two_writers_hand_out_distinct_ids(&real, &link);
}

#[test]
fn writers_through_a_hard_link_and_the_real_path_hand_out_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let real = store_in(dir.path());
    let hard = dir.path().join("hard.jsonl");
    std::fs::hard_link(&real, &hard).unwrap();
    two_writers_hand_out_distinct_ids(&real, &hard);
}

#[test]
fn writers_through_dot_dot_segments_and_the_real_path_hand_out_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let real = store_in(dir.path());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let dotted = dir.path().join("sub/../logs.jsonl");
    two_writers_hand_out_distinct_ids(&real, &dotted);
}

/// After a compaction replaced the active file by rename, a writer through a hard link
/// made to the new file meets the same per-group lock as the holder: their appends take
/// turns and never share an id.
#[tokio::test]
async fn a_writer_through_a_hard_link_to_a_compacted_file_takes_turns_with_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("logs.jsonl");
    let store = JsonStore::open(&real).unwrap();
    store
        .commit(vec![NewLog::new("seed", Status::Started)], Durability::PowerLoss)
        .await
        .unwrap();
    store.compact().await.unwrap();
    let hard = dir.path().join("hard.jsonl");
    std::fs::hard_link(&real, &hard).unwrap();
    let other = JsonStore::open(&hard).unwrap();
    let mut ids = BTreeSet::new();
    for n in 0..10u64 {
        let (a, b) = tokio::join!(
            store.append(NewLog::new("real", Status::Succeeded).counts(n, n, 0)),
            other.append(NewLog::new("hard", Status::Succeeded).counts(n, n, 0))
        );
        assert!(ids.insert(a.unwrap().id.get()));
        assert!(ids.insert(b.unwrap().id.get()), "an id was handed out twice");
    }
    assert_eq!(ids.len(), 20);
    other.close().await.unwrap();
    store.close().await.unwrap();
}
