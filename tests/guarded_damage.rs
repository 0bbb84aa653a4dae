//! A damaged copy never stops the guarded pair, and `check` repairs it from the intact one.

use std::path::Path;
use std::sync::Arc;

use synclog::{Guarded, GuardedOptions, LogId, LogRecord, LogStore, LogStoreExt, NewLog, Side, Status};
use synclog_conformance::cases::everything;
use synclog_conformance::fault::FailEveryNth;

mod common;

use common::pair::Pair;

impl Pair {
    /// A pair holding logs 1..=n, closed again.
    async fn with_logs(n: u64) -> (Pair, Vec<LogRecord>) {
        let pair = Pair::new();
        let store = pair.open().await;
        let mut recs = Vec::new();
        for i in 1..=n {
            recs.push(store.append(log(i)).await.unwrap());
        }
        store.close().await.unwrap();
        (pair, recs)
    }

    /// Changes log `id`'s message in the SQLite primary, leaving its stored checksum: the
    /// flipped byte of the issue.
    fn damage_primary(&self, id: u64) {
        let conn = rusqlite::Connection::open(&self.primary).unwrap();
        let n = conn
            .execute(
                "UPDATE logs SET message = 'X' || substr(message, 2) WHERE id = ?1",
                [id as i64],
            )
            .unwrap();
        assert_eq!(n, 1);
    }

