//! An id is never handed out twice in a store's life, whatever happened to its files, and
//! records moved aside keep `verify` from saying clean until an operator acts.

use std::sync::Arc;

use synclog_core::{
    Durability, ErrorKind, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Status, VerifyOptions,
};
use synclog_json::fs::FileSystem;
use synclog_json::sim::SimFs;
use synclog_json::{JsonOptions, JsonStore};

fn log(n: u64) -> NewLog {
    NewLog::new("billing", Status::Succeeded)
        .counts(n, n, 0)
        .attr("n", n)
}

/// A store of two groups: ids 1..=3, then 4..=5.
async fn two_groups(path: &std::path::Path) {
    let store = JsonStore::open(path).unwrap();
    store
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store
        .commit((4..=5).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
}

/// Cuts the commit line of [`two_groups`]' second group behind the store's back, and
/// returns that group's records (4 and 5), which the next open moves aside.
fn tear_second_group(path: &std::path::Path) -> Vec<LogRecord> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "header, 3 records, commit, 2 records, commit");
    std::fs::write(path, lines[..7].join("\n") + "\n").unwrap();
    lines[5..7]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn torn_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect()
}

#[tokio::test]
async fn ids_of_whole_records_moved_aside_are_not_handed_out_again_and_verify_flags_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    two_groups(&path).await;
    // --- step: the second group loses its commit line behind the store's back.
    tear_second_group(&path);
    // And the high-water mark is lost too: the moved-aside records alone bound the ids.
    let _ = std::fs::remove_file(dir.path().join("logs.jsonl.hwm"));

    // --- step: reopen: 4 and 5 are moved aside; the next id is above them.
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(store.open_report().records, 3);
    let next = store.append(log(6)).await.unwrap();
    assert_eq!(next.id.get(), 6);

    // --- step: verify is not clean while the moved-aside file holds whole records.
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(!report.is_clean(), "{report:?}");
    assert_eq!(report.engine_problems.len(), 1, "{report:?}");
    let [aside] = &torn_files(dir.path())[..] else {
        panic!("one moved-aside file")
    };
    let name = aside.file_name().unwrap().to_string_lossy().into_owned();
    assert!(report.engine_problems[0].contains(&name), "{report:?}");
    assert!(report.engine_problems[0].contains("4..=5"), "{report:?}");
    assert!(
        report.missing.is_empty(),
        "moved-aside ids are not missing: {report:?}"
    );
    store.close().await.unwrap();

    // --- step: the operator archives the file: verify is clean, and the ids stay spent.
    let archive = tempfile::tempdir().unwrap();
    std::fs::rename(aside, archive.path().join(&name)).unwrap();
    let store = JsonStore::open(&path).unwrap();
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.append(log(7)).await.unwrap().id.get(), 7);
    store.close().await.unwrap();
}

/// A guarded pair restores a group torn in one copy from the other copy: once the store
/// holds every record of the moved-aside file, the same (id and checksum), the file is no
/// problem; a record the store holds differently, or not at all, still is.
#[tokio::test]
async fn a_moved_aside_file_whose_records_the_store_holds_the_same_is_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    two_groups(&path).await;
    // --- step: the second group (4, 5) loses its commit line; keep its records.
    let torn = tear_second_group(&path);
    assert_eq!(torn.iter().map(|r| r.id.get()).collect::<Vec<_>>(), vec![4, 5]);

    // --- step: reopen (4 and 5 moved aside); 4 comes back the same, 5 does not.
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(store.open_report().records, 3);
    store
        .import(vec![torn[0].clone()], Durability::PowerLoss)
        .await
        .unwrap();
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(report.engine_problems.len(), 1, "{report:?}");
    assert!(
        report.engine_problems[0].contains("1 whole record(s) (logs 5)"),
        "{report:?}"
    );

    // --- step: 5 comes back under its id with other content: still a problem.
    let other = LogRecord::seal(torn[1].id, torn[1].recorded_at, log(99)).unwrap();
    assert_ne!(other.checksum, torn[1].checksum);
    store.import(vec![other], Durability::PowerLoss).await.unwrap();
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert_eq!(report.engine_problems.len(), 1, "{report:?}");
    assert!(report.engine_problems[0].contains("(logs 5)"), "{report:?}");
    store.close().await.unwrap();
}

