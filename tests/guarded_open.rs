//! What a guarded open compares: the copies' ends and what changed since the watermark,
//! not the whole history; what only `check` finds; and a watermark that is never trusted
//! beyond what it proves.

use std::path::PathBuf;
use std::sync::Arc;
use synclog::LogStoreExt;

use synclog::{Durability, Guarded, GuardedOptions, LogId, LogRecord, LogStore, NewLog, Status};
use synclog_conformance::cases::everything;
use synclog_conformance::fault::FailEveryNth;

mod common;

use common::pair::Pair;

impl Pair {
    fn watermark(&self) -> PathBuf {
        PathBuf::from(format!("{}.guard", self.primary.display()))
    }
}

fn log(n: u64) -> NewLog {
    NewLog::new(format!("job-{}", n % 3), Status::Succeeded).counts(n, n, 0)
}

async fn append_n(store: &Guarded, range: std::ops::RangeInclusive<u64>) {
    let batch: Vec<NewLog> = range.map(log).collect();
    store.append_batch(batch, Durability::PowerLoss).await.unwrap();
}

async fn close(store: Guarded) {
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_open_compares_only_from_the_watermark_and_the_copies_ends() {
    let pair = Pair::new();
    let store = pair.open().await;
    assert_eq!(
        store.open_report().compared_after,
        None,
        "a new pair has no watermark"
    );
    append_n(&store, 1..=300).await;
    close(store).await;

    // No watermark covered 1..=300 yet: this open compares every record, then saves one.
    let store = pair.open().await;
    assert_eq!(store.open_report().in_both, 300);
    append_n(&store, 301..=310).await;
    close(store).await;

    let store = pair.open().await;
    let report = store.open_report();
    assert_eq!(report.compared_after, LogId::new(299), "{report:?}");
    assert_eq!(report.in_both, 11, "300 (the watermark's record) to 310");
    assert!(!report.found_problems(), "{report:?}");
    close(store).await;
}

#[tokio::test]
async fn records_deleted_from_the_middle_of_the_primary_are_found_by_check_and_repaired() {
    let pair = Pair::new();
    let store = pair.open().await;
    append_n(&store, 1..=100).await;
    close(store).await;
    close(pair.open().await).await; // saves the watermark at 100

    let db = rusqlite::Connection::open(&pair.primary).unwrap();
    let deleted = db
        .execute("DELETE FROM logs WHERE id BETWEEN 40 AND 44", [])
        .unwrap();
    assert_eq!(deleted, 5);
    drop(db);

    // Both ends are intact: the open (by design) does not look below the watermark.
    let store = pair.open().await;
    assert!(store.open_report().missing_in_primary.is_empty());
    let found = store.check(false).await.unwrap();
    let missing: Vec<u64> = found.missing_in_primary.iter().map(|i| i.get()).collect();
    assert_eq!(missing, vec![40, 41, 42, 43, 44]);
    let repaired = store.check(true).await.unwrap();
    assert_eq!(repaired.restored_to_primary, 5);
    assert!(repaired.in_sync(), "{repaired:?}");
    assert_eq!(everything(&**store.primary()).await.len(), 100);
    close(store).await;
}

#[tokio::test]
async fn a_damaged_or_foreign_watermark_is_not_trusted_and_is_rewritten() {
    let pair = Pair::new();
    let store = pair.open().await;
    append_n(&store, 1..=50).await;
    close(store).await;
    close(pair.open().await).await;
    let good = std::fs::read(pair.watermark()).unwrap();

    // One flipped byte.
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(pair.watermark(), &bad).unwrap();
    let store = pair.open().await;
    let report = store.open_report();
    assert_eq!(report.compared_after, None);
    assert_eq!(report.in_both, 50);
    assert!(
        report.watermark_note.as_deref().unwrap().contains("checksum"),
        "{report:?}"
    );
    close(store).await;
    assert_eq!(std::fs::read(pair.watermark()).unwrap(), good, "rewritten");

    // Another pair's watermark (the same bytes, naming other copies).
    let other = Pair::new();
    let store = other.open().await;
    close(store).await;
    close(other.open().await).await;
    std::fs::copy(other.watermark(), pair.watermark()).unwrap();
    let store = pair.open().await;
    assert_eq!(store.open_report().compared_after, None);
    assert!(store
        .open_report()
        .watermark_note
        .as_deref()
        .unwrap()
        .contains("another pair"));
    close(store).await;

    let store = pair.open().await;
    assert_eq!(
        store.open_report().compared_after,
        LogId::new(49),
        "trusted again"
    );
    close(store).await;
}

/// A guard over the pair's files with the backup wrapped to fail every second write,
/// keeping the pair's watermark file.
async fn faulty_guard(pair: &Pair) -> (Guarded, Arc<dyn LogStore>) {
    let (p, b) = pair.urls();
    let primary = synclog::open_url(&p).await.unwrap();
    let backup = synclog::open_url(&b).await.unwrap();
    let faulty: Arc<dyn LogStore> = Arc::new(FailEveryNth::new(backup.clone(), 2));
    let options = GuardedOptions {
        watermark: Some(pair.watermark()),
        ..GuardedOptions::default()
    };
    (Guarded::open(primary, faulty, options).await.unwrap(), backup)
}

fn sealed(ids: std::ops::RangeInclusive<u64>) -> Vec<LogRecord> {
    ids.map(|n| LogRecord::seal(LogId::new(n).unwrap(), chrono::Utc::now(), log(n)).unwrap())
        .collect()
}

#[tokio::test]
async fn records_a_copy_missed_below_the_watermark_are_found_by_the_next_open_after_a_crash() {
    let pair = Pair::new();
    let (store, backup) = faulty_guard(&pair).await;
    store
        .import(sealed(100..=110), Durability::PowerLoss)
        .await
        .unwrap(); // backup call 1
    close(store).await;
    drop(backup);

    let (store, backup) = faulty_guard(&pair).await;
    assert_eq!(store.open_report().in_both, 11);
    store.import(sealed(1..=5), Durability::PowerLoss).await.unwrap(); // backup call 1
    store.import(sealed(6..=10), Durability::PowerLoss).await.unwrap(); // call 2: fails
    assert_eq!(store.stats().pending_backup, 5);
    // A crash: the queue in memory is lost; the backup is let go without a repair.
    drop(store);
    backup.close().await.unwrap();
    drop(backup);

    let (store, _backup) = faulty_guard(&pair).await;
    let report = store.open_report();
    let missing: Vec<u64> = report.missing_in_backup.iter().map(|i| i.get()).collect();
    assert_eq!(missing, vec![6, 7, 8, 9, 10], "{report:?}");
    assert_eq!(report.copied_to_backup, 5);
    assert_eq!(everything(&**store.backup()).await.len(), 21);
    close(store).await;
}

/// Writes the pair's lock file as a process that died while writing `first..=last` left it.
fn died_writing(pair: &Pair, next: u64, first: u64, last: u64) {
    let payload = format!("next={next} writing={first}-{last}");
    let line = format!(
        "synclog-pair {payload} {:08x}\n",
        crc32c::crc32c(payload.as_bytes())
    );
    std::fs::write(format!("{}.guard.lock", pair.primary.display()), line).unwrap();
}

async fn open_without_reconcile(pair: &Pair) -> Guarded {
    let (p, b) = pair.urls();
    let options = GuardedOptions {
        reconcile_at_open: false,
        ..GuardedOptions::default()
    };
    synclog::open_guarded(&p, &b, options).await.unwrap()
}

#[tokio::test]
async fn a_group_a_dead_process_wrote_to_one_copy_is_completed_by_the_next_holder() {
    let pair = Pair::new();
    let store = pair.open().await;
    append_n(&store, 1..=10).await;
    close(store).await;
    // The dead process got 11 and 12 into the primary only.
    let (p, _) = pair.urls();
    let primary = synclog::open_url(&p).await.unwrap();
    primary
        .import(sealed(11..=12), Durability::PowerLoss)
        .await
        .unwrap();
    primary.close().await.unwrap();
    drop(primary);
    died_writing(&pair, 11, 11, 12);

    // Not the open's comparison (turned off here): taking the pair's lock completes it.
    let store = open_without_reconcile(&pair).await;
    assert_eq!(
        store
            .backup()
            .get(LogId::new(12).unwrap())
            .await
            .unwrap()
            .map(|r| r.id.get()),
        Some(12)
    );
    let next = store
        .append_batch(vec![log(13)], Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(next.records[0].id.get(), 13);
    close(store).await;
}

#[tokio::test]
async fn the_ids_of_a_group_a_dead_process_stored_nowhere_are_handed_out_again() {
    let pair = Pair::new();
    let store = pair.open().await;
    append_n(&store, 1..=10).await;
    close(store).await;
    died_writing(&pair, 11, 11, 15);

    let store = open_without_reconcile(&pair).await;
    let next = store
        .append_batch(vec![log(11)], Durability::PowerLoss)
        .await
        .unwrap();
    assert_eq!(next.records[0].id.get(), 11, "no gap: 11..=15 were never stored");
    let verify = store.verify(synclog::VerifyOptions::default()).await.unwrap();
    assert!(verify.is_clean(), "{verify:?}");
    close(store).await;
}