    /// Changes log `id`'s message in the JSON backup's line, leaving its checksum.
    fn damage_backup(&self, id: u64) {
        let text = std::fs::read_to_string(&self.backup).unwrap();
        let marker = format!("\"id\":{id},");
        let mut hit = 0;
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.contains(&marker) {
                    hit += 1;
                    l.replace(&format!("run {id}"), &format!("XXX {id}"))
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert_eq!(hit, 1);
        std::fs::write(&self.backup, out.join("\n") + "\n").unwrap();
    }
}

fn log(n: u64) -> NewLog {
    NewLog::new(format!("job-{}", n % 3), Status::Succeeded)
        .counts(n, n, 0)
        .message(format!("run {n} synced"))
}

fn id(n: u64) -> LogId {
    LogId::new(n).unwrap()
}

async fn sqlite_alone(path: &Path) -> Arc<dyn LogStore> {
    synclog::open_url(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_record_damaged_in_the_primary_is_read_from_the_backup_and_repaired_by_check() {
    let (pair, recs) = Pair::with_logs(6).await;
    pair.damage_primary(3);
    let store = pair.open().await;
    // --- step: reads serve the backup's intact record, and count it
    assert_eq!(store.get(id(3)).await.unwrap().as_ref(), Some(&recs[2]));
    assert_eq!(everything(&store).await, recs);
    assert_eq!(store.stats().damaged_served, 2);
    // --- step: the stored checksums agree, so only a recomputing check finds it
    let cheap = store.reconcile(false).await.unwrap();
    assert!(!cheap.found_problems(), "{cheap:?}");
    let found = store.check(false).await.unwrap();
    assert_eq!(found.damaged_in_primary, vec![id(3)]);
    assert!(found.damaged_in_backup.is_empty() && found.damaged_in_both.is_empty());
    assert!(!found.in_sync());
    // --- step: check --repair replaces it from the backup
    let repaired = store.check(true).await.unwrap();
    assert_eq!(repaired.repaired_in_primary, 1, "{repaired:?}");
    assert!(repaired.in_sync(), "{repaired:?}");
    assert!(!store.check(false).await.unwrap().found_problems());
    store.close().await.unwrap();
    let primary = sqlite_alone(&pair.primary).await;
    assert_eq!(primary.get(id(3)).await.unwrap().as_ref(), Some(&recs[2]));
    primary.close().await.unwrap();
}

#[tokio::test]
async fn a_record_damaged_in_the_backup_is_replaced_from_the_primary() {
    let (pair, recs) = Pair::with_logs(5).await;
    pair.damage_backup(2);
    let store = pair.open().await;
    let report = store.check(true).await.unwrap();
    assert!(report.damaged_in_primary.is_empty(), "{report:?}");
    assert!(report.damaged_in_both.is_empty(), "{report:?}");
    store.close().await.unwrap();
    let backup = synclog::open_url(&format!("json://{}", pair.backup.display()))
        .await
        .unwrap();
    assert_eq!(backup.get(id(2)).await.unwrap().as_ref(), Some(&recs[1]));
    assert_eq!(everything(&*backup).await, recs);
    backup.close().await.unwrap();
}

#[tokio::test]
async fn a_record_damaged_in_both_copies_is_reported_and_never_overwritten() {
    let (pair, _recs) = Pair::with_logs(5).await;
    pair.damage_primary(4);
    pair.damage_backup(4);
    let store = pair.open().await;
    let report = store.check(true).await.unwrap();
    assert_eq!(report.damaged_in_both, vec![id(4)], "{report:?}");
    assert_eq!(report.repaired_in_primary + report.repaired_in_backup, 0);
    assert!(!report.in_sync());
    // What is read is the damaged record, flagged as such: never a silent substitute.
    let read = store.get(id(4)).await.unwrap().unwrap();
    assert!(!read.is_intact());
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_primary_that_cannot_be_opened_leaves_the_pair_working_on_the_backup() {
    let (pair, recs) = Pair::with_logs(4).await;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", pair.primary.display()));
    }
    std::fs::write(&pair.primary, vec![0xA5u8; 8192]).unwrap();
    let store = pair.open().await;
    // --- step: reads come from the backup
    assert_eq!(everything(&store).await, recs);
    // --- step: an append is acknowledged by the backup alone, and says so
    let receipt = store
        .append_batch(vec![log(5)], Default::default())
        .await
        .unwrap();
    assert_eq!(receipt.records[0].id, id(5));
    assert!(receipt.durable_in.backup && !receipt.durable_in.primary);
    // --- step: verify reports the damage instead of failing
    let verified = store.verify(Default::default()).await.unwrap();
    assert!(!verified.is_clean());
    assert!(
        verified.engine_problems.iter().any(|p| p.starts_with("primary")),
        "{verified:?}"
    );
    let check = store.check(false).await.unwrap();
    assert!(
        check.unreadable.iter().any(|u| u.copy == Side::Primary),
        "{check:?}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_copy_that_refuses_writes_at_open_is_reported_and_the_other_serves() {
    // The backup holds logs the primary lacks, and the primary refuses every write (a
    // full disk): the open must not fail, and reads must still see everything.
    let (pair, recs) = Pair::with_logs(3).await;
    std::fs::remove_file(&pair.primary).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", pair.primary.display()));
    let full: Arc<dyn LogStore> = Arc::new(FailEveryNth::new(sqlite_alone(&pair.primary).await, 1));
    let backup = synclog::open_url(&pair.urls().1).await.unwrap();
    let store = Guarded::open(full, backup, GuardedOptions::default())
        .await
        .unwrap();
    let opened = store.open_report();
    assert_eq!(opened.missing_in_primary.len(), 3);
    assert_eq!(opened.restored_to_primary, 0);
    assert_eq!(opened.repair_failures.len(), 1, "{opened:?}");
    assert_eq!(everything(&store).await, recs);
    assert_eq!(store.get(id(2)).await.unwrap().as_ref(), Some(&recs[1]));
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_copy_that_stays_down_does_not_grow_the_queue_without_bound() {
    let pair = Pair::new();
    let down: Arc<dyn LogStore> = Arc::new(FailEveryNth::new(sqlite_alone(&pair.primary).await, 1));
    let backup = synclog::open_url(&pair.urls().1).await.unwrap();
    let options = GuardedOptions {
        max_pending: 3,
        ..GuardedOptions::default()
    };
    let store = Guarded::open(down, backup, options).await.unwrap();
    let mut recs = Vec::new();
    for i in 1..=8 {
        let receipt = store
            .append_batch(vec![log(i)], Default::default())
            .await
            .unwrap();
        assert!(receipt.durable_in.backup && !receipt.durable_in.primary);
        recs.extend(receipt.records);
        assert!(store.stats().pending_primary <= 3, "{:?}", store.stats());
    }
    // The dropped queue loses nothing: reads consult the backup, which holds every record.
    assert_eq!(everything(&store).await, recs);
    store.close().await.unwrap();
}