/// As above, with 5 restored the same: the file holds nothing the store lacks, and verify
/// is clean while the file stays (an operator may remove it).
#[tokio::test]
async fn a_torn_group_restored_the_same_leaves_verify_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    two_groups(&path).await;
    let torn = tear_second_group(&path);
    let store = JsonStore::open(&path).unwrap();
    store.import(torn, Durability::PowerLoss).await.unwrap();
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(torn_files(dir.path()).len(), 1, "the file stays for the operator");
    assert_eq!(store.append(log(6)).await.unwrap().id.get(), 6);
    store.close().await.unwrap();
}

#[tokio::test]
async fn ids_cut_off_behind_the_stores_back_are_not_handed_out_again_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.jsonl");
    two_groups(&path).await;
    // --- step: the newest group is cut off whole (commit line included).
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, lines[..5].join("\n") + "\n").unwrap();

    // --- step: reopen: nothing moved aside, yet the next id is 6, and verify says what is gone.
    let store = JsonStore::open(&path).unwrap();
    assert_eq!(store.open_report().records, 3);
    assert!(store.open_report().torn_tails.is_empty());
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(!report.is_clean(), "{report:?}");
    assert_eq!(report.engine_problems.len(), 1, "{report:?}");
    assert_eq!(store.append(log(6)).await.unwrap().id.get(), 6);
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    let missing: Vec<u64> = report
        .missing
        .iter()
        .flat_map(|r| r.first.get()..=r.last.get())
        .collect();
    assert_eq!(missing, vec![4, 5]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_store_on_a_full_disk_opens_for_reading_and_leaves_no_empty_moved_aside_file() {
    const FILE: &str = "/sim/logs.jsonl";
    let fs = SimFs::new();
    let open = || JsonStore::open_with(FILE, JsonOptions::default(), Arc::new(fs.clone()));
    let store = open().unwrap();
    store
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();

    // --- step: a committed store on a full disk opens and reads.
    fs.set_disk_full(true);
    let store = open().unwrap();
    assert_eq!(store.open_report().records, 3);
    assert!(store.get(LogId::new(3).unwrap()).await.unwrap().is_some());
    store.close().await.unwrap();

    // --- step: with a torn end to move aside (whole log 4, then a torn line), the store
    // still opens and reads; each write fails and leaves nothing behind.
    fs.set_disk_full(false);
    let path = std::path::Path::new(FILE);
    let mut bytes = fs.contents(path).unwrap();
    let whole = bytes.len();
    let store = open().unwrap();
    store.commit(vec![log(4)], Durability::PowerLoss).await.unwrap();
    store.close().await.unwrap();
    let mut with_4 = fs.contents(path).unwrap();
    with_4.truncate(with_4.len() - "{\"synclog_commit\":1}\n".len());
    bytes.extend_from_slice(&with_4[whole..]);
    bytes.extend_from_slice(br#"{"id":5,"recorded_at":"2026-11-2"#);
    fs.set_contents(path, bytes);
    // The mark would say 4: without it, only the torn end tells that 4 was handed out.
    fs.remove_file(std::path::Path::new("/sim/logs.jsonl.hwm"))
        .unwrap();
    fs.set_disk_full(true);
    let no_aside = |what: &str| {
        let aside: Vec<_> = fs
            .paths()
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".torn-"))
            .collect();
        assert!(aside.is_empty(), "{what}: {aside:?}");
    };
    for attempt in 0..3 {
        let store = open().unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        assert_eq!(store.open_report().records, 3, "attempt {attempt}");
        assert!(store.open_report().tail_left_in_place.is_some());
        assert!(store.get(LogId::new(2).unwrap()).await.unwrap().is_some());
        let err = store.append(log(9)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "attempt {attempt}");
        store.close().await.unwrap();
        no_aside(&format!("attempt {attempt}"));
    }

    // --- step: space comes back while the store is open: the first write moves the torn
    // end aside, then goes above the id of the whole record it holds.
    let store = open().unwrap();
    fs.set_disk_full(false);
    assert_eq!(store.append(log(5)).await.unwrap().id.get(), 5);
    let aside = fs
        .paths()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .count();
    assert_eq!(aside, 1);
    store.close().await.unwrap();
}

/// An uncommitted end one writer could not move aside (a full disk) is another writer's to
/// move once space is back: the first writer's next write then reads on from where it was
/// and keeps the other's acknowledged group, never moving it aside as its own.
#[tokio::test]
async fn an_end_left_in_place_is_moved_once_and_never_takes_a_later_group_with_it() {
    const FILE: &str = "/sim/logs.jsonl";
    let fs = SimFs::new();
    let open = || JsonStore::open_with(FILE, JsonOptions::default(), Arc::new(fs.clone()));
    let store = open().unwrap();
    store
        .commit((1..=3).map(log).collect(), Durability::PowerLoss)
        .await
        .unwrap();
    store.close().await.unwrap();
    let path = std::path::Path::new(FILE);
    let mut bytes = fs.contents(path).unwrap();
    bytes.extend_from_slice(br#"{"id":4,"recorded_at":"2026-11-2"#);
    fs.set_contents(path, bytes);

    // A opens on a full disk: the torn end stays in place.
    fs.set_disk_full(true);
    let a = open().unwrap();
    assert!(a.open_report().tail_left_in_place.is_some());
    fs.set_disk_full(false);
    // B moves it aside and appends an acknowledged group.
    let b = open().unwrap();
    let kept = b.append(log(7)).await.unwrap();
    b.close().await.unwrap();
    // A writes: B's group stays, and A's id comes after it.
    let next = a.append(log(8)).await.unwrap();
    assert!(next.id > kept.id, "{} after {}", next.id, kept.id);
    assert_eq!(a.get(kept.id).await.unwrap().as_ref(), Some(&kept));
    a.close().await.unwrap();
    let again = open().unwrap();
    assert_eq!(again.get(kept.id).await.unwrap().as_ref(), Some(&kept));
    assert_eq!(again.get(next.id).await.unwrap().as_ref(), Some(&next));
    let aside = fs
        .paths()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .count();
    assert_eq!(aside, 1, "the torn end, once");
    again.close().await.unwrap();
}

/// A group whose fdatasync failed was never acknowledged: its writer cuts it off while it
/// still holds the store's locks, so another writer never takes it for a committed group,
/// and its ids are handed out again.
#[tokio::test]
async fn a_group_whose_sync_failed_is_cut_before_another_writer_can_see_it() {
    const FILE: &str = "/sim/logs.jsonl";
    let fs = SimFs::new();
    let open = || JsonStore::open_with(FILE, JsonOptions::default(), Arc::new(fs.clone()));
    let a = open().unwrap();
    assert_eq!(a.append(log(1)).await.unwrap().id.get(), 1);
    // The group's append goes through, its fdatasync fails.
    fs.fail_once_after(1);
    let err = a.commit(vec![log(2)], Durability::PowerLoss).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);

    let b = open().unwrap();
    assert_eq!(b.open_report().records, 1, "the failed group is not there");
    let taken = b.append(log(3)).await.unwrap();
    assert_eq!(taken.id.get(), 2, "its id was never acknowledged");
    b.close().await.unwrap();

    let next = a.append(log(4)).await.unwrap();
    assert_eq!(next.id.get(), 3);
    assert_eq!(a.get(taken.id).await.unwrap().as_ref(), Some(&taken));
    let ids: Vec<u64> = synclog_conformance::cases::everything(&a)
        .await
        .iter()
        .map(|r| r.id.get())
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    a.close().await.unwrap();
}

/// Groups written at a weaker level than power-loss safe stay this writer's to sync even
/// after another process rotated the file they are in: a later `sync(PowerLoss)` makes
/// them durable, whatever happened to the file in between.
#[tokio::test]
async fn a_sync_after_another_writer_rotated_the_file_still_makes_earlier_groups_durable() {
    use synclog_json::sim::Tear;
    const FILE: &str = "/sim/logs.jsonl";
    let fs = SimFs::new();
    let open = || JsonStore::open_with(FILE, JsonOptions::default(), Arc::new(fs.clone()));
    let a = open().unwrap();
    let weak = a.commit(vec![log(1)], Durability::Process).await.unwrap();
    let b = open().unwrap();
    assert!(b.rotate().await.unwrap().is_some());
    b.close().await.unwrap();
    // A read makes `a` catch up with the rotation (its handle moves to the new file).
    assert_eq!(a.get(weak[0].id).await.unwrap().as_ref(), Some(&weak[0]));
    a.sync(Durability::PowerLoss).await.unwrap();
    fs.crash(Tear::DropUnsynced);
    let _ = a.close().await;
    drop(a);
    let again = open().unwrap();
    assert_eq!(again.get(weak[0].id).await.unwrap().as_ref(), Some(&weak[0]));
    again.close().await.unwrap();
}
